"""Seeded mutation fuzzing in CI (issue 19): 300 mutated real graphs through ``predict``, each in an isolated
worker with a 3 GB address-space cap and a 10 s wall limit, so no case can hang or abort the suite. Every
outcome must be a forecast or one of the project's errors. ``bench/fuzz.py`` runs 10,000."""

from __future__ import annotations

import collections

import pytest

import fuzzing

N_CASES = 300


@pytest.fixture(scope="module")
def seeds():
    return fuzzing.seed_models()


def test_seed_corpus_is_real_and_varied(seeds):
    names = [n for n, _ in seeds]
    assert len(seeds) >= 300
    assert {n.split("/")[0] for n in names} >= {"node", "pytorch-operator", "pytorch-converted", "simple"}
    for op in ("conv", "gemm", "loop", "scan", "lstm", "resize", "slice", "range", "if"):
        assert any(n.startswith(f"node/test_{op}") for n in names), op


def test_mutations_are_seeded_and_change_the_graph(seeds):
    a = [d for _, d, _ in fuzzing.cases(seeds, 50, base_seed=3)]
    b = [d for _, d, _ in fuzzing.cases(seeds, 50, base_seed=3)]
    c = [d for _, d, _ in fuzzing.cases(seeds, 50, base_seed=4)]
    assert a == b and a != c
    originals = {d for _, d in seeds}
    assert sum(d not in originals for d in a) >= 45  # nearly every case differs from its seed


@pytest.mark.timeout(300)
def test_fuzzed_inputs_end_in_a_forecast_or_a_project_error(seeds):
    results = fuzzing.run_cases(fuzzing.cases(seeds, N_CASES, base_seed=0), workers=2, timeout_s=10.0,
                                mem_bytes=3 << 30)
    counts = collections.Counter(r["outcome"] for r in results)
    print(f"fuzz outcomes over {N_CASES} cases: {dict(counts)}")
    assert sorted(r["id"] for r in results) == list(range(N_CASES))
    outside = [(r["id"], fuzzing.seed_name(seeds, r["id"]), r["outcome"], r["detail"])
               for r in results if r["outcome"] in fuzzing.OUTSIDE]
    assert not outside, outside
    assert counts["ok"] >= 20 and counts["project_error"] >= 100  # both paths exercised


@pytest.mark.timeout(300)
def test_expensive_valid_inputs_end_in_a_forecast_or_a_project_error(seeds):
    """Issue 32's stress family (large constant sizes read by data-propagating ops, large dims, long chains with
    loops, nested loops, unknown-shape chains): none may run past the per-case limit."""
    results = fuzzing.run_cases(fuzzing.cases(seeds, 40, base_seed=1, family="stress"), workers=2, timeout_s=10.0,
                                mem_bytes=3 << 30)
    outside = [(r["id"], fuzzing.seed_name(seeds, r["id"], 1), r["outcome"], r["detail"], round(r["seconds"], 1))
               for r in results if r["outcome"] in fuzzing.OUTSIDE]
    assert len(results) == 40 and not outside, outside


def test_runner_reports_hangs_and_aborts_without_hanging():
    """The isolation itself: a case that never returns is a timeout, one that aborts the process a crash."""
    import os
    import signal

    hang = b"HANG"
    results = {r["id"]: r for r in fuzzing.run_cases([(0, hang, False)], workers=1, timeout_s=2.0,
                                                      _hook="hang")}
    assert results[0]["outcome"] == "timeout"
    results = {r["id"]: r for r in fuzzing.run_cases([(1, b"x", False)], workers=1, timeout_s=5.0,
                                                      _hook="abort")}
    assert results[1]["outcome"] == "crash" and str(-signal.SIGABRT) in results[1]["detail"]
    assert os.getpid()  # still alive
