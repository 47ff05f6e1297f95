"""What the walk adds up over the nodes, and the per-sample :class:`~featurize.types.GraphFeatures` made of it
(with the warnings for what it could not cost)."""

from __future__ import annotations

from typing import Any

from featurize.graph.weights import Weights
from featurize.types import GraphFeatures

OPTIMIZER_FLOPS_PER_PARAM = 10.0
"""Adam: two moment updates, bias correction, sqrt, divide, update, per trainable parameter per step."""


class Totals:
    """What the walk adds up over the nodes (at the evaluated batch)."""

    __slots__ = ("bytes", "cls_macs", "failed", "first_unknown", "flops", "macs", "max_depth", "max_ws",
                 "n_work", "nonmac_flops", "prof", "rows", "unknown_domains", "unknown_shapes", "unsupported", "wbytes")


def walk_notes(t: Totals) -> list[str]:
    """What the walk could not cost (ops without a handler, handler errors, tensors of unknown shape), as warnings."""
    notes = []
    if t.unsupported or t.failed:
        msg = "featurize: ops without a cost handler were counted as zero FLOPs: " + ", ".join(
            f"{k} x{v}" for k, v in sorted(t.unsupported.items())
        )
        if t.unknown_domains:
            msg += f". Domain(s) {sorted(t.unknown_domains)} have no registered ops at all"
        if t.failed:
            msg += f". Handler errors: {t.failed[:3]}"
        msg += ". Register a handler with featurize.ops.register(op_type, domain=...) to cost them."
        notes.append(msg)
    if t.unknown_shapes:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(t.unknown_shapes.items()))
        notes.append(
            f"featurize: {sum(t.unknown_shapes.values())} node(s) have tensors of unknown shape after constant "
            f"folding and shape inference ({ops}; first: {t.first_unknown}); their cost counts the known dimensions "
            "only, so the estimate may be far too low: bind the inputs with dims= / input_shapes= or export the "
            "graph with static shapes."
        )
    return notes


def graph_features(t: Totals, w: Weights, per: float, batch_size: int, precision: str, elem_bytes: int,
              peak_bytes: float, layer_profile: Any, act_bytes: float, flops_backward: float, nodes: Any, input_shapes: dict,
              graph_name: str, notes: list[str]) -> GraphFeatures:
    """The per-sample :class:`GraphFeatures` from the walk's totals (``per`` = 1 / the evaluated batch)."""
    flops_forward = t.flops * per
    flops_optimizer = OPTIMIZER_FLOPS_PER_PARAM * w.trainable_params / batch_size
    # weights are read once per step whatever the batch: amortise them over the training batch
    bytes_moved = (t.bytes - t.wbytes) * per + t.wbytes / batch_size
    return GraphFeatures(
        params=int(w.params), trainable_params=int(w.trainable_params), macs_forward=t.macs * per,
        flops_forward=flops_forward, flops_backward=flops_backward, flops_optimizer=flops_optimizer,
        flops_train=flops_forward + flops_backward + flops_optimizer, activation_bytes=float(act_bytes),
        peak_activation_bytes=float(peak_bytes), weight_bytes=float(w.weight_numel * elem_bytes),
        bytes_moved_forward=bytes_moved, depth=int(t.max_depth), n_nodes=t.n_work,
        frac_macs_conv=frac(t.cls_macs["conv"], t.macs), frac_macs_matmul=frac(t.cls_macs["matmul"], t.macs),
        frac_macs_attention=frac(t.cls_macs["attention"], t.macs),
        frac_macs_recurrent=frac(t.cls_macs["recurrent"], t.macs),
        frac_flops_elementwise=frac(t.nonmac_flops, t.flops), arithmetic_intensity=frac(flops_forward, bytes_moved),
        max_layer_working_set_bytes=float(t.max_ws), batch_size=batch_size, precision=precision,
        unsupported_ops=dict(t.unsupported), nodes=nodes, layer_profile=layer_profile, input_shapes=input_shapes, graph_name=graph_name,
        warnings=tuple(notes),
    )


def frac(a: float, b: float) -> float:
    return float(a / b) if b else 0.0
