"""Inference-mode exports are flagged, and the bundled example is a training-mode export (issue 32 item 3)."""

from __future__ import annotations

import warnings

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import RESNET18
from featurize import featurize
from featurize.graph.export_mode import inference_export_note


def _conv_net(with_bn: bool) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])]
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], [0.0] * 216)]
    last = "c"
    if with_bn:
        nodes.append(helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]))
        inits += [helper.make_tensor(k, TensorProto.FLOAT, [8], [1.0] * 8) for k in "sbmv"]
        last = "n"
    nodes.append(helper.make_node("Relu", [last], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 16, 16])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_conv_net_without_batchnorm_or_dropout_is_flagged_with_the_fix():
    folded = featurize(_conv_net(False), batch_size=4)
    kept = featurize(_conv_net(True), batch_size=4)
    notes = [w for w in folded.warnings if "inference-mode export" in w]
    assert len(notes) == 1
    assert "training=torch.onnx.TrainingMode.TRAINING" in notes[0] and "torch module" in notes[0]
    assert not [w for w in kept.warnings if "inference-mode export" in w]
    assert kept.activation_bytes > folded.activation_bytes  # what the folded export leaves out


@pytest.mark.parametrize("ops", [{"Gemm", "Relu"}, {"Conv", "Dropout"}, {"Conv", "LayerNormalization"}])
def test_graphs_that_keep_their_training_layers_or_have_no_convolutions_are_not_flagged(ops):
    assert inference_export_note(ops) is None


def test_the_prediction_carries_the_note():
    from predictor import predict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = predict(_conv_net(False), gpu="A100", batch_size=4, samples_per_epoch=1000)
    assert any("inference-mode export" in w for w in p.warnings)


def test_bundled_example_is_a_training_mode_export():
    m = onnx.load(str(RESNET18), load_external_data=False)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("BatchNormalization") == 20 and ops.count("Conv") == 20  # one BatchNorm per convolution
    f = featurize(str(RESNET18), batch_size=64)
    assert f.params == 11_689_512  # torchvision's ResNet-18, BatchNorm affine parameters included
    assert not [w for w in f.warnings if "inference-mode export" in w]


@pytest.mark.xfail(strict=True, reason=(
    "open (issue 28 refit): the two exports' per-layer priors differ by 1.4 % (bytes moved +2 %, one launch), but the "
    "time booster's residual jumps between them (time 212 vs 245 s, energy 59.2 vs 64.5 kJ on an A100 PCIe): the "
    "learned residual is not smooth in the reference-GPU descriptors yet"))
def test_bundled_example_predicts_what_the_same_torch_module_predicts():
    """The shipped file and the architecture passed as a (meta-device) torch module are the same training run."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    import importlib.util

    from predictor import predict

    spec = importlib.util.spec_from_file_location("make_resnet18", RESNET18.with_name("make_resnet18.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with torch.device("meta"):
        module = mod.ResNet18()
    kw = dict(gpu="A100-PCIE-80GB", batch_size=64, samples_per_epoch=50_000, epochs=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_file = predict(str(RESNET18), **kw)
        from_module = predict(module, example_inputs=torch.ones(1, 3, 224, 224), **kw)
    assert from_file.features["params"] == from_module.features["params"]
    assert from_file.memory_bytes == pytest.approx(from_module.memory_bytes, rel=1e-6)
    # the two exports differ only in exporter details: the file's dynamic-batch flatten (one Concat launch) and
    # the module's eval-mode BatchNorm statistics (bytes moved +2 %); the graphs' compute is the same
    assert from_file.features["macs_forward"] == from_module.features["macs_forward"]
    assert abs(from_file.features["n_nodes"] - from_module.features["n_nodes"]) <= 1
    assert from_file.energy_j == pytest.approx(from_module.energy_j, rel=0.03)
    assert from_file.time_s == pytest.approx(from_module.time_s, rel=0.03)
