"""Shape resolution when static ONNX inference leaves shapes unknown (featurize.loader).

Order: onnx inference -> onnxruntime symbolic inference (no execution) -> onnxruntime on dummy inputs at
batch 2 and 3 (dims proportional to the batch are rescaled) -> one run at the bound dims, all under a cap.
``_run_ort`` is spied on to check which input dims were actually executed.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from featurize import loader
from featurize import JoulecastError, featurize
from featurize.errors import ShapeResolutionError, UnboundDimensionError


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


@pytest.fixture
def ort_calls(monkeypatch):
    """Input shapes of every onnxruntime execution during the test."""
    calls: list[list[int]] = []
    real = loader._run_ort

    def spy(model, names):
        calls.append([d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim])
        return real(model, names)

    monkeypatch.setattr(loader, "_run_ort", spy)
    return calls


def test_symbolic_inference_resolves_without_running(ort_calls):
    feats = featurize(range_graph(), batch_size=64)
    assert ort_calls == []
    assert feats.nodes.set_index("op_type").loc["Range", "output_shapes"] == [[64]]
    assert feats.nodes.set_index("op_type").loc["Mul", "flops"] == 64  # one Mul per element of r


def test_fallback_runs_at_probe_batches_and_rescales(ort_calls, monkeypatch):
    monkeypatch.setattr(loader, "_symbolic_fill", lambda model, shapes, missing: missing)
    feats = featurize(range_graph(), batch_size=256)
    assert ort_calls == [[2, 3], [3, 3]]  # never the requested batch of 256
    assert feats.nodes.set_index("op_type").loc["Range", "output_shapes"] == [[256]]
    assert feats.nodes.set_index("op_type").loc["Mul", "flops"] == 256


def test_fallback_data_dependent_shape_is_rescaled(ort_calls):
    feats = featurize(nonzero_graph(), batch_size=256)
    assert all(call[0] != 256 for call in ort_calls) and ort_calls
    by_op = feats.nodes.set_index("op_type")["output_shapes"]
    assert by_op["NonZero"] == [[2, 768]]
    assert by_op["MatMul"] == [[768, 4]]
    assert feats.macs_forward == pytest.approx(768 * 2 * 4 / 256)


def test_dim_not_proportional_to_batch_is_measured_at_bound_dims(ort_calls, monkeypatch):
    monkeypatch.setattr(loader, "_symbolic_fill", lambda model, shapes, missing: missing)
    feats = featurize(range_graph(extra=1), batch_size=64)  # len(r) = batch + 1: not proportional
    assert ort_calls == [[2, 3], [3, 3], [64, 3]]
    assert feats.nodes.set_index("op_type").loc["Range", "output_shapes"] == [[65]]


def test_small_batch_runs_once_at_bound_dims(ort_calls):
    featurize(nonzero_graph(), batch_size=3)
    assert ort_calls == [[3, 3]]


def test_run_beyond_cap_raises_clear_error(ort_calls, monkeypatch):
    monkeypatch.setattr(loader, "FALLBACK_MAX_BYTES", 16)
    with pytest.raises(ShapeResolutionError, match=r"input_shapes=.*static shapes") as info:
        featurize(nonzero_graph(), batch_size=4096)
    assert isinstance(info.value, (JoulecastError, UnboundDimensionError))
    assert ort_calls == []  # refused before executing anything


def test_batch_positions_follow_the_batch_symbol():
    model = _model([helper.make_node("Identity", ["x"], ["y"])], [])
    model.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [3, "batch"]))
    binding = loader.bind_input_dims(model, batch_size=8)
    assert binding.shapes == {"x": [8, 3], "mask": [3, 8]}
    assert binding.batch_positions == {"x": (0,), "mask": (1,)}
    assert loader.bind_input_dims(model, batch_size=8, dims={"batch": 8}).batch_positions == {}


def test_shape_fallback_leaves_the_working_directory_untouched(tmp_path, monkeypatch):
    # onnxruntime's public symbolic inference saves sym_shape_infer_temp.onnx into the cwd when it is
    # incomplete; featurize drives it without that side effect.
    monkeypatch.chdir(tmp_path)
    feats = featurize(nonzero_graph(), batch_size=8)
    assert feats.macs_forward > 0
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
