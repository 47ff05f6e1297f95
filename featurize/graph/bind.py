"""Binding a graph's symbolic input dimensions (batch, sequence) from the caller's arguments."""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import onnx

from featurize.errors import InvalidInputError, UnboundDimensionError
from featurize.graph.load import NO_SHAPE, ShapeMap, non_init_inputs


def _graph_inputs(model: onnx.ModelProto, inits: Any = None) -> list[tuple[str, onnx.ValueInfoProto]]:
    if inits is None:
        inits = {i.name for i in model.graph.initializer}
    return non_init_inputs(model.graph, inits)


class Binding(NamedTuple):
    """Result of :func:`bind_input_dims`: the concrete input shapes, and where the batch went.

    ``batch_positions`` maps input name -> dim positions that took ``batch_size`` (an unnamed/symbolic
    first dim not given in ``dims``, and every other occurrence of the same symbol).
    """

    shapes: dict[str, list[int]]
    batch_positions: dict[str, tuple[int, ...]]
    batch_size: int = 1
    """The training batch: the ``batch_size`` given, else the value ``dims`` binds the batch axis to, else 1."""


def bind_input_dims(
    model: onnx.ModelProto,
    *,
    batch_size: int | None,
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, Any] | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
    initializers: Mapping[str, Any] | None = None,
    static_inputs: Mapping[str, tuple[tuple[int, ...], int]] | None = None,
    inputs: list[tuple[str, onnx.ValueInfoProto]] | None = None,
) -> Binding:
    """Make every graph-input dim concrete, in place, and report which input dims were bound to the batch.

    Order: ``input_shapes[name]`` replaces the whole shape; otherwise a symbolic dim takes ``dims[dim_param]``; an
    unnamed/symbolic first dim not in ``dims`` is the batch dim (``batch_size``). The bound symbol values are also
    substituted in outputs and value_info. ``skip``: inputs that carry weights (bound from their declared shape,
    never the batch).

    ``initializers`` / ``static_inputs`` / ``inputs``: :attr:`LoadedGraph.initializers` /
    ``.static_inputs`` / ``.inputs`` when already known (static inputs need no binding).

    The batch axis is the first dim of the first graph input that is not a weight. When ``dims`` binds it by name
    (``dims={"batch": 8}``) that value is the batch: ``batch_size`` None takes it, a different ``batch_size`` is an
    :class:`InvalidInputError` naming both (one run has one batch size).
    """
    static_inputs = static_inputs or {}
    dims = dict(dims or {})
    input_shapes = dict(input_shapes or {})
    if inputs is None:
        inputs = _graph_inputs(model, initializers)
    batch_size = _batch_from_dims(inputs, skip, input_shapes, dims, batch_size)
    names = [name for name, _ in inputs]
    unknown = sorted(set(input_shapes) - set(names))
    if unknown:
        raise InvalidInputError(f"input_shapes names unknown graph input(s) {unknown}; the inputs are {names}.")
    symbols = _checked_symbols(dims)
    batch_symbols: set[str] = set()
    batch_positions: dict[str, tuple[int, ...]] = {}
    bound: dict[str, list[int]] = {}
    for name, vi in inputs:
        if name in static_inputs and name not in input_shapes:
            bound[name] = list(static_inputs[name][0])
            continue
        if not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if name not in input_shapes:  # fast path: every dim already a positive value (weights, fixed inputs)
            values = [d.dim_value for d in tt.shape.dim]
            if not values or min(values) > 0:
                bound[name] = values
                continue
        if vi.name in input_shapes:
            bound[vi.name] = _set_shape(vi.name, tt, input_shapes[vi.name])
            continue
        bound[vi.name], at_batch = _bind_symbolic(vi.name, tt, symbols, batch_symbols, batch_size, vi.name in skip)
        if at_batch:
            batch_positions[vi.name] = tuple(at_batch)
    if symbols:
        _substitute(model, symbols)
    return Binding(bound, batch_positions, batch_size)


def _checked_symbols(dims: Mapping[str, Any]) -> dict[str, int]:
    symbols: dict[str, int] = {}
    for k, v in dims.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise InvalidInputError(f"dims[{k!r}] must be a positive int, got {v!r}.")
        symbols[k] = v
    return symbols


def _set_shape(name: str, tt: Any, given: Any) -> list[int]:
    """``input_shapes[name]`` replaces the input's whole declared shape."""
    shape = [int(d) for d in given]
    if any(d <= 0 for d in shape):
        raise InvalidInputError(f"input_shapes[{name!r}] = {shape} must have positive dims.")
    tt.shape.ClearField("dim")
    for d in shape:
        tt.shape.dim.add().dim_value = d
    return shape


def _bind_symbolic(name: str, tt: Any, symbols: dict[str, int], batch_symbols: set[str], batch_size: int,
                   is_weight: bool) -> tuple[list[int], list[int]]:
    """``(shape, positions bound to the batch)`` of one input: a symbolic dim takes ``symbols``; an unnamed or new
    symbolic first dim of a non-weight input is the batch (its symbol then means the batch everywhere)."""
    shape, at_batch = [], []
    for pos, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            shape.append(d.dim_value)
            continue
        sym = d.dim_param if d.HasField("dim_param") else ""
        if sym and sym in symbols:
            value = symbols[sym]
            if sym in batch_symbols:
                at_batch.append(pos)
        elif pos == 0 and not is_weight:
            value = batch_size
            at_batch.append(pos)
            if sym:
                symbols[sym] = batch_size
                batch_symbols.add(sym)
        else:
            raise _unbound(name, sym, pos, symbols)
        d.Clear()
        d.dim_value = value
        shape.append(value)
    return shape, at_batch


def _substitute(model: onnx.ModelProto, symbols: Mapping[str, int]) -> None:
    """The bound symbols' values in the graph's outputs and value_info too."""
    for vi in list(model.graph.output) + list(model.graph.value_info):
        if vi.type.HasField("tensor_type"):
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param in symbols:
                    value = symbols[d.dim_param]
                    d.Clear()
                    d.dim_value = value


def _batch_from_dims(inputs: list[tuple[str, onnx.ValueInfoProto]], skip: Any, input_shapes: Mapping[str, Any],
                     dims: Mapping[str, int], batch_size: int | None) -> int:
    """The run's batch size: ``batch_size``, or the value ``dims`` gives the batch axis (the first dim of the first
    non-weight input) when it names it; both given and different is an error naming both."""
    first = next(((n, vi) for n, vi in inputs if n not in skip and vi.type.HasField("tensor_type")), None)
    sym = ""
    if first is not None and first[0] not in input_shapes:
        d0 = first[1].type.tensor_type.shape.dim
        sym = d0[0].dim_param if len(d0) and d0[0].HasField("dim_param") else ""
    bound = dims.get(sym) if sym else None
    if bound is None:
        return 1 if batch_size is None else batch_size
    if batch_size is not None and bound != batch_size:
        raise InvalidInputError(
            f"dims binds {sym!r}, the batch axis of input {first[0]!r}, to {bound}, but batch_size is {batch_size}: "
            f"give the batch once (CLI: drop --dim {sym}={bound} or pass --batch-size {bound}; API: batch_size= alone "
            "binds the batch axis)."
        )
    return bound


def _unbound(name: str, sym: str, pos: int, symbols: Mapping[str, int]) -> UnboundDimensionError:
    """The error for a symbolic input dim without a value, naming the API and the CLI fix."""
    label = repr(sym) if sym else f"(unnamed dim {pos})"
    if sym:
        fix = f"dims={{{sym!r}: N}} (CLI: --dim {sym}=N)"
    else:
        fix = f"input_shapes={{{name!r}: [...]}}"
    given = f" (bound so far: {dict(symbols)})" if symbols else ""
    return UnboundDimensionError(
        f"graph input {name!r} has symbolic dimension {label} at position {pos} with no value{given}; "
        f"bind it with {fix}, or give the whole shape with input_shapes=."
    )


def shape_of(vi: onnx.ValueInfoProto) -> tuple[tuple[int, ...] | None, int]:
    return type_shape(vi.type)


def type_shape(tp: onnx.TypeProto) -> tuple[tuple[int, ...] | None, int]:
    """``(shape or None when unknown, elem_type)`` of a tensor ``TypeProto`` (``(None, 0)`` for others)."""
    if not tp.HasField("tensor_type"):
        return None, 0
    tt = tp.tensor_type
    if not tt.HasField("shape"):
        return None, tt.elem_type
    dims = tt.shape.dim
    out = tuple([d.dim_value for d in dims])
    if not out or min(out) > 0:  # fast path: all dims known and positive
        return out, tt.elem_type
    for v, d in zip(out, dims):
        if v <= 0 and (v < 0 or not d.HasField("dim_value")):
            return None, tt.elem_type
    return out, tt.elem_type


def _shapes_into(vis, shapes: ShapeMap) -> None:
    """:func:`shape_of` of every value info in ``vis`` into ``shapes``, unless a known shape is there.

    Bulk version of :func:`shape_of` (the hot path of shape extraction): a non-empty shape whose
    dims are all positive takes one pass over the dims; anything else goes through :func:`shape_of`.
    """
    get = shapes.get
    for vi in vis:
        name = vi.name
        if get(name, NO_SHAPE)[0] is not None:
            continue
        tt = vi.type.tensor_type
        out = tuple([d.dim_value for d in tt.shape.dim])
        if out and min(out) > 0:
            shapes[name] = (out, tt.elem_type)
        else:
            shapes[name] = shape_of(vi)


def bind_input_shapes(model: onnx.ModelProto, shapes: ShapeMap) -> None:
    """The (bound) shapes of the graph inputs into ``shapes`` (what the first fold's ``Shape`` nodes read)."""
    _shapes_into(model.graph.input, shapes)
