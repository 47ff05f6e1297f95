"""Control flow costed from subgraphs (featurize.graph.control_flow), one hand-derived node each."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from featurize import featurize

F32, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _w(name, *shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def if_model():
    """then: x [2, 4] @ W [4, 8] (64 MACs); else: a constant [2, 8] (free)."""
    then_g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", F32, [2, 8])])
    else_g = helper.make_graph([helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(
        np.zeros((2, 8), np.float32)))], "else", [], [helper.make_tensor_value_info("e", F32, [2, 8])])
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)
    return _model([node], [helper.make_tensor_value_info("x", F32, [2, 4]), helper.make_tensor_value_info("c", BOOL, [])],
                  [helper.make_tensor_value_info("y", F32, [2, 8])], [_w("W", 4, 8)])


def loop_model(trips_const: bool):
    """v <- v @ W (v [2, 4], W [4, 4]: 32 MACs per iteration), M = 3 iterations or a graph input."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["v_in", "W"], ["v_out"]), helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("c_in", BOOL, []),
         helper.make_tensor_value_info("v_in", F32, None)],
        [helper.make_tensor_value_info("c_out", BOOL, []), helper.make_tensor_value_info("v_out", F32, None)])
    node = helper.make_node("Loop", ["M", "cond", "x"], ["y"], name="repeat", body=body)
    inputs = [helper.make_tensor_value_info("x", F32, [2, 4])]
    inits = [_w("W", 4, 4), numpy_helper.from_array(np.array(True), "cond")]
    if trips_const:
        inits.append(numpy_helper.from_array(np.array(3, np.int64), "M"))
    else:
        inputs.append(helper.make_tensor_value_info("M", I64, []))
    return _model([node], inputs, [helper.make_tensor_value_info("y", F32, [2, 4])], inits)


def scan_model():
    """Running sum over the 5 rows of xs [5, 4]: one Add of 4 elements per step."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["o_t"])],
        "body", [helper.make_tensor_value_info("s_in", F32, [4]), helper.make_tensor_value_info("x_t", F32, [4])],
        [helper.make_tensor_value_info("s_out", F32, [4]), helper.make_tensor_value_info("o_t", F32, [4])])
    node = helper.make_node("Scan", ["s0", "xs"], ["s", "os"], name="cumsum", body=body, num_scan_inputs=1)
    return _model([node], [helper.make_tensor_value_info("s0", F32, [4]), helper.make_tensor_value_info("xs", F32, [5, 4])],
                  [helper.make_tensor_value_info("s", F32, [4]), helper.make_tensor_value_info("os", F32, [5, 4])], [])


def _row(feats, name):
    return feats.nodes.set_index("name").loc[name]


def test_if_costs_its_more_expensive_branch():
    with pytest.warns(UserWarning, match="more expensive branch"):
        f = featurize(if_model())
    assert _row(f, "branch")["macs"] == 2 * 8 * 4
    assert f.unsupported_ops == {}
    assert [w for w in f.warnings if "then_branch" in w and "'branch'" in w]


def test_loop_with_static_trip_count_is_body_times_trips():
    f = featurize(loop_model(True))
    assert _row(f, "repeat")["macs"] == 3 * 2 * 4 * 4
    assert f.warnings == ()


def test_loop_with_unknown_trip_count_warns_once_naming_the_node():
    with pytest.warns(UserWarning, match="repeat"):
        f = featurize(loop_model(False))
    assert _row(f, "repeat")["macs"] == 2 * 4 * 4  # one iteration, stated
    assert len([w for w in f.warnings if "trip count" in w]) == 1


def test_scan_is_body_times_scanned_length():
    f = featurize(scan_model())
    assert _row(f, "cumsum")["flops"] == 5 * 4
    assert f.warnings == ()


def test_loop_body_with_unknown_shapes_is_stated_naming_the_node():
    model = loop_model(True)
    x = model.graph.input[0]
    x.type.tensor_type.ClearField("shape")  # the carried value's shape is unknown, so the body's MatMul is too
    with pytest.warns(UserWarning, match="repeat"):
        f = featurize(model)
    assert [w for w in f.warnings if "'repeat'" in w and "body has tensors of unknown shape" in w]


def test_loop_with_constant_inputs_reading_an_outer_tensor_is_costed_not_folded():
    """Every explicit input of this Loop is a constant, but its body adds the graph input x (outer scope) on each of
    3 iterations: 3 x 8 additions, not a constant subgraph of zero cost."""
    body = helper.make_graph(
        [helper.make_node("Add", ["v_in", "x"], ["v_out"]), helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body",
        [helper.make_tensor_value_info("i", I64, []), helper.make_tensor_value_info("c_in", BOOL, []),
         helper.make_tensor_value_info("v_in", F32, [2, 4])],
        [helper.make_tensor_value_info("c_out", BOOL, []), helper.make_tensor_value_info("v_out", F32, [2, 4])])
    node = helper.make_node("Loop", ["M", "cond", "v0"], ["y"], name="accumulate", body=body)
    inits = [numpy_helper.from_array(np.array(3, np.int64), "M"), numpy_helper.from_array(np.array(True), "cond"),
             numpy_helper.from_array(np.zeros((2, 4), np.float32), "v0")]
    model = _model([node], [helper.make_tensor_value_info("x", F32, [2, 4])],
                   [helper.make_tensor_value_info("y", F32, [2, 4])], inits)
    f = featurize(model)
    assert _row(f, "accumulate")["flops"] == 3 * 2 * 4
