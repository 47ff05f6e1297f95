"""No input may hang ``predict`` (issue 32, item 13): the kinds of graph a 10,000-case fuzz campaign found
running past 10 s are bounded before shape inference runs, and ``predict`` runs onnx's C++ and onnxruntime's
symbolic inference under a time limit in an isolated worker.

Kinds reproduced here: a large constant ``Range`` / ``ConstantOfShape`` / ``Tile`` / ``Expand`` read by
data-propagating ops inside expanded LayerNorm, Mish and Attention graphs (onnx's data propagation materialised
every value: 20 s for 2^24 elements); a ``Range`` bounded by a large input dim; a long chain of large folded
constants (the folder's memory); a long chain of ``Loop`` nodes (the per-node cost walk featurized every body and
scanned the whole graph per loop); and a graph whose inference stays slow within every size bound (the time limit).
"""

from __future__ import annotations

import importlib
import threading
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from featurize import featurize
from featurize.graph import fold, limits
from featurize.errors import GraphLoadError, JoulecastError
from featurize.graph.load import load_graph

BIG = 2**26  # onnx's data propagation of this many values through one Add: ~70 s


def _i64(name, value):
    return nh.from_array(np.array(value, np.int64), name)


def _deadline(fn, seconds: float = 15.0):
    """``fn()``'s result (or the exception it raised) from a daemon thread; fails if it is still busy."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            out["value"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still busy after {seconds} s"
    return out["value"]


def _node_case(module: str, name: str) -> onnx.ModelProto:
    importlib.import_module(f"onnx.backend.test.case.node.{module}")
    import onnx.backend.test.case.node as cases

    return next(c.model for c in cases._NodeTestCases if c.name == name)


EXPANDED = [("layernormalization", "test_layer_normalization_4d_axis1_expanded"),
            ("mish", "test_mish_expanded"), ("attention", "test_attention_4d_expanded")]


def _with_big_constant(seed: onnx.ModelProto, op: str, n: int = BIG) -> onnx.ModelProto:
    """``seed`` plus a constant-sized ``op`` of ``n`` values, concatenated with the shape of an intermediate
    tensor (an unfolded ``Shape``: the first inference pass propagates data) and doubled by an ``Add``."""
    m = onnx.ModelProto()
    m.CopyFrom(seed)
    g, x = m.graph, m.graph.input[0].name
    if op == "Range":
        g.initializer.extend([_i64("b_s", 0), _i64("b_l", n), _i64("b_d", 1)])
        g.node.append(h.make_node("Range", ["b_s", "b_l", "b_d"], ["big"]))
    elif op == "ConstantOfShape":
        g.initializer.append(_i64("b_shape", [n]))
        g.node.append(h.make_node("ConstantOfShape", ["b_shape"], ["big"], value=h.make_tensor("v", T.INT64, [1], [1])))
    else:
        g.initializer.extend([_i64("b_v", [3]), _i64("b_k", [n])])
        g.node.append(h.make_node(op, ["b_v", "b_k"], ["big"]))
    g.node.extend([h.make_node("Relu", [x], ["b_relu"]), h.make_node("Shape", ["b_relu"], ["b_sh"]),
                   h.make_node("Concat", ["big", "b_sh"], ["b_cat"], axis=0),
                   h.make_node("Add", ["b_cat", "b_cat"], ["b_out"])])
    g.output.append(h.make_tensor_value_info("b_out", T.INT64, None))
    return m


@pytest.mark.parametrize("module,name", EXPANDED)
@pytest.mark.parametrize("op", ["Range", "ConstantOfShape", "Tile", "Expand"])
def test_large_constant_sizes_never_reach_data_propagation(module, name, op):
    model = _with_big_constant(_node_case(module, name), op)
    feats = _deadline(lambda: featurize(model, with_nodes=False), 15.0)
    assert not isinstance(feats, BaseException), feats
    plain = featurize(_node_case(module, name), with_nodes=False)
    assert feats.macs_forward == plain.macs_forward  # the seed's own cost is unchanged


def test_range_bounded_by_a_large_input_dim_is_sized_not_materialised():
    seed = _node_case("mish", "test_mish_expanded")  # X: float[10000]
    m = onnx.ModelProto()
    m.CopyFrom(seed)
    g = m.graph
    g.initializer.extend([_i64("z", 0), _i64("zi", 0), _i64("one", 1)])
    g.node.extend([h.make_node("Shape", ["X"], ["xs"]), h.make_node("Gather", ["xs", "zi"], ["n"], axis=0),
                   h.make_node("Range", ["z", "n", "one"], ["pos"]), h.make_node("Relu", ["X"], ["xr"]),
                   h.make_node("Shape", ["xr"], ["xrs"]), h.make_node("Concat", ["pos", "xrs"], ["cat"], axis=0),
                   h.make_node("Add", ["cat", "cat"], ["out"])])
    g.output.append(h.make_tensor_value_info("out", T.INT64, None))
    feats = _deadline(lambda: featurize(m, input_shapes={"X": [BIG]}, with_nodes=False), 15.0)
    assert not isinstance(feats, BaseException), feats
    assert feats.input_shapes["X"] == [BIG]


def test_folder_memory_is_bounded_on_a_chain_of_large_constants():
    """``Range(0, 65536)`` then 200 ``Add``: every link is foldable on its own (65,536 values) but all of them
    would hold 13 M values; past the budget only shape-vector-sized outputs are folded."""
    nodes = [h.make_node("Range", ["s", "l", "d"], ["r0"])]
    nodes += [h.make_node("Add", [f"r{i}", "d"], [f"r{i + 1}"]) for i in range(200)]
    g = h.make_graph(nodes, "chain", [], [h.make_tensor_value_info("r200", T.INT64, None)],
                     [_i64("s", 0), _i64("l", 65536), _i64("d", 1)])
    loaded = load_graph(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]))
    values = fold.initializer_values(loaded.model.graph)
    fold.fold_constants(loaded.nodes, {}, values)
    held = sum(v.size for v in dict.values(values))
    assert held <= fold.FOLD_BUDGET_ELEMENTS + fold.FOLD_MAX_ELEMENTS + 3  # + the 3 initializer scalars
    assert "r10" in values and "r200" not in values  # the first links fold, the budget stops the rest


def _loops(n: int, *, distinct: bool = False, chain: bool = True) -> onnx.ModelProto:
    """``n`` Loops, 3 trips each, body ``v = v + v`` on a [8, 4] float: in a chain, or each reading the input."""
    nodes = []
    cur = "x"
    for i in range(n):
        body = h.make_graph(
            [h.make_node("Identity", ["c_in"], ["c_out"]), h.make_node("Add", ["v_in", "v_in"], ["v_out"],
                                                                       name=f"add{i}" if distinct else "")],
            f"body{i}",
            [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c_in", T.BOOL, []),
             h.make_tensor_value_info("v_in", T.FLOAT, [8, 4])],
            [h.make_tensor_value_info("c_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, [8, 4])])
        nodes.append(h.make_node("Loop", ["m", "", cur], [f"y{i}"], name=f"loop{i}", body=body))
        cur = f"y{i}" if chain else "x"
    outs = [f"y{n - 1}"] if chain else [f"y{i}" for i in range(n)]
    g = h.make_graph(nodes, "loops", [h.make_tensor_value_info("x", T.FLOAT, [8, 4])],
                     [h.make_tensor_value_info(y, T.FLOAT, None) for y in outs], [_i64("m", 3)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def test_identical_loop_bodies_are_costed_once(monkeypatch):
    from featurize.graph import control_flow

    calls = []
    real = control_flow._body
    monkeypatch.setattr(control_flow, "_body", lambda *a: calls.append(1) or real(*a))
    one = featurize(_loops(1, chain=False), with_nodes=False, batch_size=8)
    calls.clear()
    many = _deadline(lambda: featurize(_loops(200, chain=False), with_nodes=False, batch_size=8), 20.0)
    assert len(calls) == 1
    assert one.flops_forward == 8 * 4 * 3 / 8  # one Add over [8, 4] per trip, 3 trips, per sample of 8
    assert many.flops_forward == pytest.approx(200 * one.flops_forward)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_long_chain_of_loops_is_walked_in_bounded_time():
    feats = _deadline(lambda: featurize(_loops(limits.MAX_CONTROL_FLOW_NODES, distinct=True), with_nodes=False), 20.0)
    assert not isinstance(feats, BaseException), feats


def test_too_many_control_flow_nodes_are_refused_before_inference(monkeypatch):
    from featurize.graph import shapes

    monkeypatch.setattr(shapes, "_c_infer_shapes", lambda *a: pytest.fail("inference ran"))
    n = limits.MAX_CONTROL_FLOW_NODES + 1
    err = _deadline(lambda: featurize(_loops(n, distinct=True), with_nodes=False), 10.0)
    assert isinstance(err, GraphLoadError) and f"more than {limits.MAX_CONTROL_FLOW_NODES} If/Loop/Scan" in str(err)


def _doubling_chain(links: int) -> onnx.ModelProto:
    """The shape of an intermediate (4 values, known only to inference) concatenated with itself ``links``
    times: every size bound holds before inference, yet data propagation builds 4 x 2^links values."""
    nodes = [h.make_node("Relu", ["x"], ["r"]), h.make_node("Shape", ["r"], ["s0"])]
    nodes += [h.make_node("Concat", [f"s{i}", f"s{i}"], [f"s{i + 1}"], axis=0) for i in range(links)]
    nodes.append(h.make_node("Add", [f"s{links}", f"s{links}"], ["out"]))
    g = h.make_graph(nodes, "doubling", [h.make_tensor_value_info("x", T.FLOAT, ["N", 2, 3, 4])],
                     [h.make_tensor_value_info("out", T.INT64, None), h.make_tensor_value_info("r", T.FLOAT, None)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def test_predict_runs_shape_inference_under_a_time_limit(monkeypatch):
    from predictor import inference_limits, predict

    monkeypatch.setattr(inference_limits, "INFERENCE_TIME_LIMIT_S", 1.0)
    graph = _doubling_chain(22).SerializeToString()
    t0 = time.monotonic()
    err = _deadline(lambda: predict(graph, gpu="A100", batch_size=8), 30.0)
    assert isinstance(err, GraphLoadError), err
    assert "did not finish within the limits" in str(err) and "1 s" in str(err)
    assert time.monotonic() - t0 < 30.0
    ok = predict(_doubling_chain(2).SerializeToString(), gpu="A100", batch_size=8)  # a fresh worker takes over
    assert ok.energy_j > 0 and isinstance(err, JoulecastError)


def test_a_batch_too_large_names_the_input_the_batch_and_the_cap(capsys):
    """Item 14: ``--batch-size 100000`` on ResNet-18 named an internal tensor ('getitem'); the message now names
    the batch, the input carrying it and the cap, and the batch it suggests is the largest under that cap."""
    from conftest import RESNET18
    from predictor import predict
    from predictor.cli import main

    with pytest.raises(GraphLoadError) as err:
        predict(RESNET18, gpu="A100", batch_size=100_000)
    text = str(err.value)
    x = onnx.load(RESNET18, load_external_data=False).graph.input[0].name
    assert "batch_size=100,000" in text and f"input {x!r} of shape [100000, 3, 224, 224]" in text
    assert f"{limits.MAX_TENSOR_ELEMENTS:.3g} elements" in text and "getitem" not in text
    largest = int(text.split("batch_size <= ")[1].split(" ")[0].replace(",", ""))
    featurize(RESNET18, batch_size=largest, with_nodes=False)  # under the cap
    with pytest.raises(GraphLoadError, match=f"batch_size={largest + 1:,} is too large"):
        featurize(RESNET18, batch_size=largest + 1, with_nodes=False)
    assert main(["predict", str(RESNET18), "--gpu", "A100", "--batch-size", "100000"]) == 1
    cli = " ".join(capsys.readouterr().err.split())
    assert "batch_size=100,000 is too large" in cli and f"input {x!r}" in cli and "getitem" not in cli


def test_a_node_field_that_is_not_utf8_is_a_project_error():
    """Found by the campaign: protobuf returns bytes for a string field that is not valid UTF-8 (here an op type
    b'\\xc3onv'), which failed deep in the per-layer table with a UnicodeDecodeError."""
    from predictor import predict

    x = h.make_tensor_value_info("x", T.FLOAT, ["N", 4])
    w = nh.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Relu", ["m"], ["y"], name="relu0")]
    model = h.make_model(h.make_graph(nodes, "g", [x], [h.make_tensor_value_info("y", T.FLOAT, None)], [w]),
                         opset_imports=[h.make_opsetid("", 17)])
    data = model.SerializeToString().replace(b"Relu", b"\xc3elu")
    with pytest.raises(GraphLoadError, match="not valid UTF-8"):
        predict(data, gpu="A100", batch_size=8)


def test_a_long_1d_graph_input_never_reaches_data_propagation():
    """Found by the campaign (expanded GroupNormalization, ``bias`` declared float[2^31]): data propagation gave
    each of the input's 2^31 elements a dimension (bad_alloc after ~20 s); its readers are now kept out."""
    nodes = [h.make_node("Cast", ["b"], ["bc"], to=T.FLOAT), h.make_node("Add", ["bc", "bc"], ["b2"]),
             h.make_node("Relu", ["x"], ["r"]), h.make_node("Shape", ["r"], ["s"]),
             h.make_node("Reshape", ["r", "s"], ["y"])]
    g = h.make_graph(nodes, "long_input", [h.make_tensor_value_info("x", T.FLOAT, ["N", 4]),
                                           h.make_tensor_value_info("b", T.FLOAT, [2**31])],
                     [h.make_tensor_value_info("y", T.FLOAT, None), h.make_tensor_value_info("b2", T.FLOAT, None)])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    feats = _deadline(lambda: featurize(model, batch_size=8, with_nodes=False), 15.0)
    assert not isinstance(feats, BaseException), feats
    assert feats.flops_forward >= 2**31 / 8  # the Add over the long input is costed (per sample of 8)


def test_symbolic_inference_runs_in_the_limited_worker_and_a_timeout_leaves_shapes_unknown(monkeypatch):
    """onnxruntime's symbolic inference (pure Python, a second opinion when shapes stay unknown) runs in predict's
    time-limited worker like onnx's C++ inference; a call past the limit leaves its shapes unknown (stated in the
    warnings) instead of hanging or failing the forecast."""
    from predictor import inference_limits, predict

    calls = []
    real = inference_limits._isolated

    def spy(kind, args):
        calls.append(kind)
        if kind == "symbolic":  # what a call past the time limit raises in the worker's caller
            raise GraphLoadError("onnxruntime's symbolic shape inference did not finish within the limits")
        return real(kind, args)

    monkeypatch.setattr(inference_limits, "_isolated", spy)
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", 16])
    w = nh.from_array(np.ones((16, 16), np.float32), "w")
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("NonZero", ["m"], ["nz"]),
             h.make_node("Transpose", ["nz"], ["t"])]
    model = h.make_model(h.make_graph(nodes, "g", [x], [h.make_tensor_value_info("t", T.INT64, None)], [w]),
                         opset_imports=[h.make_opsetid("", 17)])
    p = predict(model, gpu="A100", batch_size=8)
    assert "c_infer" in calls and "symbolic" in calls
    assert p.energy_j > 0 and any("unknown shape" in w for w in p.warnings)
