"""Shape extraction straight from the serialized inferred model must equal the ModelProto path."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from featurize import featurize
from featurize.graph.bind import shape_of, _shapes_into, bind_input_dims
from featurize.graph.load import load_graph
from featurize.graph.shapes import _infer_bytes, _shapes_from_bytes

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
F32 = TensorProto.FLOAT


def _every_kind_of_value_info_model() -> onnx.ModelProto:
    vi = helper.make_tensor_value_info
    vis = [
        vi("full", F32, [2, 3, 4]), vi("scalar", F32, []), vi("no_shape", F32, None), vi("symbolic", F32, ["N", 3]),
        vi("unnamed", F32, [None, 3]), vi("zero", F32, [0, 3]), vi("int", TensorProto.INT64, [5]),
        vi("same", F32, [2, 3, 4]), helper.make_tensor_sequence_value_info("seq", F32, [2]),
        onnx.ValueInfoProto(name="untyped"),
    ]
    vis[5].type.tensor_type.shape.dim[0].dim_value = 0  # an explicit 0 (empty tensor)
    graph = helper.make_graph([], "g", vis[:3], vis[-2:], value_info=vis[3:-2])
    return helper.make_model(graph)


def test_shapes_from_bytes_equal_shape_of_on_every_kind_of_value_info():
    model = _every_kind_of_value_info_model()
    g = model.graph
    vis = list(g.input) + list(g.value_info) + list(g.output)
    got = {"full": (None, 0), "int": ((7,), TensorProto.INT64)}  # unknown entry filled, known entry kept
    _shapes_from_bytes(model.SerializeToString(), got)
    want = {vi.name: shape_of(vi) for vi in vis} | {"int": ((7,), TensorProto.INT64)}
    assert got == want and len(got) == 10
    assert got["scalar"] == ((), F32) and got["zero"] == ((0, 3), F32) and got["symbolic"] == (None, F32)
    assert got["seq"] == (None, 0) and got["untyped"] == (None, 0) and got["no_shape"] == (None, F32)


def test_resnet50_shapes_from_inferred_bytes_equal_the_parsed_model_path():
    loaded = load_graph(LIGHT / "light_resnet50.onnx")
    inferred = _infer_bytes(loaded.model)
    fast = dict(loaded.initializers)
    _shapes_from_bytes(inferred, fast)
    slow = dict(loaded.initializers)
    g = onnx.load_from_string(inferred).graph
    for vis in (g.input, g.value_info, g.output):
        _shapes_into(vis, slow)
    assert fast == slow and len(fast) == 685
    assert fast["gpu_0/softmax_1"] == ((1, 1000), F32)


def test_loaded_inputs_are_the_non_initializer_inputs_and_binding_through_them_edits_the_model():
    loaded = load_graph(LIGHT / "light_resnet50.onnx")
    assert len(loaded.model.graph.input) == 270 and len(loaded.initializers) == 269
    assert [name for name, _ in loaded.inputs] == ["gpu_0/data_0"]
    vi = loaded.inputs[0][1]
    vi.type.tensor_type.shape.dim[0].dim_param = "N"  # make the batch symbolic, through the loaded proto
    assert loaded.model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    b = bind_input_dims(loaded.model, batch_size=6, initializers=loaded.initializers, inputs=loaded.inputs)
    assert b.shapes == {"gpu_0/data_0": [6, 3, 224, 224]} and b.batch_positions == {"gpu_0/data_0": (0,)}
    assert loaded.model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 6
    f = featurize(LIGHT / "light_resnet50.onnx", batch_size=6)  # a fixed batch-1 graph: evaluated at 1
    assert f.input_shapes == {"gpu_0/data_0": [1, 3, 224, 224]} and f.params == 25_557_032
