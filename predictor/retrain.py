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
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import SchemaError
from featurize.types import PRECISIONS
from predictor.publish import publication, publish
from predictor.training import CALIBRATE_COL
from predictor.units import parse_quantity, row_label, units_hint

REQUIRED_COLUMNS: tuple[str, ...] = ("model", "gpu", "batch_size", "samples_per_epoch", "epochs", "energy_j")
OPTIONAL_COLUMNS: dict[str, Any] = {
    "val_samples": 0,
    "precision": "fp32",
    "time_s": float("nan"),
    "frozen": "",
    "power_limit_w": float("nan"),
    "architecture": "",
    "scope": "gpu_nvml",
    "run_id": "",
}
USER_SOURCE = "user"
SUMMARY_KEY = "retrain"
MAX_AUTO_USER_WEIGHT = 50.0
NEW_ROW_COL = "_retrain_new_row"  # marks this call's user rows while evaluating; dropped before fitting


# ----------------------------------------------------------------------------------------------- loading


def load_measurements(measurements: Any) -> tuple[pd.DataFrame, str, Path | None]:
    """``(table, origin, base_dir)`` from a CSV/Parquet path or a DataFrame; origin names it in errors."""
    if isinstance(measurements, pd.DataFrame):
        return measurements.copy(), "measurements DataFrame", None
    if not isinstance(measurements, (str, os.PathLike)):
        raise SchemaError(
            f"measurements must be a CSV/Parquet path or a pandas DataFrame, "
            f"got {type(measurements).__name__}"
        )
    path = Path(measurements).expanduser()
    if path.is_dir():
        raise SchemaError(f"measurements {str(path)!r} is a directory; give the CSV/Parquet file of your runs")
    if not path.is_file():
        raise SchemaError(f"measurements file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, keep_default_na=True)
    except Exception as err:  # pandas/pyarrow raise many types for unreadable files
        raise SchemaError(
            f"{path}: cannot read it as {'Parquet' if path.suffix == '.parquet' else 'CSV'} "
            f"({type(err).__name__}: {err}); give a CSV with a header row or a Parquet file"
        ) from err
    return df, str(path), path.resolve().parent


# -------------------------------------------------------------------------------------------- validation


def _row_label(origin: str, idx: int, is_file: bool) -> str:
    return row_label(origin, idx, is_file and origin.lower().endswith(".csv"))


def _numeric(
    df: pd.DataFrame,
    col: str,
    origin: str,
    is_file: bool,
    *,
    integer: bool,
    positive: bool,
    allow_zero: bool = False,
    allow_nan: bool = False,
) -> pd.Series:
    raw_col = df[col]
    if pd.api.types.is_numeric_dtype(raw_col) and not pd.api.types.is_bool_dtype(raw_col):
        values = raw_col.astype("float64")  # what parse_quantity gives each numeric cell, at once
    else:
        values = pd.Series([parse_quantity(v, col) for v in raw_col], index=df.index, dtype="float64")
    arr = values.to_numpy()
    with np.errstate(invalid="ignore"):
        flagged = ~np.isfinite(arr)
        if positive:
            flagged |= (arr < 0) | ((arr == 0) if not allow_zero else False)
        if integer:
            flagged |= np.isfinite(arr) & (arr != np.floor(arr))
    if allow_nan and flagged.any():
        empty = raw_col.isna().to_numpy() | raw_col.astype(str).str.strip().eq("").to_numpy()
        flagged &= ~(np.isnan(arr) & empty)
    for idx in np.flatnonzero(flagged):  # only the rows that break a rule: the first one raises
        _check_cell(raw_col.iloc[idx], float(arr[idx]), col, _row_label(origin, int(idx), is_file),
                    integer=integer, positive=positive, allow_zero=allow_zero, allow_nan=allow_nan)
    return values


def _check_cell(raw: Any, val: float, col: str, where: str, *, integer: bool, positive: bool, allow_zero: bool,
                allow_nan: bool) -> None:
    """Raise the :class:`SchemaError` for one cell of :func:`_numeric` that breaks its column's rules."""
    if isinstance(val, float) and math.isnan(val):
        if allow_nan and (
            raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() == ""
        ):
            return
        raise SchemaError(
            f"{where}, column '{col}': {raw!r} is not a number"
            + (" (NaN/empty is not allowed)" if not allow_nan else "")
            + f"; give a plain number{units_hint(col)}"
        )
    if not math.isfinite(val):
        raise SchemaError(f"{where}, column '{col}': {raw!r} is not finite")
    if positive and (val < 0 or (val == 0 and not allow_zero)):
        raise SchemaError(f"{where}, column '{col}': {raw!r} must be {'>= 0' if allow_zero else '> 0'}")
    if integer and val != int(val):
        raise SchemaError(f"{where}, column '{col}': {raw!r} must be a whole number")


def delimiter_hint(columns: Any) -> str:
    """" ... use commas" when a table read as CSV came out as one column holding another delimiter."""
    cols = [str(c) for c in columns]
    for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
        if len(cols) == 1 and sep in cols[0]:
            return (f". The file looks {name}-delimited ({sep!r}): joulecast reads comma-separated CSV; save it "
                    "with commas as the delimiter")
    return ""


def validate_measurements(
    df: pd.DataFrame, *, origin: str = "measurements", base_dir: Path | None = None, check_files: bool = True
) -> pd.DataFrame:
    """Check the user's run table and return it normalised (optional columns filled, GPU names canonical).

    Raises:
        SchemaError: naming the origin, the column and the row: missing columns, non-numeric / NaN /
            non-positive values, unknown GPU names (with close matches), unknown precisions, missing graph
            files, exact duplicate rows.
    """
    is_file = origin.lower().endswith(".csv")  # CSV rows also get their line number
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"{origin}: expected a table, got {type(df).__name__}")
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{origin}: missing required column(s) {missing}. A measurement table needs "
            f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)}); "
            f"found {list(df.columns)}{delimiter_hint(df.columns)}"
        )
    if len(df) == 0:
        raise SchemaError(f"{origin}: the table has no rows; add at least one measured run")
    df = df.reset_index(drop=True)
    for col, default in OPTIONAL_COLUMNS.items():
        if col not in df.columns:
            df[col] = default
    for col in ("frozen", "architecture", "scope", "run_id"):
        df[col] = _text_column(df[col])
    df["scope"] = df["scope"].replace("", OPTIONAL_COLUMNS["scope"])

    df["energy_j"] = _numeric(df, "energy_j", origin, is_file, integer=False, positive=True)
    df["batch_size"] = _numeric(df, "batch_size", origin, is_file, integer=True, positive=True).astype(
        "int64"
    )
    df["samples_per_epoch"] = _numeric(
        df, "samples_per_epoch", origin, is_file, integer=True, positive=True
    ).astype("int64")
    df["epochs"] = _numeric(df, "epochs", origin, is_file, integer=False, positive=True).astype(float)
    df["val_samples"] = _numeric(
        df.fillna({"val_samples": 0}),
        "val_samples",
        origin,
        is_file,
        integer=True,
        positive=True,
        allow_zero=True,
    ).astype("int64")
    df["time_s"] = _numeric(df, "time_s", origin, is_file, integer=False, positive=True, allow_nan=True)
    df["power_limit_w"] = _numeric(
        df, "power_limit_w", origin, is_file, integer=False, positive=True, allow_nan=True
    )

    precisions = df["precision"].fillna("fp32").astype(str).str.strip().str.lower()
    for idx in np.flatnonzero(~precisions.isin(PRECISIONS).to_numpy()):
        prec = precisions.iloc[idx]
        if prec not in PRECISIONS:
            raise SchemaError(
                f"{_row_label(origin, idx, is_file)}, column 'precision': {prec!r} is not one of "
                f"{', '.join(PRECISIONS)}"
            )
    df["precision"] = precisions

    df["gpu"] = _resolve_gpus(df["gpu"], origin, is_file)
    df["model"] = _resolve_models(df["model"], origin, is_file, base_dir, check_files)
    stems = {m: Path(m).stem for m in dict.fromkeys(df["model"])}
    df["architecture"] = [a or stems[m] for a, m in zip(df["architecture"], df["model"])]

    body = df.drop(columns=["run_id"])
    dup = body.duplicated(keep="first")
    if dup.any():
        idx = int(np.flatnonzero(dup.to_numpy())[0])
        same = np.flatnonzero(body.duplicated(keep=False).to_numpy())  # candidates for the row it repeats
        key = "|".join(map(str, body.iloc[idx]))
        first = int(next(i for i in same if "|".join(map(str, body.iloc[i])) == key))
        raise SchemaError(
            f"{_row_label(origin, idx, is_file)} duplicates {_row_label(origin, first, is_file).split(': ')[-1]} "
            f"(every column but run_id "
            f"equal; {int(dup.sum())} duplicate row(s) in all); remove the repeated rows"
        )
    return df


def _text_column(values: pd.Series) -> pd.Series:
    """Cells as stripped text; missing cells (None / NaN) as ``""``."""
    text = values.astype(object).where(values.notna(), "")
    return text.map(str).str.strip()


def _resolve_gpus(values: pd.Series, origin: str, is_file: bool) -> list[str]:
    from featurize import UnknownGPUError, lookup_gpu

    memo: dict[str, str] = {}
    out = []
    for idx, raw in enumerate(values):
        name = "" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw).strip()
        if not name:
            raise SchemaError(f"{_row_label(origin, idx, is_file)}, column 'gpu': empty GPU name")
        if name not in memo:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # an alias resolving to a default variant is fine here
                    memo[name] = lookup_gpu(name).name
            except UnknownGPUError as err:
                raise SchemaError(f"{_row_label(origin, idx, is_file)}, column 'gpu': {err}") from err
        out.append(memo[name])
    return out


def _resolve_models(
    values: pd.Series, origin: str, is_file: bool, base_dir: Path | None, check_files: bool
) -> list[str]:
    out = []
    memo: dict[Any, str] = {}  # a run table names a few graphs many times: each is resolved once
    for idx, raw in enumerate(values):
        if raw in memo:
            out.append(memo[raw])
            continue
        text = "" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw).strip()
        if not text:
            raise SchemaError(f"{_row_label(origin, idx, is_file)}, column 'model': empty graph path")
        path = Path(text).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if check_files and not path.is_file():
            raise SchemaError(
                f"{_row_label(origin, idx, is_file)}, column 'model': graph file {text!r} not found"
                + (f" (relative paths resolve against {base_dir})" if base_dir else "")
                + "; give the path of the .onnx file the run trained"
            )
        if isinstance(raw, str):
            memo[raw] = str(path)
        out.append(str(path))
    return out


# ------------------------------------------------------------------------------------------ featurizing


def _frozen_list(text: str) -> list[str] | None:
    parts = [p.strip() for p in str(text).split(";") if p.strip()]
    return parts or None


def featurize_measurements(
    df: pd.DataFrame, *, origin: str = "measurements", n_jobs: int = 1, limits: Any = None
) -> pd.DataFrame:
    """Graph features (``g_<key>`` columns) for every validated row; each distinct graph config once, in isolated
    worker processes under ``limits`` (:class:`~predictor.isolation.Limits`; None = the defaults of
    ``predict_many``), so that a graph that hangs or exhausts memory is an error naming its row.

    Raises:
        SchemaError: a graph that cannot be read or featurized, naming the file and the first row using it.
    """
    from predictor.batch import featurize_isolated
    from predictor.isolation import Limits

    keys = list(zip(df["model"], df["batch_size"].astype(int), df["precision"], df["frozen"]))
    distinct = list(dict.fromkeys(keys))
    jobs = [(m, {"batch_size": int(b), "precision": p, "frozen": _frozen_list(f)}) for m, b, p, f in distinct]
    done = dict(item for item in featurize_isolated(jobs, n_jobs=n_jobs, limits=limits or Limits()) if item)
    results = [done[i] for i in range(len(jobs))]
    by_key = {}
    for key, res in zip(distinct, results):
        if "error" in res:
            row = keys.index(key)
            raise SchemaError(
                f"{row_label(origin, row, origin.lower().endswith('.csv'))}, column 'model': graph {key[0]!r} cannot "
                "be featurized "
                f"({res['error']}); fix or replace the file"
            )
        by_key[key] = res["features"]
    feats = pd.DataFrame([by_key[k] for k in keys], index=df.index)
    return feats.rename(columns={c: f"g_{c}" for c in feats.columns})


def to_training_rows(df: pd.DataFrame, gfeats: pd.DataFrame) -> pd.DataFrame:
    """Validated user runs + graph features -> rows in the training-table schema (``source = "user"``)."""
    equiv = df["samples_per_epoch"] + df["val_samples"] * gfeats["g_flops_forward"] / gfeats["g_flops_train"]
    e_epoch = df["energy_j"] / df["epochs"]
    t_epoch = df["time_s"] / df["epochs"]
    rows = pd.DataFrame(
        {
            "source": USER_SOURCE,
            "run_id": [r or f"user-{i}" for i, r in enumerate(df["run_id"])],
            "gpu": df["gpu"],
            "architecture": df["architecture"],
            "group_arch": df["architecture"],
            "model": df["model"],
            "input_shape": "",
            "batch_size": df["batch_size"].astype("int64"),
            "samples_per_epoch": df["samples_per_epoch"].astype("int64"),
            "val_samples": df["val_samples"].astype("int64"),
            "epochs": df["epochs"].astype(float),
            "precision": df["precision"],
            "frozen": df["frozen"],
            "trainable_fraction": gfeats["g_trainable_params"]
            / gfeats["g_params"].where(gfeats["g_params"] > 0),
            "power_limit_w": df["power_limit_w"].astype(float),
            "energy_per_epoch_j": e_epoch,
            "time_per_epoch_s": t_epoch,
            "avg_power_w": df["energy_j"] / df["time_s"],
            "energy_per_sample_j": e_epoch / equiv,
            "time_per_sample_s": t_epoch / equiv,
            "energy_j": df["energy_j"].astype(float),
            "time_s": df["time_s"].astype(float),
            "scope": df["scope"],
            "phase": "all",
            "notes": "user measurement (joulecast retrain)",
            "power_reliable": True,  # the user's own meter: its power trains the power booster
        },
        index=df.index,
    )
    return pd.concat([rows, gfeats], axis=1).reset_index(drop=True)


PLAUSIBLE_RATIO = 100.0
"""A run whose energy is more than this factor off the base model's forecast is refused: a unit slip (kWh or Wh in
the joules column), a per-epoch figure where the whole-run total belongs, or a multi-GPU total."""


def check_plausible(user_rows: pd.DataFrame, reference: Any, origin: str) -> None:
    """Refuse runs no GPU can have produced: an average power (energy_j / time_s) above the most the card can be
    set to draw, or an energy more than :data:`PLAUSIBLE_RATIO` x off the ``reference`` model's forecast."""
    from featurize import lookup_gpu
    from featurize.physics import power_limit_range_w

    is_file = origin.lower().endswith(".csv")
    fix = ("energy_j must be the GPU energy of the whole run (all epochs) in joules (1 kWh = 3.6e6 J) and time_s "
           "its wall time in seconds, for one GPU")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specs = {g: lookup_gpu(g) for g in user_rows["gpu"].unique()}
    power = (user_rows["energy_j"] / user_rows["time_s"]).to_numpy(float)
    for idx, (g, w) in enumerate(zip(user_rows["gpu"], power)):
        top = power_limit_range_w(specs[g])[1]
        if np.isfinite(w) and w > top:
            raise SchemaError(f"{_row_label(origin, idx, is_file)}: energy_j / time_s = {w:,.0f} W average, more "
                              f"than {g} can draw (TDP {specs[g].tdp_w:g} W, highest settable limit {top:,.0f} W); "
                              f"{fix}")
    if reference is None:
        return
    pred = _reference_frame(user_rows, reference)["energy_per_sample_j"].to_numpy(float)
    ratio = user_rows["energy_per_sample_j"].to_numpy(float) / pred
    for idx, r in enumerate(ratio):
        if np.isfinite(r) and not 1.0 / PLAUSIBLE_RATIO <= r <= PLAUSIBLE_RATIO:
            e = float(user_rows["energy_j"].iloc[idx])
            raise SchemaError(f"{_row_label(origin, idx, is_file)}: energy_j = {e:.4g} J is {r:.3g}x the base "
                              f"model's forecast for this run ({e / r:.4g} J); {fix}")


def anchors_of(user_rows: pd.DataFrame) -> list[list[Any]]:
    """The user's runs as manifest ``anchors`` ([gpu, precision, batch, params, flops_train, time/sample s, W]):
    a prediction that repeats one of them (default power limit) returns what was measured
    (:func:`predictor.model.apply_anchors`)."""
    ok = ~np.isfinite(user_rows["power_limit_w"].to_numpy(float))
    rows = user_rows[ok]
    return [[str(g), str(p), float(b), float(par), float(fl), float(t), float(w)] for g, p, b, par, fl, t, w in zip(
        rows["gpu"], rows["precision"], rows["batch_size"], rows["g_params"], rows["g_flops_train"],
        rows["time_per_sample_s"], rows["avg_power_w"])]


def _measured_manifest(manifest: dict[str, Any], user_rows: pd.DataFrame) -> dict[str, Any]:
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
    new = _reference_frame(user_rows, unanchored)["energy_j"].to_numpy(float)
    old = _reference_frame(user_rows, base_model)["energy_j"].to_numpy(float)
    ratio = pd.Series(new / old, index=user_rows.index)
    return {str(g): float(ratio[user_rows["gpu"] == g].median()) for g in sorted(user_rows["gpu"].unique())}


def impute_time(user_rows: pd.DataFrame, reference: Any) -> tuple[pd.DataFrame, int]:
    """Fill time/power of rows measured without ``time_s`` so they can train the time and power boosters.

    Energy alone cannot say whether a GPU is slower or hungrier than predicted; the deviation from the
    ``reference`` model's energy is split evenly in log space: time = predicted time x sqrt(ratio),
    power = energy / time. Returns the rows and how many were imputed (noted in the manifest summary).
    """
    missing = ~np.isfinite(user_rows["time_s"].to_numpy(float))
    if not missing.any():
        return user_rows, 0
    rows = user_rows.copy()
    pred = _reference_frame(rows[missing], reference)
    ratio = rows.loc[missing, "energy_per_sample_j"].to_numpy() / pred["energy_per_sample_j"].to_numpy()
    t_ps = pred["time_per_sample_s"].to_numpy() * np.sqrt(ratio)
    equiv = (
        rows.loc[missing, "energy_per_epoch_j"].to_numpy()
        / rows.loc[missing, "energy_per_sample_j"].to_numpy()
    )
    rows.loc[missing, "time_per_sample_s"] = t_ps
    rows.loc[missing, "time_per_epoch_s"] = t_ps * equiv
    rows.loc[missing, "time_s"] = t_ps * equiv * rows.loc[missing, "epochs"].to_numpy()
    rows.loc[missing, "avg_power_w"] = rows.loc[missing, "energy_per_sample_j"].to_numpy() / t_ps
    rows.loc[missing, "notes"] = (
        rows.loc[missing, "notes"] + "; time_s not measured: time/power split imputed"
    )
    return rows, int(missing.sum())


# Columns of a user row that describe what was measured, not the run asked for: a forecast never reads them.
_MEASURED_COLUMNS = frozenset({
    "run_id", "energy_j", "time_s", "epochs", "energy_per_epoch_j", "time_per_epoch_s", "avg_power_w",
    "energy_per_sample_j", "time_per_sample_s", "notes", "scope", "phase", "source", "power_reliable", "sample_weight",
})


def _reference_frame(user_rows: pd.DataFrame, model: Any) -> pd.DataFrame:
    """:func:`_reference_frame_rows` of each distinct run configuration once (a 100k-row table repeats a few
    thousand), expanded back to one row per user row (``epochs`` 1)."""
    keys = [c for c in user_rows.columns if c not in _MEASURED_COLUMNS]
    codes = user_rows.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    if codes.max(initial=-1) + 1 >= 0.5 * len(user_rows):
        return _reference_frame_rows(user_rows, model)
    first = np.unique(codes, return_index=True)[1]  # position of each configuration's first row, by code
    distinct = _reference_frame_rows(user_rows.iloc[first], model)
    out = distinct.iloc[codes]
    out.index = user_rows.index
    return out


def _reference_frame_rows(user_rows: pd.DataFrame, model: Any) -> pd.DataFrame:
    from featurize import lookup_gpu
    from predictor.model import predict_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specs = {g: lookup_gpu(g) for g in user_rows["gpu"].unique()}
    return predict_frame(
        user_rows,
        [specs[g] for g in user_rows["gpu"]],
        batch_size=user_rows["batch_size"],
        samples_per_epoch=user_rows["samples_per_epoch"],
        epochs=1,
        val_samples=user_rows["val_samples"],
        precision=user_rows["precision"],
        power_limit_w=user_rows["power_limit_w"],
        model=model,
    )


def user_row_weight(
    base_table: pd.DataFrame | None, user_rows: pd.DataFrame, user_weight: float | str
) -> float:
    """Per-row weight multiplier for the user's rows (stored as the table's ``sample_weight`` column)."""
    from featurize.errors import InvalidInputError

    if user_weight != "auto":
        try:
            value = float(user_weight)
        except (TypeError, ValueError):
            value = float("nan")
        if not (math.isfinite(value) and value > 0):
            raise InvalidInputError(f"user_weight must be 'auto' or a number > 0, got {user_weight!r}")
        return value
    if base_table is None or len(base_table) == 0:
        return 1.0
    base_w = (
        base_table["sample_weight"]
        if "sample_weight" in base_table
        else pd.Series(1.0, index=base_table.index)
    )
    ratio = float(pd.to_numeric(base_w, errors="coerce").fillna(1.0).sum()) / max(len(user_rows), 1)
    return float(min(MAX_AUTO_USER_WEIGHT, max(1.0, ratio)))


def _table_sha256(table: pd.DataFrame) -> str:
    """A content hash of the table (columns in name order; each column's name, dtype and per-row value hashes):
    hashing per column is ~100x faster than hashing a CSV rendering of 100k rows."""
    import hashlib

    body = table.drop(columns=["table_sha256"], errors="ignore")
    h = hashlib.sha256()
    for col in sorted(body.columns):
        h.update(f"{col}|{body[col].dtype}|".encode())
        h.update(pd.util.hash_pandas_object(body[col], index=False).to_numpy().tobytes())
    return h.hexdigest()


def merge_tables(base: pd.DataFrame | None, user: pd.DataFrame) -> pd.DataFrame:
    """User rows appended to the base table (columns unioned); a fresh ``table_sha256`` over the result."""
    table = (
        user.copy()
        if base is None
        else pd.concat(
            [base.drop(columns=["table_sha256", NEW_ROW_COL], errors="ignore"), user],
            ignore_index=True,
            sort=False,
        )
    )
    table = table.drop(columns=[NEW_ROW_COL], errors="ignore")
    table["table_sha256"] = _table_sha256(table)
    return table


# ------------------------------------------------------------------------------------------- evaluating


def _ape_stats(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    ape = np.abs(np.asarray(pred, float) / np.asarray(true, float) - 1.0) * 100.0
    ratio = np.asarray(pred, float) / np.asarray(true, float)
    return {
        "n_rows": int(len(ape)),
        "median_ape": float(np.median(ape)),
        "p90_ape": float(np.percentile(ape, 90)),
        "median_pred_over_measured": float(np.median(ratio)),
    }


def base_model_error(user_rows: pd.DataFrame, model: Any) -> dict[str, float]:
    """Error of an existing model (the shipped one by default) on the user's rows (energy per epoch)."""
    pred = _reference_frame(user_rows, model)
    return _ape_stats(pred["energy_per_epoch_j"].to_numpy(), user_rows["energy_per_epoch_j"].to_numpy())


def user_grouped_cv(table: pd.DataFrame, *, seed: int = 0, n_folds: int = 5) -> dict[str, Any]:
    """Out-of-fold error of the retrained design on the user's rows, folds grouped by graph (architecture).

    Each fold trains on the whole base table + the other folds' user rows and predicts the held-out graphs,
    so the figure is what to expect for a new graph on the user's GPU(s).
    """
    from predictor.model import offset_terms
    from predictor.training import (
        CALIBRATE_COL,
        DEFAULT_FEATURES,
        PATH_COL,
        fit_all,
        predict_log_energy,
        prepare,
        sample_weights,
        stage_terms,
    )

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
    from predictor.model import log_residuals, measured_rows
    from predictor.training import DESIGNS, PATH_COL, _offset_table

    gpus = rows["_gpu_canonical"].astype(str).to_numpy()
    precs = rows[PATH_COL].astype(str).to_numpy()
    base = dataclasses.replace(model, manifest={**model.manifest, "gpu_offsets": {}})
    measured = measured_rows(model, gpus, precs, rows["g_params"].to_numpy(float), rows["g_flops_train"].to_numpy(float))
    pred = log_residuals(base, feats, gpus, precs, measured)
    names = DESIGNS[model.manifest["design"]]
    resid = {t: targets[t].to_numpy(float) - pred[t] for t in names}
    return _offset_table(resid, gpus, np.ones(len(rows), bool))


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
        pred[test] = _reference_frame(user_rows[test].reset_index(drop=True), fold_model)[
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
    from predictor.model import hash_file

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


def _read_base_table(base_table: Any) -> pd.DataFrame:
    """A training table given as a DataFrame or a Parquet/CSV path (``python -m training_data.build_table``)."""
    from featurize.errors import InvalidInputError
    from predictor.training import REQUIRED_COLUMNS as TABLE_COLUMNS
    from predictor.training import require_corrected

    if isinstance(base_table, pd.DataFrame):
        table = base_table.copy()
        where = "base_table"
    else:
        path = Path(base_table).expanduser()
        where = str(path)
        if not path.is_file():
            raise InvalidInputError(
                f"base table {path} not found; build it with `python -m training_data.build_table "
                "--shared ../shared/data` (writes training_data/table/training_table.parquet)"
            )
        try:
            table = pd.read_parquet(path) if path.suffix != ".csv" else pd.read_csv(path)
        except Exception as err:
            raise InvalidInputError(f"base table {path} is not a readable Parquet/CSV table ({err})") from err
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise InvalidInputError(
            f"{where} lacks training-table columns {missing}; pass the table written by "
            "`python -m training_data.build_table`"
        )
    require_corrected(table, where)
    return table


# -------------------------------------------------------------------------------------------- retraining


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
    from predictor.model import shipped_model_dir

    if base not in ("shipped", None, "none"):
        raise InvalidInputError(f"base must be 'shipped' or None, got {base!r}")
    base = None if base == "none" else base
    protected = [shipped_model_dir()] + ([Path(model_dir)] if model_dir is not None else [])
    # Output checks, the per-directory lock and stale-staging cleanup before any work (predictor.publish).
    with publication(out_dir, protected=protected, overwrite=overwrite) as (staging, out):
        return _retrain_staged(measurements, staging, out, base=base, overwrite=overwrite, seed=seed,
                               model_dir=model_dir, evaluate=evaluate, cv=cv, n_jobs=n_jobs,
                               user_weight=user_weight, base_table=base_table)


def _retrain_staged(measurements: Any, staging: Path, out: Path, *, base: str | None, overwrite: bool, seed: int,
                    model_dir: Any, evaluate: bool, cv: bool, n_jobs: int, user_weight: Any,
                    base_table: Any) -> Path:
    """:func:`retrain`'s work, inside its publication: writes under ``staging``, publishes to ``out``."""
    from featurize.errors import InvalidInputError
    from predictor.model import MANIFEST, load_model
    from predictor.training import fit_model

    # Cheap checks first: the measurements, then the graphs, then the base model.
    raw, origin, base_dir = load_measurements(measurements)
    runs = validate_measurements(raw, origin=origin, base_dir=base_dir)
    user_rows = to_training_rows(runs, featurize_measurements(runs, origin=origin, n_jobs=n_jobs))
    base_model = load_model(model_dir) if (base == "shipped" or model_dir is not None) else _try_shipped()
    if base_table is not None:
        if base is None:
            raise InvalidInputError("base_table= needs base='shipped' (base=None trains on your rows alone)")
        base_table = _read_base_table(base_table)
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
        return _calibrate_only(base_model, user_rows, out, staging, origin=origin, seed=seed, evaluate=evaluate,
                               n_imputed=n_imputed, overwrite=overwrite)
    weight = user_row_weight(base_table, user_rows, user_weight)
    user_rows = user_rows.assign(sample_weight=weight, **{CALIBRATE_COL: True})
    table = merge_tables(base_table, user_rows)

    summary = _summary(
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
    manifest = _measured_manifest(manifest, user_rows)
    summary["gpu_calibration"] = _gpu_calibration(manifest.get("gpu_offsets", {}))
    if base_model is not None:
        _set_effective(summary["gpu_calibration"], effective_factors(
            user_rows, base_model, dataclasses.replace(new_model, manifest=manifest)))
    manifest[SUMMARY_KEY] = summary
    manifest["model_name"] = f"{manifest['model_name']}-retrained"
    _seal_and_publish(new_dir, manifest, out, overwrite=overwrite)
    return out


def _gpu_calibration(offsets: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Offsets as factors per GPU (what the CLI prints)."""
    return {
        gpu: {"n_rows": int(o.get("n_rows", 0)),
              **{f"{k}_factor": round(math.exp(v), 4) for k, v in o.items() if k != "n_rows"},
              "energy_factor": round(math.exp(sum(v for k, v in o.items() if k != "n_rows")), 4)}
        for gpu, o in offsets.items()
    }


def _set_effective(calibration: dict[str, dict[str, float]], factors: dict[str, float]) -> None:
    """``energy_factor`` = what the forecasts of the user's runs move (not the product of the raw offsets, which
    the power cap and the anchors can override); the offsets' product stays as ``offset_energy_factor``."""
    for gpu, factor in factors.items():
        entry = calibration.setdefault(gpu, {"n_rows": 0})
        entry["offset_energy_factor"] = entry.get("energy_factor", 1.0)
        entry["energy_factor"] = round(factor, 4)


def _summary(origin: str, user_rows: pd.DataFrame, base_model: Any, *, base: str, mode: str, base_rows: int,
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


def _calibrate_only(base_model: Any, user_rows: pd.DataFrame, out: Path, staging: Path, *, origin: str, seed: int,
                    evaluate: bool, n_imputed: int, overwrite: bool) -> Path:
    """Retrain without a base table: the base boosters + per-GPU calibration offsets from the user's rows."""
    from predictor.training import prepare

    prepared = prepare(user_rows, efficiencies=base_model.layer_efficiencies())
    offsets = calibration_offsets(base_model, *prepared)
    summary = _summary(origin, user_rows, base_model, base="shipped", base_rows=0, seed=seed,
                       n_imputed=n_imputed, mode="calibration offsets (no base training table)")
    summary["gpu_calibration"] = _gpu_calibration(offsets)
    manifest = _measured_manifest(_calibrated_manifest(base_model.manifest, offsets, user_rows), user_rows)
    calibrated = dataclasses.replace(base_model, manifest=manifest)  # same boosters, new offsets and anchors
    _set_effective(summary["gpu_calibration"], effective_factors(user_rows, base_model, calibrated))
    if evaluate:
        summary["base_model_error_on_user_rows"] = base_model_error(user_rows, base_model)
        summary["new_model_grouped_cv_on_user_rows"] = calibration_cv(base_model, user_rows, prepared)
        summary["new_model_fit_error_on_user_rows"] = base_model_error(user_rows, calibrated)
    new_dir = _copy_boosters(base_model, manifest, staging / "model")
    manifest[SUMMARY_KEY] = summary
    _seal_and_publish(new_dir, manifest, out, overwrite=overwrite)
    return out


def _seal_and_publish(new_dir: Path, manifest: dict[str, Any], out: Path, *, overwrite: bool) -> None:
    """Write the final manifest and card into ``new_dir``, verify it loads, then move it to ``out``."""
    from predictor.model import MANIFEST, load_model
    from predictor.training import write_card

    (new_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_card(new_dir)
    load_model(new_dir)  # verify the finished directory before publishing it
    publish(new_dir, out, overwrite=overwrite)


def _try_shipped():
    """The shipped model for comparison, or None when it is not available (base=None needs no base)."""
    from featurize.errors import ModelArtifactError
    from predictor.model import load_model

    try:
        return load_model(None)
    except ModelArtifactError:
        return None


def read_retrain_summary(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``"retrain"`` section of a retrained model's manifest (empty for the shipped model), with its
    :func:`held_out_verdict` under ``"verdict"`` when both errors were measured."""
    from predictor.model import load_model

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
