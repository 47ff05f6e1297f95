"""Retraining on the user's own measurements: validated runs -> a new, complete model directory.

Public entry points: :func:`retrain` (measurements -> new model dir, atomically),
:func:`validate_measurements` (the user-facing run-table check), :func:`read_retrain_summary` (the evaluation
stored in a retrained model's manifest) and :data:`REQUIRED_COLUMNS` / :data:`OPTIONAL_COLUMNS` (the minimal
user schema; ``training_data.schema`` mirrors these -- ``predictor`` never imports ``training_data``).

User rows (one measured training run each)::

    model, gpu, batch_size, samples_per_epoch, epochs, energy_j      (required)
    val_samples=0, precision=fp32, time_s, frozen='', power_limit_w, architecture, scope=gpu_nvml  (optional)

``model`` is an ``.onnx`` path (relative paths resolve against the CSV's folder). Energies are GPU energy of
the whole run in joules; validation passes count forward only (the training-table convention:
``energy_per_sample_j = energy_per_epoch_j / (samples_per_epoch + val_samples x flops_fwd / flops_train)``).
The shipped model is never modified: the new model goes to ``out_dir`` via a temporary directory + rename.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.fit.prepare import CALIBRATE_COL
from predictor.model.publish import publication
from predictor.retraining.calibrate import (
    SUMMARY_KEY,
    base_model_error,
    calibrate_only,
    effective_factors,
    gpu_calibration,
    measured_manifest,
    seal_and_publish,
    set_effective,
    summary_record,
    user_grouped_cv,
)
from predictor.retraining.measurements import load_measurements, validate_measurements
from predictor.retraining.rows import (
    NEW_ROW_COL,
    check_plausible,
    featurize_measurements,
    impute_time,
    merge_tables,
    read_base_table,
    to_training_rows,
    user_row_weight,
)


def retrain(
    measurements: Any,
    *,
    out_dir: str | os.PathLike,
    base: str | None = "shipped",
    overwrite: bool = False,
    seed: int = 0,
    model_dir: str | os.PathLike | None = None,
    evaluate: bool = True,
    cv: bool = False,
    n_jobs: int = 1,
    user_weight: float | str = "auto",
    base_table: Any = None,
) -> Path:
    """Fit a new model on the user's measured runs and write it.

    Args:
        measurements: CSV/Parquet path or DataFrame with :data:`REQUIRED_COLUMNS` (+ optional columns).
        out_dir: the new model directory; written atomically (temp dir + rename).
        base: ``"shipped"`` builds on the base model (default: the shipped one): with a training table
            (``base_table``, or one stored in the base model's directory by an earlier retrain) the user's
            rows are merged with it and the boosters refitted; without one (the shipped model ships no
            table: its rows are the public measurements) the base boosters are kept and each GPU the user
            measured gets a calibration offset. ``None`` / ``"none"`` trains on the user's rows alone.
        base_table: Parquet/CSV path or DataFrame of the base training table, e.g. the one
            ``python -m training_data.build_table --shared ../shared/data`` writes.
        overwrite: replace an existing ``out_dir``. seed: LightGBM seeds (deterministic, single-threaded).
        model_dir: the base model (default: the shipped one); it is read, never written.
        evaluate: grouped out-of-fold error on the user's rows (a few extra fits) next to the base model's.
        cv: also run the full leave-one-GPU/architecture/source-out CV for the manifest metrics (slow).
        user_weight: LightGBM sample weight of each user row relative to a base row; ``"auto"`` makes the
            user's rows weigh together as much as the base table, capped at :data:`MAX_AUTO_USER_WEIGHT`
            (your own hardware should win over public data about other GPUs).

    Returns:
        The path of the new model directory; ``predict(..., model_dir=path)`` uses it. The evaluation is in
        its ``manifest.json`` under ``"retrain"`` (see :func:`read_retrain_summary`).

    Raises:
        SchemaError: invalid measurements (see :func:`validate_measurements`), unreadable graphs.
        InvalidInputError: ``out_dir`` exists (without ``overwrite``) or is the base model directory.
    """
    from featurize.errors import InvalidInputError
    from predictor.model.loaded import shipped_model_dir

    if base not in ("shipped", None, "none"):
        raise InvalidInputError(f"base must be 'shipped' or None, got {base!r}")
    base = None if base == "none" else base
    protected = [shipped_model_dir()] + ([Path(model_dir)] if model_dir is not None else [])
    # Output checks, the per-directory lock and stale-staging cleanup before any work (predictor.model.publish).
    with publication(out_dir, protected=protected, overwrite=overwrite) as (staging, out):
        return _retrain_staged(measurements, staging, out, base=base, overwrite=overwrite, seed=seed,
                               model_dir=model_dir, evaluate=evaluate, cv=cv, n_jobs=n_jobs,
                               user_weight=user_weight, base_table=base_table)


def _retrain_staged(measurements: Any, staging: Path, out: Path, *, base: str | None, overwrite: bool, seed: int,
                    model_dir: Any, evaluate: bool, cv: bool, n_jobs: int, user_weight: Any,
                    base_table: Any) -> Path:
    """:func:`retrain`'s work, inside its publication: writes under ``staging``, publishes to ``out``."""
    from featurize.errors import InvalidInputError
    from predictor.fit.write import fit_model
    from predictor.model.loaded import MANIFEST, load_model

    # Cheap checks first: the measurements, then the graphs, then the base model.
    raw, origin, base_dir = load_measurements(measurements)
    runs = validate_measurements(raw, origin=origin, base_dir=base_dir)
    user_rows = to_training_rows(runs, featurize_measurements(runs, origin=origin, n_jobs=n_jobs))
    base_model = load_model(model_dir) if (base == "shipped" or model_dir is not None) else _try_shipped()
    if base_table is not None:
        if base is None:
            raise InvalidInputError("base_table= needs base='shipped' (base=None trains on your rows alone)")
        base_table = read_base_table(base_table)
    elif base == "shipped":
        stored = base_model.manifest.get("training_table", {}).get("file")
        if stored and (base_model.path / stored).is_file():
            base_table = pd.read_parquet(base_model.path / stored)
    reference = base_model if base_model is not None else None
    check_plausible(user_rows, reference, origin)
    n_imputed = 0
    if reference is not None:
        user_rows, n_imputed = impute_time(user_rows, reference)
    elif not np.isfinite(user_rows["time_s"].to_numpy(float)).all():
        raise InvalidInputError(
            "some runs have no time_s and no base model is available to split their energy "
            "into time and power; add a time_s column or install the shipped model"
        )
    if base == "shipped" and base_table is None:
        return calibrate_only(base_model, user_rows, out, staging, origin=origin, seed=seed, evaluate=evaluate,
                               n_imputed=n_imputed, overwrite=overwrite)
    weight = user_row_weight(base_table, user_rows, user_weight)
    user_rows = user_rows.assign(sample_weight=weight, **{CALIBRATE_COL: True})
    table = merge_tables(base_table, user_rows)

    summary = summary_record(
        origin, user_rows, base_model, base="shipped" if base == "shipped" else "none",
        mode="refit on base table + user rows" if base_table is not None else "refit on user rows",
        base_rows=0 if base_table is None else len(base_table), seed=seed, n_imputed=n_imputed,
    )
    summary["user_row_weight"] = weight
    if evaluate and base_model is not None:
        summary["base_model_error_on_user_rows"] = base_model_error(user_rows, base_model)
    if evaluate:
        flagged = user_rows.assign(**{NEW_ROW_COL: True})
        eval_table = flagged if base_table is None else pd.concat([base_table, flagged], ignore_index=True)
        summary["new_model_grouped_cv_on_user_rows"] = user_grouped_cv(eval_table, seed=seed)

    summary["cv_run"] = bool(cv)  # else the manifest's grouped-CV metrics are the base model's, carried over
    new_dir = fit_model(
        table,
        staging / "model",
        seed=seed,
        base_manifest=base_model.manifest if base_model is not None else None,
        run_cv=cv,
        layer_efficiencies=base_model.layer_efficiencies() if base_model is not None else None,
    )
    new_model = load_model(new_dir)
    if evaluate:
        summary["new_model_fit_error_on_user_rows"] = base_model_error(user_rows, new_model)
    mpath = new_dir / MANIFEST
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    manifest = measured_manifest(manifest, user_rows)
    summary["gpu_calibration"] = gpu_calibration(manifest.get("gpu_offsets", {}))
    if base_model is not None:
        set_effective(summary["gpu_calibration"], effective_factors(
            user_rows, base_model, dataclasses.replace(new_model, manifest=manifest)))
    manifest[SUMMARY_KEY] = summary
    manifest["model_name"] = f"{manifest['model_name']}-retrained"
    seal_and_publish(new_dir, manifest, out, overwrite=overwrite)
    return out


def _try_shipped():
    """The shipped model for comparison, or None when it is not available (base=None needs no base)."""
    from featurize.errors import ModelArtifactError
    from predictor.model.loaded import load_model

    try:
        return load_model(None)
    except ModelArtifactError:
        return None


def read_retrain_summary(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``"retrain"`` section of a retrained model's manifest (empty for the shipped model), with its
    :func:`held_out_verdict` under ``"verdict"`` when both errors were measured."""
    from predictor.model.loaded import load_model

    summary = dict(load_model(model_dir).manifest.get(SUMMARY_KEY, {}))
    verdict = held_out_verdict(summary)
    return {**summary, "verdict": verdict} if verdict else summary


def held_out_verdict(summary: dict[str, Any]) -> dict[str, Any] | None:
    """Which model to use on graphs like the user's: the retrained model's median error on held-out graphs (grouped
    CV on the user's runs) against the base model's on the same runs; the base when the retrained one is worse."""
    base = (summary.get("base_model_error_on_user_rows") or {}).get("median_ape")
    new = (summary.get("new_model_grouped_cv_on_user_rows") or {}).get("median_ape")
    if base is None or new is None:
        return None
    worse = float(new) > float(base)
    note = (f"on held-out graphs the retrained model is {'worse' if worse else 'better'} than the base model "
            f"({float(new):.1f} % vs {float(base):.1f} % median error)"
            + ("; keep using the base model (leave out --model-dir / model_dir=), or measure more graphs and "
               "retrain" if worse else ""))
    return {"use": "base" if worse else "retrained", "retrained_median_ape": float(new),
            "base_median_ape": float(base), "note": note}
