"""Speed work must not change results: lazy ``nodes`` table, bulk shape extraction and fast paths."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

from featurize import featurize
from featurize.graph.memory import peak_live_bytes
from featurize.graph.node_table import NODE_COLUMNS
from featurize.graph.weights import weight_like_inputs
from featurize.graph.bind import shape_of, _shapes_into, bind_input_dims
from featurize.graph.load import load_graph, node_fields
from featurize.types import LazyNodes

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
F32 = TensorProto.FLOAT


def test_nodes_table_is_built_on_first_read_only():
    f = featurize(LIGHT / "light_resnet50.onnx", batch_size=2)
    assert isinstance(f.__dict__["_nodes"], LazyNodes)  # nothing built yet
    df = f.nodes
    assert isinstance(df, pd.DataFrame) and f.nodes is df  # built once, then kept
    assert list(df.columns) == list(NODE_COLUMNS) and len(df) == 415
    assert df["macs"].sum() == pytest.approx(f.macs_forward, rel=1e-12)  # fixed batch-1 graph: evaluated at 1
    assert all(isinstance(o, tuple) for o in df["outputs"])
    conv = df[df["op_class"] == "conv"]
    assert conv["output_shapes"].iloc[0] == [[1, 64, 112, 112]] and len(conv) == 53
    assert df["trainable"].dtype == bool


def test_lazy_nodes_equal_eager_table_and_survive_pickle_and_replace():
    f = featurize(LIGHT / "light_squeezenet.onnx", batch_size=4)
    g = pickle.loads(pickle.dumps(f))  # pickled while still lazy
    h = dataclasses.replace(f, graph_name="copy")  # replace reads (and so builds) the table
    pd.testing.assert_frame_equal(g.nodes, f.nodes, check_exact=True)
    pd.testing.assert_frame_equal(h.nodes, f.nodes, check_exact=True)
    lean = featurize(LIGHT / "light_squeezenet.onnx", batch_size=4, with_nodes=False)
    assert lean.nodes is None and lean.to_dict() == f.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.nodes = None  # type: ignore[misc]


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def test_bulk_shape_extraction_matches_shape_of_on_every_kind_of_dim():
    vis = [
        _vi("full", F32, [2, 3, 4]),
        _vi("scalar", F32, []),
        _vi("no_shape", F32, None),
        _vi("symbolic", F32, ["N", 3]),
        _vi("unnamed", F32, [None, 3]),
        _vi("zero", F32, [0, 3]),
        _vi("int", TensorProto.INT64, [5]),
        helper.make_tensor_sequence_value_info("seq", F32, [2]),
    ]
    vis[5].type.tensor_type.shape.dim[0].dim_value = 0  # an explicit 0 (empty tensor)
    shapes = {"full": (None, 0)}  # unknown before: filled; a known entry is kept
    _shapes_into(vis, shapes)
    assert shapes == {vi.name: shape_of(vi) for vi in vis}
    assert shapes["scalar"] == ((), F32) and shapes["no_shape"] == (None, F32) and shapes["zero"] == ((0, 3), F32)
    known = {"full": ((9,), F32)}
    _shapes_into(vis[:1], known)
    assert known == {"full": ((9,), F32)}


def _weights_as_inputs_graph():
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
    ]
    inputs = [_vi("x", F32, ["N", 8]), _vi("w1", F32, [16, 8]), _vi("b1", F32, [16]), _vi("w2", F32, [16, 4])]
    graph = helper.make_graph(nodes, "g", inputs, [_vi("y", F32, ["N", 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fast_paths_for_weights_as_graph_inputs_match_the_general_paths():
    model = _weights_as_inputs_graph()
    loaded = load_graph(model)
    assert loaded.static_inputs == {"w1": ((16, 8), F32), "b1": ((16,), F32), "w2": ((16, 4), F32)}
    fast = weight_like_inputs(loaded.model.graph, loaded.nodes, loaded.initializers, loaded.static_inputs)
    assert fast == weight_like_inputs(loaded.model.graph) == {"w1", "b1", "w2"}
    b = bind_input_dims(
        loaded.model, batch_size=3, skip=fast, initializers=loaded.initializers, static_inputs=loaded.static_inputs
    )
    assert b.shapes == {"x": [3, 8], "w1": [16, 8], "b1": [16], "w2": [16, 4]}
    assert bind_input_dims(load_graph(model).model, batch_size=3, skip=fast) == b
    assert b.batch_positions == {"x": (0,)}
    assert [n.ins for n in node_fields(loaded.model.graph)] == [["x", "w1", "b1"], ["h"], ["r", "w2"]]
    f = featurize(model, batch_size=3)
    assert f.params == 16 * 8 + 16 + 16 * 4 and f.macs_forward == 16 * 8 + 16 * 4
    # per sample, fp32: x (8) + h (16) = 24, x freed; h + r (16) = 32 is the peak, h freed; r + y (4) = 20
    assert f.peak_activation_bytes == 4 * (16 + 16)


def test_peak_live_bytes_frees_each_storage_after_its_last_use():
    # inputs 10 B; node 0 makes a (5), node 1 makes b (7) and is a's last use, node 2 makes c (1)
    sizes = {"x": 10, "a": 5, "b": 7, "c": 1}
    last_use = {"x": 0, "a": 1, "b": 2, "c": 3}  # c is a graph output (len(nodes) = 3)
    peak = peak_live_bytes(10, [(0, 5), (1, 7), (2, 1)], last_use, sizes.__getitem__)
    assert peak == 10 + 5  # then x freed: 5 + 7 = 12, a freed: 7 + 1 = 8
