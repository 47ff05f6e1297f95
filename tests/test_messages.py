"""Messages say what is wrong and the fix in the user's own terms (defect list 9 of issue 18)."""

from __future__ import annotations

import re
import shutil
import warnings

import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

from conftest import RESNET18
from featurize import GraphLoadError, SchemaError, UnknownGPUError, lookup_gpu
from predictor import predict, predict_many
from predictor.cli import main

RUN = dict(gpu="A100-SXM4-80GB", batch_size=8, samples_per_epoch=1000)


def test_a_directory_is_called_a_directory_not_a_missing_file(tmp_path):
    with pytest.raises(GraphLoadError, match="is a directory") as err:
        predict(tmp_path, **RUN)
    assert "not found" not in str(err.value) and "score" in str(err.value)


def test_cli_names_the_dim_flag_for_an_unbound_dimension(tmp_path, capsys):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "seq", 8])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["predict", str(path), "--gpu", "A100", "--batch-size", "4"]) == 1
    err = capsys.readouterr().err
    assert "--dim seq=N" in " ".join(err.split())


def test_a_graph_of_unknown_ops_names_them_and_the_register_hook():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])
    g = helper.make_graph([helper.make_node("Warp", ["x"], ["y"], domain="acme")], "g", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("acme", 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(GraphLoadError, match=r"no countable FLOPs.*acme::Warp x1.*featurize\.ops\.register"):
            predict(model, **RUN)
        row = predict_many([model], **RUN).iloc[0]
    assert "acme::Warp x1" in row["error"] and "featurize.ops.register" in row["error"]


@pytest.mark.parametrize("sep, name", [(";", "semicolon"), ("\t", "tab")])
def test_a_non_comma_csv_is_told_to_use_commas(sep, name, tmp_path):
    from predictor.retrain import load_measurements, validate_measurements

    shutil.copy(RESNET18, tmp_path / "r.onnx")
    csv = tmp_path / "runs.csv"
    csv.write_text(sep.join(["model", "gpu", "batch_size", "samples_per_epoch", "epochs", "energy_j"]) + "\n"
                   + sep.join(["r.onnx", "L4", "64", "50000", "10", "3.1e6"]) + "\n")
    df, origin, base = load_measurements(csv)
    with pytest.raises(SchemaError, match=f"{name}-delimited.*commas"):
        validate_measurements(df, origin=origin, base_dir=base)


def test_refine_epochs_csv_with_semicolons_is_told_to_use_commas(tmp_path, capsys):
    p = predict(RESNET18, **RUN, epochs=5)
    prior = tmp_path / "p.json"
    prior.write_text(__import__("json").dumps(p.to_dict()))
    epochs = tmp_path / "e.csv"
    epochs.write_text("energy_j;time_s\n100;1\n101;1\n")
    assert main(["refine", "--prior-json", str(prior), "--epochs-csv", str(epochs)]) == 1
    assert "semicolon-delimited" in capsys.readouterr().err
    assert main(["refine", "--prior-json", str(tmp_path), "--epochs-csv", str(epochs)]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_letter_o_for_zero_lists_the_meant_gpu_first():
    with pytest.raises(UnknownGPUError) as err:
        lookup_gpu("A1OO")
    closest = re.search(r"Closest names: ([^.]*)\.", str(err.value)).group(1).split(", ")
    assert closest[0] == "A100"


def test_the_co2_line_states_the_grid_intensity_once(capsys):
    assert main(["predict", str(RESNET18), "--gpu", "A100", "--batch-size", "64", "--samples-per-epoch", "50000"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("CO2e"))
    assert line.count("481") == 1 and "default grid" in line


def test_score_prints_a_failure_on_one_line_in_a_narrow_terminal(tmp_path, capsys, monkeypatch):
    shutil.copy(RESNET18, tmp_path / "resnet18.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file at all")
    monkeypatch.setenv("COLUMNS", "60")
    assert main(["score", str(tmp_path), "--gpu", "A100", "-n", "1000"]) == 1  # one input failed
    out = capsys.readouterr().out
    failed = [x for x in out.splitlines() if x.startswith("failed bad:")]
    assert len(failed) == 1 and "not a readable ONNX model" in failed[0]
    assert len(out.splitlines()) < 25


def test_predict_many_has_the_name_column_score_shows(tmp_path):
    shutil.copy(RESNET18, tmp_path / "resnet18.onnx")
    df = predict_many(tmp_path, **RUN)
    assert list(df["name"]) == ["resnet18"]
    assert df.columns.get_loc("name") == df.columns.get_loc("model") + 1
