"""The newest phase's log level per epoch after the prior: a conjugate update with one prior (the learned warm-up
model while the run's first epoch starts the data, a heavy-tailed prior otherwise), or partial pooling across
declared phases with priors of their own."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from predictor.prediction import Prediction
from predictor.refinement.params import (
    RefineParams,
    body_mean_sd,
    first_epoch_observation,
    level_posterior,
    t_prior_posterior,
)
from predictor.refinement.phases import phase_observation, pool_phase_levels
from predictor.refinement.segment import (
    OBS_LOG_SIGMA_FLOOR,
    Segmentation,
    huber_location,
    mad_sd,
)


@dataclass
class Level:
    """The newest phase's log level per epoch: prior, observation and posterior (means and variances), and where
    the current phase sits among the declared ones (``pooled``: the joint phase levels, with phase priors)."""

    prior_mu: float
    prior_var: float
    obs_mu: float
    obs_var: float
    post_mu: float
    post_var: float
    cur: int
    bounds: list[int]
    detected_in_cur: list[int]
    in_later_phase: bool
    pooled: tuple[np.ndarray, np.ndarray] | None = None


def estimate_level(prior: Prediction, e: np.ndarray, seg: Segmentation, declared: list[int], pri: Any, prior_rho: float,
           z: float, params: RefineParams, notes: list[str]) -> Level:
    """Conjugate update of the newest phase's log level (partial pooling across phases with phase priors)."""
    n = int(e.size)
    in_later_phase = bool(seg.phase_starts) and seg.stable_start >= seg.phase_starts[-1]
    bounds = [0] + declared
    cur = sum(1 for p in declared if p < n)  # index of the declared phase the last epoch belongs to
    lev = Level(math.log(prior.energy_per_epoch_j), prior.log_sigma**2 if prior.log_sigma > 0 else math.inf,
                 seg.level_log, seg.obs_log_sigma**2 / len(seg.stable_epochs), 0.0, 0.0, cur, bounds,
                 [p for p in seg.detected_phase_starts if p > bounds[cur]], in_later_phase)
    if pri is not None:
        _pooled_level(lev, e, seg, pri, prior_rho, notes)
    else:
        _single_level(lev, prior, e, seg, z, params, notes)
    return lev


def _pooled_level(lev: Level, e: np.ndarray, seg: Segmentation, pri: Any, prior_rho: float,
                  notes: list[str]) -> None:
    """Joint Gaussian over the phases' log levels, conditioned on every measured phase."""
    cur, bounds, n = lev.cur, lev.bounds, int(e.size)
    log_y = np.log(e)
    sig = [q.log_sigma for q in pri]
    if lev.detected_in_cur:  # the current phase changed level inside: its prior describes it less well
        sig[cur] = math.sqrt(sig[cur] ** 2 + (seg.phase_levels_log[-1] - seg.phase_levels_log[-2]) ** 2)
    obs: dict[int, tuple[float, float]] = {cur: (seg.level_log, lev.obs_var)}
    for i in range(cur):
        ob = phase_observation(log_y, [j for j in range(bounds[i], bounds[i + 1]) if j not in seg.warmup_epochs])
        if ob is not None:
            obs[i] = ob
    lev.pooled = pool_phase_levels([math.log(q.energy_per_epoch_j) for q in pri], sig, float(prior_rho), obs)
    lev.prior_mu, lev.prior_var = math.log(pri[cur].energy_per_epoch_j), sig[cur] ** 2
    lev.post_mu, lev.post_var = float(lev.pooled[0][cur]), float(lev.pooled[1][cur, cur])
    if cur > 0:
        notes.append(
            f"declared phase {cur} (from epoch {bounds[cur]}) measured for {n - bounds[cur]} epoch(s): "
            f"projected from its own data and prior ({pri[cur].energy_per_epoch_j:.4g} J/epoch)."
        )


def _single_level(lev: Level, prior: Prediction, e: np.ndarray, seg: Segmentation, z: float,
                  params: RefineParams, notes: list[str]) -> None:
    """One prior for the run: the learned warm-up model while epoch 0 starts the data, a t prior otherwise."""
    if lev.in_later_phase and len(seg.phase_levels_log) >= 2:
        shift = seg.phase_levels_log[-1] - seg.phase_levels_log[0]
        lev.prior_var = lev.prior_var + shift**2
        notes.append(
            f"phase change at epoch {seg.phase_starts[-1]} (level {math.exp(shift) - 1:+.0%}): projecting "
            f"from the newest phase; the prior (an average epoch) is down-weighted."
        )
    obs_mu, obs_sd = _level_observation(np.log(e), seg, lev.in_later_phase, params)
    if first_epoch_modelled(seg, lev.in_later_phase):
        body = np.log(e)[[i for i in seg.stable_epochs if i != 0]]
        post_mu, post_sd = level_posterior(lev.prior_mu, math.sqrt(lev.prior_var), float(np.log(e[0])), body,
                                           params)
        if not body.size:  # a lone first epoch: held inside the prior's interval until a second confirms it
            post_mu, post_sd, held = _held_in_prior(post_mu, post_sd, lev.prior_mu, lev.prior_var, z)
            if held:
                notes.append(held)
            reading = float(np.log(e[0])) - params.warmup_log_mean  # the level if it was a typical warm-up
            post_sd = max(post_sd, abs(reading - post_mu) / z)  # the interval reaches it
    else:
        post_mu, post_sd = t_prior_posterior(lev.prior_mu, math.sqrt(lev.prior_var), obs_mu, obs_sd,
                                             params.prior_t_dof)
    lev.obs_mu, lev.obs_var, lev.post_mu, lev.post_var = obs_mu, obs_sd**2, post_mu, post_sd**2


def _held_in_prior(post_mu: float, post_sd: float, prior_mu: float, prior_var: float, z: float
                   ) -> tuple[float, float, str | None]:
    """A level read from one first epoch, kept inside the prior's interval (``prior_mu`` +- ``z`` prior sd, log
    energy per epoch): ``(level, sd, note)``. One epoch -- start-up, autotuning, a cold cache -- is not evidence
    enough to leave the prior's interval; the sd widens by the distance held back, so the interval still reaches
    what the epoch suggests, and a second epoch lifts the hold."""
    if not math.isfinite(prior_var):
        return post_mu, post_sd, None
    half = z * math.sqrt(prior_var)
    held = min(max(post_mu, prior_mu - half), prior_mu + half)
    if held == post_mu:
        return post_mu, post_sd, None
    note = (f"one epoch measured: it suggests {math.exp(post_mu - prior_mu) - 1:+.0%} per epoch against the prior, "
            f"beyond the prior's interval; the forecast is held at the interval's edge "
            f"({math.exp(held - prior_mu) - 1:+.0%}) until a second epoch confirms it (the interval reaches it).")
    return held, math.hypot(post_sd, post_mu - held), note


def first_epoch_modelled(seg: Segmentation, in_later_phase: bool) -> bool:
    """Whether the run's epoch 0 enters through the warm-up model (it starts the current phase's data)."""
    return not in_later_phase and 0 in (seg.warmup_epochs + seg.stable_epochs[:1])


def _level_observation(
    y: np.ndarray, seg: Segmentation, in_later_phase: bool, params: RefineParams
) -> tuple[float, float]:
    """Log level of the current phase measured by the epochs, and its sd (before the prior).

    In the run's first phase the stable epochs after epoch 0 give it (their mean while few, then a robust
    level; sd from the fitted law); with none yet, epoch 0 does, through the warm-up model (its log energy
    less the mean first-epoch excess, with the excess's spread).
    """
    if not first_epoch_modelled(seg, in_later_phase):
        return seg.level_log, seg.obs_log_sigma / math.sqrt(max(len(seg.stable_epochs), 1))
    body = y[[i for i in seg.stable_epochs if i != 0]]
    if not body.size:
        return first_epoch_observation(float(y[0]), params)
    if body.size < max(params.mean_epochs_below, 3):
        return math.log(float(np.mean(np.exp(body)))), body_mean_sd(body.size, params)
    return huber_location(body, max(mad_sd(body), OBS_LOG_SIGMA_FLOOR)), body_mean_sd(body.size, params)
