"""Tests for declared phases and per-phase priors in predictor.refine (partial pooling across phases)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featurize.errors import InvalidInputError
from predictor.prediction import Prediction
from predictor.refinement.phases import PRIOR_RHO, pool_phase_levels
from predictor.refinement.project import refine

Z90 = 1.6448536269514722


def make_prior(per_epoch_j: float, epochs: int = 20, log_sigma: float = 0.25) -> Prediction:
    total = per_epoch_j * epochs
    return Prediction(
        energy_j=total, energy_per_epoch_j=per_epoch_j, energy_per_sample_j=per_epoch_j / 1000,
        time_s=10.0 * epochs, time_per_epoch_s=10.0, avg_power_w=per_epoch_j / 10.0,
        interval_j=(total * math.exp(-Z90 * log_sigma), total * math.exp(Z90 * log_sigma)),
        gpu="NVIDIA A100-SXM4-80GB", epochs=float(epochs), samples_per_epoch=1000, log_sigma=log_sigma,
    )


FROZEN = [50.0, 50.5, 49.5, 50.2, 49.8, 50.0, 50.1, 49.9, 50.0, 50.3]  # 10 cheap epochs


def test_first_epoch_of_declared_phase_starts_its_estimate():
    e = FROZEN + [150.0]
    r = refine(make_prior(100.0), epoch_energies_j=e, total_epochs=20, phases=[10])
    ref = r.refinement
    assert ref["stable_start"] == 10 and ref["outlier_epochs"] == [] and 10 not in ref["warmup_epochs"]
    assert ref["current_phase"] == 1
    # one epoch of data (sd 10 %) against an inflated prior: the data dominate
    assert ref["projected_epoch_energy_j"] == pytest.approx(150.0, rel=0.03)
    assert r.energy_j == pytest.approx(sum(e) + 9 * 150.0, rel=0.03)
    # undeclared, the same lone epoch is an outlier of the frozen level (nothing tells it is a phase)
    honest = refine(make_prior(100.0), epoch_energies_j=e, total_epochs=20)
    assert honest.refinement["projected_epoch_energy_j"] < 60.0


def test_warmup_of_new_phase_needs_two_epochs():
    # first fine-tune epoch 30 % above the phase level (recompile, cache refill)
    one = refine(make_prior(100.0), epoch_energies_j=FROZEN + [195.0], total_epochs=20, phases=[10])
    assert one.refinement["warmup_epochs"] == []  # with one epoch there is nothing to compare it with
    assert one.refinement["projected_epoch_energy_j"] == pytest.approx(195.0, rel=0.05)
    two = refine(make_prior(100.0), epoch_energies_j=FROZEN + [195.0, 150.0], total_epochs=20, phases=[10])
    assert two.refinement["warmup_epochs"] == [10] and two.refinement["stable_start"] == 11
    assert two.refinement["projected_epoch_energy_j"] == pytest.approx(150.0, rel=0.03)
    # a second epoch close to the first: no warm-up, both used
    flat = refine(make_prior(100.0), epoch_energies_j=FROZEN + [152.0, 150.0], total_epochs=20, phases=[10])
    assert flat.refinement["warmup_epochs"] == [] and flat.refinement["stable_epochs"] == 2


def test_pooling_rule_matches_closed_form():
    sig_s, sig_u, rho, obs_var = 0.25, 0.3, 0.5, 0.01
    mean, cov = pool_phase_levels([0.0, 1.0], [sig_s, sig_u], rho, {0: (0.2, obs_var)})
    gain = rho * sig_s * sig_u / (sig_s**2 + obs_var)
    assert mean[1] == pytest.approx(1.0 + gain * 0.2)
    assert cov[1, 1] == pytest.approx(sig_u**2 * (1 - rho**2 * sig_s**2 / (sig_s**2 + obs_var)))
    assert mean[0] == pytest.approx(0.2 * sig_s**2 / (sig_s**2 + obs_var))  # the usual conjugate update
    m0, c0 = pool_phase_levels([0.0, 1.0], [sig_s, sig_u], 0.0, {0: (0.2, obs_var)})
    assert m0[1] == pytest.approx(1.0) and c0[1, 1] == pytest.approx(sig_u**2)


def test_unseen_phase_uses_its_own_prior_shifted_by_rho():
    frozen_prior, ft_prior = make_prior(40.0), make_prior(120.0)
    kw = {"epoch_energies_j": FROZEN[:5], "total_epochs": 20, "phases": [10],
          "phase_priors": [frozen_prior, ft_prior]}
    r = refine(make_prior(80.0), **kw)
    ref = r.refinement
    assert ref["phase_priors_used"] and ref["prior_rho"] == PRIOR_RHO and ref["current_phase"] == 0
    frozen_level, ft_level = ref["phase_projected_epoch_energy_j"]
    assert frozen_level == pytest.approx(50.0, rel=0.01)
    # measured/predicted = 1.25 on the frozen phase; well measured -> fine-tune prior x ~1.25^0.5
    assert ft_level == pytest.approx(120.0 * 1.25**PRIOR_RHO, rel=0.01)
    assert r.energy_j == pytest.approx(sum(FROZEN[:5]) + 5 * frozen_level + 10 * ft_level, rel=1e-6)
    assert r.interval_j[0] < r.energy_j < r.interval_j[1]
    assert any("own prior" in w and "rho=0.5" in w for w in r.warnings)
    # rho = 0: the seen phase says nothing about the unseen one
    r0 = refine(make_prior(80.0), prior_rho=0.0, **kw)
    assert r0.refinement["phase_projected_epoch_energy_j"][1] == pytest.approx(120.0, rel=1e-9)
    # ... and its interval is wider than with pooling (sd 0.25 vs 0.25 * sqrt(1 - rho^2))
    assert r0.interval_j[1] / r0.interval_j[0] > r.interval_j[1] / r.interval_j[0]


def test_phase_priors_once_new_phase_is_measured():
    pri = [make_prior(40.0), make_prior(120.0)]
    e = FROZEN + [150.0, 151.0, 149.0]
    r = refine(make_prior(80.0), epoch_energies_j=e, total_epochs=20, phases=[10], phase_priors=pri)
    ref = r.refinement
    assert ref["current_phase"] == 1 and ref["stable_start"] == 10
    assert ref["projected_epoch_energy_j"] == pytest.approx(150.0, rel=0.02)
    assert r.energy_j == pytest.approx(sum(e) + 7 * ref["projected_epoch_energy_j"], rel=1e-9)
    # both phases measure ~25 % above their priors: with correlated priors (rho 0.5) the frozen phase's
    # evidence pulls the fine-tune level further towards the data than its own 3 epochs do (rho 0)
    r0 = refine(make_prior(80.0), epoch_energies_j=e, total_epochs=20, phases=[10], phase_priors=pri, prior_rho=0.0)
    assert r0.refinement["projected_epoch_energy_j"] < ref["projected_epoch_energy_j"] < 150.0 * 1.001


def test_backward_compatible_call_without_phase_priors():
    r = refine(make_prior(100.0), epoch_energies_j=[100.0, 101.0, 99.0])
    assert r.refinement["phase_priors_used"] is False and r.refinement["method"] == "step-robust-conjugate-v1"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"phase_priors": [make_prior(1.0), make_prior(2.0)]}, "needs declared phases"),
        ({"phases": [5], "phase_priors": [make_prior(1.0)]}, "one Prediction per phase"),
        ({"phases": [8, 5], "phase_priors": [make_prior(1.0)] * 3}, "strictly increasing"),
        ({"phases": [5], "phase_priors": [make_prior(1.0), {"energy_per_epoch_j": 2.0}]}, "phase_priors[1]"),
        ({"phases": [5], "phase_priors": [make_prior(1.0), make_prior(2.0, log_sigma=0.0)]}, "log_sigma"),
        ({"prior_rho": 1.0}, "prior_rho"),
        ({"prior_rho": -0.1}, "prior_rho"),
    ],
)
def test_phase_prior_bad_input(kwargs, fragment):
    with pytest.raises(InvalidInputError) as info:
        refine(make_prior(100.0), epoch_energies_j=[100.0, 100.0], **kwargs)
    assert fragment in str(info.value)


def test_pooling_improves_unseen_phase_on_correlated_synthetic_priors():
    """Monte Carlo: with truly correlated prior errors (rho 0.5), pooling beats the raw phase prior."""
    rng = np.random.default_rng(3)
    err_pooled, err_raw = [], []
    for _ in range(200):
        z1, z2 = rng.standard_normal(2)
        d_f, d_u = 0.25 * z1, 0.25 * (0.5 * z1 + math.sqrt(0.75) * z2)
        pri = [make_prior(50.0 * math.exp(-d_f)), make_prior(150.0 * math.exp(-d_u))]
        r = refine(make_prior(100.0), epoch_energies_j=FROZEN[:5], total_epochs=20, phases=[10], phase_priors=pri)
        err_pooled.append(abs(math.log(r.refinement["phase_projected_epoch_energy_j"][1] / 150.0)))
        err_raw.append(abs(d_u))
    assert np.median(err_pooled) < 0.95 * np.median(err_raw)
