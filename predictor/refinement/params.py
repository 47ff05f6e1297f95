"""Learned parts of STEP refinement: first-epoch warm-up, level drift, a heavy-tailed prior, input-bound runs.

:data:`PARAMS` holds constants fitted by ``python -m training_data.fit_refine`` on per-epoch series recovered
from the seaa2023 1 Hz traces (249 whole runs, RTX 3090 / RTX 3070); that script prints a replacement block.
Nothing here imports ``training_data``.

Model (log energy per epoch, ``L`` = steady level of the current phase):

- **Warm-up**: the run's first epoch is ``log e_1 = L + w``, ``w ~ N(warmup_log_mean, warmup_log_sd^2)``
  (start-up, graph tracing, autotuning and cache fills: x1.27 geometric mean, log sd 0.18, on those runs). While
  it is the only epoch it is read as ``L`` plus that excess, so it never counts as steady; once a later epoch
  exists it is left out of ``L`` (on the traces it then adds noise, not information). A lone first epoch is
  weighed by that measured spread with Student-t tails (``first_epoch_t_dof``, a stated choice): a first epoch
  1.5-3x the steady ones (a cold cache, cuDNN autotuning, a slow data-loader start) is mostly read as more warm-up,
  not as a higher level; ``predictor.refine`` also keeps its level inside the prior's interval until a second
  epoch confirms it.
- **Steady epochs**: fewer than ``mean_epochs_below``: their log mean, Student-t around ``L`` with scale
  ``epoch_log_scale x m^-body_sd_decay`` (cut jitter between neighbours cancels in a sum); more: each epoch
  Student-t around ``L`` (scale ``epoch_log_scale``, ``epoch_t_dof`` dof), a robust location. The mean of m
  epochs reads the coming level with sd ``epoch_log_sd x m^-body_sd_decay`` (90 % spread on the traces,
  future drift included), which sizes the interval.
- **Drift**: the future level is ``L + drift_log_per_epoch x (epochs ahead + 1) / 2`` with sd
  ``drift_log_sd`` (run-to-run spread of the late-vs-early level on the traces, beyond epoch noise).
- **Prior**: Student-t with ``prior_t_dof`` degrees of freedom (1: Cauchy) on ``L`` around the prediction,
  scale ``prior.log_sigma``: when the measurements disagree strongly with the prior, the prior yields (a
  Gaussian prior keeps pulling by a fixed fraction of the gap).
- **Interval**: the projected sd is multiplied by ``interval_scale``. ``epoch_t_dof``, ``mean_epochs_below``
  and ``interval_scale`` are chosen by grouped inner-fold CV in the fitting script (leave one (architecture,
  GPU) group out); ``prior_t_dof`` is a stated choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictor.stats import robust_sd


@dataclass(frozen=True)
class RefineParams:
    """Fitted constants of the refinement model (log-energy units; see the module docstring)."""

    warmup_log_mean: float
    warmup_log_sd: float
    epoch_log_sd: float
    body_sd_decay: float
    epoch_log_scale: float
    epoch_t_dof: float
    mean_epochs_below: int
    drift_log_per_epoch: float
    drift_log_sd: float
    prior_t_dof: float
    interval_scale: float
    n_runs: int = 0
    first_epoch_t_dof: float = 3.0
    hot_start_share: float = 0.5
    hot_start_max_ratio: float = 4.0


# fitted by `python -m training_data.fit_refine` (seaa2023, 249 runs, 8 (architecture, GPU) groups)
PARAMS = RefineParams(
    warmup_log_mean=0.2402,
    warmup_log_sd=0.179,
    epoch_log_sd=0.1184,
    body_sd_decay=0.7389,
    epoch_log_scale=0.03432,
    epoch_t_dof=10.0,
    mean_epochs_below=3,
    drift_log_per_epoch=0.0001865,
    drift_log_sd=0.009607,
    prior_t_dof=1.0,
    interval_scale=1.0,
    n_runs=249,
)

INPUT_BOUND_TIME_RATIO = 2.0  # measured epoch time at least 2x the predicted one ...
INPUT_BOUND_POWER_RATIO = 0.6  # ... at most 60 % of the predicted average power: the GPU waits for data


def t_prior_posterior(prior_mu: float, prior_sd: float, obs_mu: float, obs_sd: float, dof: float) -> tuple[float, float]:
    """Posterior mean and sd of a level with a Student-t prior (location, scale, dof) and a normal observation.

    Exact on a grid of 2,001 points spanning both densities (pure, ~0.1 ms). ``dof = inf`` is the conjugate
    normal update.
    """
    if not math.isfinite(prior_sd) or prior_sd <= 0:
        return obs_mu, obs_sd
    if not math.isfinite(dof):
        var = 1.0 / (1.0 / prior_sd**2 + 1.0 / obs_sd**2)
        return var * (prior_mu / prior_sd**2 + obs_mu / obs_sd**2), math.sqrt(var)
    lo = min(prior_mu - 12 * prior_sd, obs_mu - 8 * obs_sd)
    hi = max(prior_mu + 12 * prior_sd, obs_mu + 8 * obs_sd)
    x = np.linspace(lo, hi, 2001)
    log_prior = -(dof + 1) / 2 * np.log1p(((x - prior_mu) / prior_sd) ** 2 / dof)
    log_like = -0.5 * ((x - obs_mu) / obs_sd) ** 2
    w = np.exp(log_prior + log_like - np.max(log_prior + log_like))
    w /= w.sum()
    mean = float(np.sum(w * x))
    return mean, float(math.sqrt(max(np.sum(w * (x - mean) ** 2), 1e-12)))


def _log_t(x: np.ndarray, loc: float, scale: float, dof: float) -> np.ndarray:
    return -(dof + 1) / 2 * np.log1p(((x - loc) / scale) ** 2 / dof)


def _grid_moments(x: np.ndarray, logp: np.ndarray) -> tuple[float, float]:
    w = np.exp(logp - logp.max())
    w /= w.sum()
    mean = float(np.sum(w * x))
    return mean, float(math.sqrt(max(float(np.sum(w * (x - mean) ** 2)), 1e-12)))


def level_posterior(
    prior_mu: float, prior_sd: float, first: float | None, body: np.ndarray, params: RefineParams = PARAMS
) -> tuple[float, float]:
    """Posterior mean and sd of the steady log level ``L`` (exact on a 4,001-point grid; pure).

    Terms: the prior, Student-t (``prior_t_dof``) around ``prior_mu`` with scale ``prior_sd`` (skipped when not
    finite); ``first``, the log energy of the run's first epoch, Student-t (``first_epoch_t_dof``, scale
    ``warmup_log_sd``) around ``L + warmup_log_mean`` (used only while no steady epoch exists: on the traces it no
    longer improves the median error once one does); each
    ``body`` log energy Student-t (``epoch_t_dof``) around ``L`` with scale ``epoch_log_scale`` (or the epochs'
    own robust spread when 5 or more show a larger one); with fewer than ``mean_epochs_below`` (at least 3)
    body epochs, their log mean instead, Student-t with scale ``epoch_log_scale x m^-body_sd_decay``. The mean comes from that model; the sd is the larger
    of its own and that of the same posterior given the log mean of the body, normal with sd
    :func:`body_mean_sd` (the 90 % spread on the traces), so the interval keeps the tails the point model leaves out.
    """
    with_first = first is not None and not body.size  # once steady epochs exist the first adds noise
    centres = list(body) + ([first - params.warmup_log_mean] if with_first else [])
    use_prior = math.isfinite(prior_sd) and prior_sd > 0
    if use_prior:
        centres.append(prior_mu)
    x = np.linspace(min(centres) - 1.5, max(centres) + 1.5, 4001)
    if with_first:  # a lone first epoch: its measured spread, with tails (an unusually hot start is more warm-up),
        # against the prior as a normal: one suspect epoch is the outlier here, not the prior
        base = -0.5 * ((x - prior_mu) / prior_sd) ** 2 if use_prior else np.zeros_like(x)
        return _grid_moments(x, base + first_epoch_loglik(x, first, params))
    base = _log_t(x, prior_mu, prior_sd, params.prior_t_dof) if use_prior else np.zeros_like(x)
    if not body.size:
        return _grid_moments(x, base)
    scale, tail_sd = params.epoch_log_scale, body_mean_sd(body.size, params)
    if body.size >= 5:
        own = robust_sd(body)
        scale, tail_sd = max(scale, own), max(tail_sd, own / math.sqrt(body.size))
    body_mean = math.log(float(np.mean(np.exp(body))))
    if body.size < max(params.mean_epochs_below, 3):  # their mean (cut jitter cancels in the sum); robust later
        like = _log_t(x, body_mean, scale * body.size ** -params.body_sd_decay, params.epoch_t_dof)
    else:
        like = _log_t(x[:, None], body[None, :], scale, params.epoch_t_dof).sum(axis=1)
    mean, sd = _grid_moments(x, base + like)
    _, sd_tail = _grid_moments(x, base - 0.5 * ((body_mean - x) / tail_sd) ** 2)
    return mean, max(sd, sd_tail)


def first_epoch_loglik(x: np.ndarray, first: float, params: RefineParams = PARAMS) -> np.ndarray:
    """Log likelihood of steady log levels ``x`` given a lone first epoch of log energy ``first``: with weight
    ``1 - hot_start_share`` a typical warm-up (excess Student-t, ``first_epoch_t_dof``, around
    ``warmup_log_mean`` with the fitted spread), with weight ``hot_start_share`` a hot start whose excess is
    anywhere in [0, ``log(hot_start_max_ratio)``] (it then says only that the level is below the epoch)."""
    fsd = math.hypot(params.warmup_log_sd, params.epoch_log_scale)
    u = (first - params.warmup_log_mean - x) / fsd
    dof = params.first_epoch_t_dof
    typical = math.exp(math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)) / (math.sqrt(dof * math.pi) * fsd) * (
        1 + u**2 / dof) ** (-(dof + 1) / 2)
    span = math.log(params.hot_start_max_ratio)
    excess = first - x
    hot = np.where((excess >= 0) & (excess <= span), 1.0 / span, 0.0)
    return np.log((1 - params.hot_start_share) * typical + params.hot_start_share * hot + 1e-300)


def body_mean_sd(m: int, params: RefineParams = PARAMS) -> float:
    """sd (tails included) of the log mean of m steady epochs as a reading of the run's coming level."""
    return params.epoch_log_sd * m ** -params.body_sd_decay


def first_epoch_observation(log_e1: float, params: RefineParams = PARAMS) -> tuple[float, float]:
    """The run's first epoch as an observation of the steady log level: (log e1 - mean excess, sd)."""
    return log_e1 - params.warmup_log_mean, math.hypot(params.warmup_log_sd, params.epoch_log_sd)


def drift_terms(epochs_ahead: int, params: RefineParams = PARAMS) -> tuple[float, float]:
    """Mean shift and sd of the average future log level over the next ``epochs_ahead`` epochs."""
    if epochs_ahead <= 0:
        return 0.0, 0.0
    return params.drift_log_per_epoch * (epochs_ahead + 1) / 2.0, params.drift_log_sd


def input_bound_note(
    time_per_epoch_s: float, power_w: float, predicted_time_s: float, predicted_power_w: float
) -> str | None:
    """Warning text when measured epochs look input-bound (long epochs, GPU power far below the prediction)."""
    if predicted_time_s <= 0 or predicted_power_w <= 0:
        return None
    t_ratio = time_per_epoch_s / predicted_time_s
    p_ratio = power_w / predicted_power_w
    if t_ratio >= INPUT_BOUND_TIME_RATIO and p_ratio <= INPUT_BOUND_POWER_RATIO:
        return (
            f"input-bound run: epochs take {t_ratio:.1f}x the predicted compute time at {p_ratio:.0%} of the "
            f"predicted power ({power_w:.0f} W): the GPU waits for data (loader, decoding, storage). The "
            f"projection follows the measured epochs; predict(..., input_samples_per_s=N) prices such a run up front."
        )
    return None
