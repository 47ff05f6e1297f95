"""Power figures of issue 31: the power-cap curve on the Zeus sweeps (leave-one-GPU-out), the power model's grouped
CV next to the shipped power booster's, MLPerf node power with a host-power term (leave-one-system-out), and fp8
versus bf16 on ResNet-18 (H100).

Usage: ``python bench/power.py [--table training_data/table/training_table.parquet] [--shared ../shared/data]``
(from the repository root; the table from ``python -m training_data.build_table``). Each part prints JSON; a part
whose input is missing says so and is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def zeus_curve(table) -> dict:
    from training_data.fit_power_cap import baselines, fit_curve, leave_one_gpu_out, summary, sweep_points

    points = sweep_points(table)
    curve = fit_curve(points)
    return {"fit_on_all": {**curve.to_dict(), **summary(points, curve)}, "leave_one_gpu_out": leave_one_gpu_out(points),
            "baselines": baselines(points)}


def power_cv(table) -> dict:
    from predictor.power_model import grouped_power_cv
    from predictor.fit.prepare import prepare

    rows, feats, targets = prepare(table)
    return {g: grouped_power_cv(rows, feats, targets, g) for g in ("_gpu_canonical", "source", "group_arch")}


def mlperf(shared: Path) -> dict:
    from training_data.mlperf_power import gpu_power_forecast, load_power_runs, report

    runs = load_power_runs(shared)
    return report(runs, gpu_power_forecast(runs))


def fp8() -> dict:
    from predictor import predict

    kw = dict(gpu="H100-SXM5-80GB", batch_size=64, samples_per_epoch=50_000, epochs=1)
    out = {p: predict(str(REPO / "models" / "examples" / "resnet18.onnx"), precision=p, **kw) for p in ("bf16", "fp8")}
    return {p: {"energy_j": round(v.energy_j, 1), "time_s": round(v.time_s, 3)} for p, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=REPO / "training_data" / "table" / "training_table.parquet")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--parts", default="fp8,zeus,power,mlperf")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    table = pd.read_parquet(args.table) if args.table.is_file() else None
    parts = {"fp8": lambda: fp8(), "zeus": lambda: zeus_curve(table), "power": lambda: power_cv(table),
             "mlperf": lambda: mlperf(args.shared)}
    for name in args.parts.split(","):
        if name in ("zeus", "power") and table is None:
            print(f"{name}: skipped (no table at {args.table})")
            continue
        print(f"== {name}\n{json.dumps(parts[name](), indent=2)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
