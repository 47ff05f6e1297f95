"""A user's measured runs in: the table read, every cell checked (units, ranges, GPU and model names), one clear error
naming the row and the fix."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import SchemaError
from featurize.types import PRECISIONS
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


def cell_row_label(origin: str, idx: int, is_file: bool) -> str:
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
        _check_cell(raw_col.iloc[idx], float(arr[idx]), col, cell_row_label(origin, int(idx), is_file),
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
    df = _with_columns(df, origin)
    _numbers_into(df, origin, is_file)
    df["precision"] = _checked_precisions(df["precision"], origin, is_file)
    df["gpu"] = _resolve_gpus(df["gpu"], origin, is_file)
    df["model"] = _resolve_models(df["model"], origin, is_file, base_dir, check_files)
    stems = {m: Path(m).stem for m in dict.fromkeys(df["model"])}
    df["architecture"] = [a or stems[m] for a, m in zip(df["architecture"], df["model"])]
    _refuse_duplicates(df, origin, is_file)
    return df


def _with_columns(df: Any, origin: str) -> pd.DataFrame:
    """A copy with the required columns checked, the optional ones filled and the text columns stripped."""
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
    return df


def _numbers_into(df: pd.DataFrame, origin: str, is_file: bool) -> None:
    """The numeric columns parsed (units allowed) and range-checked, in place."""
    df["energy_j"] = _numeric(df, "energy_j", origin, is_file, integer=False, positive=True)
    df["batch_size"] = _numeric(df, "batch_size", origin, is_file, integer=True, positive=True).astype("int64")
    df["samples_per_epoch"] = _numeric(
        df, "samples_per_epoch", origin, is_file, integer=True, positive=True
    ).astype("int64")
    df["epochs"] = _numeric(df, "epochs", origin, is_file, integer=False, positive=True).astype(float)
    df["val_samples"] = _numeric(df.fillna({"val_samples": 0}), "val_samples", origin, is_file, integer=True,
                                 positive=True, allow_zero=True).astype("int64")
    df["time_s"] = _numeric(df, "time_s", origin, is_file, integer=False, positive=True, allow_nan=True)
    df["power_limit_w"] = _numeric(
        df, "power_limit_w", origin, is_file, integer=False, positive=True, allow_nan=True
    )


def _checked_precisions(values: pd.Series, origin: str, is_file: bool) -> pd.Series:
    precisions = values.fillna("fp32").astype(str).str.strip().str.lower()
    for idx in np.flatnonzero(~precisions.isin(PRECISIONS).to_numpy()):
        raise SchemaError(
            f"{cell_row_label(origin, idx, is_file)}, column 'precision': {precisions.iloc[idx]!r} is not one of "
            f"{', '.join(PRECISIONS)}"
        )
    return precisions


def _refuse_duplicates(df: pd.DataFrame, origin: str, is_file: bool) -> None:
    """Two rows equal in every column but run_id are one run entered twice."""
    body = df.drop(columns=["run_id"])
    dup = body.duplicated(keep="first")
    if dup.any():
        idx = int(np.flatnonzero(dup.to_numpy())[0])
        same = np.flatnonzero(body.duplicated(keep=False).to_numpy())  # candidates for the row it repeats
        key = "|".join(map(str, body.iloc[idx]))
        first = int(next(i for i in same if "|".join(map(str, body.iloc[i])) == key))
        raise SchemaError(
            f"{cell_row_label(origin, idx, is_file)} duplicates {cell_row_label(origin, first, is_file).split(': ')[-1]} "
            f"(every column but run_id "
            f"equal; {int(dup.sum())} duplicate row(s) in all); remove the repeated rows"
        )


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
            raise SchemaError(f"{cell_row_label(origin, idx, is_file)}, column 'gpu': empty GPU name")
        if name not in memo:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # an alias resolving to a default variant is fine here
                    memo[name] = lookup_gpu(name).name
            except UnknownGPUError as err:
                raise SchemaError(f"{cell_row_label(origin, idx, is_file)}, column 'gpu': {err}") from err
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
            raise SchemaError(f"{cell_row_label(origin, idx, is_file)}, column 'model': empty graph path")
        path = Path(text).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if check_files and not path.is_file():
            raise SchemaError(
                f"{cell_row_label(origin, idx, is_file)}, column 'model': graph file {text!r} not found"
                + (f" (relative paths resolve against {base_dir})" if base_dir else "")
                + "; give the path of the .onnx file the run trained"
            )
        if isinstance(raw, str):
            memo[raw] = str(path)
        out.append(str(path))
    return out
