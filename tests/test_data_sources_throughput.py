"""Converters of the throughput sources (lambda_dlbench, nvidia_dle, mlperf_training) and Perseus' iterations:
row counts, hand-checked rows (values read from the raw CSVs), explicit unit conversion, logged exclusions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from featurize.errors import SchemaError
from training_data.schema import validate_runs
from training_data.sources import lambda_dlbench, mlperf_training, nvidia_dle, perseus
from training_data.sources.throughput import samples_per_s


@pytest.fixture(scope="module")
def lam(shared_data):
    return lambda_dlbench.load_with_exclusions(shared_data)


@pytest.fixture(scope="module")
def dle(shared_data):
    return nvidia_dle.load_with_exclusions(shared_data)


@pytest.fixture(scope="module")
def mlp(shared_data):
    return mlperf_training.load_with_exclusions(shared_data)


def _row(df, run_id):
    hit = df[df["run_id"] == run_id]
    assert len(hit) == 1, run_id
    return hit.iloc[0]


def test_every_raw_row_is_kept_or_kept_out_with_a_reason(lam, dle, mlp):
    for (kept, out), raw_rows in ((lam, 4104), (dle, 1085), (mlp, 7566)):
        assert len(kept) + len(out) == raw_rows
        assert (out["reason"].str.len() > 0).all()
        assert kept["energy_per_epoch_j"].isna().all() and kept["avg_power_w"].isna().all()  # never invented
        assert (kept["time_per_epoch_s"] > 0).all() and (kept["phase"] == "throughput").all()
        assert kept["precision"].isin(["fp32", "tf32", "fp16", "bf16"]).all()
    assert (len(lam[0]), len(dle[0]), len(mlp[0])) == (LAMBDA_ROWS, DLE_ROWS, MLPERF_ROWS)


def test_lambda_hand_checked_rows(lam, shared_data):
    kept, out = lam
    r = _row(kept, "results/1080Ti/bert_base_squad/FP16/b20")  # raw: 35.1333 sequences/s, batch 20, 1 GPU
    assert (r.gpu, r.architecture, r.model, r.input_shape) == ("GTX-1080-Ti", "bert_base", "zoo:bert_base_qa", "seq384")
    assert (r.precision, r.precision_logged, r.n_gpus, r.batch_size) == ("fp16", "FP16", 1, 20)
    assert r.time_per_epoch_s == pytest.approx(20 / 35.13333333333333, rel=1e-12)
    r = _row(kept, "results/16xA4000/resnet50/FP32/b148")  # raw: 3910.28 img/s on 16 GPUs, 148 per GPU, TF32
    assert (r.gpu, r.n_gpus, r.precision, r.samples_per_epoch) == ("RTX-A4000", 16, "tf32", 148)
    assert r.time_per_epoch_s == pytest.approx(148 / (3910.28 / 16), rel=1e-12)
    # the per-GPU step time agrees with Lambda's own derived column wherever the unit is a sample
    raw = pd.read_csv(shared_data / "lambda_dlbench" / "train_throughput.csv")
    ids = (raw["tree"] + "/" + raw["system"] + "/" + raw["model_key"] + "/" + raw["precision_raw"] + "/b"
           + raw["batch_size"].map("{:g}".format))
    step = pd.Series(raw["time_per_step_s"].to_numpy(), index=ids)
    assert np.allclose(kept["time_per_epoch_s"], step.loc[kept["run_id"]].to_numpy(), rtol=1e-9)
    reasons = out.groupby("architecture")["reason"].first()
    assert "tokens/s" in reasons["gnmt_v2"] and "mel_frames/s" in reasons["tacotron2"]
    assert (out.loc[out["gpu"].str.contains("Max-Q"), "reason"].str.contains("laptop")).all()
    # raw: 8x H100 SSD AMP logs 6,765 img/s "per GPU" = 7.8 x its 1-GPU 866 img/s: a system total, kept out
    doubled = out[out["reason"].str.startswith("per-GPU throughput above")]
    assert len(doubled) == 235 and set(doubled["architecture"]) <= {"ssd300", "ncf", "bert_large"}


def test_token_units_convert_only_with_a_defined_sample(shared_data):
    raw = pd.read_csv(shared_data / "lambda_dlbench" / "train_throughput.csv")
    txl = raw[raw["model_key"] == "transformerxlbase"].iloc[0]  # tokens/s over target length 192
    value, reason = samples_per_s(txl["throughput_per_gpu"], "tokens/s", txl["seq_len"])
    assert reason == "" and value == pytest.approx(txl["samples_per_s_per_gpu"], rel=1e-9)
    value, reason = samples_per_s(15369.7, "tokens/s")
    assert math.isnan(value) and "no defined sample" in reason
    assert samples_per_s(100.0, "images/s") == (100.0, "")


def test_dle_hand_checked_rows(dle):
    kept, out = dle
    prefix = "PyTorch/Classification/ConvNets/resnet50v1.5/README.md:596/resnet50v1.5/A100 SXM4 80GB"
    r = _row(kept, f"{prefix}/x1/Throughput - mixed precision/b256/snan")  # raw: 2,470 img/s, batch 256 (configs.yml)
    assert (r.gpu, r.architecture, r.precision, r.n_gpus) == ("A100-SXM4-80GB", "resnet50_v15", "fp16", 1)
    assert r.time_per_epoch_s == pytest.approx(256 / 2470.0, rel=1e-12)
    r = _row(kept, f"{prefix}/x8/Throughput - TF32/b256/snan")  # raw: 7,248 img/s on 8 GPUs = 906 per GPU
    assert (r.n_gpus, r.precision) == (8, "tf32") and r.time_per_epoch_s == pytest.approx(256 / 906.0, rel=1e-12)
    assert "V100-SXM3-32GB" in set(kept["gpu"])  # DGX-2 rows resolve to their own GPU-table row
    assert out["reason"].str.contains("gradient-accumulated").sum() > 0


def test_mlperf_hand_checked_rows(mlp):
    kept, out = mlp
    bert = out[out["run_id"] == "v3.0/ASUSTeK/results/ESC4000-E11-4xA100-PCIE-80GB-NVBridge/bert/result_0.txt"]
    assert bert["reason"].item().startswith("packed sequences")  # 250 seq/s/GPU, tokens per sample not logged
    r = _row(kept, "v3.0/ASUSTeK/results/ESC4000-E11-4xA100-PCIE-80GB-NVBridge/unet3d/result_0.txt")  # 4 GPUs x 8
    assert (r.gpu, r.architecture, r.model, r.input_shape) == ("A100-PCIE-80GB", "unet3d", "zoo:unet3d_kits19",
                                                              "1x128x128x128")
    assert (r.n_gpus, r.batch_size, r.precision, r.precision_logged) == (4, 8, "fp16", "mixed (not logged)")
    assert r.time_per_epoch_s == pytest.approx(0.23563268780708313, rel=1e-9)  # the log's own step_time_s
    assert r.time_per_epoch_s == pytest.approx(8 / 33.951146907723384, rel=1e-12)
    r = _row(kept, "v3.1/xFusion/results/G5500V7x8xL40S/resnet/result_1.txt")  # 2,204.156 img/s/GPU, batch 300
    assert (r.gpu, r.n_gpus) == ("L40S", 8) and r.time_per_epoch_s == pytest.approx(300 / 2204.1559288937906)
    assert (out["reason"] == "run aborted").sum() == 41
    assert out["reason"].str.contains("Gaudi2").sum() == 125


def test_perseus_rows_carry_per_gpu_power_and_gpu_seconds(shared_data):
    raw = pd.read_csv(shared_data / "perseus_sosp24" / "iterations_a100.csv")
    rows, reasons = perseus._convert(raw)
    r = rows.iloc[0]  # bert-huge at 300 W: 6,819.0 J and 6.3548 s per iteration on 4 GPUs, global batch 256
    assert r.energy_per_epoch_j == pytest.approx(6819.017444) and r.time_per_epoch_s == pytest.approx(4 * 6.354815)
    assert r.energy_per_epoch_j / r.time_per_epoch_s == pytest.approx(r.avg_power_w, rel=1e-6)  # 268.26 W per GPU
    assert (r.samples_per_epoch, r.batch_size, bool(r.default_power_limit)) == (256, 8, True)
    validated = validate_runs(rows.drop(columns=["gpu_logged"]), origin="perseus")  # a valid energy source
    assert len(validated) == 30
    kept, out = perseus.load_with_exclusions(shared_data)
    assert len(kept) == 0 and len(out) == 30 and out["reason"].str.startswith("no zoo graph yet").all()


def test_time_only_rows_need_time():
    base = {"source": ["s"], "run_id": ["1"], "gpu": ["A100"], "architecture": ["a"], "model": ["zoo:ncf"],
            "batch_size": [8], "samples_per_epoch": [8], "energy_per_epoch_j": [np.nan]}
    ok = validate_runs(pd.DataFrame({**base, "time_per_epoch_s": [0.5], "n_gpus": [4]}), origin="t", check_gpus=False)
    assert ok["n_gpus"].item() == 4 and math.isnan(ok["energy_per_epoch_j"].item())
    with pytest.raises(SchemaError, match="time-only"):
        validate_runs(pd.DataFrame(base), origin="t")
    with pytest.raises(SchemaError, match="n_gpus"):
        validate_runs(pd.DataFrame({**base, "time_per_epoch_s": [0.5], "n_gpus": [0]}), origin="t", check_gpus=False)


LAMBDA_ROWS, DLE_ROWS, MLPERF_ROWS = 2780, 321, 3525  # with the zoo of this commit (rows without a graph are kept out)
