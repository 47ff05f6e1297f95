"""Cache features (the BUTTER-E finding): where each layer's working set fits, and DRAM traffic.

Public entry point: :func:`cache_features` (``GraphFeatures`` + ``GPUSpec`` or
``{"l1_bytes": ..., "l2_bytes": ...}`` -> ``dict[str, float]``).

Rules, per node of ``features.nodes`` (working set = weight + input + output bytes at the training
batch size):

* ``frac_flops_l1``: share of forward FLOPs in nodes whose working set fits the total L1/shared
  memory (all SMs together); ``frac_flops_l2``: fits L2 but not L1; ``frac_flops_dram``: fits neither.
* ``dram_bytes_per_sample``: a node whose working set exceeds L2 moves its whole working set through
  DRAM. A node that fits moves only compulsory traffic: its weights, plus each activation input that
  is not resident. Residency is an LRU approximation: an input written by an earlier fitting node is
  resident if the bytes written since then plus its own size fit in L2 (outputs of spilling nodes
  are never resident; view ops such as Reshape pass residency through). Write-backs of evicted
  tensors are not counted. Total divided by the batch size.
"""

from __future__ import annotations

from typing import Mapping

from featurize.errors import InvalidInputError
from featurize.types import GPUSpec, GraphFeatures

__all__ = ["cache_features", "CACHE_FEATURE_KEYS"]

CACHE_FEATURE_KEYS: tuple[str, ...] = ("frac_flops_l1", "frac_flops_l2", "frac_flops_dram", "dram_bytes_per_sample")


def _sizes(cache: GPUSpec | Mapping[str, float]) -> tuple[float, float]:
    sizes = cache.cache_sizes() if isinstance(cache, GPUSpec) else cache
    try:
        l1, l2 = float(sizes["l1_bytes"]), float(sizes["l2_bytes"])
    except (KeyError, TypeError, ValueError) as err:
        raise InvalidInputError(
            "cache must be a GPUSpec or a dict {'l1_bytes': ..., 'l2_bytes': ...} of cache sizes in bytes."
        ) from err
    if l1 < 0 or l2 <= 0:
        raise InvalidInputError(f"cache sizes must be positive (got l1_bytes={l1}, l2_bytes={l2}).")
    return l1, l2


def cache_features(features: GraphFeatures, cache: GPUSpec | Mapping[str, float]) -> dict[str, float]:
    """Cache-fit fractions of forward FLOPs and the estimated DRAM bytes per sample."""
    l1, l2 = _sizes(cache)
    df = features.nodes
    if df is None or len(df) == 0:
        raise InvalidInputError("features has no per-node table; pass the result of featurize().")
    ws = df["working_set_bytes"].tolist()
    flops = df["flops"].tolist()
    total = sum(flops)
    f_l1 = sum(f for f, w in zip(flops, ws) if w <= l1)
    f_l2 = sum(f for f, w in zip(flops, ws) if l1 < w <= l2)
    f_dram = sum(f for f, w in zip(flops, ws) if w > l2)
    dram = _dram_bytes(df, l2)
    return {
        "frac_flops_l1": f_l1 / total if total else 0.0,
        "frac_flops_l2": f_l2 / total if total else 0.0,
        "frac_flops_dram": f_dram / total if total else 0.0,
        "dram_bytes_per_sample": dram / features.batch_size,
    }


def _dram_bytes(df, l2: float) -> float:
    clock = 0.0  # bytes written so far by fitting nodes
    written_at: dict[str, float] = {}
    dram = 0.0
    rows = zip(
        df["op_class"].tolist(),
        df["working_set_bytes"].tolist(),
        df["weight_bytes"].tolist(),
        df["act_inputs"].tolist(),
        df["act_input_bytes"].tolist(),
        df["outputs"].tolist(),
    )
    for cls, ws, wb, ins, in_bytes, outs in rows:
        if cls == "constant":
            continue
        if cls == "zero":  # views alias their input
            if ins and ins[0] in written_at:
                for o in outs:
                    written_at[o] = written_at[ins[0]]
            continue
        if ws > l2:
            dram += ws
            continue
        dram += wb
        for name, b in zip(ins, in_bytes):
            t = written_at.get(name)
            if t is None or clock - t + b > l2:
                dram += b
        out_bytes = ws - wb - sum(in_bytes)
        clock += max(out_bytes, 0.0)
        for o in outs:
            written_at[o] = clock
    return dram
