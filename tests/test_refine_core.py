"""Tests for predictor.refine: steady state, warm-up, phases, outliers, the prior update, bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from featurize.errors import InvalidInputError, JoulecastError
from predictor.prediction import Prediction
from predictor.refinement.params import PARAMS
from predictor.refinement.project import refine
from predictor.refinement.segment import segment_epochs
from predictor.refinement.trace import epoch_energies_from_trace, refine_from_trace


def make_prior(per_epoch_j: float = 100.0, epochs: int = 20, log_sigma: float = 0.25) -> Prediction:
    z = 1.6448536269514722
    total = per_epoch_j * epochs
    return Prediction(
        energy_j=total,
        energy_per_epoch_j=per_epoch_j,
        energy_per_sample_j=per_epoch_j / 1000,
        time_s=10.0 * epochs,
        time_per_epoch_s=10.0,
        avg_power_w=per_epoch_j / 10.0,
        interval_j=(total * math.exp(-z * log_sigma), total * math.exp(z * log_sigma)),
        gpu="NVIDIA A100-SXM4-80GB",
        epochs=float(epochs),
        samples_per_epoch=1000,
        log_sigma=log_sigma,
    )


def test_steady_run_projects_measured_level_exactly():
    r = refine(make_prior(120.0), epoch_energies_j=[100.0] * 6, total_epochs=20)
    assert r.refinement["warmup_epochs"] == []
    assert r.refinement["phase_change_at"] is None
    assert r.energy_j == pytest.approx(600 + 14 * 100.0, rel=0.002)  # prior weight ~0.2 %
    lo, hi = r.interval_j
    assert lo < r.energy_j < hi and hi / lo < 1.15
    assert r.refinement["total_epochs_assumed"] == 20 and r.epochs == 20


def test_one_epoch_already_helps_and_many_dominate():
    prior = make_prior(100.0)
    one = refine(prior, epoch_energies_j=[80.0], total_epochs=20)
    # the first epoch is a warm-up epoch: its steady-state reading is 80 / exp(warmup_log_mean) ~ 63
    steady = 80.0 / math.exp(PARAMS.warmup_log_mean)
    assert steady < one.energy_per_epoch_j < 80.0  # pulled towards the prior, not all the way
    assert 0.05 < one.refinement["prior_weight"] < 0.5
    many = refine(prior, epoch_energies_j=[80.0, 80.5, 79.5, 80.2, 79.8, 80.1, 80.0, 79.9], total_epochs=20)
    assert many.refinement["prior_weight"] < 0.01
    assert many.energy_per_epoch_j == pytest.approx(80.0, rel=0.005)
    # narrower interval with more epochs
    w1 = one.interval_j[1] / one.interval_j[0]
    w8 = many.interval_j[1] / many.interval_j[0]
    assert w8 < w1


def test_warmup_epoch_excluded_but_counted_in_total():
    e = [160.0, 101.0, 99.0, 100.0, 100.5]
    r = refine(make_prior(), epoch_energies_j=e, total_epochs=10)
    assert r.refinement["warmup_epochs"] == [0]
    assert r.refinement["stable_start"] == 1
    assert r.refinement["projected_epoch_energy_j"] == pytest.approx(100.0, rel=0.01)
    assert r.energy_j == pytest.approx(sum(e) + 5 * 100.0, rel=0.01)


def test_phase_change_projects_from_newest_phase():
    e = [140, 50, 51, 49, 50, 50.5, 49.5, 50, 50, 49.8, 150, 151, 149, 150.5]
    r = refine(make_prior(100.0), epoch_energies_j=e, total_epochs=30)
    ref = r.refinement
    assert ref["phase_change_at"] == 10
    assert ref["warmup_epochs"] == [0]
    assert ref["projected_epoch_energy_j"] == pytest.approx(150.0, rel=0.01)
    assert r.energy_j == pytest.approx(sum(e) + 16 * 150.0, rel=0.01)
    assert any("phase change at epoch 10" in w for w in r.warnings)


def test_single_outlier_epoch_does_not_move_level():
    e = [100, 101, 99, 100, 300, 100.5, 99.5, 100]
    seg = segment_epochs(e)
    assert seg.phase_starts == [] and 4 in seg.outliers
    r = refine(make_prior(), epoch_energies_j=e, total_epochs=18)
    assert r.refinement["projected_epoch_energy_j"] == pytest.approx(100.0, rel=0.01)


def test_declared_future_phase_uses_prior_budget():
    prior = make_prior(100.0, epochs=20)
    r = refine(prior, epoch_energies_j=[50.0, 50.0, 50.0], total_epochs=20, phases=[10])
    # 10 cheap epochs (500 J) + the prior budget for the other 10 -> the prior's total 2000 J
    assert r.energy_j == pytest.approx(2000.0, rel=1e-6)
    assert r.interval_j[0] < 2000.0 < r.interval_j[1]
    assert any("declared phase from epoch 10" in w for w in r.warnings)
    honest = refine(prior, epoch_energies_j=[50.0, 50.0, 50.0], total_epochs=20)
    assert honest.energy_j < 1100 and any("phases=" in w for w in honest.warnings)


def test_unknown_total_epochs_interval_spans_plausible_range():
    prior = make_prior(100.0, epochs=20)
    e = [100.0] * 5
    r = refine(prior, epoch_energies_j=e)
    assert r.refinement["total_epochs_range"] == [5, 20]
    assert r.interval_j[0] == pytest.approx(500.0)  # the run may stop now
    assert r.interval_j[1] > 2000.0
    r2 = refine(prior, epoch_energies_j=e, max_epochs=40)
    assert r2.refinement["total_epochs_range"] == [5, 40] and r2.interval_j[1] > 4000.0
    assert any("total_epochs unknown" in w for w in r2.warnings)


def test_epoch_times_give_time_and_power():
    r = refine(make_prior(), epoch_energies_j=[100.0] * 4, epoch_times_s=[5.0] * 4, total_epochs=10)
    assert r.time_s == pytest.approx(50.0)
    assert r.avg_power_w == pytest.approx(r.energy_j / 50.0)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"epoch_energies_j": []}, "empty"),
        ({"epoch_energies_j": [100, -1]}, "epoch_energies_j[1]"),
        ({"epoch_energies_j": [100, 0]}, "> 0"),
        ({"epoch_energies_j": [100, float("nan")]}, "finite"),
        ({"epoch_energies_j": [100, 100], "total_epochs": 1}, "total_epochs=1"),
        ({"epoch_energies_j": [100], "epoch_times_s": [1, 2]}, "one time per epoch"),
        ({"epoch_energies_j": [100], "phases": [0]}, "phases"),
    ],
)
def test_bad_input_raises_clear_error(kwargs, fragment):
    with pytest.raises(InvalidInputError) as info:
        refine(make_prior(), **kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, JoulecastError)


def test_trace_integration_is_trapezoid():
    t = np.arange(0.0, 11.0)  # 0..10 s
    p = np.full(11, 100.0)
    p[5:] = 200.0
    e, dt = epoch_energies_from_trace(t, p, [4.0, 10.0])
    assert e[0] == pytest.approx(400.0)
    assert e[1] == pytest.approx(150.0 + 5 * 200.0)  # 4..5 s ramps 100 -> 200 W, then 5 s at 200 W
    assert list(dt) == [4.0, 6.0]
    # boundaries between samples are interpolated
    e2, _ = epoch_energies_from_trace(t, np.full(11, 50.0), [2.5, 7.25])
    assert e2 == pytest.approx([125.0, 237.5])


@pytest.mark.parametrize(
    "t, ends, fragment",
    [
        ([0, 1, 1, 2], [1.5], "increase strictly"),
        ([0, 2, 1, 3], [1.5], "increase strictly"),
        ([0, 1, 2, 3], [5.0], "outside the trace"),
        ([0, 1, 2, 3], [2.0, 1.0], "epoch_end_s"),
    ],
)
def test_trace_bad_input(t, ends, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        refine_from_trace(make_prior(), timestamps_s=t, power_w=[10.0] * len(t), epoch_end_s=ends)


def test_refine_from_real_seaa_trace(shared_data):
    """A real RTX 3090 MobileNetV2 run: 10 frozen epochs, uniform cut; the projection after 5 is near truth."""
    tr = pd.read_parquet(
        shared_data / "seaa2023_ect" / "power_traces.parquet",
        columns=["run_id", "t_seconds", "power_W"],
        filters=[("run_id", "==", "cloud/mobilenet_v2/00")],
    )
    t, p = tr.t_seconds.to_numpy(float), tr.power_W.to_numpy(float)
    frozen = t[t < 255.0]  # the frozen phase of this run ends at ~255 s (power step)
    ends = np.linspace(frozen[0], frozen[-1], 11)[1:]
    e_all, _ = epoch_energies_from_trace(frozen, p[: frozen.size], ends)
    r = refine_from_trace(
        make_prior(float(e_all.mean()) * 1.3, epochs=10),
        timestamps_s=frozen,
        power_w=p[: frozen.size],
        epoch_end_s=ends[:5],
        total_epochs=10,
    )
    assert r.refinement["epochs_measured"] == 5
    assert r.energy_j == pytest.approx(e_all.sum(), rel=0.05)
    assert r.interval_j[0] <= e_all.sum() <= r.interval_j[1]
