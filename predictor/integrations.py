"""Framework callbacks that meter every training epoch with :class:`predictor.meter.EpochMeter` (NVML, extra
``nvml``) and refine a prior forecast as the run goes.

Public entry points:

* ``JoulecastTrainerCallback`` — a Hugging Face ``transformers.TrainerCallback``:
  ``Trainer(..., callbacks=[JoulecastTrainerCallback(prior=p)])``. Without ``total_epochs`` it projects over the
  Trainer's planned ``num_train_epochs``; each epoch's energy and the refined projection are appended to
  ``state.log_history`` (saved in ``trainer_state.json``).
* ``LightningEpochMeter`` — a PyTorch Lightning ``Callback`` (``lightning.pytorch``, else ``pytorch_lightning``).
* ``KerasEpochMeter`` — a ``keras.callbacks.Callback``.
* :func:`trainer_callback_class`, :func:`lightning_callback_class`, :func:`keras_callback_class` — the same
  classes built on a given base class (another Lightning namespace; tests).

Each callback takes ``EpochMeter``'s keyword arguments (``gpu_index``, ``prior``, ``total_epochs``, ``device``, ...),
keeps the meter in ``.meter`` (``.meter.latest`` is the refined forecast) and closes the device when training ends
or fails. The names resolve lazily: importing this module needs none of the frameworks, and a missing one raises
:class:`~featurize.errors.MissingExtraError` naming the package to install.
"""

from __future__ import annotations

import math
from typing import Any

from featurize.errors import MissingExtraError
from predictor.meter import EpochMeter


class _MeterHooks:
    """The one lifecycle all callbacks share: start the meter once, close an epoch, stop (idempotent)."""

    def _init_meter(self, meter_kwargs: dict[str, Any]) -> None:
        self.meter = EpochMeter(**meter_kwargs)
        self._running = False

    def _start(self) -> None:
        if not self._running:
            self.meter.__enter__()
            self._running = True

    def _epoch_end(self) -> Any:
        return self.meter.epoch_end() if self._running else None

    def _stop(self) -> None:
        if self._running:
            self._running = False
            self.meter.__exit__(None, None, None)


def trainer_callback_class(base: type) -> type:
    """A Hugging Face ``TrainerCallback`` subclass of ``base`` metering each epoch."""

    class JoulecastTrainerCallback(base, _MeterHooks):
        """Meters every epoch of a ``transformers.Trainer`` run on this process's GPU and refines ``prior``."""

        def __init__(self, **meter_kwargs: Any):
            base.__init__(self)
            self._planned = meter_kwargs.get("total_epochs") is None
            self._auto_gpu = "gpu_index" not in meter_kwargs and meter_kwargs.get("device") is None
            self._init_meter(meter_kwargs)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            planned = getattr(state, "num_train_epochs", 0) or getattr(args, "num_train_epochs", 0)
            if self._planned and planned:
                self.meter.total_epochs = int(math.ceil(float(planned)))
            if not getattr(state, "is_world_process_zero", True):
                self.meter.progress = False
            if self._auto_gpu:  # one process per GPU (torchrun / accelerate): meter this process's own
                self.meter.gpu_index = int(getattr(args, "local_process_index", 0) or 0)
            self._start()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            latest = self._epoch_end()
            if not self.meter.epoch_energies_j:
                return
            record = {"epoch": getattr(state, "epoch", None), "step": getattr(state, "global_step", None),
                      "joulecast_epoch_energy_j": self.meter.epoch_energies_j[-1],
                      "joulecast_epoch_time_s": self.meter.epoch_times_s[-1]}
            if latest is not None:
                record.update(joulecast_projected_energy_j=latest.energy_j,
                              joulecast_projected_interval_j=list(latest.interval_j))
            history = getattr(state, "log_history", None)
            if isinstance(history, list):
                history.append(record)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._stop()

    return JoulecastTrainerCallback


def lightning_callback_class(base: type) -> type:
    """A PyTorch Lightning ``Callback`` subclass of ``base`` metering each training epoch."""

    class LightningEpochMeter(base, _MeterHooks):
        """An :class:`EpochMeter` closed at every training epoch end (after that epoch's validation)."""

        def __init__(self, **meter_kwargs: Any):
            base.__init__(self)
            self._init_meter(meter_kwargs)

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self._start()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self._epoch_end()

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._stop()

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            self._stop()

    return LightningEpochMeter


def keras_callback_class(base: type) -> type:
    """A ``keras.callbacks.Callback`` subclass of ``base`` metering each epoch."""

    class KerasEpochMeter(base, _MeterHooks):
        """An :class:`EpochMeter` closed at every epoch end."""

        def __init__(self, **meter_kwargs: Any):
            base.__init__(self)
            self._init_meter(meter_kwargs)

        def on_train_begin(self, logs: Any = None) -> None:
            self._start()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self._epoch_end()

        def on_train_end(self, logs: Any = None) -> None:
            self._stop()

    return KerasEpochMeter


def _import_first(*modules: str, package: str, name: str) -> Any:
    import importlib

    for module in modules:
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    raise MissingExtraError(f"{name} needs {package} installed (`pip install {package}`).")


def _build(name: str) -> type:
    if name == "JoulecastTrainerCallback":
        mod = _import_first("transformers", package="transformers", name=name)
        return trainer_callback_class(mod.TrainerCallback)
    if name == "LightningEpochMeter":
        mod = _import_first("lightning.pytorch", "pytorch_lightning", package="lightning", name=name)
        return lightning_callback_class(mod.Callback)
    mod = _import_first("keras", package="keras", name=name)
    return keras_callback_class(mod.callbacks.Callback)


_LAZY = ("JoulecastTrainerCallback", "LightningEpochMeter", "KerasEpochMeter")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        cls = _build(name)
        cls.__module__ = __name__
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
