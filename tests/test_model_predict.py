"""predict(): defaults and warnings, scaling, bad input, and the CLI (on a synthetic model directory)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_model_synth import synth_gpus, synth_table

from featurize.errors import InvalidInputError, JoulecastError, UnknownGPUError
from predictor import predict
from predictor.fit.write import fit_model

REPO = Path(__file__).resolve().parents[1]
RESNET18 = str(REPO / "models" / "examples" / "resnet18.onnx")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pm") / "model"
    return fit_model(synth_table(), out, gpu_specs=synth_gpus(), run_cv=False)


def mlp(batch: int | str = 8, custom_op: bool = False) -> onnx.ModelProto:
    w = helper.make_tensor("w", TensorProto.FLOAT, [64, 32], np.zeros(64 * 32, np.float32))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    opsets = [helper.make_opsetid("", 17)]
    if custom_op:
        nodes.append(helper.make_node("Mystery", ["y"], ["z"], domain="acme"))
        opsets.append(helper.make_opsetid("acme", 1))
    out = "z" if custom_op else "y"
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 64])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, 32])], [w])
    return helper.make_model(g, opset_imports=opsets)


def test_bare_call_states_every_default(model_dir):
    p = predict(RESNET18, gpu="A100", model_dir=model_dir)
    text = " ".join(p.warnings)
    assert p.batch_size == 32 and "batch_size=32" in text
    assert p.samples_per_epoch == 1 and "ONE training sample" in text
    assert "ambiguous" in text and p.gpu == "A100-SXM4-80GB"
    assert p.energy_j == pytest.approx(p.energy_per_sample_j)
    lo, hi = p.interval_j
    assert lo < p.energy_j < hi and p.log_sigma > 0
    assert p.to_dict()["energy_kwh"] == pytest.approx(p.energy_j / 3.6e6)


def test_fixed_batch_dim_is_the_default(model_dir):
    p = predict(mlp(batch=8).SerializeToString(), gpu="RTX-3090", model_dir=model_dir)
    assert p.batch_size == 8 and any("fixed batch dimension" in w for w in p.warnings)


def test_totals_scale_with_epochs_and_samples(model_dir):
    a = predict(RESNET18, gpu="RTX-3090", batch_size=64, samples_per_epoch=50_000, epochs=10, model_dir=model_dir)
    b = predict(RESNET18, gpu="RTX-3090", batch_size=64, samples_per_epoch=50_000, epochs=20,
                val_samples=10_000, model_dir=model_dir)
    assert a.energy_j == pytest.approx(10 * a.energy_per_epoch_j)
    assert a.energy_per_epoch_j == pytest.approx(50_000 * a.energy_per_sample_j)
    ratio = a.features["flops_forward"] / a.features["flops_train"]
    assert b.energy_per_epoch_j == pytest.approx(a.energy_per_epoch_j * (1 + 0.2 * ratio))
    assert b.energy_j == pytest.approx(20 * b.energy_per_epoch_j)
    assert a.time_s == pytest.approx(a.energy_j / a.avg_power_w)
    assert not any("default" in w for w in a.warnings)


def test_unsupported_ops_warn_and_widen(model_dir):
    plain = predict(mlp(batch="n"), gpu="RTX-3090", batch_size=16, model_dir=model_dir)
    odd = predict(mlp(batch="n", custom_op=True), gpu="RTX-3090", batch_size=16, model_dir=model_dir)
    assert any("unsupported ops" in w and "Mystery" in w for w in odd.warnings)
    assert odd.log_sigma == pytest.approx(plain.log_sigma * 1.3)


def test_extrapolation_warnings(model_dir):
    p = predict(mlp(batch="n"), gpu="H100", batch_size=4096, precision="bf16", model_dir=model_dir)
    text = " ".join(p.warnings)
    assert "extrapolation" in text and "precision bf16" in text and "not measured" in text


@pytest.mark.parametrize("gpu, runs", [
    ("A100-SXM4-80GB", "fp32, tf32, fp16, bf16"),  # no FP8 tensor cores before Ada/Hopper
    ("V100-SXM2-32GB", "fp32, tf32, fp16, bf16"),
    ("GTX-1080-Ti", "fp32, tf32, fp16, bf16"),
])
def test_only_a_precision_the_framework_refuses_is_one_clear_error(model_dir, gpu, runs):
    from featurize.errors import UnsupportedPrecisionError

    with pytest.raises(UnsupportedPrecisionError, match=f"runs: {runs}\\. .*precision_fallback=True"):
        predict(RESNET18, gpu=gpu, precision="fp8", batch_size=64, model_dir=model_dir)


@pytest.mark.parametrize("gpu, precision", [
    ("V100-SXM2-32GB", "bf16"), ("T4", "bf16"), ("GTX-1080-Ti", "fp16"), ("V100-SXM2-32GB", "tf32"),
])
def test_a_precision_without_a_faster_path_is_priced_with_a_warning(model_dir, gpu, precision):
    p = predict(RESNET18, gpu=gpu, precision=precision, batch_size=64, model_dir=model_dir)
    assert p.energy_j > 0 and any(f"{precision} on {gpu} priced as it runs there" in w for w in p.warnings)


def test_precision_fallback_prices_the_nearest_precision_the_framework_would_pick(model_dir):
    kw = dict(batch_size=64, samples_per_epoch=10_000, model_dir=model_dir)
    fp8 = predict(RESNET18, gpu="V100-PCIE-32GB", precision="fp8", precision_fallback=True, **kw)
    fp16 = predict(RESNET18, gpu="V100-PCIE-32GB", precision="fp16", **kw)
    assert any("cannot run fp8" in w and "fp16" in w for w in fp8.warnings)
    assert fp8.time_s == pytest.approx(fp16.time_s, rel=0.3)  # fp16 arithmetic, 1-byte storage kept
    # tf32 on a V100 is fp32 arithmetic with fp32 storage: the same prior and the same prediction
    kw["gpu"] = "V100-PCIE-32GB"
    tf32, fp32 = predict(RESNET18, precision="tf32", **kw), predict(RESNET18, precision="fp32", **kw)
    assert tf32.time_s == pytest.approx(fp32.time_s) and tf32.energy_j == pytest.approx(fp32.energy_j)
    # bf16 on a V100 runs on FP32 arithmetic but keeps 2-byte storage: no faster than fp16 (tensor cores)
    bf16 = predict(RESNET18, precision="bf16", **kw)
    assert fp16.time_s < bf16.time_s <= fp32.time_s * 1.0001


@pytest.mark.parametrize("kwargs, err", [
    ({"batch_size": 0}, InvalidInputError), ({"epochs": 0}, InvalidInputError),
    ({"precision": "int3"}, InvalidInputError), ({"samples_per_epoch": 0}, InvalidInputError),
    ({"gpu": "Zorbatron 9000"}, UnknownGPUError), ({"power_limit_w": -5}, InvalidInputError),
])
def test_bad_input_raises_project_errors(model_dir, kwargs, err):
    args = {"gpu": "V100", **kwargs}
    with pytest.raises(err):
        predict(RESNET18, model_dir=model_dir, **args)


def test_missing_file_is_a_project_error(model_dir, tmp_path):
    with pytest.raises(JoulecastError):
        predict(str(tmp_path / "nope.onnx"), gpu="V100", model_dir=model_dir)


def test_cli_summary_and_json(model_dir):
    from typer.testing import CliRunner

    from predictor.cli import app

    runner = CliRunner()
    args = ["predict", RESNET18, "--gpu", "A100", "--batch-size", "64", "--samples-per-epoch", "50000",
            "--epochs", "10", "--model-dir", str(model_dir)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "kWh" in res.output and "g CO2e/kWh" in res.output and "90% interval" in res.output
    res = runner.invoke(app, args + ["--json", "--dim", "batch=64"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["epochs"] == 10 and d["energy_j"] == pytest.approx(10 * d["energy_per_epoch_j"]) and d["co2_kg"] > 0


def test_cli_bad_dim_is_a_clean_error(model_dir):
    from predictor.cli import main

    assert main(["predict", RESNET18, "--gpu", "V100", "--dim", "seq", "--model-dir", str(model_dir)]) == 1


def test_cli_region_grid_and_pue(model_dir):
    from typer.testing import CliRunner

    from predictor.cli import app

    runner = CliRunner()
    args = ["predict", RESNET18, "--gpu", "A100", "--batch-size", "64", "--samples-per-epoch", "50000",
            "--model-dir", str(model_dir), "--json"]
    base = json.loads(runner.invoke(app, args + ["--grid-g-per-kwh", "100"]).output)
    assert base["grid_g_per_kwh"] == 100 and base["co2_kg"] == pytest.approx(base["energy_j"] / 3.6e6 * 0.1)
    pue = json.loads(runner.invoke(app, args + ["--grid-g-per-kwh", "100", "--pue", "1.5"]).output)
    assert pue["co2_kg"] == pytest.approx(1.5 * base["co2_kg"]) and pue["pue"] == 1.5
    fr = json.loads(runner.invoke(app, args + ["--region", "fr"]).output)
    assert fr["grid_g_per_kwh"] < 200 and "France" in fr["grid_source"]
    res = runner.invoke(app, args[:-1] + ["--region", "fr", "--pue", "1.2"])
    assert res.exit_code == 0 and "France" in res.output and "PUE 1.2" in res.output
    from predictor.cli import main

    assert main(args + ["--region", "fr", "--grid-g-per-kwh", "50"]) == 1  # both given: a clean error
