"""Shared rules of the throughput-only sources (``lambda_dlbench``, ``nvidia_dle``, ``mlperf_training``).

Entry points: :func:`samples_per_s` (explicit unit conversion or a reason), :func:`time_rows` (time-only run rows),
:func:`excluded` (rows kept out, with a reason), :data:`PRECISION` (logged label -> schema precision).

A time-only row is one training step of ``batch_size`` samples on one GPU: ``samples_per_epoch = batch_size``,
``time_per_epoch_s = batch_size / per-GPU samples/s``, ``epochs`` NaN, every energy/power column empty (never
invented), ``phase = throughput``, ``scope = time_only``. Multi-GPU rows keep ``n_gpus``; their per-GPU throughput
includes the all-reduce overhead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PRECISION = {"fp32": "fp32", "tf32": "tf32", "amp_fp16": "fp16", "amp_bf16": "bf16"}
"""Source precision labels -> schema precision (AMP = automatic mixed precision, the brief's fp16/bf16)."""
SAMPLE_UNITS = frozenset({"images/s", "sequences/s", "samples/s"})
"""Units that already count samples (one image, one sequence, one example)."""
EXCLUDED_COLUMNS = ["source", "run_id", "architecture", "gpu", "n_gpus", "reason"]


def samples_per_s(throughput: float, unit: str, tokens_per_sample: float | None = None) -> tuple[float, str]:
    """``(samples/s, '')`` or ``(nan, reason)``. Token-type units convert only with a defined tokens per sample
    (``tokens/s / tokens_per_sample``: Transformer-XL's target length, WaveGlow's audio segment, GNMT's stated mean
    sentence pair, Tacotron2's stated mean utterance in mel frames)."""
    if not (np.isfinite(throughput) and throughput > 0):
        return float("nan"), "no throughput logged"
    if unit in SAMPLE_UNITS:
        return float(throughput), ""
    if unit == "molecules/ms":  # one molecule = one sample (SE(3)-Transformer on QM9)
        return float(throughput) * 1e3, ""
    if unit in ("tokens/s", "audio_samples/s", "mel_frames/s") and tokens_per_sample and np.isfinite(tokens_per_sample):
        return float(throughput) / float(tokens_per_sample), ""
    return float("nan"), f"unit {unit} has no defined sample (items per sample vary or are not logged)"


OPTIONAL_COLUMNS = ("frozen", "tensor_parallel", "pipeline_parallel", "context_parallel", "data_parallel", "grad_accum",
                    "parallelism")
"""Carried from a converter's frame to the time rows when present (else the schema's defaults)."""


def time_rows(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Time-only run rows from a frame with ``run_id, gpu, architecture, model, input_shape, batch_size, n_gpus,
    precision, precision_logged, implementation, workload, samples_per_s_per_gpu, notes`` (already converted) and
    any of :data:`OPTIONAL_COLUMNS`."""
    step_s = df["batch_size"].astype(float) / df["samples_per_s_per_gpu"].astype(float)
    out = pd.DataFrame({
        "source": source, "run_id": df["run_id"], "gpu": df["gpu"], "architecture": df["architecture"],
        "model": df["model"], "input_shape": df["input_shape"], "batch_size": df["batch_size"].astype("int64"),
        "samples_per_epoch": df["batch_size"].astype("int64"), "val_samples": 0, "epochs": np.nan,
        "precision": df["precision"], "frozen": "", "default_power_limit": pd.NA,
        "energy_per_epoch_j": np.nan, "time_per_epoch_s": step_s, "avg_power_w": np.nan,
        "energy_per_sample_j": np.nan, "energy_j": np.nan, "time_s": np.nan, "scope": "time_only",
        "phase": "throughput", "notes": df["notes"], "n_gpus": df["n_gpus"].astype("int64"),
        "implementation": df["implementation"], "workload": df["workload"], "precision_logged": df["precision_logged"],
    })
    for col in OPTIONAL_COLUMNS:
        if col in df:
            out[col] = df[col].to_numpy()
    given = out["frozen"].fillna("").astype(str)
    out["frozen"] = given.where(given != "", df["model"].map(zoo_frozen).to_numpy())
    return out


def excluded(df: pd.DataFrame, source: str, reason) -> pd.DataFrame:
    """Rows kept out of the table, with their reason (a string or a per-row Series)."""
    out = pd.DataFrame({"source": source, "run_id": df["run_id"], "architecture": df.get("architecture", ""),
                        "gpu": df.get("gpu_logged", df.get("gpu", "")), "n_gpus": df.get("n_gpus", 1),
                        "reason": reason}, index=df.index)
    return out[EXCLUDED_COLUMNS].reset_index(drop=True)


def zoo_available(model: str) -> bool:
    """True when ``zoo:<name>`` names an entry of :data:`training_data.zoo.ZOO`."""
    from training_data.zoo import ZOO

    return model.startswith("zoo:") and model[4:].split("?", 1)[0] in ZOO


def zoo_frozen(model: str) -> str:
    """The zoo entry's frozen prefix (parameters its reference training does not update), '' for none."""
    from training_data.zoo import ZOO

    base = model[4:].split("?", 1)[0] if model.startswith("zoo:") else ""
    return ZOO[base].frozen_prefix if base in ZOO else ""


def canonical_gpus(names: pd.Series) -> pd.Series:
    """GPU-table names (``featurize.lookup_gpu(name).name``), so one GPU has one name across sources."""
    import warnings

    from featurize import lookup_gpu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ambiguous aliases are mapped deliberately by each converter
        table = {n: lookup_gpu(n).name for n in names.unique()}
    return names.map(table)


def split(df: pd.DataFrame, reasons: pd.Series, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(kept rows, excluded rows)`` where ``reasons`` is '' for kept rows. A row without a zoo graph yet is kept out
    with that reason (the converter still knows its workload)."""
    reasons = reasons.copy()
    df = df.copy()
    ok = reasons == ""
    df.loc[ok, "gpu"] = canonical_gpus(df.loc[ok, "gpu"])
    no_zoo = (reasons == "") & ~df["model"].map(zoo_available)
    reasons[no_zoo] = "no zoo graph yet for " + df.loc[no_zoo, "architecture"].astype(str)
    keep = reasons == ""
    return df[keep].reset_index(drop=True), excluded(df[~keep], source, reasons[~keep])


def convert_file(path: Path, needed: Any, convert: Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.Series]],
                 source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One throughput source's CSV -> (validated time rows, rows kept out with ``reason``): read with the
    ``needed`` columns checked, ``convert`` (rows + a reason per row, "" = keep), split, validated."""
    from training_data.schema import validate_runs
    from training_data.sources import read_csv

    raw = read_csv(path, required=needed)
    df, reasons = convert(raw)
    kept, out = split(df, reasons, source)
    return validate_runs(time_rows(kept, source), origin=str(path)), out
