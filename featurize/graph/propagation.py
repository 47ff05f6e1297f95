"""What onnx's shape inference is allowed to see: the model copy handed to each inference pass.

With data propagation (``infer_shapes(..., data_prop=True)``) onnx carries, for every 1-D tensor read by an op
that propagates data (``Add``, ``Cast``, ``Concat``, ``Unsqueeze``...), one protobuf dimension per element --
its value when known (``Range``, ``ConstantOfShape``, ``Tile``, ``Expand`` of constants), else an unknown one --
at about 0.3-1 us per element per node: a ``Range(0, 2**24)`` read by one ``Add`` takes 20 s. Shape inference
only ever needs the values of *shape vectors* (one value per dimension), so :func:`inference_copy` keeps every
1-D tensor of more than :data:`MAX_PROPAGATED_ELEMENTS` elements out of a data-propagation pass: its producer is
dropped and the tensor becomes a graph input of unknown shape (no dimensions to carry), and so do the outputs of
the nodes reading it whose shape is not yet known to be of rank >= 2 (onnx propagates 1-D data only). A plain
pass afterwards sizes what was cut (:func:`featurize.graph.shapes.resolve_shapes`). :func:`data_prop_plan` says
whether a graph has such tensors before any inference ran (the loader then sizes everything with a plain pass
first, so that the cut follows known ranks).

What is left -- values grown by a chain of ``Concat`` nodes from small sources whose sizes only inference finds
-- is bounded by the time limit ``predict`` runs inference under (:mod:`featurize.graph.isolated_inference`).

Public entry points: :func:`inference_copy`, :func:`data_prop_plan`, :data:`MAX_PROPAGATED_ELEMENTS`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["inference_copy", "data_prop_plan", "big_1d", "MAX_PROPAGATED_ELEMENTS"]

MAX_PROPAGATED_ELEMENTS = 4096
"""Largest 1-D tensor a data-propagation pass may carry (a shape vector has at most 64 values; position ids of a
4,096-token sequence stay in, so that a transformer export at that length still resolves in one pass)."""

# Ops whose output size is set by input *values* (sized here from the constants, as inference would).
_SIZED_OPS = frozenset({"Range", "ConstantOfShape", "Tile", "Expand"})
# Readers of a cut tensor whose outputs stay small (the rank, the element count).
_SIZE_READS = frozenset({"Shape", "Size"})
_BOOL_OPS = frozenset({"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor",
                       "IsNaN", "IsInf"})
_NO_SHAPE = (None, 0)


def inference_copy(model: onnx.ModelProto, nodes: list, folded: Mapping[str, Any], shapes: Mapping[str, tuple],
                   *, data_prop: bool, values: Mapping[str, Any] | None = None,
                   cut: list[str] | None = None, plan: tuple | None = None,
                   big_inputs: Sequence[str] = ()) -> onnx.ModelProto:
    """A copy of ``model`` for one inference pass (``model`` itself when nothing changes).

    Folded shape nodes (every output a folded integer/bool tensor; ``Constant`` aside) become initializers
    holding their values. With ``data_prop``, the big 1-D tensors (see the module docstring: folded, a
    ``Constant``'s, sized from the constant ``values`` by :func:`_sized_shape`, known from ``shapes``, or a
    ``Range`` / ``ConstantOfShape`` / ``Tile`` / ``Expand`` of still unknown size) and the outputs that read them
    are cut instead: dropped with their producers, declared as graph inputs of unknown shape; their names are
    appended to ``cut``. ``plan``: :func:`data_prop_plan` of the same state, when the caller has it.
    ``big_inputs``: graph inputs that are 1-D tensors of more than :data:`MAX_PROPAGATED_ELEMENTS` elements
    (:func:`big_1d`): they stay, but what reads them is cut.
    """
    drop, inits, hidden = plan if plan is not None else _plan(nodes, folded, shapes, values or {}, data_prop,
                                                              big_inputs)
    if cut is not None:
        cut.extend(hidden)
    if not drop:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [n for i, n in enumerate(m.graph.node) if i not in drop]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    m.graph.initializer.extend([numpy_helper.from_array(arr, name) for name, arr in inits])
    m.graph.input.extend([helper.make_tensor_value_info(name, elem, None) for name, elem in hidden.items()])
    return m


def data_prop_plan(nodes: list, folded: Mapping[str, Any], shapes: Mapping[str, tuple],
                   values: Mapping[str, Any], big_inputs: Sequence[str] = ()) -> tuple:
    """The plan of a data-propagation copy over what is known now (for :func:`inference_copy`'s ``plan``); its
    last item, the tensors it would cut, says whether the graph has big 1-D tensors."""
    return _plan(nodes, folded, shapes, values, True, big_inputs)


def big_1d(names: Iterable[str], shapes: Mapping[str, tuple]) -> list[str]:
    """The ``names`` whose known shape is 1-D with more than :data:`MAX_PROPAGATED_ELEMENTS` elements."""
    out = []
    for name in names:
        shape = shapes.get(name, _NO_SHAPE)[0]
        if shape is not None and len(shape) == 1 and shape[0] > MAX_PROPAGATED_ELEMENTS:
            out.append(name)
    return out


def _plan(nodes: list, folded: Mapping[str, Any], shapes: Mapping[str, tuple], values: Mapping[str, Any],
          data_prop: bool, big_inputs: Sequence[str] = ()) -> tuple[dict[int, None], list[tuple[str, Any]],
                                                                    dict[str, int]]:
    """``(indices of the nodes to drop, (name, value) initializers to add, {cut tensor: elem type})``."""
    drop: dict[int, None] = {}
    inits: list[tuple[str, Any]] = []
    hidden: dict[str, int] = {x: shapes.get(x, _NO_SHAPE)[1] or TensorProto.FLOAT for x in big_inputs} if data_prop \
        else {}
    get = shapes.get
    for i, n in enumerate(nodes):
        outs = n.outs
        if not outs or not any(outs):
            continue
        op = n.op_type
        if folded and op != "Constant" and all(o in folded and folded[o].dtype.kind in "biu" for o in outs if o):
            drop[i] = None
            for o in outs:
                if not o:
                    continue
                if data_prop and folded[o].size > MAX_PROPAGATED_ELEMENTS:
                    hidden[o] = _elem_of(folded[o])
                else:
                    inits.append((o, folded[o]))
            continue
        if not data_prop:
            continue
        if op == "Constant":
            shape = _constant_shape(n.proto)[0]
            if shape is None or len(shape) > 1 or math.prod(shape) <= MAX_PROPAGATED_ELEMENTS:
                continue
        elif op not in _SIZED_OPS and not (hidden and not hidden.keys().isdisjoint(n.ins)):  # the common case
            known_big = False
            for o in outs:
                shape = get(o, _NO_SHAPE)[0]
                if shape is not None and len(shape) == 1 and shape[0] > MAX_PROPAGATED_ELEMENTS:
                    known_big = True
            if not known_big:
                continue
        elems = _cut_outputs(n, [o for o in outs if o], shapes, values, hidden)
        if elems:
            drop[i] = None
            hidden.update(elems)
    for x in big_inputs:  # they taint their readers, and stay graph inputs
        hidden.pop(x, None)
    return drop, inits, hidden


def _cut_outputs(n: Any, outs: list[str], shapes: Mapping[str, tuple], values: Mapping[str, Any],
                 hidden: Mapping[str, int]) -> dict[str, int]:
    """``{output: elem type}`` of node ``n`` when its outputs must stay out of data propagation, else ``{}``."""
    reads_cut = n.op_type not in _SIZE_READS and any(x in hidden for x in n.ins)
    out: dict[str, int] = {}
    for o in outs:
        shape, elem = shapes.get(o, _NO_SHAPE)
        if shape is None and n.op_type == "Constant":
            shape, elem = _constant_shape(n.proto)
        elif shape is None and n.op_type in _SIZED_OPS:
            shape, elem = _sized_shape(n, shapes, values), elem or _sized_elem(n, shapes)
        big = shape is not None and len(shape) <= 1 and math.prod(shape) > MAX_PROPAGATED_ELEMENTS
        unsized = shape is None and (reads_cut or (n.op_type in _SIZED_OPS and _may_be_1d(n, shapes)))
        if big or unsized:
            out[o] = elem or _reader_elem(n, shapes, hidden)
    if not out or any(e == 0 for e in out.values()):
        return {}  # a graph input needs a type: without one the node stays (the time limit bounds it)
    return {o: out.get(o) or shapes.get(o, _NO_SHAPE)[1] or next(iter(out.values())) for o in outs}


def _sized_shape(n: Any, shapes: Mapping[str, tuple], values: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The output shape of a ``_SIZED_OPS`` node from the constant values it reads (None when they are unknown)."""
    import numpy as np

    def value(i: int) -> Any:
        try:
            return np.asarray(values[n.ins[i]]).reshape(-1) if len(n.ins) > i and n.ins[i] else None
        except (KeyError, ValueError):
            return None

    def shape_of(i: int) -> tuple[int, ...] | None:
        try:
            return tuple(np.shape(values[n.ins[i]]))
        except KeyError:
            return shapes.get(n.ins[i], _NO_SHAPE)[0]

    try:
        if n.op_type == "Range":
            bounds = [value(i) for i in range(3)]
            if any(b is None or b.size != 1 for b in bounds) or float(bounds[2][0]) == 0:
                return None
            start, limit, delta = (float(b[0]) for b in bounds)
            return (max(math.ceil((limit - start) / delta), 0),)
        vec = value(0 if n.op_type == "ConstantOfShape" else 1)
        if vec is None:
            return None
        if n.op_type == "ConstantOfShape":
            return tuple(int(v) for v in vec)
        data = shape_of(0)
        if data is None:
            return None
        if n.op_type == "Tile":
            return tuple(int(d) * int(r) for d, r in zip(data, vec)) if len(vec) == len(data) else None
        return tuple(int(d) for d in np.broadcast_shapes(tuple(data), tuple(int(v) for v in vec)))
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _may_be_1d(n: Any, shapes: Mapping[str, tuple]) -> bool:
    """Whether a ``_SIZED_OPS`` node's output can be 0-/1-D (what onnx propagates) given what is known."""
    if n.op_type == "Range":
        return True
    if n.op_type == "ConstantOfShape":
        vec = shapes.get(n.ins[0], _NO_SHAPE)[0] if n.ins else None
        return vec is None or math.prod(vec) <= 1
    data = shapes.get(n.ins[0], _NO_SHAPE)[0] if n.ins else None
    if n.op_type == "Tile":
        return data is None or len(data) <= 1
    vec = shapes.get(n.ins[1], _NO_SHAPE)[0] if len(n.ins) > 1 else None  # Expand: max(rank(data), len(shape))
    return (data is None or len(data) <= 1) and (vec is None or math.prod(vec) <= 1)


def _sized_elem(n: Any, shapes: Mapping[str, tuple]) -> int:
    """The element type of a ``_SIZED_OPS`` node's output from its inputs / attributes (0 when unknown)."""
    if n.op_type == "ConstantOfShape":
        value = next((a.t for a in n.proto.attribute if a.name == "value"), None)
        return value.data_type if value is not None else TensorProto.FLOAT
    return shapes.get(n.ins[0], _NO_SHAPE)[1] if n.ins else 0


def _reader_elem(n: Any, shapes: Mapping[str, tuple], hidden: Mapping[str, int]) -> int:
    """The element type of an output of node ``n`` that reads a cut tensor (most data ops keep their input's)."""
    if n.op_type in ("Cast", "CastLike"):
        to = next((a.i for a in n.proto.attribute if a.name == "to"), 0)
        return to or (shapes.get(n.ins[1], _NO_SHAPE)[1] if len(n.ins) > 1 else 0)
    if n.op_type in _BOOL_OPS:
        return TensorProto.BOOL
    for x in n.ins[1:] if n.op_type == "Where" else n.ins:
        elem = hidden.get(x) or shapes.get(x, _NO_SHAPE)[1]
        if elem:
            return elem
    return 0


def _constant_shape(proto: onnx.NodeProto) -> tuple[tuple[int, ...] | None, int]:
    for a in proto.attribute:
        if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
            return tuple(a.t.dims), a.t.data_type
        if a.name == "value_ints":
            return (len(a.ints),), TensorProto.INT64
        if a.name == "value_floats":
            return (len(a.floats),), TensorProto.FLOAT
    return _NO_SHAPE


def _elem_of(arr: Any) -> int:
    try:
        return helper.np_dtype_to_tensor_dtype(arr.dtype)
    except Exception:  # noqa: BLE001 - numpy types without an ONNX twin
        return TensorProto.INT64
