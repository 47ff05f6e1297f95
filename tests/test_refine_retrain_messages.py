"""refine and retrain speak the same language (issue 32 item 11): one unit parser, one row base, a retrained model's
own rows and CV in `info`, a verdict when it is worse than the base on held-out graphs, a refusal naming the edited
file."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from featurize.errors import ModelArtifactError, SchemaError
from predictor import Prediction, refine
from predictor.cli import main

PRIOR = Prediction(energy_j=1.0e5, energy_per_epoch_j=1.0e4, energy_per_sample_j=0.2, time_s=1000.0,
                   time_per_epoch_s=100.0, avg_power_w=100.0, interval_j=(6e4, 1.6e5), gpu="A100-SXM4-80GB",
                   epochs=10, log_sigma=0.3)


def _refine_cli(tmp_path, capsys, csv_text: str) -> tuple[int, str]:
    prior, epochs = tmp_path / "p.json", tmp_path / "e.csv"
    prior.write_text(json.dumps(PRIOR.to_dict()))
    epochs.write_text(csv_text)
    rc = main(["refine", "--prior-json", str(prior), "--epochs-csv", str(epochs), "--total-epochs", "10", "--json"])
    out = capsys.readouterr()
    return rc, out.out if rc == 0 else out.err


def test_refine_reads_cells_with_units_as_retrain_does(tmp_path, capsys):
    from predictor.retraining.measurements import validate_measurements

    rc, out = _refine_cli(tmp_path, capsys, "energy_j,time_s\n9.8 kJ,95 s\n9.7 kJ,1.5 min\n0.0027 kWh,96\n")
    assert rc == 0
    plain = refine(PRIOR, epoch_energies_j=[9800.0, 9700.0, 9720.0], epoch_times_s=[95.0, 90.0, 96.0],
                   total_epochs=10)
    assert json.loads(out)["energy_j"] == pytest.approx(plain.energy_j)
    runs = pd.DataFrame({"model": ["m.onnx"], "gpu": ["L4"], "batch_size": [8], "samples_per_epoch": [100],
                         "epochs": [1], "energy_j": ["0.0027 kWh"]})
    assert validate_measurements(runs, check_files=False)["energy_j"].iloc[0] == pytest.approx(9720.0)


def test_refine_names_the_line_of_a_cell_that_is_not_a_quantity(tmp_path, capsys):
    rc, err = _refine_cli(tmp_path, capsys, "energy_j\n9800\nabout ten kJ\n9700\n")
    assert rc == 1 and "line 3" in err and "'about ten kJ'" in err and "kwh" in err


def test_retrain_messages_use_one_row_base(tmp_path):
    from predictor.retraining.measurements import validate_measurements

    runs = pd.DataFrame({"model": ["a.onnx", "b.onnx"], "gpu": ["L4", "L4"], "batch_size": [8, 8.5],
                         "samples_per_epoch": [100, 100], "epochs": [1, 1], "energy_j": [1e4, 1e4]})
    with pytest.raises(SchemaError) as err:  # a DataFrame: the 1-based row
        validate_measurements(runs, check_files=False)
    assert "row 2," in str(err.value) and "line" not in str(err.value)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    with pytest.raises(SchemaError) as err:  # a CSV file: the line an editor shows (header = line 1)
        validate_measurements(pd.read_csv(tmp_path / "runs.csv"), origin=str(tmp_path / "runs.csv"),
                              check_files=False)
    assert "runs.csv: line 3," in str(err.value) and "row" not in str(err.value).split("column")[0]


def test_info_shows_the_retrained_models_own_rows_and_no_borrowed_cv(synthetic_model, capsys):
    from predictor.model.loaded import load_model

    model_dir, csv, _ = synthetic_model
    assert main(["info", "--model-dir", str(model_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    n_runs = len(pd.read_csv(csv))
    assert info["retrained"]["boosters"] == "refit" and info["retrained"]["booster_rows"] == n_runs
    assert info["retrained"]["user_rows"] == n_runs
    assert info["metrics"] == {}  # no CV was run for this model: the base's is not shown as its own
    assert info["base_metrics"] == {g: {k: r.get(k) for k in ("n_groups", "median_ape", "p90_ape", "coverage_90")}
                                    for g, r in load_model().manifest["metrics"]["cv"].items()}
    assert main(["info", "--model-dir", str(model_dir)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"refit on {n_runs} rows" in text and "BASE model" in text


def test_a_retrained_model_worse_on_held_out_graphs_says_so_and_recommends_the_base(tmp_path, capsys):
    from predictor.cli.retrain import print_summary
    from predictor.retraining.publish import held_out_verdict

    summary = {"measurements": "runs.csv", "user_rows": 12, "user_graphs": 4, "user_gpus": ["L4"], "base": "shipped",
               "mode": "calibration offsets", "base_model_version": "x", "base_rows": 0, "seed": 0,
               "base_model_error_on_user_rows": {"median_ape": 23.1, "p90_ape": 40.0, "median_pred_over_measured": 1.1},
               "new_model_grouped_cv_on_user_rows": {"median_ape": 32.0, "p90_ape": 50.0,
                                                     "median_pred_over_measured": 0.9}}
    verdict = held_out_verdict(summary)
    assert verdict["use"] == "base" and verdict["retrained_median_ape"] == 32.0
    print_summary(tmp_path / "m", {**summary, "verdict": verdict})
    out = " ".join(capsys.readouterr().out.split())
    assert "worse than the base model (32.0 % vs 23.1 %" in out and "--model-dir" not in out.split("worse")[0]
    assert "use it with" not in out
    better = {**summary, "new_model_grouped_cv_on_user_rows": {"median_ape": 10.0}}
    assert held_out_verdict(better)["use"] == "retrained"


def test_an_edited_model_card_is_refused_naming_the_file(synthetic_model, tmp_path):
    from predictor.model.loaded import load_model

    copy = tmp_path / "model"
    shutil.copytree(synthetic_model[0], copy)
    with open(copy / "MODEL_CARD.md", "a", encoding="utf-8") as fh:
        fh.write("\nmy note\n")
    with pytest.raises(ModelArtifactError, match=r"MODEL_CARD\.md: sha256 .* does not match SHA256SUMS"):
        load_model(copy)
