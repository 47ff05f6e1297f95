"""`joulecast score`: ranked table, --json, --out/--pareto files, CO2 by region, failing before any work."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from predictor.cli import main
from predictor.cli.score import pareto_front
from test_batch_graphs import write_variants


@pytest.fixture(scope="module")
def cand_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cands")
    write_variants(d, 5, seed=11, prefix="cand")
    return d


def _args(cand_dir, model_dir, *extra):
    return [
        "score",
        str(cand_dir),
        "--gpu",
        "L4",
        "--batch-size",
        "64",
        "--samples-per-epoch",
        "5000",
        "--epochs",
        "2",
        "--model-dir",
        str(model_dir),
        *extra,
    ]


def test_json_is_ranked_records_only(cand_dir, synthetic_model, capsys):
    rc = main(_args(cand_dir, synthetic_model[0], "--gpu", "T4", "--json", "--region", "fr"))
    out = capsys.readouterr().out
    assert rc == 0
    rows = json.loads(out)  # nothing but JSON on stdout
    assert len(rows) == 10
    for gpu in ("L4", "T4"):
        mine = [r for r in rows if r["gpu"] == gpu]
        assert [r["rank"] for r in mine] == [1, 2, 3, 4, 5]
        assert [r["energy_j"] for r in mine] == sorted(r["energy_j"] for r in mine)
    assert all(r["co2_kg"] == pytest.approx(r["energy_kwh"] * 56 / 1000) for r in rows)


def test_table_out_and_pareto_files(cand_dir, synthetic_model, tmp_path, capsys):
    acc = pd.DataFrame({"model": [f"cand00{i}.onnx" for i in range(5)], "top1": [0.7, 0.8, 0.75, 0.9, 0.6]})
    acc.to_csv(tmp_path / "acc.csv", index=False)
    rc = main(
        _args(
            cand_dir,
            synthetic_model[0],
            "--out",
            str(tmp_path / "ranked.parquet"),
            "--pareto",
            str(tmp_path / "p.png"),
            "--accuracy-csv",
            str(tmp_path / "acc.csv"),
            "--top",
            "2",
        )
    )
    out = capsys.readouterr().out
    assert rc == 0 and "L4: lowest forecast training energy first" in out and "top1" in out
    ranked = pd.read_parquet(tmp_path / "ranked.parquet")
    assert len(ranked) == 5 and list(ranked["rank"]) == [1, 2, 3, 4, 5]
    assert dict(zip(ranked["name"], ranked["top1"])) == dict(zip(acc["model"].str[:-5], acc["top1"]))
    assert not (tmp_path / "ranked.parquet.partial.csv").exists()  # the rows written while scoring, replaced
    png = (tmp_path / "p.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 200_000
    rc = main(_args(cand_dir, synthetic_model[0], "--out", str(tmp_path / "ranked.csv")))
    assert rc == 0 and len(pd.read_csv(tmp_path / "ranked.csv")) == 5


def test_fails_before_any_work(cand_dir, synthetic_model, tmp_path, capsys, monkeypatch):
    import predictor.batch

    def boom(*a, **k):
        raise AssertionError("scoring started although the output cannot be written")

    monkeypatch.setattr(predictor.batch, "predict_many", boom)
    (tmp_path / "empty").mkdir()
    cases = [
        (
            _args(cand_dir, synthetic_model[0], "--out", str(tmp_path / "no" / "such" / "dir.csv")),
            "does not exist",
        ),
        (_args(cand_dir, synthetic_model[0], "--out", str(tmp_path / "ranked.xlsx")), ".csv or .parquet"),
        (_args(cand_dir, synthetic_model[0], "--pareto", str(tmp_path / "p.jpg")), ".png"),
        (_args(tmp_path / "empty", synthetic_model[0]), "contains no .onnx files"),
        (_args(str(tmp_path / "zzz*.onnx"), synthetic_model[0]), "matches no files"),
        (_args(str(tmp_path / "absent.onnx"), synthetic_model[0]), "no such file or directory"),
        (_args(cand_dir, synthetic_model[0], "--region", "atlantis"), "unknown grid region"),
    ]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    import os

    if os.geteuid() != 0:  # root ignores permission bits
        cases.append((_args(cand_dir, synthetic_model[0], "--out", str(ro / "r.csv")), "not writable"))
    for argv, needle in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "error:" in err and needle in err, (argv, err)


def test_nothing_scorable_exits_non_zero(synthetic_model, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx graph")
    for extra in ((), ("--json",)):
        assert main(_args(bad, synthetic_model[0], *extra)) == 1
        captured = capsys.readouterr()
        assert "no input could be scored" in captured.err
        if extra:
            assert json.loads(captured.out)[0]["error"]  # the records are still printed


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_rows_computed_before_a_crash_stay_on_disk(cand_dir, synthetic_model, tmp_path, monkeypatch, suffix):
    import predictor.batch

    real = predictor.batch.featurize_stream

    def crashes_after_three(sources, **kw):
        done = 0
        for item in real(sources, **kw):
            if item is not None:
                yield item
                done += 1
                if done == 3:
                    raise RuntimeError("simulated crash")

    complete = tmp_path / "complete.csv"
    assert main(_args(cand_dir, synthetic_model[0], "--out", str(complete))) == 0
    monkeypatch.setattr(predictor.batch, "featurize_stream", crashes_after_three)
    out = tmp_path / f"crashed{suffix}"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(_args(cand_dir, synthetic_model[0], "--out", str(out)))
    partial = pd.read_csv(out if suffix == ".csv" else tmp_path / "crashed.parquet.partial.csv")
    assert len(partial) == 3 and (partial["error"].isna()).all()
    full = pd.read_csv(complete).set_index("model")["energy_j"]
    assert partial["energy_j"].tolist() == full.loc[partial["model"]].tolist()


def test_pareto_front_minimises_both():
    assert pareto_front([1, 2, 3, 4], [4, 3, 5, 1]) == [0, 1, 3]
