"""Pooling handlers. Windowed pools (MaxPool, AveragePool, LpPool) cost ``prod(kernel_shape)`` FLOPs
per output element; global pools one FLOP per input element. Op class ``pooling``.
"""

from __future__ import annotations

import math

from featurize.ops import NodeView, OpCost, io_cost, register


@register(("MaxPool", "AveragePool", "LpPool"))
def handle_pool(view: NodeView) -> OpCost:
    kernel = math.prod(view.attr("kernel_shape", None) or (1,))
    return io_cost(view, flops=kernel * view.out_numel, op_class="pooling")


@register(("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"))
def handle_global_pool(view: NodeView) -> OpCost:
    return io_cost(view, flops=view.inp(0).numel, op_class="pooling")
