"""Refinement from a power trace: per-epoch energies integrated from (timestamps, watts), then refine."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from featurize.errors import InvalidInputError
from predictor.energy.integrate import energy_at_j
from predictor.prediction import Prediction
from predictor.refinement.phases import PRIOR_RHO
from predictor.refinement.project import refine


def epoch_energies_from_trace(
    timestamps_s: Sequence[float], power_w: Sequence[float], epoch_end_s: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-epoch energy (J, trapezoid) and time (s) of a power trace cut at ``epoch_end_s``.

    The first epoch starts at the first timestamp; the trace is linearly interpolated at each boundary.
    """
    t = np.asarray(timestamps_s, dtype=float)
    p = np.asarray(power_w, dtype=float)
    ends = np.asarray(epoch_end_s, dtype=float)
    if t.ndim != 1 or p.ndim != 1 or t.size != p.size:
        raise InvalidInputError(
            f"timestamps_s and power_w must be flat and of equal length; got {t.shape} and {p.shape}."
        )
    if t.size < 2:
        raise InvalidInputError("the power trace needs at least two samples to integrate.")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise InvalidInputError("the power trace contains NaN/inf timestamps or power; drop those samples.")
    if np.any(p < 0):
        raise InvalidInputError(f"power_w has negative values (min {p.min():g} W); power must be >= 0 W.")
    steps = np.diff(t)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise InvalidInputError(
            f"timestamps_s must increase strictly: sample {i + 1} ({t[i + 1]:g} s) is not after sample {i} "
            f"({t[i]:g} s); sort the trace and drop duplicates."
        )
    if ends.ndim != 1 or ends.size == 0 or not np.all(np.isfinite(ends)):
        raise InvalidInputError("epoch_end_s must be a non-empty flat sequence of finite times (s).")
    if np.any(np.diff(ends) <= 0) or ends[0] <= t[0]:
        raise InvalidInputError("epoch_end_s must increase strictly and come after the trace's first sample.")
    if ends[-1] > t[-1] + 1e-9:
        raise InvalidInputError(
            f"epoch end {ends[-1]:g} s is outside the trace ({t[0]:g}..{t[-1]:g} s); "
            f"pass epoch ends within the recorded trace."
        )
    bounds = np.concatenate([[t[0]], ends])
    return np.diff(energy_at_j(t, p, bounds)), np.diff(bounds)


def refine_from_trace(
    prior: Prediction,
    *,
    timestamps_s: Sequence[float],
    power_w: Sequence[float],
    epoch_end_s: Sequence[float],
    total_epochs: int | None = None,
    max_epochs: int | None = None,
    phases: Sequence[int] | None = None,
    phase_priors: Sequence[Prediction] | None = None,
    prior_rho: float = PRIOR_RHO,
) -> Prediction:
    """Like :func:`refine`, from a power trace (s, W) and the end time (s) of each finished epoch."""
    energies, times = epoch_energies_from_trace(timestamps_s, power_w, epoch_end_s)
    return refine(
        prior,
        epoch_energies_j=energies,
        epoch_times_s=times,
        total_epochs=total_epochs,
        max_epochs=max_epochs,
        phases=phases,
        phase_priors=phase_priors,
        prior_rho=prior_rho,
    )
