"""Fitting a model directory: stages, cross-validated metrics and intervals, the manifest, the model card and the
checksums, written atomically (:func:`fit_model`; ``retrain`` and the shipped model's regeneration call it)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.card import model_card
from predictor.conformal import (
    INTERVAL_FLOOR_LEVEL,
    INTERVAL_LEVEL,
    interval_halfwidth,
    measured_halfwidth,
    normalised_resid,
    novelty_stats,
)
from predictor.fit.boosters import LGB_PARAMS, MONOTONE, NUM_ROUNDS
from predictor.fit.cv import (
    DBGPU_FACTOR,
    EXTRAPOLATION_FACTOR,
    UNSUPPORTED_OPS_FACTOR,
    cross_validate_all,
    grouped_cv,
    time_interval,
    time_params_for,
)
from predictor.fit.prepare import (
    CALIBRATE_COL,
    PATH_COL,
    RAM_EST_W,
    measured_configurations,
    power_not_used,
    prepare,
)
from predictor.fit.rows import ROW_FOLDS, TABLE_REBUILD, sample_weights
from predictor.fit.stages import (
    DEFAULT_FEATURES,
    LOCAL_PARAMS,
    LOCAL_ROUNDS,
    booster_features,
    fit_all,
    shrink_for,
)
from predictor.model.artifact import hash_file, seal
from predictor.model.intervals import Z90
from predictor.model.loaded import (
    MANIFEST,
    NOVELTY_K,
    NOVELTY_SCALE,
    NOVELTY_SCALE_MAX,
    SCHEMA_VERSION,
    LocalStage,
    load_model,
)
from predictor.model.rows import MEASURED_RTOL
from predictor.model.spec import current_spec, write_spec

COMPATIBLE_PACKAGE = ">=0.1,<0.2"


MODEL_NAME = "joulecast-pre"


MODEL_VERSION = "0.2.0"
"""Model release; the artifact's ``model_version`` is this + the training table's hash. 0.2.0: tensor-core
efficiency in the prior, Mayaki power not used, no AI/weights-over-L2 features, per-GPU retrain offsets."""


def _sources_with_licenses(rows: pd.DataFrame, base_manifest: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    known = {s["source"]: s for s in (base_manifest or {}).get("sources", [])}
    known.update(SOURCE_INFO)
    out = []
    for src, n in rows["source"].value_counts().sort_index().items():
        info = dict(known.get(src, {"license": "user-supplied (see retrain input)", "citation": ""}))
        info.update(source=str(src), rows=int(n))
        out.append(info)
    return out


SOURCE_INFO: dict[str, dict[str, str]] = {
    "seaa2023": {"license": "CC BY 4.0 (data)",
                     "citation": "del Rey et al., SEAA 2023; github.com/GAISSA-UPC/seaa2023_ect @ 6fa5af6"},
    "delrey": {"license": "CC BY 4.0 (data), Apache-2.0 (code)",
                             "citation": "del Rey et al., arXiv 2307.05520; github.com/GAISSA-UPC/"
                                         "dl-training-energy-estimation @ 44113e6"},
    "zeus": {"license": "Apache-2.0", "citation": "You et al., Zeus, NSDI 2023; github.com/ml-energy/zeus @ 75a8b93"},
    "mayaki": {"license": "MIT", "citation": "Mayaki & Charpenay, ECAI 2025; "
                                 "github.com/MansMayaki/MLEnergyConsumption @ 609d971"},
    "lambda_dlbench": {"license": "no licence file: only the measured figures are used",
                       "citation": "Lambda GPU benchmarks; github.com/lambdal/deeplearning-benchmark @ aa5addb"},
    "nvidia_dle": {"license": "BSD-3-Clause / Apache-2.0 (per model folder)",
                   "citation": "NVIDIA DeepLearningExamples READMEs; github.com/NVIDIA/DeepLearningExamples @ 729963d"},
    "mlperf_training": {"license": "Apache-2.0",
                        "citation": "MLCommons MLPerf Training results v3.0-v5.0; github.com/mlcommons/training_results_v*"},
}


def _ranges(rows: pd.DataFrame, feats: pd.DataFrame) -> dict[str, list[float]]:
    out = {}
    for col in ("g_flops_train", "g_params", "batch_size"):
        if col in rows:
            v = rows[col].astype(float)
            out[col] = [float(v.min()), float(v.max())]
    years = rows["_launch_year"].dropna()
    if len(years):
        out["launch_year"] = [int(years.min()), int(years.max())]
    for col in feats.columns:
        out[f"feature:{col}"] = [float(feats[col].min()), float(feats[col].max())]
    return out


def fit_model(table: pd.DataFrame, out_dir: Path, *, seed: int = 0, base_manifest: Mapping[str, Any] | None = None,
              overwrite: bool = False, design: str | None = None, gpu_specs: Any = None, run_cv: bool = True,
              features: list[str] | None = None, provenance: str | None = None,
              write_table: bool = True, layer_efficiencies: Any = None, time_params: Any = None,
              nested_cv: bool = True) -> Path:
    """Fit on ``table`` and write a complete model directory atomically; returns its path.

    Writes ``time.txt``/``power.txt`` (or ``energy.txt``), ``manifest.json``, ``MODEL_CARD.md`` and, with
    ``write_table=True``, ``training_table.parquet`` (the table, so a later ``retrain`` can merge with it).
    The shipped model is written with ``write_table=False``: its table is rows of the public measurements
    in ``../shared/data``, which the project never redistributes; the manifest keeps the table's hash, row
    count and how to rebuild it. Refuses to replace an existing directory unless ``overwrite=True``.
    ``run_cv=False`` skips grouped CV (metrics then come from ``base_manifest`` and the interval half-width
    too) for fast retrains. ``time_params``: the time model's hyper-parameters (None: chosen on grouped folds of
    the public rows with ``run_cv``, else the base model's; the reported CV chooses them inside each outer fold,
    unless ``nested_cv`` is False: then every outer fold uses the ones chosen on all rows, ~6x quicker, stated).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True or choose a new directory.")
    # a retrain keeps its base model's design (so GPUs the user did not measure stay put)
    design = design or (base_manifest or {}).get("design") or "time_power"
    features = list(features or DEFAULT_FEATURES)
    prepared = prepare(table, gpu_specs=gpu_specs, efficiencies=layer_efficiencies)
    rows, feats, targets = prepared
    calibrate = (rows[CALIBRATE_COL].fillna(False).astype(bool).to_numpy() if CALIBRATE_COL in rows
                 else np.zeros(len(rows), bool))
    shrink = 1.0 if calibrate.any() else shrink_for(rows)
    tp = time_params or time_params_for(rows, feats, targets, seed=seed, base_manifest=base_manifest,
                                        select=run_cv and not calibrate.any() and design == "time_power")
    if calibrate.any():  # the user's own runs: follow them (predictor.time_model.RETRAIN_BOUND)
        from predictor.time_model import RETRAIN_BOUND

        tp = {**tp, "bound": RETRAIN_BOUND}
    boosters, gpu_offsets, local = fit_all(feats, targets, sample_weights(rows),
                                           rows["_gpu_canonical"].astype(str).to_numpy(),
                                           rows[PATH_COL].astype(str).to_numpy(),
                                           rows["group_arch"].astype(str).to_numpy(), calibrate,
                                           design=design, features=features, seed=seed, shrink=shrink,
                                           rows=rows, time_params=tp)

    metrics: dict[str, Any] = dict((base_manifest or {}).get("metrics", {}))
    base_tm = (base_manifest or {}).get("time_model") or {}
    time_iv = dict(base_tm.get("interval") or {})
    if run_cv:
        from predictor.time_select import nested_selector

        nested = nested_selector(seed) if time_params is None and nested_cv and not calibrate.any() else tp
        cv = cross_validate_all(table, design=design, seed=seed, prepared=prepared, features=features, shrink=shrink,
                                time_params=nested)
        metrics["cv"] = {g: res["metrics"] for g, res in cv.items()}
        rows_cv = grouped_cv(table, ROW_FOLDS, design=design, seed=seed, prepared=prepared, features=features,
                             shrink=shrink, time_params=tp)
        metrics["cv_rows"] = rows_cv["metrics"]
        measured_hw = measured_halfwidth(rows_cv["oof"])
        halfwidth = interval_halfwidth({g: normalised_resid(res["oof"]) for g, res in cv.items()})
        oof_coverage = {g: round(float(np.mean(normalised_resid(res["oof"]) <= halfwidth)), 3)
                        for g, res in cv.items()}
        measured_hw = min(measured_hw, halfwidth)  # a measured configuration is never less certain
        if design == "time_power":
            time_iv = time_interval(cv, rows_cv)
            metrics["time_kept_out"] = dict(rows.attrs.get("kept_out", {}))
            metrics["time_params_nested"] = callable(nested)
    else:
        halfwidth = float((base_manifest or {}).get("intervals", {}).get("log_halfwidth", np.log(1.6)))
        oof_coverage = dict((base_manifest or {}).get("intervals", {}).get("coverage_on_oof", {}))
        measured_hw = (base_manifest or {}).get("intervals", {}).get("measured_log_halfwidth")

    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp", dir=parent))
    try:
        files = {}
        for name, booster in boosters.items():
            (tmp / f"{name}.txt").write_text(booster.model_to_string(num_iteration=-1), encoding="utf-8")
        for impl, booster in getattr(boosters.get("time"), "class_boosters", {}).items():
            (tmp / f"time_{impl}.txt").write_text(booster.model_to_string(num_iteration=-1), encoding="utf-8")
        for name, booster in (local.boosters.items() if local else ()):
            (tmp / f"local_{name}.txt").write_text(booster.model_to_string(num_iteration=-1), encoding="utf-8")
        if run_cv and design == "time_power":
            from predictor.card import TIME_PLOT, time_plot

            time_plot(cv, tmp / TIME_PLOT)
        x_all = feats[features].to_numpy(float)
        nov_mean, nov_std = novelty_stats(x_all)
        write_reference(tmp / NOVELTY_FILE, (x_all - nov_mean) / nov_std, features)
        write_spec(tmp, current_spec(efficiencies=layer_efficiencies,
                                     source_corrections=table.attrs.get("source_corrections", {})))
        if write_table:
            table.reset_index(drop=True).to_parquet(tmp / "training_table.parquet", index=False)
        for f in sorted(p.name for p in tmp.iterdir()):
            files[f] = hash_file(tmp / f)
        table_hash = str(table["table_sha256"].iloc[0]) if "table_sha256" in table and len(table) else ""
        table_entry: dict[str, Any] = {"table_sha256": table_hash, "rows": int(len(rows)),
                                       **({"provenance": provenance} if provenance else {})}
        if write_table:
            table_entry.update(file="training_table.parquet", sha256=files["training_table.parquet"])
        else:
            table_entry["rebuild"] = TABLE_REBUILD
        base_version = MODEL_VERSION
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "model_name": MODEL_NAME,
            "model_version": f"{base_version}+{(table_hash or _files_digest(files))[:8]}",
            "compatible_package": COMPATIBLE_PACKAGE,
            "design": design,
            "boosters": {name: booster_entry(name, boosters[name], features, shrink) for name in boosters},
            **({"time_model": _time_entry(boosters["time"], tp, time_iv, rows)} if "time" in boosters else {}),
            "files": files,
            "features": features,
            "gpu_offsets": gpu_offsets,
            **({"local": local_manifest(local, rows)} if local else {}),
            "power_not_used": power_not_used(rows),
            "lgbm": {"params": {k: v for k, v in LGB_PARAMS.items()}, "num_rounds": NUM_ROUNDS, "seed": seed},
            "shrink": shrink,
            "training_table": table_entry,
            "sources": _sources_with_licenses(rows, base_manifest),
            "gpus_seen": sorted(set(rows["_gpu_canonical"].astype(str))),
            "architectures_seen": sorted(rows["group_arch"].astype(str).unique().tolist()),
            "precisions_seen": sorted(rows["precision"].astype(str).unique().tolist()),
            "feature_ranges": _ranges(rows, feats),
            "intervals": {
                "level": INTERVAL_LEVEL,
                "method": "split conformal on |log residual| / min(1 + scale x novelty, cap) of out-of-fold energy "
                          "predictions pooled over the leave-one-GPU-out, leave-one-architecture-out and "
                          "leave-one-source-out folds (each row's novelty measured against its training fold), "
                          f"raised so that each of the three keeps {INTERVAL_FLOOR_LEVEL:.0%} coverage",
                "coverage_on_oof": oof_coverage,
                "log_halfwidth": halfwidth,
                "log_sigma": halfwidth / Z90,
                **({"measured_log_halfwidth": float(measured_hw),
                    "measured_method": "a measured configuration (GPU, precision and a graph with the params and "
                                       "training FLOPs of a measured run, within "
                                       f"{MEASURED_RTOL:.0%}): split conformal on the random row folds' "
                                       f"out-of-fold residuals ({INTERVAL_LEVEL:.0%} pooled, each source at least "
                                       f"{INTERVAL_FLOOR_LEVEL:.0%})"}
                   if measured_hw is not None and local else {}),
                "novelty": {"file": NOVELTY_FILE, "features": features, "mean": nov_mean.tolist(),
                            "std": nov_std.tolist(), "k": NOVELTY_K, "scale": NOVELTY_SCALE,
                            "cap": NOVELTY_SCALE_MAX},
                "dbgpu_factor": DBGPU_FACTOR,
                "unsupported_ops_factor": UNSUPPORTED_OPS_FACTOR,
                "extrapolation_factor": EXTRAPOLATION_FACTOR,
            },
            "scope": {"predicts": "gpu_nvml (GPU board power only)", "ram_est_correction_w": RAM_EST_W},
            "constants": _physics_constants(),
            "metrics": metrics,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / "MODEL_CARD.md").write_text(model_card(json.loads((tmp / MANIFEST).read_text())), encoding="utf-8")
        seal(tmp)  # SHA256SUMS over every file, the manifest included
        load_model(tmp)  # verify before publishing
        if out_dir.exists():
            _replace_dir(tmp, out_dir)
            seal(out_dir)  # the merged directory: the new model plus the files other tools own there
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _time_entry(fit: Any, params: Any, interval: Any, rows: pd.DataFrame) -> dict[str, Any]:
    from predictor.time_model import time_model_entry

    return time_model_entry(fit, params, interval, rows)


def booster_entry(name: str, booster: Any, features: list[str], shrink: float) -> dict[str, Any]:
    """The manifest entry of one main booster: file, target, transform, monotone constraints, features."""
    from predictor.time_model import TIME_MONOTONE

    if name == "time":
        return {"file": "time.txt", "target": "log(time_per_sample_s / t_layers_s)",
                "transform": f"bound x tanh(({shrink} x raw score + implementation offset) / bound) (time_model); "
                             "exp(); multiply by the per-layer prior t_layers_s",
                "monotone": dict(TIME_MONOTONE), "features": booster_features(name, features)}
    return {"file": f"{name}.txt",
            "target": {"power": "log(avg_power_w / power_prior_w(time_per_sample_s)): idle + (cap - idle) x "
                                "sqrt(roofline busy time / the measured time; the predicted one at prediction)",
                       "energy": "log(energy_per_sample_j / (p_phys_w * t_phys_s))"}[name],
            "transform": f"exp({shrink} x raw score); multiply by the prior",
            "monotone": {f: c for f, c in MONOTONE.get(name, {}).items() if f in features}}


NOVELTY_FILE = "novelty_reference.csv"
"""The training rows' standardised main features (configuration descriptors: no measured quantity)."""


def write_reference(path: Path, x: np.ndarray, features: list[str]) -> None:
    """The novelty reference as CSV text (header = feature names, 5 decimals)."""
    np.savetxt(path, x, delimiter=",", fmt="%.5f", header=",".join(features), comments="")


def local_manifest(local: LocalStage, rows: pd.DataFrame) -> dict[str, Any]:
    """The manifest entry of the seen-configuration stage (its files are ``local_<target>.txt``) with the
    measured configurations that get the narrower interval."""
    return {
        "boosters": {name: {"file": f"local_{name}.txt"} for name in local.boosters},
        "features": list(local.features),
        "applies_to": sorted([[g, p, n] for (g, p), n in local.applies_to.items()]),
        "measured": measured_configurations(rows),
        "target": "the main model's log residual (boosters x shrink + gpu_offsets), per booster target",
        "lgbm": {"params": dict(LOCAL_PARAMS), "num_rounds": LOCAL_ROUNDS},
    }


def _files_digest(files: Mapping[str, str]) -> str:
    """One sha256 over the artifact files' hashes (a version suffix when the table has no hash)."""
    return hashlib.sha256("".join(f"{k}={v};" for k, v in sorted(files.items())).encode()).hexdigest()


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Swap ``tmp`` into ``out_dir``, keeping files other tools own there (examples/, REFINE.md, ...)."""
    for p in tmp.iterdir():
        os.replace(p, out_dir / p.name)
    tmp.rmdir()


def _physics_constants() -> dict[str, float]:
    from featurize.physics import prior as physics

    return {k: getattr(physics, k) for k in ("LAUNCH_S", "KERNELS_PER_NODE", "OPT_BYTES_PER_PARAM", "STEP_OVERHEAD_S",
                                             "COMPUTE_EFFICIENCY",
                                             "TENSOR_CORE_EFFICIENCY", "REFERENCE_YEAR")}
