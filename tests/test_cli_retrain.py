"""`joulecast retrain` and `joulecast info`: summary tables, --json, clear errors."""

from __future__ import annotations

import json

import pandas as pd

from predictor.cli import main


def test_retrain_cli_json_and_table(synthetic_model, tmp_path, capsys):
    _, csv, _ = synthetic_model
    small = tmp_path / "runs.csv"
    pd.read_csv(csv).iloc[:64].to_csv(small, index=False)
    assert main(["retrain", str(small), "--out", str(tmp_path / "m1"), "--base", "none", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model_dir"] == str((tmp_path / "m1").resolve())
    assert doc["user_rows"] == 64 and doc["base"] == "none"
    assert "median_ape" in doc["new_model_grouped_cv_on_user_rows"]
    assert main(["retrain", str(small), "--out", str(tmp_path / "m1"), "--base", "none"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["retrain", str(small), "--out", str(tmp_path / "m1"), "--base", "none", "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "new model, held-out graphs" in out and "--model-dir" in out
    assert "calibration for " in out  # one line per GPU the runs measured


def test_retrain_cli_bad_table(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,gpu,batch_size\nx.onnx,A100,32\n")
    assert main(["retrain", str(bad), "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "missing required column(s)" in err and "energy_j" in err
    assert not (tmp_path / "m").exists()


def test_retrain_cli_base_table(synthetic_model, tmp_path, capsys):
    base_dir, csv, _ = synthetic_model
    small = tmp_path / "runs.csv"
    pd.read_csv(csv).iloc[:16].to_csv(small, index=False)
    args = ["retrain", str(small), "--model-dir", str(base_dir), "--json"]
    assert main([*args, "--out", str(tmp_path / "m"), "--base-table", str(tmp_path / "none.parquet")]) == 1
    assert "build_table" in capsys.readouterr().err and not (tmp_path / "m").exists()
    table = base_dir / "training_table.parquet"
    assert main([*args, "--out", str(tmp_path / "m"), "--base-table", str(table)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "refit on base table + user rows" and doc["base_rows"] == 192


def test_info_json_and_text(synthetic_model, capsys):
    model_dir = synthetic_model[0]
    assert main(["info", "--model-dir", str(model_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["package"] == "joulecast" and info["package_version"]
    assert info["model_name"].endswith("-retrained") and info["model_version"]
    assert info["sources"][0]["source"] == "user" and info["training_rows"] == 192
    assert info["retrain"]["user_rows"] == 192
    assert main(["info", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "training sources" in out and "user" in out


def test_info_bad_model_dir(tmp_path, capsys):
    assert main(["info", "--model-dir", str(tmp_path)]) == 1
    assert "manifest.json" in capsys.readouterr().err
