"""Architecture as data: which model, and how many channels each prunable layer keeps.

A dense model and every pruned model are described by the same small record, so one builder
(`models.build_model`) makes both. The record's JSON text is validated when parsed, never
unpickled; where it lives on disk (a stage's architecture.json) is stages.py's business.
"""
import dataclasses
import json

_FORMAT = "cifar10_prune.architecture"
_FORMAT_VERSION = 1


def _resnet20_units():
    return {"g%db%dc0" % (g + 1, b): w for g, w in enumerate((16, 32, 64)) for b in range(3)}


# Dense width of every prunable layer (the output channels of a conv whose BN gamma is
# penalized), in the order the layers appear in the network.
DENSE_WIDTHS = {
    "resnet20": _resnet20_units(),
    "cnn4": {"conv1": 96, "conv2": 192, "conv3": 192, "fc1": 384},
}
MODELS = tuple(DENSE_WIDTHS)


class ArchitectureError(ValueError):
    """An architecture description that is not one this package can build."""


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """A model name plus the number of channels kept in each prunable layer.

    `widths` maps a unit name (e.g. "g2b1c0" for resnet20, "conv2" for cnn4) to a width between
    0 (the layer is gone) and its dense width.
    """
    model: str
    widths: dict

    def __post_init__(self):
        if self.model not in DENSE_WIDTHS:
            raise ArchitectureError("unknown model %r; choose one of %s"
                                    % (self.model, ", ".join(MODELS)))
        dense = DENSE_WIDTHS[self.model]
        if not isinstance(self.widths, dict) or set(self.widths) != set(dense):
            got = sorted(self.widths) if isinstance(self.widths, dict) else self.widths
            raise ArchitectureError("%s needs a width for exactly the layers %s; got %s"
                                    % (self.model, ", ".join(dense), got))
        for unit, width in self.widths.items():
            if isinstance(width, bool) or not isinstance(width, int) or not 0 <= width <= dense[unit]:
                raise ArchitectureError("width of %s must be an integer from 0 to %d; got %r"
                                        % (unit, dense[unit], width))
        # Keep the canonical layer order whatever order the caller used.
        object.__setattr__(self, "widths", {u: self.widths[u] for u in dense})

    @classmethod
    def dense(cls, model):
        """The unpruned architecture of `model` ("resnet20" or "cnn4")."""
        if model not in DENSE_WIDTHS:
            raise ArchitectureError("unknown model %r; choose one of %s" % (model, ", ".join(MODELS)))
        return cls(model, dict(DENSE_WIDTHS[model]))

    @property
    def dense_widths(self):
        return DENSE_WIDTHS[self.model]

    def to_json(self, **extra):
        """JSON text of this spec; `extra` keys (e.g. provenance) are stored alongside."""
        record = {"format": _FORMAT, "version": _FORMAT_VERSION, "model": self.model,
                  "widths": self.widths}
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
        if record.get("version") != _FORMAT_VERSION:
            raise ArchitectureError("%s has format version %r; this package reads version %d"
                                    % (origin, record.get("version"), _FORMAT_VERSION))
        try:
            return cls(record.get("model"), record.get("widths"))
        except ArchitectureError as e:
            raise ArchitectureError("%s: %s" % (origin, e)) from None


def width_table(before, after):
    """Lines like `g2b1c0: 32 -> 21` comparing two specs of the same model."""
    return ["%s: %d -> %d" % (u, before.widths[u], after.widths[u]) for u in before.widths]
