"""Power model (prototype for issue 31): average board power at the board's limit, learned from every row with a
measured power, as a residual ``log(measured power / prior power)`` over features that transfer to unseen GPUs.

Public entry points:

* :data:`POWER_FEATURES` -- the features (no GPU identity: utilisation and the step's split from the prior, the
  precision path, the board's TDP and idle share).
* :func:`power_frame` -- ``prepare``'d rows -> the feature matrix (adds ``log_tdp_w``).
* :func:`power_mask` -- rows that teach power: a trusted measured power at the board's own limit (capped Zeus rows
  are the power-cap curve's, :mod:`featurize.power_cap`, not this model's).
* :func:`fit_power` / :func:`grouped_power_cv` -- the booster, and leave-one-group-out power and energy errors next to
  the shipped power booster's on the same folds (energy = measured time x power: the power side alone).

``python -m predictor.power_model TABLE.parquet`` prints the figures. On the energy sources (del Rey, seaa2023,
Zeus; 1,482 rows at the board's limit, 6 GPUs), leave-one-GPU-out, pooled median % error:

==============================  ======  ===================================
power candidate                  power   energy (x the shipped time booster)
==============================  ======  ===================================
prior (sqrt utilisation)          11.6   27.4
shipped power booster             26.1   14.9
recalibrated prior (a, g)         11.7   23.9
recalibrated prior + residual     18.2   19.8
this module's booster             28.0   19.1
==============================  ======  ===================================

Power alone transfers best as the prior; energy is best with the shipped pair, whose time and power errors on an
unseen GPU cancel (a GPU that runs faster than forecast is also busier). So the power model must be chosen on the
energy folds together with the time model it is paired with (issue 28's): :func:`energy_cv` does that.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from predictor.stats import ape_pct

POWER_FEATURES: tuple[str, ...] = ("busy_frac", "compute_frac", "memory_frac", "overhead_frac", "launch_frac",
                                   "tensor_precision", "idle_frac", "log_tdp_w", "log_batch_size")
"""``busy_frac`` / ``*_frac``: the prior's utilisation and split of the step (after issue 28: the per-layer prior's);
``tensor_precision``: the precision path; ``log_tdp_w``: log2(TDP / 300 W); ``idle_frac``: idle / TDP (GPU table)."""
MONOTONE = {"busy_frac": 1}
"""A busier GPU never draws less."""
PARAMS: dict[str, Any] = {"objective": "huber", "alpha": 0.3, "learning_rate": 0.05, "num_leaves": 5, "max_depth": 2,
                          "min_data_in_leaf": 80, "lambda_l2": 20.0, "feature_fraction": 0.9, "bagging_fraction": 0.8,
                          "bagging_freq": 1, "num_threads": 1, "deterministic": True, "force_row_wise": True,
                          "monotone_constraints_method": "advanced", "verbose": -1}
ROUNDS = 200


def power_frame(feats: pd.DataFrame) -> pd.DataFrame:
    """``feats`` (a ``feature_frame``) with ``log_tdp_w``; columns :data:`POWER_FEATURES`."""
    out = feats.copy()
    out["log_tdp_w"] = np.log2(out["tdp_w"].to_numpy(float) / 300.0)
    return out[list(POWER_FEATURES)]


def power_mask(rows: pd.DataFrame, feats: pd.DataFrame, targets: pd.DataFrame) -> np.ndarray:
    """Rows with a trusted, finite power target measured at the board's own limit (no cap below it)."""
    from predictor.power_cap_rows import capped_below_default

    ok = np.isfinite(targets["power"].to_numpy(float))
    return ok & ~capped_below_default(rows, feats["tdp_w"].to_numpy(float))


def fit_power(x: pd.DataFrame, y: np.ndarray, seed: int = 0, params: Mapping[str, Any] | None = None,
              rounds: int = ROUNDS):
    """LightGBM on ``log(power / p_phys)`` (``x``: :func:`power_frame`; ``params`` replace :data:`PARAMS`' keys)."""
    import lightgbm as lgb

    p = {**PARAMS, "monotone_constraints": [MONOTONE.get(f, 0) for f in x.columns], **(params or {}), "seed": seed}
    ds = lgb.Dataset(x.to_numpy(float), label=y, feature_name=list(x.columns), params={"verbose": -1})
    return lgb.train(p, ds, num_boost_round=rounds)


def recalibrated_prior_w(theta: np.ndarray, feats: pd.DataFrame) -> np.ndarray:
    """The prior with its two shape constants refit: ``idle + (cap - idle) x a x busy^g`` (``theta`` = log a, log g;
    the shipped prior is a = 1, g = 0.5)."""
    a, g = np.exp(np.asarray(theta, float))
    idle = feats["idle_frac"].to_numpy(float) * feats["tdp_w"].to_numpy(float)
    cap = feats["power_cap_w"].to_numpy(float)
    return np.clip(idle + (cap - idle) * a * np.clip(feats["busy_frac"].to_numpy(float), 0, 1) ** g,
                   np.minimum(idle, cap), cap)


def fit_recalibration(feats: pd.DataFrame, power_w: np.ndarray) -> np.ndarray:
    """(log a, log g) minimising the mean |log error| of :func:`recalibrated_prior_w`."""
    from scipy.optimize import minimize

    def loss(theta: np.ndarray) -> float:
        return float(np.mean(np.abs(np.log(recalibrated_prior_w(theta, feats) / power_w))))

    return minimize(loss, np.array([0.0, np.log(0.5)]), method="Nelder-Mead").x


def _candidates(f: pd.DataFrame, x: pd.DataFrame, y: np.ndarray, power: np.ndarray, train: np.ndarray,
                test: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Power (W) of the test rows from each candidate fit on the training rows."""
    from predictor.model.inference import clip_power_w
    from predictor.fit.boosters import LGB_PARAMS, NUM_ROUNDS
    from predictor.fit.stages import DEFAULT_FEATURES
    from predictor.fit.boosters import MONOTONE as SHIPPED_MONO

    prior, ft = f["p_phys_w"].to_numpy(float), f[test]
    theta = fit_recalibration(f[train], power[train])
    base_tr = np.log(recalibrated_prior_w(theta, f[train]) / prior[train])
    resid = fit_power(x[train], y[train] - base_tr, seed).predict(x[test].to_numpy(float))
    shipped = {**LGB_PARAMS, "monotone_constraints": [SHIPPED_MONO["power"].get(c, 0) for c in DEFAULT_FEATURES]}
    xs = f[list(DEFAULT_FEATURES)]
    booster = fit_power(xs[train], y[train], seed, shipped, NUM_ROUNDS).predict(xs[test].to_numpy(float))
    recal = recalibrated_prior_w(theta, ft)
    return {"prior": clip_power_w(prior[test], ft), "shipped_power_booster": clip_power_w(prior[test] * np.exp(booster), ft),
            "recalibrated_prior": recal,
            "recalibrated_prior+residual": clip_power_w(recal * np.exp(0.5 * resid), ft),
            "power_model": clip_power_w(prior[test] * np.exp(
                fit_power(x[train], y[train], seed).predict(x[test].to_numpy(float))), ft)}


def grouped_power_cv(rows: pd.DataFrame, feats: pd.DataFrame, targets: pd.DataFrame, group_col: str,
                     seed: int = 0) -> dict[str, Any]:
    """Leave-one-``group_col``-out power error of each candidate (:func:`_candidates`; the shipped design's power
    booster among them, on the same folds): pooled median / p90 APE and the median of the per-group medians.
    Energy = measured time x power, so its error is the power error (the power side alone)."""
    mask = power_mask(rows, feats, targets)
    r, f, t = rows[mask], feats[mask], targets[mask]
    x, y, power = power_frame(f), t["power"].to_numpy(float), t["avg_power_w"].to_numpy(float)
    groups = r[group_col].astype(str).to_numpy()
    pred: dict[str, np.ndarray] = {}
    for g in sorted(set(groups)):
        test = groups == g
        for name, p in _candidates(f, x, y, power, ~test, test, seed).items():
            pred.setdefault(name, np.full(len(r), np.nan))[test] = p
    out: dict[str, Any] = {"n_rows": int(len(r)), "n_groups": int(len(set(groups)))}
    for name, p in pred.items():
        ape = ape_pct(p, power)
        per_group = pd.Series(ape).groupby(groups).median()
        out[name] = {"median_ape": round(float(np.median(ape)), 2), "p90_ape": round(float(np.percentile(ape, 90)), 2),
                     "median_of_group_medians": round(float(per_group.median()), 2),
                     "per_group": {k: round(float(v), 1) for k, v in per_group.items()}}
    return out


def energy_cv(rows: pd.DataFrame, feats: pd.DataFrame, targets: pd.DataFrame, group_col: str,
              seed: int = 0) -> dict[str, Any]:
    """Leave-one-``group_col``-out energy per sample: the shipped design's time booster (refit per fold) x each
    power candidate of :func:`_candidates`, on the energy rows at the board's limit. Median APE, pooled and of the
    per-group medians."""
    from predictor.fit.rows import sample_weights
    from predictor.fit.stages import DEFAULT_FEATURES, fit_boosters

    mask = power_mask(rows, feats, targets)
    r, f, t = rows[mask], feats[mask], targets[mask]
    x, y, power = power_frame(f), t["power"].to_numpy(float), t["avg_power_w"].to_numpy(float)
    groups, w = r[group_col].astype(str).to_numpy(), sample_weights(r)
    energy: dict[str, np.ndarray] = {}
    for g in sorted(set(groups)):
        test = groups == g
        time_b = fit_boosters(f[~test], t[~test], w[~test], features=list(DEFAULT_FEATURES), seed=seed)["time"]
        time_s = f["t_phys_s"].to_numpy(float)[test] * np.exp(time_b.predict(f[list(DEFAULT_FEATURES)][test]
                                                                              .to_numpy(float)))
        for name, p in _candidates(f, x, y, power, ~test, test, seed).items():
            energy.setdefault(name, np.full(len(r), np.nan))[test] = time_s * p
    true = t["energy_per_sample_j"].to_numpy(float)
    out: dict[str, Any] = {"n_rows": int(len(r))}
    for name, e in energy.items():
        ape = pd.Series(ape_pct(e, true))
        out[name] = {"median_ape": round(float(ape.median()), 2),
                     "median_of_group_medians": round(float(ape.groupby(groups).median().median()), 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    from predictor.fit.prepare import prepare

    ap = argparse.ArgumentParser(prog="python -m predictor.power_model", description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--groups", default="_gpu_canonical,source,group_arch")
    args = ap.parse_args(argv)
    rows, feats, targets = prepare(pd.read_parquet(args.table))
    report = {g: {"power": grouped_power_cv(rows, feats, targets, g), "energy": energy_cv(rows, feats, targets, g)}
              for g in args.groups.split(",")}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
