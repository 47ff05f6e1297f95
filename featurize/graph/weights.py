"""Which tensors are weights: constants, the weight leaves they derive from, parameters vs buffers, and the graph
inputs that are weights passed as inputs (``export_params=False``).

Weights are float constants with more than one element (initializers, Constant / ConstantOfShape outputs,
weight-like graph inputs) and constants derived from them only. ``params`` counts those used in parameter slots;
BatchNorm running mean/variance are buffers (in ``weight_bytes`` only). Nodes whose inputs are all constant are
folded: class ``constant``, no cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx
from onnx import TensorProto

from featurize.errors import InvalidInputError
from featurize.graph.load import NodeFields, ShapeMap, node_fields

FLOAT_TYPES = frozenset(
    {
        TensorProto.FLOAT,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
        TensorProto.DOUBLE,
        TensorProto.FLOAT8E4M3FN,
        TensorProto.FLOAT8E4M3FNUZ,
        TensorProto.FLOAT8E5M2,
        TensorProto.FLOAT8E5M2FNUZ,
    }
)
# Input slots that hold weights, per op: used to recognise weights passed as graph inputs.
WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    "Conv": frozenset({1, 2}),
    "ConvTranspose": frozenset({1, 2}),
    "Gemm": frozenset({1, 2}),
    "MatMul": frozenset({1}),
    "BatchNormalization": frozenset({1, 2, 3, 4}),
    "LayerNormalization": frozenset({1, 2}),
    "GroupNormalization": frozenset({1, 2}),
    "InstanceNormalization": frozenset({1, 2}),
    "LSTM": frozenset({1, 2, 3}),
    "GRU": frozenset({1, 2, 3}),
    "RNN": frozenset({1, 2, 3}),
    "PRelu": frozenset({1}),
    "QLinearConv": frozenset({3, 8}),
    "QLinearMatMul": frozenset({3}),
    "ConvInteger": frozenset({1}),
    "MatMulInteger": frozenset({1}),
}
# Integer element types of quantized weights: an initializer of these types with more than one element
# is a weight (int64/int32 constants are indices and shapes).
QUANT_TYPES = frozenset({TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4})
BUFFER_SLOTS: dict[str, frozenset[int]] = {"BatchNormalization": frozenset({3, 4})}
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})  # costed from their subgraphs (featurize.graph.control_flow)
NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"})
VALUE_INPUTS: dict[str, tuple[int, ...]] = {"CastLike": (0,)}
"""Ops some of whose inputs are read for their element type only (CastLike's ``target_type``): the node is a
constant when its value inputs are. The dynamo exporter's zero bias of a bias-free convolution,
``Expand(CastLike(0, x), Shape(W))``, is then free, as it is in PyTorch (no kernel), instead of two launches per
convolution. (Shape/Size stay run-time: ``arange(x.shape[0])`` launches a kernel in eager PyTorch.)"""
NO_SHAPE = (None, 0)


@dataclass
class Weights:
    """The constant pass's result. ``const``: constant tensors; ``roots``: constant tensor -> the weight leaves it
    derives from; ``param_leaves`` / ``trainable_leaves``: leaves used in a parameter slot / not frozen;
    ``node_const``: per node, whether it is folded."""

    const: set[str]
    roots: dict[str, tuple[str, ...]]
    param_leaves: set[str]
    trainable_leaves: set[str]
    node_const: list[bool]
    params: int
    trainable_params: int
    weight_numel: int


def _leaves(shapes: ShapeMap, init_names: list[str], weight_inputs: frozenset[str],
            tied: Mapping[str, str] | None) -> tuple[dict[str, tuple[str, ...]], dict[str, int], Any]:
    """Weight leaves (float/quantized constants of more than one element) and ``add_leaf`` for derived ones."""
    roots: dict[str, tuple[str, ...]] = {}
    leaf_numel: dict[str, int] = {}
    shape_get, prod = shapes.get, math.prod

    def add_leaf(name: str) -> None:
        shape, elem = shape_get(name, NO_SHAPE)
        if shape is None or (elem not in FLOAT_TYPES and elem not in QUANT_TYPES):
            return
        n = prod(shape)
        if n > 1:
            roots[name] = (name,)
            leaf_numel[name] = n

    for name in init_names:
        add_leaf(name)
    for copy, orig in (tied or {}).items():  # a transposed copy of a weight is that weight (tied LM head)
        if copy in leaf_numel and orig in leaf_numel:
            del leaf_numel[copy]
            roots[copy] = (orig,)
    for name in weight_inputs:
        add_leaf(name)
    return roots, leaf_numel, add_leaf


def weight_roots(nodes: list[NodeFields], shapes: ShapeMap, init_names: list[str], weight_inputs: frozenset[str],
                 tied: Mapping[str, str] | None, frozen: tuple[str, ...]) -> Weights:
    """One pass in graph order: constants folded, weight roots propagated, parameter vs buffer use recorded."""
    roots, leaf_numel, add_leaf = _leaves(shapes, init_names, weight_inputs, tied)
    roots_get = roots.get
    const: set[str] = set(init_names) | set(weight_inputs)
    param_leaves: set[str] = set()  # a leaf is a parameter if some run-time node uses it outside a buffer slot
    used_leaves: set[str] = set()
    node_const: list[bool] = []
    all_const = const.issuperset
    for _, op, _, node_ins, node_outs, _ in nodes:
        value_ins = node_ins if op not in VALUE_INPUTS else [node_ins[i] for i in VALUE_INPUTS[op]
                                                                if i < len(node_ins)]
        is_const = op not in NONDETERMINISTIC and op not in CONTROL_FLOW_OPS and (  # bodies read outer tensors
            all_const(value_ins) or ("" in value_ins and all(x in const for x in value_ins if x))
        )
        node_const.append(is_const)
        if is_const:
            const.update(node_outs)
            if op == "Constant" or op == "ConstantOfShape":
                for o in node_outs:
                    add_leaf(o)
            else:
                derived = tuple(dict.fromkeys(r for x in node_ins if x for r in roots_get(x, ())))
                if derived:
                    for o in node_outs:
                        roots[o] = derived
            continue
        buf = BUFFER_SLOTS.get(op)
        for i, x in enumerate(node_ins):
            r = roots_get(x)
            if r:
                used_leaves.update(r)
                if buf is None or i not in buf:
                    param_leaves.update(r)
    trainable = {n for n in param_leaves if not (frozen and n.startswith(frozen))}
    check_frozen_matches(frozen, param_leaves)
    return Weights(const, roots, param_leaves, trainable, node_const, sum(leaf_numel[n] for n in param_leaves),
                   sum(leaf_numel[n] for n in trainable), sum(leaf_numel[n] for n in used_leaves))


def check_frozen(frozen: Any) -> tuple[str, ...]:
    """``frozen=`` as a tuple of parameter-name prefixes: one prefix given as a string stays one prefix (``tuple("ab")``
    would split it into letters); None trains everything; an empty prefix (it would freeze everything) is refused."""
    if frozen is None:
        return ()
    out = (frozen,) if isinstance(frozen, str) else tuple(frozen)
    if not all(isinstance(p, str) for p in out):
        raise InvalidInputError("frozen= must be a parameter-name prefix or a list of them (strings).")
    if any(not p for p in out):
        raise InvalidInputError(
            "frozen= contains an empty prefix, which would match every parameter (nothing trained); pass the "
            "prefixes of the frozen parameters (e.g. frozen=['backbone.']), or frozen=None to train everything."
        )
    return out


def frozen_from_text(text: Any) -> list[str] | None:
    """The ``frozen`` cell of a runs table (``"backbone.;head."``: prefixes joined by ``;``) as prefixes, None when
    empty."""
    parts = [p.strip() for p in str(text).split(";") if p.strip()]
    return parts or None


def check_frozen_matches(frozen: tuple[str, ...], param_names: Any) -> None:
    """Every frozen prefix must name at least one parameter: a typo would silently train everything."""
    unmatched = [p for p in frozen if not any(n.startswith(p) for n in param_names)]
    if unmatched:
        names = sorted(param_names)
        shown = ", ".join(repr(n) for n in names[:6]) + (f" ... ({len(names)} in all)" if len(names) > 6 else "")
        raise InvalidInputError(
            f"frozen prefix(es) {unmatched} match no parameter of the graph; its parameter names are "
            f"{shown or '(none)'}. Pass prefixes of those names (featurize(...).nodes lists them per node)."
        )


def _static_rank(vi: onnx.ValueInfoProto) -> int | None:
    """Rank of a graph input with a fully static float shape, else None."""
    tt = vi.type.tensor_type  # a default (elem_type 0, no dims) when vi is not a tensor
    if tt.elem_type not in FLOAT_TYPES:
        return None
    dims = tt.shape.dim
    values = [d.dim_value for d in dims]
    if values and min(values) > 0:
        return len(values)  # a positive dim_value is set
    static = vi.type.HasField("tensor_type") and tt.HasField("shape") and all(d.HasField("dim_value") for d in dims)
    return len(values) if static else None


def weight_like_inputs(
    graph: onnx.GraphProto, nodes: list[NodeFields] | None = None, inits: Any = None,
    static: Mapping[str, tuple[tuple[int, ...], int]] | None = None,
    inputs: list[tuple[str, onnx.ValueInfoProto]] | None = None,
) -> frozenset[str]:
    """Graph inputs (not initializers) that look like weights passed as inputs (export_params=False).

    Initializer-like: fully static float shape (no symbolic dim), fed only into weight slots of
    weight-bearing ops (:data:`WEIGHT_SLOTS`; for MatMul only a rank-2 second operand), never the first
    graph input. ``inits`` / ``static``: :attr:`~featurize.graph.load.LoadedGraph.initializers` /
    ``.static_inputs`` when known; ``inputs``: :attr:`~featurize.graph.load.LoadedGraph.inputs` when known.
    """
    if inits is None:
        inits = {i.name for i in graph.initializer}
    known = static or {}
    real = inputs if inputs is not None else [(vi.name, vi) for vi in graph.input if vi.name not in inits]
    candidates = {}
    for name, vi in real[1:]:
        entry = known.get(name)
        if entry is not None:  # all dims positive values
            if entry[1] in FLOAT_TYPES:
                candidates[name] = len(entry[0])
            continue
        rank = _static_rank(vi)
        if rank is not None:
            candidates[name] = rank
    if not candidates:
        return frozenset()
    ok: dict[str, bool] = {}
    for node in nodes if nodes is not None else node_fields(graph):
        if candidates.keys().isdisjoint(node.ins):
            continue
        slots = WEIGHT_SLOTS.get(node.op_type, frozenset())
        for i, name in enumerate(node.ins):
            if name in candidates:
                good = i in slots and not (node.op_type == "MatMul" and candidates[name] != 2)
                ok[name] = ok.get(name, True) and good
    return frozenset(n for n, v in ok.items() if v)
