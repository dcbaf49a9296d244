"""ISTA on batch-norm gammas: the proximal SGD optimizer and the sparsity metrics it is judged by.

After the plain gradient step, every penalized gamma is soft-thresholded,
    gamma <- sign(gamma) * max(|gamma| - rho_l * lr_t * l1_penalty, 0),
which drives gammas to exactly zero (docs/original.md section 5).

Optionally (`coupled=`, not in the original) the channels that go only together, such as a
residual stream's, are thresholded as one vector, the group lasso's proximal step:
    g_c <- g_c * max(0, 1 - lr_t * l1_penalty * sum_members rho / ||g_c||_2),
with g_c channel c's gammas in all the member batch norms; it makes them zero at once, where
thresholding each on its own leaves some member nonzero and the channel in the model. For one
member it is the step above.
"""
import keras
import numpy as np
from keras import ops

from cifar10_prune.pruning import groups


@keras.saving.register_keras_serializable(package="cifar10_prune")
class ISTA(keras.optimizers.SGD):
    """Plain SGD (no momentum) plus the L1 proximal step on chosen variables.

    Args:
      learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`; the threshold
        uses the scheduled rate of the current step.
      l1_penalty: lambda. 0 makes this exactly `keras.optimizers.SGD`.
      penalties: {variable path: rho_l}, e.g. from `pruning.penalties(model)` (any functional
        model) or `models.penalties(model)` (the recipe's). Other variables get the plain
        gradient step.
      adaptive: give the optimizer variables (saved with it) for a controller such as
        `pruning.Budget` to steer during training: `penalty_scale` (1.0 to start) multiplies
        lambda, and `hold` ends the sparsifying (see there). Without it lambda is a constant of
        the compiled step, as before.
      coupled: [[(gamma path, offset, width), ...], ...], e.g. from `pruning.coupled(model)`:
        channels `offset + c` of these penalized gammas are thresholded together (the group
        lasso step above, with the members' rho summed), the rest of each gamma on its own.
        The joint step runs after the gradient step of the last member variable, so gradients
        must come in the order the optimizer was built with (as `fit` gives them).
    """

    def __init__(self, learning_rate=0.1, l1_penalty=0.0, penalties=None, name="ista",
                 adaptive=False, coupled=None, **kwargs):
        # SGD's own config carries momentum=0.0 and nesterov=False, so from_config passes them.
        if kwargs.pop("momentum", 0.0):
            raise ValueError("ISTA is plain SGD (the original's): it has no momentum; drop "
                             "momentum=, or use another optimizer without the L1 step")
        if kwargs.pop("nesterov", False):
            raise ValueError("ISTA is plain SGD (the original's): it has no nesterov momentum; "
                             "drop nesterov=")
        super().__init__(learning_rate=learning_rate, momentum=0.0, name=name, **kwargs)
        if l1_penalty < 0:
            raise ValueError("l1_penalty must be >= 0, got %r" % (l1_penalty,))
        self.l1_penalty = float(l1_penalty)
        self.penalties = {str(k): float(v) for k, v in (penalties or {}).items()}
        self._rho = []
        self.adaptive = bool(adaptive)
        self.penalty_scale = self.zeros_held_since = None
        self._held = []  # per optimizer variable: the mask of entries held at zero, or None
        self.coupled = [[(str(p), int(o), int(w)) for p, o, w in group] for group in coupled or []]
        for group in self.coupled:
            if len({w for _, _, w in group}) != 1:
                raise ValueError("ISTA coupled: the members of a group must have one width, got "
                                 "%s" % (group,))
        self._alone = []  # per optimizer variable: the entries thresholded alone, or None (all)
        self._joint = []  # per coupled group: ([(variable index, offset, width)], sum of rho)
        self._joint_at = None  # the variable index after whose update the joint step runs

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        paths = [v.path for v in variables]
        unknown = set(self.penalties) - set(paths)
        if unknown:
            raise ValueError("ISTA penalties name variables the optimizer is not given: %s"
                             % ", ".join(sorted(unknown)))
        # Indexed like the optimizer's variables, so the lookup below is a Python constant.
        self._rho = [self.penalties.get(p, 0.0) for p in paths]
        self._build_coupled(variables, paths)
        if self.adaptive:
            self.penalty_scale = self.add_variable((), initializer="ones", dtype="float32",
                                                   name="penalty_scale")
            self.zeros_held_since = self.add_variable(
                (), initializer=keras.initializers.Constant(-1.0), dtype="float32",
                name="zeros_held_since")
            self._held = [self.add_variable_from_reference(v, "held") if rho else None
                          for v, rho in zip(variables, self._rho)]

    def _build_coupled(self, variables, paths):
        index = {p: i for i, p in enumerate(paths)}
        outside = sorted({p for group in self.coupled for p, _, _ in group}
                         - set(self.penalties))
        if outside:
            raise ValueError("ISTA coupled names gammas that penalties does not: %s (couple "
                             "only penalized batch norms)" % ", ".join(outside))
        self._alone = [None] * len(variables)
        for group in self.coupled:
            for path, offset, width in group:
                i = index[path]
                if self._alone[i] is None:
                    self._alone[i] = np.ones(variables[i].shape, bool)
                if not np.all(self._alone[i][offset:offset + width]):
                    raise ValueError("ISTA coupled: channels %d-%d of %s are in two groups"
                                     % (offset, offset + width - 1, path))
                self._alone[i][offset:offset + width] = False
            self._joint.append(([(index[p], o, w) for p, o, w in group],
                                sum(self._rho[index[p]] for p, _, _ in group)))
        self._joint_at = max((i for i, a in enumerate(self._alone) if a is not None),
                             default=None)

    def hold(self, step, masks):
        """End the sparsifying from global step `step` (recorded in `zeros_held_since`): the
        penalized variables lose their threshold and take the plain gradient step, except the
        entries `masks` ({variable path: boolean array}) marks, which stay exactly zero (the
        channels decided for removal). Needs `adaptive=True`."""
        if not self.adaptive:
            raise ValueError("ISTA.hold needs an optimizer made with adaptive=True")
        by_path = self._held_by_path()
        unknown = set(masks) - set(by_path)
        if unknown:
            raise ValueError("ISTA.hold: not penalized variables of this optimizer: %s"
                             % ", ".join(sorted(unknown)))
        for path, held in by_path.items():
            mask = np.asarray(masks.get(path, np.zeros(held.shape, bool)), bool)
            held.assign(mask.astype(held.dtype))
        self.zeros_held_since.assign(float(step))

    def held_zeros(self):
        """{variable path: boolean mask} of the entries `hold` keeps at zero ({} before it)."""
        if not self.adaptive or float(ops.convert_to_numpy(self.zeros_held_since)) < 0:
            return {}
        return {path: ops.convert_to_numpy(held) > 0
                for path, held in self._held_by_path().items()}

    def _held_by_path(self):
        return {v.path: held for v, held in zip(self._trainable_variables, self._held)
                if held is not None}

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        rho = self._rho[index]
        super().update_step(gradient, variable, learning_rate)
        if rho and self.l1_penalty:
            threshold = self._threshold(learning_rate, rho, variable.dtype)
            value = ops.sign(variable) * ops.maximum(ops.abs(variable) - threshold, 0.0)
            stepped = ops.convert_to_tensor(variable)  # JAX's where takes no Keras variable
            if self._alone[index] is not None:
                value = ops.where(self._alone[index], value, stepped)
            if self.adaptive:
                held = ops.where(self._held[index] > 0, ops.zeros_like(stepped), stepped)
                value = ops.where(self.zeros_held_since >= 0, held, value)
            self.assign(variable, value)
        if index == self._joint_at and self.l1_penalty:
            self._joint_step(learning_rate, index, variable)

    def _threshold(self, learning_rate, rho, dtype):
        threshold = ops.cast(learning_rate, dtype) * (rho * self.l1_penalty)
        if self.adaptive:  # not otherwise: the default step stays bit for bit as it was
            threshold = threshold * ops.cast(self.penalty_scale, dtype)
        return threshold

    def _joint_step(self, learning_rate, index, variable):
        """The coupled groups' step, on the member gammas after their gradient steps (this runs
        after the last one's); once `hold` ran, the members keep their own step's value."""
        current = {}
        for i in {i for members, _ in self._joint for i, _, _ in members}:
            current[i] = ops.convert_to_tensor(variable if i == index
                                               else self._trainable_variables[i])
        factors = {i: [] for i in current}  # (offset, width, factor) per member variable
        for members, rho in self._joint:
            dtype = current[members[0][0]].dtype
            stacked = ops.stack([current[i][o:o + w] for i, o, w in members])
            norm = ops.sqrt(ops.sum(ops.square(stacked), axis=0))
            threshold = self._threshold(learning_rate, rho, dtype)
            factor = ops.where(norm > threshold,
                               1.0 - threshold / ops.maximum(norm, 1e-30), ops.zeros_like(norm))
            for i, o, w in members:
                factors[i].append((o, w, factor))
        for i, parts in factors.items():
            value = current[i] * _pieced(parts, current[i].shape[0], current[i].dtype)
            if self.adaptive:
                value = ops.where(self.zeros_held_since >= 0, current[i], value)
            self.assign(variable if i == index else self._trainable_variables[i], value)

    def get_config(self):
        config = super().get_config()
        config.update(l1_penalty=self.l1_penalty, penalties=dict(self.penalties))
        if self.adaptive:
            config.update(adaptive=True)
        if self.coupled:
            config.update(coupled=[[list(m) for m in group] for group in self.coupled])
        return config


def _pieced(parts, size, dtype):
    """A vector of `size` ones with the (offset, width, values) `parts` in their places."""
    pieces, at = [], 0
    for offset, width, values in sorted(parts, key=lambda part: part[0]):
        if offset > at:
            pieces.append(ops.ones((offset - at,), dtype))
        pieces.append(ops.cast(values, dtype))
        at = offset + width
    if at < size:
        pieces.append(ops.ones((size - at,), dtype))
    return ops.concatenate(pieces) if len(pieces) > 1 else pieces[0]


def coupled(model, penalties=None):
    """[[(gamma path, offset, width), ...], ...] for `ISTA(coupled=...)`: the member batch norms
    of every prunable group of `model` with more than one (channels coupled by an `Add`, a
    depthwise conv), whose channels go only when zero in all of them. With `penalties`, only
    groups whose members it all names."""
    found = []
    for group in groups.analyze(model).groups:
        if not group.prunable or len(group.members) < 2:
            continue
        members = [(bn.gamma.path, offset, group.width) for bn, offset in group.members]
        if penalties is None or all(path in penalties for path, _, _ in members):
            found.append(members)
    return found


def penalized(model, penalties):
    """[(name, rho_l, raw gamma as numpy)] for every gamma of `model` that `penalties`
    ({gamma variable path: rho_l}, as `ISTA` takes) names, in graph order. A group member's
    gamma is named after the layer its batch norm normalizes (the recipe's unit: "g1b0c0",
    "conv2"); a reader-side batch norm's (one in no group) after the batch norm itself."""
    analysis = groups.analyze(model)
    members = {bn.name for group in analysis.groups for bn, _ in group.members}
    return [(analysis.source[bn.name].name if bn.name in members else bn.name,
             penalties[bn.gamma.path], ops.convert_to_numpy(bn.gamma))
            for bn in (node.operation for node in analysis.nodes)
            if isinstance(bn, keras.layers.BatchNormalization) and bn.scale
            and bn.gamma.path in penalties]


def sparsity(model, penalties):
    """The original's logged metrics, from the raw gammas that `penalties` names.

    Returns (group_lasso, fake_sparsity, zeros) with
      group_lasso   = sum_l rho_l * sum_c |gamma_lc|
      fake_sparsity = sum_l rho_l * #(gamma_lc == 0) / sum_l rho_l * C_l
      zeros         = {name: (number of zero gammas, number of channels)}
    """
    lasso = zero_cost = total_cost = 0.0
    zeros = {}
    for name, rho, gamma in penalized(model, penalties):
        n_zero = int(np.sum(gamma == 0))
        lasso += rho * float(np.sum(np.abs(gamma)))
        zero_cost += rho * n_zero
        total_cost += rho * gamma.size
        zeros[name] = (n_zero, gamma.size)
    return lasso, (zero_cost / total_cost if total_cost else 0.0), zeros


def format_zeros(zeros):
    """One compact line: `zero gammas: g1b0c0 0/16 g1b1c0 3/16 ...`."""
    return "zero gammas: " + " ".join("%s %d/%d" % (u, z, n) for u, (z, n) in zeros.items())
