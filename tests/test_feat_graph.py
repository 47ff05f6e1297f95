"""Graph-level features on hand-built graphs: training FLOPs with frozen layers, activations, liveness,
dims binding, batch-size linearity, weights as inputs / external data, cache features, bad input."""

from __future__ import annotations

import os
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from featurize import GraphLoadError, InvalidInputError, JoulecastError, UnboundDimensionError, featurize
from featurize.cache import cache_features

F32 = TensorProto.FLOAT


def mlp(batch="N", weights_as_inputs=False, seq=None):
    """x[N,4] -> MatMul W1[4,8] -> Relu -> MatMul W2[8,3]. Per sample: 32 + 24 MACs, 8 Relu FLOPs."""
    w1 = numpy_helper.from_array(np.ones((4, 8), np.float32), "W1")
    w2 = numpy_helper.from_array(np.ones((8, 3), np.float32), "W2")
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="act"),
        helper.make_node("MatMul", ["r", "W2"], ["y"], name="fc2"),
    ]
    xshape = [batch, 4] if seq is None else [batch, seq, 4]
    inputs = [helper.make_tensor_value_info("x", F32, xshape)]
    inits = [w1, w2]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info("W1", F32, [4, 8]), helper.make_tensor_value_info("W2", F32, [8, 3])]
        inits = []
    graph = helper.make_graph(nodes, "mlp", inputs, [helper.make_tensor_value_info("y", F32, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_mlp_forward_and_training_flops_by_hand():
    f = featurize(mlp(), batch_size=4)
    assert f.params == f.trainable_params == 56
    assert f.macs_forward == 56
    assert f.flops_forward == 2 * 56 + 8
    # fc1 is the first trainable layer: weight grad only (64); relu 8; fc2 weight + input grads (96)
    assert f.flops_backward == 64 + 8 + 96
    assert f.flops_optimizer == 10 * 56 / 4
    assert f.flops_train == f.flops_forward + f.flops_backward + f.flops_optimizer
    # saved for backward: x (fc1 weight grad, 16 B) and relu output (relu backward + fc2 weight grad, 32 B)
    assert f.activation_bytes == 16 + 32
    # liveness: x(16) + h(32) -> free x -> + r(32) = 64 peak, then y(12)
    assert f.peak_activation_bytes == 64
    assert f.depth == 2
    assert f.weight_bytes == 56 * 4
    assert f.frac_macs_matmul == 1.0
    assert f.n_nodes == 3


def test_frozen_reduces_training_flops_by_hand():
    frozen_first = featurize(mlp(), batch_size=4, frozen=["W1"])
    assert frozen_first.trainable_params == 24
    # fc1 and relu are upstream of every trainable weight: no backward; fc2 weight grad only
    assert frozen_first.flops_backward == 48
    assert frozen_first.flops_optimizer == 10 * 24 / 4
    assert frozen_first.activation_bytes == 32  # only fc2's input
    frozen_last = featurize(mlp(), batch_size=4, frozen="W2")
    assert frozen_last.trainable_params == 32
    # fc1 weight grad 64, relu 8, fc2 input grad only 48
    assert frozen_last.flops_backward == 64 + 8 + 48
    all_frozen = featurize(mlp(), frozen=["W"])
    assert all_frozen.trainable_params == 0 and all_frozen.flops_backward == 0
    assert all_frozen.flops_train == all_frozen.flops_forward


def test_weights_given_as_graph_inputs_count_as_params():
    f = featurize(mlp(weights_as_inputs=True), batch_size=2)
    assert f.params == 56 and f.macs_forward == 56
    assert f.input_shapes == {"x": [2, 4]}


def test_missing_external_data_file_still_works(tmp_path):
    model = mlp()
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)
    os.remove(tmp_path / "w.bin")
    f = featurize(path, batch_size=3)
    assert f.params == 56 and f.flops_forward == 120


def test_batch_size_linearity():
    per_sample = ["macs_forward", "flops_forward", "flops_backward", "activation_bytes", "peak_activation_bytes"]
    a, b = featurize(mlp(), batch_size=1), featurize(mlp(), batch_size=16)
    for key in per_sample:
        assert getattr(a, key) == pytest.approx(getattr(b, key)), key
    assert b.nodes["working_set_bytes"].max() > a.nodes["working_set_bytes"].max()
    assert b.bytes_moved_forward < a.bytes_moved_forward  # weights amortised over the batch


def test_dims_bound_and_unbound():
    f = featurize(mlp(seq="seq"), batch_size=2, dims={"seq": 10})
    assert f.input_shapes == {"x": [2, 10, 4]}
    assert f.macs_forward == 10 * 56
    with pytest.raises(UnboundDimensionError, match=r"'seq'.*dims=\{'seq': N\}"):
        featurize(mlp(seq="seq"))
    g = featurize(mlp(seq="seq"), input_shapes={"x": [3, 5, 4]})
    assert g.macs_forward == 5 * 56 and g.input_shapes == {"x": [3, 5, 4]}
    with pytest.raises(InvalidInputError, match="unknown graph input"):
        featurize(mlp(), input_shapes={"nope": [1, 4]})


def test_bad_input_raises_project_errors(tmp_path):
    with pytest.raises(GraphLoadError, match="not found"):
        featurize(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(GraphLoadError):
        featurize(junk)
    data = mlp().SerializeToString()
    truncated = tmp_path / "trunc.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphLoadError):
        featurize(truncated)
    with pytest.raises(GraphLoadError):
        featurize(b"")
    for bad in (0, -4, 2.5):
        with pytest.raises(InvalidInputError, match="batch_size"):
            featurize(mlp(), batch_size=bad)
    with pytest.raises(InvalidInputError, match="precision"):
        featurize(mlp(), precision="int3")
    with pytest.raises(InvalidInputError):
        featurize(12345)
    assert issubclass(GraphLoadError, JoulecastError)


def test_unknown_domain_is_counted_and_warned():
    node = helper.make_node("Mystery", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node, helper.make_node("Relu", ["y"], ["z"])], "g",
                              [helper.make_tensor_value_info("x", F32, [1, 4])],
                              [helper.make_tensor_value_info("z", F32, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    with pytest.warns(UserWarning, match=r"com\.example::Mystery x1.*no registered ops"):
        f = featurize(model)
    assert f.unsupported_ops == {"com.example::Mystery": 1}
    assert f.to_dict()["unsupported_op_count"] == 1.0


def test_precision_changes_bytes_not_flops():
    a, b = featurize(mlp(), precision="fp32"), featurize(mlp(), precision="bf16")
    assert a.flops_forward == b.flops_forward
    assert b.weight_bytes == a.weight_bytes / 2
    assert b.activation_bytes == a.activation_bytes / 2


def test_cache_features_by_hand():
    f = featurize(mlp(), batch_size=1)
    ws = dict(zip(f.nodes["name"], f.nodes["working_set_bytes"]))
    # fc1: W1 128 + x 16 + h 32 = 176; act: 32 + 32 = 64; fc2: W2 96 + r 32 + y 12 = 140
    assert ws == {"fc1": 176, "act": 64, "fc2": 140}
    c = cache_features(f, {"l1_bytes": 100, "l2_bytes": 150})
    flops = {"fc1": 64, "act": 8, "fc2": 48}
    assert c["frac_flops_l1"] == pytest.approx(flops["act"] / 120)
    assert c["frac_flops_l2"] == pytest.approx(flops["fc2"] / 120)
    assert c["frac_flops_dram"] == pytest.approx(flops["fc1"] / 120)
    # fc1 spills: 176; act reads h (written by a spilling node: not resident) 32; fc2 reads W2 96, r resident
    assert c["dram_bytes_per_sample"] == 176 + 32 + 96
    big = cache_features(f, {"l1_bytes": 1e6, "l2_bytes": 1e7})
    assert big["frac_flops_l1"] == 1.0
    assert big["dram_bytes_per_sample"] == 128 + 16 + 96  # weights + the graph input
    with pytest.raises(InvalidInputError):
        cache_features(f, {"l2": 1})
    g = featurize(mlp(), gpu={"l1_bytes": 100, "l2_bytes": 150})
    assert g.cache_features == c


def test_nodes_table_columns():
    f = featurize(mlp())
    for col in ("name", "op_type", "op_class", "output_shapes", "macs", "flops", "params", "bytes_read",
                "bytes_written", "working_set_bytes", "trainable"):
        assert col in f.nodes.columns
    assert f.nodes["output_shapes"].tolist() == [[[1, 8]], [[1, 8]], [[1, 3]]]
    assert f.nodes["trainable"].tolist() == [True, False, True]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(f.to_dict()) >= {"params", "flops_train", "unsupported_op_count"}


def test_conv_zero_bias_of_the_dynamo_exporter_launches_no_kernel():
    """``Expand(CastLike(0, x), Shape(W))`` (a bias-free convolution exported without the optimizer) reads ``x``
    for its element type only: it is a constant, as in PyTorch, not two launches per convolution."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    nodes = [helper.make_node("Shape", ["w"], ["ws"], end=1),
             helper.make_node("CastLike", ["zero", "x"], ["z"]),
             helper.make_node("Expand", ["z", "ws"], ["b"]),
             helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, zero])
    feats = featurize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), batch_size=2)
    classes = feats.nodes.set_index("op_type")["op_class"]
    assert classes["CastLike"] == "constant" and classes["Expand"] == "constant"
    assert feats.to_dict()["n_nodes"] == 1  # the convolution alone runs
