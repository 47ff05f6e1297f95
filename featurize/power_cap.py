"""Power limits: what a board does when its power cap is set below what the training job draws.

Public entry points:

* :class:`PowerCapCurve` -- the learned constants of the response (a typed record the model's prior spec
  carries, :mod:`predictor.model.spec`); :data:`DEFAULT_CURVE` is the fit on the Zeus sweeps
  (``training_data/fit_power_cap.py``).
* :func:`capped_power_w` -- average board power under a cap; :func:`clock_ratio` -- the sustained clock that power
  buys; :func:`time_stretch` -- the step time at that clock; :func:`apply_power_cap` -- all three, vectorised.
* :func:`optimal_power_limit_w` -- the cap that minimises energy within a given slowdown (Zeus measures it; we
  forecast it from the curve).

The response, per row, for an uncapped forecast (time ``t0``, average draw ``p0``) and a cap ``c`` (the API
contract, ``../shared/docs/API.md``: a cap at or above the predicted draw changes nothing; below it, power is the cap
and time stretches)::

    power     p = min(p0, c)
    clock     P(f) = P_s + (p0 - P_s) x g(f / f0),  P_s = STATIC x TDP (leakage, memory, fans: no clock term)
              g(r) = r^3 above the knee clock K (dynamic power ~ f V^2, V ~ f), K^2 r below it (voltage at its
              floor: power ~ f, so the clock falls faster per watt); r >= MIN_CLOCK
    time      t = t0 x (max(t_arith / r, t_memory) + t_other) / (max(t_arith, t_memory) + t_other)
              (arithmetic follows the core clock; DRAM-bound kernels and host/launch overhead do not)

Energy ``p x t`` then has Zeus's shape: falling as the cap comes down on compute-bound work until the static
power's share makes the slower clock cost more than it saves (an interior minimum), and falling all the way on
memory-bound work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from featurize.errors import InvalidInputError


@dataclass(frozen=True)
class PowerCapCurve:
    """Learned constants of the power-cap response (see the module docstring)."""

    static_frac_of_tdp: float
    """``P_s / TDP``: board power that does not scale with the core clock."""
    knee_clock: float
    """``K``: clock ratio below which the voltage sits at its floor (power ~ clock)."""
    min_clock: float
    """Lowest sustained clock ratio a cap can force."""
    source: str = ""

    def __post_init__(self) -> None:
        ok = (0.0 <= self.static_frac_of_tdp < 1.0
              and 0.0 < self.knee_clock <= 1.0 and 0.0 < self.min_clock <= self.knee_clock)
        if not ok:
            raise InvalidInputError(f"power-cap curve constants out of range: {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_CURVE = PowerCapCurve(
    static_frac_of_tdp=0.075, knee_clock=0.85, min_clock=0.2,
    source="fit on the Zeus power-limit sweeps (V100 PCIe, P100 PCIe, Quadro RTX 6000; 6 workloads, 991 capped points) "
           "by training_data/fit_power_cap.py: per-point energy error on a held-out GPU, median 5.1 / 4.2 / 5.5 % "
           "(RTX 6000 / P100 / V100); clock ~ power^(1/3) without static power or knee 7.6 % in-sample, 'the cap "
           "changes nothing' 8.7 %")
"""The shipped response (``python -m training_data.fit_power_cap``; grid over the static share 0-0.525 and the knee
0.5-1.0, the clock floor fixed at 0.2). Zeus's measured average power under a binding cap is ~5-12 % below the cap
(training draws in bursts; the limiter clips them): with "power = the cap" (the API contract) that is most of the
remaining error; a soft cap normalised at the default limit would reach 3.7 / 2.8 / 3.4 % but lowers power for
caps between the draw and the default limit."""


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=float)


def capped_power_w(draw_w: Any, cap_w: Any) -> np.ndarray:
    """Average board power under ``cap_w`` of a job that draws ``draw_w`` uncapped (NaN cap = none)."""
    p0, cap = _arr(draw_w), _arr(cap_w)
    return np.where(np.isfinite(cap) & (cap > 0), np.minimum(p0, cap), p0)


def clock_ratio(power_w: Any, draw_w: Any, tdp_w: Any, curve: PowerCapCurve = DEFAULT_CURVE) -> np.ndarray:
    """Sustained clock (fraction of the uncapped one) at which a job that draws ``draw_w`` uncapped draws
    ``power_w`` (<= ``draw_w``)."""
    p, p0 = _arr(power_w), _arr(draw_w)
    static = np.minimum(curve.static_frac_of_tdp * _arr(tdp_w), 0.9 * p0)  # a light job draws little beyond it
    u = np.clip((p - static) / np.maximum(p0 - static, 1e-9), 0.0, 1.0)
    k = curve.knee_clock
    r = np.where(u >= k**3, np.cbrt(u), u / k**2)
    return np.clip(r, curve.min_clock, 1.0)


def time_stretch(clock: Any, t_arith_s: Any, t_memory_s: Any, t_other_s: Any) -> np.ndarray:
    """Step time at ``clock`` over the uncapped step time, from the prior's split of the step (any scale)."""
    r, ta, tm, to = _arr(clock), _arr(t_arith_s), _arr(t_memory_s), _arr(t_other_s)
    base = np.maximum(ta, tm) + to
    return (np.maximum(ta / r, tm) + to) / np.maximum(base, 1e-300)


def apply_power_cap(time_s: Any, power_w: Any, cap_w: Any, *, tdp_w: Any, t_arith_s: Any, t_memory_s: Any,
                    t_other_s: Any, curve: PowerCapCurve = DEFAULT_CURVE) -> tuple[np.ndarray, np.ndarray]:
    """(time, average power) under ``cap_w`` of a job forecast uncapped at (``time_s``, ``power_w``); rows whose
    cap is NaN or at or above the draw ``power_w`` come back unchanged (bit for bit)."""
    t0, p0 = _arr(time_s), _arr(power_w)
    p = capped_power_w(p0, cap_w)
    binding = p < p0
    r = clock_ratio(p, p0, tdp_w, curve)
    stretch = time_stretch(r, t_arith_s, t_memory_s, t_other_s)
    return np.where(binding, t0 * stretch, t0), np.where(binding, p, p0)


OPTIMUM_STEPS = 512
"""Caps tried per row between the lowest settable limit and the draw (rounded to whole watts, as nvidia-smi sets)."""


def optimal_power_limit_w(time_s: Any, power_w: Any, *, limit_min_w: Any, limit_max_w: Any, default_w: Any,
                          tdp_w: Any, t_arith_s: Any, t_memory_s: Any, t_other_s: Any, max_slowdown: float = 0.1,
                          curve: PowerCapCurve = DEFAULT_CURVE) -> np.ndarray:
    """Per row, the settable cap (whole watts) with the least energy whose time stays within ``(1 + max_slowdown)``
    of the uncapped ``time_s``; ``default_w`` where no cap below the draw saves energy. Ties go to the highest cap."""
    if not (isinstance(max_slowdown, (int, float)) and np.isfinite(max_slowdown) and max_slowdown >= 0):
        raise InvalidInputError(f"max_slowdown={max_slowdown!r} must be a finite number >= 0 (0.1 = 10 % slower).")
    t0, p0 = np.atleast_1d(_arr(time_s)), np.atleast_1d(_arr(power_w))
    col = lambda x: np.broadcast_to(_arr(x), t0.shape)[:, None]  # noqa: E731
    lo = np.ceil(col(limit_min_w))
    top = np.floor(np.minimum(col(limit_max_w), p0[:, None]))
    caps = np.round(lo + (top - lo) * np.linspace(0.0, 1.0, OPTIMUM_STEPS)[None, :])
    t, p = apply_power_cap(t0[:, None], p0[:, None], caps, tdp_w=col(tdp_w), t_arith_s=col(t_arith_s),
                           t_memory_s=col(t_memory_s), t_other_s=col(t_other_s), curve=curve)
    energy = t * p
    ok = (t <= (1.0 + max_slowdown) * t0[:, None] * (1 + 1e-12)) & (energy < (t0 * p0)[:, None] * (1 - 1e-9))
    ok &= top >= lo
    masked = np.where(ok, energy, np.inf)
    best = masked.min(axis=1, keepdims=True)
    pick = np.where(ok & (masked <= best * (1 + 1e-12)), caps, -np.inf).max(axis=1)  # ties: the highest cap
    return np.where(ok.any(axis=1), pick, np.broadcast_to(_arr(default_w), t0.shape))
