"""Quantized-op handlers: QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger (MAC-bearing, integer
arithmetic) and the (de)quantization ops.

* QLinearConv / ConvInteger: ``MACs = out_numel * prod(W.shape[1:])`` as Conv; a bias (QLinearConv's
  ``B``) adds one FLOP per output. Requantization is not counted as arithmetic (it is fused into the
  integer kernel's epilogue); its bytes are.
* QLinearMatMul / MatMulInteger: ``MACs = out_numel * K`` as MatMul.
* QuantizeLinear: ``saturate(round(x / scale) + zero_point)`` = 5 FLOPs per element (divide, round,
  add, two clip comparisons). DequantizeLinear: ``(x - zero_point) * scale`` = 2 FLOPs per element.
* DynamicQuantizeLinear: the min and max reductions (2 per element) plus QuantizeLinear's 5 = 7 FLOPs per
  element (the scale and zero point are scalars: negligible).
"""

from __future__ import annotations

import math

from featurize.ops import NodeView, OpCost, io_cost, register

QUANTIZE_FLOPS = 5
DEQUANTIZE_FLOPS = 2
DYNAMIC_QUANTIZE_FLOPS = 2 + QUANTIZE_FLOPS


def _class(view: NodeView, a: int, b: int) -> str:
    return "attention" if not (view.inp(a).is_const or view.inp(b).is_const) else "matmul"


def _conv_macs(view: NodeView, w_slot: int) -> float:
    w = view.inp(w_slot).shape
    return view.out_numel * math.prod(w[1:]) if w else 0


@register("QLinearConv")
def handle_qlinear_conv(view: NodeView) -> OpCost:
    macs = _conv_macs(view, 3)
    bias = view.out_numel if view.has_input(8) else 0
    return io_cost(view, macs=macs, flops=2 * macs + bias, op_class="conv")


@register("ConvInteger")
def handle_conv_integer(view: NodeView) -> OpCost:
    macs = _conv_macs(view, 1)
    return io_cost(view, macs=macs, flops=2 * macs, op_class="conv")


def _matmul_macs(view: NodeView) -> float:
    a = view.inp(0).shape or (1,)
    return view.out_numel * (a[-1] if a else 1)


@register("QLinearMatMul")
def handle_qlinear_matmul(view: NodeView) -> OpCost:
    macs = _matmul_macs(view)
    return io_cost(view, macs=macs, flops=2 * macs, op_class=_class(view, 0, 3))


@register("MatMulInteger")
def handle_matmul_integer(view: NodeView) -> OpCost:
    macs = _matmul_macs(view)
    return io_cost(view, macs=macs, flops=2 * macs, op_class=_class(view, 0, 1))


@register("QuantizeLinear")
def handle_quantize(view: NodeView) -> OpCost:
    return io_cost(view, flops=QUANTIZE_FLOPS * view.inp(0).numel, op_class="elementwise")


@register("DequantizeLinear")
def handle_dequantize(view: NodeView) -> OpCost:
    return io_cost(view, flops=DEQUANTIZE_FLOPS * view.inp(0).numel, op_class="elementwise")


@register("DynamicQuantizeLinear")
def handle_dynamic_quantize(view: NodeView) -> OpCost:
    return io_cost(view, flops=DYNAMIC_QUANTIZE_FLOPS * view.inp(0).numel, op_class="elementwise")
