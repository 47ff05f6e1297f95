"""Evaluate STEP refinement (``predictor.refine``) on the seaa2023 power traces; writes models/REFINE.md + PNG.

Run: ``python bench/refine.py [--shared ../shared/data] [--out models]``.

Epochs: the authors committed no epoch timestamps. We locate the one boundary we can see reliably — the end of
the 10-epoch frozen-backbone phase, a sustained power step, found by a two-segment least-squares fit of the
31 s rolling-median power between the start of training (power > 0.7 x run median) and mid-run — and cut each phase into *uniform* epochs
(10 frozen, ``trained_epochs_total - 10`` fine-tuning). Epoch 0 therefore contains the start-up idle seconds in
place of training seconds and reads ~5-20 % *below* the frozen level (an artifact of the uniform cut; in a real
run the first epoch is longer and above, which the warm-up rule handles). Per-epoch energy = trapezoid of the 1 Hz power over the epoch window.

Priors (synthetic, seeded, stated): a model that is unbiased on this data but wrong per run. Per run two
standard normals z1, z2 (seed 7) give per-phase log errors d_frozen = s z1, d_ft = s (r z1 + sqrt(1 - r^2) z2)
with s = 0.25 and r = rho_true: the frozen-phase prior (what ``predict(..., frozen=[backbone])`` would give)
= true mean frozen epoch x exp(d_frozen); the fine-tune prior = true mean fine-tune epoch x exp(d_ft). The single
prior (what one ``predict(...)`` of the whole run would give) is their epoch-weighted average, log_sigma 0.25.
Both rho_true = 0.5 (errors correlated across phases, as expected on one GPU/system) and rho_true = 0 (no
correlation: pooling cannot help, and may hurt) are reported. ``refine`` always uses its default prior_rho = 0.5:
nothing was tuned on these runs.

Methods, k = 1..15 epochs measured from the start (frozen phase = epochs 0..9, fine-tuning from epoch 10):
  no phases       refine(prior, epochs, total_epochs=N)
  declared        same + phases=[10] (the user declares "10 frozen epochs, then fine-tuning"); single prior
  phase priors    same + phase_priors=[frozen prior, fine-tune prior]
  Carbontracker   mean(measured) x N
  del Rey STEP    energy(epochs 0..9) + mean(epochs 10..14) x (N - 10); defined only once k >= 15
  prior only      the single prior's total (no measurement)
Error = |projected total - true total| / true total; the true epoch count N is given to every method.
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


SIGMA = 0.25
RHO_TRUE = (0.5, 0.0)
K_MAX = 15
METHODS = ["no phases", "declared", "phase priors", "Carbontracker", "del Rey STEP", "prior only"]
OURS = ["no phases", "declared", "phase priors"]


def make_prior(per_epoch_j: float, n_total: int) -> Prediction:
    z = 1.6448536269514722
    return Prediction(
        energy_j=per_epoch_j * n_total,
        energy_per_epoch_j=per_epoch_j,
        energy_per_sample_j=per_epoch_j / 23807,
        time_s=float(n_total),
        time_per_epoch_s=1.0,
        avg_power_w=per_epoch_j,
        interval_j=(per_epoch_j * n_total * np.exp(-z * SIGMA), per_epoch_j * n_total * np.exp(z * SIGMA)),
        gpu="RTX 3090",
        epochs=float(n_total),
        samples_per_epoch=23807,
        log_sigma=SIGMA,
    )


def run_methods(e: np.ndarray, n_total: int, d_frozen: float, d_ft: float) -> list[tuple]:
    """(k, method, estimate, covered or None) for k = 1..K_MAX on one run's epoch energies."""
    true = float(e.sum())
    pf = make_prior(float(e[:FROZEN_EPOCHS].mean()) * np.exp(d_frozen), FROZEN_EPOCHS)
    pft = make_prior(float(e[FROZEN_EPOCHS:].mean()) * np.exp(d_ft), n_total - FROZEN_EPOCHS)
    single = make_prior((pf.energy_j + pft.energy_j) / n_total, n_total)
    out = []
    for k in range(1, K_MAX + 1):
        m = e[:k]
        refined = {
            "no phases": refine(single, epoch_energies_j=m, total_epochs=n_total),
            "declared": refine(single, epoch_energies_j=m, total_epochs=n_total, phases=[FROZEN_EPOCHS]),
            "phase priors": refine(single, epoch_energies_j=m, total_epochs=n_total, phases=[FROZEN_EPOCHS],
                                   phase_priors=[pf, pft]),
        }
        for name, r in refined.items():
            out.append((k, name, r.energy_j, bool(r.interval_j[0] <= true <= r.interval_j[1])))
        out.append((k, "Carbontracker", float(m.mean()) * n_total, None))
        if k >= 15:
            out.append((k, "del Rey STEP", float(e[:10].sum() + e[10:15].mean() * (n_total - 10)), None))
        out.append((k, "prior only", single.energy_j, bool(single.interval_j[0] <= true <= single.interval_j[1])))
    return out


def evaluate(shared: Path) -> pd.DataFrame:
    runs = pd.read_csv(shared / "seaa2023_ect" / "runs.csv")
    traces = pd.read_parquet(shared / "seaa2023_ect" / "power_traces.parquet", columns=["run_id", "t_seconds", "power_W"])
    rng = np.random.default_rng(SEED)
    rows = []
    for run in runs.sort_values("run_id").itertuples():
        tr = traces[traces.run_id == run.run_id].dropna()
        t, p = tr.t_seconds.to_numpy(float), tr.power_W.to_numpy(float)
        n_total = int(run.trained_epochs_total)
        e, _ = uniform_epochs(t, p, n_total)
        true = float(e.sum())
        z1, z2 = rng.standard_normal(2)
        for rho in RHO_TRUE:
            d_f, d_ft = SIGMA * z1, SIGMA * (rho * z1 + np.sqrt(1 - rho**2) * z2)
            for k, method, est, covered in run_methods(e, n_total, d_f, d_ft):
                rows.append((rho, run.run_id, k, method, 100 * abs(est - true) / true, covered))
    return pd.DataFrame(rows, columns=["rho_true", "run_id", "k", "method", "abs_pct_err", "covered"])


def summarise(err: pd.DataFrame) -> dict[float, pd.DataFrame]:
    """Per rho_true: k rows x method columns, cells 'median / p90' (abs % error)."""
    out = {}
    for rho, d in err.groupby("rho_true"):
        g = d.groupby(["k", "method"]).abs_pct_err
        med, p90 = g.median().unstack("method"), g.quantile(0.9).unstack("method")
        cell = med.copy().astype(object)
        for c in med.columns:
            cell[c] = [("-" if np.isnan(a) else f"{a:.1f} / {b:.1f}") for a, b in zip(med[c], p90[c])]
        out[float(rho)] = cell.reindex(columns=[m for m in METHODS if m in cell.columns]).fillna("-")
    return out


def coverage(err: pd.DataFrame) -> pd.DataFrame:
    d = err.dropna(subset=["covered"])
    d = d[d.k.isin([1, 3, 10, 11, 13, 15])]
    c = (100 * d.groupby(["rho_true", "k", "method"]).covered.mean()).unstack("method").round(0).astype(int)
    return c.reindex(columns=OURS + ["prior only"])


def median_table(err: pd.DataFrame) -> pd.DataFrame:
    return err.groupby(["rho_true", "k", "method"]).abs_pct_err.median().unstack("method")


def plot(err: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = median_table(err)
    styles = {"no phases": "-o", "declared": "-s", "phase priors": "-D", "Carbontracker": "--^",
              "del Rey STEP": "kd", "prior only": ":"}
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.4), dpi=72, sharey=True)
    for ax, rho in zip(axes, RHO_TRUE):
        d = med.loc[rho]
        for method in METHODS:
            if method in d:
                col = d[method].dropna()
                ax.plot(col.index, col.values, styles[method], ms=3, label=method)
        ax.axvline(FROZEN_EPOCHS + 0.5, color="grey", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("epochs measured (k); fine-tuning from k = 11")
        ax.set_title(f"prior errors: sigma {SIGMA}, rho_true {rho}", fontsize=9)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    axes[0].set_ylabel("median |error| of total, %")
    axes[1].legend(fontsize=7)
    fig.suptitle("seaa2023 (249 runs): projected total energy vs epochs measured", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    args = ap.parse_args()
    err = evaluate(args.shared)
    tables = summarise(err)
    pd.set_option("display.width", 200)
    for rho, table in tables.items():
        print(f"rho_true = {rho}: median / p90 abs % error")
        print(table.to_string())
    print(coverage(err).to_string())
    args.out.mkdir(parents=True, exist_ok=True)
    plot(err, args.out / "refine_eval.png")
    (args.out / "REFINE.md").write_text(report(err, tables))
    if (args.out / "manifest.json").is_file():  # a model directory: re-seal its SHA256SUMS
        from predictor.artifact import seal

        seal(args.out)
    print(f"wrote {args.out / 'REFINE.md'} and {args.out / 'refine_eval.png'}")


def md_table(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| k | " + " | ".join(cols) + " |", "|---:|" + "---:|" * len(cols)]
    lines += [f"| {k} | " + " | ".join(str(v) for v in row) + " |" for k, row in zip(table.index, table.values)]
    return "\n".join(lines)


def report(err: pd.DataFrame, tables: dict[float, pd.DataFrame]) -> str:
    n_runs = err.run_id.nunique()
    setup = __doc__.split("\n\n", 1)[1]
    md = ["# Refinement from measured epochs (STEP) — evaluation", "",
          (f"Generated by `python bench/refine.py` on {n_runs} seaa2023 runs (RTX 3090 / RTX 3070; VGG16, ResNet50, "
           "MobileNetV2, NASNetMobile). Cells: **median / p90 absolute % error** of the projected total energy "
           "after k measured epochs."), "", "## Setup", "", "```", setup.strip(), "```", ""]
    for rho in RHO_TRUE:
        table = tables[rho]
        md += [f"## Results, rho_true = {rho}" + (" (prior errors correlated across phases)" if rho else
               " (independent phase errors: pooling has nothing to exploit)"), "", md_table(table), ""]
    cov = coverage(err)
    md += ["## Interval coverage (% of runs whose true total lies in the nominal 90 % interval)", "",
           md_table(cov.reset_index().assign(k=lambda d: d.rho_true.astype(str) + ", k=" + d.k.astype(str))
                    .set_index("k").drop(columns="rho_true").rename_axis("rho_true, k")).replace("| k |", "| rho_true, k |"),
           "", "![refine eval](refine_eval.png)", ""]
    med = median_table(err)
    md += ["## Goal check (median <= 3 %, p90 <= 10 %, >= 2x better than Carbontracker)", ""]
    g = err.groupby(["rho_true", "k", "method"]).abs_pct_err
    for rho in RHO_TRUE:
        for k, label in [(3, "k = 3 (frozen only)"), (13, "k = 13 (3 fine-tune epochs)")]:
            c_med = med.loc[(rho, k), "Carbontracker"]
            parts = []
            for m in OURS:
                o_med, o_p90 = med.loc[(rho, k), m], g.quantile(0.9).loc[(rho, k, m)]
                ok = o_med <= 3 and o_p90 <= 10 and c_med >= 2 * o_med
                parts.append(f"{m} {o_med:.1f} / {o_p90:.1f} {'met' if ok else 'not met'}")
            md.append(f"- rho_true {rho}, {label} (Carbontracker median {c_med:.1f} %): " + "; ".join(parts))
    md += ["", RESULT_NOTES]
    return "\n".join(md)


RESULT_NOTES = """## Reading the figures

- **k <= 10 (frozen phase only)**: the data cannot reveal the ~1.3-5x more expensive fine-tuning phase. Without
  a declared schedule (`no phases`) every data-driven projection (ours, Carbontracker) extrapolates the cheap
  frozen epochs and under-predicts badly. With `phases=[10]` and one prior (`declared`), the unseen phase gets
  the prior's remaining budget, so the error stays near the prior's own. With per-phase priors, the unseen
  fine-tuning phase is projected from its own prior, shifted by rho x the measured/predicted log-ratio of the
  frozen phase: this helps exactly as much as the prior errors really are correlated (compare the two
  rho_true tables); at rho_true = 0 it gains nothing, and can lose a little, since it then moves the
  prediction on noise. No measurement of frozen epochs can remove the fine-tune prior's own independent error.
  At k = 1-2 pooling *hurts* (and its interval under-covers): the only measured epoch is epoch 0, which here
  holds the start-up idle (see Setup) and reads low; with the few-epochs sd of 10 % that bias is passed on to
  the fine-tune phase. We did not retune that sd on these runs; a real first epoch (longer, above the level)
  would be flagged as warm-up from k = 2 instead. Interval coverage of `phase priors` at k = 3-10 is 91-93 % at
  rho_true = 0.5 and 83-85 % at rho_true = 0 (it assumes rho = 0.5).
- **k = 11**: with declared phases the first fine-tuning epoch starts that phase's estimate at once (it is not
  an outlier); its warm-up check waits for a second epoch. Undeclared, one odd epoch is indistinguishable from
  an outlier and the change point is detected from k = 12 (2 epochs of the new level).
- **k >= 13**: the measured fine-tuning phase dominates every variant of ours; del Rey STEP needs k >= 15.
- Uniform epochs within a phase make per-epoch energies smoother than real ones; errors within a phase here
  come from power drift and the start-up/recompile gaps only. The prior errors are synthetic (stated above):
  they stand for a model unbiased on this data; nothing was tuned on these runs.
"""


if __name__ == "__main__":
    main()
