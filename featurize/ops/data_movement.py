"""Data-movement and zero-cost handlers.

* :data:`ZERO_COST_OPS` (views, shape queries, constants, inference-mode Dropout): no FLOPs, no bytes.
* :data:`COPY_OPS` (Concat, Split, Slice, Transpose, Gather, Expand, Tile, Pad, Cast, ...): no FLOPs;
  bytes = inputs read + outputs written. A Gather on a weight table (embedding) reads only the
  gathered rows (bytes read = indices + output), not the whole table.
* Resize/Upsample: ``nearest`` 0 FLOPs; ``linear`` 2 and ``cubic`` 8 FLOPs per output element per
  resized axis.
"""

from __future__ import annotations

from featurize.ops import NodeView, OpCost, io_cost, register

ZERO_COST_OPS: tuple[str, ...] = (
    "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout", "Shape", "Size",
    "Constant", "ConstantOfShape", "Range", "EyeLike", "RandomNormal", "RandomUniform",
    "RandomNormalLike", "RandomUniformLike",
)
COPY_OPS: tuple[str, ...] = (
    "Concat", "Split", "Slice", "Transpose", "Gather", "GatherElements", "GatherND", "Expand",
    "Tile", "Pad", "Cast", "CastLike", "ScatterND", "ScatterElements", "DepthToSpace",
    "SpaceToDepth", "OneHot", "Trilu", "ReverseSequence", "NonZero", "Compress", "TopK",
)
RESIZE_FLOPS = {"nearest": 0, "linear": 2, "cubic": 8, "bilinear": 2}


def _zero(view: NodeView) -> OpCost:
    return OpCost(params=view.weight_params, op_class="zero")


def _copy(view: NodeView) -> OpCost:
    return io_cost(view, flops=0, op_class="data_movement")


for _op in ZERO_COST_OPS:
    register(_op)(_zero)
for _op in COPY_OPS:
    if _op != "Gather":
        register(_op)(_copy)


@register("Gather")
def handle_gather(view: NodeView) -> OpCost:
    table = view.inp(0)
    if table.is_weight:
        read = view.inp(1).nbytes + view.bytes_out
        return OpCost(params=view.weight_params, bytes_read=float(read),
                      bytes_written=float(view.bytes_out), op_class="data_movement")
    return _copy(view)


@register(("Resize", "Upsample"))
def handle_resize(view: NodeView) -> OpCost:
    mode = view.attr("mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    x, y = view.inp(0).shape or (), view.outputs[0].shape or ()
    axes = sum(1 for a, b in zip(x, y) if a != b)
    return io_cost(view, flops=RESIZE_FLOPS.get(mode, 2) * axes * view.out_numel, op_class="data_movement")
