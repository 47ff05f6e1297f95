"""Retrain publication that cannot lose a model (issue 19): one lock per output directory, refusal without
--overwrite, stale staging cleaned, interrupted swaps restored, output location checked before the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from featurize.errors import InvalidInputError
from predictor.model.artifact import seal
from predictor.model.loaded import load_model, shipped_model_dir
from predictor.model.publish import OLD_TAG, STAGING_TAG, OutputLock, publication, publish
from predictor.retraining.publish import retrain

REPO = Path(__file__).resolve().parents[1]


def _tiny_model(where: Path, tag: str) -> Path:
    """A directory that passes for a sealed model directory as far as publication is concerned."""
    where.mkdir(parents=True)
    (where / "manifest.json").write_text(json.dumps({"tag": tag}))
    seal(where)
    return where


def _tag(d: Path) -> str:
    return json.loads((d / "manifest.json").read_text())["tag"]


def test_second_writer_is_refused_before_any_work(tmp_path):
    out = tmp_path / "m"
    with OutputLock(out):
        # the measurements do not exist: the lock must be what refuses, before they are read
        with pytest.raises(InvalidInputError, match=rf"another joulecast retrain \(pid {os.getpid()}\) is writing"):
            retrain(tmp_path / "no-such-runs.csv", out_dir=out, base=None)
    assert not out.exists() and not any(tmp_path.iterdir())  # lock file removed on release


def test_two_concurrent_cli_retrains_publish_exactly_one_model(tmp_path):
    """The issue's reproducer: two retrains to the same --out at once both exited 0 and one model was lost."""
    from test_batch_graphs import write_variants
    from conftest import synthetic_runs

    graphs = write_variants(tmp_path / "graphs", 4, seed=0)
    runs = tmp_path / "runs.csv"
    synthetic_runs(graphs, gpus=("A100", "T4"), batch_sizes=(32,)).to_csv(runs, index=False)
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "predictor", "retrain", str(runs), "--out", str(out), "--base", "none", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    loser = next(r for r in results if r[0] == 1)[2]
    assert "another joulecast retrain" in loser or "already exists" in loser
    winner = json.loads(next(r for r in results if r[0] == 0)[1])
    assert winner["model_dir"] == str(out.resolve()) and load_model(out).manifest["model_name"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graphs", "m", "runs.csv"]  # no lock/staging left


def test_stale_staging_is_cleaned_and_new_model_published(tmp_path):
    out = tmp_path / "m"
    stale = [tmp_path / f".m{STAGING_TAG}killed1", tmp_path / ".m.retrainabc"]  # current and legacy names
    for d in stale:
        _tiny_model(d / "model", "stale")
    other = _tiny_model(tmp_path / ".other.joulecast-staging-x", "not ours")  # another output's: kept
    with publication(out) as (staging, path):
        assert path == out.resolve() and staging.parent == path.parent
        publish(_tiny_model(staging / "model", "new"), path, overwrite=False)
    assert _tag(out) == "new" and other.is_dir()
    assert not any(d.exists() for d in stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.joulecast-staging-x", "m"]


def test_interrupted_swap_restores_the_old_model_and_never_replaces_it(tmp_path):
    out = tmp_path / "m"
    _tiny_model(tmp_path / f".m{OLD_TAG}12345", "previous")  # killed between the two renames: out is missing
    with pytest.raises(InvalidInputError, match="already exists"):
        with publication(out):
            pass
    assert _tag(out) == "previous"
    with publication(out, overwrite=True) as (staging, path):
        publish(_tiny_model(staging / "model", "new"), path, overwrite=True)
    assert _tag(out) == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_refuses_without_overwrite_even_if_out_appears_during_the_work(tmp_path):
    out = tmp_path / "m"
    with publication(out) as (staging, path):
        _tiny_model(out, "someone else's")
        with pytest.raises(InvalidInputError, match="appeared while retraining"):
            publish(_tiny_model(staging / "model", "new"), path, overwrite=False)
    assert _tag(out) == "someone else's"


@pytest.mark.parametrize("make_out,match", [
    (lambda t: shipped_model_dir() / "retrained", "inside, or contains the base/shipped model"),
    (lambda t: shipped_model_dir(), "inside, or contains the base/shipped model"),
    (lambda t: shipped_model_dir().parent, "inside, or contains the base/shipped model"),
    (lambda t: (t / "file.txt").write_text("x") and t / "file.txt" / "m", "is not a directory"),
    (lambda t: Path("/proc/joulecast-cannot-exist/m"), "cannot create"),
    (lambda t: t / ("x" * 300), "longer than the system allows"),
    (lambda t: str(t / "a\x00b"), "NUL byte"),
])
def test_output_location_checked_before_any_work(tmp_path, make_out, match):
    out = make_out(tmp_path)
    with pytest.raises(InvalidInputError, match=match):
        retrain(tmp_path / "no-such-runs.csv", out_dir=out, base=None)  # the runs are never read
    assert not (shipped_model_dir() / "retrained").exists()
    load_model(None)  # the shipped model is intact


def test_existing_non_model_directory_is_never_replaced(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "precious.csv").write_text("1\n")
    with pytest.raises(InvalidInputError, match="not a model directory"):
        retrain(tmp_path / "no-such-runs.csv", out_dir=out, base=None, overwrite=True)
    assert (out / "precious.csv").read_text() == "1\n"
