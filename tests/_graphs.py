"""Small real ONNX graphs built with onnx.helper for physics tests (no torch export, no execution).

:func:`gpt_onnx` -- a GPT-2-style decoder (pre-LN blocks: LayerNorm, QKV projection, causal attention as batched
MatMuls + Softmax, output projection, GELU MLP, residual adds) with weights as initializers, so parameters and
FLOPs are those of the real architecture: 12 layers x d 768 = 85.0 M block parameters (GPT-2 small without the
embeddings). :data:`RESNET50` -- the ONNX wheel's weightless ResNet-50 (4.09 GMACs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RESNET50 = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_resnet50.onnx"


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def gpt_onnx(layers: int = 12, d_model: int = 768, heads: int = 12, seq: int = 1024, batch: int = 8,
             vocab: int = 0) -> onnx.ModelProto:
    """A GPT-style decoder stack as an ONNX model; ``vocab`` > 0 adds the tied LM-head MatMul."""
    dh = d_model // heads
    nodes, inits = [], []
    x = "x"
    for i in range(layers):
        p = f"l{i}_"
        inits += [_w(p + "ln1_s", d_model), _w(p + "ln1_b", d_model), _w(p + "qkv_w", d_model, 3 * d_model),
                  _w(p + "qkv_b", 3 * d_model), _w(p + "o_w", d_model, d_model), _w(p + "o_b", d_model),
                  _w(p + "ln2_s", d_model), _w(p + "ln2_b", d_model), _w(p + "fc_w", d_model, 4 * d_model),
                  _w(p + "fc_b", 4 * d_model), _w(p + "pr_w", 4 * d_model, d_model), _w(p + "pr_b", d_model)]
        inits += [numpy_helper.from_array(np.array([batch, seq, 3, heads, dh], np.int64), p + "shape5"),
                  numpy_helper.from_array(np.array([batch, seq, d_model], np.int64), p + "shape3"),
                  numpy_helper.from_array(np.zeros((1, 1, seq, seq), np.float32), p + "mask"),
                  numpy_helper.from_array(np.array(dh ** -0.5, np.float32), p + "scale")]
        nodes += [
            helper.make_node("LayerNormalization", [x, p + "ln1_s", p + "ln1_b"], [p + "h1"], axis=-1),
            helper.make_node("MatMul", [p + "h1", p + "qkv_w"], [p + "qkv0"]),
            helper.make_node("Add", [p + "qkv0", p + "qkv_b"], [p + "qkv1"]),
            helper.make_node("Reshape", [p + "qkv1", p + "shape5"], [p + "qkv2"]),
            helper.make_node("Transpose", [p + "qkv2"], [p + "qkv3"], perm=[2, 0, 3, 1, 4]),
            helper.make_node("Split", [p + "qkv3"], [p + "q0", p + "k0", p + "v0"], axis=0, num_outputs=3),
            helper.make_node("Squeeze", [p + "q0", "axis0"], [p + "q"]),
            helper.make_node("Squeeze", [p + "k0", "axis0"], [p + "k"]),
            helper.make_node("Squeeze", [p + "v0", "axis0"], [p + "v"]),
            helper.make_node("Transpose", [p + "k"], [p + "kt"], perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", [p + "q", p + "kt"], [p + "s0"]),
            helper.make_node("Mul", [p + "s0", p + "scale"], [p + "s1"]),
            helper.make_node("Add", [p + "s1", p + "mask"], [p + "s2"]),
            helper.make_node("Softmax", [p + "s2"], [p + "a"], axis=-1),
            helper.make_node("MatMul", [p + "a", p + "v"], [p + "c0"]),
            helper.make_node("Transpose", [p + "c0"], [p + "c1"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [p + "c1", p + "shape3"], [p + "c2"]),
            helper.make_node("MatMul", [p + "c2", p + "o_w"], [p + "o0"]),
            helper.make_node("Add", [p + "o0", p + "o_b"], [p + "o1"]),
            helper.make_node("Add", [x, p + "o1"], [p + "r1"]),
            helper.make_node("LayerNormalization", [p + "r1", p + "ln2_s", p + "ln2_b"], [p + "h2"], axis=-1),
            helper.make_node("MatMul", [p + "h2", p + "fc_w"], [p + "f0"]),
            helper.make_node("Add", [p + "f0", p + "fc_b"], [p + "f1"]),
            helper.make_node("Gelu", [p + "f1"], [p + "f2"]),
            helper.make_node("MatMul", [p + "f2", p + "pr_w"], [p + "m0"]),
            helper.make_node("Add", [p + "m0", p + "pr_b"], [p + "m1"]),
            helper.make_node("Add", [p + "r1", p + "m1"], [p + "out"]),
        ]
        x = p + "out"
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    if vocab:
        inits.append(_w("lm_w", d_model, vocab))
        nodes.append(helper.make_node("MatMul", [x, "lm_w"], ["logits"]))
        x = "logits"
    out_dim = vocab or d_model
    graph = helper.make_graph(nodes, "gpt", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [batch, seq, d_model])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, seq, out_dim])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def conv_stack_onnx(layers: int = 8, channels: int = 512, size: int = 28, batch: int = 64) -> onnx.ModelProto:
    """A compute-bound CNN: ``layers`` 3x3 convolutions of ``channels`` channels at ``size`` x ``size`` with ReLU
    (VGG-19's conv4 block; 2 x 9 x 512^2 x 28^2 = 3.7 GFLOP per layer and sample, arithmetic intensity ~500)."""
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        inits += [_w(f"w{i}", channels, channels, 3, 3), _w(f"b{i}", channels)]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    shape = [batch, channels, size, size]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
