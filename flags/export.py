"""Flags of `python -m cifar10_prune.export` (new: the original has no export)."""
from absl import flags

from cifar10_prune.flags.common import define_checkpoint_source
from cifar10_prune.spec import MODELS
from cifar10_prune.tflite import QUANTIZE_MODES


def define_export_flags(fv=flags.FLAGS):
    flags.DEFINE_enum("model", "resnet20", list(MODELS),
                      "Dense model to build when --is_compressed=false.", flag_values=fv)
    define_checkpoint_source(fv, checkpoint_version=1)
    flags.DEFINE_string("export_dir", None, "Where to write the SavedModel (must not exist).",
                        flag_values=fv)
    flags.mark_flag_as_required("export_dir", flag_values=fv)
    flags.DEFINE_boolean("fold_batch_norms", True,
                         "Fold every batch norm into the conv before it (same outputs, faster "
                         "serving); --nofold_batch_norms exports the network as trained.",
                         flag_values=fv)
    flags.DEFINE_boolean("tflite", False, "Also write model.tflite (float32 unless "
                         "--tflite_quantize) into --export_dir.", flag_values=fv)
    flags.DEFINE_enum("tflite_quantize", "none", ["none"] + list(QUANTIZE_MODES),
                      "Quantization of model.tflite: none (float32) or dynamic (dynamic-range: "
                      "int8 weights, float activations). Needs --tflite.", flag_values=fv)
    flags.register_multi_flags_validator(
        ["tflite", "tflite_quantize"],
        lambda v: v["tflite"] or v["tflite_quantize"] == "none",
        message="--tflite_quantize needs --tflite (it sets how model.tflite is quantized)",
        flag_values=fv)
