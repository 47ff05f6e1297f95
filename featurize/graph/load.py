"""Load and validate an ONNX graph without reading its weights.

Public entry point: :func:`load_graph` (path / bytes / ``ModelProto`` -> a mutable weightless ``ModelProto`` plus
node fields, initializer and static input shapes, each read once). Binding symbolic dims is
:mod:`featurize.graph.bind`, resolving shapes :mod:`featurize.graph.shapes` (the graph is never executed).
Everything raises the project's own errors (:mod:`featurize.errors`).
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import onnx
import onnx.inliner  # a submodule `import onnx` does not load (graphs with local functions need it)
from onnx import TensorProto

from featurize.errors import GraphLoadError, InvalidInputError
from featurize.graph.limits import check_path, read_model_file

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


def load_graph(source: Any) -> LoadedGraph:
    """Read ``source`` (path, bytes or ModelProto) into a validated, inlined ModelProto we may mutate, without
    weights, with its node fields and initializer shapes (see :class:`LoadedGraph`)."""
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
    inputs = non_init_inputs(model.graph, inits)
    nodes = _validate(model, what, inits, [name for name, _ in inputs])
    if model.functions:
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as err:  # noqa: BLE001 - any inliner failure is a load problem
            raise GraphLoadError(f"could not inline the local functions of {what}: {err}") from err
        nodes = node_fields(model.graph)
        inits = {i.name: (tuple(i.dims), i.data_type) for i in model.graph.initializer}
        inputs = non_init_inputs(model.graph, inits)  # the inlined model's own protos
    return LoadedGraph(model, nodes, inits, _static_inputs(inputs), inputs, tied)


def non_init_inputs(graph: onnx.GraphProto, inits: Any) -> list[tuple[str, onnx.ValueInfoProto]]:
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
    """``{copy: original}`` that the torch exporter recorded (``featurize.graph.torch_export.TIED_KEY``): parameters
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
        if type(node.op_type) is not str or type(node.name) is not str or type(node.domain) is not str:
            raise GraphLoadError(  # protobuf hands back bytes for a string field that is not valid UTF-8
                f"{what}: node {node.name!r} has an op type, name or domain that is not valid UTF-8 text "
                f"({node.op_type!r}); the file is corrupt: re-export the model.")
    if any(type(x) is not str for x in defined):
        bad = next(x for x in defined if type(x) is not str)
        raise GraphLoadError(f"{what}: tensor name {bad!r} is not valid UTF-8 text; the file is corrupt: re-export "
                             "the model.")
    return nodes


NO_SHAPE = (None, 0)
