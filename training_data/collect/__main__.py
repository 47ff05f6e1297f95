"""Command line: ``python -m training_data.collect --sweep training_data/collect/sweeps/h100.yaml --out
training_data/runs --budget-s 500``.

Resumable: rerun the same command (on any machine, with the earlier run files under ``--out``) and it continues
with the configs not yet measured. ``--list`` prints the plan and exits; ``--device cpu --dry-run`` trains tiny
versions of the configs on CPU and reads energy from a replayed trace (``--replay-trace`` or a synthetic one).
"""

from __future__ import annotations

import argparse
import logging
import sys

from featurize.errors import JoulecastError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training_data.collect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", required=True, help="sweep YAML (training_data/collect/sweeps/*.yaml)")
    ap.add_argument("--out", default="training_data/runs", help="output root; files go to <out>/<gpu-slug>/")
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting runs after this many seconds")
    ap.add_argument("--max-runs", type=int, default=None, help="consider only the first N planned runs")
    ap.add_argument("--repeats", type=int, default=0, help="measure the spec's repeat configs N times each")
    ap.add_argument("--family", action="append", help="only these families (repeatable)")
    ap.add_argument("--arch", action="append", help="only these archs (repeatable)")
    ap.add_argument("--precision", action="append", help="only these precisions (repeatable)")
    ap.add_argument("--device", default="cuda", help="torch device: cuda (default) or cpu")
    ap.add_argument("--gpu-index", type=int, default=0, help="NVML index of the measured GPU")
    ap.add_argument("--energy", choices=("nvml", "replay"), default=None,
                    help="energy source (default: nvml, or replay with --dry-run)")
    ap.add_argument("--replay-trace", default=None, help="Parquet/CSV trace for --energy replay")
    ap.add_argument("--dry-run", action="store_true", help="tiny models, 2 steps x 2 epochs; for tests on CPU")
    ap.add_argument("--epochs", type=int, default=None, help="override the spec's epochs per run")
    ap.add_argument("--steps-per-epoch", type=int, default=None, help="override: fixed steps per epoch")
    ap.add_argument("--sample-interval-s", type=float, default=0.05, help="power sampling period")
    ap.add_argument("--list", action="store_true", help="print the planned runs and exit")
    ap.add_argument("-q", "--quiet", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        return _main(args)
    except JoulecastError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    from training_data.collect.sweep import expand, load_sweep, select

    spec = load_sweep(args.sweep)
    counter = None
    if spec.max_params is not None:
        from training_data.collect.models import param_count

        counter = param_count
    configs = select(expand(spec, repeats=args.repeats, param_counter=counter), families=args.family,
                     archs=args.arch, precisions=args.precision, max_runs=args.max_runs)
    if args.list:
        for c in configs:
            print(c.run_key, c.family, c.model_name(), f"bs={c.batch_size}", c.precision, c.optimizer)
        print(f"{len(configs)} runs", file=sys.stderr)
        return 0

    from pathlib import Path

    from featurize.errors import InvalidInputError
    from predictor.energy.devices import open_device
    from training_data.collect.runner import RunnerOptions, run_sweep

    runs_dir = (Path(__file__).resolve().parents[1] / "runs").resolve()
    if args.dry_run and Path(args.out).resolve() == runs_dir:
        raise InvalidInputError(f"--dry-run rows are not measurements; pass --out elsewhere (e.g. /tmp/dry), "
                                f"not {runs_dir}")

    kind = args.energy or ("replay" if args.dry_run else "nvml")
    energy = open_device(kind, index=args.gpu_index, trace=args.replay_trace,
                         remedy="Run the collection on a GPU machine, or use `--device cpu --dry-run` to replay a "
                                "recorded trace instead.")
    if args.dry_run:
        opts = RunnerOptions(epochs=args.epochs or 2, steps_per_epoch=args.steps_per_epoch or 2,
                             torch_device=args.device, tiny=True, sweep_name=spec.name)
    else:
        opts = RunnerOptions(epochs=args.epochs or spec.epochs, steps_per_epoch=args.steps_per_epoch or
                             spec.steps_per_epoch, target_epoch_s=spec.target_epoch_s, min_steps=spec.min_steps,
                             max_steps=spec.max_steps, torch_device=args.device, sweep_name=spec.name)
    with energy:
        s = run_sweep(configs, energy=energy, out_dir=args.out, opts=opts, budget_s=args.budget_s,
                      est_run_s=spec.est_run_s, sample_interval_s=args.sample_interval_s)
    print(f"measured {len(s.measured)}, oom {len(s.oom)}, failed {len(s.failed)}, already done "
          f"{s.skipped_existing}, not started {s.not_started}{' (budget)' if s.stopped_by else ''}; "
          f"{s.elapsed_s:.0f} s", file=sys.stderr)
    return 1 if s.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
