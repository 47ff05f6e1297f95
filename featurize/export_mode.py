"""Whether an ONNX graph looks like an inference-mode export of a network that trains differently.

Exporters run a module in eval mode by default and their graph optimizers fold BatchNormalization into the
preceding convolutions (the dynamo exporter's ``optimize=True`` does so even for a module in training mode) and
drop Dropout. Such a graph costs less than the training step it stands for: the BatchNorm layers, their
parameters and the activations they save for backward are gone (the bundled ResNet-18 was 10.6 instead of
20.6 MB of saved activations per sample). :func:`inference_export_note` names the case and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["inference_export_note", "TRAINING_EXPORT_FIX"]

CONV_OPS = frozenset({"Conv", "ConvTranspose", "QLinearConv", "ConvInteger"})
# ops whose presence says the normalisation / regularisation layers are still in the graph
TRAINING_MARKERS = frozenset({
    "BatchNormalization", "Dropout", "LayerNormalization", "GroupNormalization", "InstanceNormalization",
    "SimplifiedLayerNormalization", "SkipLayerNormalization",
})
TRAINING_EXPORT_FIX = (
    "re-export the model in training mode -- torch.onnx.export(model.train(), ..., dynamo=True, optimize=False) "
    "or torch.onnx.export(model.train(), ..., dynamo=False, training=torch.onnx.TrainingMode.TRAINING, "
    "do_constant_folding=False) -- or pass the torch module itself to predict (with example_inputs=)"
)


def inference_export_note(op_types: Iterable[str]) -> str | None:
    """The warning for a convolutional graph without any BatchNormalization, Dropout or other normalisation node
    (the signature of an eval-mode export with BatchNorm folded away); None otherwise."""
    ops = set(op_types)
    if not ops & CONV_OPS or ops & TRAINING_MARKERS:
        return None
    return (
        "featurize: this looks like an inference-mode export (convolutions without any BatchNormalization or "
        "Dropout node: exporters fold BatchNorm into the convolutions and drop Dropout in eval mode), so the "
        "training step's BatchNorm layers and the activations they save are not counted and energy, time and "
        f"memory may be low; {TRAINING_EXPORT_FIX}."
    )
