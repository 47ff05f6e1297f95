"""Per-GPU calibration of a base model on a user's rows (the default retrain), its grouped evaluation, and the sealed
model directory it writes."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.model.publish import publish
from predictor.retraining.rows import NEW_ROW_COL, reference_frame
from predictor.stats import ape_pct

SUMMARY_KEY = "retrain"


def anchors_of(user_rows: pd.DataFrame) -> list[list[Any]]:
    """The user's runs as manifest ``anchors`` ([gpu, precision, batch, params, flops_train, time/sample s, W]):
    a prediction that repeats one of them (default power limit) returns what was measured
    (:func:`predictor.model.apply_anchors`)."""
    ok = ~np.isfinite(user_rows["power_limit_w"].to_numpy(float))
    rows = user_rows[ok]
    return [[str(g), str(p), float(b), float(par), float(fl), float(t), float(w)] for g, p, b, par, fl, t, w in zip(
        rows["gpu"], rows["precision"], rows["batch_size"], rows["g_params"], rows["g_flops_train"],
        rows["time_per_sample_s"], rows["avg_power_w"])]


def measured_manifest(manifest: dict[str, Any], user_rows: pd.DataFrame) -> dict[str, Any]:
    """``manifest`` with the user's runs as anchors and their (GPU, precision) pairs as calibrated."""
    manifest["anchors"] = [*manifest.get("anchors", []), *anchors_of(user_rows)]
    pairs = {tuple(p) for p in manifest.get("calibrated_pairs", [])} | set(zip(user_rows["gpu"], user_rows["precision"]))
    manifest["calibrated_pairs"] = sorted([str(g), str(p)] for g, p in pairs)
    manifest["gpus_seen"] = sorted(set(manifest.get("gpus_seen", [])) | set(user_rows["gpu"]))
    return manifest


def effective_factors(user_rows: pd.DataFrame, base_model: Any, new_model: Any) -> dict[str, float]:
    """Per GPU: median of new / base predicted energy over the user's run configurations, the measured runs
    themselves left out (anchors off): what the forecast of a new graph or batch on that GPU moves, the power cap
    and the seen-configuration stage included."""
    unanchored = dataclasses.replace(new_model, manifest={**new_model.manifest, "anchors": []})
    new = reference_frame(user_rows, unanchored)["energy_j"].to_numpy(float)
    old = reference_frame(user_rows, base_model)["energy_j"].to_numpy(float)
    ratio = pd.Series(new / old, index=user_rows.index)
    return {str(g): float(ratio[user_rows["gpu"] == g].median()) for g in sorted(user_rows["gpu"].unique())}


def _ape_stats(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    ape = ape_pct(pred, true)
    ratio = np.asarray(pred, float) / np.asarray(true, float)
    return {
        "n_rows": int(len(ape)),
        "median_ape": float(np.median(ape)),
        "p90_ape": float(np.percentile(ape, 90)),
        "median_pred_over_measured": float(np.median(ratio)),
    }


def base_model_error(user_rows: pd.DataFrame, model: Any) -> dict[str, float]:
    """Error of an existing model (the shipped one by default) on the user's rows (energy per epoch)."""
    pred = reference_frame(user_rows, model)
    return _ape_stats(pred["energy_per_epoch_j"].to_numpy(), user_rows["energy_per_epoch_j"].to_numpy())


def user_grouped_cv(table: pd.DataFrame, *, seed: int = 0, n_folds: int = 5) -> dict[str, Any]:
    """Out-of-fold error of the retrained design on the user's rows, folds grouped by graph (architecture).

    Each fold trains on the whole base table + the other folds' user rows and predicts the held-out graphs,
    so the figure is what to expect for a new graph on the user's GPU(s).
    """
    from predictor.fit.prepare import CALIBRATE_COL, PATH_COL, prepare
    from predictor.fit.rows import sample_weights
    from predictor.fit.stages import DEFAULT_FEATURES, fit_all, predict_log_energy, stage_terms
    from predictor.model.inference import offset_terms
    from predictor.time_model import RETRAIN_BOUND

    rows, feats, targets = prepare(table)
    user = rows[NEW_ROW_COL].fillna(False).astype(bool).to_numpy()
    groups = rows["group_arch"].astype(str).to_numpy()
    user_groups = sorted(set(groups[user]))
    k = min(n_folds, len(user_groups))
    if k < 2:
        return {"note": "fewer than 2 distinct user graphs: no grouped evaluation possible"}
    fold_of = {g: i % k for i, g in enumerate(user_groups)}
    w = sample_weights(rows)
    gpus = rows["_gpu_canonical"].astype(str).to_numpy()
    calibrate = (rows[CALIBRATE_COL].fillna(False).astype(bool).to_numpy() if CALIBRATE_COL in rows
                 else np.zeros(len(rows), bool))
    precs = rows[PATH_COL].astype(str).to_numpy()
    pred = np.full(len(rows), np.nan)
    for f in range(k):
        test = user & np.array([fold_of.get(g, -1) == f for g in groups])
        b, offsets, local = fit_all(feats[~test], targets[~test], w[~test], gpus[~test], precs[~test],
                                    groups[~test], calibrate[~test], features=list(DEFAULT_FEATURES), seed=seed,
                                    rows=rows[~test], time_params={"bound": RETRAIN_BOUND})
        extra = stage_terms(local, b, feats[test], gpus[test], precs[test], None)  # held-out graphs: never measured
        off = offset_terms(offsets, gpus[test], int(test.sum()), list(b))
        pred[test] = predict_log_energy(b, feats[test], list(DEFAULT_FEATURES), "time_power", extra=extra, outer=off)
    true = targets["energy_per_sample_j"].to_numpy()
    out = _ape_stats(np.exp(pred[user]), true[user])
    out.update(n_folds=k, grouped_by="graph (architecture)")
    return out


def calibration_offsets(model: Any, rows: pd.DataFrame, feats: pd.DataFrame,
                        targets: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per-GPU log offsets per booster that bring ``model`` onto the user's ``rows`` (prepared rows).

    The offset of a booster on a GPU is the shrunk mean log residual of its target over that GPU's rows
    (``training.OFFSET_PRIOR_ROWS`` pseudo-rows at zero), the same estimator :func:`fit_with_offsets`
    uses when a base table is available; the boosters themselves are kept as they are. The residual is
    taken against the base model's whole prediction (its seen-configuration stage included, on the pairs
    it covers) without any earlier offsets, which the new ones replace.
    """
    from predictor.fit.prepare import PATH_COL
    from predictor.fit.stages import offset_table
    from predictor.model.inference import log_residuals
    from predictor.model.loaded import DESIGNS
    from predictor.model.rows import measured_rows

    gpus = rows["_gpu_canonical"].astype(str).to_numpy()
    precs = rows[PATH_COL].astype(str).to_numpy()
    base = dataclasses.replace(model, manifest={**model.manifest, "gpu_offsets": {}})
    measured = measured_rows(model, gpus, precs, rows["g_params"].to_numpy(float), rows["g_flops_train"].to_numpy(float))
    pred = log_residuals(base, feats, gpus, precs, measured)
    names = DESIGNS[model.manifest["design"]]
    resid = {t: targets[t].to_numpy(float) - pred[t] for t in names}
    return offset_table(resid, gpus, np.ones(len(rows), bool))


def calibration_cv(model: Any, user_rows: pd.DataFrame, prepared: tuple, *,
                   n_folds: int = 5) -> dict[str, Any]:
    """Out-of-fold error of a calibration-only retrain on the user's rows, folds grouped by graph.

    ``prepared``: ``training.prepare(user_rows)`` (same rows, same order: validated energies are all > 0).
    Each fold learns the per-GPU offsets from the other folds' graphs and predicts the held-out ones, so the
    figure is what to expect for a new graph on the user's GPU(s).
    """
    user_rows = user_rows.reset_index(drop=True)
    rows, feats, targets = prepared
    groups = rows["model"].astype(str).to_numpy()
    uniq = sorted(set(groups))
    k = min(n_folds, len(uniq))
    if k < 2:
        return {"note": "fewer than 2 distinct user graphs: no grouped evaluation possible"}
    fold_of = {g: i % k for i, g in enumerate(uniq)}
    fold = np.array([fold_of[g] for g in groups])
    pred = np.full(len(rows), np.nan)
    for f in range(k):
        test = fold == f
        offs = calibration_offsets(model, rows[~test], feats[~test], targets[~test])
        fold_model = dataclasses.replace(model, manifest={**model.manifest, "gpu_offsets": offs})
        pred[test] = reference_frame(user_rows[test].reset_index(drop=True), fold_model)[
            "energy_per_sample_j"].to_numpy()
    out = _ape_stats(pred, targets["energy_per_sample_j"].to_numpy())
    out.update(n_folds=k, grouped_by="graph")
    return out


def _calibrated_manifest(base_manifest: dict[str, Any], offsets: dict[str, dict[str, float]],
                         user_rows: pd.DataFrame) -> dict[str, Any]:
    """The base manifest with the user's per-GPU offsets merged in (GPUs measured now replace earlier ones)."""
    manifest = json.loads(json.dumps(base_manifest))
    manifest["gpu_offsets"] = {**manifest.get("gpu_offsets", {}), **offsets}
    manifest["gpus_seen"] = sorted(set(manifest.get("gpus_seen", [])) | set(offsets))
    manifest["model_name"] = f"{manifest['model_name']}-retrained"
    manifest.pop(SUMMARY_KEY, None)
    manifest["calibration"] = {
        "method": "shipped boosters kept; per-GPU log offsets per booster = shrunk mean residual of the "
                  "user's rows (no base training table available)",
        "user_rows": int(len(user_rows)),
    }
    return manifest


def _copy_boosters(base_model: Any, manifest: dict[str, Any], dest: Path) -> Path:
    """``dest`` with the base model's booster files (and novelty reference); ``manifest["files"]`` set to their
    hashes."""
    from predictor.model.artifact import hash_file

    dest.mkdir(parents=True)
    manifest["files"] = {}
    names = [spec["file"] for spec in [*manifest["boosters"].values(),
                                       *manifest.get("local", {}).get("boosters", {}).values()]]
    names += [spec["file"] for spec in (manifest.get("time_model") or {}).get("class_boosters", {}).values()]
    names += [manifest["intervals"]["novelty"]["file"]] if "novelty" in manifest.get("intervals", {}) else []
    names += ["prior_spec.json"]  # the base's verified prior: the kept boosters were trained over it
    for name in names:
        shutil.copyfile(base_model.path / name, dest / name)
        manifest["files"][name] = hash_file(dest / name)
    return dest


def gpu_calibration(offsets: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Offsets as factors per GPU (what the CLI prints)."""
    return {
        gpu: {"n_rows": int(o.get("n_rows", 0)),
              **{f"{k}_factor": round(math.exp(v), 4) for k, v in o.items() if k != "n_rows"},
              "energy_factor": round(math.exp(sum(v for k, v in o.items() if k != "n_rows")), 4)}
        for gpu, o in offsets.items()
    }


def set_effective(calibration: dict[str, dict[str, float]], factors: dict[str, float]) -> None:
    """``energy_factor`` = what the forecasts of the user's runs move (not the product of the raw offsets, which
    the power cap and the anchors can override); the offsets' product stays as ``offset_energy_factor``."""
    for gpu, factor in factors.items():
        entry = calibration.setdefault(gpu, {"n_rows": 0})
        entry["offset_energy_factor"] = entry.get("energy_factor", 1.0)
        entry["energy_factor"] = round(factor, 4)


def summary_record(origin: str, user_rows: pd.DataFrame, base_model: Any, *, base: str, mode: str, base_rows: int,
             seed: int, n_imputed: int) -> dict[str, Any]:
    """The fields every retrain summary starts with (stored under ``"retrain"`` in the new manifest)."""
    return {
        "measurements": origin,
        "user_rows": int(len(user_rows)),
        "user_gpus": sorted(user_rows["gpu"].unique().tolist()),
        "user_graphs": int(user_rows["model"].nunique()),
        "base": base,
        "mode": mode,
        "base_model_version": base_model.version if base_model is not None else None,
        "base_rows": int(base_rows),
        "seed": seed,
        "rows_with_imputed_time": n_imputed,
    }


def calibrate_only(base_model: Any, user_rows: pd.DataFrame, out: Path, staging: Path, *, origin: str, seed: int,
                    evaluate: bool, n_imputed: int, overwrite: bool) -> Path:
    """Retrain without a base table: the base boosters + per-GPU calibration offsets from the user's rows."""
    from predictor.fit.prepare import prepare

    prepared = prepare(user_rows, efficiencies=base_model.layer_efficiencies())
    offsets = calibration_offsets(base_model, *prepared)
    summary = summary_record(origin, user_rows, base_model, base="shipped", base_rows=0, seed=seed,
                       n_imputed=n_imputed, mode="calibration offsets (no base training table)")
    summary["gpu_calibration"] = gpu_calibration(offsets)
    manifest = measured_manifest(_calibrated_manifest(base_model.manifest, offsets, user_rows), user_rows)
    calibrated = dataclasses.replace(base_model, manifest=manifest)  # same boosters, new offsets and anchors
    set_effective(summary["gpu_calibration"], effective_factors(user_rows, base_model, calibrated))
    if evaluate:
        summary["base_model_error_on_user_rows"] = base_model_error(user_rows, base_model)
        summary["new_model_grouped_cv_on_user_rows"] = calibration_cv(base_model, user_rows, prepared)
        summary["new_model_fit_error_on_user_rows"] = base_model_error(user_rows, calibrated)
    new_dir = _copy_boosters(base_model, manifest, staging / "model")
    manifest[SUMMARY_KEY] = summary
    seal_and_publish(new_dir, manifest, out, overwrite=overwrite)
    return out


def seal_and_publish(new_dir: Path, manifest: dict[str, Any], out: Path, *, overwrite: bool) -> None:
    """Write the final manifest and card into ``new_dir``, verify it loads, then move it to ``out``."""
    from predictor.card import write_card
    from predictor.model.loaded import MANIFEST, load_model

    (new_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_card(new_dir)
    load_model(new_dir)  # verify the finished directory before publishing it
    publish(new_dir, out, overwrite=overwrite)
