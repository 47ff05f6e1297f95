"""joulecast.predictor: the shipped model, the public API and STEP refinement.

Public entry points: :func:`predict`, :func:`predict_many`, :func:`advise`, :func:`refine`, :func:`retrain`, the
:class:`Prediction` value type, and :class:`JoulecastError` (re-exported from ``featurize``).
Imports go one way: ``predictor`` uses ``featurize``, never the reverse.
"""

from __future__ import annotations

import sys
import types

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
    "predict_many": ("predictor.batch", "predict_many"),
    "advise": ("predictor.advise", "advise"),
    "refine": ("predictor.refine", "refine"),
    "retrain": ("predictor.retrain", "retrain"),
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


class _Package(types.ModuleType):
    """``predictor`` itself. Importing a submodule binds it as an attribute of its package, which would
    replace the public functions ``refine`` and ``retrain`` with the modules ``predictor.refine`` and
    ``predictor.retrain`` of the same name (``from predictor import refine`` then gives a module). The
    public names stay the functions; the modules remain importable (``from predictor.refine import ...``,
    ``importlib.import_module("predictor.refine")``)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
