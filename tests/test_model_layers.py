"""Per-layer physics prior (featurize.physics.layers) and per-layer answers (Prediction.layers, predict --layers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from _graphs import RESNET50, gpt_onnx

from featurize import GPUSpec, featurize
from featurize.layer_profile import TILE_ELEMENTS, LayerEfficiencies, evaluated_batch, wave_efficiency
from featurize.physics.layers import layer_prior
from featurize.physics.prior import (
    KERNELS_PER_NODE,
    LAUNCH_S,
    OPT_BYTES_PER_PARAM,
    STEP_OVERHEAD_S,
    gpu_columns,
)

REPO = Path(__file__).resolve().parents[1]
RESNET18 = str(REPO / "models" / "examples" / "resnet18.onnx")
GPU = GPUSpec(name="T", vendor="NVIDIA", architecture="x", tdp_w=300.0, peak_fp32_flops=10e12,
              peak_fp16_tensor_flops=80e12, mem_bw_bytes_per_s=1e12, mem_bytes=16e9, l2_cache_bytes=4e6,
              sm_count=10, source="user", idle_power_w=30.0, launch_year=2020)


def test_wave_quantisation():
    # 10 SMs: 11 tiles need 2 waves of 10 slots -> 11/20 busy; 20 tiles fill both waves
    assert wave_efficiency([11 * TILE_ELEMENTS], 10)[0] == pytest.approx(0.55)
    assert wave_efficiency([20 * TILE_ELEMENTS], 10)[0] == pytest.approx(1.0)
    assert wave_efficiency([1], 10)[0] == pytest.approx(0.1)  # one tile on ten SMs


def test_hand_computed_nodes():
    nodes = pd.DataFrame({
        "name": ["mm", "relu", "view"], "op_type": ["MatMul", "Relu", "Reshape"],
        "op_class": ["matmul", "elementwise", "zero"],
        "flops": [2e9, 1e6, 0.0], "bytes_read": [4e6, 4e6, 0.0], "bytes_written": [4e6, 4e6, 0.0]})
    gpu = gpu_columns(GPU, "fp32")
    lp = layer_prior(nodes, gpu, batch_size=4, backward_ratio=2.0, trainable_params=1e6, eval_batch=2)
    assert list(lp["node"]) == ["mm", "relu", "optimizer update", "step overhead"]  # the view launches nothing
    scale = 4 / 2 * 3  # per-sample x batch 4, forward + 2x backward
    # matmul: 6e9 FLOPs at 0.7 x 10 TFLOP/s; 2e6 output elements x 2 -> 245 tiles on 10 SMs (25 waves)
    tiles = math.ceil(4e6 / 4 * 2 / TILE_ELEMENTS)
    q = tiles / (math.ceil(tiles / 10) * 10)
    mm = lp.iloc[0]
    assert mm["t_compute_s"] == pytest.approx(2e9 * scale / (0.7 * 10e12 * q))
    assert mm["t_memory_s"] == pytest.approx(8e6 * scale / (1e12 * 0.8))
    assert mm["time_s"] == pytest.approx(mm["t_compute_s"] + KERNELS_PER_NODE * LAUNCH_S)
    assert mm["bound"] == "compute"
    relu = lp.iloc[1]
    assert relu["bound"] == "memory" and relu["wave_efficiency"] == 1.0
    assert relu["time_s"] == pytest.approx(8e6 * scale / 0.8e12 + KERNELS_PER_NODE * LAUNCH_S)
    opt = lp.iloc[2]
    assert opt["t_memory_s"] == pytest.approx(OPT_BYTES_PER_PARAM * 1e6 / 0.8e12)
    assert lp.iloc[3]["time_s"] == STEP_OVERHEAD_S and lp.iloc[3]["power_w"] == pytest.approx(30.0)  # idle
    assert (lp["power_w"] <= 300.0).all() and (lp["power_w"] >= 30.0).all()
    # a larger memory efficiency can only speed up the memory-bound node
    fast = layer_prior(nodes, gpu, batch_size=4, backward_ratio=2.0, trainable_params=1e6, eval_batch=2,
                       efficiencies=LayerEfficiencies(memory={"elementwise": 1.0}))
    assert fast.iloc[1]["time_s"] < relu["time_s"] and fast.iloc[0]["time_s"] == pytest.approx(mm["time_s"])


def test_node_table_at_a_fixed_export_batch_is_per_sample_scaled():
    """A graph exported at batch 8 keeps node costs at batch 8; the prior at batch 8 must not count them 8x."""
    gf8 = featurize(gpt_onnx(layers=2, seq=128, batch=8), batch_size=8)
    gf2 = featurize(gpt_onnx(layers=2, seq=128, batch=2), batch_size=2)
    assert evaluated_batch(gf8.nodes, gf8.flops_forward) == 8 and evaluated_batch(gf2.nodes, gf2.flops_forward) == 2
    kw = dict(batch_size=16, backward_ratio=2.0, trainable_params=gf8.trainable_params)
    g = gpu_columns(GPU, "fp32")
    a = layer_prior(gf8.nodes, g, eval_batch=8, **kw)
    b = layer_prior(gf2.nodes, g, eval_batch=2, **kw)
    assert a["flops"].sum() == pytest.approx(b["flops"].sum())
    assert a["flops"].sum() == pytest.approx(16 * 3 * gf8.flops_forward)


def test_prediction_layers_sum_to_the_totals_and_round_trip():
    from predictor import Prediction, predict

    p = predict(RESNET18, gpu="A100-SXM4-80GB", batch_size=64, samples_per_epoch=50_000, epochs=2)
    lay = p.layers
    assert list(lay.columns) == ["node", "module", "op_type", "op_class", "bound", "time_s", "energy_j", "share"]
    assert lay["time_s"].sum() == pytest.approx(p.time_s) and lay["energy_j"].sum() == pytest.approx(p.energy_j)
    assert lay["share"].sum() == pytest.approx(1.0)
    # ResNet-18: convolutions hold most of the energy, every Conv node is there
    conv = lay[lay["op_class"] == "conv"]
    assert conv["share"].sum() > 0.6 and len(conv) == 20
    back = Prediction.from_dict(json.loads(json.dumps(p.to_dict())))
    pd.testing.assert_frame_equal(back.layers, lay)
    assert back.energy_j == p.energy_j


def test_cli_layers_view(tmp_path):
    from typer.testing import CliRunner

    from predictor.cli import app

    res = CliRunner().invoke(app, ["predict", RESNET18, "--gpu", "A100-SXM4-80GB", "--batch-size", "64",
                                   "--samples-per-epoch", "1000", "--layers", "5"])
    assert res.exit_code == 0, res.output
    table = res.output.split("Top 5 layers by energy")[1].splitlines()
    assert sum("Conv" in line for line in table[2:7]) == 5  # the five hotspots of ResNet-18 are convolutions
    assert "By op class: conv" in res.output
    js = CliRunner().invoke(app, ["predict", RESNET18, "--gpu", "A100-SXM4-80GB", "--batch-size", "64",
                                  "--layers", "3", "--json"])
    rows = json.loads(js.output)["layers"]
    assert len(rows) == 3 and rows[0]["energy_j"] >= rows[1]["energy_j"] >= rows[2]["energy_j"]


def test_resnet50_breakdown_is_physical():
    gf = featurize(str(RESNET50), batch_size=64)
    from featurize import lookup_gpu
    from predictor.layers import layer_prior_for

    lp = layer_prior_for(gf, lookup_gpu("A100-SXM4-80GB"), precision="fp32", batch_size=64)
    conv = lp[lp["op_class"] == "conv"]
    # 53 convolutions; the 3x3 ones are compute-bound on TF32, BatchNorm / ReLU are memory-bound
    assert len(conv) == 53 and (conv["bound"] == "compute").mean() > 0.5
    assert (lp[lp["op_class"].isin(["normalization", "elementwise"])]["bound"] != "compute").all()
    # forward + backward FLOPs of the step (the optimizer's are its bytes): 64 x 3 x 4.09 GMACs x 2 roughly
    assert lp["flops"].sum() == pytest.approx(64 * (gf.flops_forward + gf.flops_backward), rel=1e-9)
    assert 64 * 2.9 * 8.18e9 < lp["flops"].sum() < 64 * 3.0 * 8.2e9
