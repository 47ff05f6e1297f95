"""frozen= means the same everywhere and a prefix that matches nothing is an error; the featurizer's warnings
(unknown shapes, unsupported ops) reach Prediction.warnings and predict_many's rows, also on a cache hit."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from featurize import InvalidInputError, featurize
from predictor import predict, predict_many

F32 = TensorProto.FLOAT
RUN = dict(gpu="A100-SXM4-80GB", batch_size=8, samples_per_epoch=1000)


def two_layer() -> onnx.ModelProto:
    """x[N,64] @ enc.W[64,64] -> Relu -> @ head.W[64,10]."""
    inits = [numpy_helper.from_array(np.ones((64, 64), np.float32), "enc.W"),
             numpy_helper.from_array(np.ones((64, 10), np.float32), "head.W")]
    nodes = [helper.make_node("MatMul", ["x", "enc.W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "head.W"], ["y"])]
    g = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", F32, ["N", 64])],
                          [helper.make_tensor_value_info("y", F32, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def unknown_shape_graph() -> onnx.ModelProto:
    """A costed MatMul, then a Reshape to a runtime shape (an input): the second MatMul's input shape is unknown."""
    inits = [numpy_helper.from_array(np.ones((64, 64), np.float32), "W1"),
             numpy_helper.from_array(np.ones((64, 64), np.float32), "W2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    g = helper.make_graph(nodes, "unk", [helper.make_tensor_value_info("x", F32, ["N", 64]),
                                         helper.make_tensor_value_info("shape", TensorProto.INT64, [3])],
                          [helper.make_tensor_value_info("y", F32, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_frozen_prefix_matching_no_parameter_is_an_error_naming_the_parameters():
    with pytest.raises(InvalidInputError, match=r"\['backbone\.'\] match no parameter.*'enc\.W', 'head\.W'"):
        featurize(two_layer(), batch_size=4, frozen=["backbone."])
    with pytest.raises(InvalidInputError, match="match no parameter"):
        predict(two_layer(), **RUN, frozen=["enc.", "backbone."])


@pytest.mark.parametrize("frozen", ["", [""], ["enc.", ""]])
def test_empty_prefix_is_refused_the_same_way_in_featurize_and_predict(frozen):
    with pytest.raises(InvalidInputError, match="empty prefix"):
        featurize(two_layer(), batch_size=4, frozen=frozen)
    with pytest.raises(InvalidInputError, match="empty prefix"):
        predict(two_layer(), **RUN, frozen=frozen)


def test_a_string_prefix_is_one_prefix_in_predict_as_in_featurize():
    as_str = predict(two_layer(), **RUN, frozen="head.")  # not the letters h, e, a, d, .
    as_list = predict(two_layer(), **RUN, frozen=["head."])
    assert as_str.energy_j == as_list.energy_j
    assert as_str.features["trainable_params"] == featurize(two_layer(), batch_size=8, frozen="head.").trainable_params
    assert as_str.features["trainable_params"] == 64 * 64  # enc.W only


def test_unknown_shapes_reach_the_prediction_warnings_also_from_the_cache(tmp_path):
    path = tmp_path / "unk.onnx"
    onnx.save(unknown_shape_graph(), path)
    for _ in range(2):  # the second call is served from the feature cache
        p = predict(path, **RUN)
        notes = [w for w in p.warnings if "unknown shape" in w]
        assert len(notes) == 1 and "MatMul x1" in notes[0] and "dims=" in notes[0]
    row = predict_many([path], **RUN).iloc[0]
    assert row["error"] == "" and "unknown shape" in row["warnings"] and "MatMul x1" in row["warnings"]


def test_unsupported_ops_note_names_the_op_and_the_register_hook():
    g = two_layer()
    g.graph.node.append(helper.make_node("FancyOp", ["y"], ["z"], domain="acme"))
    g.graph.output[0].name = "z"
    g.opset_import.append(helper.make_opsetid("acme", 1))
    p = predict(g, **RUN)
    notes = [w for w in p.warnings if w.startswith("unsupported ops")]
    assert len(notes) == 1 and "acme::FancyOp x1" in notes[0] and "featurize.ops.register" in notes[0] and "widened" in notes[0]
