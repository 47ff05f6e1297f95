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
        assert kept["precision"].isin(["fp32", "tf32", "fp16", "bf16", "fp8"]).all()
        layout = kept["tensor_parallel"] * kept["pipeline_parallel"] * kept["context_parallel"] * kept["data_parallel"]
        assert (layout == kept["n_gpus"]).all()
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
    samples = ~kept["architecture"].isin(["gnmt_v2", "tacotron2"])  # Lambda derives no step time for token units
    assert np.allclose(kept.loc[samples, "time_per_epoch_s"], step.loc[kept.loc[samples, "run_id"]].to_numpy(),
                       rtol=1e-9)
    assert (out.loc[out["gpu"].str.contains("Max-Q"), "reason"].str.contains("laptop")).all()
    # raw: 8x H100 SSD AMP logs 6,765 img/s "per GPU" = 7.8 x its 1-GPU 866 img/s: a system total, kept out
    doubled = out[out["reason"].str.startswith("per-GPU throughput above 1.5x")]
    assert len(doubled) == 235 and set(doubled["architecture"]) <= {"ssd300", "ncf", "bert_large"}


def test_lambda_token_units_use_the_stated_sample(lam):
    kept, _ = lam
    r = _row(kept, "results/1080Ti/gnmt/FP16/b160")  # raw: 15,369.67 tokens/s = source + target tokens
    assert (r.model, r.input_shape) == ("zoo:gnmt_v2", "50")
    assert r.time_per_epoch_s == pytest.approx(160 / (15369.666666666666 / 50), rel=1e-9)
    r = _row(kept, "results/1080Ti/tacotron2/FP16/b72")  # raw: 7,938.88 mel frames/s; LJSpeech mean 566 frames
    assert r.time_per_epoch_s == pytest.approx(72 / (7938.878654 / 566), rel=1e-6)


def test_ncf_rows_faster_than_the_gpu_alone_are_kept_out(lam, shared_data):
    """Data parallelism cannot make a GPU faster than itself: at the same per-GPU batch, ResNet-50/GNMT/Mask R-CNN/
    Transformer-XL multi-GPU rows stay <= 1.014x the 1-GPU figure; NCF's sit up to 47x above it and are kept out."""
    kept, out = lam
    raw = pd.read_csv(shared_data / "lambda_dlbench" / "train_throughput.csv")
    key = ["tree", "gpu", "model_key", "precision_raw", "batch_size"]
    one = raw[raw["n_gpus"] == 1].groupby(key)["throughput_per_gpu"].max().rename("one").reset_index()
    multi = raw[raw["n_gpus"] > 1].merge(one, on=key)
    ratio = multi["throughput_per_gpu"] / multi["one"]
    compute_bound = multi["model_key"].isin(["resnet50", "gnmt", "maskrcnn", "transformerxllarge"])
    assert ratio[compute_bound].max() < 1.014 and (ratio[multi["model_key"] == "ncf"] > 1.05).sum() >= 100
    # 2x H100 SXM5 FP32 NCF at 8e6 per GPU: 98.6 M samples/s per GPU vs 66.7 M alone (1.29-1.48x): out
    faster = out[out["reason"].str.startswith("per-GPU throughput above 1.05x")]
    assert "results/1cc_2xH100_80GB_SXM5_v1/ncf/FP32/b8e+06" in set(faster["run_id"])
    ncf = kept[(kept["architecture"] == "ncf") & (kept["n_gpus"] > 1)]
    assert (ncf["batch_size"] / ncf["time_per_epoch_s"]).max() < 60e6  # what stays is below the 1-GPU H100 figure


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
    # PyTorch NCF cells are millions of samples/s (README "22.59M"), as TensorFlow's 20.18e6 on the same A100
    r = _row(kept, "PyTorch/Recommendation/NCF/README.md:811/NCF/A100 SXM4 40GB/x1/Throughput - TF32 (samples/s)"
                   "/b1.04858e+06/snan")
    assert r.time_per_epoch_s == pytest.approx(1048576 / 22.59e6, rel=1e-9)
    assert (kept["architecture"] == "maskrcnn_r50_fpn").sum() == 12  # PyTorch Mask R-CNN only


def test_mlperf_hand_checked_rows(mlp):
    kept, out = mlp
    # packed BERT: 249.93 sequences/s per GPU, batch 64 sequences; priced per sequence of 254 real tokens
    bert = _row(kept, "v3.0/ASUSTeK/results/ESC4000-E11-4xA100-PCIE-80GB-NVBridge/bert/result_0.txt")
    assert (bert.input_shape, bert.batch_size) == ("seq254", 64)
    assert bert.time_per_epoch_s == pytest.approx(64 / 249.927466544948, rel=1e-12)
    assert (out.loc[out["architecture"] == "bert_large", "reason"].str.startswith("packing of this").sum()) == 59
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
    # raw: GBS 28 on 8 A30s = 3.5 per GPU: no whole micro-batch (was truncated to 3 before, 17 % off per sample)
    assert out["reason"].str.startswith("logged batch not a whole number").sum() == 40


def test_mlperf_layouts_are_logged_or_kept_out(mlp):
    """Llama-2-70B LoRA keeps NVIDIA's configuration of its round (TP/CP x DP, grad-accum, micro-batch 1, FP8, frozen
    base); a LoRA row without one is kept out; no model-parallel row is labelled data-parallel."""
    kept, out = mlp
    lora = kept[kept["architecture"] == "llama2_70b_lora"]
    h100 = lora[lora["run_id"].str.startswith("v4.0/NVIDIA/") & (lora["gpu"] == "H100-SXM5-80GB")]
    assert len(h100) == 10
    assert h100[["tensor_parallel", "context_parallel", "data_parallel", "grad_accum", "batch_size"]].drop_duplicates(
    ).values.tolist() == [[4, 1, 2, 4, 1]]
    assert (lora["precision"] == "fp8").all() and (lora["frozen"] == "base").all()
    assert (lora.loc[lora["tensor_parallel"] * lora["context_parallel"] > 1, "parallelism"] == "model+data").all()
    assert (kept.loc[kept["parallelism"] == "ddp", ["tensor_parallel", "pipeline_parallel", "context_parallel"]]
            == 1).all().all()
    unknown = out[out["reason"].str.startswith("parallel layout unknown")]
    assert len(unknown) == 180 and unknown["gpu"].str.contains("MI300X").sum() == 40  # AMD: layout not logged
    assert (kept.loc[kept["architecture"] == "dlrm_dcnv2", "parallelism"] == "hybrid_embedding").all()
    mask = kept[kept["architecture"] == "maskrcnn_r50_fpn"]
    assert (mask["frozen"] == "backbone.stem;backbone.layer1").all() and (mask["input_shape"] == "3x800x1344").all()


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
    assert len(kept) == 30 and len(out) == 0
    # the logged pipeline layout: dp 1 x tp 1 x pp 4, 32 micro-batches of 8 per iteration for BERT-huge
    r = kept.iloc[0]
    assert (r.model, r.input_shape, r.parallelism) == ("zoo:bert_huge", "seq512", "pipeline")
    assert (r.pipeline_parallel, r.tensor_parallel, r.data_parallel, r.grad_accum) == (4, 1, 1, 32)
    assert set(kept["model"]) == {"zoo:gpt3?size=1", "zoo:bert_huge", "zoo:t5_3b", "zoo:bloom_3b",
                                  "zoo:wide_resnet101_8"}


def test_time_only_rows_need_time():
    base = {"source": ["s"], "run_id": ["1"], "gpu": ["A100"], "architecture": ["a"], "model": ["zoo:ncf"],
            "batch_size": [8], "samples_per_epoch": [8], "energy_per_epoch_j": [np.nan]}
    ok = validate_runs(pd.DataFrame({**base, "time_per_epoch_s": [0.5], "n_gpus": [4]}), origin="t", check_gpus=False)
    assert ok["n_gpus"].item() == 4 and math.isnan(ok["energy_per_epoch_j"].item())
    with pytest.raises(SchemaError, match="time-only"):
        validate_runs(pd.DataFrame(base), origin="t")
    with pytest.raises(SchemaError, match="n_gpus"):
        validate_runs(pd.DataFrame({**base, "time_per_epoch_s": [0.5], "n_gpus": [0]}), origin="t", check_gpus=False)
    assert (ok["data_parallel"].item(), ok["parallelism"].item()) == (4, "ddp")  # layout defaults
    tp = validate_runs(pd.DataFrame({**base, "time_per_epoch_s": [0.5], "n_gpus": [8], "tensor_parallel": [4]}),
                       origin="t", check_gpus=False)
    assert (tp["data_parallel"].item(), tp["parallelism"].item()) == (2, "model+data")
    with pytest.raises(SchemaError, match="tensor x pipeline x context x data"):
        validate_runs(pd.DataFrame({**base, "time_per_epoch_s": [0.5], "n_gpus": [8], "tensor_parallel": [4],
                                    "data_parallel": [4]}), origin="t", check_gpus=False)


LAMBDA_ROWS, DLE_ROWS, MLPERF_ROWS = 3732, 378, 6790  # with the zoo of this commit (rows without a graph are kept out)
