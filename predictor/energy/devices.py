"""Energy and power readings behind one device interface (an ABC + factory, as in zeus), shared by the live
meter (:mod:`predictor.energy.meter`) and the collection harness (``training_data.collect``).

Public entry points:

* :class:`EnergyDevice` -- the interface: ``clock()`` (s), ``energy_mj()`` (cumulative counter or ``None``),
  ``sample()`` (-> :class:`PowerSample`), plus ``name``, ``driver_version``, ``power_limit_w``.
* :class:`NvmlDevice` -- a live NVIDIA GPU through nvidia-ml-py (``pynvml``, imported lazily).
* :class:`ReplayDevice` -- replays a recorded trace (t, energy counter, power, util, clock, memory, temperature)
  through the same interface, on a virtual clock (tests) or on wall time (``--dry-run``), looping if asked.
* :func:`open_device` -- factory: ``"nvml"`` or ``"replay"``.
* :class:`PowerSampler` -- polls ``sample()`` (from a background thread, or by hand with ``poll()``).
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurize.errors import InvalidInputError, NoGPUError, SchemaError, require
from predictor.energy.integrate import cumulative_energy_j, energy_at_j

#: columns of a replay trace; only ``t_s`` and one of ``power_w`` / ``energy_mj`` are required
TRACE_COLUMNS: tuple[str, ...] = (
    "t_s", "energy_mj", "power_w", "util_pct", "sm_clock_mhz", "mem_used_bytes", "temp_c",
)


@dataclass(frozen=True)
class PowerSample:
    """One poll of the device. ``t_s`` on the device's clock; NaN where the device cannot tell."""

    t_s: float
    power_w: float
    util_pct: float = math.nan
    sm_clock_mhz: float = math.nan
    mem_used_bytes: float = math.nan
    temp_c: float = math.nan


class EnergyDevice(ABC):
    """One accelerator whose energy can be read. Subclasses set the descriptive attributes in ``__init__``."""

    kind: str = "abstract"
    name: str = ""
    driver_version: str = ""
    power_limit_w: float = math.nan
    default_power_limit_w: float = math.nan

    def clock(self) -> float:
        """Seconds on a monotonic clock shared by ``sample()`` timestamps."""
        return time.monotonic()

    @abstractmethod
    def energy_mj(self) -> float | None:
        """Cumulative energy counter in millijoules, or ``None`` when the device has none."""

    @abstractmethod
    def sample(self) -> PowerSample:
        """Instantaneous readings now."""

    def close(self) -> None:
        """Release the device (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- NVML
NO_GPU_REMEDY = ("Measure on a machine with an NVIDIA GPU; without one, refine from recorded epochs with "
                 "predictor.refine().")
"""What a user without a GPU can do instead (the collection harness passes its own: ``--dry-run``)."""


class NvmlDevice(EnergyDevice):
    """A live NVIDIA GPU, index ``index`` in NVML's order (set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so torch agrees).

    Raises :class:`NoGPUError` when NVML cannot start (no driver) or the index does not exist, and
    :class:`MissingExtraError` when nvidia-ml-py is not installed.
    """

    kind = "nvml"

    def __init__(self, index: int = 0, *, remedy: str = NO_GPU_REMEDY):
        self._nv = nv = require("pynvml", extra="nvml", purpose="reading GPU energy with NVML")
        try:
            nv.nvmlInit()
        except nv.NVMLError as err:
            raise NoGPUError(
                f"NVML could not start ({err}): no NVIDIA driver or GPU on this machine. {remedy}"
            ) from err
        count = nv.nvmlDeviceGetCount()
        if count == 0 or not 0 <= index < count:
            nv.nvmlShutdown()
            raise NoGPUError(f"NVML sees {count} GPU(s); gpu index {index} does not exist. Pass 0..{count - 1}.")
        self.index = index
        self._h = h = nv.nvmlDeviceGetHandleByIndex(index)
        self.name = _text(nv.nvmlDeviceGetName(h))
        self.driver_version = _text(nv.nvmlSystemGetDriverVersion())
        self.uuid = _text(self._try(nv.nvmlDeviceGetUUID, h, default=""))
        self.power_limit_w = self._try(nv.nvmlDeviceGetEnforcedPowerLimit, h, default=math.nan) / 1000.0
        self.default_power_limit_w = self._try(nv.nvmlDeviceGetPowerManagementDefaultLimit, h,
                                               default=math.nan) / 1000.0
        self.mem_total_bytes = float(nv.nvmlDeviceGetMemoryInfo(h).total)
        self._has_counter = self._try(nv.nvmlDeviceGetTotalEnergyConsumption, h, default=None) is not None
        self._closed = False

    def _try(self, fn: Callable[..., Any], *args: Any, default: Any) -> Any:
        try:
            return fn(*args)
        except self._nv.NVMLError:
            return default

    def energy_mj(self) -> float | None:
        if not self._has_counter:
            return None
        return float(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._h))

    def sample(self) -> PowerSample:
        nv, h = self._nv, self._h
        t = self.clock()
        util = self._try(nv.nvmlDeviceGetUtilizationRates, h, default=None)
        mem = self._try(nv.nvmlDeviceGetMemoryInfo, h, default=None)
        return PowerSample(
            t_s=t,
            power_w=self._try(nv.nvmlDeviceGetPowerUsage, h, default=math.nan) / 1000.0,
            util_pct=float(util.gpu) if util is not None else math.nan,
            sm_clock_mhz=float(self._try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM, default=math.nan)),
            mem_used_bytes=float(mem.used) if mem is not None else math.nan,
            temp_c=float(self._try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU, default=math.nan)),
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._nv.nvmlShutdown()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# ---------------------------------------------------------------- replay
class VirtualClock:
    """A clock that only moves when told to (``advance(dt_s)``); for deterministic replay tests."""

    def __init__(self, t_s: float = 0.0):
        self.t_s = float(t_s)

    def __call__(self) -> float:
        return self.t_s

    def advance(self, dt_s: float) -> float:
        self.t_s += float(dt_s)
        return self.t_s


class ReplayDevice(EnergyDevice):
    """Replays a recorded trace through the :class:`EnergyDevice` interface.

    ``trace`` maps column -> equal-length sequences (see :data:`TRACE_COLUMNS`), times ascending from any origin.
    Readings hold the last recorded value (as NVML does between updates); the energy counter is interpolated
    linearly between recorded counter values. Without an ``energy_mj`` column the counter is the trapezoid
    integral of the recorded power (:mod:`predictor.energy.integrate`), exact at any time between samples. ``clock`` defaults to wall time since
    construction; with ``loop=True`` the trace repeats, the counter carrying on from its end value.
    """

    kind = "replay"

    def __init__(self, trace: Mapping[str, Sequence[float]] | Any, *, clock: Callable[[], float] | None = None,
                 loop: bool = False, name: str = "replay", driver_version: str = "replay",
                 power_limit_w: float = math.nan, has_counter: bool = True):
        cols = {c: np.asarray(trace[c], dtype="float64") for c in TRACE_COLUMNS if c in _keys(trace)}
        if "t_s" not in cols or len(cols["t_s"]) < 2:
            raise SchemaError("replay trace needs a 't_s' column with at least 2 rows")
        t = cols["t_s"]
        if np.any(np.diff(t) <= 0):
            raise SchemaError("replay trace 't_s' must be strictly increasing")
        self._derived = "energy_mj" not in cols  # the counter is the power's integral, exact at any time
        if self._derived:
            if "power_w" not in cols:
                raise SchemaError("replay trace needs 'power_w' or 'energy_mj'")
            cols["energy_mj"] = cumulative_energy_j(t, cols["power_w"]) * 1000.0
        if "power_w" not in cols:  # derive held power from the counter
            p = np.diff(cols["energy_mj"]) / np.diff(t) / 1000.0
            cols["power_w"] = np.concatenate([p, p[-1:]])
        self._t0 = float(t[0])
        self._t = t - self._t0
        self._cols = cols
        self._duration = float(self._t[-1])
        self._loop = loop
        self._has_counter = has_counter
        self.name, self.driver_version = name, driver_version
        self.power_limit_w = self.default_power_limit_w = float(power_limit_w)
        if clock is None:
            start = time.monotonic()
            clock = lambda: time.monotonic() - start  # noqa: E731
        self._clock = clock

    @classmethod
    def from_file(cls, path: str | Path, **kw: Any) -> ReplayDevice:
        """Load a trace from Parquet or CSV with :data:`TRACE_COLUMNS` (e.g. one recorded by ``record_trace``)."""
        import pandas as pd

        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"replay trace {path} not found")
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        return cls({c: df[c].to_numpy() for c in df.columns}, **kw)

    def clock(self) -> float:
        return float(self._clock())

    def _locate(self, t: float) -> tuple[float, int]:
        """(time within the trace, completed loops); clamps at the ends when not looping."""
        if t < 0:
            raise InvalidInputError(f"replay clock at {t:.3f} s is before the trace start")
        loops = 0
        if self._loop and t > self._duration:
            loops = int(t // self._duration)
            t -= loops * self._duration
        return min(t, self._duration), loops

    def energy_mj(self) -> float | None:
        if not self._has_counter:
            return None
        t, loops = self._locate(self.clock())
        e = self._cols["energy_mj"]
        now = (energy_at_j(self._t, self._cols["power_w"], t) * 1000.0 + e[0] if self._derived
               else np.interp(t, self._t, e))
        return float(now + loops * (e[-1] - e[0]))

    def sample(self) -> PowerSample:
        now = self.clock()
        t, _ = self._locate(now)
        i = max(0, int(np.searchsorted(self._t, t, side="right")) - 1)

        def held(col: str) -> float:
            return float(self._cols[col][i]) if col in self._cols else math.nan

        return PowerSample(now, held("power_w"), held("util_pct"), held("sm_clock_mhz"), held("mem_used_bytes"),
                           held("temp_c"))


def _keys(trace: Any) -> list[str]:
    return list(trace.columns) if hasattr(trace, "columns") else list(trace.keys())


def synthetic_trace(duration_s: float = 60.0, dt_s: float = 0.01, *, idle_w: float = 70.0, busy_w: float = 450.0,
                    period_s: float = 7.0, seed: int = 0) -> dict[str, np.ndarray]:
    """A plausible GPU power trace (idle ramp, then busy with periodic dips and noise) with its counter (trapezoid).

    Used by ``--dry-run`` when no recorded trace is given, and by tests. Power in W, counter in mJ.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, duration_s, dt_s)
    ramp = np.clip(t / 2.0, 0, 1)
    dips = 0.25 * (np.sin(2 * np.pi * t / period_s) < -0.8)
    p = idle_w + (busy_w - idle_w) * ramp * (1 - dips) + rng.normal(0, 8.0, t.size)
    energy = cumulative_energy_j(t, p) * 1000.0
    return {
        "t_s": t, "energy_mj": energy, "power_w": p, "util_pct": np.clip(100 * ramp * (1 - dips), 0, 100),
        "sm_clock_mhz": 345 + 1635 * ramp, "mem_used_bytes": np.full(t.size, 8e9), "temp_c": 35 + 30 * ramp,
    }


def open_device(kind: str = "nvml", *, index: int = 0, trace: Any = None, remedy: str = NO_GPU_REMEDY,
                **kw: Any) -> EnergyDevice:
    """Factory: ``"nvml"`` -> :class:`NvmlDevice` (``index``; ``remedy`` ends its no-GPU error);
    ``"replay"`` -> :class:`ReplayDevice`.

    For replay, ``trace`` is a mapping of columns, a path to a Parquet/CSV trace, or ``None`` for
    :func:`synthetic_trace` (looping on wall time).
    """
    if kind == "nvml":
        return NvmlDevice(index, remedy=remedy)
    if kind == "replay":
        if trace is None:
            kw.setdefault("loop", True)
            return ReplayDevice(synthetic_trace(), name="replay-synthetic", **kw)
        if isinstance(trace, (str, Path)):
            return ReplayDevice.from_file(trace, **kw)
        return ReplayDevice(trace, **kw)
    raise InvalidInputError(f"energy device kind {kind!r} not in ('nvml', 'replay')")


# ---------------------------------------------------------------- sampling
class PowerSampler:
    """Collects :class:`PowerSample` s: ``start()`` a daemon thread polling every ``interval_s``, or ``poll()``."""

    def __init__(self, device: EnergyDevice, interval_s: float = 0.05):
        if interval_s <= 0:
            raise InvalidInputError(f"sampler interval_s must be > 0, got {interval_s}")
        self.device, self.interval_s = device, interval_s
        self.samples: list[PowerSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> PowerSample:
        s = self.device.sample()
        with self._lock:
            self.samples.append(s)
        return s

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def start(self) -> PowerSampler:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def between(self, t0_s: float, t1_s: float) -> list[PowerSample]:
        """Samples with ``t0_s <= t_s <= t1_s``; drops older ones to bound memory."""
        with self._lock:
            out = [s for s in self.samples if t0_s <= s.t_s <= t1_s]
            self.samples = [s for s in self.samples if s.t_s >= t0_s]
        return out

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
