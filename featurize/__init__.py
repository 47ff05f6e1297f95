"""joulecast.featurize: model graphs and GPUs in, numeric features out (pure; no model, no I/O beyond reading inputs).

Public entry points: :func:`featurize` (ONNX path/bytes/ModelProto or torch module -> :class:`GraphFeatures`),
:func:`lookup_gpu` (name -> :class:`GPUSpec`), and the error types rooted at :class:`JoulecastError`.
"""

from __future__ import annotations

from featurize.errors import (
    GraphLoadError,
    InvalidInputError,
    JoulecastError,
    MissingExtraError,
    ModelArtifactError,
    NoGPUError,
    SchemaError,
    UnboundDimensionError,
    UnknownGPUError,
    UnsupportedPrecisionError,
)
from featurize.types import GPUSpec, GraphFeatures

__all__ = [
    "featurize",
    "lookup_gpu",
    "GraphFeatures",
    "GPUSpec",
    "JoulecastError",
    "UnknownGPUError",
    "GraphLoadError",
    "InvalidInputError",
    "UnboundDimensionError",
    "UnsupportedPrecisionError",
    "SchemaError",
    "ModelArtifactError",
    "MissingExtraError",
    "NoGPUError",
]


def __getattr__(name: str):
    # Lazy so that `import featurize` stays cheap and modules load only when used.
    if name == "featurize":
        from featurize.graph.walk import featurize

        return featurize
    if name == "lookup_gpu":
        from featurize.hardware.table import lookup_gpu

        return lookup_gpu
    raise AttributeError(f"module 'featurize' has no attribute {name!r}")
