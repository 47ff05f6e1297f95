"""Load, validate and shape-resolve an ONNX graph without reading its weights.

Public entry points: :func:`load_model` (path / bytes / ``ModelProto`` -> ``ModelProto``),
:func:`load_graph` (the same plus node fields, initializer and static input shapes, each read once),
:func:`bind_dims` (symbolic input dims -> concrete values), :func:`resolve_shapes` (numpy folding of
small constant shape subgraphs, then strict ONNX shape inference, escalating to data propagation and
onnxruntime's symbolic inference only while shapes stay unknown; the graph is never executed). Everything raises the project's own errors (:mod:`featurize.errors`).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import onnx
import onnx.inliner  # a submodule `import onnx` does not load (graphs with local functions need it)
from onnx import TensorProto

from featurize.errors import GraphLoadError, InvalidInputError, UnboundDimensionError
from featurize.fold import fold_constants, initializer_values
from featurize.limits import check_path, check_shapes, read_model_file

__all__ = ["load_model", "load_model_nodes", "load_graph", "LoadedGraph", "node_fields", "NodeFields", "bind_dims", "bind_input_dims", "Binding", "resolve_shapes", "ShapeMap"]

# tensor name -> (shape or None when unknown, ONNX elem_type)
ShapeMap = dict[str, tuple[tuple[int, ...] | None, int]]
# initializer name -> (dims, ONNX data_type)
InitShapes = dict[str, tuple[tuple[int, ...], int]]

_FIX_LOAD = "pass a path to an existing .onnx file, the file's bytes, an onnx.ModelProto or a torch.nn.Module"


class NodeFields(NamedTuple):
    """Fields of a NodeProto extracted once (protobuf field access is slow in the hot loops).

    ``ins`` / ``outs`` are plain lists (a slice of the repeated field is the cheapest copy); treat them
    as read-only.
    """

    name: str
    op_type: str
    domain: str
    ins: list[str]
    outs: list[str]
    proto: onnx.NodeProto


def node_fields(graph: onnx.GraphProto) -> list[NodeFields]:
    """:class:`NodeFields` of every node of ``graph``, in order."""
    new, cls = tuple.__new__, NodeFields  # NamedTuple built without its Python-level __new__ / _make
    return [new(cls, (n.name, n.op_type, n.domain, n.input[:], n.output[:], n)) for n in graph.node]


def load_model(source: Any) -> onnx.ModelProto:
    """Read ``source`` (path, bytes or ModelProto) into a ModelProto we may mutate, without weights."""
    return load_model_nodes(source)[0]


class LoadedGraph(NamedTuple):
    """Result of :func:`load_graph`: the weightless model, its :func:`node_fields`, the initializers'
    ``{name: (dims, data_type)}`` and ``static_inputs``: ``{name: (dims, elem_type)}`` of the
    non-initializer tensor inputs whose declared dims are all positive values (weights passed as
    inputs, fixed-shape inputs). ``inputs``: ``(name, ValueInfoProto)`` of the graph inputs that are
    not initializers, in order (the model's own protos: binding edits them in place). Read once:
    protobuf access is slow."""

    model: onnx.ModelProto
    nodes: list[NodeFields]
    initializers: InitShapes
    static_inputs: InitShapes
    inputs: list[tuple[str, onnx.ValueInfoProto]] = []
    tied: dict[str, str] = {}  # initializer -> the initializer it is a transposed copy of (see _transposed_copies)


def load_model_nodes(source: Any) -> tuple[onnx.ModelProto, list[NodeFields]]:
    """:func:`load_model` plus the :func:`node_fields` of the (validated, inlined) graph."""
    loaded = load_graph(source)
    return loaded.model, loaded.nodes


def load_graph(source: Any) -> LoadedGraph:
    """:func:`load_model_nodes` plus the initializer shapes (see :class:`LoadedGraph`)."""
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        what = "the given ModelProto"
    elif isinstance(source, (bytes, bytearray, memoryview)):
        model = _parse(bytes(source), "the given bytes")
        what = "the given bytes"
    elif isinstance(source, (str, os.PathLike)):
        what = repr(check_path(source)[:200])
        model = _parse(read_model_file(source), what)  # regular file, size cap, no FIFO/device (limits)
    else:
        raise InvalidInputError(f"cannot featurize an object of type {type(source).__name__}; {_FIX_LOAD}.")
    tied = {**_transposed_copies(model.graph), **_declared_ties(model)}  # before the payloads go
    inits = _strip_weight_data(model)  # shape inference would otherwise re-serialize every weight
    inputs = _non_init_inputs(model.graph, inits)
    nodes = _validate(model, what, inits, [name for name, _ in inputs])
    if model.functions:
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as err:  # noqa: BLE001 - any inliner failure is a load problem
            raise GraphLoadError(f"could not inline the local functions of {what}: {err}") from err
        nodes = node_fields(model.graph)
        inits = {i.name: (tuple(i.dims), i.data_type) for i in model.graph.initializer}
        inputs = _non_init_inputs(model.graph, inits)  # the inlined model's own protos
    return LoadedGraph(model, nodes, inits, _static_inputs(inputs), inputs, tied)


def _non_init_inputs(graph: onnx.GraphProto, inits: Any) -> list[tuple[str, onnx.ValueInfoProto]]:
    """``(name, value info)`` of the graph inputs not in ``inits``, in order."""
    return [(name, vi) for vi in graph.input if (name := vi.name) not in inits]


def _static_inputs(inputs: list[tuple[str, onnx.ValueInfoProto]]) -> InitShapes:
    """``{name: (dims, elem_type)}`` of the (non-initializer) ``inputs`` with all dims positive values."""
    out: InitShapes = {}
    for name, vi in inputs:
        tt = vi.type.tensor_type  # a default (no dims) when vi is not a tensor
        values = tuple([d.dim_value for d in tt.shape.dim])
        if values and min(values) > 0:
            out[name] = (values, tt.elem_type)
    return out


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as err:  # protobuf DecodeError and friends
        raise GraphLoadError(
            f"{what} is not a readable ONNX model (not ONNX, or a truncated/corrupt file): {err}. "
            "Re-export the model with torch.onnx.export / onnx.save and pass the complete file."
        ) from err
    return model


def _declared_ties(model: onnx.ModelProto) -> dict[str, str]:
    """``{copy: original}`` that the torch exporter recorded (``featurize.torch_export.TIED_KEY``): parameters
    that are one tensor under two names, e.g. GPT-2's ``lm_head.weight`` and ``transformer.wte.weight``."""
    import json

    for entry in model.metadata_props:
        if entry.key == "joulecast.tied_weights":
            try:
                tied = json.loads(entry.value)
            except ValueError:
                return {}
            return {str(k): str(v) for k, v in tied.items()} if isinstance(tied, dict) else {}
    return {}


def _transposed_copies(graph: onnx.GraphProto, samples: int = 64) -> dict[str, str]:
    """``{copy: original}`` for 2-D float initializers stored inline that equal another one transposed
    (the TorchScript exporter writes a tied LM head as a pre-transposed second copy of the embedding):
    dims ``[a, b]`` vs ``[b, a]`` and ``samples`` pseudo-random positions equal. Weights absent
    (external data) cannot be compared and are left alone."""
    import numpy as np

    by_dims: dict[tuple, list[onnx.TensorProto]] = {}
    for init in graph.initializer:
        if len(init.dims) == 2 and init.data_type == TensorProto.FLOAT and init.raw_data and min(init.dims) > 1:
            by_dims.setdefault(tuple(init.dims), []).append(init)
    tied: dict[str, str] = {}
    for (a, b), group in by_dims.items():
        if a >= b or (b, a) not in by_dims:
            continue
        rng = np.random.default_rng(0)
        rows, cols = rng.integers(0, a, samples), rng.integers(0, b, samples)
        for orig in group:
            x = np.frombuffer(orig.raw_data, np.float32)
            for copy in by_dims[(b, a)]:
                y = np.frombuffer(copy.raw_data, np.float32)
                if np.array_equal(x[rows * b + cols], y[cols * a + rows]) and np.any(x[rows * b + cols]):
                    tied[copy.name] = orig.name
    return tied


def _strip_weight_data(model: onnx.ModelProto) -> InitShapes:
    """Drop large initializer payloads (dims are kept) so copies and shape inference stay cheap.
    Returns the initializers' ``{name: (dims, data_type)}``."""
    inits: InitShapes = {}
    external = TensorProto.EXTERNAL
    for init in model.graph.initializer:
        dims = tuple(init.dims)
        inits[init.name] = (dims, init.data_type)
        if math.prod(dims) > 1024 and init.data_location != external:
            init.ClearField("raw_data")
            for f in ("float_data", "double_data", "int32_data", "int64_data"):
                init.ClearField(f)
    return inits


def _validate(
    model: onnx.ModelProto, what: str, inits: InitShapes | None = None, input_names: list[str] | None = None
) -> list[NodeFields]:
    """Cheap structural check: a graph with nodes, every node input defined before use. Returns the
    graph's :func:`node_fields`. ``input_names``: the graph inputs not in ``inits`` when known."""
    g = model.graph
    if not model.HasField("graph") or len(g.node) == 0 or model.ir_version <= 0:
        raise GraphLoadError(
            f"{what} does not contain an ONNX graph with nodes (not an ONNX model, or truncated). "
            "Re-export it and pass the complete .onnx file."
        )
    if inits is not None and input_names is not None:
        defined = set(input_names)
        defined.update(inits)
    else:
        defined = {i.name for i in g.input} | (inits.keys() if inits is not None else {i.name for i in g.initializer})
    defined.add("")
    if len(g.sparse_initializer):
        defined |= {i.name for i in g.sparse_initializer}
    nodes = node_fields(g)
    issubset = defined.issuperset
    update = defined.update
    for node in nodes:
        if not issubset(node.ins):
            name = next(x for x in node.ins if x not in defined)
            raise GraphLoadError(
                f"{what}: node {node.name or node.op_type!r} reads tensor {name!r} that is never "
                "produced (a truncated or invalid graph, or nodes not in topological order). "
                "Re-export the model, or run onnx.checker.check_model on it to locate the problem."
            )
        update(node.outs)
    return nodes


def _graph_inputs(model: onnx.ModelProto, inits: Any = None) -> list[tuple[str, onnx.ValueInfoProto]]:
    if inits is None:
        inits = {i.name for i in model.graph.initializer}
    return _non_init_inputs(model.graph, inits)


class Binding(NamedTuple):
    """Result of :func:`bind_input_dims`: the concrete input shapes, and where the batch went.

    ``batch_positions`` maps input name -> dim positions that took ``batch_size`` (an unnamed/symbolic
    first dim not given in ``dims``, and every other occurrence of the same symbol).
    """

    shapes: dict[str, list[int]]
    batch_positions: dict[str, tuple[int, ...]]
    batch_size: int = 1
    """The training batch: the ``batch_size`` given, else the value ``dims`` binds the batch axis to, else 1."""


def bind_dims(
    model: onnx.ModelProto,
    *,
    batch_size: int,
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, Any] | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
) -> dict[str, list[int]]:
    """Make every graph-input dim concrete, in place. Returns ``{input name: shape}``.

    Order: ``input_shapes[name]`` replaces the whole shape; otherwise a symbolic dim takes
    ``dims[dim_param]``; an unnamed/symbolic first dim not in ``dims`` is the batch dim
    (``batch_size``). The bound symbol values are also substituted in outputs and value_info.
    ``skip``: inputs that carry weights (bound from their declared shape, never the batch).
    """
    return bind_input_dims(
        model, batch_size=batch_size, dims=dims, input_shapes=input_shapes, skip=skip
    ).shapes


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
    """:func:`bind_dims`, also reporting which input dims were bound to ``batch_size``.

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
    symbols: dict[str, int] = {}
    for k, v in dims.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise InvalidInputError(f"dims[{k!r}] must be a positive int, got {v!r}.")
        symbols[k] = v
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
            shape = [int(d) for d in input_shapes[vi.name]]
            if any(d <= 0 for d in shape):
                raise InvalidInputError(f"input_shapes[{vi.name!r}] = {shape} must have positive dims.")
            tt.shape.ClearField("dim")
            for d in shape:
                tt.shape.dim.add().dim_value = d
            bound[vi.name] = shape
            continue
        shape = []
        at_batch = []
        for pos, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
                continue
            sym = d.dim_param if d.HasField("dim_param") else ""
            if sym and sym in symbols:
                value = symbols[sym]
                if sym in batch_symbols:
                    at_batch.append(pos)
            elif pos == 0 and vi.name not in skip:
                value = batch_size
                at_batch.append(pos)
                if sym:
                    symbols[sym] = batch_size
                    batch_symbols.add(sym)
            else:
                raise _unbound(vi.name, sym, pos, symbols)
            d.Clear()
            d.dim_value = value
            shape.append(value)
        bound[vi.name] = shape
        if at_batch:
            batch_positions[vi.name] = tuple(at_batch)
    if symbols:
        for vi in list(model.graph.output) + list(model.graph.value_info):
            if vi.type.HasField("tensor_type"):
                for d in vi.type.tensor_type.shape.dim:
                    if d.HasField("dim_param") and d.dim_param in symbols:
                        value = symbols[d.dim_param]
                        d.Clear()
                        d.dim_value = value
    return Binding(bound, batch_positions, batch_size)


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


def _shape_of(vi: onnx.ValueInfoProto) -> tuple[tuple[int, ...] | None, int]:
    return _type_shape(vi.type)


def _type_shape(tp: onnx.TypeProto) -> tuple[tuple[int, ...] | None, int]:
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
    """:func:`_shape_of` of every value info in ``vis`` into ``shapes``, unless a known shape is there.

    Bulk version of :func:`_shape_of` (the hot path of shape extraction): a non-empty shape whose
    dims are all positive takes one pass over the dims; anything else goes through :func:`_shape_of`.
    """
    get = shapes.get
    for vi in vis:
        name = vi.name
        if get(name, _NO_SHAPE)[0] is not None:
            continue
        tt = vi.type.tensor_type
        out = tuple([d.dim_value for d in tt.shape.dim])
        if out and min(out) > 0:
            shapes[name] = (out, tt.elem_type)
        else:
            shapes[name] = _shape_of(vi)


def _lite_graph_class():
    """A message class reading only what shape extraction needs from a serialized ``ModelProto``: the
    graph's inputs, value_info and outputs as ``(name, serialized TypeProto)`` (same field numbers as
    onnx.proto; everything else stays unparsed). Built once from a descriptor, no .proto file."""
    global _LITE_MODEL
    if _LITE_MODEL is None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        F = descriptor_pb2.FieldDescriptorProto
        fdp = descriptor_pb2.FileDescriptorProto(name="joulecast_featurize_lite.proto", package="joulecast_lite")

        def message(name, fields):
            msg = fdp.message_type.add(name=name)
            for fname, number, ftype, label, tname in fields:
                field = msg.field.add(name=fname, number=number, type=ftype, label=label)
                if tname:
                    field.type_name = tname

        opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
        message("ValueInfo", [("name", 1, F.TYPE_STRING, opt, ""), ("type", 2, F.TYPE_BYTES, opt, "")])
        vi = ".joulecast_lite.ValueInfo"
        message("Graph", [("input", 11, F.TYPE_MESSAGE, rep, vi), ("output", 12, F.TYPE_MESSAGE, rep, vi),
                          ("value_info", 13, F.TYPE_MESSAGE, rep, vi)])
        message("Model", [("graph", 7, F.TYPE_MESSAGE, opt, ".joulecast_lite.Graph")])
        pool = descriptor_pool.DescriptorPool()
        pool.Add(fdp)
        _LITE_MODEL = message_factory.GetMessageClass(pool.FindMessageTypeByName("joulecast_lite.Model"))
    return _LITE_MODEL


_LITE_MODEL = None


def _shapes_from_bytes(model_bytes: bytes, shapes: ShapeMap) -> None:
    """:func:`_shapes_into` over the inputs, value_info and outputs of a serialized ``ModelProto``, without
    building the full message: each value info is read as (name, TypeProto bytes), and each distinct
    TypeProto is decoded once (most tensors share a few shapes)."""
    g = _lite_graph_class().FromString(model_bytes).graph
    by_type: dict[bytes, tuple[tuple[int, ...] | None, int]] = {}
    get = shapes.get
    from_string = onnx.TypeProto.FromString
    for vis in (g.input, g.value_info, g.output):
        for vi in vis:
            name = vi.name
            if get(name, _NO_SHAPE)[0] is not None:
                continue
            tb = vi.type
            entry = by_type.get(tb)
            if entry is None:
                entry = by_type[tb] = _type_shape(from_string(tb))
            shapes[name] = entry


def resolve_shapes(
    model: onnx.ModelProto,
    *,
    batch_positions: Mapping[str, tuple[int, ...]] | None = None,
    nodes: list[NodeFields] | None = None,
    initializers: InitShapes | None = None,
    known_inputs: InitShapes | None = None,
) -> ShapeMap:
    """Shapes of every tensor, without ever executing the graph.

    1. numpy folding of small all-constant (shape) subgraphs (:mod:`featurize.fold`, size-capped);
    2. strict ONNX shape inference on the folded model: plain (no data propagation), unless ``Shape`` /
       ``Size`` nodes are left unfolded (their input's shape comes from inference, as in dynamo exports'
       Shape -> Slice -> Concat -> Reshape chains): then with data propagation at once, which resolves
       those chains in the same pass instead of a second one;
    3. only while shapes stay unknown: fold again with the shapes now known (``Shape`` of inferred
       tensors) and re-infer with data propagation, up to :data:`_MAX_FOLD_ROUNDS` times;
    4. then onnxruntime's ``SymbolicShapeInference`` (symbolic, no execution).

    Whatever stays unknown is left ``None`` in the map (the featurizer states it in its warnings).
    ``nodes`` / ``initializers``: the graph's :func:`node_fields` and initializer shapes when the
    caller already has them (:func:`load_graph`). ``known_inputs``: ``{name: (shape, elem_type)}`` of
    graph inputs whose (bound) shape the caller knows. ``batch_positions`` is accepted for
    compatibility and unused (no run at a reduced batch any more).
    """
    if nodes is None:
        nodes = node_fields(model.graph)
    if initializers is None:
        initializers = {init.name: (tuple(init.dims), init.data_type) for init in model.graph.initializer}
    shapes: ShapeMap = dict(initializers)
    if known_inputs:
        for name, entry in known_inputs.items():
            shapes.setdefault(name, entry)
    _bind_input_shapes(model, shapes)
    _drop_symbolic_value_info(model.graph)
    values = initializer_values(model.graph)
    folded = _fold_into(nodes, shapes, values, {})
    _infer_into(model, nodes, folded, shapes, data_prop=_shape_reads_left(nodes, folded))
    check_shapes(shapes)  # caps before anything is sized from the inferred shapes (limits)
    missing = _missing(nodes, model.graph, shapes)
    for _ in range(_MAX_FOLD_ROUNDS):
        if not missing:
            break
        before = len(folded)
        _fold_into(nodes, shapes, values, folded)
        _infer_into(model, nodes, folded, shapes, data_prop=True)
        check_shapes(shapes)
        progress = len(folded) > before
        left = _missing(nodes, model.graph, shapes)
        if not progress or len(left) == len(missing):
            missing = left
            break
        missing = left
    if missing:
        missing = _symbolic_fill(_with_constants(model, nodes, folded), shapes, missing)
    if missing:
        _rejoined_sequences(nodes, shapes)
    return shapes


def _shape_reads_left(nodes: list[NodeFields], folded: dict) -> bool:
    """Whether a ``Shape`` / ``Size`` node stayed unfolded (plain inference leaves its readers unknown)."""
    return any(n.op_type in _SHAPE_READS and n.outs and n.outs[0] not in folded for n in nodes)


_SHAPE_READS = frozenset({"Shape", "Size"})


def _rejoined_sequences(nodes: list[NodeFields], shapes: ShapeMap) -> None:
    """``ConcatFromSequence`` of a ``SplitToSequence`` along the same axis (no new axis) has the split
    tensor's shape: ONNX inference cannot count the sequence's elements."""
    split_of = {n.outs[0]: n for n in nodes if n.op_type == "SplitToSequence" and n.outs}
    for n in nodes:
        if n.op_type != "ConcatFromSequence" or not n.outs or shapes.get(n.outs[0], _NO_SHAPE)[0] is not None:
            continue
        src = split_of.get(n.ins[0])
        if src is None:
            continue
        a, b = _int_attrs(n.proto), _int_attrs(src.proto)
        x_shape, elem = shapes.get(src.ins[0], _NO_SHAPE)
        if x_shape is None or a.get("new_axis", 0) or a.get("axis") is None:
            continue
        if a["axis"] % len(x_shape) == b.get("axis", 0) % len(x_shape):
            shapes[n.outs[0]] = (x_shape, elem)


def _int_attrs(proto: onnx.NodeProto) -> dict[str, int]:
    return {a.name: a.i for a in proto.attribute if a.type == onnx.AttributeProto.INT}


# Fold/re-infer rounds while shapes stay unknown (each round resolves one more level of
# Shape -> ... -> Reshape/Expand chains whose input shapes the previous inference found).
_MAX_FOLD_ROUNDS = 4


def _bind_input_shapes(model: onnx.ModelProto, shapes: ShapeMap) -> None:
    """The (bound) shapes of the graph inputs into ``shapes`` (what the first fold's ``Shape`` nodes read)."""
    _shapes_into(model.graph.input, shapes)


def _drop_symbolic_value_info(graph: onnx.GraphProto) -> None:
    """Remove the value_info entries that still carry a symbolic dim after binding (exporter symbols
    such as dynamo's ``s43`` for a sliced length): inference would keep them instead of the value it
    computes from the bound inputs and the folded constants."""
    vis = graph.value_info
    keep = [vi for vi in vis if not any(d.HasField("dim_param") for d in vi.type.tensor_type.shape.dim)]
    if len(keep) != len(vis):
        del vis[:]
        vis.extend(keep)


def _fold_into(nodes: list[NodeFields], shapes: ShapeMap, values: dict, folded: dict) -> dict:
    """:func:`~featurize.fold.fold_constants` with the shapes known now; the new folded outputs go
    into ``folded`` (returned) and their shapes into ``shapes``."""
    new = fold_constants(nodes, shapes, values)
    for name, arr in new.items():
        folded[name] = arr
        shapes[name] = (tuple(arr.shape), _np_elem(arr.dtype))
    return folded


def _np_elem(dtype: Any) -> int:
    try:
        return onnx.helper.np_dtype_to_tensor_dtype(dtype)
    except Exception:  # noqa: BLE001 - numpy types without an ONNX twin
        return 0


def _infer_into(
    model: onnx.ModelProto, nodes: list[NodeFields], folded: dict, shapes: ShapeMap, *, data_prop: bool
) -> None:
    """Shape inference on ``model`` with the ``folded`` node outputs as initializers; the shapes it
    finds go into ``shapes`` (entries still unknown are refreshed)."""
    _shapes_from_bytes(_infer_bytes(_with_constants(model, nodes, folded), data_prop=data_prop), shapes)


def _with_constants(model: onnx.ModelProto, nodes: list[NodeFields], folded: dict) -> onnx.ModelProto:
    """A copy of ``model`` whose folded shape nodes (all outputs folded integer/bool tensors: shape
    data; ``Constant`` nodes aside) are replaced by initializers holding their values; ``model`` itself
    when there are none. Folded float tensors (weights some graphs build with ``ConstantOfShape``)
    stay produced by their nodes."""
    drop = [
        i for i, n in enumerate(nodes)
        if n.op_type != "Constant" and n.outs and all(o in folded and folded[o].dtype.kind in "biu" for o in n.outs if o)
    ]
    if not drop:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dropped = set(drop)
    keep = [n for i, n in enumerate(m.graph.node) if i not in dropped]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    from_array = onnx.numpy_helper.from_array
    m.graph.initializer.extend(
        [from_array(folded[o], o) for i in drop for o in nodes[i].outs if o and o in folded]
    )
    return m


def _missing(nodes: list[NodeFields], g: onnx.GraphProto, shapes: ShapeMap) -> list[str]:
    """Node outputs of unknown shape that matter: read by a node or graph outputs (e.g. Dropout's
    unused mask is skipped)."""
    unknown = [
        o for n in nodes if n.op_type not in _SEQUENCE_OPS for o in n.outs if shapes.get(o, _NO_SHAPE)[0] is None
    ]
    if not unknown:
        return []
    used = {x for n in nodes for x in n.ins} | {o.name for o in g.output}
    return [o for o in unknown if o in used]


_NO_SHAPE = (None, 0)
# Ops whose outputs are sequences of tensors: they have no single shape to resolve (the tensors read
# out of them, e.g. by SequenceAt, are resolved like any other).
_SEQUENCE_OPS = frozenset({"SplitToSequence", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SequenceEmpty"})


def _symbolic_fill(model: onnx.ModelProto, shapes: ShapeMap, missing: list[str]) -> list[str]:
    """Fill what onnxruntime's symbolic shape inference resolves (it never executes the graph);
    returns the names still unknown. Best effort: any failure leaves ``shapes`` unchanged."""
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        m = onnx.ModelProto()
        m.CopyFrom(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = _symbolic_infer(SymbolicShapeInference, m)
    except Exception:  # noqa: BLE001 - an optional second opinion; the caller falls back
        return missing
    if out is None:
        return missing
    want = set(missing)
    for vi in list(out.graph.value_info) + list(out.graph.output):
        if vi.name in want:
            shape, elem = _shape_of(vi)
            if shape is not None:
                shapes[vi.name] = (shape, shapes.get(vi.name, (None, 0))[1] or elem)
    return [o for o in missing if shapes.get(o, (None, 0))[0] is None]


def _symbolic_infer(cls, m: onnx.ModelProto) -> onnx.ModelProto | None:
    """Run onnxruntime's symbolic inference and keep what it resolved even when incomplete.

    ``SymbolicShapeInference.infer_shapes`` drops partial results and, on an incomplete pass, saves
    ``sym_shape_infer_temp.onnx`` into the caller's working directory; a library must do neither, so
    this drives the same steps itself (falling back to the public call inside a temporary directory
    if a future onnxruntime renames them).
    """
    steps = ("_preprocess", "_infer_impl", "_update_output_from_vi")
    ssi = cls(2**31 - 1, False, False, 0)
    if not all(hasattr(ssi, s) for s in steps) or not hasattr(ssi, "run_"):
        import contextlib
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
            return cls.infer_shapes(m, auto_merge=False, guess_output_rank=False)
    if not any(o.domain in ("", "ai.onnx") and o.version >= 7 for o in m.opset_import):
        return None
    ssi._preprocess(m)
    while ssi.run_:
        ssi._infer_impl()
    ssi._update_output_from_vi()
    return ssi.out_mp_


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """:func:`_infer_bytes`, parsed."""
    return onnx.load_from_string(_infer_bytes(model))


def _infer_bytes(model: onnx.ModelProto, data_prop: bool = True) -> bytes:
    """Strict inference (the serialized inferred model: its caller reads only the shapes); on failure
    retry without the declared (maybe stale) output shapes, then non-strict (some onnx function-op
    bodies fail strict mode). Raises the first strict error if all fail, or when the non-strict pass
    is the only one that works and leaves shapes unknown."""
    infer = _c_infer_shapes
    try:
        return infer(model.SerializeToString(), True, True, data_prop)  # check_type, strict_mode, data_prop
    except Exception as err:  # InferenceError, ValidationError, ...
        first = err
    del model.graph.value_info[:]
    for vi in model.graph.output:  # exported at another batch size: let inference recompute them
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    try:
        return infer(model.SerializeToString(), True, True, data_prop)
    except Exception:  # noqa: BLE001
        pass
    try:
        inferred_bytes = infer(model.SerializeToString(), False, False, data_prop)
    except Exception:  # noqa: BLE001
        inferred_bytes = None
    if inferred_bytes is not None:
        inferred = onnx.load_from_string(inferred_bytes)
        known = {vi.name for vi in inferred.graph.value_info} | {vi.name for vi in inferred.graph.output}
        if all(o in known for n in inferred.graph.node for o in n.output if o):
            warnings.warn(f"strict ONNX shape inference failed ({first}); used non-strict inference.", stacklevel=4)
            return inferred_bytes
    raise GraphLoadError(
        f"ONNX shape inference failed: {first}. The graph is invalid for the bound input shapes; check "
        "input_shapes=/dims=/batch_size (a graph exported with a fixed batch may need input_shapes "
        "matching it) or re-export the model."
    ) from first


def _c_infer_shapes(model_bytes: bytes, check_type: bool, strict_mode: bool, data_prop: bool) -> bytes:
    """onnx's C++ shape inference, serialized model in and out (``onnx.shape_inference.infer_shapes``
    without its Python-side parse of the result; that public call when the binding is absent)."""
    if _C_INFER is not None:
        return _C_INFER(model_bytes, check_type, strict_mode, data_prop)
    return onnx.shape_inference.infer_shapes(
        model_bytes, check_type=check_type, strict_mode=strict_mode, data_prop=data_prop
    ).SerializeToString()


try:
    from onnx.onnx_cpp2py_export.shape_inference import infer_shapes as _C_INFER
except ImportError:  # pragma: no cover - a future onnx moving its binding
    _C_INFER = None
