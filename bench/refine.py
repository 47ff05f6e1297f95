"""Evaluate STEP refinement (``predictor.refine``) against the usual projections; writes models/REFINE.md + PNG.

Run: ``python bench/refine.py [--shared ../shared/data] [--out models]`` (about 2 min on one core).

Series: per-epoch energies of the 249 seaa2023 runs, recovered from the 1 Hz traces by aligning each epoch's
training + validation pattern (:mod:`training_data.epoch_series`; epoch 1 includes the start-up). Two sets:

  A  single-phase   the fine-tuning epochs of each run as one run, led by a first epoch that carries the run's
                    own measured first-epoch excess (ratio of its epoch 1 to its frozen-phase median) on top of
                    the fine-tuning level (:func:`training_data.fit_refine.single_phase`); 31-133 epochs.
  B  whole runs     the series as recorded: 10 frozen-backbone epochs, then fine-tuning; ``phases=[10]`` is
                    declared to ``refine`` (the other projections cannot use it).

Priors (synthetic, seeded, stated): prior = true mean epoch x exp(d), stated log_sigma 0.25.
  calibrated   d ~ N(0, 0.25^2): a model as good as it says.
  off          d ~ N(-0.6, 0.45^2): a model mostly low and over-confident, as seen on withheld runs
               (0.16-0.95x the truth).

Projections of the total after k = 1, 2, 3, 5, 10 measured epochs (the true epoch count n is given to all):
  refine         refine(prior, epochs[:k], total_epochs=n) with constants fitted on the other groups
  skip-first     epoch 1 + mean(epochs 2..k) x (n - 1)   (k >= 2)
  Carbontracker  mean(epochs 1..k) x n
  prior          the prior alone
Constants: grouped outer CV, leave one (architecture, GPU) group out (8 folds): ``refine``'s constants are fitted
(:func:`training_data.fit_refine.fit`, interval scale by inner leave-one-group-out CV) on the 7 other groups and
judged on the held-out one. Error = |projection - true total| / true total.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from predictor.refinement.project import refine  # noqa: E402
from training_data.epoch_series import load_series  # noqa: E402
from training_data.fit_refine import KS, fit, group_of, make_prior, single_phase, trace_summary  # noqa: E402

SEED = 7
PRIORS = {"calibrated": (0.0, 0.25), "off": (-0.6, 0.45)}
METHODS = ["refine", "skip-first", "Carbontracker", "prior"]
BASELINES = METHODS[1:]
TAKES_PARAMS = "params" in inspect.signature(refine).parameters  # lets this script time the previous refine


def project(e: np.ndarray, prior_per_epoch_j: float, k: int, params, phases: list[int] | None) -> list[tuple]:
    """(method, projection J, covered or None) for one series after k epochs."""
    n, true = e.size, float(e.sum())
    prior = make_prior(prior_per_epoch_j, n)
    kw = {"params": params} if TAKES_PARAMS and params is not None else {}
    r = refine(prior, epoch_energies_j=e[:k], total_epochs=n, phases=phases, **kw)
    out = [("refine", r.energy_j, bool(r.interval_j[0] <= true <= r.interval_j[1]))]
    if k >= 2:
        out.append(("skip-first", float(e[0] + e[1:k].mean() * (n - 1)), None))
    out.append(("Carbontracker", float(e[:k].mean() * n), None))
    out.append(("prior", prior.energy_j, bool(prior.interval_j[0] <= true <= prior.interval_j[1])))
    return out


def evaluate(shared: Path, folds: bool = True) -> pd.DataFrame:
    series = load_series(shared)
    groups = sorted({group_of(s) for s in series})
    rng = np.random.default_rng(SEED)
    z = rng.standard_normal(len(series))
    rows = []
    for g in groups:
        params = fit([s for s in series if group_of(s) != g]) if folds and TAKES_PARAMS else None
        for i, s in enumerate(series):
            if group_of(s) != g:
                continue
            sets = {"A single-phase": (single_phase(s), None), "B whole runs": (s.energies_j, [s.n_frozen])}
            for set_name, (e, phases) in sets.items():
                for prior_name, (mu, sd) in PRIORS.items():
                    per_epoch = float(e.mean()) * float(np.exp(mu + sd * z[i]))
                    for k in KS:
                        for method, est, cov in project(e, per_epoch, k, params, phases):
                            rows.append((set_name, prior_name, s.run_id, g, k, method,
                                         100 * abs(est - e.sum()) / e.sum(), cov))
    return pd.DataFrame(rows, columns=["set", "prior", "run_id", "group", "k", "method", "abs_pct_err", "covered"])


def table(err: pd.DataFrame) -> pd.DataFrame:
    """Rows (set, prior, k); columns: 'median / p90' per method, refine's coverage, its gain vs the best baseline."""
    g = err.groupby(["set", "prior", "k", "method"])
    med, p90 = g.abs_pct_err.median().unstack("method"), g.abs_pct_err.quantile(0.9).unstack("method")
    out = pd.DataFrame(index=med.index)
    for m in METHODS:
        out[m] = [("-" if np.isnan(a) else f"{a:.1f} / {b:.1f}") for a, b in zip(med[m], p90[m])]
    cov = err[err.method.isin(["refine", "prior"])].groupby(["set", "prior", "k", "method"]).covered.mean()
    out["cov refine %"] = (100 * cov.xs("refine", level="method")).round(0).astype(int)
    out["cov prior %"] = (100 * cov.xs("prior", level="method")).round(0).astype(int)
    out["best baseline / refine (median)"] = (med[BASELINES].min(axis=1) / med["refine"]).round(2)
    return out


def md_table(t: pd.DataFrame) -> str:
    cols = ["set", "prior", "k"] + list(t.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for idx, row in t.iterrows():
        lines.append("| " + " | ".join(str(v) for v in (*idx, *row.values)) + " |")
    return "\n".join(lines)


def plot(err: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = err.groupby(["set", "prior", "k", "method"]).abs_pct_err.median().unstack("method")
    keys = sorted({(s, p) for s, p, _ in med.index})
    fig, axes = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 3.0), dpi=72, sharey=True)
    for ax, (s, p) in zip(np.atleast_1d(axes), keys):
        d = med.loc[(s, p)]
        for m, style in zip(METHODS, ["-o", "--s", "--^", ":"]):
            ax.plot(d.index, d[m], style, ms=3, label=m)
        ax.set_yscale("log")
        ax.set_xlabel("epochs measured (k)")
        ax.set_title(f"{s}, prior {p}", fontsize=8)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    np.atleast_1d(axes)[0].set_ylabel("median |error| of total, %")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(t: pd.DataFrame, n_runs: int, traces: pd.DataFrame) -> str:
    setup = __doc__.split("\n\n", 1)[1]
    tr = traces.reset_index().rename(columns={"index": "runs of"})
    tr_md = "\n".join(["| " + " | ".join(tr.columns) + " |", "|" + "---|" * len(tr.columns)]
                      + ["| " + " | ".join(str(v) for v in row) + " |" for row in tr.values])
    return "\n".join([
        "# Refinement from measured epochs (STEP) — evaluation", "",
        f"Generated by `python bench/refine.py` on {n_runs} seaa2023 runs (RTX 3090 / RTX 3070; VGG16, ResNet50, "
        "MobileNetV2, NASNetMobile). Cells: **median / p90 absolute % error** of the projected total energy after "
        "k measured epochs; coverage = % of runs whose true total lies in the nominal 90 % interval.", "",
        "## Setup", "", "```", setup.strip(), "```", "", "## Results", "", md_table(t), "",
        "![refine eval](refine_eval.png)", "", "## Warm-up and drift on the traces", "",
        "First-epoch excess (`warmup_x` = epoch 1 / median of epochs 2-10, start-up included) and drift of the "
        "fine-tuning epochs (`training_data.fit_refine.trace_summary`).", "", tr_md, "", NOTES])


NOTES = """## Reading the figures

- k = 1: the first epoch is read through the fitted warm-up distribution (x1.27 on average), never as a steady
  epoch, with Student-t tails and a hot-start share (`RefineParams`); its level is held inside the prior's 90 %
  interval until a second epoch confirms it (issue 32 item 17). With a calibrated prior this beats the prior alone
  (10.4 vs 15.4 % median); with an off, over-confident prior it stays near that prior (40.8 vs 48.0 %), where
  letting the first epoch override the prior gave 16.9 %: the price of never letting one hot epoch move the
  forecast outside the prior's interval.
- k = 2-3: one or two steady epochs; their mean (cut jitter between neighbouring epochs cancels in the sum) plus
  the fitted drift. About the skip-first heuristic's error or slightly below: every other source (prior sd 0.25,
  warm-up sd 0.18) is 3-5x noisier than one steady epoch here (robust sd 0.034), so it cannot add much.
- Per-epoch noise in these series is almost all epoch-duration noise from recovering the cuts at 1 Hz (energy
  3.8 %, duration 3.7 %, power 0.3 % robust sd per epoch); series measured per epoch by a callback are smoother.
- Drift on these traces is small: +0.019 %/epoch median (+1.1 % over a run), 1 run in 249 has late epochs more
  than 10 % above its median; it is projected and its run-to-run sd (0.96 %) widens the interval.
- Set B: before the fine-tuning phase starts (k <= 10) no measurement can see it; with `phases=[10]` refine keeps
  the prior's budget for it, the other projections extrapolate the cheap frozen epochs.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args()
    err = evaluate(args.shared)
    t = table(err)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    print(t.to_string())
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        plot(err, args.out / "refine_eval.png")
        traces = trace_summary(load_series(args.shared))
        (args.out / "REFINE.md").write_text(report(t, err.run_id.nunique(), traces))
        if (args.out / "manifest.json").is_file():  # a model directory: re-seal its SHA256SUMS
            from predictor.model.artifact import seal

            seal(args.out)
        print(f"wrote {args.out / 'REFINE.md'} and {args.out / 'refine_eval.png'}")


if __name__ == "__main__":
    main()
