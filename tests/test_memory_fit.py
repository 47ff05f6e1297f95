"""Prediction.memory_bytes / .fits: the training step's peak memory against the GPU's, and the largest batch that
fits named in the warnings (ResNet-50 at batch 4096 on 80 GB; a 1.1B-parameter fp32 Adam run on a 16 GB T4)."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from featurize import featurize, lookup_gpu
from featurize.physics.prior import WORKSPACE_BYTES, largest_batch_that_fits, training_memory_bytes
from predictor import Prediction, predict, refine

RESNET50 = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"
RESNET50_PARAMS = 25_557_032  # torchvision / Keras ResNet-50 (1000 classes), published


def linear_stack(sizes: list[tuple[int, int]]) -> onnx.ModelProto:
    """x @ W0 @ W1 ... with the weights as static graph inputs (an export without parameters)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0][0]])
    ws = [helper.make_tensor_value_info(f"W{i}", TensorProto.FLOAT, list(s)) for i, s in enumerate(sizes)]
    nodes, prev = [], "x"
    for i in range(len(sizes)):
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"h{i}"]))
        prev = f"h{i}"
    y = helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", sizes[-1][1]])
    graph = helper.make_graph(nodes, "stack", [x, *ws], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_memory_parts_follow_the_documented_rule():
    parts = training_memory_bytes(100, 40, 1000.0, 8)
    assert parts == {"weights_bytes": 400.0, "gradients_bytes": 160.0, "optimizer_bytes": 320.0,
                     "activations_bytes": 8000.0, "workspace_bytes": float(WORKSPACE_BYTES),
                     "total_bytes": 400 + 160 + 320 + 8000 + float(WORKSPACE_BYTES)}
    mem = training_memory_bytes(100, 40, 1000.0, 0)["total_bytes"] + 8 * 1000.0
    assert largest_batch_that_fits(100, 40, 1000.0, mem) == 8
    assert largest_batch_that_fits(100, 40, 1000.0, mem - 1) == 7
    assert largest_batch_that_fits(100, 40, 1000.0, 10.0) == 0


def test_resnet50_at_batch_4096_does_not_fit_on_80_gb_and_the_named_batch_does():
    spec = lookup_gpu("A100-SXM4-80GB")
    p = predict(RESNET50, gpu=spec, batch_size=4096, samples_per_epoch=1_281_167)
    gf = featurize(RESNET50, batch_size=1, with_nodes=False)
    assert gf.params == RESNET50_PARAMS
    expected = 16 * RESNET50_PARAMS + gf.activation_bytes * 4096 + WORKSPACE_BYTES
    assert p.memory_bytes == pytest.approx(expected, rel=1e-12)
    assert p.memory_bytes > 300e9 and p.fits is False  # ~345 GB of activations
    note = next(w for w in p.warnings if w.startswith("memory:"))
    best = int(re.search(r"largest batch that fits is (\d+)", note).group(1))
    assert 900 < best < 1100  # (80 GiB - 1 GiB - 0.4 GB) / 84.3 MB per sample
    at_best = predict(RESNET50, gpu=spec, batch_size=best, samples_per_epoch=1_281_167)
    above = predict(RESNET50, gpu=spec, batch_size=best + 1, samples_per_epoch=1_281_167)
    assert at_best.fits is True and not any(w.startswith("memory:") for w in at_best.warnings)
    assert above.fits is False and at_best.memory_bytes <= spec.mem_bytes < above.memory_bytes


def test_a_1_1b_parameter_fp32_adam_run_does_not_fit_a_16_gb_t4(tmp_path):
    sizes = [(16384, 16384)] * 4 + [(16384, 1536)]
    path = tmp_path / "big.onnx"
    onnx.save(linear_stack(sizes), path)
    n_params = sum(a * b for a, b in sizes)
    assert n_params == 1_098_907_648
    p = predict(path, gpu="T4", batch_size=8, samples_per_epoch=10_000)
    assert p.memory_bytes >= 16 * n_params  # weights + gradients + two Adam moments, 4 bytes each
    assert p.fits is False
    assert any("does not fit even at batch 1" in w for w in p.warnings)
    # frozen weights carry no gradient or optimizer state: freezing all but the last layer fits
    q = predict(path, gpu="T4", batch_size=8, samples_per_epoch=10_000, frozen=["W0", "W1", "W2", "W3"])
    saved = p.memory_bytes - q.memory_bytes  # 12 B of gradient + Adam state per frozen weight (+ a few
    assert 12 * 4 * 16384**2 <= saved <= 12 * 4 * 16384**2 + 4 * 8 * 16384 * 4  # activations not saved)
    assert q.fits is True


def test_memory_fields_survive_json_and_refine():
    p = predict(RESNET50, gpu="A100-SXM4-80GB", batch_size=4096, samples_per_epoch=10_000, epochs=5)
    back = Prediction.from_dict(p.to_dict())
    assert back.memory_bytes == p.memory_bytes and back.fits is False
    r = refine(p, epoch_energies_j=[p.energy_per_epoch_j] * 2, total_epochs=5)
    assert r.memory_bytes == p.memory_bytes and r.fits is False
