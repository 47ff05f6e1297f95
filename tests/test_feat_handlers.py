"""One-node graphs, every registered handler: MACs/FLOPs/params/bytes derived by hand.

Each case id starts with the op type; ``test_every_registered_op_has_a_case`` fails when a handler is
registered without a case here. Counts are node totals at the graph's own batch (``nodes`` rows).
Input X is [2, 3, 4, 5] (120 elements, 480 bytes at fp32) unless stated.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import featurize.ops as ops
from featurize import featurize

F32, I64, BOOL, I32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL, TensorProto.INT32
X = ("in", "x", [2, 3, 4, 5], F32)


def inp(name, shape, elem=F32):
    return ("in", name, shape, elem)


def seq(name, shape, elem=F32):
    """A graph input holding a sequence of tensors of ``shape``."""
    return ("seq", name, shape, elem)


def init(name, array):
    return ("init", name, np.asarray(array))


def one_node(op, inputs, attrs=None, n_out=1, opset=18):
    graph_inputs, inits, names = [], [], []
    for spec in inputs:
        if spec is None:
            names.append("")
        elif spec[0] == "in":
            graph_inputs.append(helper.make_tensor_value_info(spec[1], spec[3], spec[2]))
            names.append(spec[1])
        elif spec[0] == "seq":
            graph_inputs.append(helper.make_tensor_sequence_value_info(spec[1], spec[3], spec[2]))
            names.append(spec[1])
        else:
            inits.append(numpy_helper.from_array(spec[2], spec[1]))
            names.append(spec[1])
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, name="n0", **(attrs or {}))
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name=o) for o in outs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def w(*shape):
    return np.ones(shape, dtype=np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def q8(*shape):
    return np.ones(shape, dtype=np.int8)


U8 = TensorProto.UINT8
F_SCALE = ("init", "scale", np.array(0.1, np.float32))
U8_ZERO = ("init", "zp_u8", np.array(0, np.uint8))
I8_ZERO = ("init", "zp_i8", np.array(0, np.int8))


def case(id_, op, inputs, expect, attrs=None, n_out=1, opset=18):
    return pytest.param(op, inputs, attrs, n_out, opset, expect, id=id_)


UNARY = {
    "Relu": 1, "Abs": 1, "Neg": 1, "Sqrt": 1, "Reciprocal": 1, "Exp": 1, "Log": 1, "Erf": 1, "Sin": 1,
    "Cos": 1, "Tan": 1, "Asin": 1, "Acos": 1, "Atan": 1, "Sinh": 1, "Cosh": 1, "Asinh": 1, "Acosh": 1,
    "Atanh": 1, "Floor": 1, "Ceil": 1, "Round": 1, "Sign": 1, "IsNaN": 1, "IsInf": 1, "Sigmoid": 4,
    "Tanh": 4, "Softplus": 3, "Softsign": 3, "Elu": 3, "Selu": 4, "Celu": 4, "LeakyRelu": 2,
    "ThresholdedRelu": 1, "HardSigmoid": 3, "HardSwish": 4, "Clip": 2, "Shrink": 2, "Gelu": 8, "Mish": 7,
}
OPSET_OF = {"Gelu": 20, "Swish": 24, "RMSNormalization": 23}

BOOL_OUT = {"IsNaN", "IsInf"}  # bool output: 1 byte per element
CASES = [case(op, op, [X], {"flops": 120 * per, "macs": 0, "bytes_read": 480,
                            "bytes_written": 120 if op in BOOL_OUT else 480})
         for op, per in UNARY.items()]
CASES += [
    case("Swish", "Swish", [X], {"flops": 600}, opset=24),
    case("Not", "Not", [inp("b", [2, 3], BOOL)], {"flops": 6, "bytes_read": 6, "bytes_written": 6}),
    case("BitwiseNot", "BitwiseNot", [inp("i", [2, 3], I32)], {"flops": 6, "bytes_read": 24}),
    case("PRelu-slope-weight", "PRelu", [X, init("slope", w(5))], {"flops": 240, "params": 5}),
]
# binary ops, with broadcasting: [2,3,4,5] op [5] -> 120 elements
for op in ("Add", "Sub", "Mul", "Div", "Pow"):
    CASES.append(case(f"{op}-broadcast", op, [X, inp("z", [5])], {"flops": 120, "bytes_read": 500, "bytes_written": 480}))
CASES += [
    case("Mod", "Mod", [X, inp("z", [5])], {"flops": 120}, attrs={"fmod": 1}),
    case("Mul-weight", "Mul", [X, init("s", w(4, 5))], {"flops": 120, "params": 20}),
]
for op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
    CASES.append(case(op, op, [X, inp("z", [2, 3, 4, 5])], {"flops": 120, "bytes_written": 120}))
for op in ("And", "Or", "Xor"):
    CASES.append(case(op, op, [inp("a", [4, 5], BOOL), inp("b", [5], BOOL)], {"flops": 20, "bytes_read": 25}))
for op in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
    CASES.append(case(op, op, [inp("a", [4, 5], I32), inp("b", [4, 5], I32)], {"flops": 20, "bytes_read": 160}))
CASES += [
    case("BitShift", "BitShift", [inp("a", [4, 5], TensorProto.UINT32), inp("b", [4, 5], TensorProto.UINT32)],
         {"flops": 20}, attrs={"direction": "LEFT"}),
    case("Sum-3-inputs", "Sum", [X, inp("b", [2, 3, 4, 5]), inp("c", [5])], {"flops": 240}),
    case("Max-3-inputs", "Max", [X, inp("b", [2, 3, 4, 5]), inp("c", [5])], {"flops": 240}),
    case("Min-2-inputs", "Min", [X, inp("b", [2, 3, 4, 5])], {"flops": 120}),
    case("Mean-3-inputs", "Mean", [X, inp("b", [2, 3, 4, 5]), inp("c", [5])], {"flops": 360}),
    case("Where", "Where", [inp("c", [2, 3, 4, 5], BOOL), X, inp("z", [5])],
         {"flops": 0, "bytes_read": 120 + 480 + 20, "bytes_written": 480}),
    case("Softmax", "Softmax", [X], {"flops": 600, "bytes_read": 480, "bytes_written": 480}),
    case("LogSoftmax-axis1", "LogSoftmax", [X], {"flops": 600}, attrs={"axis": 1}),
    case("Hardmax", "Hardmax", [X], {"flops": 600}),
]
for op, per in [("ReduceSum", 1), ("ReduceMean", 1), ("ReduceMax", 1), ("ReduceMin", 1), ("ReduceProd", 1),
                ("ReduceL1", 1), ("ReduceL2", 2), ("ReduceSumSquare", 2), ("ReduceLogSum", 1),
                ("ReduceLogSumExp", 2)]:
    CASES.append(case(f"{op}-all", op, [X], {"flops": 120 * per, "bytes_read": 480}))
CASES += [
    case("ReduceMean-axes-keepdims0", "ReduceMean", [X, init("ax", i64(2, 3))], {"flops": 120, "bytes_written": 24},
         attrs={"keepdims": 0}),
    case("ArgMax", "ArgMax", [X], {"flops": 120, "bytes_written": 2 * 4 * 5 * 8}, attrs={"axis": 1, "keepdims": 0}),
    case("ArgMin", "ArgMin", [X], {"flops": 120}),
    case("CumSum", "CumSum", [X, init("ax", np.array(1, dtype=np.int64))], {"flops": 120}),
    # normalization: 7 FLOPs/element; BatchNorm mean/var are buffers, not params
    case("BatchNormalization", "BatchNormalization",
         [X, init("s", w(3)), init("b", w(3)), init("m", w(3)), init("v", w(3))], {"flops": 840, "params": 6}),
    case("LayerNormalization", "LayerNormalization", [X, init("s", w(5)), init("b", w(5))],
         {"flops": 840, "params": 10}),
    case("LayerNormalization-axis1", "LayerNormalization", [X, init("s", w(3, 4, 5))],
         {"flops": 840, "params": 60}, attrs={"axis": 1}),
    case("GroupNormalization", "GroupNormalization", [inp("x", [2, 4, 3, 3]), init("s", w(2)), init("b", w(2))],
         {"flops": 504, "params": 4}, attrs={"num_groups": 2}),
    case("InstanceNormalization", "InstanceNormalization", [X, init("s", w(3)), init("b", w(3))],
         {"flops": 840, "params": 6}),
    case("LpNormalization", "LpNormalization", [X], {"flops": 840, "params": 0}),
    case("MeanVarianceNormalization", "MeanVarianceNormalization", [X], {"flops": 840}),
    case("RMSNormalization", "RMSNormalization", [X, init("s", w(5))], {"flops": 840, "params": 5}, opset=23),
    case("LRN-size3", "LRN", [X], {"flops": 720}, attrs={"size": 3}),
    # pooling: x [1,2,8,8]
    case("MaxPool-k3-s2-p1", "MaxPool", [inp("x", [1, 2, 8, 8])], {"flops": 32 * 9, "bytes_written": 128},
         attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    case("AveragePool-k2-s2", "AveragePool", [inp("x", [1, 2, 8, 8])], {"flops": 32 * 4},
         attrs={"kernel_shape": [2, 2], "strides": [2, 2]}),
    case("LpPool-k2-s2", "LpPool", [inp("x", [1, 2, 8, 8])], {"flops": 32 * 4},
         attrs={"kernel_shape": [2, 2], "strides": [2, 2]}),
    case("GlobalAveragePool", "GlobalAveragePool", [inp("x", [1, 2, 8, 8])], {"flops": 128, "bytes_written": 8}),
    case("GlobalMaxPool", "GlobalMaxPool", [inp("x", [1, 2, 8, 8])], {"flops": 128}),
    case("GlobalLpPool", "GlobalLpPool", [inp("x", [1, 2, 8, 8])], {"flops": 128}),
    # Conv: out [1,2,3,3] = 18 elements x (3*3*3) = 486 MACs
    case("Conv", "Conv", [inp("x", [1, 3, 5, 5]), init("W", w(2, 3, 3, 3))],
         {"macs": 486, "flops": 972, "params": 54, "bytes_read": 300 + 216, "bytes_written": 72}),
    # group=2, stride 2, pad 1, bias: out [1,8,4,4] = 128 x (2*3*3) = 2304 MACs, +128 bias adds
    case("Conv-group2-stride2-bias", "Conv", [inp("x", [1, 4, 8, 8]), init("W", w(8, 2, 3, 3)), init("B", w(8))],
         {"macs": 2304, "flops": 4736, "params": 152},
         attrs={"group": 2, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    # dilation 2: out 3x3, 9 x 9 MACs
    case("Conv-dilation2", "Conv", [inp("x", [1, 1, 7, 7]), init("W", w(1, 1, 3, 3))], {"macs": 81, "flops": 162},
         attrs={"dilations": [2, 2]}),
    # ConvTranspose: X 36 elements each scatter into 2*3*3 outputs = 648 MACs; out [1,2,7,7]
    case("ConvTranspose-stride2", "ConvTranspose", [inp("x", [1, 4, 3, 3]), init("W", w(4, 2, 3, 3))],
         {"macs": 648, "flops": 1296, "params": 72, "bytes_written": 2 * 49 * 4}, attrs={"strides": [2, 2]}),
    case("ConvTranspose-bias", "ConvTranspose", [inp("x", [1, 4, 3, 3]), init("W", w(4, 2, 3, 3)), init("B", w(2))],
         {"macs": 648, "flops": 1296 + 50, "params": 74}),
    # Gemm: [3,4] x [5,4]^T + C[5] -> [3,5]: 60 MACs + 15 adds
    case("Gemm-transB-bias", "Gemm", [inp("a", [3, 4]), init("B", w(5, 4)), init("C", w(5))],
         {"macs": 60, "flops": 135, "params": 25}, attrs={"transB": 1}),
    case("Gemm-transA", "Gemm", [inp("a", [4, 3]), init("B", w(4, 5))], {"macs": 60, "flops": 120, "params": 20},
         attrs={"transA": 1}),
    case("MatMul-weight", "MatMul", [inp("a", [2, 3, 4]), init("B", w(4, 5))],
         {"macs": 120, "flops": 240, "params": 20, "op_class": "matmul"}),
    case("MatMul-attention", "MatMul", [inp("a", [2, 3, 4]), inp("b", [2, 4, 6])],
         {"macs": 144, "params": 0, "op_class": "attention"}),
    case("MatMul-broadcast-batch", "MatMul", [inp("a", [2, 1, 3, 4]), inp("b", [5, 4, 6])], {"macs": 720}),
    case("Einsum-bmm", "Einsum", [inp("a", [2, 3, 4]), inp("b", [2, 4, 5])], {"macs": 120, "op_class": "attention"},
         attrs={"equation": "bij,bjk->bik"}),
    case("Einsum-weight-ellipsis", "Einsum", [inp("a", [2, 3, 4]), init("W", w(4, 5))],
         {"macs": 120, "params": 20, "op_class": "matmul"}, attrs={"equation": "...j,jk->...k"}),
    case("Einsum-transpose", "Einsum", [inp("a", [3, 4])], {"macs": 0, "flops": 12}, attrs={"equation": "ij->ji"}),
    # recurrent: seq 5, batch 2, input 3, hidden 4 -> 10 steps
    case("LSTM-bias", "LSTM", [inp("x", [5, 2, 3]), init("W", w(1, 16, 3)), init("R", w(1, 16, 4)),
                               init("B", w(1, 32))],
         {"macs": 1120, "flops": 2240 + 10 * 4 * 36, "params": 144, "op_class": "recurrent"},
         attrs={"hidden_size": 4}, n_out=3),
    case("GRU-bias", "GRU", [inp("x", [5, 2, 3]), init("W", w(1, 12, 3)), init("R", w(1, 12, 4)), init("B", w(1, 24))],
         {"macs": 840, "flops": 1680 + 10 * 4 * 25, "params": 108}, attrs={"hidden_size": 4}, n_out=2),
    case("RNN-bidirectional-batchfirst", "RNN", [inp("x", [2, 5, 3]), init("W", w(2, 4, 3)), init("R", w(2, 4, 4))],
         {"macs": 560, "flops": 1120 + 20 * 4 * 5, "params": 56},
         attrs={"hidden_size": 4, "direction": "bidirectional", "layout": 1}, n_out=2),
    # quantized: x [1, 2, 4, 4] (uint8), W [3, 2, 3, 3] -> [1, 3, 2, 2] = 12 outputs x 18 MACs; per-tensor
    # scales / zero points are scalars (no parameters); QLinearConv's int32 bias adds 1 FLOP per output
    case("QLinearConv", "QLinearConv", [inp("x", [1, 2, 4, 4], U8), F_SCALE, U8_ZERO, init("W", q8(3, 2, 3, 3)),
                                        F_SCALE, I8_ZERO, F_SCALE, U8_ZERO, init("B", np.zeros(3, np.int32))],
         {"macs": 216, "flops": 2 * 216 + 12, "params": 54, "op_class": "conv", "bytes_written": 12}),
    case("ConvInteger", "ConvInteger", [inp("x", [1, 2, 4, 4], U8), init("W", q8(3, 2, 3, 3))],
         {"macs": 216, "flops": 432, "params": 54, "op_class": "conv", "bytes_read": 32 + 54, "bytes_written": 48}),
    # [2, 4] @ [4, 3]: 6 outputs x 4 MACs
    case("QLinearMatMul", "QLinearMatMul", [inp("a", [2, 4], U8), F_SCALE, U8_ZERO, init("B", q8(4, 3)), F_SCALE,
                                            I8_ZERO, F_SCALE, U8_ZERO],
         {"macs": 24, "flops": 48, "params": 12, "op_class": "matmul"}),
    case("MatMulInteger", "MatMulInteger", [inp("a", [2, 4], U8), init("B", q8(4, 3))],
         {"macs": 24, "flops": 48, "params": 12, "bytes_written": 24}),
    # X: 120 elements; quantize 5 FLOPs each, dequantize 2, dynamic quantize 7 (+ min/max reductions)
    case("QuantizeLinear", "QuantizeLinear", [X, F_SCALE, U8_ZERO],
         {"flops": 600, "bytes_read": 480 + 4 + 1, "bytes_written": 120}),
    case("DequantizeLinear", "DequantizeLinear", [inp("q", [2, 3, 4, 5], U8), F_SCALE, U8_ZERO],
         {"flops": 240, "bytes_read": 120 + 4 + 1, "bytes_written": 480}),
    case("DynamicQuantizeLinear", "DynamicQuantizeLinear", [X], {"flops": 840, "bytes_written": 120 + 4 + 1},
         n_out=3),
    # data movement: no FLOPs, bytes in/out
    case("Concat", "Concat", [inp("a", [2, 3]), inp("b", [2, 3])], {"flops": 0, "bytes_read": 48, "bytes_written": 48},
         attrs={"axis": 0}),
    case("Split", "Split", [inp("a", [4, 3])], {"flops": 0, "bytes_read": 48, "bytes_written": 48},
         attrs={"axis": 0, "num_outputs": 2}, n_out=2),
    # sequences: splitting copies the input once; the rest is bookkeeping (no tensor is moved)
    case("SplitToSequence", "SplitToSequence", [inp("a", [4, 3])],
         {"flops": 0, "bytes_read": 48, "bytes_written": 48, "op_class": "data_movement"}, attrs={"axis": 0}),
    case("SequenceAt", "SequenceAt", [seq("s", [2, 3]), init("i", np.array(0, np.int64))],
         {"flops": 0, "bytes_read": 0, "bytes_written": 0, "op_class": "zero"}),
    case("SequenceLength", "SequenceLength", [seq("s", [2, 3])], {"flops": 0, "op_class": "zero"}),
    case("SequenceErase", "SequenceErase", [seq("s", [2, 3])], {"flops": 0, "op_class": "zero"}),
    case("SequenceInsert", "SequenceInsert", [seq("s", [2, 3]), inp("t", [2, 3])], {"flops": 0, "op_class": "zero"}),
    case("SequenceConstruct", "SequenceConstruct", [inp("t", [2, 3])], {"flops": 0, "op_class": "zero"}),
    case("SequenceEmpty", "SequenceEmpty", [], {"flops": 0, "bytes_written": 0}),
    case("Slice", "Slice", [inp("a", [4, 3]), init("s", i64(1)), init("e", i64(3))],
         {"flops": 0, "bytes_read": 48 + 16, "bytes_written": 24}),
    case("Transpose", "Transpose", [X], {"flops": 0, "bytes_read": 480, "bytes_written": 480}),
    case("Gather-activation", "Gather", [inp("a", [4, 3]), init("i", i64(0, 2))],
         {"bytes_read": 48 + 16, "bytes_written": 24}),
    # embedding lookup reads only the gathered rows: idx 6 x 8 bytes + 24 x 4 bytes out
    case("Gather-embedding", "Gather", [init("E", w(10, 4)), inp("i", [2, 3], I64)],
         {"params": 40, "bytes_read": 48 + 96, "bytes_written": 96}),
    case("GatherElements", "GatherElements", [inp("a", [4, 3]), inp("i", [4, 3], I64)], {"bytes_written": 48}),
    case("GatherND", "GatherND", [inp("a", [4, 3]), inp("i", [2, 1], I64)], {"bytes_written": 24}),
    case("Expand", "Expand", [inp("a", [1, 3]), init("s", i64(4, 3))], {"bytes_written": 48}),
    case("Tile", "Tile", [inp("a", [2, 3]), init("r", i64(2, 2))], {"bytes_written": 96}),
    case("Pad", "Pad", [inp("a", [2, 3]), init("p", i64(1, 1, 1, 1))], {"bytes_written": 4 * 5 * 4}),
    case("Cast-to-fp16", "Cast", [X], {"bytes_read": 480, "bytes_written": 480}, attrs={"to": TensorProto.FLOAT16}),
    case("CastLike", "CastLike", [inp("a", [2, 3], I64), inp("b", [1])], {"bytes_read": 52, "bytes_written": 24}),
    case("ScatterND", "ScatterND", [inp("a", [4, 3]), inp("i", [1, 1], I64), inp("u", [1, 3])], {"bytes_written": 48}),
    case("ScatterElements", "ScatterElements", [inp("a", [4, 3]), inp("i", [1, 3], I64), inp("u", [1, 3])],
         {"bytes_written": 48}),
    case("DepthToSpace", "DepthToSpace", [inp("a", [1, 4, 2, 2])], {"bytes_written": 64}, attrs={"blocksize": 2}),
    case("SpaceToDepth", "SpaceToDepth", [inp("a", [1, 1, 4, 4])], {"bytes_written": 64}, attrs={"blocksize": 2}),
    case("OneHot", "OneHot", [inp("i", [3], I64), init("d", np.array(5, dtype=np.int64)),
                              init("v", np.array([0.0, 1.0], dtype=np.float32))], {"bytes_written": 60}),
    case("Trilu", "Trilu", [inp("a", [3, 3])], {"bytes_written": 36}),
    case("ReverseSequence", "ReverseSequence", [inp("a", [4, 2, 3]), init("l", i64(1, 2))], {"bytes_written": 96},
         attrs={"batch_axis": 1, "time_axis": 0}),
    case("TopK", "TopK", [inp("a", [4, 5]), init("k", i64(2))], {"bytes_written": 4 * 2 * 4 + 4 * 2 * 8}, n_out=2),
    # data-dependent output shapes: unknown (never executed); the inputs' bytes are still counted
    case("NonZero", "NonZero", [inp("a", [2, 3])], {"flops": 0, "bytes_read": 24}),
    case("Compress", "Compress", [inp("a", [2, 3]), init("c", np.array([True, False]))], {"flops": 0}, attrs={"axis": 0}),
    # zero cost: views, shape queries, constants, inference Dropout
    case("Reshape", "Reshape", [X, init("s", i64(6, 20))], {"flops": 0, "bytes_read": 0, "bytes_written": 0}),
    case("Squeeze", "Squeeze", [inp("a", [1, 3]), init("ax", i64(0))], {"bytes_read": 0}),
    case("Unsqueeze", "Unsqueeze", [inp("a", [3]), init("ax", i64(0))], {"bytes_read": 0}),
    case("Flatten", "Flatten", [X], {"bytes_read": 0, "bytes_written": 0}),
    case("Identity", "Identity", [X], {"bytes_read": 0}),
    case("Dropout", "Dropout", [X], {"flops": 0, "bytes_read": 0}),
    case("Shape", "Shape", [X], {"bytes_read": 0}),
    case("Size", "Size", [X], {"bytes_read": 0}),
    case("EyeLike", "EyeLike", [inp("a", [3, 3])], {"bytes_read": 0}),
    case("RandomNormalLike", "RandomNormalLike", [X], {"flops": 0}),
    case("RandomUniformLike", "RandomUniformLike", [X], {"flops": 0}),
    case("RandomNormal", "RandomNormal", [], {"flops": 0}, attrs={"shape": [2, 3]}),
    case("RandomUniform", "RandomUniform", [], {"flops": 0}, attrs={"shape": [2, 3]}),
    case("Constant", "Constant", [], {"flops": 0, "op_class": "constant"},
         attrs={"value": numpy_helper.from_array(w(2, 2))}),
    case("ConstantOfShape", "ConstantOfShape", [inp("s", [2], I64)], {"flops": 0, "bytes_written": 0}),
    case("Range", "Range", [inp("a", [], I64), inp("b", [], I64), inp("c", [], I64)], {"flops": 0}),
    # Resize x [1,1,4,4] -> [1,1,8,8] = 64 outputs: linear 2 FLOPs per output per resized axis (2 axes)
    case("Resize-linear", "Resize", [inp("x", [1, 1, 4, 4]), None, init("sc", np.array([1, 1, 2, 2], np.float32))],
         {"flops": 256, "bytes_written": 256}, attrs={"mode": "linear"}),
    case("Resize-nearest", "Resize", [inp("x", [1, 1, 4, 4]), None, init("sc", np.array([1, 1, 2, 2], np.float32))],
         {"flops": 0}),
    case("Upsample-opset9", "Upsample", [inp("x", [1, 1, 4, 4]), init("sc", np.array([1, 1, 2, 2], np.float32))],
         {"flops": 0, "bytes_written": 256}, opset=9),
]


@pytest.mark.parametrize("op,inputs,attrs,n_out,opset,expect", CASES)
def test_handler_counts(op, inputs, attrs, n_out, opset, expect):
    model = one_node(op, inputs, attrs, n_out, OPSET_OF.get(op, opset))
    feats = featurize(model)
    assert feats.unsupported_ops == {}
    row = feats.nodes.iloc[0]
    for key, value in expect.items():
        if key == "op_class":
            assert row["op_class"] == value
        else:
            assert row[key] == pytest.approx(value), key


def test_concat_from_sequence_after_split():
    """ConcatFromSequence needs a sequence of known length to have a shape: split [2, 6] in two, join again."""
    nodes = [helper.make_node("SplitToSequence", ["x", "sp"], ["s"], name="split", axis=1),
             helper.make_node("ConcatFromSequence", ["s"], ["y"], name="join", axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, [2, 6])],
                              [onnx.ValueInfoProto(name="y")], [numpy_helper.from_array(i64(3, 3), "sp")])
    feats = featurize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert feats.unsupported_ops == {}
    join = feats.nodes.set_index("name").loc["join"]
    assert (join["flops"], join["bytes_read"], join["bytes_written"]) == (0, 48, 48)


TESTED_ELSEWHERE = ("ConcatFromSequence",)  # multi-node cases above


def test_every_registered_op_has_a_case():
    covered = {p.id.split("-")[0] for p in CASES} | set(TESTED_ELSEWHERE)
    missing = {op for _, op in ops.registered_ops()} - covered
    assert not missing, f"handlers without a one-node test: {sorted(missing)}"


def test_duplicate_registration_is_an_error(op_registry):
    with pytest.raises(ValueError, match="already registered"):
        op_registry.register("Relu")(lambda view: op_registry.OpCost())
    new = op_registry.register("Relu", overwrite=True)(lambda view: op_registry.OpCost())
    assert op_registry.get_handler("Relu") is new  # restored to the built-in handler after the test


def test_custom_domain_op_can_be_registered(op_registry):
    @op_registry.register("MyOp", domain="test.featurize")
    def _my(view):
        return ops.OpCost(flops=7.0 * view.out_numel, op_class="elementwise")

    graph = helper.make_graph(
        [helper.make_node("MyOp", ["x"], ["y"], domain="test.featurize")], "g",
        [helper.make_tensor_value_info("x", F32, [1, 4])],
        [helper.make_tensor_value_info("y", F32, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("test.featurize", 1)])
    feats = featurize(model)
    assert feats.unsupported_ops == {}
    assert feats.nodes.iloc[0]["flops"] == 28.0


def test_registry_tests_leave_no_handler_behind():
    # runs after the two tests above (file order): the built-in Relu handler is back and MyOp is gone
    from featurize.ops import elementwise

    assert ("test.featurize", "MyOp") not in ops.registered_ops()
    assert ops.get_handler("Relu").__module__ == elementwise.__name__
