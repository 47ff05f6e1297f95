"""Behavioural checks on the golden cases (``tests/golden/predictions.json`` detects change; these say whether the
predictions it pins make physical sense): the interval holds the forecast, energy = power x time = per-epoch energy
x epochs, average power lies between the GPU's idle draw and its TDP, and the T4 (70 W, 65 fp16 TFLOP/s) is the
slowest of the four GPUs on every graph."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from featurize import lookup_gpu
from featurize.hardware.names import idle_power_w
from predictor.model.loaded import MANIFEST, shipped_model_dir

sys.path.insert(0, str(Path(__file__).parent))
from update_golden import GPUS, cases, compute, resolve


@pytest.fixture(scope="module")
def golden_now() -> list[dict]:
    if not (shipped_model_dir() / MANIFEST).is_file():
        pytest.skip("no shipped model in models/ yet")
    return compute()


def test_golden_cases_are_self_consistent(golden_now):
    for r in golden_now:
        where = (r["graph"], r["gpu"])
        assert r["interval_low_j"] < r["energy_j"] < r["interval_high_j"], where
        assert r["energy_j"] == pytest.approx(r["avg_power_w"] * r["time_s"], rel=1e-9), where
        assert r["energy_j"] == pytest.approx(r["energy_per_epoch_j"] * r["epochs"], rel=1e-9), where
        gpu = lookup_gpu(r["gpu"])
        assert idle_power_w(gpu) < r["avg_power_w"] <= gpu.tdp_w, where


def test_golden_t4_is_the_slowest_gpu_on_every_graph(golden_now):
    for graph in {r["graph"] for r in golden_now}:
        times = {r["gpu"]: r["time_s"] for r in golden_now if r["graph"] == graph}
        assert set(times) == set(GPUS) and max(times, key=times.get) == "T4", (graph, times)


def test_golden_energy_scales_with_epochs():
    """Twice the epochs is twice the energy and time at the same average power."""
    from predictor import predict

    if not (shipped_model_dir() / MANIFEST).is_file():
        pytest.skip("no shipped model in models/ yet")
    specs, light = cases()
    case = {k: v for k, v in specs[0].items() if k != "graph"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = predict(resolve(specs[0]["graph"], light), gpu=GPUS[0], **case)
        two = predict(resolve(specs[0]["graph"], light), gpu=GPUS[0], **{**case, "epochs": 2 * case["epochs"]})
    assert two.energy_j == pytest.approx(2 * one.energy_j, rel=1e-12)
    assert two.time_s == pytest.approx(2 * one.time_s, rel=1e-12)
    assert two.avg_power_w == pytest.approx(one.avg_power_w, rel=1e-12)
