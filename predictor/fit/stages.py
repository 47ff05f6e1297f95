"""The model's stages: the main boosters (time and power over the prior), the per-GPU calibration offsets and the
seen-configuration stage, fitted and applied to feature rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from featurize.physics.prior import FEATURE_NAMES, power_prior_w
from predictor.fit.boosters import LGB_PARAMS, NUM_ROUNDS, fit_one
from predictor.fit.rows import implementation_of
from predictor.model.inference import clip_power_w, offset_terms
from predictor.model.loaded import (
    DESIGNS,
    LocalStage,
)

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


OFFSET_PRIOR_ROWS = 5.0
"""Shrinkage of a per-GPU calibration offset toward 0: sum of log residuals / (n_rows + this)."""


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


def offset_table(resid: Mapping[str, np.ndarray], gpus: np.ndarray, mask: np.ndarray) -> dict[str, dict[str, float]]:
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
    offsets = offset_table(resid, gpus, calibrate)
    adjusted = targets.copy()
    for t in names:
        shift = np.array([offsets.get(str(g), {}).get(t, 0.0) if c else 0.0 for g, c in zip(gpus, calibrate)])
        adjusted[t] = targets[t].to_numpy() - shift
    boosters = fit_boosters(feats, adjusted, weights, rows=rows, **kw)
    pred = log_terms(boosters, feats, features)
    rest = {t: np.where(calibrate, adjusted[t].to_numpy() - pred[t], np.nan) for t in names}
    extra = offset_table(rest, gpus, calibrate)
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


def shrink_for(rows: pd.DataFrame) -> float:
    """:data:`SHRINK` for public-data tables, 1.0 when the user's own rows are in (``retrain``)."""
    return 1.0 if (rows["source"].astype(str) == "user").any() else SHRINK
