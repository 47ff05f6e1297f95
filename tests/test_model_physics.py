"""featurize.physics.prior: the roofline prior and ratios against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featurize.errors import InvalidInputError
from featurize.physics.prior import FEATURE_NAMES, PRIOR_NAMES, gpu_columns, physics_arrays, physics_features
from featurize.types import GRAPH_FEATURE_KEYS, GPUSpec

GPU = GPUSpec(name="T", vendor="NVIDIA", architecture="x", tdp_w=300.0, peak_fp32_flops=10e12,
              peak_fp16_tensor_flops=80e12, mem_bw_bytes_per_s=1e12, mem_bytes=16e9, l2_cache_bytes=4e6,
              sm_count=80, source="user", idle_power_w=30.0, launch_year=2020)


def graph(**kw):
    g = {f"g_{k}": 0.0 for k in GRAPH_FEATURE_KEYS}
    g.update({"g_flops_train": 3e9, "g_flops_forward": 1e9, "g_flops_backward": 2e9, "g_bytes_moved_forward": 1e7,
              "g_trainable_params": 1e6, "g_params": 2e6, "g_n_nodes": 100, "g_weight_bytes": 8e6,
              "g_max_layer_working_set_bytes": 8e6, "g_frac_macs_conv": 0.9})
    g.update({f"g_{k}": v for k, v in kw.items()})
    return g


def test_hand_computed_prior_fp32():
    f = physics_features(graph(), GPU, batch_size=32, precision="fp32")
    t_compute = 3e9 / 10e12  # 3e-4 s
    bytes_train = 3 * 1e7 + 28 * 1e6 / 32  # 3.0875e7 B
    t_memory = bytes_train / 1e12
    t_overhead = (3 * 100 * 6e-6 + 5e-3) / 32  # launch floor + per-step overhead
    t_busy = t_compute / 0.7  # compute-bound at 70 % of peak: 4.29e-4 > 3.1e-5
    t_phys = t_busy + t_overhead
    busy = t_busy / t_phys
    p_phys = 30 + (300 - 30) * math.sqrt(busy)
    assert f["t_compute_s"] == pytest.approx(t_compute)
    assert f["t_memory_s"] == pytest.approx(t_memory)
    assert f["t_overhead_s"] == pytest.approx(t_overhead)
    assert f["t_phys_s"] == pytest.approx(t_phys)
    assert f["busy_frac"] == pytest.approx(busy)
    assert f["step_frac"] == pytest.approx(5e-3 / 32 / t_phys)
    assert f["p_phys_w"] == pytest.approx(p_phys)
    assert f["e_phys_j"] == pytest.approx(p_phys * t_phys)
    assert f["compute_frac"] == pytest.approx(t_compute / t_phys)
    assert f["log_batch_size"] == pytest.approx(5.0)
    assert f["log_ws_over_l2"] == pytest.approx(1.0)  # 8 MB / 4 MB
    assert f["trainable_frac"] == pytest.approx(0.5)
    assert f["backward_ratio"] == pytest.approx(2.0)
    assert f["idle_frac"] == pytest.approx(0.1)
    assert f["power_limit_frac"] == 1.0 and f["power_cap_w"] == 300.0
    assert f["tensor_precision"] == 0.0
    assert f["gpu_age_years"] == 5.0
    assert set(f) == set(FEATURE_NAMES) | set(PRIOR_NAMES)


def test_precision_picks_tensor_peak_and_memory_bound_case():
    f = physics_features(graph(bytes_moved_forward=1e9), GPU, batch_size=8, precision="fp16", power_limit_w=150)
    assert f["t_compute_s"] == pytest.approx(3e9 / 80e12)
    assert f["t_memory_s"] == pytest.approx((3e9 + 28e6 / 8) / 1e12)
    t_mem = (3e9 + 28e6 / 8) / 1e12
    assert f["memory_frac"] == pytest.approx(t_mem / (t_mem + (300 * 6e-6 + 5e-3) / 8))  # memory-bound
    assert f["tensor_precision"] == 1.0
    assert f["power_limit_frac"] == pytest.approx(0.5) and f["power_cap_w"] == 150.0
    assert 30.0 < f["p_phys_w"] <= 150.0  # under the enforced limit, above idle


def test_cache_dram_bytes_override_and_unprefixed_keys():
    g = {k.removeprefix("g_"): v for k, v in graph().items()}
    f = physics_features(g, GPU, batch_size=1, precision="fp32", cache={"dram_bytes_per_sample": 2e6})
    assert f["t_memory_s"] == pytest.approx((3 * 2e6 + 28e6) / 1e12)


def test_vectorised_matches_scalar():
    gs = [graph(flops_train=v) for v in (1e9, 5e9, 2e10)]
    cols = {k: np.array([g[k] for g in gs]) for k in gs[0]}
    arr = physics_arrays(cols, gpu_columns(GPU, "fp32"), batch_size=np.array([16, 32, 64]))
    for i, g in enumerate(gs):
        one = physics_features(g, GPU, batch_size=[16, 32, 64][i], precision="fp32")
        for k, v in one.items():
            assert math.isclose(arr[k][i], v, rel_tol=1e-12), k


def test_bad_inputs_raise_project_errors():
    with pytest.raises(InvalidInputError, match="batch_size"):
        physics_features(graph(), GPU, batch_size=0, precision="fp32")
    with pytest.raises(InvalidInputError, match="precision"):
        physics_features(graph(), GPU, batch_size=1, precision="int4")
    with pytest.raises(InvalidInputError, match="flops_train"):
        physics_features({}, GPU, batch_size=1, precision="fp32")


def test_reduced_precision_never_slower_than_fp32():
    # a GeForce-like card: fp16 tensor peak only 2x fp32, so 0.3 x tensor peak < 0.7 x fp32 peak
    geforce = GPUSpec(name="G", vendor="NVIDIA", architecture="x", tdp_w=350.0, peak_fp32_flops=35.6e12,
                      peak_fp16_tensor_flops=71e12, peak_bf16_tensor_flops=71e12, peak_tf32_tensor_flops=35.6e12,
                      mem_bw_bytes_per_s=0.936e12, mem_bytes=24e9, l2_cache_bytes=6e6, sm_count=82, source="user",
                      idle_power_w=30.0, launch_year=2020)
    big = graph(flops_train=3e11, flops_forward=1e11, flops_backward=2e11)
    fp32 = physics_features(big, geforce, batch_size=32, precision="fp32")
    for prec in ("tf32", "fp16", "bf16"):
        f = physics_features(big, geforce, batch_size=32, precision=prec)
        assert f["t_phys_s"] <= fp32["t_phys_s"] * (1 + 1e-12), prec
        # compute-bound at the fp32 path's rate: 0.7 x 35.6 TFLOP/s beats 0.3 x 71 TFLOP/s
        assert f["t_phys_s"] - f["t_overhead_s"] == pytest.approx(3e11 / (0.7 * 35.6e12))
        assert f["tensor_precision"] == 0.0  # the feature names the regime the prior used
    assert gpu_columns(GPU, "fp16")["tensor_precision"] == 1.0


def test_fp32_prices_gemms_on_fp32_cores_and_convolutions_on_tf32():
    """PyTorch defaults on an A100: matmuls in FP32 (19.5 TFLOP/s x 0.7), cuDNN convolutions on TF32
    (156 TFLOP/s x 0.3); tf32 puts both on TF32."""
    a100 = GPUSpec(name="A", vendor="NVIDIA", architecture="Ampere", tdp_w=400.0, peak_fp32_flops=19.5e12,
                   peak_tf32_tensor_flops=156e12, peak_fp16_tensor_flops=312e12, peak_bf16_tensor_flops=312e12,
                   mem_bw_bytes_per_s=2e12, mem_bytes=80e9, l2_cache_bytes=40e6, sm_count=108, source="user",
                   idle_power_w=40.0, launch_year=2020)
    big = dict(flops_train=3e12, flops_forward=1e12, flops_backward=2e12)
    matmul = physics_features(graph(**big, frac_macs_conv=0.0), a100, batch_size=64, precision="fp32")
    conv = physics_features(graph(**big, frac_macs_conv=1.0), a100, batch_size=64, precision="fp32")
    half = physics_features(graph(**big, frac_macs_conv=0.5), a100, batch_size=64, precision="fp32")
    tf32 = physics_features(graph(**big, frac_macs_conv=0.0), a100, batch_size=64, precision="tf32")
    busy = {k: f["t_phys_s"] - f["t_overhead_s"] for k, f in
            (("matmul", matmul), ("conv", conv), ("half", half), ("tf32", tf32))}
    assert busy["matmul"] == pytest.approx(3e12 / (0.7 * 19.5e12))
    assert busy["conv"] == pytest.approx(3e12 / (0.3 * 156e12))
    assert busy["half"] == pytest.approx(1.5e12 / (0.7 * 19.5e12) + 1.5e12 / (0.3 * 156e12))
    assert busy["tf32"] == pytest.approx(busy["conv"])
    assert matmul["t_compute_s"] == pytest.approx(3e12 / 19.5e12)
