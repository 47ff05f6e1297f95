"""Normalization handlers: BatchNormalization, LayerNormalization, GroupNormalization,
InstanceNormalization, LpNormalization, MeanVarianceNormalization, LRN.

Norms are costed in their training form (statistics computed on the fly): :data:`NORM_FLOPS` = 7
FLOPs per element (mean: 1, subtract: 1, square: 1, variance sum: 1, normalise: 1, scale: 1, shift: 1).
LRN costs ``size + 3`` FLOPs per element (window sum of squares, scale, pow, divide).
Parameters: scale and bias; BatchNorm running mean/variance are buffers (weight bytes, not params).
"""

from __future__ import annotations

from featurize.ops import NodeView, OpCost, io_cost, register

NORM_FLOPS = 7


@register(
    (
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "InstanceNormalization",
        "LpNormalization",
        "MeanVarianceNormalization",
        "RMSNormalization",
    )
)
def handle_norm(view: NodeView) -> OpCost:
    return io_cost(view, flops=NORM_FLOPS * view.inp(0).numel, op_class="normalization")


@register("LRN")
def handle_lrn(view: NodeView) -> OpCost:
    size = int(view.attr("size", 1))
    return io_cost(view, flops=(size + 3) * view.out_numel, op_class="normalization")
