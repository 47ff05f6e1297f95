"""Retrain benchmark: wall time and peak RSS of ``joulecast retrain`` on a large measurement table.

Run: ``python bench/retrain.py [--rows 100000] [--graphs 40] [--base none|shipped] [--no-evaluate]``.

Writes ``--graphs`` weightless MLP graphs (``bench/score.py``'s generator), a runs CSV of ``--rows`` measured
runs on 5 GPUs x 4 batch sizes whose energy follows a roofline-like law (+3 % noise), then times
``predictor.retraining.publish.retrain`` on it in a child process (its own peak RSS from ``getrusage``), stage by stage
when ``--profile`` is given. Goal (issue 19): 100k rows <= 120 s and <= 1 GB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # (bench/ once held a script named like the package)
sys.path.insert(0, str(ROOT))

GPUS = ("A100", "V100", "T4", "L4", "H100")
BATCHES = (16, 32, 64, 128)


def _score_module():
    spec = importlib.util.spec_from_file_location("bench_score", _HERE / "score.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_runs(root: Path, rows: int, graphs: int, seed: int = 0) -> Path:
    """``graphs`` MLPs and a CSV of ``rows`` runs over them; returns the CSV path."""
    import numpy as np
    import pandas as pd

    from featurize import featurize, lookup_gpu

    paths = _score_module().make_family("mlp", graphs, root / "graphs", seed=seed)
    specs = {g: lookup_gpu(g) for g in GPUS}
    base = []
    for p in paths:
        for bs in BATCHES:
            f = featurize(str(p), batch_size=bs, with_nodes=False)
            for g, s in specs.items():
                t = f.flops_train / (0.35 * s.peak_fp32_flops) + f.n_nodes * 15e-6 / bs
                base.append((str(p), g, bs, t, 0.55 * s.tdp_w))
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), rows)
    cfg = pd.DataFrame(base, columns=["model", "gpu", "batch_size", "t_sample", "power_w"]).iloc[pick]
    spe = rng.choice([10_000, 50_000, 100_000], rows)
    epochs = rng.integers(1, 20, rows)
    time_s = cfg["t_sample"].to_numpy() * spe * epochs * rng.lognormal(0, 0.03, rows)
    runs = pd.DataFrame({"model": cfg["model"].to_numpy(), "gpu": cfg["gpu"].to_numpy(),
                         "batch_size": cfg["batch_size"].to_numpy(), "samples_per_epoch": spe, "epochs": epochs,
                         "energy_j": time_s * cfg["power_w"].to_numpy() * rng.lognormal(0, 0.03, rows),
                         "time_s": time_s})
    csv = root / "runs.csv"
    runs.to_csv(csv, index=False)
    return csv


_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from predictor.retraining.publish import read_retrain_summary, retrain
if {profile!r}:
    import cProfile, pstats
    prof = cProfile.Profile(); prof.enable()
out = retrain({csv!r}, out_dir={out!r}, base={base!r}, evaluate={evaluate!r})
wall = time.perf_counter() - t0
if {profile!r}:
    prof.disable(); pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
s = read_retrain_summary(out)
print(json.dumps({{"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "user_rows": s["user_rows"], "mode": s["mode"]}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--graphs", type=int, default=40)
    ap.add_argument("--base", default="none", choices=("none", "shipped"))
    ap.add_argument("--no-evaluate", action="store_true")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="joulecast-bench-retrain-") as tmp:
        t = time.perf_counter()
        csv = write_runs(Path(tmp), args.rows, args.graphs)
        print(f"wrote {args.rows} runs over {args.graphs} graphs in {time.perf_counter() - t:.1f} s "
              f"({os.path.getsize(csv) / 2**20:.1f} MiB CSV)")
        code = _CHILD.format(root=str(ROOT), csv=str(csv), out=str(Path(tmp) / "model"),
                             base=None if args.base == "none" else "shipped", evaluate=not args.no_evaluate,
                             profile=args.profile)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp)
        if res.returncode != 0:
            print(res.stderr[-4000:])
            raise SystemExit(res.returncode)
        if args.profile:
            print(res.stderr[-6000:])
        doc = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"retrain base={args.base} evaluate={not args.no_evaluate}: {doc['user_rows']} rows ({doc['mode']}) in "
          f"{doc['wall_s']:.1f} s, peak RSS {doc['peak_rss_mb']:.0f} MB (its children {doc['children_peak_rss_mb']:.0f}"
          f" MB); goal <= 120 s and <= 1024 MB")
    print(f"this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
