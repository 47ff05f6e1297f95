"""Live per-epoch GPU energy meter (extra ``nvml``) that refines a prior after every epoch.

Public entry points:

- :class:`EpochMeter` — ``with EpochMeter(gpu_index=0, prior=p, total_epochs=50) as m: ... m.epoch_end()``.
- :class:`PowerDevice` (ABC) and :func:`get_device` — the device interface and its factory (as in zeus):
  :class:`NVMLDevice` reads NVML through nvidia-ml-py; :class:`ReplayDevice` replays a recorded trace
  (timestamps + power, optionally an energy counter) through the same meter code, for tests.
- :class:`PowerSampler` — integrates sampled power (trapezoid) when the energy counter is unsupported.
- Framework callbacks (Hugging Face ``Trainer``, Lightning, Keras) live in :mod:`predictor.integrations`;
  ``LightningEpochMeter`` / ``KerasEpochMeter`` stay importable from here.

The meter always reads a cumulative energy counter (J): NVML's ``nvmlDeviceGetTotalEnergyConsumption`` (mJ,
Volta and newer), or, where that is unsupported, a :class:`PowerSampler` thread that polls board power and
integrates it — stated in ``EpochMeter.mode`` and ``EpochMeter.warnings``.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np

from featurize.errors import InvalidInputError, NoGPUError, require
from predictor.prediction import Prediction

MODE_COUNTER = "nvml-energy-counter"
MODE_SAMPLED = "sampled-power"


class PowerDevice(ABC):
    """One GPU's power/energy readings. Times in seconds (monotonic), energy in J, power in W."""

    name: str = "gpu"

    @abstractmethod
    def time_s(self) -> float:
        """Current time on the device's clock (s)."""

    @abstractmethod
    def energy_j(self) -> float | None:
        """Cumulative energy counter (J), or None when the device has no such counter."""

    @abstractmethod
    def power_w(self) -> float:
        """Instantaneous board power (W)."""

    def close(self) -> None:
        """Release the device (NVML shutdown)."""


class NVMLDevice(PowerDevice):
    """An NVIDIA GPU read through NVML (nvidia-ml-py)."""

    def __init__(self, gpu_index: int = 0):
        nvml = require("pynvml", extra="nvml", purpose="Measuring GPU energy live")
        self._nvml = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as err:
            raise NoGPUError(
                f"NVML could not start ({err}): no NVIDIA driver/GPU on this machine. Run the meter on a machine "
                f"with an NVIDIA GPU, or refine from recorded epochs with predictor.refine()."
            ) from err
        count = nvml.nvmlDeviceGetCount()
        if count == 0 or not 0 <= gpu_index < count:
            nvml.nvmlShutdown()
            raise NoGPUError(f"gpu_index={gpu_index} but NVML sees {count} GPU(s); pass 0..{count - 1}.")
        self._handle = nvml.nvmlDeviceGetHandleByIndex(gpu_index)
        name = nvml.nvmlDeviceGetName(self._handle)
        self.name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self._has_counter = True
        except nvml.NVMLError:
            self._has_counter = False

    def time_s(self) -> float:
        return time.monotonic()

    def energy_j(self) -> float | None:
        if not self._has_counter:
            return None
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0

    def power_w(self) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:  # pragma: no cover - already shut down
            pass


class ReplayDevice(PowerDevice):
    """Replays a recorded trace on a virtual clock that the caller moves with :meth:`advance_to`.

    ``energy_j`` is the trapezoid integral of the recorded power up to the virtual time (a counter), or None
    when ``with_counter=False`` (to exercise the sampled-power fallback); ``power_w`` interpolates the trace.
    """

    def __init__(self, timestamps_s: Sequence[float], power_w: Sequence[float], *, with_counter: bool = True,
                 name: str = "replay"):
        t = np.asarray(timestamps_s, dtype=float)
        p = np.asarray(power_w, dtype=float)
        if t.ndim != 1 or t.size < 2 or t.size != p.size or np.any(np.diff(t) <= 0):
            raise InvalidInputError("ReplayDevice needs >= 2 samples with strictly increasing timestamps_s.")
        self._t, self._p = t, p
        self._cum = np.concatenate([[0.0], np.cumsum(np.diff(t) * (p[1:] + p[:-1]) / 2.0)])
        self._now = float(t[0])
        self._with_counter = with_counter
        self.name = name

    def advance_to(self, t_s: float) -> None:
        if t_s < self._now or t_s > self._t[-1]:
            raise InvalidInputError(f"replay time must move forward within the trace; got {t_s} s.")
        self._now = float(t_s)

    def time_s(self) -> float:
        return self._now

    def energy_j(self) -> float | None:
        if not self._with_counter:
            return None
        i = int(np.searchsorted(self._t, self._now, side="right")) - 1
        i = min(i, self._t.size - 2)
        frac = self._now - self._t[i]
        p_now = self.power_w()
        return float(self._cum[i] + frac * (self._p[i] + p_now) / 2.0)

    def power_w(self) -> float:
        return float(np.interp(self._now, self._t, self._p))


def get_device(gpu_index: int = 0) -> PowerDevice:
    """The device factory: NVML for a real GPU (raises NoGPUError / MissingExtraError when unavailable)."""
    return NVMLDevice(gpu_index)


class PowerSampler:
    """A cumulative energy counter (J) built by integrating sampled power (trapezoid).

    ``poll()`` takes one sample; ``start()`` polls every ``interval_s`` in a daemon thread.
    """

    def __init__(self, device: PowerDevice, interval_s: float = 0.1):
        self.device = device
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None
        self._energy_j = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0

    def poll(self) -> float:
        """Take one sample and return the integrated energy so far (J)."""
        t, p = self.device.time_s(), self.device.power_w()
        with self._lock:
            if self._last is not None and t > self._last[0]:
                self._energy_j += (t - self._last[0]) * (p + self._last[1]) / 2.0
            self._last = (t, p)
            self.samples += 1
            return self._energy_j

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.poll()

        self.poll()
        self._thread = threading.Thread(target=loop, name="joulecast-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval_s + 1)


class EpochMeter:
    """Context manager measuring GPU energy (J) and time (s) per epoch; refines ``prior`` after each epoch.

    Args:
        gpu_index: NVML index of the GPU to read.
        prior: optional :class:`Prediction`; when given, :func:`predictor.refine.refine` runs after each epoch
            and ``self.latest`` holds the refined prediction.
        total_epochs / max_epochs / phases / phase_priors / prior_rho: passed to ``refine``.
        progress: print a one-line update (rich) after each epoch.
        device: a :class:`PowerDevice` to use instead of NVML (tests pass a :class:`ReplayDevice`).
        sample_interval_s: power polling period for the fallback sampler.
        start_sampler_thread: start the fallback sampler's thread (tests poll it by hand instead).
    """

    def __init__(self, gpu_index: int = 0, prior: Prediction | None = None, total_epochs: int | None = None,
                 progress: bool = True, *, max_epochs: int | None = None, phases: Sequence[int] | None = None,
                 phase_priors: Sequence[Prediction] | None = None, prior_rho: float = 0.5,
                 device: PowerDevice | None = None, sample_interval_s: float = 0.1,
                 start_sampler_thread: bool = True, printer: Callable[[str], None] | None = None):
        self.gpu_index = gpu_index
        self.prior = prior
        self.total_epochs = total_epochs
        self.max_epochs = max_epochs
        self.phases = phases
        self.phase_priors = phase_priors
        self.prior_rho = prior_rho
        self.progress = progress
        self._device = device
        self.sample_interval_s = sample_interval_s
        self.start_sampler_thread = start_sampler_thread
        self._printer = printer
        self.epoch_energies_j: list[float] = []
        self.epoch_times_s: list[float] = []
        self.warnings: list[str] = []
        self.mode: str | None = None
        self.latest: Prediction | None = None
        self.sampler: PowerSampler | None = None
        self._mark: tuple[float, float] | None = None

    # -- counter access: the one code path for both modes
    def _counter(self) -> tuple[float, float]:
        dev = self.device
        if self.sampler is not None:
            return dev.time_s(), self.sampler.poll()
        return dev.time_s(), float(dev.energy_j())

    @property
    def device(self) -> PowerDevice:
        if self._device is None:
            raise InvalidInputError("EpochMeter is not started: use it as `with EpochMeter(...) as m:`.")
        return self._device

    def __enter__(self) -> "EpochMeter":
        if self._device is None:
            self._device = get_device(self.gpu_index)
        if self._device.energy_j() is None:
            self.mode = MODE_SAMPLED
            self.warnings.append(
                f"{self._device.name}: NVML total-energy counter unsupported; integrating power sampled every "
                f"{self.sample_interval_s:g} s instead (less accurate for short epochs)."
            )
            self.sampler = PowerSampler(self._device, self.sample_interval_s)
            if self.start_sampler_thread:
                self.sampler.start()
            else:
                self.sampler.poll()
        else:
            self.mode = MODE_COUNTER
        self._mark = self._counter()
        return self

    def epoch_end(self) -> Prediction | None:
        """Close the current epoch: record its energy and time; refine the prior if one was given."""
        if self._mark is None:
            raise InvalidInputError("epoch_end() called outside the meter's `with` block.")
        now = self._counter()
        self.epoch_times_s.append(max(now[0] - self._mark[0], 1e-9))
        self.epoch_energies_j.append(max(now[1] - self._mark[1], 1e-9))
        self._mark = now
        if self.prior is not None:
            from predictor.refine import refine

            self.latest = refine(
                self.prior,
                epoch_energies_j=self.epoch_energies_j,
                epoch_times_s=self.epoch_times_s,
                total_epochs=self.total_epochs,
                max_epochs=self.max_epochs,
                phases=self.phases,
                phase_priors=self.phase_priors,
                prior_rho=self.prior_rho,
            )
        if self.progress:
            self._print(self.status_line())
        return self.latest

    def status_line(self) -> str:
        """One line: last epoch's energy/time, and the refined projection with its interval if any."""
        k = len(self.epoch_energies_j)
        line = f"epoch {k}: {self.epoch_energies_j[-1] / 1e3:.2f} kJ in {self.epoch_times_s[-1]:.1f} s"
        if self.latest is not None:
            lo, hi = self.latest.interval_j
            line += (f" | projected total {self.latest.energy_j / 3.6e6:.4g} kWh "
                     f"[{lo / 3.6e6:.4g}, {hi / 3.6e6:.4g}] over {self.latest.refinement['total_epochs_assumed']} epochs")
        return line

    def _print(self, line: str) -> None:
        if self._printer is not None:
            self._printer(line)
            return
        from rich.console import Console

        Console(stderr=True, markup=False, highlight=False).print(line)

    def __exit__(self, *exc: Any) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if self._device is not None:
            self._device.close()


# ---------------------------------------------------------------- framework adapters (predictor.integrations)
def __getattr__(name: str) -> Any:
    """``LightningEpochMeter`` / ``KerasEpochMeter`` kept importable from here; they live in
    :mod:`predictor.integrations` (with the Hugging Face ``JoulecastTrainerCallback``)."""
    if name in ("LightningEpochMeter", "KerasEpochMeter"):
        from predictor import integrations

        return getattr(integrations, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
