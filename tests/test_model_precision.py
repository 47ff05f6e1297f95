"""Precision as frameworks run it (featurize.hardware.precision) and form factors as the prior prices them."""

from __future__ import annotations

import pytest

from featurize import lookup_gpu
from featurize.errors import InvalidInputError, UnsupportedPrecisionError
from featurize.hardware.precision import has_path, precision_paths, supported_precisions
from featurize.hardware.table import form_factor_power_ratio, gpu_table
from featurize.physics.prior import clock_factor, gpu_columns

ALL = ("fp32", "tf32", "fp16", "bf16", "fp8")


@pytest.mark.parametrize("gpu, fast", [
    ("A100-SXM4-80GB", ("fp32", "tf32", "fp16", "bf16")),
    ("H100-SXM5-80GB", ("fp32", "tf32", "fp16", "bf16", "fp8")),
    ("L4", ("fp32", "tf32", "fp16", "bf16", "fp8")),
    ("RTX-4090", ("fp32", "tf32", "fp16", "bf16", "fp8")),
    ("V100-SXM2-32GB", ("fp32", "fp16")),
    ("T4", ("fp32", "fp16")),
    ("P100-PCIE-16GB", ("fp32", "fp16")),     # packed half2 at 2x FP32
    ("GTX-1660", ("fp32", "fp16")),           # TU116: packed half2, no tensor cores
    ("GTX-1080-Ti", ("fp32",)),               # GP102: FP16 at 1/64
    ("P40", ("fp32",)),
    ("GTX-750-Ti", ("fp32",)),
    ("MI250X", ("fp32", "fp16", "bf16")),
    ("MI300X", ("fp32", "tf32", "fp16", "bf16", "fp8")),
])
def test_paths_follow_the_hardware_and_only_fp8_is_refused(gpu, fast):
    """The GPU's own paths are those listed; frameworks run everything else but fp8 without FP8 tensor cores."""
    spec = lookup_gpu(gpu)
    assert tuple(p for p in ALL if has_path(spec, p)) == fast
    assert supported_precisions(spec) == (ALL if "fp8" in fast else ALL[:-1])


def test_every_curated_gpu_prices_its_paths_as_themselves_and_the_rest_on_fp32_with_a_note():
    for name in gpu_table()["name"]:
        spec = lookup_gpu(name)
        for prec in ALL[1:]:
            if not has_path(spec, prec) and prec == "fp8":
                continue
            paths = precision_paths(spec, prec)
            expected = prec if has_path(spec, prec) else "fp32"
            conv = next(p for p in ("bf16", "fp16") if has_path(spec, p)) if prec == "fp8" else expected  # TE: GEMMs
            assert (paths.gemm, paths.conv) == (expected, conv) and bool(paths.note) == (expected != prec), (name, prec)


def test_fp32_semantics_per_generation():
    # Ampere / Hopper datacenter: cuDNN convolutions on TF32, GEMMs on the FP32 cores
    assert precision_paths(lookup_gpu("A100-SXM4-80GB"), "fp32").key == "fp32+tf32conv"
    assert precision_paths(lookup_gpu("H100-SXM5-80GB"), "fp32").conv == "tf32"
    # GeForce Ampere: dense TF32 (FP32 accumulate) equals the FP32 rate, nothing to gain; Volta: no TF32
    assert precision_paths(lookup_gpu("RTX-3090"), "fp32").key == "fp32"
    assert precision_paths(lookup_gpu("V100-SXM2-32GB"), "fp32").key == "fp32"


def test_fallback_paths_and_errors():
    v100, a100, gtx = lookup_gpu("V100-SXM2-32GB"), lookup_gpu("A100-SXM4-80GB"), lookup_gpu("GTX-1080-Ti")
    with pytest.raises(UnsupportedPrecisionError) as err:
        precision_paths(a100, "fp8")
    assert isinstance(err.value, InvalidInputError)  # one project error type, also a ValueError
    assert "fp32, tf32, fp16, bf16" in str(err.value) and "--precision-fallback" in str(err.value)
    fp8 = precision_paths(a100, "fp8", fallback=True)  # the nearest precision the framework would pick
    assert (fp8.gemm, fp8.conv) == ("bf16", "bf16") and "cannot run fp8" in fp8.note
    assert precision_paths(v100, "fp8", fallback=True).key == "fp16"  # no BF16 tensor cores: fp16
    assert precision_paths(gtx, "fp8", fallback=True).key == "fp32"
    # run by the framework, without a faster path: priced on FP32 arithmetic whatever the flag, with a note
    for gpu, prec in ((v100, "bf16"), (gtx, "fp16"), (v100, "tf32")):
        assert precision_paths(gpu, prec) == precision_paths(gpu, prec, fallback=True)
        assert precision_paths(gpu, prec).key == "fp32" and precision_paths(gpu, prec).note
    with pytest.raises(InvalidInputError, match="int8"):
        precision_paths(a100, "int8")
    with pytest.raises(UnsupportedPrecisionError):
        gpu_columns(a100, "fp8")
    assert gpu_columns(v100, "bf16")["bytes_per_element"] == 2  # BF16 storage kept


def test_geforce_fp16_is_the_fp32_accumulate_rate():
    """GeForce RTX 30/40 run FP16 with FP32 accumulate (what AMP uses) at half the advertised FP16-accumulate
    rate: RTX 3090 71 TFLOP/s (not 142), RTX 4090 165.2 (not 330.3); data-centre parts run full rate."""
    assert gpu_columns(lookup_gpu("RTX-3090"), "fp16")["peak_flops"] == pytest.approx(71e12)
    assert gpu_columns(lookup_gpu("RTX-4090"), "fp16")["peak_flops"] == pytest.approx(165.2e12)
    assert gpu_columns(lookup_gpu("A100-SXM4-80GB"), "fp16")["peak_flops"] == pytest.approx(312e12)


@pytest.mark.parametrize("low, high", [
    ("A100-PCIE-40GB", "A100-SXM4-40GB"),  # same datasheet clock, 250 W vs 400 W
    ("A100-PCIE-80GB", "A100-SXM4-80GB"),
    ("H100-PCIE-80GB", "H100-SXM5-80GB"),
    ("H100-NVL-94GB", "H100-SXM5-80GB"),   # 400 W vs 700 W
    ("V100-PCIE-32GB", "V100-SXM2-32GB"),
])
def test_sxm_sustains_at_least_the_pcie_and_nvl_compute(low, high):
    lo, hi = lookup_gpu(low), lookup_gpu(high)
    for prec in ("fp32", "fp16"):
        assert gpu_columns(lo, prec)["peak_flops"] < gpu_columns(hi, prec)["peak_flops"], prec
    assert clock_factor(hi) > clock_factor(lo)


def test_clock_factor_values():
    # A100 PCIe 40GB: (250 W / 312 TF) / (400 W / 312 TF) = 0.625 -> 0.625^(1/3) = 0.855 of the clock
    assert form_factor_power_ratio(lookup_gpu("A100-PCIE-40GB")) == pytest.approx(0.625)
    assert clock_factor(lookup_gpu("A100-PCIE-40GB")) == pytest.approx(0.625 ** (1 / 3))
    assert clock_factor(lookup_gpu("A100-SXM4-80GB")) == 1.0
    assert clock_factor(lookup_gpu("RTX-4090")) == 1.0  # no form-factor siblings
    assert clock_factor(lookup_gpu("GH200-96GB")) == 1.0


def test_multi_die_parts_are_one_gcd_as_pytorch_sees_them():
    gcd = lookup_gpu("AMD Instinct MI250X")
    # one GCD: half the OAM module's 220 CUs, 95.7 TF FP16 x 2 dies, 3.28 TB/s, 128 GB, 560 W
    assert gcd.sm_count == 110 and gcd.mem_bytes == 64 * 2**30
    assert gcd.peak_fp16_tensor_flops == pytest.approx(383e12 / 2)
    assert gcd.mem_bw_bytes_per_s == pytest.approx(3.2768e12 / 2) and gcd.tdp_w == 280
    assert lookup_gpu("MI250 GCD").name == "MI250"


def test_gh200_is_an_h100_class_gpu_with_faster_memory():
    gh, h100 = lookup_gpu("NVIDIA GH200 480GB"), lookup_gpu("H100-SXM5-80GB")
    assert gh.name == "GH200-96GB"
    assert gh.peak_fp16_tensor_flops == h100.peak_fp16_tensor_flops
    assert gh.mem_bw_bytes_per_s > h100.mem_bw_bytes_per_s
    assert lookup_gpu("GH200-144GB").mem_bw_bytes_per_s > gh.mem_bw_bytes_per_s


def test_predict_many_refuses_before_featurizing_and_falls_back_on_request():
    from pathlib import Path

    from predictor import predict_many

    example = str(Path(__file__).resolve().parents[1] / "models" / "examples" / "resnet18.onnx")
    kw = dict(batch_size=64, samples_per_epoch=1000, n_jobs=1, progress=False, precision="fp8")
    with pytest.raises(UnsupportedPrecisionError, match="A100-SXM4-80GB cannot run precision 'fp8'"):
        predict_many([example], gpu=["H100-SXM5-80GB", "A100-SXM4-80GB"], **kw)
    df = predict_many([example], gpu=["H100-SXM5-80GB", "A100-SXM4-80GB"], precision_fallback=True, **kw)
    assert (df["error"] == "").all() and "cannot run fp8" in df.loc[df["gpu"] == "A100-SXM4-80GB", "warnings"].iloc[0]


def test_table_builder_and_model_price_every_gpu_and_precision_alike():
    """One precision rule (featurize.hardware.precision.peak_flops): the training table's physical check prices a row's
    training FLOPs at exactly the peak the model's prior uses (its GEMM and convolution peaks without the
    sustained-clock factor), for every GPU of the table, every precision (with the framework fallback a measured
    run took) and any convolution share. Before, the builder fell bf16 back to the fp16 tensor peak on V100 (125
    TFLOP/s) while the model priced it as FP32 (15.7)."""
    import numpy as np
    import pandas as pd

    from featurize.types import PRECISIONS
    from training_data.build_table import priced_peak_flops

    cases = [(name, prec, fc) for name in gpu_table()["name"] for prec in PRECISIONS for fc in (0.0, 0.4, 1.0)]
    frame = pd.DataFrame(cases, columns=["gpu", "precision", "fc"])
    builder = priced_peak_flops(frame["gpu"], frame["precision"], frame["fc"])
    model = []
    for name, prec, fc in cases:
        spec = lookup_gpu(name)
        cols = gpu_columns(spec, prec, fallback=True)
        model.append(1.0 / (clock_factor(spec) * (fc / cols["conv_peak_flops"] + (1 - fc) / cols["peak_flops"])))
    assert len(cases) > 300
    np.testing.assert_allclose(builder, model, rtol=1e-12)
    v100 = frame.index[(frame["gpu"] == "V100-SXM2-32GB") & (frame["precision"] == "bf16")][0]
    assert builder[v100] == pytest.approx(lookup_gpu("V100-SXM2-32GB").peak_fp32_flops)


def test_fp16_on_a_gtx_1080_ti_is_priced_like_fp32_arithmetic_with_fp16_storage():
    """PyTorch AMP runs on a GTX 1080 Ti (the Lambda benchmark measured it): priced, not refused, with a warning;
    FP32-rate arithmetic with FP16 storage: never slower than fp32, and far from a tensor-core speed-up; fp8 there
    is still refused."""
    from conftest import RESNET18

    from predictor import predict

    kw = dict(gpu="GTX-1080-Ti", batch_size=32, samples_per_epoch=10_000)
    fp16, fp32 = predict(str(RESNET18), precision="fp16", **kw), predict(str(RESNET18), precision="fp32", **kw)
    assert 0.5 * fp32.time_s <= fp16.time_s <= fp32.time_s  # half the bytes at most, no faster arithmetic
    assert fp16.memory_bytes < fp32.memory_bytes  # half-size activations
    assert any("no FP16 path faster" in w for w in fp16.warnings)
    with pytest.raises(UnsupportedPrecisionError):
        predict(str(RESNET18), precision="fp8", **kw)
