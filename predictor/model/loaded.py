"""The shipped PRE model: artifact loading/verification, manifest schema and vectorised inference.

Public entry points:

* :func:`load_model` — ``model_dir=None`` -> the shipped model (``joulecast_models`` package data,
  falling back to the repository's ``models/``). Verifies every file against ``SHA256SUMS`` (unknown files
  refused) -> the typed manifest schema (:mod:`predictor.model.artifact`) -> compatible package range -> parses the LightGBM text (:class:`TreeEnsemble`, numpy inference). Cached per directory (and file mtimes).
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
checksummed ``prior_spec.json`` (:mod:`predictor.model.spec`, verified at load); optional ``gpu_offsets`` (per-GPU calibration a
retrain learned) and ``local`` (the seen-configuration stage, :class:`LocalStage`: ``boosters`` ({name: {file}}),
``features``, ``applies_to`` ([gpu, precision, n_architectures]), ``measured`` ([gpu, precision, params,
flops_train] runs)); ``intervals.novelty`` names the novelty reference file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import ModelArtifactError
from featurize.layer_profile import (
    LAYER_FEATURE_NAMES,
    REFERENCE_FEATURE_NAMES,
)
from featurize.physics.prior import FEATURE_NAMES
from predictor.model.artifact import stamp, validate_manifest, verify
from predictor.model.rows import as_rows, group_measured
from predictor.model.trees import TreeEnsemble, unique_rows

SCHEMA_VERSION = 1


MANIFEST = "manifest.json"


REQUIRED_KEYS = ("schema_version", "model_name", "model_version", "compatible_package", "design", "boosters",
                 "files", "features", "intervals")


DESIGNS = {"time_power": ("time", "power"), "energy": ("energy",)}


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
    tree = Path(__file__).resolve().parents[2] / "models"
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
        precs = as_rows(precisions, len(gpu_names), "precision").astype(str)
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
    """The model's :class:`predictor.model.spec.PriorSpec` (``prior_spec.json``), verified against the running code."""
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
        raise ModelArtifactError(f"{where}: manifest lacks {missing}; regenerate it with `python -m training_data.build_model`.")
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
    from predictor.model.spec import verify_spec

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
