"""The canonical run schema: one row per measured training run (or profiled configuration).

Public entry points:

* :data:`RUN_COLUMNS` -- ordered ``{column: dtype}`` of the run schema (documented in ``training_data/README.md``).
* :func:`validate_runs` -- coerce a DataFrame to the schema or raise :class:`featurize.errors.SchemaError` naming the
  origin (file or source), the column and the row.
* :func:`normalize_user_runs` -- fill the derived columns from the user-retrain minimum
  (``model, gpu, batch_size, samples_per_epoch, epochs, energy_j`` + optional ``val_samples, precision, time_s, frozen``).
* :func:`training_sample_equivalents` -- the per-sample convention shared with the model pipeline.

Per-sample convention: a validation pass costs a forward pass only, so an epoch that includes validation counts
``samples_per_epoch + val_samples * flops_forward / flops_train`` *training-sample equivalents*. Converters fill
``energy_per_sample_j`` with the default ratio :data:`DEFAULT_FORWARD_TRAIN_RATIO` (1/3); ``build_table`` recomputes it
with the graph's own ``g_flops_forward / g_flops_train``. Sources whose epochs exclude validation use ``val_samples = 0``.

Time-only rows (throughput sources: ``lambda_dlbench``, ``nvidia_dle``, ``mlperf_training``) leave every energy and
power column empty and carry ``time_per_epoch_s``; one "epoch" is one step of ``batch_size`` samples per GPU
(``samples_per_epoch = batch_size``, ``phase = throughput``), so ``time_per_sample_s`` = 1 / per-GPU samples/s.

Numeric cells may be plain numbers or strings with a unit (``"12.5 kJ"``, ``"350 W"``, ``"2 h"``); they are converted to
the column's unit (J, s, W). Anything else raises ``SchemaError``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import JoulecastError, SchemaError
from featurize.types import PRECISIONS

SCHEMA_VERSION = 1
DEFAULT_FORWARD_TRAIN_RATIO = 1.0 / 3.0
"""Forward FLOPs / training FLOPs used before a graph is featurized (forward 1x, backward ~2x)."""

RUN_COLUMNS: dict[str, str] = {
    "source": "string",  # seaa2023, delrey, zeus, mayaki, user, ...
    "run_id": "string",  # unique within source
    "gpu": "string",  # resolvable by featurize.lookup_gpu
    "architecture": "string",  # e.g. resnet50, inception_v3, mayaki_bert
    "model": "string",  # "zoo:<name>[?k=v&...]" (training_data.zoo) or a path to an .onnx file
    "input_shape": "string",  # per-sample shape, e.g. "3x224x224", "seq512"; "" = as declared by the graph
    "batch_size": "int64",
    "samples_per_epoch": "int64",  # training samples per epoch
    "val_samples": "int64",  # validation samples evaluated inside each measured epoch (0 if excluded)
    "epochs": "float64",  # epochs of the run, NaN when unknown
    "precision": "string",  # fp32 / tf32 / fp16 / bf16
    "frozen": "string",  # ';'-separated parameter-name prefixes not trained ('' = none)
    "trainable_fraction": "float64",  # trainable params / params (NaN until featurized)
    "power_limit_w": "float64",  # NaN = unknown (card default)
    "default_power_limit": "boolean",  # True when the card ran at its default power limit
    "energy_per_epoch_j": "float64",
    "time_per_epoch_s": "float64",
    "avg_power_w": "float64",
    "energy_per_sample_j": "float64",  # per training-sample equivalent (see module docstring)
    "energy_j": "float64",  # total of the run, NaN when unknown
    "time_s": "float64",  # total of the run, NaN when unknown
    "scope": "string",  # gpu_nvml, gpu_nvml+ram_est, ...
    "phase": "string",  # all, frozen_backbone, finetune, step
    "notes": "string",
    "n_gpus": "int64",  # GPUs of the measured system; per-sample times are per GPU (GPU-seconds per sample)
    "implementation": "string",  # framework / code base as logged (e.g. "pytorch (NGC, DeepLearningExamples)")
    "workload": "string",  # dataset and the definition of one sample (image size, sequence length, tokens/sample)
    "precision_logged": "string",  # the source's own precision label ("AMP", "mixed (not logged)"); '' = as precision
    # parallel layout of a multi-GPU row (PARALLEL_LAYOUT below): tensor x pipeline x context x data = n_gpus
    "tensor_parallel": "int64",  # GPUs that split each layer's matrices (Megatron TP)
    "pipeline_parallel": "int64",  # pipeline stages (each GPU holds a slice of the layers)
    "context_parallel": "int64",  # GPUs that split one sequence (NeMo CP)
    "data_parallel": "int64",  # model replicas (default n_gpus / (tensor x pipeline x context))
    "grad_accum": "int64",  # micro-batches per optimizer step per replica (pipeline: micro-batches per iteration)
    "parallelism": "string",  # none | ddp | model+data | pipeline | hybrid_embedding (see PARALLEL_LAYOUT)
}
PARALLEL_LAYOUT = """Layout columns. ``batch_size`` is the micro-batch one forward pass processes on one replica's GPU;
``time_per_sample_s`` is GPU-seconds per sample for every layout. ``parallelism``: ``none`` (one GPU), ``ddp`` (every
GPU a full replica, gradients all-reduced), ``model+data`` (tensor/context parallel groups, replicated
``data_parallel`` times), ``pipeline`` (stages of consecutive layers, micro-batches in flight), ``hybrid_embedding``
(DLRM: embedding tables sharded over the GPUs, dense layers data-parallel). Only ``none`` and ``ddp`` rows have a
per-GPU graph equal to the whole model; the others need a parallelism model and say so."""
LAYOUT_COLUMNS: tuple[str, ...] = ("tensor_parallel", "pipeline_parallel", "context_parallel", "data_parallel",
                                   "grad_accum", "parallelism")
REQUIRED_COLUMNS: tuple[str, ...] = (
    "source", "run_id", "gpu", "architecture", "model", "batch_size", "samples_per_epoch", "energy_per_epoch_j",
)
USER_REQUIRED_COLUMNS: tuple[str, ...] = ("model", "gpu", "batch_size", "samples_per_epoch", "epochs", "energy_j")
USER_OPTIONAL_COLUMNS: tuple[str, ...] = ("val_samples", "precision", "time_s", "frozen")

_UNIT_FACTORS: dict[str, dict[str, float]] = {
    "j": {"j": 1.0, "kj": 1e3, "mj": 1e6, "wh": 3600.0, "kwh": 3.6e6},
    "s": {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0},
    "w": {"w": 1.0, "kw": 1e3, "mw": 1e-3},
}
_COLUMN_UNIT = {c: c.rsplit("_", 1)[1] for c in RUN_COLUMNS if c.rsplit("_", 1)[-1] in ("j", "s", "w")}
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")
_DEFAULTS: dict[str, Any] = {
    "input_shape": "", "val_samples": 0, "epochs": np.nan, "precision": "fp32", "frozen": "",
    "trainable_fraction": np.nan, "power_limit_w": np.nan, "default_power_limit": pd.NA,
    "time_per_epoch_s": np.nan, "avg_power_w": np.nan, "energy_per_sample_j": np.nan, "energy_j": np.nan,
    "time_s": np.nan, "scope": "unknown", "phase": "all", "notes": "", "n_gpus": 1, "implementation": "",
    "workload": "", "precision_logged": "", "tensor_parallel": 1, "pipeline_parallel": 1, "context_parallel": 1,
    "data_parallel": np.nan, "grad_accum": 1, "parallelism": "",
}


def _where(origin: str, column: str, row: int | None = None) -> str:
    at = f", row {row} (0-based data row)" if row is not None else ""
    return f"{origin}: column '{column}'{at}"


def parse_quantity(value: Any, unit: str, *, origin: str = "", column: str = "", row: int | None = None) -> float:
    """Convert ``value`` (number, numeric string or ``"<number> <unit>"``) to ``unit`` (``j``, ``s`` or ``w``).

    Empty / NaN gives NaN. An unknown unit or unparseable text raises :class:`SchemaError`.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return float("nan")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if text == "" or text.lower() in ("nan", "none", "na"):
        return float("nan")
    m = _QUANTITY.match(text)
    if not m:
        raise SchemaError(f"{_where(origin, column, row)}: cannot parse {text!r} as a number; "
                          f"write a plain number in {unit.upper()} (e.g. 1200) or a number with a unit.")
    number, suffix = float(m.group(1)), m.group(2).lower()
    if not suffix:
        return number
    factors = _UNIT_FACTORS.get(unit, {})
    if suffix not in factors:
        raise SchemaError(f"{_where(origin, column, row)}: unit {m.group(2)!r} in {text!r} is not a unit of "
                          f"{unit.upper()}; use one of {sorted(factors)} or a plain number in {unit.upper()}.")
    return number * factors[suffix]


def _coerce_numeric(df: pd.DataFrame, column: str, origin: str) -> pd.Series:
    unit = _COLUMN_UNIT.get(column)
    col = df[column]
    if unit is not None:
        vals = [parse_quantity(v, unit, origin=origin, column=column, row=i) for i, v in enumerate(col.tolist())]
        return pd.Series(vals, index=df.index, dtype="float64")
    out = pd.to_numeric(col, errors="coerce")
    bad = out.isna() & col.notna() & (col.astype("string").str.strip().fillna("") != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(f"{_where(origin, column, i)}: cannot parse {col.iloc[i]!r} as a number; "
                          "write a plain number.")
    return out.astype("float64")


def _check_int(series: pd.Series, column: str, origin: str, *, minimum: int) -> pd.Series:
    vals = series.to_numpy(dtype="float64")
    for i, v in enumerate(vals):
        if not np.isfinite(v) or v != round(v) or v < minimum:
            raise SchemaError(f"{_where(origin, column, i)}: {v!r} is not an integer >= {minimum}; "
                              f"fix the value (counts are whole numbers).")
    return series.astype("int64")


def _check_gpus(gpus: pd.Series, origin: str) -> None:
    import warnings

    from featurize import lookup_gpu

    for name in pd.unique(gpus):
        try:
            with warnings.catch_warnings():  # ambiguity is a note on the GPUSpec, not a schema problem
                warnings.simplefilter("ignore")
                lookup_gpu(str(name))
        except JoulecastError as err:
            i = int(np.flatnonzero((gpus == name).to_numpy())[0])
            raise SchemaError(f"{_where(origin, 'gpu', i)}: GPU {name!r} does not resolve ({err}). Use a name "
                              "`joulecast gpus` lists.") from err


def _check_measured(out: pd.DataFrame, origin: str) -> None:
    """Every row measures energy or time: ``energy_per_epoch_j`` positive, or NaN on a time-only row (throughput
    sources) whose ``time_per_epoch_s`` is positive. Energy is never invented for time-only rows."""
    energy, time = out["energy_per_epoch_j"], out["time_per_epoch_s"]
    bad = ~(energy > 0) & ~(energy.isna() & (time > 0))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(f"{_where(origin, 'energy_per_epoch_j', i)}: energy must be a positive finite number "
                          f"(or empty on a time-only row with a positive time_per_epoch_s), got "
                          f"{energy.iloc[i]!r}; drop or fix the row.")


def _check_layout(out: pd.DataFrame, origin: str) -> None:
    """Fill and check the layout columns in place: degrees are integers >= 1 whose product is ``n_gpus``;
    ``data_parallel`` defaults to ``n_gpus`` / the model-parallel degree; ``parallelism`` defaults to ``none`` (one
    GPU), ``ddp`` (no model parallelism) or ``model+data``."""
    for col in ("tensor_parallel", "pipeline_parallel", "context_parallel", "grad_accum"):
        out[col] = _check_int(out[col].fillna(1), col, origin, minimum=1)
    model = out["tensor_parallel"] * out["pipeline_parallel"] * out["context_parallel"]
    out["data_parallel"] = _check_int(out["data_parallel"].fillna(out["n_gpus"] // model), "data_parallel", origin,
                                      minimum=1)
    bad = model * out["data_parallel"] != out["n_gpus"]
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(f"{_where(origin, 'data_parallel', i)}: tensor x pipeline x context x data parallel = "
                          f"{int(model.iloc[i] * out['data_parallel'].iloc[i])} GPUs but n_gpus is "
                          f"{int(out['n_gpus'].iloc[i])}; fix the layout.")
    given = out["parallelism"].astype("string").fillna("").str.strip()
    derived = np.where(out["n_gpus"] == 1, "none", np.where(model == 1, "ddp", "model+data"))
    out["parallelism"] = given.where(given != "", pd.Series(derived, index=out.index))


def validate_runs(df: pd.DataFrame, *, origin: str, check_gpus: bool = True) -> pd.DataFrame:
    """Return ``df`` coerced to :data:`RUN_COLUMNS` (ordered, typed, defaults filled; extra columns kept after).

    Raises :class:`SchemaError` naming ``origin`` (a file path or source name), column and row for: missing required
    columns, unparseable numbers/units, non-positive energies (NaN only on time-only rows), bad counts, unknown
    precisions, GPUs that do not resolve with :func:`featurize.lookup_gpu`, and duplicate ``(source, run_id)`` keys.
    """
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"{origin}: expected a pandas DataFrame of runs, got {type(df).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(f"{origin}: missing required column(s) {missing}; the run schema needs "
                          f"{list(REQUIRED_COLUMNS)} (see training_data/README.md).")
    out = df.reset_index(drop=True).copy()
    for col, default in _DEFAULTS.items():
        if col not in out.columns:
            out[col] = default
    for col, dtype in RUN_COLUMNS.items():
        if dtype in ("float64", "int64"):
            out[col] = _coerce_numeric(out, col, origin)
    for col in ("batch_size", "samples_per_epoch"):
        out[col] = _check_int(out[col], col, origin, minimum=1)
    out["val_samples"] = _check_int(out["val_samples"].fillna(0), "val_samples", origin, minimum=0)
    out["n_gpus"] = _check_int(out["n_gpus"].fillna(1), "n_gpus", origin, minimum=1)
    _check_layout(out, origin)
    _check_measured(out, origin)
    for col in ("energy_j", "time_s", "time_per_epoch_s", "avg_power_w", "epochs", "energy_per_sample_j"):
        bad = out[col].notna() & ~(out[col] > 0) | np.isinf(out[col])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise SchemaError(f"{_where(origin, col, i)}: must be positive when given, got {out[col].iloc[i]!r}.")
    for col, dtype in RUN_COLUMNS.items():
        if dtype == "string":
            out[col] = out[col].astype("string").fillna("").str.strip() if col not in REQUIRED_COLUMNS \
                else out[col].astype("string")
    for col in REQUIRED_COLUMNS:
        if RUN_COLUMNS[col] == "string":
            bad = out[col].isna() | (out[col].str.strip() == "")
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise SchemaError(f"{_where(origin, col, i)}: empty value; every run needs a {col}.")
    out["precision"] = out["precision"].str.lower().replace("", "fp32")
    bad = ~out["precision"].isin(PRECISIONS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(f"{_where(origin, 'precision', i)}: unknown precision {out['precision'].iloc[i]!r}; "
                          f"use one of {list(PRECISIONS)}.")
    out["default_power_limit"] = out["default_power_limit"].astype("boolean")
    dup = out.duplicated(subset=["source", "run_id"], keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise SchemaError(f"{_where(origin, 'run_id', i)}: duplicate run ({out['source'].iloc[i]!r}, "
                          f"{out['run_id'].iloc[i]!r}); make run_id unique within a source.")
    if check_gpus:
        _check_gpus(out["gpu"], origin)
    extra = [c for c in out.columns if c not in RUN_COLUMNS]
    return out[list(RUN_COLUMNS) + extra]


def training_sample_equivalents(samples_per_epoch, val_samples, forward_train_ratio=DEFAULT_FORWARD_TRAIN_RATIO):
    """Training-sample equivalents of one epoch: ``samples + val_samples * flops_forward / flops_train``."""
    return np.asarray(samples_per_epoch, dtype="float64") + np.asarray(val_samples, dtype="float64") * np.asarray(
        forward_train_ratio, dtype="float64")


def normalize_user_runs(df: pd.DataFrame, *, origin: str = "user runs", check_gpus: bool = True) -> pd.DataFrame:
    """Fill the run schema from the user-retrain minimum and validate it.

    Required: ``model, gpu, batch_size, samples_per_epoch, epochs, energy_j``; optional ``val_samples`` (validation
    samples inside each epoch, default 0), ``precision`` (fp32), ``time_s``, ``frozen``. Derived:
    ``energy_per_epoch_j = energy_j / epochs``, ``time_per_epoch_s``, ``avg_power_w = energy_j / time_s``, and
    ``energy_per_sample_j`` per training-sample equivalent (default forward/train ratio until featurized).
    """
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"{origin}: expected a pandas DataFrame of runs, got {type(df).__name__}.")
    missing = [c for c in USER_REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(f"{origin}: missing required column(s) {missing}; a retrain table needs "
                          f"{list(USER_REQUIRED_COLUMNS)} (optional: {list(USER_OPTIONAL_COLUMNS)}).")
    out = df.reset_index(drop=True).copy()
    energy = _coerce_numeric(out, "energy_j", origin)
    epochs = _coerce_numeric(out, "epochs", origin)
    bad = ~(epochs > 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(f"{_where(origin, 'epochs', i)}: epochs must be positive, got {epochs.iloc[i]!r}.")
    bad = ~(energy > 0)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(f"{_where(origin, 'energy_j', i)}: energy must be a positive finite number, got "
                          f"{energy.iloc[i]!r}; drop or fix the row.")
    out["energy_j"], out["epochs"] = energy, epochs
    time_s = _coerce_numeric(out, "time_s", origin) if "time_s" in out else pd.Series(np.nan, index=out.index)
    out["time_s"] = time_s
    if "source" not in out:
        out["source"] = "user"
    if "run_id" not in out:
        out["run_id"] = [f"user-{i:05d}" for i in range(len(out))]
    if "architecture" not in out:
        out["architecture"] = [_arch_from_model(str(m)) for m in out["model"]]
    if "val_samples" not in out:
        out["val_samples"] = 0
    out["energy_per_epoch_j"] = energy / epochs
    out["time_per_epoch_s"] = time_s / epochs
    out["avg_power_w"] = energy / time_s
    if "scope" not in out:
        out["scope"] = "user"
    validated = validate_runs(out, origin=origin, check_gpus=check_gpus)
    validated["energy_per_sample_j"] = validated["energy_per_epoch_j"] / training_sample_equivalents(
        validated["samples_per_epoch"], validated["val_samples"])
    return validated


def _arch_from_model(model: str) -> str:
    if model.startswith("zoo:"):
        return model[4:].split("?", 1)[0]
    stem = re.split(r"[\\/]", model)[-1]
    return stem[:-5] if stem.lower().endswith(".onnx") else stem


def empty_runs() -> pd.DataFrame:
    """An empty DataFrame with the run schema's columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in RUN_COLUMNS.items()})
