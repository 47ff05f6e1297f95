"""Matmul-like handlers: Conv, ConvTranspose, Gemm, MatMul, Einsum (MACs-bearing ops).

* Conv: ``MACs = out_numel * prod(W.shape[1:])`` (``W.shape[1]`` is already ``C_in / group``); bias adds
  one FLOP per output element.
* ConvTranspose: ``MACs = X.numel * prod(W.shape[1:])`` (each input element scatters into
  ``C_out / group * prod(kernel)`` outputs); bias as Conv.
* Gemm: ``MACs = M * N * K``; the ``C`` term adds ``M * N`` FLOPs.
* MatMul (batched, broadcast): ``MACs = out_numel * K``. Class ``attention`` when both operands are
  activations (e.g. Q @ K^T, P @ V), else ``matmul``.
* Einsum with two or more operands: ``MACs = prod(size of every distinct index) * (n_operands - 1)``;
  with one operand (a transpose/reduction): one FLOP per input element, no MACs.
"""

from __future__ import annotations

import math

from featurize.ops import NodeView, OpCost, io_cost, register


@register("Conv")
def handle_conv(view: NodeView) -> OpCost:
    w = view.inp(1)
    macs = view.out_numel * math.prod(w.shape[1:]) if w.shape else 0
    bias = view.out_numel if view.has_input(2) else 0
    return io_cost(view, macs=macs, flops=2 * macs + bias, op_class="conv")


@register("ConvTranspose")
def handle_conv_transpose(view: NodeView) -> OpCost:
    w = view.inp(1)
    macs = view.inp(0).numel * math.prod(w.shape[1:]) if w.shape else 0
    bias = view.out_numel if view.has_input(2) else 0
    return io_cost(view, macs=macs, flops=2 * macs + bias, op_class="conv")


@register("Gemm")
def handle_gemm(view: NodeView) -> OpCost:
    a = view.inp(0).shape or (1, 1)
    k = a[0] if view.attr("transA", 0) else a[-1]
    out = view.out_numel
    macs = out * k
    add_c = out if view.has_input(2) else 0
    cls = "attention" if not (view.inp(0).is_const or view.inp(1).is_const) else "matmul"
    return io_cost(view, macs=macs, flops=2 * macs + add_c, op_class=cls)


def _matmul_class(view: NodeView, n: int) -> str:
    ops = [view.inp(i) for i in range(n)]
    return "attention" if not any(t.is_const for t in ops) else "matmul"


@register("MatMul")
def handle_matmul(view: NodeView) -> OpCost:
    a = view.inp(0).shape or (1,)
    k = a[-1] if a else 1
    macs = view.out_numel * k
    return io_cost(view, macs=macs, flops=2 * macs, op_class=_matmul_class(view, 2))


def _einsum_letters(equation: str, inputs) -> dict[str, int]:
    lhs = equation.replace(" ", "").split("->")[0]
    sizes: dict[str, int] = {}
    for term, t in zip(lhs.split(","), inputs):
        shape = t.shape or ()
        if "..." in term:
            head, tail = term.split("...")
            n_ell = len(shape) - len(head) - len(tail)
            for j, ch in enumerate(head):
                sizes[ch] = max(sizes.get(ch, 1), shape[j])
            for j in range(n_ell):
                key = f"...{j}"
                sizes[key] = max(sizes.get(key, 1), shape[len(head) + j])
            for j, ch in enumerate(tail):
                sizes[ch] = max(sizes.get(ch, 1), shape[len(head) + n_ell + j])
        else:
            for ch, d in zip(term, shape):
                sizes[ch] = max(sizes.get(ch, 1), d)
    return sizes


@register("Einsum")
def handle_einsum(view: NodeView) -> OpCost:
    ops = [t for t in view.inputs if t.name]
    if len(ops) < 2:
        return io_cost(view, flops=view.inp(0).numel, op_class="data_movement")
    sizes = _einsum_letters(str(view.attr("equation", "")), ops)
    macs = math.prod(sizes.values()) * (len(ops) - 1)
    return io_cost(view, macs=macs, flops=2 * macs, op_class=_matmul_class(view, len(ops)))
