"""Physics-derived features: the roofline prior and scale-free ratios, computed in ONE place.

Public entry points:

* :func:`physics_features` — one graph on one GPU -> ``dict`` of named features (scalars).
* :func:`physics_arrays` — the same, vectorised over rows (numpy arrays / pandas columns); used by
  training and by ``predictor.model.predict_frame`` so both compute identical numbers.
* :func:`gpu_columns` — the GPU-side numbers (peak FLOP/s of the precision in use, bandwidth, ...).

The prior (per training sample, seconds)::

    t_compute  = flops_train x (frac_conv / conv_peak + (1 - frac_conv) / gemm_peak)
                 (each op class on the path frameworks give it, :mod:`featurize.hardware.precision`: fp32 = GEMMs on
                 FP32 cores, convolutions on TF32 where the GPU has it; tf32 / fp16 / bf16 / fp8 = both on
                 that path; every peak x the sustained :func:`clock_factor` of the board's power limit)
    t_memory   = bytes_train / mem_bw,   bytes_train = bytes_moved_forward x (1 + flops_backward / flops_forward)
                                                       + OPT_BYTES_PER_PARAM x trainable_params / batch_size
                 (backward traffic follows backward FLOPs: ~2x forward when fully trained, ~0 for a frozen
                 backbone; the featurizer's cache-aware ``dram_bytes_per_sample`` replaces the forward bytes)
    t_busy     = max(t_arith, t_memory)                                     (roofline at achievable peak;
                 t_arith as t_compute with each path's rate (:func:`path_rate`): COMPUTE_EFFICIENCY x peak
                 on FP32 cores, max(TENSOR_CORE_EFFICIENCY x peak, COMPUTE_EFFICIENCY x peak_fp32) on a
                 reduced-precision path: training reaches a smaller share of tensor peaks, and a reduced
                 precision is never slower than fp32. A precision the GPU cannot run raises
                 UnsupportedPrecisionError unless the caller opts into the framework's fallback.)
    t_overhead = (KERNELS_PER_NODE x n_nodes x LAUNCH_S + STEP_OVERHEAD_S) / batch_size
                 (kernel-launch floor + fixed per-step framework/input-pipeline time)
    t_phys     = t_busy + t_overhead
    busy_frac  = t_busy / t_phys                                            (utilisation proxy)
    p_phys     = idle_w + (power_cap_w - idle_w) x sqrt(busy_frac)          (watts)
    e_phys     = p_phys x t_phys                                            (joules per sample)

The three constants (COMPUTE_EFFICIENCY, LAUNCH_S, STEP_OVERHEAD_S) are round values near a 3-parameter
least-squares fit of log time over the pooled training table (0.72, 5.9 us, 5.9 ms); the sqrt in the power
prior halves the mean |log error| of power versus a linear utilisation (0.21 vs 0.26; cap alone 0.47).

The model learns log(actual / prior); the features below are ratios and logs so that a GPU or an
architecture never seen falls back on the prior rather than on a memorised row. No GPU name or ID.
Graph inputs are the ``GraphFeatures.to_dict()`` keys, with or without the ``g_`` prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from featurize.errors import InvalidInputError
from featurize.hardware.names import idle_power_w
from featurize.hardware.precision import peak_flops, precision_paths
from featurize.types import BYTES_PER_ELEMENT, GPUSpec

LAUNCH_S = 6e-6
"""Per-kernel launch + framework overhead, seconds (a typical CUDA launch + PyTorch dispatch)."""
STEP_OVERHEAD_S = 5e-3
"""Fixed per-optimizer-step time (Python/framework step, input pipeline, host sync), seconds."""
COMPUTE_EFFICIENCY = 0.7
"""Achievable fraction of peak FP32 FLOP/s for dense training kernels (cuDNN/cuBLAS at large sizes)."""
TENSOR_CORE_EFFICIENCY = 0.3
"""Achievable fraction of the tensor-core peak (tf32/fp16/bf16/fp8) over a whole training step: the
elementwise, normalisation and optimizer kernels around the matmuls run far below it (reported model-FLOPs
utilisation of transformer training is 25-45 %). Mayaki's A100 TF32 steps, the only tensor-core rows in the
training table, reached a median 0.23 of the TF32 dense peak (flops_train / measured time); with 0.7 the
prior left them 1.9x too fast (median log residual +0.63, +0.24 at 0.3). Grouped CV leave-one-GPU-out
(3,034 rows, shipped features): energy median 21.4 % at 0.3 vs 25.4 % at 0.7, held-out A100 time 20 vs 51 %."""
KERNELS_PER_NODE = 3.0
"""Forward kernel + ~2 backward kernels per graph node."""
OPT_BYTES_PER_PARAM = 28.0
"""Adam step in fp32: read param, grad, m, v (16 B) + write param, m, v (12 B) per trainable parameter."""
REFERENCE_YEAR = 2025

FEATURE_NAMES: tuple[str, ...] = (
    "log_t_phys_s",
    "log_kernel_time_s",
    "compute_frac",
    "memory_frac",
    "overhead_frac",
    "log_batch_size",
    "log_ws_over_l2",
    "log_weights_over_l2",
    "log_ai_over_balance",
    "log_machine_balance",
    "frac_macs_conv",
    "frac_macs_matmul",
    "frac_macs_attention",
    "frac_macs_recurrent",
    "frac_flops_elementwise",
    "trainable_frac",
    "backward_ratio",
    "tensor_precision",
    "power_limit_frac",
    "idle_frac",
    "gpu_age_years",
    "log_flops_per_sm",
    "busy_frac",
    "step_frac",
    "launch_frac",
    "log_busy_time_per_step_s",
)
"""Every feature :func:`physics_arrays` returns besides the prior columns (``t_*_s``, ``e_phys_j``)."""

PRIOR_NAMES: tuple[str, ...] = ("t_compute_s", "t_memory_s", "t_overhead_s", "t_phys_s", "e_phys_j", "tdp_w",
                                "power_cap_w", "p_phys_w", "t_arith_s")
"""``t_arith_s``: the arithmetic time at achievable rates (what a lower core clock stretches,
:mod:`featurize.power_cap`)."""


def _col(graph: Mapping[str, Any], key: str) -> np.ndarray:
    for k in (f"g_{key}", key):
        if k in graph:
            return np.asarray(graph[k], dtype=float)
    raise InvalidInputError(
        f"graph features lack '{key}' (or 'g_{key}'); pass GraphFeatures.to_dict() or a training-table row."
    )


CLOCK_POWER_EXPONENT = 3.0
"""Dynamic power grows ~ f x V^2 with V ~ f, so P ~ f^3: a board fed a fraction r of its chip's best-fed
variant's power per datasheet FLOP/s (:func:`featurize.hardware.form_factor_power_ratio`: A100 PCIe 250 W vs
SXM4 400 W -> 0.625) sustains r^(1/3) of the clock (0.855) under training load."""


POWER_LIMIT_MIN_FRAC = 0.25
"""Lowest settable power limit as a fraction of the TDP. The lowest fractions nvidia-smi reports are 0.25 (A100
SXM4: 100 of 400 W) and 0.29 (H100 SXM5: 200 of 700 W; RTX 3090: 100 of 350 W); most cards stop higher (T4
60 of 70 W, L4 40 of 72 W, V100 PCIe 100 of 250 W). Below this no card can be set, so the model refuses it."""
POWER_LIMIT_MAX_FRAC = 1.33
"""Highest settable power limit as a fraction of the TDP: datacenter cards stop at the TDP, GeForce cards allow
more (RTX 4090: 600 of 450 W, the largest known); the training table reaches 1.09."""


def power_limit_range_w(gpu: GPUSpec) -> tuple[float, float]:
    """(lowest, highest) power limit in watts that ``gpu`` can be set to: nvidia-smi's Min / Max Power Limit from
    the GPU table where a public dump gives them, else the rule :data:`POWER_LIMIT_MIN_FRAC` /
    :data:`POWER_LIMIT_MAX_FRAC` x TDP (each end on its own)."""
    lo, hi = gpu.power_limit_min_w, gpu.power_limit_max_w
    return (float(lo) if lo else POWER_LIMIT_MIN_FRAC * float(gpu.tdp_w),
            float(hi) if hi else POWER_LIMIT_MAX_FRAC * float(gpu.tdp_w))


def default_power_limit_w(gpu: GPUSpec) -> float:
    """The power limit a board runs at unless set: nvidia-smi's Default Power Limit where known, else the TDP."""
    return float(gpu.power_limit_default_w) if gpu.power_limit_default_w else float(gpu.tdp_w)



def clock_factor(gpu: GPUSpec) -> float:
    """Sustained fraction of the datasheet clock of ``gpu`` under training load (SXM vs PCIe vs NVL)."""
    from featurize.hardware.table import form_factor_power_ratio

    return float(form_factor_power_ratio(gpu)) ** (1.0 / CLOCK_POWER_EXPONENT)


def gpu_columns(gpu: GPUSpec, precision: str, *, fallback: bool = False) -> dict[str, float]:
    """GPU-side numbers for ``precision`` as frameworks run it (:func:`featurize.hardware.precision.precision_paths`):
    GEMM-path and convolution-path peak FLOP/s (x the sustained :func:`clock_factor`), bandwidth, L2, TDP,
    idle power, launch year, SMs.

    Raises:
        UnsupportedPrecisionError: ``gpu`` cannot run ``precision`` and ``fallback`` is False.
    """
    paths = precision_paths(gpu, precision, fallback=fallback)
    clock = clock_factor(gpu)
    idle = idle_power_w(gpu)
    gemm = peak_flops(gpu, precision, "gemm", fallback=fallback)
    conv = peak_flops(gpu, precision, "conv", fallback=fallback)
    return {
        "peak_flops": gemm * clock,
        "conv_peak_flops": conv * clock,
        "peak_fp32_flops": peak_flops(gpu, precision, "vector", fallback=fallback) * clock,
        "mem_bw_bytes_per_s": float(gpu.mem_bw_bytes_per_s),
        "l2_cache_bytes": float(gpu.l2_cache_bytes),
        "tdp_w": float(gpu.tdp_w),
        "idle_power_w": float(idle),
        "launch_year": float(gpu.launch_year or REFERENCE_YEAR),
        "sm_count": float(gpu.sm_count),
        "tensor_precision": 0.0 if paths.gemm == "fp32" else 1.0,
        "conv_tensor": 0.0 if paths.conv == "fp32" else 1.0,
        "bytes_per_element": float(BYTES_PER_ELEMENT[precision]),
    }


def path_rate(peak: np.ndarray, tensor: np.ndarray, fp32_peak: np.ndarray) -> np.ndarray:
    """Achievable FLOP/s of a path: COMPUTE_EFFICIENCY x peak on CUDA cores; on a reduced-precision path
    max(TENSOR_CORE_EFFICIENCY x peak, COMPUTE_EFFICIENCY x FP32 peak) -- frameworks keep the faster path, so a
    reduced precision is never slower than fp32 (e.g. fp16 on an RTX 3090: 0.3 x 71 < 0.7 x 35.6 TFLOP/s)."""
    return np.where(np.asarray(tensor) > 0, np.maximum(TENSOR_CORE_EFFICIENCY * peak, COMPUTE_EFFICIENCY * fp32_peak),
                    COMPUTE_EFFICIENCY * peak)


def physics_arrays(
    graph: Mapping[str, Any],
    gpu: Mapping[str, Any],
    *,
    batch_size: Any,
    power_limit_w: Any = None,
    dram_bytes_per_sample: Any = None,
) -> dict[str, np.ndarray]:
    """Vectorised physics features.

    Args:
        graph: per-sample graph features (arrays or scalars), keys as in ``GraphFeatures.to_dict()``
            with or without the ``g_`` prefix.
        gpu: :func:`gpu_columns` output, one value per row or a scalar for all rows.
        batch_size: samples per optimizer step (array or scalar).
        power_limit_w: enforced board power limit, watts (None/NaN = the TDP).
        dram_bytes_per_sample: cache-aware DRAM traffic of the forward pass (``featurize.graph.cache``);
            None = ``bytes_moved_forward``.

    Returns:
        dict of arrays: :data:`PRIOR_NAMES` + :data:`FEATURE_NAMES`.
    """
    g = {k: _col(graph, k) for k in (
        "flops_train", "flops_forward", "flops_backward", "bytes_moved_forward", "trainable_params", "params",
        "n_nodes", "weight_bytes", "max_layer_working_set_bytes", "arithmetic_intensity", "frac_macs_conv",
        "frac_macs_matmul", "frac_macs_attention", "frac_macs_recurrent", "frac_flops_elementwise")}
    c = {k: np.asarray(v, dtype=float) for k, v in gpu.items()}
    bs = np.asarray(batch_size, dtype=float)
    if np.any(~(bs >= 1)):
        raise InvalidInputError("batch_size must be >= 1")
    if np.any(~(g["flops_train"] > 0)):
        raise InvalidInputError("flops_train must be > 0 (did the graph featurize to an empty model?)")
    tdp = c["tdp_w"]
    pl = np.full(np.broadcast(bs, tdp).shape, np.nan) if power_limit_w is None else np.asarray(power_limit_w, float)
    cap = np.where(np.isfinite(pl) & (pl > 0), np.minimum(pl, tdp * 1.5), tdp)

    fwd_bytes = g["bytes_moved_forward"] if dram_bytes_per_sample is None else np.asarray(dram_bytes_per_sample, float)
    bwd_ratio = g["flops_backward"] / np.maximum(g["flops_forward"], 1.0)
    bytes_train = fwd_bytes * (1.0 + bwd_ratio) + OPT_BYTES_PER_PARAM * g["trainable_params"] / bs
    fp32_peak = c.get("peak_fp32_flops", c["peak_flops"])
    conv_peak = c.get("conv_peak_flops", c["peak_flops"])
    conv_tensor = c.get("conv_tensor", c["tensor_precision"])
    fc = np.clip(g["frac_macs_conv"], 0.0, 1.0)  # convolutions on their path, everything else on the GEMM path
    t_compute = g["flops_train"] * (fc / conv_peak + (1.0 - fc) / c["peak_flops"])
    t_memory = bytes_train / c["mem_bw_bytes_per_s"]
    t_launch = KERNELS_PER_NODE * np.maximum(g["n_nodes"], 1.0) * LAUNCH_S / bs
    t_step = STEP_OVERHEAD_S / bs
    t_overhead = t_launch + t_step
    gemm_rate = path_rate(c["peak_flops"], c["tensor_precision"], fp32_peak)
    conv_rate = path_rate(conv_peak, conv_tensor, fp32_peak)
    # the tensor_precision feature says which regime the prior used: the tensor path only where it is faster
    tensor = (c["tensor_precision"] > 0) & (TENSOR_CORE_EFFICIENCY * c["peak_flops"] > COMPUTE_EFFICIENCY * fp32_peak)
    t_arith = g["flops_train"] * (fc / conv_rate + (1.0 - fc) / gemm_rate)
    peak_eff = g["flops_train"] / t_compute  # the graph's blended peak (GEMM and convolution paths)
    t_busy = np.maximum(t_arith, t_memory)
    t_phys = t_busy + t_overhead
    busy = t_busy / t_phys
    idle_w = np.minimum(c["idle_power_w"], cap)
    p_phys = idle_w + (cap - idle_w) * np.sqrt(busy)
    balance = peak_eff / c["mem_bw_bytes_per_s"]
    l2 = np.maximum(c["l2_cache_bytes"], 1.0)
    # max_layer_working_set_bytes is at the evaluated batch in the featurizer; per-sample x batch is what meets L2.
    ws = np.maximum(g["max_layer_working_set_bytes"], 1.0)
    ai = np.maximum(g["flops_train"] / np.maximum(bytes_train, 1.0), 1e-6)
    out = {
        "t_compute_s": t_compute,
        "t_memory_s": t_memory,
        "t_overhead_s": t_overhead,
        "t_phys_s": t_phys,
        "e_phys_j": p_phys * t_phys,
        "tdp_w": tdp * np.ones_like(t_phys),
        "power_cap_w": cap * np.ones_like(t_phys),
        "p_phys_w": p_phys * np.ones_like(t_phys),
        "t_arith_s": t_arith,
        "log_t_phys_s": np.log10(t_phys),
        "log_kernel_time_s": np.log10(t_busy * bs / (KERNELS_PER_NODE * np.maximum(g["n_nodes"], 1.0))),
        "compute_frac": t_compute / t_phys,
        "memory_frac": t_memory / t_phys,
        "overhead_frac": t_overhead / t_phys,
        "log_batch_size": np.log2(bs),
        "log_ws_over_l2": np.log2(ws / l2),
        "log_weights_over_l2": np.log2(np.maximum(g["weight_bytes"], 1.0) / l2),
        "log_ai_over_balance": np.log2(ai / balance),
        "log_machine_balance": np.log2(balance),
        "frac_macs_conv": g["frac_macs_conv"],
        "frac_macs_matmul": g["frac_macs_matmul"],
        "frac_macs_attention": g["frac_macs_attention"],
        "frac_macs_recurrent": g["frac_macs_recurrent"],
        "frac_flops_elementwise": g["frac_flops_elementwise"],
        "trainable_frac": g["trainable_params"] / np.maximum(g["params"], 1.0),
        "backward_ratio": bwd_ratio,
        "tensor_precision": tensor * np.ones_like(t_phys),
        "power_limit_frac": cap / tdp,
        "idle_frac": c["idle_power_w"] / tdp * np.ones_like(t_phys),
        "gpu_age_years": (REFERENCE_YEAR - c["launch_year"]) * np.ones_like(t_phys),
        "log_flops_per_sm": np.log2(peak_eff / np.maximum(c["sm_count"], 1.0) / 1e9) * np.ones_like(t_phys),
        "busy_frac": busy,
        "step_frac": t_step / t_phys,
        "launch_frac": t_launch / t_phys,
        "log_busy_time_per_step_s": np.log10(t_busy * bs),
    }
    return {k: np.broadcast_to(v, t_phys.shape).astype(float) for k, v in out.items()}


def power_prior_w(prior: Mapping[str, Any], time_per_sample_s: Any) -> np.ndarray:
    """The power prior over a given time per sample: ``idle + (cap - idle) x sqrt(busy)`` with ``busy`` the
    whole-graph roofline's busy time over THAT time (at most 1). With the prior's own time it is ``p_phys_w``; over
    the measured time (training) or the predicted one (prediction) a step that takes longer than its kernels
    spends the difference waiting, at lower power. ``prior``: :func:`physics_arrays` output (or a frame of it)."""
    t_busy = np.asarray(prior["busy_frac"], float) * np.asarray(prior["t_phys_s"], float)
    cap = np.asarray(prior["power_cap_w"], float)
    idle = np.minimum(np.asarray(prior["idle_frac"], float) * np.asarray(prior["tdp_w"], float), cap)
    busy = np.clip(t_busy / np.asarray(time_per_sample_s, float), 0.0, 1.0)
    return idle + (cap - idle) * np.sqrt(busy)


def physics_features(
    graph: Mapping[str, Any],
    gpu: GPUSpec,
    *,
    batch_size: int,
    precision: str,
    power_limit_w: float | None = None,
    cache: Mapping[str, float] | None = None,
    fallback: bool = False,
) -> dict[str, float]:
    """Physics features of one graph on one GPU (see the module docstring for the formulas).

    Args:
        graph: ``GraphFeatures.to_dict()`` or a training-table row (``g_``-prefixed keys).
        gpu: the resolved :class:`GPUSpec`.
        batch_size: samples per optimizer step.
        precision: one of ``fp32, tf32, fp16, bf16, fp8`` (picks the peak FLOP/s).
        power_limit_w: enforced power limit (None = TDP).
        cache: optional ``featurize.graph.cache.cache_features`` output; its ``dram_bytes_per_sample``
            replaces ``bytes_moved_forward`` in the memory-bound time.
        fallback: run a precision the GPU cannot run as frameworks fall back (see :mod:`featurize.hardware.precision`).
    """
    dram = None if not cache or "dram_bytes_per_sample" not in cache else cache["dram_bytes_per_sample"]
    arrays = physics_arrays(graph, gpu_columns(gpu, precision, fallback=fallback), batch_size=batch_size,
                            power_limit_w=power_limit_w, dram_bytes_per_sample=dram)
    return {k: float(v) for k, v in arrays.items()}


# ----------------------------------------------------------------------------------------------- memory
WEIGHT_BYTES_PER_PARAM = 4.0
"""Bytes per parameter of the weights: fp32 master weights (automatic mixed precision keeps them in fp32 and casts
per op)."""
GRAD_BYTES_PER_PARAM = 4.0
"""Bytes per trainable parameter of its gradient (fp32, as the optimizer reads it)."""
OPTIMIZER_STATE_BYTES_PER_PARAM = 8.0
"""Adam's two fp32 moments per trainable parameter (the optimizer the FLOP count assumes)."""
WORKSPACE_BYTES = 2**30
"""CUDA context, cuBLAS/cuDNN workspaces and caching-allocator slack: ~1 GiB (a PyTorch CUDA context alone takes
0.3-0.5 GiB)."""


def training_memory_bytes(params: float, trainable_params: float, activation_bytes_per_sample: float,
                          batch_size: float) -> dict[str, float]:
    """Peak GPU memory of one training step, bytes, by part: weights, gradients, optimizer state (Adam), the
    activations stored for backward (per sample x batch) and a fixed workspace; ``total_bytes`` is their sum."""
    parts = {
        "weights_bytes": WEIGHT_BYTES_PER_PARAM * float(params),
        "gradients_bytes": GRAD_BYTES_PER_PARAM * float(trainable_params),
        "optimizer_bytes": OPTIMIZER_STATE_BYTES_PER_PARAM * float(trainable_params),
        "activations_bytes": float(activation_bytes_per_sample) * float(batch_size),
        "workspace_bytes": float(WORKSPACE_BYTES),
    }
    parts["total_bytes"] = sum(parts.values())
    return parts


def largest_batch_that_fits(params: float, trainable_params: float, activation_bytes_per_sample: float,
                            mem_bytes: float) -> int:
    """The largest batch whose :func:`training_memory_bytes` fits in ``mem_bytes`` (0: not even batch 1)."""
    fixed = training_memory_bytes(params, trainable_params, 0.0, 0)["total_bytes"]
    free = float(mem_bytes) - fixed
    if free < float(activation_bytes_per_sample):
        return 0
    if activation_bytes_per_sample <= 0:
        return 2**31 - 1
    return int(free // float(activation_bytes_per_sample))
