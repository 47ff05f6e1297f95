"""Fit the refinement model's constants (:class:`predictor.refine_model.RefineParams`) on real epoch series.

Run: ``python -m training_data.fit_refine [--shared ../shared/data]``; prints the fitted values and a
``PARAMS = RefineParams(...)`` block to paste into ``predictor/refine_model.py`` (build time only).

Data: the per-epoch series of the 249 seaa2023 runs (:mod:`training_data.epoch_series`). Statistics:

- warm-up: ``log e_0 - median(log e_1..9)`` (the first epoch vs the rest of the frozen phase), mean and sd;
- epoch noise: the sd whose 90 % range matches that of single early epochs (fine-tuning epochs 2-6) around
  the mean of the run's later epochs (heavy-tailed: cut jitter, stragglers);
  the same deviations' robust sd is the Student-t scale, and the dof in :data:`T_DOFS` whose 90 % range at that
  scale matches theirs is the tail; the typical (robust) epoch noise, for the drift below, is the median robust sd of successive differences / sqrt 2;
- drift: per run, the least-squares slope of log energy vs epoch over the fine-tuning phase; the median
  slope is projected, and the spread of (mean of the run's last epochs - its level after 10 fine-tuning
  epochs) beyond what typical epoch noise explains is the drift sd;
- ``interval_scale``: chosen by grouped inner-fold CV (leave one (architecture, GPU) group out): the scale in
  :data:`SCALES` whose held-out coverage of nominal 90 % intervals, over k = 1, 2, 3, 5, 10 measured epochs of
  single-phase series with calibrated synthetic priors, is closest to 90 % at its worst k.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from predictor.prediction import Prediction
from predictor.refine import refine
from predictor.refine_model import RefineParams
from training_data.epoch_series import EpochSeries, load_series

KS = (1, 2, 3, 5, 10)
SCALES = (0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0)
Z90 = 1.6448536269514722
T_DOFS = (1.5, 2.0, 3.0, 5.0, 10.0)
PRIOR_LOG_SIGMA = 0.25
PRIOR_T_DOF = 1.0  # Cauchy: a prior far from the epochs yields (predictions 0.16-0.95x the truth were seen); not tuned


def _robust_sd(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def group_of(s: EpochSeries) -> str:
    return f"{s.architecture}|{s.gpu}"


def warmup_excess(s: EpochSeries) -> float:
    y = np.log(s.energies_j)
    return float(y[0] - np.median(y[1 : s.n_frozen]))


def single_phase(s: EpochSeries) -> np.ndarray:
    """The fine-tuning epochs as one run, led by a first epoch carrying this run's own measured excess.

    Epoch ``n_frozen`` (the phase switch, where the cut is least certain) is dropped; the lead epoch is the
    run's real first-epoch excess ratio applied to the median of the next 5 fine-tuning epochs.
    """
    ft = s.energies_j[s.n_frozen + 1 :]
    return np.concatenate([[float(np.exp(warmup_excess(s)) * np.median(ft[:5]))], ft])


def fit_statistics(series: list[EpochSeries]) -> dict[str, float]:
    w = np.array([warmup_excess(s) for s in series])
    noise, typical, slopes, late = [], [], [], []
    for s in series:
        y = np.log(s.energies_j[s.n_frozen + 1 :])
        noise += list(y[1:6] - np.log(np.mean(np.exp(y[6:]))))
        typical.append(_robust_sd(np.diff(y)) / np.sqrt(2))
        slopes.append(np.polyfit(np.arange(y.size), y, 1)[0])
        if y.size >= 20:
            late.append(np.log(np.mean(np.exp(y[10:]))) - np.mean(y[:10]))
    dev = np.abs(np.array(noise))
    eps = float(np.quantile(dev, 0.9) / Z90)  # sd matching the 90 % spread (tails included)
    scale = _robust_sd(np.array(noise))
    dof = min(T_DOFS, key=lambda v: abs(float(student_t.ppf(0.95, v)) * scale - np.quantile(dev, 0.9)))
    drift = float(np.median(slopes))
    late_sd = _robust_sd(np.array(late))
    drift_sd = float(np.sqrt(max(late_sd**2 - np.median(typical) ** 2 / 10, 0.0)))
    return dict(warmup_log_mean=float(np.mean(w)), warmup_log_sd=float(np.std(w)), epoch_log_sd=eps,
                epoch_log_scale=scale, epoch_t_dof=float(dof),
                drift_log_per_epoch=drift, drift_log_sd=drift_sd)


def make_prior(per_epoch_j: float, n: int, log_sigma: float = PRIOR_LOG_SIGMA) -> Prediction:
    total = per_epoch_j * n
    return Prediction(
        energy_j=total, energy_per_epoch_j=per_epoch_j, energy_per_sample_j=per_epoch_j / 23807,
        time_s=float(n), time_per_epoch_s=1.0, avg_power_w=per_epoch_j,
        interval_j=(total * np.exp(-Z90 * log_sigma), total * np.exp(Z90 * log_sigma)),
        gpu="NVIDIA GeForce RTX 3090", epochs=float(n), samples_per_epoch=23807, log_sigma=log_sigma,
    )


def normalised_residuals(series: list[np.ndarray], prior_log_err: np.ndarray, params: RefineParams) -> np.ndarray:
    """(runs x len(KS)) of log(true / refined) / refined log_sigma, with the interval scale taken out."""
    out = np.full((len(series), len(KS)), np.nan)
    for i, (e, d) in enumerate(zip(series, prior_log_err)):
        prior = make_prior(float(e.mean()) * float(np.exp(d)), e.size)
        for j, k in enumerate(KS):
            if k < e.size:
                r = refine(prior, epoch_energies_j=e[:k], total_epochs=e.size, params=params)
                sd = r.log_sigma / params.interval_scale
                out[i, j] = np.log(e.sum() / r.energy_j) / sd if sd > 0 else np.nan
    return out


def choose_interval_scale(series: list[EpochSeries], seed: int = 11) -> float:
    """Leave-one-group-out choice of ``interval_scale`` (see the module docstring)."""
    groups = sorted({group_of(s) for s in series})
    rng = np.random.default_rng(seed)
    prior_err = rng.normal(0.0, PRIOR_LOG_SIGMA, len(series))
    cover = np.zeros((len(SCALES), len(KS)))
    for g in groups:
        train = [s for s in series if group_of(s) != g]
        test = [i for i, s in enumerate(series) if group_of(s) == g]
        params = RefineParams(**fit_statistics(train), prior_t_dof=PRIOR_T_DOF, interval_scale=1.0)
        res = normalised_residuals([single_phase(series[i]) for i in test], prior_err[test], params)
        for a, c in enumerate(SCALES):
            cover[a] += np.nanmean(np.abs(res) <= Z90 * c, axis=0) / len(groups)
    return float(SCALES[int(np.argmin(np.abs(cover - 0.9).max(axis=1)))])


def fit(series: list[EpochSeries]) -> RefineParams:
    """All constants from ``series`` (interval scale by inner leave-one-group-out CV on the same series)."""
    stats = fit_statistics(series)
    base = RefineParams(**stats, prior_t_dof=PRIOR_T_DOF, interval_scale=1.0, n_runs=len(series))
    return replace(base, interval_scale=choose_interval_scale(series))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    series = load_series(args.shared)
    p = fit(series)
    print("PARAMS = RefineParams(")
    for k, v in p.__dict__.items():
        print(f"    {k}={float(f'{v:.4g}') if isinstance(v, float) else v},")
    print(")")


if __name__ == "__main__":
    main()
