"""The energy of a measured window (an epoch) on an :class:`~predictor.energy.devices.EnergyDevice`.

* :class:`EnergyMeter` -- ``begin()`` / ``end()`` (or ``lap()``) around a window -> :class:`WindowEnergy`: the
  counter difference (preferred), else the trapezoid integral of the sampled power; both kept, plus the samples'
  means.
* :func:`counter_energy_j` -- energy between two counter reads; :func:`summarize_window` -- the pure summary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from predictor.energy.devices import EnergyDevice, PowerSample, PowerSampler
from predictor.energy.integrate import window_energy_j

#: a window's start: (clock s, counter mJ or None)
Token = tuple[float, float | None]


def counter_energy_j(start_mj: float | None, end_mj: float | None) -> float:
    """Energy between two counter reads in J; NaN if either is missing or the counter went backwards."""
    if start_mj is None or end_mj is None or end_mj < start_mj:
        return math.nan
    return (end_mj - start_mj) / 1000.0


@dataclass(frozen=True)
class WindowEnergy:
    """Energy and readings of one measured window (an epoch). Energies in J, times in s."""

    time_s: float
    energy_j: float
    energy_method: str  # "counter" or "power_integral"
    counter_energy_j: float
    integral_energy_j: float
    power_samples_n: int
    mean_power_w: float
    mean_util_pct: float
    mean_sm_clock_mhz: float
    max_mem_used_bytes: float
    mean_temp_c: float


class EnergyMeter:
    """Measures windows on ``device``: counter difference when the device has a counter, else power integral.

    ``begin()`` and ``end()`` each poll the sampler once, so every window has samples at both edges even
    without the background thread. Call ``torch.cuda.synchronize()`` before ``end()``.
    """

    def __init__(self, device: EnergyDevice, sampler: PowerSampler | None = None):
        self.device = device
        self.sampler = sampler or PowerSampler(device)

    def begin(self) -> Token:
        token = (self.device.clock(), self.device.energy_mj())
        self.sampler.poll()
        return token

    def end(self, token: Token) -> WindowEnergy:
        return self.lap(token)[0]

    def lap(self, token: Token) -> tuple[WindowEnergy, Token]:
        """End the window opened by ``token`` and open the next one at the same readings (no gap between)."""
        t0, e0 = token
        self.sampler.poll()
        e1 = self.device.energy_mj()
        t1 = self.device.clock()
        window = self.sampler.between(t0, t1)
        return summarize_window(t0, t1, e0, e1, window), (t1, e1)


def _mean(samples: Sequence[PowerSample], attr: str) -> float:
    v = np.array([getattr(s, attr) for s in samples], dtype="float64")
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def summarize_window(t0_s: float, t1_s: float, e0_mj: float | None, e1_mj: float | None,
                     samples: Sequence[PowerSample]) -> WindowEnergy:
    """Pure: the :class:`WindowEnergy` of a window from its counter reads and samples."""
    counter = counter_energy_j(e0_mj, e1_mj)
    integral = window_energy_j([s.t_s for s in samples], [s.power_w for s in samples], t0_s, t1_s)
    use_counter = math.isfinite(counter)
    mem = np.array([s.mem_used_bytes for s in samples], dtype="float64")
    mem = mem[np.isfinite(mem)]
    return WindowEnergy(
        time_s=t1_s - t0_s,
        energy_j=counter if use_counter else integral,
        energy_method="counter" if use_counter else "power_integral",
        counter_energy_j=counter,
        integral_energy_j=integral,
        power_samples_n=len(samples),
        mean_power_w=_mean(samples, "power_w"),
        mean_util_pct=_mean(samples, "util_pct"),
        mean_sm_clock_mhz=_mean(samples, "sm_clock_mhz"),
        max_mem_used_bytes=float(mem.max()) if mem.size else math.nan,
        mean_temp_c=_mean(samples, "temp_c"),
    )
