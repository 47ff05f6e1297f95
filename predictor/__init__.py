"""joulecast.predictor: the shipped model, the public API and STEP refinement.

Public entry points: :func:`predict`, :func:`predict_many`, :func:`advise`, :func:`refine`, :func:`retrain`, the
:class:`Prediction` value type, and :class:`JoulecastError` (re-exported from ``featurize``).
Imports go one way: ``predictor`` uses ``featurize``, never the reverse.
"""

from __future__ import annotations

from featurize.errors import JoulecastError, ModelArtifactError, NoGPUError, SchemaError
from predictor.prediction import Prediction

__all__ = [
    "predict",
    "predict_many",
    "advise",
    "refine",
    "retrain",
    "Prediction",
    "JoulecastError",
    "ModelArtifactError",
    "SchemaError",
    "NoGPUError",
]

_LAZY = {
    "predict": ("predictor.api", "predict"),
    "predict_many": ("predictor.batch.many", "predict_many"),
    "advise": ("predictor.advice.advise", "advise"),
    "refine": ("predictor.refinement.project", "refine"),
    "retrain": ("predictor.retraining.publish", "retrain"),
}


def __getattr__(name: str):
    # Lazy: `import predictor` must not pull LightGBM/onnx until a function is used.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # bound once: later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'predictor' has no attribute {name!r}")
