"""Power caps on forecast rows (what ``predict_frame`` and the fit apply): the board limit each row runs at, the
capped forecast along the model's clock curve, and the least-energy cap within a slowdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from featurize.physics.prior import default_power_limit_w, power_limit_range_w
from featurize.power_cap import DEFAULT_CURVE, PowerCapCurve, apply_power_cap
from featurize.power_cap import optimal_power_limit_w as _optimal
from featurize.types import GPUSpec

DEFAULT_MAX_SLOWDOWN = 0.1
"""``optimal_power_limit_w``: the most the run may slow down (10 %), as Zeus's default."""


SPLIT = ("t_arith_s", "t_memory_s", "t_overhead_s")
"""Prior columns that split the step into what a lower clock stretches and what it does not."""


def capped_below_default(rows: pd.DataFrame, tdp_w: Any) -> np.ndarray:
    """Rows measured under a power cap below the board's own limit: ``default_power_limit`` False, or a
    ``power_limit_w`` below the TDP where the row does not say it is the default. Their time and power are the
    power-cap curve's (:mod:`featurize.power_cap`), never the unconstrained boosters' to learn."""
    n = len(rows)
    pl = rows["power_limit_w"].to_numpy(float) if "power_limit_w" in rows else np.full(n, np.nan)
    default = (rows["default_power_limit"] if "default_power_limit" in rows
               else pd.Series(pd.NA, index=rows.index)).astype("boolean")
    capped = default.fillna(True).to_numpy(bool) == False  # noqa: E712 - nullable column
    return capped | (np.isfinite(pl) & (pl < 0.999 * np.asarray(tdp_w, float)) & ~default.fillna(False).to_numpy(bool))


def _split(feats: Any) -> dict[str, Any]:
    return {"t_arith_s": feats["t_arith_s"], "t_memory_s": feats["t_memory_s"], "t_other_s": feats["t_overhead_s"]}


def board_limits(power_limit_w: Any, gpus: Any, n: int) -> np.ndarray | None:
    """The limit the model's boosters forecast at, per row: a limit above the TDP describes a board sold with more
    headroom (RTX 3070 boards at 240 W of a 220 W reference; the training rows carry such limits in
    ``power_limit_frac``), so the forecast is made at it; at or below the TDP the forecast is made at the TDP and
    the limit is a cap, priced by :func:`cap_forecast`. None = every row at its TDP."""
    if power_limit_w is None:
        return None
    specs = [gpus] * n if isinstance(gpus, GPUSpec) else list(gpus)
    cap = np.broadcast_to(np.asarray(power_limit_w, float), (n,))
    tdp = np.array([float(s.tdp_w) for s in specs], float)
    return np.where(np.isfinite(cap) & (cap > tdp), cap, np.nan)


def cap_forecast(pred: dict[str, np.ndarray], feats: pd.DataFrame, power_limit_w: Any,
                 curve: PowerCapCurve = DEFAULT_CURVE) -> dict[str, np.ndarray]:
    """``pred`` (``time_per_sample_s``, ``avg_power_w``, ``energy_per_sample_j``: the uncapped forecast) under
    ``power_limit_w`` (scalar or per row; None = no cap)."""
    if power_limit_w is None:
        return pred
    n = len(feats)
    cap = np.broadcast_to(np.asarray(power_limit_w, float), (n,))
    t, p = apply_power_cap(pred["time_per_sample_s"], pred["avg_power_w"], cap,
                           tdp_w=feats["tdp_w"].to_numpy(float), curve=curve,
                           **{k: np.asarray(v, float) for k, v in _split(feats).items()})
    return {**pred, "time_per_sample_s": t, "avg_power_w": p, "energy_per_sample_j": t * p}


def _limits(specs: Sequence[GPUSpec]) -> dict[str, np.ndarray]:
    memo: dict[str, tuple[float, float, float]] = {}
    for s in specs:
        if s.name not in memo or s.source == "user":
            memo[s.name] = (*power_limit_range_w(s), default_power_limit_w(s))
    rows = np.array([memo[s.name] for s in specs], float).reshape(-1, 3)
    return {"limit_min_w": rows[:, 0], "limit_max_w": rows[:, 1], "default_w": rows[:, 2]}


def optimal_limits(pred: dict[str, np.ndarray], feats: pd.DataFrame, specs: Sequence[GPUSpec],
                   curve: PowerCapCurve = DEFAULT_CURVE, max_slowdown: float = DEFAULT_MAX_SLOWDOWN) -> np.ndarray:
    """Per row of an uncapped forecast, the energy-optimal cap within ``max_slowdown`` (W)."""
    return _optimal(pred["time_per_sample_s"], pred["avg_power_w"], tdp_w=feats["tdp_w"].to_numpy(float),
                    max_slowdown=max_slowdown, curve=curve, **_limits(specs),
                    **{k: np.asarray(v, float) for k, v in _split(feats).items()})
