"""ISTA on batch-norm gammas: the proximal SGD optimizer and the sparsity metrics it is judged by.

After the plain gradient step, every penalized gamma is soft-thresholded,
    gamma <- sign(gamma) * max(|gamma| - rho_l * lr_t * l1_penalty, 0),
which drives gammas to exactly zero (docs/original.md section 5).
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
    """

    def __init__(self, learning_rate=0.1, l1_penalty=0.0, penalties=None, name="ista",
                 adaptive=False, **kwargs):
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
        if self.adaptive:
            self.penalty_scale = self.add_variable((), initializer="ones", dtype="float32",
                                                   name="penalty_scale")
            self.zeros_held_since = self.add_variable(
                (), initializer=keras.initializers.Constant(-1.0), dtype="float32",
                name="zeros_held_since")
            self._held = [self.add_variable_from_reference(v, "held") if rho else None
                          for v, rho in zip(variables, self._rho)]

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
            threshold = ops.cast(learning_rate, variable.dtype) * (rho * self.l1_penalty)
            if self.adaptive:  # not otherwise: the default step stays bit for bit as it was
                threshold = threshold * ops.cast(self.penalty_scale, variable.dtype)
            value = ops.sign(variable) * ops.maximum(ops.abs(variable) - threshold, 0.0)
            if self.adaptive:
                held = ops.where(self._held[index] > 0, ops.zeros_like(variable), variable)
                value = ops.where(self.zeros_held_since >= 0, held, value)
            self.assign(variable, value)

    def get_config(self):
        config = super().get_config()
        config.update(l1_penalty=self.l1_penalty, penalties=dict(self.penalties))
        if self.adaptive:
            config.update(adaptive=True)
        return config


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
