"""retrain's user-facing validation: every bad input is one SchemaError naming file, column and row."""

from __future__ import annotations

import pandas as pd
import pytest

from featurize.errors import InvalidInputError, SchemaError
from predictor.retraining.measurements import REQUIRED_COLUMNS, load_measurements, validate_measurements
from predictor.retraining.publish import retrain
from test_batch_graphs import write_variants


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    return write_variants(tmp_path_factory.mktemp("val_graphs"), 2, seed=1)


def _runs(graphs, n=3, **overrides):
    rows = [
        {
            "model": str(graphs[i % len(graphs)]),
            "gpu": "L4",
            "batch_size": 32,
            "samples_per_epoch": 1000 + i,
            "epochs": 2,
            "energy_j": 5000.0 + 10 * i,
        }
        for i in range(n)
    ]
    df = pd.DataFrame(rows)
    for k, v in overrides.items():
        df[k] = v
    return df


def _csv(tmp_path, df, name="runs.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_valid_table_is_normalised(graphs):
    out = validate_measurements(_runs(graphs), origin="runs.csv")
    assert list(out["gpu"].unique()) == ["L4"]
    assert (out["precision"] == "fp32").all() and (out["val_samples"] == 0).all()
    assert out["batch_size"].dtype == "int64"
    assert list(out["architecture"]) == [graphs[0].stem, graphs[1].stem, graphs[0].stem]


def test_missing_column_named(tmp_path, graphs):
    path = _csv(tmp_path, _runs(graphs).drop(columns=["energy_j"]))
    df, origin, base = load_measurements(path)
    with pytest.raises(SchemaError, match=r"runs\.csv: missing required column\(s\) \['energy_j'\]"):
        validate_measurements(df, origin=origin, base_dir=base)


@pytest.mark.parametrize(
    "value, needle",
    [(float("nan"), "not a number"), (-5.0, "must be > 0"), (0.0, "must be > 0"), ("lots", "not a number")],
)
def test_bad_energy_names_row_and_column(tmp_path, graphs, value, needle):
    df = _runs(graphs).astype({"energy_j": object})
    df.loc[1, "energy_j"] = value
    path = _csv(tmp_path, df)
    with pytest.raises(SchemaError, match=rf"runs\.csv: line 3, column 'energy_j'.*{needle}"):
        retrain(path, out_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_units_in_cells_are_converted(graphs):
    df = _runs(graphs).astype({"energy_j": object})
    df.loc[0, "energy_j"] = "5 kJ"
    df["time_s"] = ["2 h", "30 min", 10]
    out = validate_measurements(df)
    assert out.loc[0, "energy_j"] == 5000.0
    assert list(out["time_s"]) == [7200.0, 1800.0, 10.0]
    df.loc[0, "energy_j"] = "5 kW"
    with pytest.raises(SchemaError, match="energy_j.*kj"):
        validate_measurements(df)


def test_unknown_gpu_lists_close_matches(graphs):
    df = _runs(graphs)
    df.loc[2, "gpu"] = "RTX 4900"
    with pytest.raises(SchemaError, match=r"row 3, column 'gpu'.*RTX 4900.*Closest"):
        validate_measurements(df)


def test_missing_graph_and_unreadable_graph(tmp_path, graphs):
    df = _runs(graphs)
    df.loc[0, "model"] = "nowhere.onnx"
    with pytest.raises(SchemaError, match=r"row 1, column 'model'.*nowhere\.onnx.*not found"):
        validate_measurements(df, base_dir=tmp_path)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    df = _runs(graphs)
    df.loc[1, "model"] = str(bad)
    with pytest.raises(SchemaError, match=r"row 2, column 'model'.*bad\.onnx.*cannot be featurized"):
        retrain(df, out_dir=tmp_path / "never")


def test_relative_model_paths_resolve_against_the_csv(tmp_path, graphs):
    df = _runs(graphs)
    df["model"] = [p.name for p in (graphs[0], graphs[1], graphs[0])]
    path = _csv(graphs[0].parent, df, "rel.csv")
    raw, origin, base = load_measurements(path)
    out = validate_measurements(raw, origin=origin, base_dir=base)
    assert out.loc[1, "model"] == str(graphs[1])


def test_duplicate_rows(graphs):
    df = pd.concat([_runs(graphs), _runs(graphs).iloc[[1]]], ignore_index=True)
    with pytest.raises(SchemaError, match=r"row 4 duplicates row 2"):
        validate_measurements(df)


def test_bad_counts_and_precision(graphs):
    with pytest.raises(SchemaError, match=r"row 1, column 'batch_size'.*whole number"):
        validate_measurements(_runs(graphs, batch_size=[1.5, 2, 2]))
    with pytest.raises(SchemaError, match=r"column 'precision'.*'fp64'"):
        validate_measurements(_runs(graphs, precision="fp64"))
    with pytest.raises(SchemaError, match="no rows"):
        validate_measurements(_runs(graphs).iloc[:0])


def test_unreadable_file_and_wrong_type(tmp_path):
    with pytest.raises(SchemaError, match="does not exist"):
        load_measurements(tmp_path / "nope.csv")
    with pytest.raises(SchemaError, match="path or a pandas DataFrame"):
        load_measurements(42)
    assert REQUIRED_COLUMNS == ("model", "gpu", "batch_size", "samples_per_epoch", "epochs", "energy_j")


def test_out_dir_rules(tmp_path, graphs):
    (tmp_path / "exists").mkdir()
    with pytest.raises(InvalidInputError, match="already exists.*overwrite"):
        retrain(_runs(graphs), out_dir=tmp_path / "exists")
    from predictor.model.loaded import shipped_model_dir

    with pytest.raises(InvalidInputError, match="never writes there"):
        retrain(_runs(graphs), out_dir=shipped_model_dir(), overwrite=True)
