"""Live per-epoch GPU energy meter (extra ``nvml``) that refines a prior after every epoch.

``with EpochMeter(gpu_index=0, prior=p, total_epochs=50) as m: ... m.epoch_end()``. It reads the device layer of
:mod:`predictor.energy.devices` (NVML, or a :class:`~predictor.energy.devices.ReplayDevice` in tests) through an
:class:`~predictor.energy.window.EnergyMeter`: NVML's cumulative energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, Volta and newer), or, where that is unsupported, the trapezoid integral
of board power polled by a :class:`~predictor.energy.devices.PowerSampler` thread -- stated in ``EpochMeter.mode``
and ``EpochMeter.warnings``. Framework callbacks (Hugging Face ``Trainer``, Lightning, Keras) live in
:mod:`predictor.integrations`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from featurize.errors import InvalidInputError
from predictor.energy.devices import EnergyDevice, PowerSampler, open_device
from predictor.energy.window import EnergyMeter, Token, WindowEnergy
from predictor.prediction import Prediction
from predictor.units import J_PER_KWH

MODE_COUNTER = "nvml-energy-counter"
MODE_SAMPLED = "sampled-power"


class EpochMeter:
    """Context manager measuring GPU energy (J) and time (s) per epoch; refines ``prior`` after each epoch.

    Args:
        gpu_index: NVML index of the GPU to read.
        prior: optional :class:`Prediction`; when given, :func:`predictor.refinement.project.refine` runs after each epoch
            and ``self.latest`` holds the refined prediction.
        total_epochs / max_epochs / phases / phase_priors / prior_rho: passed to ``refine``.
        progress: print a one-line update (rich) after each epoch.
        device: an :class:`EnergyDevice` to use instead of NVML (tests pass a ``ReplayDevice``).
        sample_interval_s: power polling period for the fallback sampler.
        start_sampler_thread: start the fallback sampler's thread (tests poll it by hand instead).
    """

    def __init__(self, gpu_index: int = 0, prior: Prediction | None = None, total_epochs: int | None = None,
                 progress: bool = True, *, max_epochs: int | None = None, phases: Sequence[int] | None = None,
                 phase_priors: Sequence[Prediction] | None = None, prior_rho: float = 0.5,
                 device: EnergyDevice | None = None, sample_interval_s: float = 0.1,
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
        self.windows: list[WindowEnergy] = []
        self.warnings: list[str] = []
        self.mode: str | None = None
        self.latest: Prediction | None = None
        self.sampler: PowerSampler | None = None
        self._meter: EnergyMeter | None = None
        self._mark: Token | None = None

    @property
    def device(self) -> EnergyDevice:
        if self._device is None:
            raise InvalidInputError("EpochMeter is not started: use it as `with EpochMeter(...) as m:`.")
        return self._device

    def __enter__(self) -> EpochMeter:
        if self._device is None:
            self._device = open_device("nvml", index=self.gpu_index)
        self.sampler = PowerSampler(self._device, self.sample_interval_s)
        if self._device.energy_mj() is None:
            self.mode = MODE_SAMPLED
            self.warnings.append(
                f"{self._device.name}: NVML total-energy counter unsupported; integrating power sampled every "
                f"{self.sample_interval_s:g} s instead (less accurate for short epochs)."
            )
            if self.start_sampler_thread:
                self.sampler.start()
        else:
            self.mode = MODE_COUNTER
        self._meter = EnergyMeter(self._device, self.sampler)
        self._mark = self._meter.begin()
        return self

    def epoch_end(self) -> Prediction | None:
        """Close the current epoch: record its energy and time; refine the prior if one was given."""
        if self._mark is None or self._meter is None:
            raise InvalidInputError("epoch_end() called outside the meter's `with` block.")
        window, self._mark = self._meter.lap(self._mark)
        self.windows.append(window)
        self.epoch_times_s.append(max(window.time_s, 1e-9))
        self.epoch_energies_j.append(max(window.energy_j, 1e-9))
        if self.prior is not None:
            from predictor.refinement.project import refine

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
            line += (f" | projected total {self.latest.energy_j / J_PER_KWH:.4g} kWh "
                     f"[{lo / J_PER_KWH:.4g}, {hi / J_PER_KWH:.4g}] over "
                     f"{self.latest.refinement['total_epochs_assumed']} epochs")
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
