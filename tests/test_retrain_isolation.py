"""retrain featurizes its graphs in isolated worker processes under the per-graph limits of ``predict_many``
(issue 32, item 15): a graph that keeps shape inference busy, or kills its process, becomes an error naming its
row instead of hanging or aborting the retrain."""

from __future__ import annotations

import shutil
import time

import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from conftest import RESNET18
from featurize.errors import SchemaError
from predictor.batch.isolation import Limits
from predictor.retraining.measurements import load_measurements, validate_measurements
from predictor.retraining.rows import featurize_measurements


def _busy_graph(links: int = 24) -> onnx.ModelProto:
    """The shape of an intermediate concatenated with itself ``links`` times: within every size bound checked
    before inference, yet onnx's data propagation builds 4 x 2^links values (minutes, gigabytes)."""
    nodes = [h.make_node("Relu", ["x"], ["r"]), h.make_node("Shape", ["r"], ["s0"])]
    nodes += [h.make_node("Concat", [f"s{i}", f"s{i}"], [f"s{i + 1}"], axis=0) for i in range(links)]
    nodes.append(h.make_node("Add", [f"s{links}", f"s{links}"], ["out"]))
    g = h.make_graph(nodes, "busy", [h.make_tensor_value_info("x", T.FLOAT, ["N", 2, 3, 4])],
                     [h.make_tensor_value_info("out", T.INT64, None), h.make_tensor_value_info("r", T.FLOAT, None)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _runs(tmp_path, graphs: list[str]):
    shutil.copy(RESNET18, tmp_path / "r.onnx")
    if (RESNET18.parent / (RESNET18.name + ".data")).exists():
        shutil.copy(RESNET18.parent / (RESNET18.name + ".data"), tmp_path / (RESNET18.name + ".data"))
    onnx.save(_busy_graph(), tmp_path / "busy.onnx")
    lines = ["model,gpu,batch_size,samples_per_epoch,epochs,energy_j"]
    lines += [f"{g},L4,{64 + i},50000,10,3.1e6" for i, g in enumerate(graphs)]
    csv = tmp_path / "runs.csv"
    csv.write_text("\n".join(lines) + "\n")
    df, origin, base = load_measurements(csv)
    return validate_measurements(df, origin=origin, base_dir=base), origin


def test_a_graph_that_keeps_inference_busy_is_an_error_naming_its_row(tmp_path):
    runs, origin = _runs(tmp_path, ["r.onnx", "r.onnx", "busy.onnx"])
    t0 = time.monotonic()
    with pytest.raises(SchemaError) as err:
        featurize_measurements(runs, origin=origin, limits=Limits(time_s=2.0))
    text = str(err.value)
    assert "busy.onnx" in text and "line 4" in text and "TimeLimitExceeded" in text and "2 s" in text  # 3rd data row
    assert time.monotonic() - t0 < 60


def test_isolated_features_equal_the_featurizer_in_process(tmp_path):
    from featurize import featurize

    runs, origin = _runs(tmp_path, ["r.onnx", "r.onnx"])
    feats = featurize_measurements(runs, origin=origin)
    for row, batch in enumerate((64, 65)):
        ref = featurize(str(tmp_path / "r.onnx"), batch_size=batch, with_nodes=False).to_dict()
        assert feats["g_flops_train"].iloc[row] == ref["flops_train"] > 0
        assert feats["g_activation_bytes"].iloc[row] == ref["activation_bytes"] > 0
