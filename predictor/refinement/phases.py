"""Declared phases with priors of their own: partial pooling of the phase levels."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from featurize.errors import InvalidInputError
from predictor.prediction import Prediction
from predictor.refinement.segment import FEW_EPOCHS_LOG_SIGMA, OBS_LOG_SIGMA_FLOOR, huber_location, mad_sd

PRIOR_RHO = 0.5  # assumed correlation of the prior's log errors across phases (same GPU / system / code)


def check_phase_priors(
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


def phase_observation(y: np.ndarray, idx: Sequence[int]) -> tuple[float, float] | None:
    """Robust log level of the epochs ``idx`` and its variance (sd^2 / n), or None when there are none."""
    ys = y[list(idx)]
    if ys.size == 0:
        return None
    spread = mad_sd(ys) if ys.size >= 3 else 0.0
    sd = max(spread, OBS_LOG_SIGMA_FLOOR) if ys.size >= 3 else FEW_EPOCHS_LOG_SIGMA
    return huber_location(ys, max(spread, OBS_LOG_SIGMA_FLOOR)), sd**2 / ys.size


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
