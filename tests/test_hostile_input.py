"""Hostile and broken input (issue 19): files checked before any read, sizes capped from the graph before
shape inference, corrupt attributes refused -- each with one error of the project's own type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from featurize import featurize
from featurize.graph import limits
from featurize.errors import GraphLoadError, JoulecastError

REPO = Path(__file__).resolve().parents[1]


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    g = h.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def _relu(shape=("N", 8)) -> onnx.ModelProto:
    return _model([h.make_node("Relu", ["x"], ["y"])], [h.make_tensor_value_info("x", T.FLOAT, list(shape))],
                  [h.make_tensor_value_info("y", T.FLOAT, None)])


def _i64(name, value):
    return nh.from_array(np.array(value, np.int64), name)


def _call_with_deadline(fn, seconds=20.0):
    """Run ``fn`` in a daemon thread; the exception it raised (None if it returned). Fails if it blocks."""
    out = {}

    def run():
        try:
            fn()
            out["err"] = None
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            out["err"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"call still blocked after {seconds} s"
    return out["err"]


# ------------------------------------------------------------------------------------------------ files

def test_fifo_is_refused_without_blocking(tmp_path):
    from predictor import predict

    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    for call in (lambda: featurize(fifo), lambda: predict(fifo, gpu="A100", batch_size=None)):
        err = _call_with_deadline(call)
        assert isinstance(err, GraphLoadError) and "FIFO" in str(err), err


@pytest.mark.parametrize("path,kind", [("/dev/zero", "character device"), ("/tmp", "directory")])
def test_devices_and_directories_are_refused(path, kind):
    from predictor import predict

    err = _call_with_deadline(lambda: predict(path, gpu="A100", batch_size=None))
    assert isinstance(err, GraphLoadError) and kind in str(err), err
    with pytest.raises(GraphLoadError, match=kind):
        featurize(path)


def test_oversized_file_refused_before_any_read(tmp_path, monkeypatch):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as fh:  # sparse: 5 GiB of size, no disk
        fh.truncate(5 << 30)

    def no_read(*_a, **_k):
        raise AssertionError("the file was read before its size was checked")

    monkeypatch.setattr(limits.os, "read", no_read)
    with pytest.raises(GraphLoadError, match=r"5\.00 GiB, above the 2\.00 GiB cap.*external data"):
        featurize(big)


def test_file_at_the_cap_is_read(tmp_path):
    p = tmp_path / "m.onnx"
    data = _relu().SerializeToString()
    p.write_bytes(data)
    assert limits.read_model_file(p, max_bytes=len(data)) == data
    with pytest.raises(GraphLoadError, match="cap"):
        limits.read_model_file(p, max_bytes=len(data) - 1)


@pytest.mark.parametrize("path", ["/tmp/" + "a" * 5000 + ".onnx", "/tmp/x\x00y.onnx", Path("/tmp/z\x00.onnx"),
                                  "/tmp/" + "b" * 300 + "/m.onnx"])
def test_bad_paths_become_project_errors(path):
    from predictor import predict

    with pytest.raises(GraphLoadError, match="path|NUL|long"):
        featurize(path)
    with pytest.raises(GraphLoadError):
        predict(path, gpu="A100", batch_size=None)
    with pytest.raises(GraphLoadError):
        predict(path, gpu="A100", batch_size=8)


def test_missing_file_message_names_it(tmp_path):
    with pytest.raises(GraphLoadError, match="not found.*nope.onnx"):
        featurize(tmp_path / "nope.onnx")


# ------------------------------------------------------------------------------------------------ sizes

def _sized(op: str):
    """A graph whose op ``op`` would make a tensor of ~2^40 or more elements from constant inputs."""
    out = [h.make_tensor_value_info("y", T.FLOAT, None)]
    x = [h.make_tensor_value_info("x", T.FLOAT, [1, 1])]
    if op == "Range":
        inits = [_i64("s", 0), _i64("l", 2**40), _i64("d", 1)]
        nodes = [h.make_node("Range", ["s", "l", "d"], ["r"]), h.make_node("Cast", ["r"], ["y"], to=1)]
        return _model(nodes, [], out, inits)
    if op == "ConstantOfShape":
        nodes = [h.make_node("Constant", [], ["s"], value=h.make_tensor("v", T.INT64, [3], [2**20, 2**20, 8])),
                 h.make_node("ConstantOfShape", ["s"], ["y"])]
        return _model(nodes, [], out)
    if op in ("Tile", "Expand"):
        nodes = [h.make_node(op, ["x", "k"], ["y"])]
        return _model(nodes, x, out, [_i64("k", [2**21, 2**21])])
    scales = nh.from_array(np.array([1, 1, 2**20, 2**20], np.float32), "sc")
    x4 = [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 1, 1])]
    return _model([h.make_node("Resize", ["x", "", "sc"], ["y"])], x4, out, [scales])


@pytest.mark.parametrize("op", ["Range", "ConstantOfShape", "Tile", "Expand", "Resize"])
def test_constant_sizes_capped_before_inference(op, monkeypatch):
    from featurize.graph import shapes

    def no_inference(*_a, **_k):
        raise AssertionError("shape inference ran before the size check")

    monkeypatch.setattr(shapes, "_c_infer_shapes", no_inference)
    with pytest.raises(GraphLoadError, match=f"output of {op}.*caps"):
        featurize(_sized(op))


def test_small_constant_sizes_pass():
    inits = [_i64("s", 0), _i64("l", 1000), _i64("d", 1)]
    nodes = [h.make_node("Range", ["s", "l", "d"], ["r"]), h.make_node("Cast", ["r"], ["rf"], to=1),
             h.make_node("Mul", ["x", "rf"], ["y"])]
    m = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, ["N", 1000])],
               [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    assert featurize(m, batch_size=4).flops_forward == 1000  # one multiply per element, per sample


def test_huge_input_dims_refused():
    with pytest.raises(GraphLoadError, match="graph input.*caps"):
        featurize(_relu(shape=(2**62, 3)))
    with pytest.raises(GraphLoadError, match="graph input"):
        featurize(_relu(shape=("N", "S")), dims={"S": 2**40})


def test_inferred_shape_over_cap_refused():
    """A size reached through shape arithmetic (Shape -> Mul chain -> Reshape) is caught on the inferred shapes."""
    inits = [_i64("z", [0]), _i64("m", [2**20])]
    nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Gather", ["s", "z"], ["n"], axis=0),
             h.make_node("Mul", ["n", "m"], ["n2"]), h.make_node("Mul", ["n2", "m"], ["n3"]),
             h.make_node("ConstantOfShape", ["n3"], ["y"])]
    m = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [4096, 2])],
               [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    with pytest.raises(GraphLoadError, match="inferred shape"):
        featurize(m)


# ------------------------------------------------------------------------------------------------ attributes

def _maxpool(kernel: onnx.AttributeProto) -> onnx.ModelProto:
    node = h.make_node("MaxPool", ["x"], ["y"])
    node.attribute.append(kernel)
    return _model([node], [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
                  [h.make_tensor_value_info("y", T.FLOAT, None)])


def test_retyped_kernel_shape_refused():
    bad = h.make_attribute("kernel_shape", [float("inf"), -1.0])
    assert bad.type == onnx.AttributeProto.FLOATS
    with pytest.raises(GraphLoadError, match="kernel_shape.*FLOATS.*INTS"):
        featurize(_maxpool(bad))
    good = featurize(_maxpool(h.make_attribute("kernel_shape", [2, 2])))
    assert good.flops_forward == 3 * 7 * 7 * 4  # k*k = 4 compares per output element (pooling.py), 3x7x7 outputs


def test_non_finite_float_attribute_refused_but_constant_data_allowed():
    x = [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])]
    y = [h.make_tensor_value_info("y", T.FLOAT, None)]
    bad = _model([h.make_node("LeakyRelu", ["x"], ["y"], alpha=float("nan"))], x, y)
    with pytest.raises(GraphLoadError, match="alpha.*not finite"):
        featurize(bad)
    mask = _model([h.make_node("Constant", [], ["c"], value_float=float("-inf")),
                   h.make_node("Add", ["x", "c"], ["y"])], x, y)  # an attention-mask style -inf constant
    assert featurize(mask, batch_size=2).flops_forward == 4


def test_check_features_refuses_non_finite_and_negative_counts():
    limits.check_features({"flops_forward": 1.0, "params": 3})
    for bad in ({"flops_forward": float("-inf")}, {"params": float("nan")}, {"macs_forward": -1.0}):
        with pytest.raises(GraphLoadError, match="corrupt"):
            limits.check_features(bad)


# ------------------------------------------------------------------------------------------------ control flow

def _endless_loop() -> onnx.ModelProto:
    body = h.make_graph(
        [h.make_node("Identity", ["c_in"], ["c_out"]), h.make_node("Add", ["v_in", "v_in"], ["v_out"]),
         h.make_node("Identity", ["v_in"], ["scan"])], "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c_in", T.BOOL, []),
         h.make_tensor_value_info("v_in", T.FLOAT, None)],
        [h.make_tensor_value_info("c_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, None),
         h.make_tensor_value_info("scan", T.FLOAT, None)])
    inits = [_i64("M", 10**9), nh.from_array(np.array(True), "c")]
    return _model([h.make_node("Loop", ["M", "c", "x"], ["vf", "sc"], body=body), h.make_node("Relu", ["sc"], ["y"])],
                  [h.make_tensor_value_info("x", T.FLOAT, [2, 3])], [h.make_tensor_value_info("y", T.FLOAT, None)],
                  inits)


def test_loop_with_huge_trip_count_never_executes(tmp_path):
    """Featurizing a Loop of 1e9 iterations costs its body x 1e9 without running it, within 3 GB and 30 s: the body
    adds a [2, 3] tensor to itself (6 FLOPs), so 6e9 FLOPs at the evaluated batch of 2 = 3e9 per sample; the Relu on
    the scan output (its [1e9, 2, 3] shape is never materialised) is stated as a tensor of unknown shape."""
    path = tmp_path / "loop.onnx"
    path.write_bytes(_endless_loop().SerializeToString())
    code = textwrap.dedent(f"""
        import json, resource, warnings
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        from featurize import featurize
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            f = featurize({str(path)!r})
        print(json.dumps({{"flops": f.flops_forward, "batch": f.batch_size, "warnings": [str(x.message) for x in w]}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env,
                             cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail("featurizing the Loop did not finish in 30 s")
    assert res.returncode == 0, res.stderr[-500:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["flops"] == 1e9 * 6 / 2
    assert any("unknown shape" in w and "Loop" in w and "Relu" in w for w in out["warnings"]), out["warnings"]


def test_project_errors_are_joulecast_errors():
    assert issubclass(GraphLoadError, JoulecastError) and issubclass(GraphLoadError, ValueError)
