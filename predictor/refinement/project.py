"""STEP refinement: update a prior :class:`~predictor.prediction.Prediction` from measured epochs.

Public entry points:

- :func:`refine` — from per-epoch energies (and optionally times) of the epochs run so far.
- :func:`refine_from_trace` — from a power trace (timestamps, watts) plus epoch end times; the trace is
  integrated per epoch with the trapezoid rule, then :func:`refine` is applied.
- :func:`segment_epochs` — the pure steady-state analysis (warm-up, phase changes, outliers) both use.

Method (all in log energy):

0. **Learned model** (:mod:`predictor.refinement.params`, constants fitted on 249 traced runs): in the run's first
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
   (:mod:`predictor.refinement.params`); the interval's sd is scaled by the fitted ``interval_scale``.
   ``total_epochs=None`` (early stopping): the point estimate assumes the prior's run length (clipped to the
   plausible range) and the interval spans stopping now ... running to ``max_epochs`` (or the prior's
   ``epochs``), stated in ``refinement["total_epochs_range"]``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

from featurize.errors import InvalidInputError
from predictor.prediction import Prediction
from predictor.refinement.level import Level, estimate_level, first_epoch_modelled
from predictor.refinement.params import (
    PARAMS,
    RefineParams,
    drift_terms,
    input_bound_note,
)
from predictor.refinement.phases import PRIOR_RHO, check_phase_priors
from predictor.refinement.record import Refinement
from predictor.refinement.segment import (
    Segmentation,
    as_positive_array,
    check_epoch_count,
    segment_epochs,
)

METHOD = "step-robust-conjugate-v1"


METHOD_PHASE_PRIORS = "step-robust-pooled-phase-priors-v1"


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
        params: the fitted warm-up / drift / prior-tail constants (:data:`predictor.refinement.params.PARAMS`).

    Returns:
        A new :class:`Prediction` whose ``refinement`` (a :class:`~predictor.refinement.record.Refinement`) says
        what was measured and assumed.
    """
    e, times, total_epochs, max_epochs, declared, pri = _checked(
        prior, epoch_energies_j, epoch_times_s, total_epochs, max_epochs, phases, phase_priors, prior_rho)
    n = int(e.size)
    notes = list(prior.warnings)
    seg = segment_epochs(e, phases=declared)
    z = _z(prior.interval_level)
    lev = estimate_level(prior, e, seg, declared, pri, prior_rho, z, params, notes)
    _level_notes(prior, e, seg, declared, pri is not None, lev, z, params, notes)
    n_lo, n_hi, n_point, length_note = _run_length(n, total_epochs, max_epochs, prior, notes)
    proj = _Projection(prior, e, seg, declared, lev, n_point, params)
    point, lo, hi = proj.total(n_point, 0.0), proj.total(n_lo, -z), proj.total(n_hi, z)
    _future_phase_notes(prior, e, declared, pri, prior_rho, lev, proj, n_point, notes)
    time_per_epoch_s, time_s = _time(prior, times, e, seg, n_point, notes)
    refinement = _record(prior, e, seg, declared, lev, proj, prior_rho, (n_lo, n_hi, n_point, length_note))
    return prior.replace(
        energy_j=point,
        energy_per_epoch_j=proj.per_epoch_j,
        energy_per_sample_j=proj.per_epoch_j / (prior.samples_per_epoch or 1),
        time_s=time_s,
        time_per_epoch_s=time_per_epoch_s,
        avg_power_w=point / time_s if time_s > 0 else prior.avg_power_w,
        interval_j=(lo, hi),
        epochs=float(n_point),
        log_sigma=(math.log(hi) - math.log(lo)) / (2 * z) if lo > 0 and hi > lo else 0.0,
        warnings=notes,
        refinement=refinement,
    )


def _checked(prior: Any, epoch_energies_j: Any, epoch_times_s: Any, total_epochs: Any, max_epochs: Any,
             phases: Any, phase_priors: Any, prior_rho: float) -> tuple:
    """refine's arguments checked: ``(energies, times or None, total_epochs, max_epochs, declared phase starts,
    phase priors or None)``; one clear error for the first bad one."""
    if not isinstance(prior, Prediction):
        raise InvalidInputError(f"prior must be a predictor.Prediction; got {type(prior).__name__}.")
    e = as_positive_array(epoch_energies_j, "epoch_energies_j")
    n = int(e.size)
    times = None
    if epoch_times_s is not None:
        times = as_positive_array(epoch_times_s, "epoch_times_s")
        if times.size != n:
            raise InvalidInputError(
                f"epoch_times_s has {times.size} values but epoch_energies_j has {n}: give one time per epoch."
            )
    total_epochs = check_epoch_count(total_epochs, "total_epochs", n)
    max_epochs = check_epoch_count(max_epochs, "max_epochs", n)
    declared = sorted({int(p) for p in (phases or ())})
    if any(p <= 0 for p in declared):
        raise InvalidInputError(f"phases must be epoch indices > 0 where a new phase starts; got {list(phases)}.")
    if not (prior.energy_per_epoch_j > 0 and math.isfinite(prior.energy_per_epoch_j)):
        raise InvalidInputError(f"prior.energy_per_epoch_j must be > 0; got {prior.energy_per_epoch_j!r}.")
    return e, times, total_epochs, max_epochs, declared, check_phase_priors(phase_priors, phases, prior_rho)


def _level_notes(prior: Prediction, e: np.ndarray, seg: Segmentation, declared: list[int], pooled: bool,
                 lev: Level, z: float, params: RefineParams, notes: list[str]) -> None:
    """What the measured level says about the prior and the data: unit, distance from the prior, warm-up, a lone
    first epoch, outliers."""
    n = int(e.size)
    check_gap = (not lev.detected_in_cur) if pooled else (not lev.in_later_phase and not any(p >= n for p in declared))
    unit_note = _unit_warning(seg.level_log, prior.energy_per_epoch_j)
    if unit_note:
        notes.append(unit_note)
    if check_gap and math.isfinite(lev.prior_var) and not unit_note:
        gap = (seg.level_log if len(seg.stable_epochs) >= 3 or pooled else lev.obs_mu) - lev.prior_mu
        if abs(gap) > z * math.sqrt(lev.prior_var + lev.obs_var):
            hint = (
                "the phase's prior may be off for this setup." if pooled
                else "if the run will change phase later (e.g. unfreezing a backbone), declare it with phases=[epoch]."
            )
            notes.append(f"measured epochs are {math.exp(gap) - 1:+.0%} off the prior, outside its interval: {hint}")
    if seg.warmup_epochs:
        notes.append(f"warm-up epoch(s) {seg.warmup_epochs} excluded from the steady-state level.")
    if not pooled and n == 1 and first_epoch_modelled(seg, lev.in_later_phase):
        notes.append(
            f"one epoch measured: it is read as a warm-up epoch (typical first-epoch excess "
            f"x{math.exp(params.warmup_log_mean):.2f}, log sd {params.warmup_log_sd:.2f}), not as a steady one."
        )
    if seg.outliers:
        notes.append(f"outlier epoch(s) {seg.outliers} down-weighted (Huber).")


def _run_length(n: int, total_epochs: int | None, max_epochs: int | None, prior: Prediction,
                notes: list[str]) -> tuple[int, int, int, str]:
    """``(low, high, point, source)`` of the run's length in epochs (all ``total_epochs`` when it is given)."""
    if total_epochs is not None:
        return total_epochs, total_epochs, total_epochs, "given"
    n_hi = max_epochs if max_epochs is not None else max(n, int(math.ceil(prior.epochs)))
    n_point = int(min(max(round(prior.epochs), n), n_hi))
    length_note = "max_epochs" if max_epochs is not None else "prior.epochs"
    if n_hi <= n:
        notes.append(
            f"total_epochs unknown and the plausible maximum ({n_hi}) is not above the {n} epochs measured: "
            f"the projection assumes the run ends now; pass max_epochs= to widen it."
        )
    else:
        notes.append(
            f"total_epochs unknown: point estimate assumes {n_point} epochs ({length_note}); the interval "
            f"spans stopping now ({n}) to {n_hi} epochs."
        )
    return n, n_hi, n_point, length_note


class _Projection:
    """Total energy of a run of ``n_total`` epochs: what was measured, the current phase's coming epochs at the
    posterior level (plus the fitted drift), and the declared phases not yet started."""

    def __init__(self, prior: Prediction, e: np.ndarray, seg: Segmentation, declared: list[int], lev: Level,
                 n_point: int, params: RefineParams):
        self.prior, self.e, self.seg, self.lev, self.params = prior, e, seg, lev, params
        self.n, self.measured_j = int(e.size), float(e.sum())
        self.future = [p for p in declared if p >= self.n]  # declared phases not yet started
        # mean energy of the current phase's coming epochs (measured level + the fitted drift over them)
        self.shift_pt = drift_terms(min([p for p in self.future if p < n_point] + [n_point]) - self.n, params)[0]
        self.per_epoch_j = math.exp(lev.post_mu + self.shift_pt)

    def total(self, n_total: int, q: float) -> float:
        """Total energy for a run of n_total epochs at normal quantile q of the level uncertainty."""
        lev, params, n = self.lev, self.params, self.n
        if n_total - n <= 0:
            return self.measured_j
        cur_end = min([p for p in self.future if p < n_total] + [n_total])
        r_cur = cur_end - n
        shift, drift_sd = drift_terms(r_cur, params)
        var_cur = lev.post_var + drift_sd**2 + self.seg.obs_log_sigma**2 / max(r_cur, 1)
        total = self.measured_j + r_cur * math.exp(lev.post_mu + shift + q * params.interval_scale * math.sqrt(var_cur))
        r_fut = n_total - cur_end
        if r_fut > 0 and lev.pooled is not None:
            bounds = lev.bounds
            for u in range(lev.cur + 1, len(bounds)):  # each unseen phase at its pooled level
                r_u = min(bounds[u + 1] if u + 1 < len(bounds) else n_total, n_total) - bounds[u]
                if r_u > 0:
                    var_u = float(lev.pooled[1][u, u]) + params.drift_log_sd**2 + self.seg.obs_log_sigma**2 / r_u
                    total += r_u * math.exp(float(lev.pooled[0][u]) + q * params.interval_scale * math.sqrt(var_u))
        elif r_fut > 0:
            budget, sd = _future_budget(self.prior, n_total, n, self.e, self.per_epoch_j, cur_end, r_fut)
            total += budget * math.exp(q * sd)
        return total


def _future_phase_notes(prior: Prediction, e: np.ndarray, declared: list[int], pri: Any, prior_rho: float,
                        lev: Level, proj: _Projection, n_point: int, notes: list[str]) -> None:
    """How a declared phase that has not started is projected (its own pooled prior, or the prior's budget)."""
    future = proj.future
    if not future or n_point <= min(future):
        return
    if lev.pooled is not None:
        m_pri, m_post = math.log(pri[lev.cur + 1].energy_per_epoch_j), float(lev.pooled[0][lev.cur + 1])
        notes.append(
            f"declared phase from epoch {min(future)} not measured yet: projected from its own prior "
            f"({pri[lev.cur + 1].energy_per_epoch_j:.4g} J/epoch) shifted {math.exp(m_post - m_pri) - 1:+.1%} by the "
            f"measured/predicted ratio of the phase(s) seen (partial pooling, rho={float(prior_rho):g})."
        )
        return
    r_fut = n_point - min(future)
    budget, _ = _future_budget(prior, n_point, int(e.size), e, proj.per_epoch_j, min(future), r_fut)
    notes.append(
        f"declared phase from epoch {min(future)} not measured yet: its {r_fut} epochs are projected from the "
        f"prior's remaining budget ({budget / r_fut:.4g} J/epoch)."
    )


def _time(prior: Prediction, times: np.ndarray | None, e: np.ndarray, seg: Segmentation, n_point: int,
          notes: list[str]) -> tuple[float, float]:
    """``(time per epoch, run time)``: the measured stable epochs' median when times were given (with the
    input-bound check), else the prior's."""
    if times is None:
        return prior.time_per_epoch_s, prior.time_per_epoch_s * n_point
    time_per_epoch_s = float(np.median(times[seg.stable_epochs]))
    steady = [i for i in seg.stable_epochs if i != 0]  # a first epoch's start-up also looks slow and cool
    if steady:
        t_med = float(np.median(times[steady]))
        note = input_bound_note(t_med, float(np.median(e[steady] / times[steady])), prior.time_per_epoch_s,
                                prior.avg_power_w)
        if note:
            notes.append(note)
    return time_per_epoch_s, float(times.sum()) + time_per_epoch_s * (n_point - int(e.size))


def _record(prior: Prediction, e: np.ndarray, seg: Segmentation, declared: list[int], lev: Level,
            proj: _Projection, prior_rho: float, length: tuple[int, int, int, str]) -> Refinement:
    """The :class:`Refinement` of the returned prediction: what was measured and assumed."""
    n_lo, n_hi, n_point, length_note = length
    pooled = lev.pooled
    if pooled is None and abs(lev.prior_mu - lev.obs_mu) > 1e-9:  # share of the way from the epochs to the prior
        prior_weight = min(max((lev.post_mu - lev.obs_mu) / (lev.prior_mu - lev.obs_mu), 0.0), 1.0)
    else:
        prior_weight = lev.post_var / lev.prior_var if math.isfinite(lev.prior_var) else 0.0
    level_from = "phase epochs"
    if pooled is None and first_epoch_modelled(seg, lev.in_later_phase):
        level_from = "first epoch (warm-up model)" if e.size == 1 else "epochs after the first"
    return Refinement(**{
        "method": METHOD if pooled is None else METHOD_PHASE_PRIORS,
        "epochs_measured": int(e.size),
        "measured_energy_j": proj.measured_j,
        "warmup_epochs": seg.warmup_epochs,
        "stable_start": seg.stable_start,
        "stable_epochs": len(seg.stable_epochs),
        "phase_change_at": seg.phase_starts[-1] if seg.phase_starts else None,
        "phase_starts": seg.phase_starts,
        "detected_phase_starts": seg.detected_phase_starts,
        "declared_phases": declared,
        "outlier_epochs": seg.outliers,
        "projected_epoch_energy_j": proj.per_epoch_j,
        "measured_epoch_energy_j": math.exp(seg.level_log),
        "obs_log_sigma": seg.obs_log_sigma,
        "prior_energy_per_epoch_j": prior.energy_per_epoch_j,
        "prior_log_sigma": prior.log_sigma,
        "prior_weight": prior_weight,
        "total_epochs_assumed": n_point,
        "total_epochs_range": [n_lo, n_hi],
        "total_epochs_source": length_note,
        "prior_energy_j": prior.energy_j,
        "current_phase": lev.cur,
        "phase_priors_used": pooled is not None,
        "prior_rho": float(prior_rho) if pooled is not None else None,
        "phase_projected_epoch_energy_j": (
            [math.exp(float(v) + (proj.shift_pt if i == lev.cur else 0.0)) for i, v in enumerate(pooled[0])]
            if pooled is not None else None
        ),
        "drift_log_shift": proj.shift_pt,
        "level_from": level_from,
    })


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
