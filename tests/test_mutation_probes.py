"""Mutation probes: each deliberate break of the science (a changed physics constant, a removed interval widening,
the refine drift term set to zero) is caught by a behavioural check, not only by a golden file. Every check passes
on the real code and fails on the mutant."""

from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from featurize.types import GPUSpec
from predictor import Prediction, predict, refine
from predictor.refinement.params import PARAMS, RefineParams

physics = importlib.import_module("featurize.physics.prior")
model_mod = importlib.import_module("predictor.model.inference")  # predict_frame looks its helpers up here

GPU = GPUSpec(name="T", vendor="NVIDIA", architecture="x", tdp_w=300.0, peak_fp32_flops=10e12,
              peak_fp16_tensor_flops=80e12, mem_bw_bytes_per_s=1e12, mem_bytes=16e9, l2_cache_bytes=4e6,
              sm_count=80, source="user", idle_power_w=30.0, launch_year=2020)


# ------------------------------------------------------------------ checks (behaviour, numbers computed by hand)
def check_compute_bound_prior() -> None:
    """A compute-bound graph (3 GFLOP per sample, batch 256) on a 10 TFLOP/s FP32, 80 TFLOP/s FP16-tensor card:
    busy time = FLOPs / (70 % of the FP32 peak) in fp32 and / (30 % of the tensor peak) in fp16, the per-step
    overhead 5 ms + 3 x 100 nodes x 6 us spread over the batch (the documented achievable rates)."""
    g = {"g_flops_train": 3e9, "g_flops_forward": 1e9, "g_flops_backward": 2e9, "g_bytes_moved_forward": 1e6,
         "g_trainable_params": 1e6, "g_params": 1e6, "g_n_nodes": 100, "g_weight_bytes": 4e6,
         "g_max_layer_working_set_bytes": 1e6, "g_arithmetic_intensity": 100.0, "g_frac_macs_conv": 1.0,
         "g_frac_macs_matmul": 0.0, "g_frac_macs_attention": 0.0, "g_frac_macs_recurrent": 0.0,
         "g_frac_flops_elementwise": 0.0}
    overhead = (5e-3 + 3 * 100 * 6e-6) / 256
    fp32 = physics.physics_features(g, GPU, batch_size=256, precision="fp32")
    fp16 = physics.physics_features(g, GPU, batch_size=256, precision="fp16")
    assert fp32["t_phys_s"] == pytest.approx(3e9 / 7e12 + overhead, rel=1e-9)
    assert fp16["t_phys_s"] == pytest.approx(3e9 / 24e12 + overhead, rel=1e-9)


def _graph(custom_op: bool) -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    opsets, out = [helper.make_opsetid("", 17)], "y"
    if custom_op:
        nodes.append(helper.make_node("Fancy", ["y"], ["z"], domain="acme"))
        opsets.append(helper.make_opsetid("acme", 1))
        out = "z"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 256])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.ones((256, 256), np.float32), "W")])
    return helper.make_model(g, opset_imports=opsets)


def check_unsupported_ops_widen_the_interval() -> None:
    """An op the featurizer cannot cost makes the forecast less certain: the interval's log half-width grows by
    about the model's unsupported-ops factor (1.3 shipped) over the same graph without that op."""
    run = dict(gpu="A100-SXM4-80GB", batch_size=32, samples_per_epoch=1000)
    plain, fancy = predict(_graph(False), **run), predict(_graph(True), **run)
    half = [math.log(p.interval_j[1] / p.interval_j[0]) / 2 for p in (plain, fancy)]
    assert half[1] / half[0] >= 1.2, half


PRIOR = Prediction(energy_j=2e7, energy_per_epoch_j=1e5, energy_per_sample_j=1.0, time_s=2e4, time_per_epoch_s=100.0,
                   avg_power_w=1000.0, interval_j=(1e7, 4e7), gpu="A100-SXM4-80GB", epochs=200, log_sigma=0.4)


def check_refined_interval_keeps_the_level_drift(params: RefineParams = PARAMS) -> None:
    """After 50 identical epochs of 200, the 150 epochs to come may still drift (clocks, temperature, data order):
    the upper end stays at least the drift's own 90 % half-width (1.645 x the fitted run-to-run drift sd x the
    150/200 share still ahead) above the point estimate."""
    r = refine(PRIOR, epoch_energies_j=[1.1e5] * 50, total_epochs=200, params=params)
    assert r.interval_j[1] / r.energy_j - 1 >= 0.9 * 1.645 * PARAMS.drift_log_sd * 150 / 200, r.interval_j


# ------------------------------------------------------------------ probes
@pytest.mark.parametrize("constant, value", [("COMPUTE_EFFICIENCY", 0.8), ("TENSOR_CORE_EFFICIENCY", 0.4),
                                             ("STEP_OVERHEAD_S", 4e-3), ("LAUNCH_S", 8e-6)])
def test_a_changed_physics_constant_is_caught(constant, value, monkeypatch):
    check_compute_bound_prior()
    monkeypatch.setattr(physics, constant, value)
    with pytest.raises(AssertionError):
        check_compute_bound_prior()


def test_a_removed_interval_widening_is_caught(monkeypatch):
    check_unsupported_ops_widen_the_interval()
    original = model_mod.interval_log_halfwidth

    def without_unsupported_widening(model, **kw):
        return original(model, **{**kw, "unsupported": np.zeros_like(np.asarray(kw["unsupported"], float))})

    monkeypatch.setattr(model_mod, "interval_log_halfwidth", without_unsupported_widening)
    with pytest.raises(AssertionError):
        check_unsupported_ops_widen_the_interval()


def test_the_refine_drift_term_is_caught(monkeypatch):
    check_refined_interval_keeps_the_level_drift()
    with pytest.raises(AssertionError):
        check_refined_interval_keeps_the_level_drift(dataclasses.replace(PARAMS, drift_log_sd=0.0))
