"""Fuzz benchmark: seeded mutations of real ONNX graphs through ``predict``, each case isolated.

Run: ``python bench/fuzz.py [--cases 10000] [--workers 2] [--timeout 10] [--mem-gb 3] [--seed 0] [--quick]
[--family corrupt|stress|mixed]``.

Seeds: every one-node case of ``onnx.backend.test.case.node`` (``--quick``: the cheap modules only), the
backend's on-disk PyTorch/simple models and the weightless real models in ``onnx/backend/test/data/light``.
Mutations (``--family``: corrupt protobufs, issue 19; valid-but-expensive inputs from ``tests/fuzz_stress.py``,
issue 32 -- large constant sizes read by data-propagating ops, large input dims, long chains with loops, nested
loops, unknown-shape chains; or both) and the isolated runner are ``tests/fuzzing.py`` (worker processes under ``RLIMIT_AS``, a per-case
wall limit enforced by killing the worker). Prints outcome counts, cases outside the project's errors (with
their seed model), peak RSS per case and the slowest cases. Goal (issue 19): 10,000 cases, 0 outcomes outside
the project's errors, 0 timeouts at 10 s, peak RSS <= 1 GB per case.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import math
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # (bench/ once held a script named like the package)
sys.path.insert(0, str(ROOT))


def _fuzzing():
    spec = importlib.util.spec_from_file_location("fuzzing", ROOT / "tests" / "fuzzing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--mem-gb", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", default="corrupt", choices=("corrupt", "stress", "mixed"),
                    help="mutations: corrupt protobufs (issue 19), valid-but-expensive inputs (issue 32), or both")
    ap.add_argument("--quick", action="store_true", help="cheap node-case modules only (seeds in ~2 s, not ~30 s)")
    args = ap.parse_args()
    fz = _fuzzing()
    t0 = time.perf_counter()
    seeds = fz.seed_models(all_nodes=not args.quick, light=True)
    print(f"{len(seeds)} seed models in {time.perf_counter() - t0:.1f} s")
    counts: collections.Counter = collections.Counter()
    done = [0]
    t1 = time.perf_counter()

    def progress(res: dict) -> None:
        done[0] += 1
        counts[res["outcome"]] += 1
        if res["outcome"] in fz.OUTSIDE:
            print(f"  case {res['id']} ({fz.seed_name(seeds, res['id'], args.seed)}): {res['outcome']} "
                  f"{res['detail']}", flush=True)
        if done[0] % 1000 == 0:
            print(f"  {done[0]} cases, {time.perf_counter() - t1:.0f} s: {dict(counts)}", flush=True)

    results = fz.run_cases(fz.cases(seeds, args.cases, args.seed, args.family), workers=args.workers, timeout_s=args.timeout,
                           mem_bytes=int(args.mem_gb * 2**30), on_result=progress)
    wall = time.perf_counter() - t1
    details = collections.Counter(r["detail"] for r in results if r["outcome"] == "project_error")
    rss = [r["peak_rss_mb"] for r in results if not math.isnan(r["peak_rss_mb"])]
    print(f"\n{len(results)} cases in {wall:.0f} s ({len(results) / wall:.1f}/s, {args.workers} workers)")
    for name in fz.OUTCOMES:
        print(f"  {name:<16} {counts[name]}")
    print(f"  project errors by type: {dict(details)}")
    outside = sum(counts[k] for k in fz.OUTSIDE)
    print(f"outside the project's errors: {outside}; timeouts at {args.timeout:g} s: {counts['timeout']}")
    if rss:
        rss.sort()
        print(f"peak RSS per case: median {rss[len(rss) // 2]:.0f} MB, max {rss[-1]:.0f} MB (worker process incl. "
              f"imports; cap {args.mem_gb:g} GB address space)")
    print("slowest cases:")
    for r in sorted(results, key=lambda r: -r["seconds"])[:10]:
        print(f"  {r['seconds']:6.2f} s  case {r['id']:>5} ({fz.seed_name(seeds, r['id'], args.seed)}): "
              f"{r['outcome']} {r['detail'][:80]}")


if __name__ == "__main__":
    main()
