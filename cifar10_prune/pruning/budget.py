"""Prune to a budget: what the current zeros would leave of a model's multiply-adds and
parameters (`estimate`), and a Keras callback that adapts lambda during the sparsifying training
until they are at most a given fraction of the dense model's (`Budget`).

The cost of the narrower model is counted from the graph, without building it: in every prunable
group (`groups.find_groups`) the channels whose gamma is exactly zero in every member go from
the producing layers, the members and the group's per-channel layers, and as input channels of
its readers, as `compress` removes them. Multiply-adds are those of the Conv2D, DepthwiseConv2D
and Dense layers for one input (H_out * W_out * k_h * k_w * C_in / groups * C_out); parameters
are every variable of the model, trainable or not, as `compress` would slice it. Reader-side
removals (`readers`) and the ones channels of exact borders are not counted, so the estimate
never promises more than the groups give. With `multiple` > 1 the pruned widths are counted
rounded up to a multiple of it, as CPUs compute channels in vector-wide blocks (oneDNN's float32
convolutions on AVX-512 in blocks of 16: a conv narrowed from 16 to 10 outputs costs what the
dense one costs, benchmarks/README.md); the widths nothing prunes (an image's 3 channels, the
classes) are counted as they are.

The controller (`Budget`): lambda is multiplied by the optimizer's `penalty_scale` (an `ISTA`
made with `adaptive=True`). Every `check_every` steps the callback computes the fraction the
current zeros leave, and between those checks it watches every `watch_every` steps whether the
budget is met yet (zeros come in bursts near the end: the quick start went from 61.9% to 55.7%
of its multiply-adds in the 100 steps between two checks). When the fraction is at most the
target (every target given), the budget is met and the sparsifying ends. With `hold` (the
default) training goes on to its end: of the channels the zeros remove, the fewest that meet the
budget (those that save the most each first; a check can find more zeros than needed) are held
at zero, and every other gamma trains free of the penalty (`ISTA.hold`), so the steps left train
the channels that stay; the zeros not held are restarted at the smallest gamma of their batch
norm (at zero, behind a ReLU, they would stay dead). Without it, training stops there.
(Lowering lambda instead would not keep the zeros: plain SGD moves zero gammas off zero.)
Otherwise it asks which channels must still go, and what lambda each needs. ISTA shrinks a
member's |gamma| by its threshold `lr * lambda * rho` per step, and the gradient pushes back:
from the last interval, the push is the threshold that was applied minus the shrinking that was
seen. For |gamma| to reach zero within `aim` of the steps left until `max_steps`, the threshold
must beat the push by |gamma| / (aim * steps left) per step; a channel needs the largest such
lambda of its group's members (it goes only when all are zero; for a group the optimizer
thresholds as one, `ISTA(coupled=...)`, the members' norm with their rho summed). The fewest
channels needing the least lambda whose removal would meet the target are found (by counting,
as `estimate` does), and lambda is raised to what the most demanding of them needs (at most
`max_scale` times the initial lambda; never lowered). At the first check no push is known yet
and the threshold alone is assumed. Past `max_steps` (the step by which the budget should be
met) and not met yet, it aims at the next check.

The push is what makes the rule work: gammas shrink quickly and then settle just above zero,
where the gradient balances the threshold, and the two rules blind to it that came first missed
the quick start's budget (docs/quick_start.md).
"""
import dataclasses
import math

import keras
import numpy as np
from keras import ops

from cifar10_prune.pruning.groups import L, analyze
from cifar10_prune.pruning.layers import EmptyConv2D

KINDS = {"macs": "multiply-adds", "params": "parameters"}


@dataclasses.dataclass(frozen=True)
class Costs:
    """Multiply-adds per input (None when a spatial size is unknown) and parameters."""
    macs: object
    params: int

    def get(self, kind):
        return getattr(self, kind)


def _group_zeros(analysis, gammas):
    """[(group index, group, boolean mask of its channels zero in every member)] for the
    prunable groups, given {gamma path: values}: the channels compression removes."""
    out = []
    for index, group in enumerate(analysis.groups):
        if not group.prunable:
            continue
        zero = np.ones(group.width, bool)
        for bn, offset in group.members:
            zero &= gammas[bn.gamma.path][offset:offset + group.width] == 0
        out.append((index, group, zero))
    return out


def _removed_gammas(analysis, gammas):
    """{gamma path: boolean mask} of the members' entries whose channel compression removes."""
    masks = {}
    for _, group, zero in _group_zeros(analysis, gammas):
        for bn, offset in group.members:
            mask = masks.setdefault(bn.gamma.path, np.zeros(len(gammas[bn.gamma.path]), bool))
            mask[offset:offset + group.width] |= zero
    return masks


def _kept_masks(analysis, gammas):
    """(out_keep, in_keep): {layer name: boolean mask of the channels kept}, for the layers of
    the prunable groups, given {gamma path: values}."""
    out_keep, in_keep = {}, {}
    for _, group, zero in _group_zeros(analysis, gammas):
        for layer, offset in group.producers + group.members + group.channelwise:
            mask = out_keep.setdefault(layer.name, np.ones(_width(layer), bool))
            mask[offset:offset + group.width] &= ~zero
        for layer, offset in group.readers:
            mask = in_keep.setdefault(layer.name, np.ones(layer.input.shape[-1], bool))
            mask[offset:offset + group.width] &= ~zero
    return out_keep, in_keep


def _width(layer):
    if isinstance(layer, L.BatchNormalization):
        return layer.moving_mean.shape[0]
    return layer.output.shape[-1]


def member_gammas(model):
    """{gamma path: raw gamma as numpy} of the member batch norms of `model`'s prunable groups."""
    return _gammas(analyze(model))


def _gammas(analysis):
    return {bn.gamma.path: ops.convert_to_numpy(bn.gamma)
            for group in analysis.groups if group.prunable for bn, _ in group.members}


def estimate(model, gammas=None, multiple=1):
    """The `Costs` of the model that compressing `model` would give now: without the channels
    whose gamma is exactly zero in every member of their group.

    Args:
      model: a functional Keras model.
      gammas: optional {gamma path: values} to use instead of the raw gammas (e.g. with some
        channels set to zero); paths not in it read the model's.
      multiple: count the multiply-adds with every prunable layer's input and output widths
        rounded up to a multiple of this (the blocks a CPU computes channels in, e.g. 16);
        parameters are counted exactly.
    """
    values = member_gammas(model)
    values.update(gammas or {})
    return _costs(analyze(model), values, multiple)


def _costs(analysis, gammas, multiple=1):
    """The `Costs` left by the channels zero in every member, given {gamma path: values} for
    every member of `analysis`'s prunable groups (multiply-adds with the pruned widths rounded
    up to `multiple`)."""
    out_keep, in_keep = _kept_masks(analysis, gammas)
    macs, params = 0, 0
    for node in analysis.nodes:
        layer = node.operation
        if not isinstance(layer, keras.layers.Layer):
            continue
        n_out = _count(out_keep, layer.name, node.outputs[0].shape[-1])
        n_in = _count(in_keep, layer.name, node.input_tensors[0].shape[-1]) \
            if node.input_tensors else 0
        if macs is not None:
            macs = _add(macs, _macs(layer, node,
                                    _padded(in_keep, layer.name, n_in, multiple),
                                    _padded(out_keep, layer.name, n_out, multiple)))
        params += _params(layer, n_in, n_out)
    return Costs(macs, params)


def _count(masks, name, default):
    mask = masks.get(name)
    return default if mask is None else int(mask.sum())


def _padded(masks, name, count, multiple):
    """`count` channels of layer `name` rounded up to `multiple` if `masks` prunes them."""
    return _round_up(count, multiple) if name in masks else count


def _round_up(count, multiple):
    return -(-count // multiple) * multiple


def _add(total, term):
    return None if term is None else total + term


def _macs(layer, node, n_in, n_out):
    """Multiply-adds of one call of `layer`, for one input; None when a size is unknown."""
    if isinstance(layer, EmptyConv2D) or not isinstance(layer, (L.Conv2D, L.DepthwiseConv2D,
                                                                L.Dense)):
        return 0
    spatial = node.outputs[0].shape[1:-1]
    if any(d is None for d in spatial):
        return None
    pixels = math.prod(spatial)
    if isinstance(layer, L.DepthwiseConv2D):
        return pixels * math.prod(layer.kernel_size) * n_out  # one input channel per output
    if isinstance(layer, L.Conv2D):
        return pixels * math.prod(layer.kernel_size) * n_in // layer.groups * n_out
    return pixels * n_in * n_out  # Dense on the last axis


def _params(layer, n_in, n_out):
    """Entries of `layer`'s variables once its input / output channels are n_in / n_out."""
    total = 0
    for var in layer.weights:
        shape = list(var.shape)
        if var.name == "kernel" and isinstance(layer, L.DepthwiseConv2D):
            shape[-2] = n_out // layer.depth_multiplier
        elif var.name == "kernel" and isinstance(layer, (L.Conv2D, L.Dense)):
            shape[-2], shape[-1] = n_in // getattr(layer, "groups", 1), n_out
        elif len(shape) == 1 and shape[0] == layer.output.shape[-1]:
            shape[0] = n_out  # bias, or a batch norm's per-channel vectors
        total += math.prod(shape)
    return total


def _needed_scales(analysis, now, before, steps, threshold, rho, within, coupled=()):
    """[(scale, group index, channel)] for every channel of the prunable groups that is not yet
    zero in all members, least demanding first: the factor on lambda its slowest member needs to
    reach zero within `within` steps.

    `threshold` is lr * lambda of the last `steps` steps (a member's threshold is that times its
    rho), `now` / `before` the gammas at their end / start ({path: values}; `before` None: no
    push known). A member that shrank by less than its threshold was pushed back by the
    gradient by the difference, per step; it needs threshold * rho * scale = push + |gamma| /
    within. A group the optimizer thresholds as one (`coupled`, as `ISTA` takes it) is one
    member to this rule: its channel's norm over the members, with their rho summed. Channels
    with an unpenalized member never get there and are left out."""
    joint = {frozenset((path, offset) for path, offset, _ in group) for group in coupled}
    out = []
    for index, group in enumerate(analysis.groups):
        if not group.prunable:
            continue
        need = np.zeros(group.width)
        for r, size, start in _shrinking(group, now, before, rho, joint):
            push = 0.0
            if start is not None:
                push = np.maximum(threshold * r - (start - size) / steps, 0.0)
            member = np.where(size > 0, (push + size / within) / (threshold * r), 0.0) \
                if r > 0 else np.where(size > 0, np.inf, 0.0)
            need = np.maximum(need, member)
        out += [(n, index, c) for c, n in enumerate(need) if 0 < n < np.inf]
    return sorted(out)


def _shrinking(group, now, before, rho, joint):
    """[(rho, size now, size before or None)] of what the threshold shrinks in `group`: each
    member's |gamma|, or the members' norm when the optimizer thresholds them as one."""
    members = [(bn.gamma.path, offset) for bn, offset in group.members]
    def size(gammas, path, offset):
        return np.abs(gammas[path][offset:offset + group.width])
    if frozenset(members) in joint:
        def norm(gammas):
            return np.sqrt(sum(size(gammas, p, o) ** 2 for p, o in members))
        return [(sum(rho.get(p, 0.0) for p, _ in members), norm(now),
                 None if before is None else norm(before))]
    return [(rho.get(p, 0.0), size(now, p, o), None if before is None else size(before, p, o))
            for p, o in members]


def _with(analysis, gammas, channels, value):
    """A copy of {gamma path: values} with `channels` [(group index, channel)] set to `value` in
    every member of their group (0: removed; 1, say: kept)."""
    out = {path: values.copy() for path, values in gammas.items()}
    for index, channel in channels:
        for bn, offset in analysis.groups[index].members:
            out[bn.gamma.path][offset + channel] = value
    return out


class Budget(keras.callbacks.Callback):
    """Adapt lambda until the current zeros leave at most `target_macs` of the dense model's
    multiply-adds and / or `target_params` of its parameters, then hold those zeros for the rest
    of training, or stop it (see the module docstring for the rule).

        optimizer = pruning.ISTA(0.1, l1_penalty=0.005, penalties=pruning.penalties(model),
                                 adaptive=True)
        model.compile(optimizer=optimizer, ...)
        budget = pruning.Budget(target_macs=0.5, max_steps=10_000)  # met by step 10,000
        model.fit(..., epochs=30, callbacks=[budget])   # then trains on with the zeros held
        slim = pruning.compress(model)

    Args:
      target_macs, target_params: fractions in (0, 1] of the dense model's multiply-adds /
        parameters; at least one. Both: met when both are.
      dense: the dense model's `Costs` the fractions are of; by default the model's own when
        training begins (give it when training resumes a model already partly pruned, counted
        with the same `channel_multiple`: `estimate(dense_model, multiple=...)`).
      max_steps: the global step (`optimizer.iterations`) by which the target should be met;
        by default half-way through this `fit` (epochs x steps per epoch / 2). The steps after
        it train the slim channels, and leave the controller room to catch up if it is late
        (docs/quick_start.md measured both).
      hold: once met, train on with the zeros held (True), or stop training (False).
      check_every: steps between checks (and log lines).
      watch_every: steps between tests whether the budget is met, between the checks (the
        zeros can overshoot the target by what they gain in this many steps). Keras calls the
        callback after every `steps_per_execution` steps; a test costs milliseconds.
      channel_multiple: count multiply-adds with the pruned widths rounded up to a multiple of
        this (`estimate`), so the budget is of what the CPU computes: 16 for float32 on
        AVX-512 (oneDNN), 1 (the default) for the plain count. A channel then saves only
        when its layer's width crosses a multiple, and only such savings are held.
      aim: the fraction of the steps left (in (0, 1]) within which the threshold alone would
        bring the last channel that must go to zero, at the lambda the controller sets.
      max_scale: lambda is never raised beyond this many times its initial value.
      optimizer: the `ISTA(adaptive=True)` to steer; by default the model's.
      log: where the lines go (`print`; None: nowhere).

    Attributes, after training: `met_at` (the step it was met, None if not), `fraction` (the
    last fractions, {"macs": ..., "params": ...} for the targets given).
    """

    def __init__(self, target_macs=None, target_params=None, dense=None, max_steps=None,
                 check_every=100, watch_every=10, channel_multiple=1, aim=0.5, max_scale=16.0,
                 hold=True, optimizer=None, log=print):
        super().__init__()
        self.targets = {k: v for k, v in (("macs", target_macs), ("params", target_params))
                        if v is not None}
        if not self.targets:
            raise ValueError("Budget needs target_macs or target_params (a fraction of the dense "
                             "model, e.g. target_macs=0.5)")
        for kind, value in self.targets.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 < value <= 1:
                raise ValueError("target_%s must be a fraction in (0, 1] of the dense model's %s, "
                                 "e.g. 0.5; got %r" % (kind, KINDS[kind], value))
        if isinstance(aim, bool) or not isinstance(aim, (int, float)) or not 0 < aim <= 1:
            raise ValueError("aim must be a fraction in (0, 1] of the steps left, e.g. 0.5; "
                             "got %r" % (aim,))
        for name, value, what in (("check_every", check_every, "steps"),
                                  ("watch_every", watch_every, "steps"),
                                  ("channel_multiple", channel_multiple, "channels")):
            if isinstance(value, bool) or not (isinstance(value, int) and value >= 1):
                raise ValueError("%s must be a whole number of %s >= 1, got %r"
                                 % (name, what, value))
        self.dense, self.max_steps, self.check_every = dense, max_steps, check_every
        self.watch_every, self.multiple = watch_every, channel_multiple
        self.aim, self.max_scale, self.hold = float(aim), float(max_scale), bool(hold)
        self.optimizer, self.log = optimizer, log or (lambda line: None)
        self.met_at, self.fraction = None, {}
        self._analysis = None  # the model's groups, found once
        self._last = None  # (step, gammas, lr * lambda) at the previous check
        self._watched = None  # the step of the last look (check or watch)

    # --- the decision, testable without training ---------------------------------------------

    def fractions(self, costs):
        """{kind: costs.kind / dense.kind} for the targets given."""
        return {kind: costs.get(kind) / self.dense.get(kind) for kind in self.targets}

    def _fractions_of(self, gammas):
        """The fractions left by the channels zero in every member, given {gamma path: values}
        (multiply-adds counted in blocks of `channel_multiple`)."""
        return self.fractions(_costs(self._analysis, gammas, self.multiple))

    def met(self, fractions):
        return all(fractions[k] <= t for k, t in self.targets.items())

    def check(self, step):
        """Look at the model at global step `step`: stop training if the budget is met, else
        raise lambda to what the channels that must still go need (or hold it). Returns the
        log line."""
        if self._analysis is None:
            self._analysis = analyze(self.model)
        gammas = _gammas(self._analysis)
        self.fraction = self._fractions_of(gammas)
        now = self._describe(self.fraction)
        if self.met(self.fraction):
            return self._met(step, now, gammas)
        line = "budget: step %d, the current zeros leave %s" % (step, now)
        left = self.max_steps - step
        lr = self._learning_rate()
        threshold = lr * self._lambda()
        last, self._last = self._last, (step, gammas, threshold)
        # Past the step it should have been met by: aim at the next check.
        within = max(1, int(self.aim * left)) if left > 0 else self.check_every
        before, steps, applied = None, 1, threshold
        if last is not None and last[0] < step:
            steps, before, applied = step - last[0], last[1], last[2]
        needs = _needed_scales(self._analysis, gammas, before, steps, applied,
                               self.optimizer.penalties, within, self.optimizer.coupled)
        needed = self._fewest(gammas, needs)
        if needed is None:
            return line
        count, need = needed
        # `need` is relative to the lambda of the last interval; penalty_scale to the initial.
        scale = need * applied / (lr * self.optimizer.l1_penalty)
        line += "; %d more channel%s must go, the last at lambda %.4g by step %d" % (
            count, "s"[:count != 1], scale * self.optimizer.l1_penalty, step + within)
        return line + "; " + self._raise_to(scale)

    def _met(self, step, now, gammas):
        """Record the budget met at `step` (or earlier: the step the held zeros date from), then
        hold the zeros that compression removes (the other gammas, zero or not, train freely)
        or stop training."""
        held = self._held_since()
        self.met_at = step if held is None else held
        if not self.hold:
            self.model.stop_training = True
            return ("budget met at step %d: the current zeros leave %s; the stage stops "
                    "sparsifying" % (step, now))
        if held is not None:  # a resumed stage: what it holds is decided
            return ("budget met at step %d: the held zeros leave %s; the stage trains on with "
                    "them" % (held, now))
        held, channels = self._fewest_to_hold(gammas)
        held_set = set(held)
        freed = [c for c in channels if c not in held_set]
        kept = _with(self._analysis, gammas, freed, 1.0)
        self.fraction = self._fractions_of(kept)
        self.optimizer.hold(step, _removed_gammas(self._analysis, kept))
        self._restart(freed)
        return ("budget met at step %d: the current zeros leave %s; the stage stops sparsifying "
                "and trains on with %d of the %d channels they remove held at zero (those that "
                "cost most, enough for %s)%s" % (
                    step, now, len(held), len(channels),
                    self._describe(self.fraction, targets=False),
                    ", the other %d restarted" % len(freed) if freed else ""))

    def _restart(self, freed):
        """Give the freed zero channels [(group index, channel)] a gamma again: in every member,
        the smallest nonzero |gamma| of its batch norm (as weak as the weakest channel that
        stays), and a negative beta 0. At gamma 0 the channel is the constant ReLU(beta): with
        beta < 0 no gradient reaches it, and freed without this it stayed zero (the quick
        start's 32 freed channels all did) and went at compression."""
        values = {}  # batch norm name: (layer, new gamma, new beta)
        for index, channel in freed:
            for bn, offset in self._analysis.groups[index].members:
                _, gamma, beta = values.setdefault(bn.name, (
                    bn, ops.convert_to_numpy(bn.gamma).copy(),
                    None if bn.beta is None else ops.convert_to_numpy(bn.beta).copy()))
                alive = np.abs(gamma[gamma != 0])
                gamma[offset + channel] = alive.min() if alive.size else 1.0
                if beta is not None:
                    beta[offset + channel] = max(beta[offset + channel], 0.0)
        for bn, gamma, beta in values.values():
            bn.gamma.assign(gamma)
            if beta is not None:
                bn.beta.assign(beta)

    def _fewest_to_hold(self, gammas):
        """Of the channels the current zeros remove, the fewest that meet the budget: those
        that save the most of the targets' costs each come first (a check can find more zeros
        than needed: the rest are freed to train again). Returns (the channels to hold, all the
        channels the zeros remove), as [(group index, channel)]."""
        base = _costs(self._analysis, gammas)  # exact counts: with a multiple most save 0
        channels = [(i, c) for i, _, zero in _group_zeros(self._analysis, gammas)
                    for c in np.flatnonzero(zero)]

        def saving(channel):
            costs = _costs(self._analysis, _with(self._analysis, gammas, [channel], 1.0))
            return sum((costs.get(k) - base.get(k)) / self.dense.get(k) for k in self.targets)

        channels.sort(key=saving, reverse=True)
        count = self._smallest_count(0, len(channels), lambda n: _with(
            self._analysis, gammas, channels[n:], 1.0))
        held = channels[:count]
        if self.multiple > 1:
            trimmed = self._trimmed(held)
            still_held = set(trimmed)
            if self.met(self._fractions_of(_with(self._analysis, gammas, [
                    c for c in channels if c not in still_held], 1.0))):
                held = trimmed  # (not so when a layer reads several groups)
        return held, channels

    def _trimmed(self, held):
        """`held` [(group index, channel)] less, in each group, the channels that do not take
        its width across a multiple of `channel_multiple` (16 - 5 = 11 channels cost what 16
        do: those 5 go free; 64 - 20 = 44 cost what 48 do: 16 of the 20 stay held)."""
        by_group = {}
        for index, channel in held:
            by_group.setdefault(index, []).append((index, channel))
        trimmed = []
        for index, channels in by_group.items():
            width = self._analysis.groups[index].width
            trimmed += channels[:width - min(width, _round_up(width - len(channels),
                                                              self.multiple))]
        return trimmed

    def _held_since(self):
        since = float(ops.convert_to_numpy(self.optimizer.zeros_held_since))
        return None if since < 0 else int(since)

    def _fewest(self, gammas, needs):
        """(count, need): the fewest least demanding channels whose removal would meet the
        targets (all of them if even that misses) and the need of the last; None when no
        channel can go."""
        if not needs:
            return None
        count = self._smallest_count(1, len(needs), lambda n: _with(
            self._analysis, gammas, [(i, c) for _, i, c in needs[:n]], 0.0))
        return count, needs[count - 1][0]

    def _smallest_count(self, lo, hi, gammas_with):
        """The smallest n in [lo, hi] for which the gammas `gammas_with(n)` (n more channels
        zero, so costs fall as n grows) meet the targets; hi if none does. By bisection."""
        while lo < hi:
            mid = (lo + hi) // 2
            if self.met(self._fractions_of(gammas_with(mid))):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _learning_rate(self):
        return float(ops.convert_to_numpy(self.optimizer.learning_rate))

    def _describe(self, fractions, targets=True):
        blocks = " in blocks of %d channels" % self.multiple if self.multiple > 1 else ""
        return ", ".join("%.1f%% of the dense %s%s%s" % (100 * f, KINDS[k],
                                                        blocks if k == "macs" else "",
                                                        " (target %.1f%%)" % (100 * self.targets[k])
                                                        if targets else "")
                         for k, f in fractions.items())

    def _lambda(self):
        return self.optimizer.l1_penalty * float(ops.convert_to_numpy(self.optimizer.penalty_scale))

    def _raise_to(self, scale):
        """Raise penalty_scale to `scale` (capped at max_scale; never lowered)."""
        now = float(ops.convert_to_numpy(self.optimizer.penalty_scale))
        new = min(scale, self.max_scale)
        if new <= now:
            if scale > now:
                return "lambda stays at its ceiling %.4g (max_scale %g)" % (self._lambda(),
                                                                          self.max_scale)
            return "lambda held at %.4g" % self._lambda()
        before = self._lambda()
        self.optimizer.penalty_scale.assign(new)
        return "lambda raised %.4g -> %.4g" % (before, self._lambda())

    # --- the Keras callback ------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.optimizer = self.optimizer or self.model.optimizer
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # loss scaling
        if not getattr(optimizer, "adaptive", False) or not optimizer.l1_penalty:
            raise ValueError("Budget steers the lambda of pruning.ISTA(..., l1_penalty > 0, "
                             "adaptive=True); the optimizer is %r (adaptive %s, l1_penalty %s)"
                             % (optimizer, getattr(optimizer, "adaptive", None),
                                getattr(optimizer, "l1_penalty", None)))
        if not optimizer.built:  # fit builds it at its first step; the scale is needed now
            optimizer.build(self.model.trainable_variables)
        self.optimizer = optimizer
        if self.dense is None:
            self.dense = estimate(self.model, multiple=self.multiple)
        if "macs" in self.targets and (self.dense.macs is None or not self.dense.macs):
            raise ValueError("target_macs needs the multiply-adds of the model, which depend on "
                             "an input size this model does not know: build it with "
                             "keras.Input((H, W, C)), or give target_params")
        if self.max_steps is None:
            steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
            if not steps or not epochs:
                raise ValueError("Budget needs max_steps when fit does not know its number of "
                                 "steps (give steps_per_epoch)")
            self.max_steps = (int(ops.convert_to_numpy(self.optimizer.iterations))
                              + max(1, steps * epochs // 2))
        self.met_at, self._analysis, self._last = None, analyze(self.model), None
        self._step(force=True)

    def on_train_batch_end(self, batch, logs=None):
        self._step()

    def on_train_end(self, logs=None):
        if self.met_at is not None:
            return
        step = int(ops.convert_to_numpy(self.optimizer.iterations))
        self.fraction = self.fractions(estimate(self.model, multiple=self.multiple))
        if self.met(self.fraction):  # at a last step no check saw
            self._analysis = self._analysis or analyze(self.model)
            self.log(self._met(step, self._describe(self.fraction), _gammas(self._analysis)))
            return
        over = ", ".join("%.1f points above the target %.1f%%"
                         % (100 * (self.fraction[k] - t), 100 * t)
                         for k, t in self.targets.items() if self.fraction[k] > t)
        self.log("budget missed: training ended at step %d (to be met by step %d) with %s: %s"
                 % (step, self.max_steps, self._describe(self.fraction, targets=False), over))

    def _step(self, force=False):
        if self.met_at is not None and not force:
            return  # held: the zeros cannot change
        step = int(ops.convert_to_numpy(self.optimizer.iterations))
        due = force or step % self.check_every == 0 or step == self.max_steps
        if not due and self._watched is not None and step - self._watched < self.watch_every:
            return
        self._watched = step
        if due or self.met(self._fractions_of(_gammas(self._analysis))):
            self.log(self.check(step))
