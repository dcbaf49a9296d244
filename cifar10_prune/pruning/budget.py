"""Prune to a budget: a Keras callback that adapts lambda during the sparsifying training
until the channels whose gammas are zero leave at most a given fraction of the dense model's
multiply-adds or parameters (`Budget`), counted as `estimate` counts them.

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
import numpy as np
import keras
from keras import ops

from cifar10_prune.pruning import counting
from cifar10_prune.pruning.groups import analyze

KINDS = {"macs": "multiply-adds", "params": "parameters"}


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
        with the same `channel_multiple`: `pruning.estimate(dense_model, multiple=...)`).
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
        return self.fractions(counting.costs(self._analysis, gammas, self.multiple))

    def met(self, fractions):
        return all(fractions[k] <= t for k, t in self.targets.items())

    def check(self, step):
        """Look at the model at global step `step`: stop training if the budget is met, else
        raise lambda to what the channels that must still go need (or hold it). Returns the
        log line."""
        if self._analysis is None:
            self._analysis = analyze(self.model)
        gammas = counting.gammas_of(self._analysis)
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
        self.optimizer.hold(step, counting.removed_gammas(self._analysis, kept))
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
        base = counting.costs(self._analysis, gammas)  # exact counts: with a multiple most save 0
        channels = [(i, c) for i, _, zero in counting.zero_channels(self._analysis, gammas)
                    for c in np.flatnonzero(zero)]

        def saving(channel):
            costs = counting.costs(self._analysis, _with(self._analysis, gammas, [channel], 1.0))
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
            trimmed += channels[:width - min(width, counting.round_up(width - len(channels),
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
            self.dense = counting.estimate(self.model, multiple=self.multiple)
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
        self.fraction = self.fractions(counting.estimate(self.model, multiple=self.multiple))
        if self.met(self.fraction):  # at a last step no check saw
            self._analysis = self._analysis or analyze(self.model)
            gammas = counting.gammas_of(self._analysis)
            self.log(self._met(step, self._describe(self.fraction), gammas))
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
        if due or self.met(self._fractions_of(counting.gammas_of(self._analysis))):
            self.log(self.check(step))
