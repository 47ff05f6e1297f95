"""Numpy constant folding of small all-constant (shape) subgraphs, so ONNX shape inference can size
what torch exports compute from shapes (``Shape -> ConstantOfShape -> Mul -> Equal -> Where -> Expand``,
``Range`` of a sequence length, ...). ONNX data propagation does not evaluate those ops.

Public entry points: :func:`fold_constants` (node list + known shapes -> ``{tensor: ndarray}`` of the
node outputs it could evaluate) and :data:`FOLD_MAX_ELEMENTS` (the size cap). The graph is never
executed: only nodes whose inputs are all known small constants (initializers that still carry data,
``Constant`` nodes, ``Shape``/``Size`` of a tensor of known shape, earlier folded outputs) are
evaluated, and every output's element count is checked *before* it is allocated.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from featurize.graph.limits import MAX_RANK

__all__ = ["fold_constants", "FOLD_MAX_ELEMENTS", "FOLD_BUDGET_ELEMENTS", "initializer_values", "Values"]

# Largest tensor the folder materialises (elements). Shape subgraphs hold a few dozen values; a
# [seq, seq] causal mask at seq 128 is 16384. Anything larger keeps its (inferred) shape, unfolded.
FOLD_MAX_ELEMENTS = 1 << 16
FOLD_BUDGET_ELEMENTS = 1 << 20
"""Most elements the folder holds in all (8 MiB of int64): past it only shape vectors (at most
:data:`~featurize.graph.limits.MAX_RANK` elements) are still folded, so a long chain of large constant ops cannot
grow the folder's memory (or the model copies that carry its values) without bound."""

_SHAPE_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL,
                          onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16})
Kernel = Callable[[list, dict], Any]
_KERNELS: dict[str, Kernel] = {}


def _k(*names: str):
    def deco(fn: Kernel) -> Kernel:
        for n in names:
            _KERNELS[n] = fn
        return fn

    return deco


def _attr_dict(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class Values(dict):
    """``{tensor name: ndarray}`` of known constant values; initializers are converted on first read."""

    def __init__(self, protos: dict[str, onnx.TensorProto]):
        super().__init__()
        self._protos = protos

    def __missing__(self, name: str) -> np.ndarray:
        arr = self[name] = numpy_helper.to_array(self._protos.pop(name))  # KeyError: not a known constant
        return arr


def initializer_values(graph: onnx.GraphProto) -> Values:
    """The small integer/bool initializers that still carry data (shape data: float initializers are
    weights, and shapes are not computed from them), converted to numpy on first read."""
    protos: dict[str, onnx.TensorProto] = {}
    for init in graph.initializer:
        if init.data_type not in _SHAPE_TYPES or init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        if math.prod(init.dims) > FOLD_MAX_ELEMENTS:
            continue
        if init.raw_data or init.int64_data or init.int32_data or math.prod(init.dims) == 0:
            protos[init.name] = init
    return Values(protos)


def fold_constants(
    nodes: list, shapes: Mapping[str, tuple], values: dict[str, np.ndarray], *, max_elements: int = FOLD_MAX_ELEMENTS
) -> dict[str, np.ndarray]:
    """Evaluate, in graph order, every node of ``nodes`` (:class:`~featurize.graph.load.NodeFields`) whose
    inputs are all in ``values`` (updated in place) or that reads only the shape of a tensor whose
    shape ``shapes`` knows. Returns the newly folded node outputs. Outputs above ``max_elements`` (or
    ops without a kernel, or a kernel error) are skipped, never raised; once the values hold
    :data:`FOLD_BUDGET_ELEMENTS` elements, so is every output above a shape vector's size."""
    new: dict[str, np.ndarray] = {}
    held = sum(getattr(v, "size", 0) for v in dict.values(values))
    cap = max_elements if held <= FOLD_BUDGET_ELEMENTS else min(max_elements, MAX_RANK)
    for node in nodes:
        outs = node.outs
        if not outs or outs[0] in values:
            continue
        try:
            result = _eval(node, shapes, values, cap)
        except Exception:  # noqa: BLE001 - a node we cannot evaluate keeps its inferred shape
            result = None
        if result is None:
            continue
        for name, arr in zip(outs, result):
            if name and arr is not None and arr.size <= cap:
                values[name] = new[name] = arr
                held += arr.size
                if held > FOLD_BUDGET_ELEMENTS:
                    cap = min(max_elements, MAX_RANK)
    return new


def _eval(node, shapes: Mapping[str, tuple], values: dict, cap: int) -> list | None:
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return None
    if op in ("Shape", "Size"):
        shape = shapes.get(node.ins[0], (None, 0))[0]
        if shape is None:
            arr = values.get(node.ins[0])
            shape = None if arr is None else arr.shape
        if shape is None:
            return None
        if op == "Size":
            return [np.array(math.prod(shape), np.int64)]
        a = _attr_dict(node.proto)
        rank = len(shape)
        start, end = a.get("start", 0), a.get("end", rank)
        return [np.array(shape[slice(start, end)], np.int64)]
    if op == "Constant":
        return [_constant(node.proto)]
    if op == "ConstantOfShape" and _fills_float(node.proto):
        return None  # a weight built in the graph (onnx's light models), not shape data
    kernel = _KERNELS.get(op)
    if kernel is None:
        return None
    ins = []
    for x in node.ins:
        if not x:
            ins.append(None)
            continue
        try:
            ins.append(values[x])
        except KeyError:  # not a known constant
            return None
    a = _attr_dict(node.proto) if node.proto.attribute else {}
    a["_cap"] = cap
    out = kernel(ins, a)
    return out if isinstance(out, list) else [np.asarray(out)]


def _fills_float(proto: onnx.NodeProto) -> bool:
    value = next((a.t for a in proto.attribute if a.name == "value"), None)
    return value is None or value.data_type not in _SHAPE_TYPES


def _constant(proto: onnx.NodeProto) -> np.ndarray | None:
    for attr in proto.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_int", "value_ints"):
            return np.array(onnx.helper.get_attribute_value(attr), np.int64)
        if attr.name in ("value_float", "value_floats"):
            return np.array(onnx.helper.get_attribute_value(attr), np.float32)
    return None


def _check(n: int, cap: int) -> None:
    if n > cap:
        raise OverflowError(f"folded tensor of {n} elements is above the cap of {cap}")


def _broadcast(ins: list, cap: int) -> None:
    _check(math.prod(np.broadcast_shapes(*[x.shape for x in ins])), cap)


def _binary(fn):
    def kernel(ins, a):
        _broadcast(ins, a["_cap"])
        out = fn(ins[0], ins[1])
        return out.astype(ins[0].dtype) if out.dtype != np.bool_ and ins[0].dtype != out.dtype else out

    return kernel


for _name, _fn in {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Pow": np.power,
                   "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}.items():
    _k(_name)(_binary(_fn))
for _name, _fn in {"Equal": np.equal, "Less": np.less, "Greater": np.greater, "LessOrEqual": np.less_equal,
                   "GreaterOrEqual": np.greater_equal}.items():
    _k(_name)(lambda ins, a, fn=_fn: (_broadcast(ins, a["_cap"]), fn(ins[0], ins[1]))[1])
for _name, _fn in {"Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt,
                   "Not": np.logical_not, "Identity": lambda x: x, "Reciprocal": np.reciprocal,
                   "Sign": np.sign, "Relu": lambda x: np.maximum(x, 0).astype(x.dtype)}.items():
    _k(_name)(lambda ins, a, fn=_fn: fn(ins[0]))


@_k("Div")
def _div(ins, a):
    _broadcast(ins, a["_cap"])
    x, y = ins
    if np.issubdtype(x.dtype, np.integer):
        return (np.trunc(x / y)).astype(x.dtype)  # ONNX integer Div truncates toward zero
    return (x / y).astype(x.dtype)


@_k("Mod")
def _mod(ins, a):
    _broadcast(ins, a["_cap"])
    return np.fmod(ins[0], ins[1]) if a.get("fmod", 0) else np.mod(ins[0], ins[1])


def _variadic_of(op):
    def kernel(ins, a):
        _broadcast(ins, a["_cap"])
        fn = {"Min": np.minimum, "Max": np.maximum, "Sum": np.add}[op]
        out = ins[0]
        for x in ins[1:]:
            out = fn(out, x)
        return out

    return kernel


for _name in ("Min", "Max", "Sum"):
    _KERNELS[_name] = _variadic_of(_name)


@_k("Where")
def _where(ins, a):
    _broadcast(ins, a["_cap"])
    return np.where(ins[0], ins[1], ins[2])


@_k("Cast")
def _cast(ins, a):
    return ins[0].astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))


@_k("CastLike")
def _cast_like(ins, a):
    return ins[0].astype(ins[1].dtype)


@_k("Gather")
def _gather(ins, a):
    data, idx = ins
    axis = a.get("axis", 0)
    _check(data.size // max(data.shape[axis], 1) * max(idx.size, 1), a["_cap"])
    return np.take(data, idx.astype(np.int64), axis=axis)


def _axes(ins, a) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:
        return [int(v) for v in np.atleast_1d(ins[1])]
    return list(a["axes"]) if "axes" in a else None


@_k("Unsqueeze")
def _unsqueeze(ins, a):
    x, axes = ins[0], _axes(ins, a)
    rank = x.ndim + len(axes)
    shape = list(x.shape)
    for ax in sorted(ax % rank for ax in axes):
        shape.insert(ax, 1)
    return x.reshape(shape)


@_k("Squeeze")
def _squeeze(ins, a):
    axes = _axes(ins, a)
    return np.squeeze(ins[0], axis=None if axes is None else tuple(ax % ins[0].ndim for ax in axes))


@_k("Concat")
def _concat(ins, a):
    _check(sum(x.size for x in ins if x is not None), a["_cap"])
    return np.concatenate([x for x in ins if x is not None], axis=a["axis"])


@_k("Reshape")
def _reshape(ins, a):
    x, shape = ins[0], [int(v) for v in ins[1]]
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


@_k("Flatten")
def _flatten(ins, a):
    x, axis = ins[0], a.get("axis", 1) % max(ins[0].ndim, 1)
    return x.reshape(math.prod(x.shape[:axis]), -1)


@_k("Transpose")
def _transpose(ins, a):
    return np.transpose(ins[0], a.get("perm"))


@_k("Slice")
def _slice(ins, a):
    x = ins[0]
    if len(ins) >= 3:
        starts, ends = ins[1], ins[2]
        axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
        steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    else:
        starts, ends = a["starts"], a["ends"]
        axes, steps = a.get("axes", range(len(starts))), [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax) % x.ndim] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


@_k("ConstantOfShape")
def _constant_of_shape(ins, a):
    shape = [int(v) for v in ins[0]]
    _check(math.prod(shape), a["_cap"])
    value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    return np.full(shape, value.reshape(-1)[0], dtype=value.dtype)


@_k("Range")
def _range(ins, a):
    start, limit, delta = (v.reshape(()) for v in ins)
    _check(max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0), a["_cap"])
    return np.arange(start, limit, delta, dtype=start.dtype)


@_k("Expand")
def _expand(ins, a):
    shape = np.broadcast_shapes(ins[0].shape, tuple(int(v) for v in ins[1]))
    _check(math.prod(shape), a["_cap"])
    return np.broadcast_to(ins[0], shape).copy()


@_k("Tile")
def _tile(ins, a):
    reps = [int(v) for v in ins[1]]
    _check(ins[0].size * math.prod(reps), a["_cap"])
    return np.tile(ins[0], reps)


def _reduce(fn):
    def kernel(ins, a):
        axes = _axes(ins, a)
        if axes is None and a.get("noop_with_empty_axes", 0):
            return ins[0]
        keep = bool(a.get("keepdims", 1))
        return fn(ins[0], axis=None if not axes else tuple(axes), keepdims=keep)

    return kernel


for _name, _fn in {"ReduceProd": np.prod, "ReduceSum": np.sum, "ReduceMax": np.max, "ReduceMin": np.min}.items():
    _KERNELS[_name] = _reduce(_fn)
