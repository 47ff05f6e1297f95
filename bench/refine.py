"""Evaluate STEP refinement (``predictor.refine``) on the seaa2023 power traces; writes models/REFINE.md + PNG.

Run: ``python bench/refine.py [--shared ../shared/data] [--out models]``.

Epochs: the authors committed no epoch timestamps. We locate the one boundary we can see reliably — the end of
the 10-epoch frozen-backbone phase, a sustained power step, found by a two-segment least-squares fit of the
31 s rolling-median power between the start of training (power > 0.7 x run median) and mid-run — and cut each phase into *uniform* epochs
(10 frozen, ``trained_epochs_total - 10`` fine-tuning). Epoch 0 therefore contains the start-up idle seconds
(a real warm-up). Per-epoch energy = trapezoid of the 1 Hz power over the epoch window.

Scenarios (k = epochs measured):
  A  "from the start", k = 1..10: only frozen epochs are seen.
     - ours-honest: refine(prior, epochs, total_epochs=N)  (no schedule known)
     - ours-declared: same + phases=[10] (the user declares "10 frozen epochs, then fine-tuning")
  B  "into fine-tuning", k = 10 + j, j = 1..10: the phase change is in the data; nothing is declared.
Baselines: Carbontracker = mean(measured) x N; del Rey STEP = energy(epochs 0..9) + mean(epochs 10..14) x (N-10),
defined only once k >= 15. Prior: true mean epoch energy x exp(0.25 * N(0,1)), seed 7, log_sigma 0.25.
Error = |projected total - true total| / true total; the true total epoch count N is given to every method.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictor.prediction import Prediction  # noqa: E402
from predictor.refine import refine  # noqa: E402

SEED = 7
PRIOR_LOG_SIGMA = 0.25
FROZEN_EPOCHS = 10


def phase_boundary_s(t: np.ndarray, p: np.ndarray) -> float:
    """Time of the frozen -> fine-tune power step: best two-segment fit of the smoothed power (first half)."""
    sm = pd.Series(p).rolling(31, center=True, min_periods=1).median().to_numpy()
    start = int(np.argmax(sm > 0.7 * np.median(sm)))  # skip the start-up idle before training
    half = len(sm) // 2
    x = sm[start:half]
    c1, c2 = np.cumsum(x), np.cumsum(x**2)
    best, best_s = None, np.inf
    m = len(x)
    for s in range(20, m - 20):
        n1, n2 = s, m - s
        sse1 = c2[s - 1] - c1[s - 1] ** 2 / n1
        sse2 = (c2[-1] - c2[s - 1]) - (c1[-1] - c1[s - 1]) ** 2 / n2
        if sse1 + sse2 < best_s:
            best, best_s = s, sse1 + sse2
    return float(t[start + best])


def uniform_epochs(t: np.ndarray, p: np.ndarray, n_total: int) -> tuple[np.ndarray, float]:
    from predictor.refine import epoch_energies_from_trace

    tb = phase_boundary_s(t, p)
    ends = np.concatenate(
        [
            np.linspace(t[0], tb, FROZEN_EPOCHS + 1)[1:],
            np.linspace(tb, t[-1], n_total - FROZEN_EPOCHS + 1)[1:],
        ]
    )
    ends[-1] = t[-1]
    e, _ = epoch_energies_from_trace(t, p, ends)
    return e, tb


def make_prior(mean_epoch_j: float, n_total: int, rng: np.random.Generator) -> Prediction:
    per = mean_epoch_j * float(np.exp(PRIOR_LOG_SIGMA * rng.standard_normal()))
    z = 1.6448536269514722
    return Prediction(
        energy_j=per * n_total,
        energy_per_epoch_j=per,
        energy_per_sample_j=per / 23807,
        time_s=0.0 + n_total,
        time_per_epoch_s=1.0,
        avg_power_w=per,
        interval_j=(per * n_total * np.exp(-z * PRIOR_LOG_SIGMA), per * n_total * np.exp(z * PRIOR_LOG_SIGMA)),
        gpu="RTX 3090",
        epochs=float(n_total),
        samples_per_epoch=23807,
        log_sigma=PRIOR_LOG_SIGMA,
    )


def evaluate(shared: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = pd.read_csv(shared / "seaa2023_ect" / "runs.csv")
    traces = pd.read_parquet(shared / "seaa2023_ect" / "power_traces.parquet", columns=["run_id", "t_seconds", "power_W"])
    rng = np.random.default_rng(SEED)
    rows, cover = [], []
    for run in runs.sort_values("run_id").itertuples():
        tr = traces[traces.run_id == run.run_id].dropna()
        t, p = tr.t_seconds.to_numpy(float), tr.power_W.to_numpy(float)
        n_total = int(run.trained_epochs_total)
        e, _ = uniform_epochs(t, p, n_total)
        true = float(e.sum())
        prior = make_prior(true / n_total, n_total, rng)
        for k in range(1, 21):
            m = e[:k]
            ests = {"carbontracker": float(m.mean()) * n_total}
            if k >= 15:
                ests["delrey_step"] = float(e[:10].sum() + e[10:15].mean() * (n_total - 10))
            r = refine(prior, epoch_energies_j=m, total_epochs=n_total)
            ests["ours"] = r.energy_j
            cover.append((k, "ours", r.interval_j[0] <= true <= r.interval_j[1]))
            if k <= FROZEN_EPOCHS:
                rd = refine(prior, epoch_energies_j=m, total_epochs=n_total, phases=[FROZEN_EPOCHS])
                ests["ours_declared"] = rd.energy_j
                cover.append((k, "ours_declared", rd.interval_j[0] <= true <= rd.interval_j[1]))
            ests["prior_only"] = prior.energy_j
            for method, est in ests.items():
                rows.append((run.run_id, run.architecture, k, method, 100 * abs(est - true) / true))
    err = pd.DataFrame(rows, columns=["run_id", "architecture", "k", "method", "abs_pct_err"])
    cov = pd.DataFrame(cover, columns=["k", "method", "covered"])
    return err, cov


def summarise(err: pd.DataFrame, cov: pd.DataFrame) -> pd.DataFrame:
    g = err.groupby(["k", "method"]).abs_pct_err
    s = pd.DataFrame({"median": g.median(), "p90": g.quantile(0.9)}).unstack("method")
    c = cov.groupby(["k", "method"]).covered.mean().unstack("method")
    c.columns = pd.MultiIndex.from_product([["coverage"], c.columns])
    return pd.concat([s, c], axis=1).round(2)


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=80)
    for method, style in [("ours", "-o"), ("ours_declared", "-s"), ("carbontracker", "--^"),
                          ("delrey_step", ":d"), ("prior_only", ":")]:
        if ("median", method) in table:
            col = table[("median", method)].dropna()
            ax.plot(col.index, col.values, style, ms=3, label=method)
    ax.axvline(FROZEN_EPOCHS + 0.5, color="grey", lw=0.8)
    ax.text(FROZEN_EPOCHS + 0.7, ax.get_ylim()[1] * 0.9, "fine-tuning starts", fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("epochs measured (k)")
    ax.set_ylabel("median |error| of total, %")
    ax.set_title("seaa2023: projected total energy vs epochs measured (249 runs)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    args = ap.parse_args()
    err, cov = evaluate(args.shared)
    table = summarise(err, cov)
    pd.set_option("display.width", 200)
    print(table.to_string())
    args.out.mkdir(parents=True, exist_ok=True)
    plot(table, args.out / "refine_eval.png")
    (args.out / "REFINE.md").write_text(report(err, table))
    print(f"wrote {args.out / 'REFINE.md'} and {args.out / 'refine_eval.png'}")


def report(err: pd.DataFrame, table: pd.DataFrame) -> str:
    n_runs = err.run_id.nunique()
    doc = __doc__.split("\n\n", 1)[1].split("\n\n")
    md = ["# Refinement from measured epochs (STEP) — evaluation", "",
          f"Generated by `bench/refine.py` on {n_runs} seaa2023 runs (RTX 3090 / RTX 3070; VGG16, ResNet50, "
          "MobileNetV2, NASNetMobile). Absolute % error of the projected total energy; coverage = share of runs "
          "whose true total falls in the refined nominal-90 % interval.", "", "## Setup", ""]
    md += ["\n".join(line.strip() for line in part.splitlines()) + "\n" for part in doc[:3]]
    md += ["## Results", "", "```", table.to_string(), "```", "", "![refine eval](refine_eval.png)", ""]
    md += ["## Goal check (median <= 3 %, p90 <= 10 %, >= 2x better than Carbontracker)", ""]
    for k, label in [(3, "k = 3 from the start (frozen epochs only, no schedule)"),
                     (13, "3 fine-tuning epochs measured (k = 13, phase change detected from data)")]:
        o_med, o_p90 = table.loc[k, ("median", "ours")], table.loc[k, ("p90", "ours")]
        c_med = table.loc[k, ("median", "carbontracker")]
        ok = o_med <= 3 and o_p90 <= 10 and c_med >= 2 * o_med
        md.append(f"- {label}: ours median {o_med:.2f} %, p90 {o_p90:.2f} %; Carbontracker median {c_med:.2f} % "
                  f"-> goal {'met' if ok else 'NOT met'}.")
    md += ["", RESULT_NOTES]
    return "\n".join(md)


RESULT_NOTES = """## Reading the figures

- **k <= 10 (frozen phase only)**: the data cannot reveal the ~2-5x more expensive fine-tuning phase. Without a
  declared schedule, every data-driven projection (ours, Carbontracker) extrapolates the cheap frozen epochs and
  under-predicts badly; `refine` warns that the measured epochs disagree with the prior and suggests `phases=`.
  With `phases=[10]` declared, the unseen fine-tuning phase is projected from the prior's remaining budget, so the
  error is essentially the prior's own error (~25 % lognormal here): measuring frozen epochs cannot fix it.
- **k > 10 (fine-tuning seen)**: the change point is detected from the data (2 fine-tune epochs needed), the first
  fine-tune epoch (recompile gap) is treated as warm-up when markedly above, and the projection uses the newest
  phase. This is the regime the issue's goal (median <= 3 % after 3 epochs, p90 <= 10 %, >= 2x better than
  Carbontracker) is meaningfully about: read it at j = k - 10 fine-tune epochs.
- Uniform epochs within a phase make per-epoch energies smoother than real ones; errors within a phase here come
  from power drift and the start-up/recompile gaps only. The prior error is synthetic (true mean x lognormal 25 %),
  i.e. it stands for a model that is unbiased on this data; nothing was tuned on these runs beyond what is stated.
"""


if __name__ == "__main__":
    main()
