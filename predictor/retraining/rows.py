"""A user's runs as training rows: featurized, their time imputed where missing, weighted, checked for plausibility
against the base model, and merged with a base table."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import SchemaError
from featurize.graph.weights import frozen_from_text
from predictor.retraining.measurements import cell_row_label
from predictor.run import training_sample_equivalents
from predictor.table_hash import table_sha256
from predictor.units import row_label

USER_SOURCE = "user"


MAX_AUTO_USER_WEIGHT = 50.0


NEW_ROW_COL = "_retrain_new_row"  # marks this call's user rows while evaluating; dropped before fitting


def featurize_measurements(
    df: pd.DataFrame, *, origin: str = "measurements", n_jobs: int = 1, limits: Any = None
) -> pd.DataFrame:
    """Graph features (``g_<key>`` columns) for every validated row; each distinct graph config once, in isolated
    worker processes under ``limits`` (:class:`~predictor.batch.isolation.Limits`; None = the defaults of
    ``predict_many``), so that a graph that hangs or exhausts memory is an error naming its row.

    Raises:
        SchemaError: a graph that cannot be read or featurized, naming the file and the first row using it.
    """
    from predictor.batch.isolation import Limits
    from predictor.batch.many import featurize_isolated

    keys = list(zip(df["model"], df["batch_size"].astype(int), df["precision"], df["frozen"]))
    distinct = list(dict.fromkeys(keys))
    jobs = [(m, {"batch_size": int(b), "precision": p, "frozen": frozen_from_text(f)}) for m, b, p, f in distinct]
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
    equiv = training_sample_equivalents(df["samples_per_epoch"], df["val_samples"], gfeats["g_flops_forward"],
                                        gfeats["g_flops_train"])
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
    from featurize.physics.prior import power_limit_range_w

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
            raise SchemaError(f"{cell_row_label(origin, idx, is_file)}: energy_j / time_s = {w:,.0f} W average, more "
                              f"than {g} can draw (TDP {specs[g].tdp_w:g} W, highest settable limit {top:,.0f} W); "
                              f"{fix}")
    if reference is None:
        return
    pred = reference_frame(user_rows, reference)["energy_per_sample_j"].to_numpy(float)
    ratio = user_rows["energy_per_sample_j"].to_numpy(float) / pred
    for idx, r in enumerate(ratio):
        if np.isfinite(r) and not 1.0 / PLAUSIBLE_RATIO <= r <= PLAUSIBLE_RATIO:
            e = float(user_rows["energy_j"].iloc[idx])
            raise SchemaError(f"{cell_row_label(origin, idx, is_file)}: energy_j = {e:.4g} J is {r:.3g}x the base "
                              f"model's forecast for this run ({e / r:.4g} J); {fix}")


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
    pred = reference_frame(rows[missing], reference)
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


def reference_frame(user_rows: pd.DataFrame, model: Any) -> pd.DataFrame:
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
    from predictor.model.inference import predict_frame

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
    table["table_sha256"] = table_sha256(table)
    return table


def read_base_table(base_table: Any) -> pd.DataFrame:
    """A training table given as a DataFrame or a Parquet/CSV path (``python -m training_data.build_table``)."""
    from featurize.errors import InvalidInputError
    from predictor.fit.prepare import REQUIRED_COLUMNS as TABLE_COLUMNS
    from predictor.fit.prepare import require_corrected

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
