"""The time model (predictor.time_model / time_select): implementation offsets, the bound, nested selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featurize.errors import InvalidInputError
from predictor.time_model import (
    CLASS_PRIOR_ROWS,
    IMPLEMENTATION_COL,
    RESIDUAL_BOUND,
    check_implementation,
    fit_time,
    log_time_residual,
)
from predictor.time_select import inner_score, select_time_params
from predictor.fit.rows import sample_weights
from predictor.fit.cv import grouped_cv
from predictor.fit.prepare import prepare

from test_model_synth import synth_gpus, synth_table

FAST = {"rounds": 60, "lgbm": {"num_leaves": 7, "max_depth": 3, "min_data_in_leaf": 10}, "bound": 2.0}


def _tuned(factor: float):
    """Every synthetic run measured twice: by reference code, and by tuned code (source srcT, implementation class
    `tuned`) at `factor` x the time -- same GPUs, graphs and batches, so only the class tells them apart."""
    import pandas as pd

    table = synth_table()
    tuned = table.assign(source="srcT", run_id=table["run_id"] + "-tuned")
    tuned[["time_per_sample_s", "energy_per_sample_j"]] *= factor
    out = pd.concat([table, tuned], ignore_index=True)
    out[IMPLEMENTATION_COL] = np.where(out["source"] == "srcT", "tuned", "reference")
    return out


def test_tuned_code_gets_its_own_offset_and_reference_stays_the_boosters_level():
    """Same GPUs and graphs measured by reference and tuned code 0.6x the time: the tuned offset learns the
    factor (shrunk by n / (n + CLASS_PRIOR_ROWS)), the reference level is the booster's (offset 0)."""
    rows, feats, targets = prepare(_tuned(0.6), gpu_specs=synth_gpus())
    base_rows, base_feats, base_targets = prepare(_tuned(1.0), gpu_specs=synth_gpus())
    kw = dict(params=FAST["lgbm"], rounds=FAST["rounds"], bound=FAST["bound"])
    fit = fit_time(feats, targets["time"].to_numpy(), sample_weights(rows), rows, **kw)
    base = fit_time(base_feats, base_targets["time"].to_numpy(), sample_weights(base_rows), base_rows, **kw)
    assert fit.implementation_offsets["reference"] == 0.0
    n = int((rows[IMPLEMENTATION_COL] == "tuned").sum())
    shrunk = n / (n + CLASS_PRIOR_ROWS) * math.log(0.6)
    moved = fit.implementation_offsets["tuned"] - base.implementation_offsets["tuned"]
    # backfitting (BACKFIT_ITERATIONS rounds) moves most of the shrunk factor into the offset, never beyond it
    assert shrunk - 0.05 <= moved <= 0.6 * shrunk
    # a prediction for tuned code is that much faster than for reference code on the same rows
    ref = fit.log_residual(feats, "reference")
    tun = fit.log_residual(feats, "tuned")
    assert np.all(tun < ref)
    assert fit.source_offsets and abs(sum(fit.source_offsets.values())) < 1.0


def test_the_residual_is_bounded_whatever_the_booster_says():
    raw = np.array([-50.0, -1.0, 0.0, 0.3, 50.0])
    r = log_time_residual(raw, 0.0, RESIDUAL_BOUND)
    assert np.all(np.abs(r) <= RESIDUAL_BOUND) and np.all(np.diff(r) >= 0) and r[1] < r[2] < r[3]  # monotone
    assert r[2] == 0.0 and r[3] == pytest.approx(0.3, rel=0.05)  # near zero it is the booster's own value
    assert log_time_residual(np.array([0.0]), 0.2, 0.5)[0] == pytest.approx(0.5 * math.tanh(0.4))


@pytest.mark.parametrize("bad", ["fast", "", None, "Reference"])
def test_an_unknown_implementation_is_one_clear_error(bad):
    with pytest.raises(InvalidInputError, match="reference.*tuned"):
        check_implementation(bad)


def test_selection_picks_the_candidate_with_the_best_inner_score():
    rows, feats, targets = prepare(_tuned(0.6), gpu_specs=synth_gpus())
    grid = (FAST, {**FAST, "bound": 0.05}, {**FAST, "rounds": 5})
    chosen = select_time_params(rows, feats, targets, grid=grid)
    scores = [inner_score(rows, feats, targets, p) for p in grid]
    assert len(set(scores)) == 3  # the candidates differ
    best = int(np.argmin(scores))
    assert chosen["candidate"] == best and chosen["inner_median_ape"] == round(scores[best], 3)
    assert {k: chosen[k] for k in FAST} == grid[best]


def test_nested_cv_chooses_inside_each_outer_fold_on_its_training_rows_only():
    seen = {}

    def selector(rows, feats, targets):
        seen[frozenset(rows["gpu"])] = len(rows)
        return FAST

    res = grouped_cv(_tuned(0.6), "gpu", gpu_specs=synth_gpus(), rounds=50, time_params=selector)
    gpus = set(synth_gpus())
    assert set(seen) == {frozenset(gpus - {g}) for g in gpus}  # each held-out GPU absent from its selection
    assert set(res["metrics"]["time_params_chosen"]) == gpus
    t = res["metrics"]["time"]
    assert t["n_rows"] == 192 and set(t["per_gpu"]) == gpus and len(res["oof_time"]) == 192
    assert {"median_ape", "p90_ape", "gpus_with_30_rows"} <= set(t)
