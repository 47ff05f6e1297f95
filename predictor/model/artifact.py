"""Integrity of a model directory: a checksum list over every file, and a typed manifest schema.

Public entry points:

* :func:`seal` -- write ``SHA256SUMS`` (``<sha256>  <relative path>`` per file, sorted, every file of the
  directory and its subdirectories, ``manifest.json`` included) after a model directory is written.
* :func:`verify` -- at load: the list must be in its canonical form (so any changed byte of the list itself
  is caught: it either breaks the form or changes a listed hash or name), every listed file must exist with
  its hash, and no other file may be there (an ``evil.pkl`` beside the model is refused, with its name).
* :func:`validate_manifest` -- the manifest against :class:`Manifest` (pydantic, strict JSON types, ranges):
  wrong types and absurd values are refused naming the file and the key.

The only files not listed are Python's bytecode caches (``__pycache__/*.pyc``, written by the interpreter
for the shipped model's package ``__init__.py``). ``python -m predictor.model.artifact seal DIR`` re-seals a
directory after a deliberate edit (e.g. ``bench/accuracy.py`` rewriting ``models/``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from featurize.errors import ModelArtifactError

__all__ = ["CHECKSUMS", "seal", "verify", "checksum_lines", "validate_manifest", "Manifest", "hash_file"]

CHECKSUMS = "SHA256SUMS"
_LINE = re.compile(r"([0-9a-f]{64})  ([^\x00-\x1f/][^\x00-\x1f]*)")
_FIX = ("reinstall joulecast or regenerate the model directory (`joulecast retrain`); after a deliberate edit, "
        "re-seal it with `python -m predictor.model.artifact seal DIR`")


def hash_file(path: Path) -> str:
    """sha256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ignored(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) >= 2 and parts[-2] == "__pycache__" and parts[-1].endswith(".pyc")


def _files(model_dir: Path) -> list[str]:
    """Relative POSIX paths of every entry under ``model_dir`` but the list itself and bytecode caches.
    Links and other non-regular entries are returned too, so :func:`verify` refuses them."""
    out = []
    for root, dirs, names in os.walk(model_dir):  # does not descend into linked directories
        base = Path(root).relative_to(model_dir)
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        for name in [*names, *links]:
            rel = (base / name).as_posix()
            if rel != CHECKSUMS and not _ignored(rel):
                out.append(rel)
    return sorted(out)


def stamp(model_dir: Path) -> tuple:
    """(path, mtime, size) of every entry :func:`verify` looks at: a cache key that changes when a file
    is added, removed or rewritten."""
    out = []
    for rel in [CHECKSUMS, *_files(model_dir)]:
        try:
            st = os.lstat(model_dir / rel)
        except OSError:
            continue
        out.append((rel, st.st_mtime_ns, st.st_size))
    return tuple(out)


def checksum_lines(model_dir: Path) -> str:
    """The canonical ``SHA256SUMS`` text of ``model_dir`` as it is now."""
    model_dir = Path(model_dir)
    return "".join(f"{hash_file(model_dir / rel)}  {rel}\n" for rel in _files(model_dir))


def seal(model_dir: Path | str) -> Path:
    """Write ``model_dir/SHA256SUMS`` covering every file there now; returns its path."""
    model_dir = Path(model_dir)
    path = model_dir / CHECKSUMS
    tmp = model_dir / f".{CHECKSUMS}.tmp"
    tmp.write_text(checksum_lines(model_dir), encoding="ascii")
    os.replace(tmp, path)
    return path


def _parse(text: str, where: Path) -> dict[str, str]:
    listed: dict[str, str] = {}
    for i, line in enumerate(text.split("\n")[:-1], 1):
        m = _LINE.fullmatch(line)
        if m is None or ".." in m.group(2).split("/"):
            raise ModelArtifactError(f"{where}: line {i} is not '<sha256>  <relative path>' ({line[:80]!r}); "
                                     f"the checksum list is corrupt: {_FIX}.")
        listed[m.group(2)] = m.group(1)
    canonical = "".join(f"{h}  {rel}\n" for rel, h in sorted(listed.items()))
    if text != canonical or not listed:
        raise ModelArtifactError(f"{where}: not in canonical form (sorted lines, each ending in a newline, no "
                                 f"duplicates); the checksum list was edited: {_FIX}.")
    return listed


def verify(model_dir: Path | str) -> dict[str, str]:
    """Check ``model_dir`` against its ``SHA256SUMS`` (see the module docstring); returns the list
    (``{relative path: sha256}``) or raises ModelArtifactError."""
    model_dir = Path(model_dir)
    where = model_dir / CHECKSUMS
    try:
        raw = where.read_bytes()
    except FileNotFoundError as err:
        raise ModelArtifactError(f"{model_dir}: no {CHECKSUMS}, so its files cannot be verified: {_FIX}.") from err
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as err:
        raise ModelArtifactError(f"{where}: not ASCII text; the checksum list is corrupt: {_FIX}.") from err
    listed = _parse(text, where)
    present = _files(model_dir)
    extra = [rel for rel in present if rel not in listed]
    if extra:
        raise ModelArtifactError(f"{model_dir}: file(s) {extra[:5]} are not in {CHECKSUMS}; a model directory "
                                 "holds only what joulecast wrote (never pickles or code added beside it): remove "
                                 f"them, or {_FIX}.")
    for rel, expected in listed.items():
        path = model_dir / rel
        if not path.is_file() or path.is_symlink():
            raise ModelArtifactError(f"{model_dir}: listed file {rel} is missing or not a regular file: {_FIX}.")
        actual = hash_file(path)
        if actual != expected:
            raise ModelArtifactError(f"{path}: sha256 {actual[:12]}... does not match {CHECKSUMS} "
                                     f"({expected[:12]}...): the file was modified or corrupted; {_FIX}.")
    return listed


# -------------------------------------------------------------------------------------------- manifest


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


Finite = Field(allow_inf_nan=False)
_FILE = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"  # a plain file name in the directory: no path, no leading dot
_SHA = r"^[0-9a-f]{64}$"


class BoosterSpec(_Open):
    file: str = Field(pattern=_FILE)
    monotone: dict[str, Literal[-1, 0, 1]] = {}


class Novelty(_Open):
    file: str = Field(pattern=_FILE)
    features: list[str] = Field(min_length=1)
    mean: list[float]
    std: list[float]
    k: int = Field(ge=1, le=1000)
    scale: float = Field(ge=0, le=10, allow_inf_nan=False)
    cap: float = Field(ge=1, le=100, allow_inf_nan=False)

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, v: list[float]) -> list[float]:
        if not all(math.isfinite(x) for x in v):
            raise ValueError("every value must be finite")
        return v


class Intervals(_Open):
    level: float = Field(gt=0.5, lt=1)
    log_halfwidth: float = Field(gt=0, le=5, allow_inf_nan=False)
    log_sigma: float = Field(ge=0, le=5, allow_inf_nan=False)
    measured_log_halfwidth: float | None = Field(default=None, gt=0, le=5, allow_inf_nan=False)
    coverage_on_oof: dict[str, float] = {}
    dbgpu_factor: float = Field(ge=1, le=10, allow_inf_nan=False)
    extrapolation_factor: float = Field(ge=1, le=10, allow_inf_nan=False)
    unsupported_ops_factor: float = Field(default=1.3, ge=1, le=10, allow_inf_nan=False)
    novelty: Novelty | None = None


class TimeInterval(_Open):
    level: float = Field(gt=0.5, lt=1)
    log_halfwidth: float = Field(gt=0, le=5, allow_inf_nan=False)
    measured_log_halfwidth: float | None = Field(default=None, gt=0, le=5, allow_inf_nan=False)


class TimeModelSpec(_Open):
    """``time_model``: the time booster's residual is over the per-layer prior, bounded, plus an implementation
    offset (:mod:`predictor.time_model`)."""

    prior: Literal["t_layers_s"]
    bound: float = Field(gt=0, le=5, allow_inf_nan=False)
    implementation_offsets: dict[str, float]
    default_implementation: str = "reference"
    interval: TimeInterval | None = None

    @field_validator("implementation_offsets")
    @classmethod
    def _offsets(cls, v: dict[str, float]) -> dict[str, float]:
        if "reference" not in v or not all(math.isfinite(x) and abs(x) <= 5 for x in v.values()):
            raise ValueError("needs 'reference', every log offset finite and within +-5")
        return v


class LocalSpec(_Open):
    boosters: dict[str, BoosterSpec]
    features: list[str] = Field(min_length=1)
    applies_to: list[tuple[str, str, int]]
    measured: list[tuple[str, str, float, float]] = []


class Manifest(_Strict):
    """Typed ``manifest.json``: every key inference reads has a type and a range; descriptive sections
    (metrics, sources, provenance) are free-form mappings."""

    schema_version: Literal[1]
    model_name: str = Field(min_length=1, max_length=200)
    model_version: str = Field(min_length=1, max_length=100)
    compatible_package: str = Field(min_length=1, max_length=100)
    design: Literal["time_power", "energy"]
    boosters: dict[str, BoosterSpec] = Field(min_length=1)
    files: dict[str, str]
    features: list[str] = Field(min_length=1)
    intervals: Intervals
    shrink: float = Field(default=1.0, ge=0, le=1, allow_inf_nan=False)
    gpu_offsets: dict[str, dict[str, float]] = {}
    local: LocalSpec | None = None
    time_model: TimeModelSpec | None = None
    feature_ranges: dict[str, tuple[float, float]] = {}
    gpus_seen: list[str] = []
    precisions_seen: list[str] = []
    architectures_seen: list[str] = []
    constants: dict[str, float] = {}
    spec: dict[str, Any] | None = None  # physics constants saved with the model (issue 17)
    training_table: dict[str, Any] = {}
    sources: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    lgbm: dict[str, Any] = {}
    power_not_used: dict[str, str] = {}
    scope: dict[str, Any] = {}
    calibration: dict[str, Any] = {}
    retrain: dict[str, Any] = {}
    anchors: list[tuple[str, str, float, float, float, float, float]] = []  # retrain: the user's measured runs
    calibrated_pairs: list[tuple[str, str]] = []  # retrain: (GPU, precision) pairs calibrated on the user's runs

    @field_validator("anchors")
    @classmethod
    def _anchors(cls, v: list[tuple]) -> list[tuple]:
        for row in v:  # [gpu, precision, batch, params, flops_train, time per sample s, avg power W]
            if not all(math.isfinite(x) and x > 0 for x in row[2:]):
                raise ValueError(f"anchor {list(row)}: batch, params, FLOPs, time and power must be finite and > 0")
        return v

    @field_validator("files")
    @classmethod
    def _hashes(cls, v: dict[str, str]) -> dict[str, str]:
        for name, digest in v.items():
            if not re.fullmatch(_FILE, name) or not re.fullmatch(_SHA, digest):
                raise ValueError(f"entry {name!r}: {digest!r} must be a plain file name -> 64 hex digits")
        return v

    @field_validator("gpu_offsets")
    @classmethod
    def _offsets(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for gpu, offs in v.items():
            for key, x in offs.items():
                if not math.isfinite(x) or (key != "n_rows" and abs(x) > 5):
                    raise ValueError(f"{gpu}.{key} = {x}: a log offset must be finite and within +-5 (x148)")
        return v

    @field_validator("constants")
    @classmethod
    def _constants(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, x in v.items() if not math.isfinite(x) or x < 0]
        if bad:
            raise ValueError(f"constants {bad} must be finite and >= 0")
        return v


def validate_manifest(text: str | bytes, where: Path) -> dict[str, Any]:
    """Parse and validate ``manifest.json`` text; returns the plain dict or raises ModelArtifactError
    naming the file and the key (``intervals.log_halfwidth``) with what was wrong."""
    try:
        Manifest.model_validate_json(text, strict=True)
    except ValidationError as err:
        problems = []
        for e in err.errors()[:5]:
            key = ".".join(str(p) for p in e["loc"]) or "(top level)"
            got = "" if e["type"] in ("missing", "json_invalid") else f" (got {e.get('input')!r:.60})"
            problems.append(f"key {key!r}: {e['msg']}{got}")
        raise ModelArtifactError(f"{where}: invalid manifest: " + "; ".join(problems) + f". {_FIX}.") from None
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    """``python -m predictor.model.artifact seal|verify DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("seal", "verify"):
        print("usage: python -m predictor.model.artifact seal|verify MODEL_DIR", file=sys.stderr)
        return 2
    if args[0] == "seal":
        print(f"wrote {seal(args[1])}")
    else:
        verify(args[1])
        print(f"{args[1]}: every file matches {CHECKSUMS}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
