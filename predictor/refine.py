"""STEP refinement: update a prior :class:`~predictor.prediction.Prediction` from measured epochs.

Public entry points:

- :func:`refine` — from per-epoch energies (and optionally times) of the epochs run so far.
- :func:`refine_from_trace` — from a power trace (timestamps, watts) plus epoch end times; the trace is
  integrated per epoch with the trapezoid rule, then :func:`refine` is applied.
- :func:`segment_epochs` — the pure steady-state analysis (warm-up, phase changes, outliers) both use.

Method (all in log energy):

0. **Learned model** (:mod:`predictor.refine_model`, constants fitted on 249 traced runs): in the run's first
   phase epoch 0 is never taken as steady. While it is the only epoch, the steady level is read from it through
   the fitted first-epoch excess distribution; from the second epoch on, from the later epochs (their mean
   while few, a Student-t location after). The prior enters as a Cauchy, so epochs far from it override it.
1. **Warm-up**: up to ``MAX_WARMUP_EPOCHS`` leading epochs of the run (and the first epoch of a newly
   detected phase) that sit markedly above the later level (> max(``WARMUP_MIN_LOG``, 3 robust sd)) are
   excluded from the steady-state estimate.
2. **Phase change**: binary segmentation on log energies with a median/MAD two-sample test (each side at
   least ``MIN_PHASE_EPOCHS`` epochs; the shift must exceed both ``PHASE_MIN_LOG`` and 5 robust sd). The
   projection uses the newest stable phase. Users who know their schedule (e.g. "10 frozen-backbone epochs,
   then fine-tuning") declare it with ``phases=[10]``: an epoch inside a newly started declared phase starts
   that phase's estimate at once (it is never an outlier of the previous phase). The first epoch of a new
   phase can be judged a warm-up only once the phase has >= 2 epochs (with one there is nothing to compare
   it with, so it is used as measured, with the conservative few-epochs sd).
3. **Level**: a Huber M-estimate of the newest phase's log level (robust to single outlier epochs); its
   observation sd is the MAD-based spread with a floor of ``OBS_LOG_SIGMA_FLOOR`` (1.5 %), or a
   conservative ``FEW_EPOCHS_LOG_SIGMA`` when fewer than 3 stable epochs exist.
4. **Prior**: conjugate-normal update of that level with N(log prior.energy_per_epoch_j, prior.log_sigma²).
   After a phase change the prior (which describes the run's average epoch) is less relevant to the newest
   phase: its variance is inflated by the square of the observed log level shift, so the data dominate.
5. **Total** = measured energy so far (warm-up and outliers included: they were really spent)
   + projected per-epoch energy x remaining epochs of the current phase
   + for declared phases not yet reached, the prior's remaining budget (prior average x total epochs minus
   what the known phases account for), split evenly over their epochs.
   The future level is shifted by the fitted drift and its sd widened by the drift actually observed
   (:mod:`predictor.refine_model`); the interval's sd is scaled by the fitted ``interval_scale``.
   ``total_epochs=None`` (early stopping): the point estimate assumes the prior's run length (clipped to the
   plausible range) and the interval spans stopping now ... running to ``max_epochs`` (or the prior's
   ``epochs``), stated in ``refinement["total_epochs_range"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

from featurize.errors import InvalidInputError
from predictor.prediction import Prediction
from predictor.refine_model import (
    PARAMS,
    RefineParams,
    body_mean_sd,
    drift_terms,
    first_epoch_observation,
    input_bound_note,
    level_posterior,
    t_prior_posterior,
)

MAX_WARMUP_EPOCHS = 1  # on 249 traced runs epoch 2 is no costlier than later ones (log excess -0.02, sd 0.10)
WARMUP_MIN_LOG = 0.05  # a warm-up epoch is at least ~5 % above the steady level
PHASE_MIN_LOG = 0.08  # a phase change shifts the level by at least ~8 %
PHASE_MIN_SD = 5.0  # ... and by at least 5 robust sd of the epoch-to-epoch spread
MIN_PHASE_EPOCHS = 2  # a single odd epoch is an outlier, not a phase
OBS_LOG_SIGMA_FLOOR = 0.015  # epoch-to-epoch sd never assumed below 1.5 %
FEW_EPOCHS_LOG_SIGMA = 0.10  # sd assumed for one/two stable epochs (warm-up may hide in them)
HUBER_K = 1.345
PRIOR_RHO = 0.5  # assumed correlation of the prior's log errors across phases (same GPU / system / code)
METHOD = "step-robust-conjugate-v1"
METHOD_PHASE_PRIORS = "step-robust-pooled-phase-priors-v1"


# --------------------------------------------------------------------------- validation


def _as_positive_array(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{name} must be a sequence of numbers; got {values!r}.") from err
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be a flat sequence (one value per epoch); got shape {arr.shape}.")
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty: pass the measured value of at least one finished epoch.")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        i = int(bad[0])
        raise InvalidInputError(
            f"{name}[{i}] = {float(arr[i])!r}: every epoch value must be a finite number > 0 "
            f"({bad.size} bad value(s)); drop or re-measure those epochs."
        )
    return arr


def _check_epoch_count(value: Any, name: str, n_measured: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not float(value).is_integer():
        raise InvalidInputError(f"{name} must be a whole number of epochs; got {value!r}.")
    value = int(value)
    if value < n_measured:
        raise InvalidInputError(
            f"{name}={value} is smaller than the {n_measured} epochs already measured; "
            f"pass {name} >= {n_measured} (or None if unknown)."
        )
    return value


# --------------------------------------------------------------------------- robust statistics


def _mad_sd(y: np.ndarray) -> float:
    if y.size < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(y - np.median(y))))


def _huber_location(y: np.ndarray, scale: float) -> float:
    """Huber M-estimate of location (IRLS), starting from the median."""
    mu = float(np.median(y))
    if y.size < 3 or scale <= 0:
        return mu if y.size != 2 else float(np.mean(y))
    for _ in range(50):
        r = (y - mu) / scale
        w = np.minimum(1.0, HUBER_K / np.maximum(np.abs(r), 1e-12))
        new = float(np.sum(w * y) / np.sum(w))
        if abs(new - mu) < 1e-10:
            break
        mu = new
    return mu


def _noise_sd(y: np.ndarray) -> float:
    """Epoch-to-epoch sd from successive differences (robust to level shifts), with the floor."""
    if y.size < 5:  # too few differences to tell noise from a warm-up step
        return OBS_LOG_SIGMA_FLOOR
    d = np.diff(y)
    return max(float(1.4826 * np.median(np.abs(d - np.median(d)))) / math.sqrt(2), OBS_LOG_SIGMA_FLOOR)


def _best_split(y: np.ndarray, noise: float) -> int | None:
    """Index of the most significant level shift in ``y`` (start of the right part), or None.

    Among splits whose median shift passes the test, the one with the least absolute deviation from the
    two segment medians (robust L1 cost) wins, so a lone outlier next to the boundary does not move it.
    """
    n = y.size
    best, best_cost = None, math.inf
    for s in range(MIN_PHASE_EPOCHS, n - MIN_PHASE_EPOCHS + 1):
        left, right = y[:s], y[s:]
        shift = abs(float(np.median(right) - np.median(left)))
        # a shift, not a ramp or a lone outlier: large against the noise and the within-segment spread
        scale = max(noise, _mad_sd(left), _mad_sd(right))
        if shift < max(PHASE_MIN_LOG, PHASE_MIN_SD * scale):
            continue
        cost = float(np.abs(left - np.median(left)).sum() + np.abs(right - np.median(right)).sum())
        if cost < best_cost:
            best, best_cost = s, cost
    return best


def _change_points(y: np.ndarray, noise: float, offset: int = 0) -> list[int]:
    s = _best_split(y, noise)
    if s is None:
        return []
    return _change_points(y[:s], noise, offset) + [offset + s] + _change_points(y[s:], noise, offset + s)


def _warmup(y: np.ndarray, noise: float, start: int, stop: int, limit: int) -> list[int]:
    """Leading epochs of y[start:stop] markedly above the level of the rest of that segment."""
    out: list[int] = []
    for i in range(start, min(start + limit, stop - 1)):
        rest = y[i + 1 : stop]
        if y[i] - float(np.median(rest)) > max(WARMUP_MIN_LOG, 3.0 * noise):
            out.append(i)
        else:
            break
    return out


@dataclass(frozen=True)
class Segmentation:
    """Result of :func:`segment_epochs` (indices are 0-based epoch numbers)."""

    warmup_epochs: list[int]
    phase_starts: list[int]  # every phase start after epoch 0 (detected or declared)
    detected_phase_starts: list[int]
    stable_start: int  # first epoch used for the steady-state level
    stable_epochs: list[int] = field(default_factory=list)
    level_log: float = 0.0  # robust log level of the newest stable phase
    obs_log_sigma: float = FEW_EPOCHS_LOG_SIGMA  # epoch-to-epoch sd of log energy used as observation noise
    outliers: list[int] = field(default_factory=list)
    phase_levels_log: list[float] = field(default_factory=list)  # one per measured phase, in order


def segment_epochs(epoch_energies_j: Sequence[float], *, phases: Sequence[int] = ()) -> Segmentation:
    """Warm-up, phase changes and the robust steady level of measured epoch energies (pure)."""
    e = _as_positive_array(epoch_energies_j, "epoch_energies_j")
    y = np.log(e)
    n = y.size
    noise = _noise_sd(y)
    declared = sorted({int(p) for p in phases if 0 < int(p) < n})
    # warm-up at the start of the run (before phase detection, so it is not mistaken for a phase)
    first_stop = declared[0] if declared else n
    warm = _warmup(y, noise, 0, first_stop, MAX_WARMUP_EPOCHS)
    body_start = warm[-1] + 1 if warm else 0
    # detected change points inside each declared segment
    bounds = [body_start] + declared + [n]
    detected: list[int] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b - a >= 2 * MIN_PHASE_EPOCHS:
            detected += _change_points(y[a:b], noise, a)
    starts = sorted(set(declared) | set(detected))
    last = starts[-1] if starts else body_start
    # the first epoch of a new phase (recompile, cache refill) may itself be a warm-up epoch
    if starts:
        warm += _warmup(y, noise, last, n, 1)
    stable_start = warm[-1] + 1 if warm and warm[-1] >= last else last
    stable = np.arange(stable_start, n)
    ys = y[stable]
    spread = _mad_sd(ys) if ys.size >= 3 else 0.0
    obs = max(spread, OBS_LOG_SIGMA_FLOOR) if ys.size >= 3 else FEW_EPOCHS_LOG_SIGMA
    level = _huber_location(ys, max(spread, OBS_LOG_SIGMA_FLOOR))
    outliers = [int(i) for i in stable if ys.size >= 3 and abs(y[i] - level) > 4 * obs]
    phase_bounds = [body_start] + starts + [n]
    levels = [float(np.median(y[a:b])) for a, b in zip(phase_bounds[:-1], phase_bounds[1:]) if b > a]
    return Segmentation(
        warmup_epochs=[int(i) for i in warm],
        phase_starts=starts,
        detected_phase_starts=sorted(detected),
        stable_start=int(stable_start),
        stable_epochs=[int(i) for i in stable],
        level_log=float(level),
        obs_log_sigma=float(obs),
        outliers=outliers,
        phase_levels_log=levels,
    )


# --------------------------------------------------------------------------- per-phase priors


def _check_phase_priors(
    phase_priors: Sequence[Prediction] | None, phases: Sequence[int] | None, rho: Any
) -> list[Prediction] | None:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not (0.0 <= float(rho) < 1.0):
        raise InvalidInputError(f"prior_rho must be a number in [0, 1) (correlation of phase prior errors); got {rho!r}.")
    if phase_priors is None:
        return None
    pri = list(phase_priors)
    raw = [int(p) for p in (phases or ())]
    if not raw:
        raise InvalidInputError(
            "phase_priors needs declared phases: pass phases=[start of phase 2, ...] with one prior per phase "
            "(len(phase_priors) == len(phases) + 1)."
        )
    if raw != sorted(set(raw)):
        raise InvalidInputError(
            f"with phase_priors, phases must be strictly increasing epoch indices (one prior per phase, in order); "
            f"got {raw}."
        )
    if len(pri) != len(raw) + 1:
        raise InvalidInputError(
            f"phase_priors has {len(pri)} prior(s) but phases={raw} declares {len(raw) + 1} phases: give one "
            f"Prediction per phase, in order."
        )
    for i, q in enumerate(pri):
        if not isinstance(q, Prediction):
            raise InvalidInputError(f"phase_priors[{i}] must be a predictor.Prediction; got {type(q).__name__}.")
        if not (math.isfinite(q.energy_per_epoch_j) and q.energy_per_epoch_j > 0):
            raise InvalidInputError(f"phase_priors[{i}].energy_per_epoch_j must be > 0; got {q.energy_per_epoch_j!r}.")
        if not (math.isfinite(q.log_sigma) and q.log_sigma > 0):
            raise InvalidInputError(
                f"phase_priors[{i}].log_sigma must be > 0 (the prior's uncertainty); got {q.log_sigma!r}: use a "
                f"Prediction from predict(), whose interval sets it."
            )
    return pri


def _phase_observation(y: np.ndarray, idx: Sequence[int]) -> tuple[float, float] | None:
    """Robust log level of the epochs ``idx`` and its variance (sd^2 / n), or None when there are none."""
    ys = y[list(idx)]
    if ys.size == 0:
        return None
    spread = _mad_sd(ys) if ys.size >= 3 else 0.0
    sd = max(spread, OBS_LOG_SIGMA_FLOOR) if ys.size >= 3 else FEW_EPOCHS_LOG_SIGMA
    return _huber_location(ys, max(spread, OBS_LOG_SIGMA_FLOOR)), sd**2 / ys.size


def pool_phase_levels(
    prior_log_means: Sequence[float],
    prior_log_sigmas: Sequence[float],
    rho: float,
    observations: dict[int, tuple[float, float]],
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance of the phases' log levels (pure; the partial-pooling rule).

    Prior: theta ~ N(m, S), S_pq = rho sigma_p sigma_q (p != q), S_pp = sigma_p^2. Observations: phase p's
    robust level ``observations[p] = (level, variance)``. Returns the Gaussian conditional of theta.
    """
    m = np.asarray(prior_log_means, dtype=float)
    sig = np.asarray(prior_log_sigmas, dtype=float)
    cov = rho * np.outer(sig, sig)
    np.fill_diagonal(cov, sig**2)
    seen = sorted(observations)
    if not seen:
        return m, cov
    a = cov[np.ix_(seen, seen)] + np.diag([observations[i][1] for i in seen])
    d = np.array([observations[i][0] for i in seen]) - m[seen]
    gain = np.linalg.solve(a, cov[seen, :]).T  # cov[:, seen] @ a^-1 (a symmetric)
    return m + gain @ d, cov - gain @ cov[seen, :]


# --------------------------------------------------------------------------- refinement


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def refine(
    prior: Prediction,
    *,
    epoch_energies_j: Sequence[float],
    total_epochs: int | None = None,
    epoch_times_s: Sequence[float] | None = None,
    max_epochs: int | None = None,
    phases: Sequence[int] | None = None,
    phase_priors: Sequence[Prediction] | None = None,
    prior_rho: float = PRIOR_RHO,
    params: RefineParams = PARAMS,
) -> Prediction:
    """Refine ``prior`` with the energies (J) of the epochs run so far, in order.

    Args:
        prior: the pre-training :class:`Prediction` (its ``energy_per_epoch_j`` and ``log_sigma`` are used).
        epoch_energies_j: measured energy of each finished epoch, joules (> 0, finite).
        total_epochs: the run's planned number of epochs; ``None`` when early stopping decides.
        epoch_times_s: optional wall time of each finished epoch, seconds (same length).
        max_epochs: upper end of the plausible run length when ``total_epochs`` is None
            (default: the prior's ``epochs``).
        phases: declared epoch indices where a new phase starts (e.g. ``[10]`` for 10 frozen-backbone
            epochs then fine-tuning); phases not yet reached are projected from the prior's budget, or
            from their own prior when ``phase_priors`` is given.
        phase_priors: optional per-phase priors, one per declared phase in order (``len(phases) + 1``),
            e.g. ``[predict(m, ..., frozen=["backbone."]), predict(m, ...)]``; their
            ``energy_per_epoch_j`` and ``log_sigma`` are used. ``prior`` still sets the run length and
            the returned fields.
        prior_rho: correlation of the phase priors' log errors, in [0, 1) (default ``PRIOR_RHO`` = 0.5);
            0 means a seen phase says nothing about an unseen one.
        params: the fitted warm-up / drift / prior-tail constants (:data:`predictor.refine_model.PARAMS`).

    Returns:
        A new :class:`Prediction` whose ``refinement`` dict says what was measured and assumed.
    """
    if not isinstance(prior, Prediction):
        raise InvalidInputError(f"prior must be a predictor.Prediction; got {type(prior).__name__}.")
    e = _as_positive_array(epoch_energies_j, "epoch_energies_j")
    n = int(e.size)
    times = None
    if epoch_times_s is not None:
        times = _as_positive_array(epoch_times_s, "epoch_times_s")
        if times.size != n:
            raise InvalidInputError(
                f"epoch_times_s has {times.size} values but epoch_energies_j has {n}: give one time per epoch."
            )
    total_epochs = _check_epoch_count(total_epochs, "total_epochs", n)
    max_epochs = _check_epoch_count(max_epochs, "max_epochs", n)
    declared = sorted({int(p) for p in (phases or ())})
    if any(p <= 0 for p in declared):
        raise InvalidInputError(f"phases must be epoch indices > 0 where a new phase starts; got {list(phases)}.")
    if not (prior.energy_per_epoch_j > 0 and math.isfinite(prior.energy_per_epoch_j)):
        raise InvalidInputError(f"prior.energy_per_epoch_j must be > 0; got {prior.energy_per_epoch_j!r}.")
    pri = _check_phase_priors(phase_priors, phases, prior_rho)

    warnings = list(prior.warnings)
    seg = segment_epochs(e, phases=declared)
    z = _z(prior.interval_level)

    # --- conjugate-normal update of the newest phase's log level
    prior_mu = math.log(prior.energy_per_epoch_j)
    prior_var = prior.log_sigma**2 if prior.log_sigma > 0 else math.inf
    in_later_phase = bool(seg.phase_starts) and seg.stable_start >= seg.phase_starts[-1]
    n_stable = len(seg.stable_epochs)
    obs_var = seg.obs_log_sigma**2 / n_stable
    bounds = [0] + declared
    cur = sum(1 for p in declared if p < n)  # index of the declared phase the last epoch belongs to
    detected_in_cur = [p for p in seg.detected_phase_starts if p > bounds[cur]]
    pooled: tuple[np.ndarray, np.ndarray] | None = None
    if pri is not None:
        # joint Gaussian over the phases' log levels, conditioned on every measured phase (partial pooling)
        log_y = np.log(e)
        sig = [q.log_sigma for q in pri]
        if detected_in_cur:  # the current phase changed level inside: its prior describes it less well
            sig[cur] = math.sqrt(sig[cur] ** 2 + (seg.phase_levels_log[-1] - seg.phase_levels_log[-2]) ** 2)
        obs: dict[int, tuple[float, float]] = {cur: (seg.level_log, obs_var)}
        for i in range(cur):
            ob = _phase_observation(log_y, [j for j in range(bounds[i], bounds[i + 1]) if j not in seg.warmup_epochs])
            if ob is not None:
                obs[i] = ob
        pooled = pool_phase_levels([math.log(q.energy_per_epoch_j) for q in pri], sig, float(prior_rho), obs)
        prior_mu, prior_var = math.log(pri[cur].energy_per_epoch_j), sig[cur] ** 2
        post_mu, post_var = float(pooled[0][cur]), float(pooled[1][cur, cur])
        if cur > 0:
            warnings.append(
                f"declared phase {cur} (from epoch {bounds[cur]}) measured for {n - bounds[cur]} epoch(s): "
                f"projected from its own data and prior ({pri[cur].energy_per_epoch_j:.4g} J/epoch)."
            )
    else:
        if in_later_phase and len(seg.phase_levels_log) >= 2:
            shift = seg.phase_levels_log[-1] - seg.phase_levels_log[0]
            prior_var = prior_var + shift**2
            warnings.append(
                f"phase change at epoch {seg.phase_starts[-1]} (level {math.exp(shift) - 1:+.0%}): projecting "
                f"from the newest phase; the prior (an average epoch) is down-weighted."
            )
        obs_mu, obs_sd = _level_observation(np.log(e), seg, in_later_phase, params)
        if _first_epoch_modelled(seg, in_later_phase):
            body = np.log(e)[[i for i in seg.stable_epochs if i != 0]]
            post_mu, post_sd = level_posterior(prior_mu, math.sqrt(prior_var), float(np.log(e[0])), body, params)
            if not body.size:  # a lone first epoch: held inside the prior's interval until a second confirms it
                post_mu, post_sd, held = _held_in_prior(post_mu, post_sd, prior_mu, prior_var, z)
                if held:
                    warnings.append(held)
                reading = float(np.log(e[0])) - params.warmup_log_mean  # the level if it was a typical warm-up
                post_sd = max(post_sd, abs(reading - post_mu) / z)  # the interval reaches it
        else:
            post_mu, post_sd = t_prior_posterior(prior_mu, math.sqrt(prior_var), obs_mu, obs_sd, params.prior_t_dof)
        post_var = post_sd**2
        obs_var = obs_sd**2
    if pri is None and abs(prior_mu - obs_mu) > 1e-9:  # share of the way from the epochs to the prior
        prior_weight = min(max((post_mu - obs_mu) / (prior_mu - obs_mu), 0.0), 1.0)
    else:
        prior_weight = post_var / prior_var if math.isfinite(prior_var) else 0.0
    check_gap = (not detected_in_cur) if pri is not None else (
        not in_later_phase and not any(p >= n for p in declared)
    )
    unit_note = _unit_warning(seg.level_log, prior.energy_per_epoch_j)
    if unit_note:
        warnings.append(unit_note)
    if check_gap and math.isfinite(prior_var) and not unit_note:
        gap = (seg.level_log if n_stable >= 3 or pri is not None else obs_mu) - prior_mu
        if abs(gap) > z * math.sqrt(prior_var + obs_var):
            hint = (
                "the phase's prior may be off for this setup." if pri is not None
                else "if the run will change phase later (e.g. unfreezing a backbone), declare it with phases=[epoch]."
            )
            warnings.append(f"measured epochs are {math.exp(gap) - 1:+.0%} off the prior, outside its interval: {hint}")
    if seg.warmup_epochs:
        warnings.append(f"warm-up epoch(s) {seg.warmup_epochs} excluded from the steady-state level.")
    level_from = "phase epochs"
    if pri is None and _first_epoch_modelled(seg, in_later_phase):
        level_from = "first epoch (warm-up model)" if n == 1 else "epochs after the first"
        if n == 1:
            warnings.append(
                f"one epoch measured: it is read as a warm-up epoch (typical first-epoch excess "
                f"x{math.exp(params.warmup_log_mean):.2f}, log sd {params.warmup_log_sd:.2f}), not as a steady one."
            )
    if seg.outliers:
        warnings.append(f"outlier epoch(s) {seg.outliers} down-weighted (Huber).")

    # --- run length
    measured_j = float(e.sum())
    if total_epochs is not None:
        n_lo = n_hi = n_point = total_epochs
        length_note = "given"
    else:
        n_hi = max_epochs if max_epochs is not None else max(n, int(math.ceil(prior.epochs)))
        n_lo = n
        n_point = int(min(max(round(prior.epochs), n), n_hi))
        length_note = "max_epochs" if max_epochs is not None else "prior.epochs"
        if n_hi <= n:
            warnings.append(
                f"total_epochs unknown and the plausible maximum ({n_hi}) is not above the {n} epochs measured: "
                f"the projection assumes the run ends now; pass max_epochs= to widen it."
            )
        else:
            warnings.append(
                f"total_epochs unknown: point estimate assumes {n_point} epochs ({length_note}); the interval "
                f"spans stopping now ({n}) to {n_hi} epochs."
            )

    future = [p for p in declared if p >= n]  # declared phases not yet started
    # mean energy of the current phase's coming epochs (measured level + the fitted drift over them)
    shift_pt = drift_terms(min([p for p in future if p < n_point] + [n_point]) - n, params)[0]
    per_epoch_j = math.exp(post_mu + shift_pt)

    def project(n_total: int, q: float) -> float:
        """Total energy for a run of n_total epochs at normal quantile q of the level uncertainty."""
        remaining = n_total - n
        if remaining <= 0:
            return measured_j
        cur_end = min([p for p in future if p < n_total] + [n_total])
        r_cur = cur_end - n
        shift, drift_sd = drift_terms(r_cur, params)
        var_cur = post_var + drift_sd**2 + seg.obs_log_sigma**2 / max(r_cur, 1)
        total = measured_j + r_cur * math.exp(post_mu + shift + q * params.interval_scale * math.sqrt(var_cur))
        r_fut = n_total - cur_end
        if r_fut > 0 and pooled is not None:
            for u in range(cur + 1, len(bounds)):  # each unseen phase at its pooled level
                r_u = min(bounds[u + 1] if u + 1 < len(bounds) else n_total, n_total) - bounds[u]
                if r_u > 0:
                    var_u = float(pooled[1][u, u]) + params.drift_log_sd**2 + seg.obs_log_sigma**2 / r_u
                    total += r_u * math.exp(float(pooled[0][u]) + q * params.interval_scale * math.sqrt(var_u))
        elif r_fut > 0:
            budget, sd = _future_budget(prior, n_total, n, e, per_epoch_j, cur_end, r_fut)
            total += budget * math.exp(q * sd)
        return total

    point = project(n_point, 0.0)
    lo = project(n_lo, -z)
    hi = project(n_hi, z)
    if future and n_point > min(future) and pooled is not None:
        m_pri, m_post = math.log(pri[cur + 1].energy_per_epoch_j), float(pooled[0][cur + 1])
        warnings.append(
            f"declared phase from epoch {min(future)} not measured yet: projected from its own prior "
            f"({pri[cur + 1].energy_per_epoch_j:.4g} J/epoch) shifted {math.exp(m_post - m_pri) - 1:+.1%} by the "
            f"measured/predicted ratio of the phase(s) seen (partial pooling, rho={float(prior_rho):g})."
        )
    elif future and n_point > min(future):
        r_fut = n_point - min(future)
        budget, _ = _future_budget(prior, n_point, n, e, per_epoch_j, min(future), r_fut)
        warnings.append(
            f"declared phase from epoch {min(future)} not measured yet: its {r_fut} epochs are projected from the "
            f"prior's remaining budget ({budget / r_fut:.4g} J/epoch)."
        )

    # --- time
    time_per_epoch_s = prior.time_per_epoch_s
    if times is not None:
        t_stable = times[seg.stable_epochs]
        time_per_epoch_s = float(np.median(t_stable))
        steady = [i for i in seg.stable_epochs if i != 0]  # a first epoch's start-up also looks slow and cool
        if steady:
            t_med = float(np.median(times[steady]))
            note = input_bound_note(t_med, float(np.median(e[steady] / times[steady])), prior.time_per_epoch_s,
                                    prior.avg_power_w)
            if note:
                warnings.append(note)
        time_s = float(times.sum()) + time_per_epoch_s * (n_point - n)
    else:
        time_s = prior.time_per_epoch_s * n_point
    avg_power_w = point / time_s if time_s > 0 else prior.avg_power_w
    log_sigma = (math.log(hi) - math.log(lo)) / (2 * z) if lo > 0 and hi > lo else 0.0

    refinement: dict[str, Any] = {
        "method": METHOD if pooled is None else METHOD_PHASE_PRIORS,
        "epochs_measured": n,
        "measured_energy_j": measured_j,
        "warmup_epochs": seg.warmup_epochs,
        "stable_start": seg.stable_start,
        "stable_epochs": len(seg.stable_epochs),
        "phase_change_at": seg.phase_starts[-1] if seg.phase_starts else None,
        "phase_starts": seg.phase_starts,
        "detected_phase_starts": seg.detected_phase_starts,
        "declared_phases": declared,
        "outlier_epochs": seg.outliers,
        "projected_epoch_energy_j": per_epoch_j,
        "measured_epoch_energy_j": math.exp(seg.level_log),
        "obs_log_sigma": seg.obs_log_sigma,
        "prior_energy_per_epoch_j": prior.energy_per_epoch_j,
        "prior_log_sigma": prior.log_sigma,
        "prior_weight": prior_weight,
        "total_epochs_assumed": n_point,
        "total_epochs_range": [n_lo, n_hi],
        "total_epochs_source": length_note,
        "prior_energy_j": prior.energy_j,
        "current_phase": cur,
        "phase_priors_used": pooled is not None,
        "prior_rho": float(prior_rho) if pooled is not None else None,
        "phase_projected_epoch_energy_j": (
            [math.exp(float(v) + (shift_pt if i == cur else 0.0)) for i, v in enumerate(pooled[0])]
            if pooled is not None else None
        ),
        "drift_log_shift": shift_pt,
        "level_from": level_from,
    }
    spe = prior.samples_per_epoch or 1
    return prior.replace(
        energy_j=point,
        energy_per_epoch_j=per_epoch_j,
        energy_per_sample_j=per_epoch_j / spe,
        time_s=time_s,
        time_per_epoch_s=time_per_epoch_s,
        avg_power_w=avg_power_w,
        interval_j=(lo, hi),
        epochs=float(n_point),
        log_sigma=log_sigma,
        warnings=warnings,
        refinement=refinement,
    )


UNIT_RATIO = 100.0
"""Measured epochs more than this factor off the prior's per-epoch energy are almost surely in another unit
(kWh or Wh in the joules column) or another quantity (a whole-run total, a cumulative counter)."""


def _unit_warning(level_log: float, prior_epoch_j: float) -> str | None:
    """A warning when the measured level is more than :data:`UNIT_RATIO` x off the prior (None otherwise)."""
    ratio = math.exp(level_log) / prior_epoch_j
    if 1.0 / UNIT_RATIO <= ratio <= UNIT_RATIO:
        return None
    return (f"measured epochs ({math.exp(level_log):.4g} J each) are {ratio:.3g}x the prior's {prior_epoch_j:.4g} "
            "J/epoch: check the unit. epoch_energies_j takes the joules of each epoch (1 kWh = 3.6e6 J, 1 Wh = "
            "3600 J), not a whole-run total or a cumulative meter reading.")


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


def _first_epoch_modelled(seg: Segmentation, in_later_phase: bool) -> bool:
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
    if not _first_epoch_modelled(seg, in_later_phase):
        return seg.level_log, seg.obs_log_sigma / math.sqrt(max(len(seg.stable_epochs), 1))
    body = y[[i for i in seg.stable_epochs if i != 0]]
    if not body.size:
        return first_epoch_observation(float(y[0]), params)
    if body.size < max(params.mean_epochs_below, 3):
        return math.log(float(np.mean(np.exp(body)))), body_mean_sd(body.size, params)
    return _huber_location(body, max(_mad_sd(body), OBS_LOG_SIGMA_FLOOR)), body_mean_sd(body.size, params)


def _future_budget(
    prior: Prediction, n_total: int, n: int, e: np.ndarray, per_epoch_j: float, cur_end: int, r_fut: int
) -> tuple[float, float]:
    """Energy (J) of the declared-but-unseen phases and its log sd, from the prior's total budget.

    The prior's average epoch x ``n_total`` is the run's expected total; what the measured epochs and the
    projected rest of the current phase account for is subtracted, the remainder is the future phases'
    share. Its log sd scales the prior's by total/remainder (the remainder carries all of the prior's
    absolute uncertainty). When the budget is exhausted the measured level is used with the prior's sd.
    """
    known = float(e.sum()) + per_epoch_j * (cur_end - n)
    budget = prior.energy_per_epoch_j * n_total - known
    sigma = prior.log_sigma if prior.log_sigma > 0 else 0.25
    if budget <= per_epoch_j * r_fut * 0.5:
        return per_epoch_j * r_fut, sigma
    sd = min(sigma * prior.energy_per_epoch_j * n_total / budget, 1.0)
    return budget, sd


# --------------------------------------------------------------------------- power traces


def epoch_energies_from_trace(
    timestamps_s: Sequence[float], power_w: Sequence[float], epoch_end_s: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-epoch energy (J, trapezoid) and time (s) of a power trace cut at ``epoch_end_s``.

    The first epoch starts at the first timestamp; the trace is linearly interpolated at each boundary.
    """
    t = np.asarray(timestamps_s, dtype=float)
    p = np.asarray(power_w, dtype=float)
    ends = np.asarray(epoch_end_s, dtype=float)
    if t.ndim != 1 or p.ndim != 1 or t.size != p.size:
        raise InvalidInputError(
            f"timestamps_s and power_w must be flat and of equal length; got {t.shape} and {p.shape}."
        )
    if t.size < 2:
        raise InvalidInputError("the power trace needs at least two samples to integrate.")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise InvalidInputError("the power trace contains NaN/inf timestamps or power; drop those samples.")
    if np.any(p < 0):
        raise InvalidInputError(f"power_w has negative values (min {p.min():g} W); power must be >= 0 W.")
    steps = np.diff(t)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise InvalidInputError(
            f"timestamps_s must increase strictly: sample {i + 1} ({t[i + 1]:g} s) is not after sample {i} "
            f"({t[i]:g} s); sort the trace and drop duplicates."
        )
    if ends.ndim != 1 or ends.size == 0 or not np.all(np.isfinite(ends)):
        raise InvalidInputError("epoch_end_s must be a non-empty flat sequence of finite times (s).")
    if np.any(np.diff(ends) <= 0) or ends[0] <= t[0]:
        raise InvalidInputError("epoch_end_s must increase strictly and come after the trace's first sample.")
    if ends[-1] > t[-1] + 1e-9:
        raise InvalidInputError(
            f"epoch end {ends[-1]:g} s is outside the trace ({t[0]:g}..{t[-1]:g} s); "
            f"pass epoch ends within the recorded trace."
        )
    grid = np.union1d(t, ends)
    pg = np.interp(grid, t, p)
    cum = np.concatenate([[0.0], np.cumsum(np.diff(grid) * (pg[1:] + pg[:-1]) / 2.0)])
    at = np.interp(np.concatenate([[t[0]], ends]), grid, cum)
    return np.diff(at), np.diff(np.concatenate([[t[0]], ends]))


def refine_from_trace(
    prior: Prediction,
    *,
    timestamps_s: Sequence[float],
    power_w: Sequence[float],
    epoch_end_s: Sequence[float],
    total_epochs: int | None = None,
    max_epochs: int | None = None,
    phases: Sequence[int] | None = None,
    phase_priors: Sequence[Prediction] | None = None,
    prior_rho: float = PRIOR_RHO,
) -> Prediction:
    """Like :func:`refine`, from a power trace (s, W) and the end time (s) of each finished epoch."""
    energies, times = epoch_energies_from_trace(timestamps_s, power_w, epoch_end_s)
    return refine(
        prior,
        epoch_energies_j=energies,
        epoch_times_s=times,
        total_epochs=total_epochs,
        max_epochs=max_epochs,
        phases=phases,
        phase_priors=phase_priors,
        prior_rho=prior_rho,
    )
