"""The project's error hierarchy: one root, :class:`JoulecastError`, and a few subclasses.

Each subclass also derives from the builtin it refines, so callers that already catch ``KeyError``
or ``ValueError`` keep working. Every message says what went wrong, why, and how to fix it.
``predictor`` re-exports all of these; nothing else in the project defines its own root error.
"""

from __future__ import annotations


class JoulecastError(Exception):
    """Root of every error joulecast raises on purpose."""


class InvalidInputError(JoulecastError, ValueError):
    """An argument has a bad value (e.g. ``batch_size=0``); the message names the argument."""


class GraphLoadError(JoulecastError, ValueError):
    """A model graph could not be read: missing file, not ONNX, truncated or invalid graph."""


class UnboundDimensionError(JoulecastError, ValueError):
    """A symbolic tensor dimension has no value; bind it with ``dims=`` or ``input_shapes=``."""


class ShapeResolutionError(UnboundDimensionError):
    """Tensor shapes stay unknown and measuring them would run too large a graph; pass ``input_shapes=``
    / ``dims=`` or export with static shapes."""


class UnsupportedOpError(JoulecastError, ValueError):
    """An op (or op domain) the featurizer cannot cost and that cannot be skipped."""


class UnknownGPUError(JoulecastError, KeyError):
    """A GPU name that is not in the hardware table; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError would repr() the message and add quotes
        return str(self.args[0]) if self.args else ""


class SchemaError(JoulecastError, ValueError):
    """A table (measurement CSV, source file, manifest) is missing columns or has bad values."""


class ModelArtifactError(JoulecastError, RuntimeError):
    """A model directory is missing files, tampered with (hash mismatch) or incompatible."""


class MissingExtraError(JoulecastError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class NoGPUError(JoulecastError, RuntimeError):
    """NVML found no NVIDIA GPU (or NVML itself is missing) where a live measurement was asked for."""


def require(module: str, *, extra: str, purpose: str):
    """Import an optional dependency or raise :class:`MissingExtraError` naming the extra.

    Args:
        module: importable module name, e.g. ``"torch"``.
        extra: the ``joulecast[...]`` extra that installs it.
        purpose: what the caller needs it for, shown in the message.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{purpose} needs the optional package '{module}'; install it with "
            f"`pip install 'joulecast[{extra}]'`."
        ) from err


class UnsupportedPrecisionError(InvalidInputError):
    """A precision the framework refuses on the GPU (fp8 without FP8 tensor cores, e.g. on an A100); the message
    lists the precisions it runs and the opt-in (``precision_fallback=True``) to price the nearest precision a
    framework would pick."""
