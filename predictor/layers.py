"""Per-layer answers: where a predicted run's time and energy go (``Prediction.layers``, ``predict --layers``).

Public entry points: :func:`layer_breakdown` (a featurized graph + GPU + the run's predicted totals -> the
``layers`` DataFrame) and :func:`hotspots` (its top rows for display). The split comes from the per-layer
physics prior (:func:`featurize.physics.layers.layer_prior`): each node's share of the prior's step time and energy,
applied to the model's predicted totals, so the rows sum to ``Prediction.time_s`` and ``energy_j``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from featurize.layer_profile import LayerEfficiencies, evaluated_batch
from featurize.physics.layers import layer_prior
from featurize.physics.prior import gpu_columns
from featurize.types import GPUSpec, GraphFeatures

LAYER_COLUMNS = ("node", "module", "op_type", "op_class", "bound", "time_s", "energy_j", "share")


def layer_prior_for(gf: GraphFeatures, gpu: GPUSpec, *, precision: str, batch_size: int,
                    power_limit_w: float | None = None, precision_fallback: bool = False,
                    efficiencies: LayerEfficiencies | None = None) -> pd.DataFrame:
    """:func:`featurize.physics.layers.layer_prior` of a featurized graph (one optimizer step)."""
    return layer_prior(gf.nodes, gpu_columns(gpu, precision, fallback=precision_fallback), batch_size=batch_size,
                       backward_ratio=gf.flops_backward / max(gf.flops_forward, 1.0),
                       trainable_params=float(gf.trainable_params),
                       eval_batch=evaluated_batch(gf.nodes, gf.flops_forward), power_limit_w=power_limit_w,
                       efficiencies=efficiencies)


def layer_breakdown(prior: pd.DataFrame, *, time_s: float, energy_j: float) -> pd.DataFrame:
    """The run's ``time_s`` and ``energy_j`` split over the rows of a :func:`layer_prior_for` step."""
    t, e = prior["time_s"].to_numpy(float), prior["energy_j"].to_numpy(float)
    out = prior[["node", "module", "op_type", "op_class", "bound"]].copy()
    out["time_s"] = t / t.sum() * time_s if t.sum() > 0 else 0.0
    out["energy_j"] = e / e.sum() * energy_j if e.sum() > 0 else 0.0
    out["share"] = e / e.sum() if e.sum() > 0 else 0.0
    return out.reset_index(drop=True)


def hotspots(layers: Any, top: int = 10) -> pd.DataFrame:
    """The ``top`` rows by energy, plus one row per op class with its total share."""
    return layers.sort_values("energy_j", ascending=False).head(max(top, 1)).reset_index(drop=True)


def by_class(layers: Any) -> pd.DataFrame:
    """Energy, time and share summed per op class, largest first."""
    return (layers.groupby("op_class")[["time_s", "energy_j", "share"]].sum()
            .sort_values("energy_j", ascending=False).reset_index())
