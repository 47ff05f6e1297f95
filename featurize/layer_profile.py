"""The per-layer prior in a form that travels: a graph's kernel profile and its step time on any GPU, vectorised.

Public entry points:

* :class:`LayerProfile` -- the GPU-independent part of a graph's node table that the per-layer prior needs: one row
  per distinct kernel-launching node (prior op class, FLOPs, bytes read + written, bytes written) with its
  multiplicity, at the batch the graph was evaluated at. ``featurize`` builds it in its node pass
  (``GraphFeatures.layer_profile``), also without the node table; :meth:`LayerProfile.to_text` /
  :meth:`LayerProfile.from_text` carry it in feature rows (``layer_profile`` / ``g_layer_profile`` columns: the
  training table, batch scoring, retrain).
* :func:`node_times` -- the per-node roofline of :mod:`featurize.physics.layers` (ONE rule: ``layer_prior`` and
  :func:`step_times` both call it).
* :func:`step_times` -- a profile on one GPU at one batch -> the step's time split into compute-bound, memory-bound
  and launch time, the optimizer update and the fixed step overhead.
* :func:`layered_arrays` -- :func:`step_times` for many rows (profiles x GPU columns x batch), per training sample,
  plus the transferable features the time model learns from (:data:`LAYER_FEATURE_NAMES`).
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featurize.errors import InvalidInputError

PRIOR_CLASS: dict[str, str] = {
    "conv": "conv", "matmul": "gemm", "attention": "attention", "recurrent": "gemm",
    "normalization": "normalization", "elementwise": "elementwise", "softmax": "elementwise",
    "reduction": "elementwise", "pooling": "elementwise", "data_movement": "data_movement",
    "unsupported": "elementwise",
}
"""Featurizer op class -> prior op class; classes not listed (``zero``, ``constant``) launch no kernel.
``Gather`` nodes (embedding lookups) are the ``embedding`` class (:func:`prior_class`)."""
PRIOR_CLASSES: tuple[str, ...] = ("conv", "gemm", "attention", "normalization", "elementwise", "data_movement",
                                  "embedding")
"""Prior op classes, in code order (a profile stores the code)."""
COMPUTE_CLASSES = ("conv", "gemm", "attention")
TILE_ELEMENTS = 128 * 128
"""Output elements per thread block of a GEMM / implicit-GEMM convolution (a 128 x 128 tile)."""
PROFILE_FORMAT = "lp1"
LAYER_FEATURE_NAMES: tuple[str, ...] = (
    "log_t_layers_s",
    "layer_compute_frac",
    "layer_memory_frac",
    "layer_launch_frac",
    "layer_optimizer_frac",
    "layer_step_frac",
    "layer_conv_compute_frac",
    "layer_conv_memory_frac",
    "layer_gemm_frac",
    "layer_vector_frac",
    "log_layer_kernel_time_s",
    "log_tensor_speedup",
    "log_bw_per_fp32_flop",
)
"""Features :func:`layered_arrays` returns besides ``t_layers_s`` (per sample): the shares of the per-layer prior's
step time in compute-bound nodes, memory-bound nodes, kernel launches, the optimizer update and the fixed step
overhead, and of its busy time by op class (compute-bound convolutions, memory-bound convolutions such as depthwise
ones, GEMMs and attention, vector ops); the mean busy time per kernel; and two GPU ratios (reduced-precision GEMM rate / FP32 rate, DRAM bytes
per FP32 FLOP) -- scale-free, no GPU identity. ``log_tensor_speedup`` is the speed-up the prior promises the GEMM
path over the FP32 one (its achievable rates, :func:`featurize.physics.prior.path_rate`): 0 for fp32, and for AMP on a
GeForce card whose FP32-accumulate tensor rate x TENSOR_CORE_EFFICIENCY does not beat COMPUTE_EFFICIENCY x FP32."""


def prior_class(op_class: str, op_type: str) -> str:
    """The prior op class of a node (``""``: it launches no kernel)."""
    cls = PRIOR_CLASS.get(op_class, "")
    return "embedding" if cls and op_type == "Gather" else cls


REFERENCE_GPU = "H100-SXM5-80GB"
"""The GPU the workload descriptors are priced on (:data:`REFERENCE_FEATURE_NAMES`), at fp32: one fixed device and
precision, so they describe the graph and batch, never the GPU or the precision a prediction is for."""
REFERENCE_PREFIX = "ref_"
REFERENCE_FEATURE_NAMES: tuple[str, ...] = tuple(
    REFERENCE_PREFIX + f for f in LAYER_FEATURE_NAMES if f not in ("log_tensor_speedup", "log_bw_per_fp32_flop")
) + (REFERENCE_PREFIX + "log_whole_over_layers",)
""":data:`LAYER_FEATURE_NAMES` (but the GPU ratios) of the per-layer prior on :data:`REFERENCE_GPU`: workload
descriptors that transfer to any GPU. A time residual over them (plus the precision path and GPU ratios with a
monotone constraint) cannot reorder two GPUs of the same ratios that the per-layer prior orders."""


@dataclass(frozen=True)
class LayerProfile:
    """Distinct kernel-launching nodes of a graph at its evaluated batch ``eval_batch``.

    Arrays (one entry per distinct node): ``code`` (index into :data:`PRIOR_CLASSES`), ``flops`` and ``bytes``
    (read + written) and ``out_bytes`` (written) of the forward node, and ``count`` (identical nodes merged)."""

    code: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    out_bytes: np.ndarray
    count: np.ndarray
    eval_batch: float

    @classmethod
    def build(cls, classes: Sequence[str], flops: Any, nbytes: Any, out_bytes: Any, eval_batch: float) -> LayerProfile:
        """From per-node prior classes (:data:`PRIOR_CLASSES` names) and counts; identical nodes merged."""
        index = {c: i for i, c in enumerate(PRIOR_CLASSES)}
        unknown = sorted(set(classes) - set(index))
        if unknown:
            raise InvalidInputError(f"layer profile: unknown prior op classes {unknown}; use {PRIOR_CLASSES}.")
        table = np.column_stack([np.array([index[c] for c in classes], float), np.asarray(flops, float),
                                 np.asarray(nbytes, float), np.asarray(out_bytes, float)]).reshape(-1, 4)
        rows, count = np.unique(table, axis=0, return_counts=True)
        return cls(rows[:, 0].astype(np.int8), rows[:, 1].copy(), rows[:, 2].copy(), rows[:, 3].copy(),
                   count.astype(float), float(max(eval_batch, 1.0)))

    @classmethod
    def from_nodes(cls, nodes: Any, flops_forward: float) -> LayerProfile:
        """From a ``GraphFeatures.nodes`` table (what :func:`featurize.physics.layers.layer_prior` reads)."""
        classes = node_classes(nodes)
        keep = classes != ""
        n = nodes[keep]
        return cls.build(list(classes[keep]), n["flops"].to_numpy(float),
                         n["bytes_read"].to_numpy(float) + n["bytes_written"].to_numpy(float),
                         n["bytes_written"].to_numpy(float), evaluated_batch(nodes, flops_forward))

    def to_text(self) -> str:
        """Compact text (``lp1:`` + base64 of the zlib-compressed float64 arrays): exact round trip."""
        arr = np.concatenate([[self.eval_batch, len(self.code)], self.code.astype(float), self.flops, self.bytes,
                              self.out_bytes, self.count]).astype("<f8")
        return f"{PROFILE_FORMAT}:" + base64.b64encode(zlib.compress(arr.tobytes(), 6)).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> LayerProfile:
        """Inverse of :meth:`to_text`; raises InvalidInputError on anything else."""
        head, _, body = str(text).partition(":")
        try:
            if head != PROFILE_FORMAT:
                raise ValueError(f"format {head!r}")
            arr = np.frombuffer(zlib.decompress(base64.b64decode(body.encode("ascii"), validate=True)), "<f8")
            n = int(arr[1])
            if n < 0 or len(arr) != 2 + 5 * n or not np.all(np.isfinite(arr)):
                raise ValueError("length")
        except (ValueError, IndexError, zlib.error) as err:
            raise InvalidInputError(f"not a layer profile ({err}); featurize the graph again "
                                    "(GraphFeatures.layer_profile.to_text()).") from err
        parts = arr[2:].reshape(5, n)
        return cls(parts[0].astype(np.int8), parts[1].copy(), parts[2].copy(), parts[3].copy(), parts[4].copy(),
                   float(arr[0]))


@dataclass(frozen=True)
class LayerEfficiencies:
    """Achievable fraction of the path's rate (compute) and of DRAM bandwidth (memory) per prior op class.

    Compute efficiencies multiply :func:`featurize.physics.prior.path_rate` (which already holds the whole-graph
    COMPUTE_EFFICIENCY / TENSOR_CORE_EFFICIENCY); 1.0 = the whole-graph rate."""

    compute: dict[str, float] = field(default_factory=lambda: {"conv": 1.0, "gemm": 1.0, "attention": 1.0})
    memory: dict[str, float] = field(default_factory=lambda: {
        "conv": 0.8, "gemm": 0.8, "attention": 0.8, "normalization": 0.8, "elementwise": 0.8,
        "data_movement": 0.8, "embedding": 0.5, "optimizer": 0.8})
    source: str = "default: round values (80 % of DRAM bandwidth, the whole-graph compute rates)"

    def to_dict(self) -> dict[str, Any]:
        return {"compute": dict(self.compute), "memory": dict(self.memory), "source": self.source}


def node_classes(nodes: Any) -> np.ndarray:
    """Prior op class per node (``""`` for nodes that launch no kernel)."""
    return np.array([prior_class(c, o) for c, o in zip(nodes["op_class"].astype(str), nodes["op_type"].astype(str))],
                    object)


def evaluated_batch(nodes: Any, flops_forward: float) -> float:
    """The batch the node table was evaluated at (a graph exported with a fixed batch keeps it): node FLOPs sum
    to ``flops_forward`` (per sample) x that batch; 1 when the graph has no FLOPs."""
    total = float(nodes["flops"].sum()) if len(nodes) else 0.0
    return max(1.0, round(total / flops_forward)) if flops_forward > 0 and total > 0 else 1.0


def _graph_value(row: Mapping[str, Any], key: str) -> float:
    for k in (f"g_{key}", key):
        if k in row:
            return float(row[k])
    raise InvalidInputError(f"graph features lack '{key}' (or 'g_{key}'); pass GraphFeatures.to_dict() or a "
                            "training-table row.")


def coarse_profile(row: Mapping[str, Any]) -> LayerProfile:
    """A profile for a graph row that carries none (hand-made feature rows): one node per compute op class
    (its share of the forward MACs) and ``n_nodes - 3`` identical elementwise nodes that carry the rest of the
    FLOPs and every forward byte. A stated approximation; real graphs carry their own profile."""
    macs = _graph_value(row, "macs_forward")
    shares = {"conv": _graph_value(row, "frac_macs_conv"),
              "gemm": _graph_value(row, "frac_macs_matmul") + _graph_value(row, "frac_macs_recurrent"),
              "attention": _graph_value(row, "frac_macs_attention")}
    rest = max(_graph_value(row, "flops_forward") - 2.0 * macs, 0.0)
    shares = {c: v for c, v in shares.items() if v > 0}
    n_vec = max(_graph_value(row, "n_nodes") - len(shares), 1.0)
    big = 1e12  # output bytes of a node large enough that tile quantisation is negligible
    classes = [*shares, "elementwise"]
    flops = [2.0 * macs * v for v in shares.values()] + [rest / n_vec]
    nbytes = [0.0] * len(shares) + [_graph_value(row, "bytes_moved_forward") / n_vec]
    prof = LayerProfile.build(classes, flops, nbytes, [big] * len(shares) + [0.0], 1.0)
    count = np.where(prof.code == PRIOR_CLASSES.index("elementwise"), n_vec, 1.0)
    return LayerProfile(prof.code, prof.flops, prof.bytes, prof.out_bytes, count, 1.0)


PROFILE_COLUMNS = ("g_layer_profile", "layer_profile")
"""Feature-row columns holding a :class:`LayerProfile` (or its text)."""


def row_profiles(graph_rows: Any) -> list[LayerProfile]:
    """The profile of each row of a graph-feature DataFrame: its ``g_layer_profile`` / ``layer_profile`` cell (a
    :class:`LayerProfile` or its text; equal texts decode once), else :func:`coarse_profile`."""
    col = next((c for c in PROFILE_COLUMNS if c in graph_rows), None)
    cells = list(graph_rows[col]) if col is not None else [None] * len(graph_rows)
    decoded: dict[str, LayerProfile] = {}
    out = []
    for i, cell in enumerate(cells):
        if isinstance(cell, LayerProfile):
            out.append(cell)
        elif isinstance(cell, str) and cell:
            if cell not in decoded:
                decoded[cell] = LayerProfile.from_text(cell)
            out.append(decoded[cell])
        else:
            out.append(coarse_profile(graph_rows.iloc[i]))
    return out


def node_times(code: np.ndarray, flops: np.ndarray, nbytes: np.ndarray, out_bytes: np.ndarray,
               gpu: Mapping[str, float], *, batch_size: float, eval_batch: float, backward_ratio: float,
               efficiencies: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(compute time, memory time, wave efficiency) of each node's forward + backward over one optimizer step.

    ``flops``/``nbytes``/``out_bytes`` are the forward node's at ``eval_batch``; ``gpu`` is
    :func:`featurize.physics.prior.gpu_columns`. See :mod:`featurize.physics.layers` for the formulas."""
    from featurize.physics.prior import path_rate

    eff = efficiencies or LayerEfficiencies()
    scale = batch_size / max(eval_batch, 1.0) * (1.0 + max(backward_ratio, 0.0))
    fp32 = float(gpu["peak_fp32_flops"])
    gemm = float(path_rate(np.float64(gpu["peak_flops"]), np.float64(gpu["tensor_precision"]), np.float64(fp32)))
    conv = float(path_rate(np.float64(gpu.get("conv_peak_flops", gpu["peak_flops"])),
                           np.float64(gpu.get("conv_tensor", gpu["tensor_precision"])), np.float64(fp32)))
    vector = float(path_rate(np.float64(fp32), np.float64(0.0), np.float64(fp32)))
    base = {"conv": conv, "gemm": gemm, "attention": gemm}
    rate = np.array([base.get(c, vector) * eff.compute.get(c, 1.0) for c in PRIOR_CLASSES])[code]
    mem = np.array([eff.memory.get(c, 0.8) for c in PRIOR_CLASSES])[code]
    out_elems = out_bytes / max(float(gpu.get("bytes_per_element", 4.0)), 1.0) * batch_size / max(eval_batch, 1.0)
    compute = np.isin(code, [PRIOR_CLASSES.index(c) for c in COMPUTE_CLASSES])
    waves = np.where(compute, wave_efficiency(out_elems, float(gpu["sm_count"])), 1.0)
    return flops * scale / (rate * waves), nbytes * scale / (float(gpu["mem_bw_bytes_per_s"]) * mem), waves


def wave_efficiency(output_elements: np.ndarray, sm_count: float) -> np.ndarray:
    """tiles / (waves x SMs): the share of SM slots a kernel's last wave leaves idle is lost (tile quantisation)."""
    tiles = np.maximum(np.ceil(np.asarray(output_elements, float) / TILE_ELEMENTS), 1.0)
    waves = np.ceil(tiles / max(sm_count, 1.0))
    return tiles / (waves * max(sm_count, 1.0))


def step_times(profile: LayerProfile, gpu: Mapping[str, float], *, batch_size: float, backward_ratio: float,
               trainable_params: float, efficiencies: Any = None) -> dict[str, float]:
    """One optimizer step of ``batch_size`` samples under the per-layer prior, seconds, by part: ``compute_s``
    (nodes whose compute time exceeds their memory time), ``memory_s`` (the others), ``launch_s`` (kernel
    launches), ``optimizer_s`` (the Adam update, launch included), ``step_s`` (fixed overhead); ``time_s`` their
    sum -- equal to ``featurize.physics.layers.layer_prior(...)["time_s"].sum()`` for the same graph -- and ``kernels``."""
    from featurize.physics.prior import KERNELS_PER_NODE, LAUNCH_S, OPT_BYTES_PER_PARAM, STEP_OVERHEAD_S

    eff = efficiencies or LayerEfficiencies()
    t_c, t_m, _ = node_times(profile.code, profile.flops, profile.bytes, profile.out_bytes, gpu,
                             batch_size=batch_size, eval_batch=profile.eval_batch, backward_ratio=backward_ratio,
                             efficiencies=eff)
    n = profile.count
    launch = KERNELS_PER_NODE * LAUNCH_S
    opt = (OPT_BYTES_PER_PARAM * max(trainable_params, 0.0) / (float(gpu["mem_bw_bytes_per_s"])
                                                               * eff.memory.get("optimizer", 0.8))
           + (launch if trainable_params > 0 else 0.0))
    busy = np.maximum(t_c, t_m)
    compute = t_c >= t_m
    parts = {"compute_s": float(np.sum(n * np.where(compute, t_c, 0.0))),
             "memory_s": float(np.sum(n * np.where(compute, 0.0, t_m))),
             "launch_s": float(n.sum() * launch), "optimizer_s": float(opt), "step_s": float(STEP_OVERHEAD_S)}
    parts["time_s"] = sum(parts.values())
    parts["kernels"] = float(n.sum())
    conv = profile.code == PRIOR_CLASSES.index("conv")
    gemm = np.isin(profile.code, [PRIOR_CLASSES.index("gemm"), PRIOR_CLASSES.index("attention")])
    parts["conv_memory_s"] = float(np.sum(n * np.where(conv & ~compute, busy, 0.0)))
    parts["conv_compute_s"] = float(np.sum(n * np.where(conv & compute, busy, 0.0)))
    parts["gemm_s"] = float(np.sum(n * np.where(gemm, busy, 0.0)))
    parts["vector_s"] = float(np.sum(n * np.where(~conv & ~gemm, busy, 0.0)))
    return parts


def _gemm_rate(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    from featurize.physics.prior import path_rate

    return path_rate(cols["peak_flops"], cols["tensor_precision"], cols["peak_fp32_flops"])


def _vector_rate(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    from featurize.physics.prior import path_rate

    return path_rate(cols["peak_fp32_flops"], np.zeros_like(cols["peak_fp32_flops"]), cols["peak_fp32_flops"])


def layered_arrays(profiles: Sequence[LayerProfile], gpu: Mapping[str, Any], *, batch_size: Any,
                   backward_ratio: Any, trainable_params: Any, efficiencies: Any = None) -> dict[str, np.ndarray]:
    """Per row: ``t_layers_s`` (per-layer prior time per training sample) and :data:`LAYER_FEATURE_NAMES`.

    ``gpu`` holds :func:`featurize.physics.prior.gpu_columns` values per row (arrays) or scalars; rows sharing a
    profile, GPU columns and batch are computed once."""
    n = len(profiles)
    cols = {k: np.broadcast_to(np.asarray(v, float), (n,)) for k, v in gpu.items()}
    bs = np.broadcast_to(np.asarray(batch_size, float), (n,))
    bwd = np.broadcast_to(np.asarray(backward_ratio, float), (n,))
    tp = np.broadcast_to(np.asarray(trainable_params, float), (n,))
    keys = sorted(cols)
    memo: dict[tuple, dict[str, float]] = {}
    out = np.zeros((n, 11))
    for i, prof in enumerate(profiles):
        key = (id(prof), bs[i], bwd[i], tp[i], *(cols[k][i] for k in keys))
        if key not in memo:
            memo[key] = step_times(prof, {k: cols[k][i] for k in keys}, batch_size=bs[i], backward_ratio=bwd[i],
                                   trainable_params=tp[i], efficiencies=efficiencies)
        p = memo[key]
        out[i] = [p["time_s"], p["compute_s"], p["memory_s"], p["launch_s"], p["optimizer_s"], p["step_s"],
                  p["kernels"], p["conv_compute_s"], p["conv_memory_s"], p["gemm_s"], p["vector_s"]]
    step = out[:, 0]
    busy = out[:, 1] + out[:, 2]
    fp32 = cols["peak_fp32_flops"]
    return {
        "t_layers_s": step / bs,
        "log_t_layers_s": np.log10(step / bs),
        "layer_compute_frac": out[:, 1] / step,
        "layer_memory_frac": out[:, 2] / step,
        "layer_launch_frac": out[:, 3] / step,
        "layer_optimizer_frac": out[:, 4] / step,
        "layer_step_frac": out[:, 5] / step,
        "layer_conv_compute_frac": out[:, 7] / step,
        "layer_conv_memory_frac": out[:, 8] / step,
        "layer_gemm_frac": out[:, 9] / step,
        "layer_vector_frac": out[:, 10] / step,
        "log_layer_kernel_time_s": np.log10(np.maximum(busy, 1e-12) / np.maximum(out[:, 6], 1.0)),
        "log_tensor_speedup": np.log2(_gemm_rate(cols) / _vector_rate(cols)),
        "log_bw_per_fp32_flop": np.log2(cols["mem_bw_bytes_per_s"] / fp32),
    }
