"""Held-out-GPU speed-up of data-parallel training (issue 29): N GPUs over 1 GPU, per source.

Run: ``python bench/scaling.py [--table T | --from-sources ../shared/data] [--json OUT]``; T defaults to
``training_data/table/training_table.parquet`` (``python -m training_data.build_table``). ``--from-sources`` skips
the table build: the same converters' rows, with each zoo model's parameter count taken on the meta device and
backward = 2 x forward FLOPs (no graph featurized). It prints:

* the rows used (Lambda, NVIDIA DLE, MLPerf single-node time rows) and those kept out, by reason;
* the constants of :class:`predictor.parallel.ScalingConstants` fitted on every pair (what ships), with the
  variant chosen on GPU folds;
* leave-one-GPU-out: for each GPU, constants fitted on the other GPUs only (variant chosen on inner GPU folds of
  those), then the median and p90 absolute error of the speed-up (time at the anchor over time at N, same source,
  model, GPU, per-GPU batch and precision) per source and N, against two baselines: perfect scaling (speed-up
  = N) and the untrained default constants (the physics of the collectives only).

A group with a 1-GPU row is anchored at 1 GPU (Lambda, DLE); MLPerf nodes have none, so their groups are anchored
at their smallest GPU count (e.g. 8 -> 10 GPUs) and reported as such. Ratios cancel the single-GPU time model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository ahead of bench/

from predictor.parallel_fit import (  # noqa: E402
    choose_variant, class_constants, fit_constants, held_out_speedups, pair_rows, scaling_rows)

DEFAULT_TABLE = REPO / "training_data" / "table" / "training_table.parquet"
PREDICTORS = {"pred_speedup": "fitted (held out)", "pred_comm_only": "collectives only", "pred_perfect": "perfect"}


def speedup_table(h: pd.DataFrame) -> pd.DataFrame:
    """Median / p90 absolute speed-up error per source and (anchor -> N), for each predictor."""
    h = h.assign(step=h["n_anchor"].astype(str) + "->" + h["n_gpus"].astype(str))
    rows = []
    for (src, step), d in h.groupby(["source", "step"], sort=False):
        rec = {"source": src, "GPUs": step, "pairs": len(d), "held-out GPUs": d["gpu"].nunique(),
               "measured speed-up": float(d["speedup"].median()),
               "predicted": float(d["pred_speedup"].median())}
        for col, name in PREDICTORS.items():
            err = np.abs(d[col] / d["speedup"] - 1.0)
            rec[f"{name} median %"] = 100 * float(err.median())
            rec[f"{name} p90 %"] = 100 * float(err.quantile(0.9))
        rows.append(rec)
    out = pd.DataFrame(rows)
    order = {"lambda_dlbench": 0, "nvidia_dle": 1, "mlperf_training": 2}
    return out.sort_values(["source", "GPUs"], key=lambda s: s.map(order) if s.name == "source" else
                           s.str.split("->").map(lambda x: (int(x[0]), int(x[1])))).reset_index(drop=True)


def rows_from_sources(shared: Path) -> pd.DataFrame:
    """The throughput sources' validated rows with the graph columns the term needs (parameters from the zoo
    module on the meta device; FLOPs shares forward 1 : backward 2 : train 3)."""
    import torch

    from predictor.parallel_fit import SOURCES
    from training_data.build_table import load_runs
    from training_data.zoo import ZOO, parse_name

    runs, _ = load_runs(shared, list(SOURCES))
    params = {}
    for model in runs["model"].unique():
        base, kw = parse_name(model.removeprefix("zoo:"))
        with torch.device("meta"):
            params[model] = float(sum(p.numel() for p in ZOO[base].factory(**kw).parameters()))
    return runs.assign(g_params=runs["model"].map(params), g_trainable_params=runs["model"].map(params),
                       g_flops_forward=1.0, g_flops_backward=2.0, g_flops_train=3.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    ap.add_argument("--from-sources", type=Path, default=None, help="the shared data folder: no table needed")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.from_sources is None and not args.table.exists():
        print(f"error: {args.table} not found; build it with `python -m training_data.build_table`", file=sys.stderr)
        return 1
    t0 = time.time()
    source = rows_from_sources(args.from_sources) if args.from_sources else pd.read_parquet(args.table)
    rows, kept_out = scaling_rows(source)
    pairs = pair_rows(rows)
    print(f"rows: {len(rows):,} single-node time rows of {rows['source'].nunique()} sources -> {len(pairs):,} "
          f"pairs on {pairs['gpu'].nunique()} GPUs")
    for reason, n in kept_out.items():
        print(f"  kept out: {n:,} rows: {reason}")
    variant = choose_variant(pairs)
    fit = fit_constants(pairs, variant)
    print("shipped constants (all pairs; variant chosen on GPU folds):")
    print("  " + json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in fit.to_dict().items()},
                            default=lambda x: round(float(x), 6)))
    for name, c in class_constants(fit, pairs).items():
        print(f"  SCALING[{name!r}] = {c!r}")
    held = held_out_speedups(pairs)
    table = speedup_table(held)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.2f}".format):
        print("\nleave-one-GPU-out speed-up error (absolute %, predicted / measured - 1):")
        print(table.to_string(index=False))
        for n in (2, 4, 8):
            d = held[(held["n_anchor"] == 1) & (held["n_gpus"] == n)]
            err = 100 * np.abs(d["pred_speedup"] / d["speedup"] - 1)
            print(f"N={n} over 1 GPU, all sources: median {err.median():.2f} %, p90 {err.quantile(0.9):.2f} % "
                  f"({len(d)} pairs, {d['gpu'].nunique()} held-out GPUs)")
        print("variants chosen on inner folds: " + ", ".join(f"{k} x{v}" for k, v in
                                                            held.groupby("gpu")["variant"].first().value_counts().items()))
    print(f"({time.time() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"constants": fit.to_dict(), "table": table.to_dict(orient="records")},
                                        indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
