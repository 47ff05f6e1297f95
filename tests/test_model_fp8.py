"""fp8 prices only what runs in FP8 (Transformer Engine): the GEMMs, not convolutions or element-wise ops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featurize import featurize, lookup_gpu
from featurize.precision import precision_paths
from predictor import predict
from predictor.layers import layer_prior_for
from tests._graphs import gpt_onnx

RESNET18 = Path(__file__).resolve().parents[1] / "models" / "examples" / "resnet18.onnx"


@pytest.mark.parametrize("gpu, conv", [("H100-SXM5-80GB", "bf16"), ("L4", "bf16"), ("RTX-4090", "bf16"),
                                       ("MI300X", "bf16"), ("B200", "bf16")])
def test_fp8_runs_gemms_in_fp8_and_convolutions_on_the_16_bit_path(gpu, conv):
    paths = precision_paths(lookup_gpu(gpu), "fp8")
    assert (paths.gemm, paths.conv, paths.note) == ("fp8", conv, "")


def _layer_priors(model, gpu: str, batch: int):
    spec = lookup_gpu(gpu)
    out = {}
    for prec in ("bf16", "fp8"):
        gf = featurize(model, batch_size=batch, precision=prec)
        out[prec] = layer_prior_for(gf, spec, precision=prec, batch_size=batch)
    return out["bf16"], out["fp8"]


def test_fp8_on_a_conv_net_changes_only_its_gemm_layers():
    bf16, fp8 = _layer_priors(str(RESNET18), "H100-SXM5-80GB", 64)
    assert list(bf16["node"]) == list(fp8["node"])
    gemm = bf16["op_class"].isin(["gemm", "attention"]).to_numpy()
    assert gemm.sum() == 1 and (~gemm).sum() > 40  # ResNet-18: one Linear (the classifier), the rest conv/eltwise
    for col in ("time_s", "energy_j", "t_compute_s", "t_memory_s", "bytes"):
        np.testing.assert_allclose(fp8.loc[~gemm, col], bf16.loc[~gemm, col], rtol=1e-12, err_msg=col)
    assert (fp8.loc[gemm, "t_compute_s"] < bf16.loc[gemm, "t_compute_s"]).all()
    assert fp8.loc[gemm, "time_s"].sum() <= bf16.loc[gemm, "time_s"].sum()


def test_fp8_on_a_conv_net_moves_the_forecast_by_at_most_its_gemm_share():
    bf16, _ = _layer_priors(str(RESNET18), "H100-SXM5-80GB", 64)
    gemm = bf16["op_class"].isin(["gemm", "attention"])
    share_e = bf16.loc[gemm, "energy_j"].sum() / bf16["energy_j"].sum()
    share_t = bf16.loc[gemm, "time_s"].sum() / bf16["time_s"].sum()
    assert share_e < 0.02  # ResNet-18's classifier: well under 2 % of the step
    kw = dict(gpu="H100-SXM5-80GB", batch_size=64, samples_per_epoch=50_000, epochs=1)
    a, b = predict(str(RESNET18), precision="bf16", **kw), predict(str(RESNET18), precision="fp8", **kw)
    assert abs(b.energy_j / a.energy_j - 1) <= share_e + 1e-9
    assert abs(b.time_s / a.time_s - 1) <= share_t + 1e-9


def test_fp8_speeds_up_a_transformer_whose_time_is_gemms():
    model = gpt_onnx(layers=2, d_model=1024, heads=16, seq=512, batch=8)
    bf16, fp8 = _layer_priors(model, "H100-SXM5-80GB", 8)
    gemm = bf16["op_class"].isin(["gemm", "attention"]).to_numpy()
    h100 = lookup_gpu("H100-SXM5-80GB")  # FP8 peak ~2x the BF16 peak: the GEMMs' compute time halves
    ratio = h100.peak_bf16_tensor_flops / h100.peak_fp8_tensor_flops
    assert fp8.loc[gemm, "t_compute_s"].sum() == pytest.approx(bf16.loc[gemm, "t_compute_s"].sum() * ratio, rel=1e-9)
    np.testing.assert_allclose(fp8.loc[~gemm, "time_s"], bf16.loc[~gemm, "time_s"], rtol=1e-12)
