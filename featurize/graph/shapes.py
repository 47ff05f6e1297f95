"""Every tensor's shape without running the graph: constant folding with numpy, then ONNX's strict shape inference
(isolated when asked), a symbolic fallback, and the graph's own value_info."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import onnx

from featurize.errors import GraphLoadError, JoulecastError
from featurize.graph import isolated_inference
from featurize.graph.bind import bind_input_shapes, type_shape
from featurize.graph.fold import fold_constants, initializer_values
from featurize.graph.limits import check_shapes
from featurize.graph.load import NO_SHAPE, InitShapes, NodeFields, ShapeMap, node_fields
from featurize.graph.propagation import big_1d, data_prop_plan, inference_copy


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
            if get(name, NO_SHAPE)[0] is not None:
                continue
            tb = vi.type
            entry = by_type.get(tb)
            if entry is None:
                entry = by_type[tb] = type_shape(from_string(tb))
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

    1. numpy folding of small all-constant (shape) subgraphs (:mod:`featurize.graph.fold`, size-capped);
    2. strict ONNX shape inference on the folded model: plain (no data propagation), unless ``Shape`` /
       ``Size`` nodes are left unfolded (their input's shape comes from inference, as in dynamo exports'
       Shape -> Slice -> Concat -> Reshape chains): then with data propagation at once, which resolves
       those chains in the same pass instead of a second one;
    3. only while shapes stay unknown: fold again with the shapes now known (``Shape`` of inferred
       tensors) and re-infer with data propagation, up to :data:`_MAX_FOLD_ROUNDS` times.

    Every data-propagation pass runs on a copy without the large 1-D tensors and what reads them
    (:func:`featurize.graph.propagation.inference_copy`), so that its work stays bounded; when the graph has such
    tensors the first pass is plain, and a plain pass after the rounds sizes what was cut.
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
    bind_input_shapes(model, shapes)
    _drop_symbolic_value_info(model.graph)
    values = initializer_values(model.graph)
    folded = _fold_into(nodes, shapes, values, {})
    # one pass with data propagation when Shape reads are left, unless big 1-D tensors would be cut from it:
    # then a plain pass first, so that the cut follows known ranks (featurize.graph.propagation)
    big = big_1d([vi.name for vi in model.graph.input if vi.name not in initializers], shapes)  # a 2^31-long input
    plan = data_prop_plan(nodes, folded, shapes, values, big) if _shape_reads_left(nodes, folded) else None
    first_dp = plan is not None and not plan[2]
    cut: list[str] = []
    _infer_into(model, nodes, folded, shapes, values, data_prop=first_dp, cut=cut, plan=plan if first_dp else None)
    check_shapes(shapes)  # caps before anything is sized from the inferred shapes (limits)
    missing = _missing(nodes, model.graph, shapes)
    for _ in range(_MAX_FOLD_ROUNDS):
        if not missing:
            break
        before = len(folded)
        _fold_into(nodes, shapes, values, folded)
        _infer_into(model, nodes, folded, shapes, values, data_prop=True, cut=cut, big_inputs=big)
        check_shapes(shapes)
        progress = len(folded) > before
        left = _missing(nodes, model.graph, shapes)
        if not progress or len(left) == len(missing):
            missing = left
            break
        missing = left
    if missing and cut:  # what data propagation was not shown: sized by a plain pass
        _infer_into(model, nodes, folded, shapes, values, data_prop=False)
        check_shapes(shapes)
        missing = _missing(nodes, model.graph, shapes)
    if missing:
        copy = inference_copy(model, nodes, folded, shapes, data_prop=True, values=values, big_inputs=big)
        missing = _symbolic_fill(copy, shapes, missing)
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
        if n.op_type != "ConcatFromSequence" or not n.outs or shapes.get(n.outs[0], NO_SHAPE)[0] is not None:
            continue
        src = split_of.get(n.ins[0])
        if src is None:
            continue
        a, b = _int_attrs(n.proto), _int_attrs(src.proto)
        x_shape, elem = shapes.get(src.ins[0], NO_SHAPE)
        if x_shape is None or a.get("new_axis", 0) or a.get("axis") is None:
            continue
        if a["axis"] % len(x_shape) == b.get("axis", 0) % len(x_shape):
            shapes[n.outs[0]] = (x_shape, elem)


def _int_attrs(proto: onnx.NodeProto) -> dict[str, int]:
    return {a.name: a.i for a in proto.attribute if a.type == onnx.AttributeProto.INT}


# Fold/re-infer rounds while shapes stay unknown (each round resolves one more level of
# Shape -> ... -> Reshape/Expand chains whose input shapes the previous inference found).
_MAX_FOLD_ROUNDS = 4


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
    """:func:`~featurize.graph.fold.fold_constants` with the shapes known now; the new folded outputs go
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
    model: onnx.ModelProto, nodes: list[NodeFields], folded: dict, shapes: ShapeMap, values: dict, *, data_prop: bool,
    cut: list[str] | None = None, plan: tuple | None = None, big_inputs: list[str] | tuple = (),
) -> None:
    """Shape inference on ``model`` with the ``folded`` node outputs as initializers (``values``: every constant
    known, initializers included); the shapes it finds go into ``shapes`` (entries still unknown are refreshed).
    ``cut``: gets the names kept out of a data-propagation pass (:func:`~featurize.graph.propagation.inference_copy`)."""
    copy = inference_copy(model, nodes, folded, shapes, data_prop=data_prop, values=values, cut=cut, plan=plan,
                          big_inputs=big_inputs)  # no big 1-D values (propagation)
    _shapes_from_bytes(_infer_bytes(copy, data_prop=data_prop), shapes)


def _missing(nodes: list[NodeFields], g: onnx.GraphProto, shapes: ShapeMap) -> list[str]:
    """Node outputs of unknown shape that matter: read by a node or graph outputs (e.g. Dropout's
    unused mask is skipped)."""
    unknown = [
        o for n in nodes if n.op_type not in _SEQUENCE_OPS for o in n.outs if shapes.get(o, NO_SHAPE)[0] is None
    ]
    if not unknown:
        return []
    used = {x for n in nodes for x in n.ins} | {o.name for o in g.output}
    return [o for o in unknown if o in used]


# Ops whose outputs are sequences of tensors: they have no single shape to resolve (the tensors read
# out of them, e.g. by SequenceAt, are resolved like any other).
_SEQUENCE_OPS = frozenset({"SplitToSequence", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SequenceEmpty"})


def _symbolic_fill(model: onnx.ModelProto, shapes: ShapeMap, missing: list[str]) -> list[str]:
    """Fill what onnxruntime's symbolic shape inference resolves (it never executes the graph);
    returns the names still unknown. Best effort: any failure (a time or memory limit of the isolated
    runner included: :mod:`featurize.graph.isolated_inference`) leaves ``shapes`` unchanged."""
    try:
        found = isolated_inference.run("symbolic", (model.SerializeToString(), missing))
    except Exception:  # noqa: BLE001 - an optional second opinion; the caller falls back
        return missing
    for name, (shape, elem) in found.items():
        shapes[name] = (shape, shapes.get(name, (None, 0))[1] or elem)
    return [o for o in missing if shapes.get(o, (None, 0))[0] is None]


def _infer_bytes(model: onnx.ModelProto, data_prop: bool = True) -> bytes:
    """Strict inference (the serialized inferred model: its caller reads only the shapes); on failure
    retry without the declared (maybe stale) output shapes, then non-strict (some onnx function-op
    bodies fail strict mode). Raises the first strict error if all fail, or when the non-strict pass
    is the only one that works and leaves shapes unknown."""
    infer = _c_infer_shapes
    try:
        return infer(model.SerializeToString(), True, True, data_prop)  # check_type, strict_mode, data_prop
    except JoulecastError:  # a limit of the isolated runner: retrying would only hit it again
        raise
    except Exception as err:  # InferenceError, ValidationError, ...
        first = err
    del model.graph.value_info[:]
    for vi in model.graph.output:  # exported at another batch size: let inference recompute them
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    try:
        return infer(model.SerializeToString(), True, True, data_prop)
    except JoulecastError:
        raise
    except Exception:  # noqa: BLE001
        pass
    try:
        inferred_bytes = infer(model.SerializeToString(), False, False, data_prop)
    except JoulecastError:
        raise
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
    """onnx's C++ shape inference, serialized model in and out, in this process or through the runner the
    caller installed (:mod:`featurize.graph.isolated_inference`: ``predict`` runs it under a time limit)."""
    return isolated_inference.run("c_infer", (model_bytes, check_type, strict_mode, data_prop))
