"""Shape resolution when static ONNX inference leaves shapes unknown (featurize.graph.load).

Order: numpy folding of small constant shape subgraphs -> plain onnx inference -> (fold again, inference
with data propagation) -> onnxruntime symbolic inference. The graph is never executed (an onnxruntime
session fails these tests); what stays unknown is a warning on the result.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from featurize.graph import bind, load, shapes
from featurize import featurize


def _i64(name, value):
    return numpy_helper.from_array(np.array(value, np.int64), name)


def _model(nodes, inits, x_type=TensorProto.FLOAT, out="y"):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", x_type, ["batch", 3])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def range_graph(extra: int = 0):
    """y = r * r with r = Range(0, x.shape[0] + extra): onnx inference cannot size ``r``."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["n0"], axis=0),
        helper.make_node("Add", ["n0", "extra"], ["n"]),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["rf", "rf"], ["y"]),
    ]
    inits = [_i64("i0", 0), _i64("zero", 0), _i64("one", 1), _i64("extra", extra)]
    return _model(nodes, inits)


def nonzero_graph():
    """Data-dependent shape: NonZero of an int input (dummy ones -> 3 * batch hits) -> MatMul."""
    w = numpy_helper.from_array(np.zeros((2, 4), np.float32), "w")
    nodes = [
        helper.make_node("NonZero", ["x"], ["nz"]),
        helper.make_node("Transpose", ["nz"], ["nzt"], perm=[1, 0]),
        helper.make_node("Cast", ["nzt"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["f", "w"], ["y"]),
    ]
    return _model(nodes, [w], x_type=TensorProto.INT64)


def expand_graph():
    """The torch exporters' Expand target: ConstantOfShape(rank) -> Mul(-1) -> Equal(target) -> Where(target)
    on Shape(x), which ONNX data propagation does not evaluate; y = Expand(c, target) * x."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ConstantOfShape", ["rank"], ["ones"], value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("Mul", ["ones", "minus1"], ["neg"]),
        helper.make_node("Equal", ["s", "neg"], ["eq"]),
        helper.make_node("Where", ["eq", "ones", "s"], ["target"]),
        helper.make_node("Expand", ["c", "target"], ["e"]),
        helper.make_node("Mul", ["e", "x"], ["y"]),
    ]
    c = numpy_helper.from_array(np.ones((1, 3), np.float32), "c")
    return _model(nodes, [_i64("rank", [2]), _i64("minus1", -1), c])


@pytest.fixture
def no_execution(monkeypatch):
    """Any onnxruntime session (a graph execution) fails the test; symbolic-inference calls are counted."""
    import onnxruntime

    def refuse(*args, **kwargs):
        raise AssertionError("featurize executed the graph")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    calls = []
    real = shapes._symbolic_fill

    def spy(model, shapes, missing):
        calls.append(list(missing))
        return real(model, shapes, missing)

    monkeypatch.setattr(shapes, "_symbolic_fill", spy)
    return calls


def test_constant_shape_subgraph_is_folded_before_inference(no_execution):
    feats = featurize(range_graph(), batch_size=64)
    assert no_execution == []  # folding + plain inference resolved it: no symbolic pass
    assert feats.nodes.set_index("op_type").loc["Range", "output_shapes"] == [[64]]
    assert feats.nodes.set_index("op_type").loc["Mul", "flops"] == 64  # one Mul per element of r
    assert feats.warnings == ()


def test_length_not_proportional_to_batch(no_execution):
    feats = featurize(range_graph(extra=1), batch_size=64)  # len(r) = batch + 1
    assert feats.nodes.set_index("op_type").loc["Range", "output_shapes"] == [[65]]


def test_torch_expand_pattern_resolves_exactly(no_execution):
    feats = featurize(expand_graph(), batch_size=5)
    by_op = feats.nodes.groupby("op_type")["output_shapes"].first()
    assert by_op["Expand"] == [[5, 3]]
    assert no_execution == [] and feats.warnings == ()
    final = feats.nodes[feats.nodes["outputs"] == ("y",)].iloc[0]
    assert final["output_shapes"] == [[5, 3]] and final["flops"] == 15


def test_folder_is_size_capped(monkeypatch, no_execution):
    from featurize.graph import fold

    g = range_graph()
    lg = load.load_graph(g)
    bind.bind_input_dims(lg.model, batch_size=64, initializers=lg.initializers, inputs=lg.inputs)
    shapes = {"x": ((64, 3), TensorProto.FLOAT)}
    small = fold.fold_constants(lg.nodes, shapes, fold.initializer_values(lg.model.graph), max_elements=16)
    assert "n" in small and "r" not in small  # the 64-element Range is refused before allocation
    monkeypatch.setattr(fold, "FOLD_MAX_ELEMENTS", 16)
    monkeypatch.setattr(fold.fold_constants, "__kwdefaults__", {"max_elements": 16})
    feats = featurize(g, batch_size=64)  # inference sizes Range from its folded (small) inputs
    assert feats.nodes.set_index("op_type").loc["Range", "output_shapes"] == [[64]]


def test_data_dependent_shape_is_a_warning_on_the_result(no_execution):
    with pytest.warns(UserWarning, match="unknown"):
        feats = featurize(nonzero_graph(), batch_size=8)
    assert len(feats.warnings) == 1 and "NonZero" in feats.warnings[0] and "input_shapes=" in feats.warnings[0]
    assert feats.nodes.set_index("op_type").loc["NonZero", "output_shapes"] == [None]


def test_batch_positions_follow_the_batch_symbol():
    model = _model([helper.make_node("Identity", ["x"], ["y"])], [])
    model.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [3, "batch"]))
    binding = bind.bind_input_dims(model, batch_size=8)
    assert binding.shapes == {"x": [8, 3], "mask": [3, 8]}
    assert binding.batch_positions == {"x": (0,), "mask": (1,)}
    assert bind.bind_input_dims(model, batch_size=8, dims={"batch": 8}).batch_positions == {}


def test_shape_fallback_leaves_the_working_directory_untouched(tmp_path, monkeypatch):
    # onnxruntime's public symbolic inference saves sym_shape_infer_temp.onnx into the cwd when it is
    # incomplete; featurize drives it without that side effect.
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="unknown"):
        featurize(nonzero_graph(), batch_size=8)
    assert list(tmp_path.iterdir()) == []


def test_sequence_outputs_do_not_block_shape_resolution():
    # SplitToSequence's output is a sequence (no single shape); the tensor read out of it by
    # SequenceAt is what needs a shape, and the sequence itself must not force a full-size run.
    nodes = [
        helper.make_node("SplitToSequence", ["x"], ["seq"], axis=1, keepdims=1),
        helper.make_node("SequenceAt", ["seq", "i0"], ["part"]),
        helper.make_node("Relu", ["part"], ["y"]),
    ]
    model = _model(nodes, [_i64("i0", 0)])
    feats = featurize(model, batch_size=4096)
    assert feats.unsupported_ops == {}  # featurize.ops.sequence costs both
    assert feats.flops_forward == pytest.approx(1.0)  # Relu on one [batch, 1] column: 1 FLOP per sample
