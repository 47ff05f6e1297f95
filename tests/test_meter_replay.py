"""Tests for predictor.energy.meter: the EpochMeter fed by a ReplayDevice through the same code path as NVML."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featurize.errors import InvalidInputError, JoulecastError, MissingExtraError, NoGPUError
from predictor.energy.devices import ReplayDevice, VirtualClock
from predictor.energy.meter import MODE_COUNTER, MODE_SAMPLED, EpochMeter
from predictor.refinement.trace import epoch_energies_from_trace
from predictor.prediction import Prediction


def make_prior(per_epoch_j: float, epochs: int) -> Prediction:
    total = per_epoch_j * epochs
    return Prediction(energy_j=total, energy_per_epoch_j=per_epoch_j, energy_per_sample_j=per_epoch_j,
                      time_s=10.0 * epochs, time_per_epoch_s=10.0, avg_power_w=per_epoch_j / 10,
                      interval_j=(total * 0.66, total * 1.5), gpu="RTX 3090", epochs=float(epochs), log_sigma=0.25)


@pytest.fixture(scope="module")
def seaa_slice(shared_data):
    """First 250 s of a real RTX 3090 MobileNetV2 trace (the 10 frozen-backbone epochs), 1 Hz."""
    tr = pd.read_parquet(
        shared_data / "seaa2023_ect" / "power_traces.parquet",
        columns=["run_id", "t_seconds", "power_W"],
        filters=[("run_id", "==", "cloud/mobilenet_v2/00")],
    )
    tr = tr[tr.t_seconds < 250.0]
    return tr.t_seconds.to_numpy(float), tr.power_W.to_numpy(float)


def replay(t, p, *, with_counter: bool = True) -> ReplayDevice:
    """A trace on a virtual clock that starts at its first timestamp (``device.clock`` is that clock)."""
    return ReplayDevice({"t_s": t, "power_w": p}, clock=VirtualClock(), has_counter=with_counter)


def _run(device, ends, t0=0.0, **kw):
    """Epochs ending at trace times ``ends`` (the clock counts from the trace's first timestamp ``t0``)."""
    lines = []
    clock = device._clock
    with EpochMeter(device=device, printer=lines.append, start_sampler_thread=False, **kw) as m:
        for end in np.asarray(ends, float) - t0:
            for t in np.arange(clock.t_s, end, 1.0)[1:]:  # the fallback sampler polls each second
                clock.t_s = float(t)
                if m.mode == MODE_SAMPLED:
                    m.sampler.poll()
            clock.t_s = float(end)
            m.epoch_end()
    return m, lines


def test_counter_mode_matches_trace_integral(seaa_slice):
    t, p = seaa_slice
    ends = np.linspace(t[0], t[-1], 11)[1:]
    truth, dt = epoch_energies_from_trace(t, p, ends)
    m, lines = _run(replay(t, p), ends, t[0], prior=make_prior(float(truth.mean()), epochs=10), total_epochs=10)
    assert m.mode == MODE_COUNTER and m.warnings == []
    assert np.allclose(m.epoch_energies_j, truth, rtol=1e-9)
    assert np.allclose(m.epoch_times_s, dt)
    assert len(lines) == 10 and "projected total" in lines[-1]
    assert m.latest.refinement["epochs_measured"] == 10
    assert m.latest.energy_j == pytest.approx(truth.sum(), rel=1e-9)  # nothing left to project


def test_sampled_fallback_is_flagged_and_close(seaa_slice):
    t, p = seaa_slice
    ends = np.linspace(t[0], t[-1], 11)[1:]
    truth, _ = epoch_energies_from_trace(t, p, ends)
    m, lines = _run(replay(t, p, with_counter=False), ends, t[0], prior=None, total_epochs=10)
    assert m.mode == MODE_SAMPLED and "unsupported" in m.warnings[0]
    assert sum(w.power_samples_n for w in m.windows) > 200
    assert {w.energy_method for w in m.windows} == {"power_integral"}
    assert np.sum(m.epoch_energies_j) == pytest.approx(truth.sum(), rel=0.01)
    assert len(lines) == 10 and "projected" not in lines[0]


def test_sampler_thread_runs_and_stops():
    dev = replay([0.0, 1e6], [100.0, 100.0], with_counter=False)
    with EpochMeter(device=dev, progress=False, sample_interval_s=0.01) as m:
        thread = m.sampler._thread
        dev._clock.t_s = 10.0
        import time

        time.sleep(0.05)
        m.epoch_end()
    assert m.epoch_energies_j[0] == pytest.approx(1000.0)
    assert m.windows[0].power_samples_n > 2  # the thread polled between the edges
    assert not thread.is_alive()


def test_epoch_end_outside_with_block_is_clear_error():
    with pytest.raises(InvalidInputError, match="with"):
        EpochMeter(device=replay([0, 1], [1, 1])).epoch_end()


def test_no_gpu_raises_project_error():
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA GPU is present")
    except ImportError:
        pass
    except Exception:
        pass
    with pytest.raises((NoGPUError, MissingExtraError)) as info:
        with EpochMeter(gpu_index=0):
            pass
    assert isinstance(info.value, JoulecastError)
    assert "NVIDIA" in str(info.value) or "nvml" in str(info.value)


def test_meter_passes_phase_priors_to_refine(seaa_slice):
    t, p = seaa_slice
    ends = np.linspace(t[0], t[-1], 11)[1:4]  # 3 frozen epochs measured of a declared 10 + 10 run
    truth, _ = epoch_energies_from_trace(t, p, ends)
    pri = [make_prior(float(truth.mean()), 10), make_prior(3 * float(truth.mean()), 10)]
    m, _ = _run(replay(t, p), ends, t[0], prior=make_prior(2 * float(truth.mean()), 20), total_epochs=20,
                phases=[10], phase_priors=pri, prior_rho=0.0)
    ref = m.latest.refinement
    assert ref["phase_priors_used"] and ref["prior_rho"] == 0.0
    assert ref["phase_projected_epoch_energy_j"][1] == pytest.approx(3 * truth.mean(), rel=1e-9)
