"""One LightGBM booster fitted the one way every stage fits them (the shared parameters, seeds and monotone
constraints), wrapped so that repeated configurations are walked once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from predictor.model.trees import unique_rows

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


def fit_one(x: pd.DataFrame, y: np.ndarray, w: np.ndarray, features: list[str], target: str, seed: int,
             params: Mapping[str, Any] | None, rounds: int, monotone: Mapping[str, int] | None = None):
    import lightgbm as lgb

    ok = np.isfinite(y)
    p = dict(LGB_PARAMS, seed=seed, bagging_seed=seed, feature_fraction_seed=seed, data_random_seed=seed)
    p.update(params or {})
    cons = MONOTONE.get(target, {}) if monotone is None else monotone
    p["monotone_constraints"] = [cons.get(f, 0) for f in features]
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
