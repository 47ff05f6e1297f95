"""The shipped model must not swing on export details that do not change the training work.

An eval-mode exporter folds BatchNorm into the convolutions (torch 2.x's dynamo exporter does, as did the
training table's zoo); a training-mode export or an older graph keeps it. Training runs BatchNorm either way,
so the two graphs of one network must get close forecasts.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import pytest

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def fold_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with every BatchNormalization removed (its consumer reads the BN input instead)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    rename: dict[str, str] = {}
    kept = []
    for node in g.node:
        if node.op_type == "BatchNormalization":
            rename[node.output[0]] = rename.get(node.input[0], node.input[0])
        else:
            kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    used = {x for n in kept for x in n.input}
    inits = [i for i in g.initializer if i.name in used]
    del g.node[:]
    g.node.extend(kept)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    return out


@pytest.mark.parametrize("gpu", ["V100-PCIE-32GB", "A100-SXM4-80GB", "RTX 3090"])
def test_batchnorm_folding_barely_moves_the_forecast(gpu):
    from featurize import featurize
    from predictor import predict

    kept = onnx.load(str(LIGHT / "light_resnet50.onnx"), load_external_data=False)
    folded = fold_batchnorm(kept)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f_kept = featurize(kept, batch_size=64, with_nodes=False)
        f_folded = featurize(folded, batch_size=64, with_nodes=False)
        assert f_kept.macs_forward == pytest.approx(f_folded.macs_forward, rel=1e-6)  # same convolutions
        assert f_kept.n_nodes - f_folded.n_nodes == 53  # ResNet-50's 53 BatchNorms
        a = predict(kept, gpu=gpu, batch_size=64, samples_per_epoch=10_000)
        b = predict(folded, gpu=gpu, batch_size=64, samples_per_epoch=10_000)
    assert 1 / 1.25 < a.energy_j / b.energy_j < 1.25, (a.energy_j, b.energy_j)


def _tiny_mlp() -> onnx.ModelProto:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.zeros((784, 64), np.float32), "w1"),
             numpy_helper.from_array(np.zeros((64, 10), np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 784])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("gpu", ["H100-SXM5-80GB", "A100-SXM4-80GB", "T4", "RTX 3090"])
def test_power_stays_between_idle_and_the_cap(gpu):
    """A tiny MLP is all launch overhead: the forecast power sits at the GPU's idle floor, never below it."""
    from featurize import lookup_gpu
    from predictor import predict

    spec = lookup_gpu(gpu)
    idle_w = spec.idle_power_w or 0.1 * spec.tdp_w
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for bs in (8, 256):
            p = predict(_tiny_mlp(), gpu=gpu, batch_size=bs, samples_per_epoch=60_000, epochs=1)
            assert idle_w - 1e-6 <= p.avg_power_w <= spec.tdp_w
            assert p.energy_j == pytest.approx(p.avg_power_w * p.time_s, rel=1e-9)
