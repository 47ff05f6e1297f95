"""Steady-state analysis of measured epochs: warm-up, phase changes and outliers (STEP step 1-3)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from featurize.errors import InvalidInputError
from predictor.stats import robust_sd

MAX_WARMUP_EPOCHS = 1  # on 249 traced runs epoch 2 is no costlier than later ones (log excess -0.02, sd 0.10)


WARMUP_MIN_LOG = 0.05  # a warm-up epoch is at least ~5 % above the steady level


PHASE_MIN_LOG = 0.08  # a phase change shifts the level by at least ~8 %


PHASE_MIN_SD = 5.0  # ... and by at least 5 robust sd of the epoch-to-epoch spread


MIN_PHASE_EPOCHS = 2  # a single odd epoch is an outlier, not a phase


OBS_LOG_SIGMA_FLOOR = 0.015  # epoch-to-epoch sd never assumed below 1.5 %


FEW_EPOCHS_LOG_SIGMA = 0.10  # sd assumed for one/two stable epochs (warm-up may hide in them)


HUBER_K = 1.345


def as_positive_array(values: Any, name: str) -> np.ndarray:
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


def check_epoch_count(value: Any, name: str, n_measured: int) -> int | None:
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


def mad_sd(y: np.ndarray) -> float:
    """:func:`predictor.stats.robust_sd`, 0 with fewer than two values."""
    return robust_sd(y) if y.size >= 2 else 0.0


def huber_location(y: np.ndarray, scale: float) -> float:
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
    return max(robust_sd(d) / math.sqrt(2), OBS_LOG_SIGMA_FLOOR)


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
        scale = max(noise, mad_sd(left), mad_sd(right))
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
    e = as_positive_array(epoch_energies_j, "epoch_energies_j")
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
    spread = mad_sd(ys) if ys.size >= 3 else 0.0
    obs = max(spread, OBS_LOG_SIGMA_FLOOR) if ys.size >= 3 else FEW_EPOCHS_LOG_SIGMA
    level = huber_location(ys, max(spread, OBS_LOG_SIGMA_FLOOR))
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
