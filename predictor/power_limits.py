"""Power limits in a forecast: the model forecasts the run uncapped, then the learned cap response
(:mod:`featurize.power_cap`) prices the cap -- one rule for ``predict``, ``predict_many`` and ``score``.

Public entry points:

* :func:`optimal_power_limit_w` -- the cap with the least energy within a slowdown, for a
  :class:`~predictor.prediction.Prediction` (the row-wise rules it shares with ``predict_frame``:
  :mod:`predictor.power_cap_rows`).
* :func:`cap_note` -- the warning ``predict`` states for a power limit.
* :func:`card_lines` -- the model card's power section from the manifest's ``metrics.power_cap`` / ``mlperf_node``
  (``training_data.fit_power_cap`` / ``training_data.mlperf_power`` reports).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from predictor.power_cap_rows import DEFAULT_MAX_SLOWDOWN, SPLIT, optimal_limits


def optimal_power_limit_w(prediction: Any, max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
                          model_dir: Any = None) -> float:
    """The cap (W) that minimises a :class:`~predictor.prediction.Prediction`'s energy while its time grows by at
    most ``max_slowdown`` (0.1 = 10 %), from its uncapped forecast and the model's power-cap curve."""
    from featurize import lookup_gpu
    from predictor.model.loaded import load_model

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
