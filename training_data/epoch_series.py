"""Per-epoch energy series recovered from the seaa2023 1 Hz power traces (build time only; never shipped).

The authors committed no epoch timestamps, but each Keras epoch (training pass, then a validation pass) leaves a
periodic pattern in (power, utilisation). For each phase (10 frozen-backbone epochs, then fine-tuning) we

1. estimate the epoch period from the autocorrelation of the standardised (power, utilisation) signal, searched
   within 0.8-1.25x (phase duration / expected epochs);
2. fold the phase at that period into a one-epoch template anchored at the phase start (frozen: the first sample
   with non-zero utilisation, i.e. the start of training; fine-tuning: the end of the 10th frozen epoch), and
3. place each next boundary within +-20 % of one period from the previous one where the following period
   best matches the template (least squares); one realignment pass.

Epoch 1 runs from the first trace sample (start-up idle, model build and tf.function tracing included, as an
NVML meter started with the script sees it); the last epoch runs to the end of the trace. Per-epoch energy is
the trapezoid integral of power over the epoch window, so the series sums to the run's trace energy exactly.
Recovered epoch counts match ``10 + epochs_finetune - 9`` (see :mod:`training_data.sources.seaa2023`) within
+-1 on most runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from predictor.energy.integrate import cumulative_energy_j
from training_data.sources.seaa2023 import EPOCHS_OVERCOUNT, FOLDER, TOLERANCE, split_phases

SEARCH = 0.2  # boundary search window, fraction of a period
FROZEN_EPOCHS = 10


@dataclass(frozen=True)
class EpochSeries:
    """One run's measured epochs (0-based index; epochs ``0..n_frozen-1`` train the head only)."""

    run_id: str
    gpu: str
    architecture: str
    energies_j: np.ndarray
    times_s: np.ndarray
    n_frozen: int
    idle_w: float  # median power of the leading samples with zero utilisation (start-up idle)


def _standardised(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.c_[(p - np.median(p)) / (p.std() + 1e-9), (u - np.median(u)) / (u.std() + 1e-9)]


def acf_period(x: np.ndarray, guess: float) -> int:
    """Lag (samples) in [0.8, 1.25] x ``guess`` with the largest autocovariance of ``x`` (n x d)."""
    x = x - x.mean(axis=0)
    lags = [lag for lag in range(max(3, int(guess * 0.8)), int(guess * 1.25) + 1) if lag < len(x) // 2]
    if not lags:
        return max(3, int(round(guess)))
    cov = [float((x[:-lag] * x[lag:]).sum()) / (len(x) - lag) for lag in lags]
    return lags[int(np.argmax(cov))]


def _next_cut(x: np.ndarray, template: np.ndarray, prev: int, period: int) -> int | None:
    n, width = len(x), len(template)
    half = max(1, int(SEARCH * period))
    best, best_cost = None, np.inf
    for s in range(prev + period - half, prev + period + half + 1):
        if s <= prev or s + width > n:
            continue
        cost = float(np.sum((x[s : s + width] - template) ** 2))
        if cost < best_cost:
            best, best_cost = s, cost
    return best


def align_cycles(x: np.ndarray, start: int, period: int, max_cuts: int | None = None) -> list[int]:
    """Epoch start indices from ``start`` on: each next one about ``period`` later, matched to the folded template."""
    cuts = list(range(start, len(x) - period + 1, period))
    for _ in range(2):
        segs = [x[c : c + period] for c in cuts if c + period <= len(x)]
        if not segs:
            return [start]
        template = np.mean(segs, axis=0)
        cuts = [start]
        while max_cuts is None or len(cuts) < max_cuts:
            nxt = _next_cut(x, template, cuts[-1], period)
            if nxt is None or nxt + period // 2 > len(x):
                break
            cuts.append(nxt)
    return cuts


def training_start(u: np.ndarray, stop: int) -> int:
    """First sample of sustained utilisation (3 samples above 30 % of the phase's median), else 0."""
    level = 0.3 * float(np.median(u[:stop])) if stop > 0 else 0.0
    above = np.convolve(u[:stop] > max(level, 1.0), np.ones(3), mode="valid") == 3
    return int(np.argmax(above)) if above.any() else 0


def epoch_bounds(trace: pd.DataFrame, finetune_epochs_expected: int, cp: int) -> np.ndarray:
    """Sample indices where epochs start (first = 0) plus the last index, for one run's sorted trace.

    ``cp`` is the first fine-tuning sample (:func:`training_data.sources.seaa2023.split_phases`).
    """
    p = np.nan_to_num(trace["power_W"].to_numpy(dtype="float64"))
    u = np.nan_to_num(trace["gpu_util_pct"].to_numpy(dtype="float64"))
    a0 = training_start(u, cp)
    x = _standardised(p, u)
    p_frozen = acf_period(x[a0:cp], (cp - a0) / FROZEN_EPOCHS)
    frozen = align_cycles(x[: min(len(x), cp + p_frozen)], a0, p_frozen, FROZEN_EPOCHS + 1)
    ft_start = frozen[FROZEN_EPOCHS] if len(frozen) > FROZEN_EPOCHS else cp
    p_ft = acf_period(x[ft_start:], (len(x) - ft_start) / max(finetune_epochs_expected, 1))
    fine = align_cycles(x, ft_start, p_ft)
    starts = [0] + frozen[1:FROZEN_EPOCHS] + fine
    return np.array(starts + [len(x) - 1])


def _integrate(t: np.ndarray, p: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.diff(cumulative_energy_j(t, p)[bounds]), np.diff(t[bounds])


def _phase_starts(runs: pd.DataFrame, groups: dict[str, pd.DataFrame]) -> dict[str, int]:
    """First fine-tuning sample per run; re-searched within +-30 % of the (architecture, GPU) median frozen
    duration when the plain change point is that far off (same rule as the seaa2023 converter)."""
    cp = {rid: split_phases(groups[rid]) for rid in runs.run_id}
    dur = pd.Series({rid: float(groups[rid]["t_seconds"].iloc[k]) for rid, k in cp.items()})
    med = dur.groupby([runs.set_index("run_id").loc[dur.index, c] for c in ("architecture", "gpu_model")]).transform(
        "median")
    for rid in dur.index[(dur - med).abs() > TOLERANCE * med]:
        centre = float(med[rid])
        cp[rid] = split_phases(groups[rid], window_s=(centre * (1 - TOLERANCE), centre * (1 + TOLERANCE)))
    return cp


def load_series(shared_dir: Path) -> list[EpochSeries]:
    """Every seaa2023 run as an :class:`EpochSeries` (sorted by run id)."""
    folder = Path(shared_dir) / FOLDER
    runs = pd.read_csv(folder / "runs.csv").sort_values("run_id")
    traces = pd.read_parquet(folder / "power_traces.parquet",
                             columns=["run_id", "t_seconds", "power_W", "gpu_util_pct"])
    groups = {rid: g.sort_values("t_seconds").reset_index(drop=True) for rid, g in traces.groupby("run_id")}
    cps = _phase_starts(runs, groups)
    out = []
    for r in runs.itertuples(index=False):
        g = groups[r.run_id]
        bounds = epoch_bounds(g, int(r.epochs_finetune) - EPOCHS_OVERCOUNT, cps[r.run_id])
        t = g["t_seconds"].to_numpy(dtype="float64")
        p = np.nan_to_num(g["power_W"].to_numpy(dtype="float64"))
        e, dt = _integrate(t, p, bounds)
        u = np.nan_to_num(g["gpu_util_pct"].to_numpy(dtype="float64"))
        lead = p[: max(1, training_start(u, int(bounds[FROZEN_EPOCHS])))]
        out.append(EpochSeries(r.run_id, r.gpu_model, r.architecture, e, dt, FROZEN_EPOCHS, float(np.median(lead))))
    return out
