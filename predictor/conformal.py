"""Split-conformal intervals from out-of-fold residuals (energy and time share the method).

Public entry points: :func:`conformal_quantile`, :func:`interval_halfwidth` (pooled over groupings, each grouping
kept at :data:`INTERVAL_FLOOR_LEVEL`), :func:`loo_group_coverage` (honest leave-group-out coverage),
:func:`normalised_resid` (residuals over each row's novelty scale), :func:`measured_halfwidth` (withheld runs of
measured configurations) and :func:`novelty_stats`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

INTERVAL_LEVEL = 0.9
INTERVAL_FLOOR_LEVEL = 0.85
"""No kind of novelty (held-out GPU, architecture or measuring setup) may see its out-of-fold residuals covered less
often than this: the half-width is the larger of the pooled 90 % conformal quantile and each grouping's 85 % one."""


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


def measured_halfwidth(oof: pd.DataFrame) -> float:
    """Log half-width for a measured configuration: row-fold residuals, 90 % pooled, each source >= 85 %."""
    r = oof["log_resid"].to_numpy(float)
    by_source = {str(s): r[(oof["source"] == s).to_numpy()] for s in oof["source"].unique()}
    return interval_halfwidth({"rows": r}) if len(by_source) < 2 else float(max(
        interval_halfwidth({"rows": r}), *(conformal_quantile(np.abs(v), INTERVAL_FLOOR_LEVEL)
                                            for v in by_source.values())))
