"""predict(..., input_samples_per_s=N): a data loader that caps throughput (GPU idles while it waits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurize.errors import InvalidInputError
from predictor import predict
from predictor.input_cap import cap_epoch

RESNET18 = str(Path(__file__).resolve().parents[1] / "models" / "examples" / "resnet18.onnx")
KW = dict(gpu="RTX 3090", batch_size=64, samples_per_epoch=50_000, val_samples=10_000, epochs=10)


def test_cap_epoch_physics():
    base = dict(time_per_epoch_s=50.0, energy_per_epoch_j=15_000.0, idle_w=20.0, samples_per_epoch=50_000,
                val_samples=10_000)
    fast = cap_epoch(**base, input_samples_per_s=2_000.0)  # needs 30 s < 50 s: the GPU is the bottleneck
    assert (fast.time_per_epoch_s, fast.energy_per_epoch_j, fast.ratio) == (50.0, 15_000.0, 1.0)
    capped = [cap_epoch(**base, input_samples_per_s=r) for r in (1_000.0, 500.0, 100.0)]
    assert [c.time_per_epoch_s for c in capped] == [60.0, 120.0, 600.0]
    # same GPU work plus idle watts while waiting
    assert capped[0].energy_per_epoch_j == pytest.approx(15_000 + 20 * 10)
    powers = [c.energy_per_epoch_j / c.time_per_epoch_s for c in capped]
    assert 300.0 > powers[0] > powers[1] > powers[2] > 20.0  # falls toward idle as the cap tightens
    assert powers[2] == pytest.approx(20 + (300 - 20) * 50 / 600)
    assert "input-bound" in capped[1].note and "idles at 20 W" in capped[1].note


def test_predict_with_input_cap_states_it():
    free = predict(RESNET18, **KW)
    rate = 0.25 * (50_000 + 10_000) / free.time_per_epoch_s  # a loader 4x too slow
    slow = predict(RESNET18, input_samples_per_s=rate, **KW)
    assert slow.time_per_epoch_s == pytest.approx(4 * free.time_per_epoch_s)
    assert slow.time_s == pytest.approx(10 * slow.time_per_epoch_s)
    assert free.energy_j < slow.energy_j < 4 * free.energy_j
    assert slow.avg_power_w < 0.5 * free.avg_power_w
    assert slow.energy_j == pytest.approx(10 * slow.energy_per_epoch_j)
    assert slow.interval_j[0] < slow.energy_j < slow.interval_j[1]
    assert any(w.startswith("input-bound") for w in slow.warnings)
    keeps_up = predict(RESNET18, input_samples_per_s=1e9, **KW)
    assert keeps_up.energy_j == pytest.approx(free.energy_j) and "no cap" in keeps_up.warnings[-1]


@pytest.mark.parametrize("bad", [0, -3.0, float("nan"), "fast", True])
def test_bad_input_rate_is_one_clear_error(bad):
    with pytest.raises(InvalidInputError, match="input_samples_per_s"):
        predict(RESNET18, input_samples_per_s=bad, **KW)


def test_cli_flag():
    from typer.testing import CliRunner

    from predictor.cli import app

    args = ["predict", RESNET18, "--gpu", "RTX 3090", "--batch-size", "64", "--samples-per-epoch", "50000",
            "--json"]
    free = json.loads(CliRunner().invoke(app, args).output)
    res = CliRunner().invoke(app, args + ["--input-samples-per-s", "100"])
    assert res.exit_code == 0, res.output
    capped = json.loads(res.output)
    assert capped["time_per_epoch_s"] == pytest.approx(500.0) and capped["avg_power_w"] < free["avg_power_w"]
    assert any("input-bound" in w for w in capped["warnings"])
