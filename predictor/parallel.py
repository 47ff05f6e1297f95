"""N GPUs on one node: a single-GPU forecast -> a data-parallel (DDP / FSDP) one.

Pure functions. Whatever single-GPU time model ``predict_frame`` has gives the per-GPU compute of a step
(``t_c = time_per_sample_s x batch_size``: ``batch_size`` is per GPU); this module adds what data parallelism
costs on top, per step::

    comm     = collective bytes / ring bandwidth x (pcie_factor on a PCIe path)   (featurize.parallel)
    hidden   = min(overlap x comm, hideable compute)          (DDP: backward; FSDP: forward + backward)
    sync     = (sync_s + straggler x t_c) x log2(n)           (launch/barrier latency; waiting for the slowest GPU)
    extra    = comm - hidden + sync
    t_step_N = t_c + extra                                    (wall clock; speed-up n x t_c / t_step_N <= n)

An epoch of S training and V validation samples on n GPUs takes ``t_epoch_1 / n + S / (batch_size x n) x
extra`` (validation needs no gradient exchange). Energy counts every GPU: the compute energy of the epoch is
the single-GPU one (the same samples, split n ways), and during ``extra`` each of the n GPUs draws
``idle + COMM_WAIT_POWER_SHARE x (compute power - idle)`` (NCCL kernels spin on a few SMs and copy over the
links: neither idle nor full load; no multi-GPU GPU-power measurement exists in the training table to fit it).
``avg_power_w`` stays per GPU; ``energy_j`` is the whole job's.

``overlap`` and ``sync_s`` are learned from the Lambda, NVIDIA DLE and MLPerf multi-GPU rows
(``bench/scaling.py``; constants chosen on inner leave-one-GPU-out folds), per implementation class
(:data:`SCALING`): ``reference`` (NGC/PyTorch DeepLearningExamples-style code, lambda_dlbench) and ``tuned``
(NVIDIA DLE READMEs, MLPerf submitters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from featurize.parallel import comm_time_s, ring_path
from featurize.types import GPUSpec


@dataclass(frozen=True)
class ScalingConstants:
    """Fitted data-parallel constants of one implementation class."""

    overlap: float = 0.5
    """Fraction of the collectives hidden behind compute (capped by the hideable compute time)."""
    sync_s: float = 0.0
    """Fixed per-step synchronisation cost per doubling of the GPU count, seconds (launches, barrier)."""
    straggler: float = 0.0
    """Per-step cost per doubling of the GPU count as a fraction of the step's compute (every step waits for
    the slowest GPU: clock, thermal and host jitter grow with the step and with the number of GPUs)."""
    pcie_factor: float = 1.0
    """Measured over modelled collective time on a PCIe path (host bridges, NUMA hops, no peer-to-peer)."""
    scale: float = 1.0
    """The whole term's factor for this class of systems (a source offset of the fit, folded in)."""


_FITTED = dict(overlap=0.661, sync_s=0.00069, straggler=0.0137, pcie_factor=2.46)
SCALING: dict[str, ScalingConstants] = {
    "reference": ScalingConstants(**_FITTED, scale=1.86),
    "tuned": ScalingConstants(**_FITTED, scale=1.06),
}
"""Per class of systems (``predictor.parallel_fit.class_constants``): ``reference`` = ordinary servers and
workstations (Lambda's), ``tuned`` = vendor-tuned systems and code (NVIDIA DLE, MLPerf). Fitted by
``python bench/scaling.py`` on 756 speed-up pairs (Lambda, DLE, MLPerf; 20 GPUs), variant "full + source offsets"
chosen on GPU folds; leave-one-GPU-out median speed-up error 4.0 / 5.4 / 7.7 % at N = 2 / 4 / 8 (all sources)."""
COMM_WAIT_POWER_SHARE = 0.5
"""Share of the compute power above idle a GPU draws while it waits on exposed communication (stated rule)."""


def scaling_record() -> dict[str, dict[str, float]]:
    """The data-parallel constants as the model's prior spec records them (class -> field -> value, and the
    waiting-power share under ``"power"``): a shipped model carries the constants its forecasts were checked with."""
    from dataclasses import asdict

    out = {name: {k: float(v) for k, v in asdict(c).items()} for name, c in sorted(SCALING.items())}
    out["power"] = {"comm_wait_power_share": float(COMM_WAIT_POWER_SHARE)}
    return out


def step_extra_s(t_compute_s: Any, hideable_share: Any, comm_s: Any, pcie: Any, n_gpus: Any,
                 constants: ScalingConstants) -> np.ndarray:
    """Seconds each data-parallel step adds to the per-GPU compute ``t_compute_s`` (module formula): the
    collectives ``comm_s`` (``pcie``: on a PCIe path) not hidden behind ``hideable_share`` of the compute, plus
    the synchronisation cost."""
    t_c = np.asarray(t_compute_s, float)
    n = np.asarray(n_gpus, float)
    comm = np.asarray(comm_s, float) * np.where(np.asarray(pcie, bool), constants.pcie_factor, 1.0)
    hidden = np.minimum(constants.overlap * comm, np.asarray(hideable_share, float) * t_c)
    sync = (constants.sync_s + constants.straggler * t_c) * np.log2(np.maximum(n, 1.0))
    return constants.scale * np.where(n > 1, comm - hidden + sync, 0.0)


def compute_step_s(t_step_s: Any, hideable_share: Any, comm_s: Any, pcie: Any, n_gpus: Any,
                   constants: ScalingConstants, scale: Any = 1.0) -> np.ndarray:
    """The per-GPU compute of a step measured as ``t_step_s`` on ``n_gpus`` GPUs: the inverse of
    ``t_c + scale x step_extra_s(t_c, ...)`` (fixed point; the term's slope in ``t_c`` is far below 1)."""
    t_step = np.asarray(t_step_s, float)
    t_c = t_step.copy()
    for _ in range(50):
        extra = np.asarray(scale, float) * step_extra_s(t_c, hideable_share, comm_s, pcie, n_gpus, constants)
        new = np.maximum(t_step - extra, 1e-3 * t_step)
        if np.allclose(new, t_c, rtol=1e-10, atol=0.0):
            return new
        t_c = new
    return t_c


def single_gpu_time_per_sample_s(graph_rows: pd.DataFrame, specs: Sequence[GPUSpec], *, n_gpus: Any,
                                 batch_size: Any, time_per_sample_s: Any,
                                 implementation: str = "tuned") -> np.ndarray:
    """What measured data-parallel rows (GPU-seconds per sample at ``n_gpus``, per-GPU ``batch_size``) would
    have taken on one GPU: the target a single-GPU time model can learn from multi-GPU rows."""
    b = np.asarray(batch_size, float)
    comm, pcie = comm_columns(graph_rows, specs, n_gpus, "ddp")
    share = hideable_share(_col(graph_rows, "flops_forward"), _col(graph_rows, "flops_backward"),
                           _col(graph_rows, "flops_train"), "ddp")
    t_step = np.asarray(time_per_sample_s, float) * b
    return compute_step_s(t_step, share, comm, pcie, n_gpus, SCALING[implementation]) / b


def hideable_share(flops_forward: Any, flops_backward: Any, flops_train: Any, parallelism: str) -> np.ndarray:
    """Share of a step's compute the collectives can hide behind: backward (DDP), forward + backward (FSDP)."""
    fwd, bwd, train = (np.asarray(x, float) for x in (flops_forward, flops_backward, flops_train))
    part = bwd if parallelism == "ddp" else fwd + bwd
    return np.clip(part / np.maximum(train, 1e-30), 0.0, 1.0)


def _col(g: pd.DataFrame, key: str) -> np.ndarray:
    return np.asarray(g[f"g_{key}"] if f"g_{key}" in g else g[key], float)


def comm_columns(graph_rows: pd.DataFrame, specs: Sequence[GPUSpec], n_gpus: Any,
                 parallelism: str) -> tuple[np.ndarray, np.ndarray]:
    """(collective seconds per step, whether the ring runs over PCIe) for each (graph, GPU) row."""
    params, trainable = _col(graph_rows, "params"), _col(graph_rows, "trainable_params")
    ns = np.broadcast_to(np.asarray(n_gpus, int), (len(specs),))
    comm = [comm_time_s(p, t, s, n, parallelism) for p, t, s, n in zip(params, trainable, specs, ns)]
    pcie = [ring_path(s, max(int(n), 2)).kind == "PCIe" for s, n in zip(specs, ns)]
    return np.asarray(comm, float), np.asarray(pcie, bool)


def data_parallel_frame(pred: pd.DataFrame, graph_rows: pd.DataFrame, specs: GPUSpec | Sequence[GPUSpec], *,
                        n_gpus: int, parallelism: str, batch_size: Any, samples_per_epoch: Any, epochs: Any,
                        implementation: str = "reference") -> pd.DataFrame:
    """``pred`` (a single-GPU ``predict_frame`` output) as the same run on ``n_gpus`` GPUs of each row's kind.

    Replaces the time, energy, power and interval columns (wall clock; every GPU's energy; power per GPU) and
    adds ``n_gpus``, ``comm_s`` (collectives per step), ``exposed_comm_s`` (not hidden, with the sync cost) and
    ``speedup`` (over one GPU at the same per-GPU batch)."""
    from featurize.hardware.names import idle_power_w

    specs = [specs] * len(pred) if isinstance(specs, GPUSpec) else list(specs)
    out = pred.copy()
    n = int(n_gpus)
    b = np.broadcast_to(np.asarray(batch_size, float), (len(pred),))
    spe = np.broadcast_to(np.asarray(samples_per_epoch, float), (len(pred),))
    ep = np.broadcast_to(np.asarray(epochs, float), (len(pred),))
    t_c = pred["time_per_sample_s"].to_numpy(float) * b
    comm, pcie = comm_columns(graph_rows, specs, n, parallelism)
    share = hideable_share(_col(graph_rows, "flops_forward"), _col(graph_rows, "flops_backward"),
                           _col(graph_rows, "flops_train"), parallelism)
    constants = SCALING[implementation]
    comm = comm * np.where(pcie, constants.pcie_factor, 1.0)
    extra = step_extra_s(t_c, share, comm, False, n, constants)
    steps = spe / (b * n)
    t_epoch1 = pred["time_per_epoch_s"].to_numpy(float)
    e_epoch1 = pred["energy_per_epoch_j"].to_numpy(float)
    p_gpu = pred["avg_power_w"].to_numpy(float)
    idle = np.array([idle_power_w(s) for s in specs])
    p_wait = idle + COMM_WAIT_POWER_SHARE * np.maximum(p_gpu - idle, 0.0)
    t_epoch = t_epoch1 / n + steps * extra
    e_epoch = e_epoch1 + n * steps * extra * p_wait
    ratio = np.where(e_epoch1 > 0, e_epoch / np.where(e_epoch1 > 0, e_epoch1, 1.0), 1.0)
    equiv = np.where(t_epoch1 > 0, t_epoch1 / np.maximum(pred["time_per_sample_s"].to_numpy(float), 1e-300), 1.0)
    out["time_per_epoch_s"] = t_epoch
    out["time_s"] = t_epoch * ep
    out["time_per_sample_s"] = t_epoch / np.maximum(equiv, 1e-300)
    out["energy_per_epoch_j"] = e_epoch
    out["energy_j"] = e_epoch * ep
    out["energy_per_sample_j"] = pred["energy_per_sample_j"].to_numpy(float) * ratio
    out["avg_power_w"] = np.where(t_epoch > 0, e_epoch / np.maximum(t_epoch, 1e-300) / n, p_gpu)
    for col in ("interval_low_j", "interval_high_j"):
        out[col] = pred[col].to_numpy(float) * ratio
    t_ratio = t_epoch / np.where(t_epoch1 > 0, t_epoch1, 1.0)
    for col in ("interval_low_s", "interval_high_s"):  # the time interval, where the model gives one
        if col in pred:
            out[col] = pred[col].to_numpy(float) * t_ratio
    out["n_gpus"] = n
    out["comm_time_per_epoch_s"] = steps * extra
    out["comm_energy_per_epoch_j"] = n * steps * extra * p_wait
    out["comm_s"] = comm
    out["exposed_comm_s"] = extra
    out["speedup"] = n * t_c / (t_c + extra)
    return out


def communication_layer(row: pd.Series, epochs: float) -> dict[str, Any]:
    """The layer-breakdown row of the run's exposed communication (time and every GPU's energy while waiting)."""
    return {"node": "data-parallel communication (not hidden)", "op_type": "collectives", "op_class": "communication",
            "bound": "link", "time_s": float(row["comm_time_per_epoch_s"]) * epochs,
            "energy_j": float(row["comm_energy_per_epoch_j"]) * epochs}


def scaling_note(row: pd.Series, spec: GPUSpec, *, n_gpus: int, parallelism: str, batch_size: int,
                 params: float, trainable_params: float) -> str:
    """The warning that states the global batch, the path, the communication per step and the speed-up."""
    from featurize.parallel import collective_bytes

    if n_gpus <= 1:
        return ""
    path = ring_path(spec, n_gpus)
    gb = collective_bytes(params, trainable_params, n_gpus, parallelism) / 1e9
    what = "all-reduces the fp32 gradients" if parallelism == "ddp" else (
        "all-gathers the fp32 parameters twice and reduce-scatters the fp32 gradients")
    return (f"{n_gpus} GPUs, {parallelism.upper()}: batch_size={batch_size} is per GPU, so the global batch is "
            f"{batch_size * n_gpus:,} samples per step. Each step {what} ({gb:,.3g} GB through each GPU) over "
            f"{path.note}: {1e3 * float(row['comm_s']):,.3g} ms, of which {1e3 * float(row['exposed_comm_s']):,.3g} "
            f"ms (with synchronisation) is not hidden behind compute; speed-up {float(row['speedup']):.2f}x over "
            f"one GPU at the same per-GPU batch. time_s is wall clock, energy_j counts all {n_gpus} GPUs (waiting "
            f"GPUs draw power too), avg_power_w is per GPU.")

