"""Framework callbacks (predictor.integrations) driven through the replay device: the Hugging Face TrainerCallback
through transformers' own CallbackHandler; Lightning and Keras through fakes calling the hooks those frameworks
call, and through the real frameworks when they are installed."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from featurize.errors import MissingExtraError
from predictor.integrations import keras_callback_class, lightning_callback_class
from predictor.meter import ReplayDevice
from predictor.prediction import Prediction
from predictor.refine import epoch_energies_from_trace

# Three 100 s epochs at 250, 300 and 200 W (1 ms ramps between them).
TRACE_T = [0.0, 100.0, 100.001, 200.0, 200.001, 300.0]
TRACE_P = [250.0, 250.0, 300.0, 300.0, 200.0, 200.0]
ENDS = [100.0, 200.0, 300.0]


class CountingReplay(ReplayDevice):
    closed = 0

    def close(self) -> None:
        self.closed += 1


def _prior(epochs: int = 3) -> Prediction:
    per = 26_000.0
    return Prediction(energy_j=per * epochs, energy_per_epoch_j=per, energy_per_sample_j=per, time_s=100.0 * epochs,
                      time_per_epoch_s=100.0, avg_power_w=260.0, interval_j=(per * epochs * 0.7, per * epochs * 1.4),
                      gpu="RTX-3090", epochs=float(epochs), log_sigma=0.2)


def _truth() -> np.ndarray:
    return epoch_energies_from_trace(np.array(TRACE_T), np.array(TRACE_P), np.array(ENDS))[0]


def test_truth_is_the_hand_integral():
    assert _truth() == pytest.approx([25_000.0, 30_000.0, 20_000.0], rel=1e-4)


def test_hf_trainer_callback_meters_epochs_and_refines_through_transformers_handler():
    tf_cb = pytest.importorskip("transformers.trainer_callback")
    from predictor.integrations import JoulecastTrainerCallback

    dev, lines = CountingReplay(TRACE_T, TRACE_P), []
    cb = JoulecastTrainerCallback(prior=_prior(), device=dev, printer=lines.append)
    assert isinstance(cb, tf_cb.TrainerCallback)
    handler = tf_cb.CallbackHandler([cb], None, None, None, None)
    args = SimpleNamespace(num_train_epochs=3, local_process_index=0)
    state, control = tf_cb.TrainerState(num_train_epochs=3), tf_cb.TrainerControl()
    handler.on_train_begin(args, state, control)
    projections = []
    for k, end in enumerate(ENDS, start=1):
        dev.advance_to(end)
        state.epoch = float(k)
        handler.on_epoch_end(args, state, control)
        projections.append(cb.meter.latest.energy_j)
    handler.on_train_end(args, state, control)
    assert np.allclose(cb.meter.epoch_energies_j, _truth(), rtol=1e-9)
    assert cb.meter.total_epochs == 3  # the Trainer's plan, since none was given
    assert projections[-1] == pytest.approx(_truth().sum(), rel=1e-9)  # all epochs measured: nothing projected
    assert cb.meter.latest.refinement["epochs_measured"] == 3
    records = [r for r in state.log_history if "joulecast_epoch_energy_j" in r]
    assert [r["epoch"] for r in records] == [1.0, 2.0, 3.0]
    assert records[0]["joulecast_epoch_energy_j"] == pytest.approx(25_000.0, rel=1e-4)
    assert records[0]["joulecast_projected_interval_j"][0] < records[0]["joulecast_projected_energy_j"]
    assert len(lines) == 3 and dev.closed == 1
    handler.on_train_end(args, state, control)  # a second end (e.g. after an exception) closes nothing twice
    assert dev.closed == 1


def test_hf_callback_prints_only_on_the_main_process():
    tf_cb = pytest.importorskip("transformers.trainer_callback")
    from predictor.integrations import JoulecastTrainerCallback

    dev, lines = CountingReplay(TRACE_T, TRACE_P), []
    cb = JoulecastTrainerCallback(device=dev, printer=lines.append, total_epochs=5)
    state = tf_cb.TrainerState(num_train_epochs=3, is_world_process_zero=False)
    cb.on_train_begin(SimpleNamespace(), state, tf_cb.TrainerControl())
    dev.advance_to(100.0)
    cb.on_epoch_end(SimpleNamespace(), state, tf_cb.TrainerControl())
    assert lines == [] and cb.meter.total_epochs == 5 and cb.meter.latest is None  # no prior: measured only


class FakeLightningCallback:  # lightning.pytorch.Callback: hooks take (trainer, pl_module)
    pass


class FakeKerasCallback:  # keras.callbacks.Callback: __init__ sets model/params, hooks take logs
    def __init__(self):
        self.params, self.model = None, None


def _fit_lightning(cb, dev, fail_at=None):
    trainer, module = object(), object()
    cb.on_train_start(trainer, module)
    for k, end in enumerate(ENDS):
        dev.advance_to(end)
        if k == fail_at:
            cb.on_exception(trainer, module, RuntimeError("nan loss"))
            return
        cb.on_train_epoch_end(trainer, module)
    cb.on_train_end(trainer, module)


def test_lightning_meter_with_a_fake_base():
    cls = lightning_callback_class(FakeLightningCallback)
    dev = CountingReplay(TRACE_T, TRACE_P)
    cb = cls(prior=_prior(), device=dev, total_epochs=3, progress=False)
    _fit_lightning(cb, dev)
    assert np.allclose(cb.meter.epoch_energies_j, _truth(), rtol=1e-9) and dev.closed == 1
    assert cb.meter.latest.energy_j == pytest.approx(_truth().sum())
    dev2 = CountingReplay(TRACE_T, TRACE_P)
    failed = cls(device=dev2, progress=False)
    _fit_lightning(failed, dev2, fail_at=1)
    assert len(failed.meter.epoch_energies_j) == 1 and dev2.closed == 1  # the device is released on failure


def test_keras_meter_with_a_fake_base():
    cls = keras_callback_class(FakeKerasCallback)
    dev = CountingReplay(TRACE_T, TRACE_P)
    cb = cls(prior=_prior(), device=dev, total_epochs=3, progress=False)
    assert cb.params is None  # the base's __init__ ran
    cb.on_train_begin(logs={})
    for k, end in enumerate(ENDS):
        dev.advance_to(end)
        cb.on_epoch_end(k, logs={"loss": 1.0})
    cb.on_train_end(logs={})
    assert np.allclose(cb.meter.epoch_energies_j, _truth(), rtol=1e-9) and dev.closed == 1


def _importable(*modules: str) -> bool:
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
            return True
        except ImportError:  # absent, or present without a backend (keras without one installed)
            continue
    return False


def test_old_import_path_and_missing_framework_error():
    from predictor import integrations, meter

    for name, modules, pip in (("LightningEpochMeter", ("lightning.pytorch", "pytorch_lightning"), "lightning"),
                               ("KerasEpochMeter", ("keras",), "keras")):
        if _importable(*modules):
            assert getattr(meter, name) is getattr(integrations, name)
        else:
            with pytest.raises(MissingExtraError, match=f"pip install {pip}"):
                getattr(meter, name)
    with pytest.raises(AttributeError):
        integrations.NoSuchCallback  # noqa: B018


def _advance_each_epoch(dev, base, hook):
    """A callback listed before the meter that moves the replay clock to the next epoch end."""
    ends = iter(ENDS)

    class Advance(base):
        pass

    setattr(Advance, hook, lambda self, *a, **k: dev.advance_to(next(ends)))
    return Advance()


def test_lightning_meter_in_a_real_trainer():
    pl = pytest.importorskip("lightning.pytorch")
    import torch

    from predictor.integrations import LightningEpochMeter

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def training_step(self, batch, _):
            return self.lin(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(8, 4)), batch_size=4)
    dev = CountingReplay(TRACE_T, TRACE_P)
    meter = LightningEpochMeter(prior=_prior(), device=dev, total_epochs=3, progress=False)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[_advance_each_epoch(dev, pl.Callback, "on_train_epoch_end"), meter])
    trainer.fit(Tiny(), data)
    assert np.allclose(meter.meter.epoch_energies_j, _truth(), rtol=1e-9) and dev.closed == 1


def test_keras_meter_in_a_real_fit():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from predictor.integrations import KerasEpochMeter

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    dev = CountingReplay(TRACE_T, TRACE_P)
    meter = KerasEpochMeter(prior=_prior(), device=dev, total_epochs=3, progress=False)
    advance = _advance_each_epoch(dev, keras.callbacks.Callback, "on_epoch_end")
    model.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=3, verbose=0, callbacks=[advance, meter])
    assert np.allclose(meter.meter.epoch_energies_j, _truth(), rtol=1e-9) and dev.closed == 1
