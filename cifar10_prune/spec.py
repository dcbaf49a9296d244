"""Architecture as data: which model, and how many channels each prunable layer keeps.

A dense model and every pruned model are described by the same small record, so one builder
(`models.build_model`) makes both. The record's JSON text is validated when parsed, never
unpickled; where it lives on disk (a stage's architecture.json) is stages.py's business.
"""
import dataclasses
import json

_FORMAT = "cifar10_prune.architecture"
# Version 2 records `block_outputs` (issue 17); it is written only when that is on, so the files
# of the paper's pattern stay version 1, byte for byte, and both versions are read.
_FORMAT_VERSION = 1
_BLOCK_OUTPUTS_VERSION = 2
_VERSIONS = (_FORMAT_VERSION, _BLOCK_OUTPUTS_VERSION)


def _resnet20_units():
    return {"g%db%dc0" % (g + 1, b): w for g, w in enumerate((16, 32, 64)) for b in range(3)}


# Dense width of every prunable layer (the output channels of a conv whose BN gamma is
# penalized), in the order the layers appear in the network.
DENSE_WIDTHS = {
    "resnet20": _resnet20_units(),
    "cnn4": {"conv1": 96, "conv2": 192, "conv3": 192, "fc1": 384},
}
MODELS = tuple(DENSE_WIDTHS)

# With block outputs pruned (`--prune_block_outputs`), the dense width of each stage of
# resnet20's residual stream: the stem (or the stage's strided shortcut), the last conv of every
# block and the adds, coupled channel by channel. A stage's width is keyed by the conv whose
# batch norm starts its channel group in the graph (`pruning.Group.unit`): the stem's for stage 1,
# the first block's shortcut for stages 2 and 3.
BLOCK_OUTPUT_WIDTHS = {"resnet20": {"first_conv": 16, "g2b0shortcut": 32, "g3b0shortcut": 64}}


class ArchitectureError(ValueError):
    """An architecture description that is not one this package can build."""


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A model name plus the number of channels kept in each prunable layer.

    `widths` maps a unit name (e.g. "g2b1c0" for resnet20, "conv2" for cnn4) to a width between
    0 (the layer is gone) and its dense width. With `block_outputs` (resnet20 only) the batch
    norms of the residual stream have gammas and are pruned too: `widths` then also holds the
    width of each stage (`BLOCK_OUTPUT_WIDTHS`), from 1 to its dense width (a stage of no
    channel would leave the classifier nothing to read).
    """
    model: str
    widths: dict
    block_outputs: bool = False

    def __post_init__(self):
        if self.model not in DENSE_WIDTHS:
            raise ArchitectureError("unknown model %r; choose one of %s"
                                    % (self.model, ", ".join(MODELS)))
        if not isinstance(self.block_outputs, bool):
            raise ArchitectureError("block_outputs must be true or false; got %r"
                                    % (self.block_outputs,))
        if self.block_outputs and self.model not in BLOCK_OUTPUT_WIDTHS:
            raise ArchitectureError("block outputs can be pruned only in %s; %s has no residual "
                                    "stream" % (", ".join(BLOCK_OUTPUT_WIDTHS), self.model))
        dense = self.dense_widths
        if not isinstance(self.widths, dict) or set(self.widths) != set(dense):
            got = sorted(self.widths) if isinstance(self.widths, dict) else self.widths
            raise ArchitectureError("%s needs a width for exactly the layers %s; got %s"
                                    % (self.model, ", ".join(dense), got))
        for unit, width in self.widths.items():
            if isinstance(width, bool) or not isinstance(width, int) or not 0 <= width <= dense[unit]:
                raise ArchitectureError("width of %s must be an integer from 0 to %d; got %r"
                                        % (unit, dense[unit], width))
            if width == 0 and unit in self.stage_units:
                raise ArchitectureError("width of %s (a whole stage of the residual stream) must "
                                        "be at least 1; got 0" % unit)
        # Keep the canonical layer order whatever order the caller used.
        object.__setattr__(self, "widths", {u: self.widths[u] for u in dense})

    @classmethod
    def dense(cls, model, block_outputs=False):
        """The unpruned architecture of `model` ("resnet20" or "cnn4"); with `block_outputs`,
        the one whose residual stream is prunable too (resnet20 only)."""
        if model not in DENSE_WIDTHS:
            raise ArchitectureError("unknown model %r; choose one of %s" % (model, ", ".join(MODELS)))
        widths = dict(DENSE_WIDTHS[model])
        if block_outputs:
            if model not in BLOCK_OUTPUT_WIDTHS:
                raise ArchitectureError("block outputs can be pruned only in %s, not %s"
                                        % (", ".join(BLOCK_OUTPUT_WIDTHS), model))
            widths.update(BLOCK_OUTPUT_WIDTHS[model])
        return cls(model, widths, block_outputs)

    def unpruned(self):
        """The dense architecture this one was pruned from (same model and block_outputs)."""
        return ArchSpec.dense(self.model, self.block_outputs)

    @property
    def stage_units(self):
        """The units of the residual stream's stages ({} unless block_outputs)."""
        return BLOCK_OUTPUT_WIDTHS[self.model] if self.block_outputs else {}

    @property
    def dense_widths(self):
        return {**DENSE_WIDTHS[self.model], **self.stage_units}

    def to_json(self, **extra):
        """JSON text of this spec; `extra` keys (e.g. provenance) are stored alongside. Without
        block_outputs it is the version-1 record, unchanged."""
        record = {"format": _FORMAT, "version": _FORMAT_VERSION, "model": self.model,
                  "widths": self.widths}
        if self.block_outputs:
            record.update(version=_BLOCK_OUTPUTS_VERSION, block_outputs=True)
        record.update(extra)
        return json.dumps(record, indent=2) + "\n"

    @classmethod
    def from_json(cls, text, origin="<string>"):
        """Parse and validate JSON written by `to_json`; errors name `origin`."""
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArchitectureError("%s is not valid JSON (%s)" % (origin, e))
        return cls.from_record(record, origin)

    @classmethod
    def from_record(cls, record, origin="<string>"):
        """Validate a record parsed from `to_json`'s text (extra keys are ignored); errors name
        `origin`."""
        if not isinstance(record, dict) or record.get("format") != _FORMAT:
            raise ArchitectureError("%s is not a cifar10_prune architecture file (no "
                                    "\"format\": %r)" % (origin, _FORMAT))
        version = record.get("version")
        if version not in _VERSIONS:
            raise ArchitectureError("%s has format version %r; this package reads versions %s"
                                    % (origin, version, " and ".join(map(str, _VERSIONS))))
        block_outputs = record.get("block_outputs", False)
        if block_outputs and version < _BLOCK_OUTPUTS_VERSION:
            raise ArchitectureError("%s: block_outputs needs format version %d, the file says %r"
                                    % (origin, _BLOCK_OUTPUTS_VERSION, version))
        try:
            return cls(record.get("model"), record.get("widths"), block_outputs)
        except ArchitectureError as e:
            raise ArchitectureError("%s: %s" % (origin, e)) from None


def width_table(before, after):
    """Lines like `g2b1c0: 32 -> 21` comparing two specs of the same model."""
    return ["%s: %d -> %d" % (u, before.widths[u], after.widths[u]) for u in before.widths]
