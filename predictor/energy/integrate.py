"""The energy of a power trace: the trapezoid integral of piecewise-linear power, in one place.

Every energy computed from power samples in joulecast (the replay device's counter, the sampled-power fallback,
per-epoch energies of a recorded trace, the training table's phase energies) goes through :func:`energy_at_j`.
Times in seconds, power in watts, energy in joules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def cumulative_energy_j(t_s: Sequence[float], power_w: Sequence[float]) -> np.ndarray:
    """Energy from the first sample to each sample (J): the running trapezoid sum, ``[0, ...]``."""
    t, p = np.asarray(t_s, dtype=float), np.asarray(power_w, dtype=float)
    return np.concatenate([[0.0], np.cumsum(np.diff(t) * (p[1:] + p[:-1]) / 2.0)])


def energy_at_j(t_s: Sequence[float], power_w: Sequence[float], at_s: Sequence[float] | float) -> np.ndarray:
    """Energy from the first sample to each time in ``at_s`` (J), exact for power linear between samples.

    ``t_s`` must increase strictly (>= 2 samples) and ``at_s`` lie within ``[t_s[0], t_s[-1]]``; callers check.
    """
    t, p = np.asarray(t_s, dtype=float), np.asarray(power_w, dtype=float)
    at = np.asarray(at_s, dtype=float)
    cum = cumulative_energy_j(t, p)
    i = np.clip(np.searchsorted(t, at, side="right") - 1, 0, t.size - 2)
    return cum[i] + (at - t[i]) * (p[i] + np.interp(at, t, p)) / 2.0


def trace_energy_j(t_s: Sequence[float], power_w: Sequence[float]) -> float:
    """Energy of the whole trace (J); 0 with fewer than two samples."""
    return float(cumulative_energy_j(t_s, power_w)[-1]) if len(t_s) > 1 else 0.0


def window_energy_j(t_s: Sequence[float], power_w: Sequence[float], t0_s: float, t1_s: float) -> float:
    """Energy over ``[t0_s, t1_s]`` (J) of samples in any order, non-finite readings dropped, power held constant
    beyond the first and last sample; NaN with fewer than two samples or an empty window."""
    t, p = np.asarray(t_s, dtype="float64"), np.asarray(power_w, dtype="float64")
    keep = np.isfinite(p)
    t, p = t[keep], p[keep]
    if t.size < 2 or t1_s <= t0_s:
        return math.nan
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    inner = (t > t0_s) & (t < t1_s)
    tt = np.concatenate([[t0_s], t[inner], [t1_s]])
    pp = np.concatenate([[np.interp(t0_s, t, p)], p[inner], [np.interp(t1_s, t, p)]])
    return trace_energy_j(tt, pp)
