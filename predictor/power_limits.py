"""Power limits in a forecast: the model forecasts the run uncapped, then the learned cap response
(:mod:`featurize.power_cap`) prices the cap -- one rule for ``predict``, ``predict_many`` and ``score``.

Public entry points:

* :func:`board_limits` -- the limit the boosters forecast at (the TDP, or a board's higher limit).
* :func:`cap_forecast` -- per-sample (time, power, energy) under each row's cap (NaN / None = none); a cap at or
  above the forecast draw returns the forecast unchanged.
* :func:`optimal_limits` -- per row, the cap with the least energy within a slowdown (``optimal_power_limit_w``).
* :func:`optimal_power_limit_w` -- the same for a :class:`~predictor.prediction.Prediction` and any slowdown.
* :func:`capped_below_default` -- rows measured under a cap below the board's limit (kept out of the boosters).
* :func:`cap_note` -- the warning ``predict`` states for a power limit.
* :func:`card_lines` -- the model card's power section from the manifest's ``metrics.power_cap`` / ``mlperf_node``
  (``training_data.fit_power_cap`` / ``training_data.mlperf_power`` reports).
"""

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


def optimal_power_limit_w(prediction: Any, max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
                          model_dir: Any = None) -> float:
    """The cap (W) that minimises a :class:`~predictor.prediction.Prediction`'s energy while its time grows by at
    most ``max_slowdown`` (0.1 = 10 %), from its uncapped forecast and the model's power-cap curve."""
    from featurize import lookup_gpu
    from predictor.model import load_model

    f = prediction.features
    feats = pd.DataFrame({"tdp_w": [f["tdp_w"]], **{k: [f[k]] for k in SPLIT}})
    pred = {"time_per_sample_s": np.array([f["uncapped_time_per_sample_s"]]),
            "avg_power_w": np.array([f["uncapped_avg_power_w"]])}
    curve = load_model(model_dir).power_cap_curve()
    return float(optimal_limits(pred, feats, [lookup_gpu(prediction.gpu)], curve, max_slowdown)[0])


def cap_note(power_limit_w: float, row: Any) -> str:
    """What a power limit did to one :func:`predictor.model.predict_frame` row, as a warning line."""
    draw = float(row["uncapped_avg_power_w"])
    if power_limit_w >= draw:
        return (f"power limit {power_limit_w:g} W is at or above the forecast draw ({draw:.0f} W at the default "
                "limit): no effect.")
    stretch = float(row["time_per_sample_s"]) / float(row["uncapped_time_per_sample_s"])
    saved = 1.0 - float(row["avg_power_w"]) * stretch / draw
    return (f"power limit {power_limit_w:g} W is below the forecast draw ({draw:.0f} W): the board runs at the cap "
            f"and its clock drops, time x{stretch:.3f}, energy {-saved:+.1%} (learned clock curve, "
            f"predictor.power_limits); optimal within a 10 % slowdown: {float(row['optimal_power_limit_w']):.0f} W.")


def card_lines(metrics: dict[str, Any]) -> list[str]:
    """Model-card lines for the power-cap curve (Zeus sweeps, leave-one-GPU-out) and MLPerf node energy (host-power
    term, leave-one-system-out); empty when the manifest carries neither."""
    cap, node = metrics.get("power_cap"), metrics.get("mlperf_node")
    if not cap and not node:
        return []
    lines = ["", "## Power limits and whole-server power", ""]
    if cap:
        c = cap["curve"]
        lines.append(f"- Power-cap curve (static power {c['static_frac_of_tdp']:.3g} x TDP, voltage-floor knee at "
                     f"{c['knee_clock']:.3g} of the clock): per-point energy error on a held-out Zeus GPU, median %:")
        lines += [f"  - {g}: {v['energy_median_pct']:.1f} (time {v['time_median_pct']:.1f}, power "
                  f"{v['power_median_pct']:.1f}; {v['n_points']} capped points)"
                  for g, v in cap["leave_one_gpu_out"].items()]
    if node:
        lines.append("- MLPerf node energy (whole server = scope factor x (n_gpus x GPU power + host power per system "
                     "class); never GPU power), leave-one-system-out median %:")
        lines += [f"  - {s}: {v['node_energy_median_ape']:.1f} ({v['n_runs']} runs)" for s, v in node.items()]
    return lines
