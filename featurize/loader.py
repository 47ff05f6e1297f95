"""Load, validate and shape-resolve an ONNX graph without reading its weights.

Public entry points: :func:`load_model` (path / bytes / ``ModelProto`` -> ``ModelProto``),
:func:`bind_dims` (symbolic input dims -> concrete values), :func:`resolve_shapes` (strict ONNX shape
inference with data propagation, falling back to onnxruntime on dummy inputs only for tensors whose
shape stays unknown). Everything raises the project's own errors (:mod:`featurize.errors`).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import onnx
from onnx import TensorProto

from featurize.errors import GraphLoadError, InvalidInputError, UnboundDimensionError

__all__ = ["load_model", "bind_dims", "resolve_shapes", "ShapeMap"]

# tensor name -> (shape or None when unknown, ONNX elem_type)
ShapeMap = dict[str, tuple[tuple[int, ...] | None, int]]

_FIX_LOAD = "pass a path to an existing .onnx file, the file's bytes, an onnx.ModelProto or a torch.nn.Module"


def load_model(source: Any) -> onnx.ModelProto:
    """Read ``source`` (path, bytes or ModelProto) into a ModelProto we may mutate, without weights."""
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        _strip_weight_data(model)
        what = "the given ModelProto"
    elif isinstance(source, (bytes, bytearray, memoryview)):
        model = _parse(bytes(source), "the given bytes")
        what = "the given bytes"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise GraphLoadError(f"ONNX file not found: {str(path)!r}; check the path ({_FIX_LOAD}).")
        model = _parse(path.read_bytes(), repr(str(path)))
        what = repr(str(path))
    else:
        raise InvalidInputError(f"cannot featurize an object of type {type(source).__name__}; {_FIX_LOAD}.")
    _validate(model, what)
    if model.functions:
        try:
            model = onnx.inliner.inline_local_functions(model)
        except Exception as err:  # noqa: BLE001 - any inliner failure is a load problem
            raise GraphLoadError(f"could not inline the local functions of {what}: {err}") from err
    return model


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


def _strip_weight_data(model: onnx.ModelProto) -> None:
    """Drop large initializer payloads (dims are kept) so copies and shape inference stay cheap."""
    for init in model.graph.initializer:
        if math.prod(init.dims) > 1024 and init.data_location != TensorProto.EXTERNAL:
            init.ClearField("raw_data")
            for f in ("float_data", "double_data", "int32_data", "int64_data"):
                init.ClearField(f)


def _validate(model: onnx.ModelProto, what: str) -> None:
    """Cheap structural check: a graph with nodes, every node input defined before use."""
    g = model.graph
    if not model.HasField("graph") or len(g.node) == 0 or model.ir_version <= 0:
        raise GraphLoadError(
            f"{what} does not contain an ONNX graph with nodes (not an ONNX model, or truncated). "
            "Re-export it and pass the complete .onnx file."
        )
    defined = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    defined |= {i.name for i in g.sparse_initializer}
    for node in g.node:
        for name in node.input:
            if name not in defined:
                raise GraphLoadError(
                    f"{what}: node {node.name or node.op_type!r} reads tensor {name!r} that is never "
                    "produced (a truncated or invalid graph, or nodes not in topological order). "
                    "Re-export the model, or run onnx.checker.check_model on it to locate the problem."
                )
        defined.update(node.output)


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


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
    dims = dict(dims or {})
    input_shapes = dict(input_shapes or {})
    inputs = _graph_inputs(model)
    names = [i.name for i in inputs]
    unknown = sorted(set(input_shapes) - set(names))
    if unknown:
        raise InvalidInputError(f"input_shapes names unknown graph input(s) {unknown}; the inputs are {names}.")
    symbols: dict[str, int] = {}
    for k, v in dims.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise InvalidInputError(f"dims[{k!r}] must be a positive int, got {v!r}.")
        symbols[k] = v
    bound: dict[str, list[int]] = {}
    for vi in inputs:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
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
        for pos, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
                continue
            sym = d.dim_param if d.HasField("dim_param") else ""
            if sym and sym in symbols:
                value = symbols[sym]
            elif pos == 0 and vi.name not in skip:
                value = batch_size
                if sym:
                    symbols[sym] = batch_size
            else:
                label = repr(sym) if sym else f"(unnamed dim {pos})"
                fix = f"dims={{{sym!r}: N}}" if sym else f"input_shapes={{{vi.name!r}: [...]}}"
                raise UnboundDimensionError(
                    f"graph input {vi.name!r} has symbolic dimension {label} at position {pos} with no "
                    f"value; bind it with {fix} (or give the whole shape with input_shapes=)."
                )
            d.Clear()
            d.dim_value = value
            shape.append(value)
        bound[vi.name] = shape
    if symbols:
        for vi in list(model.graph.output) + list(model.graph.value_info):
            if vi.type.HasField("tensor_type"):
                for d in vi.type.tensor_type.shape.dim:
                    if d.HasField("dim_param") and d.dim_param in symbols:
                        value = symbols[d.dim_param]
                        d.Clear()
                        d.dim_value = value
    return bound


def _shape_of(vi: onnx.ValueInfoProto) -> tuple[tuple[int, ...] | None, int]:
    if not vi.type.HasField("tensor_type"):
        return None, 0
    tt = vi.type.tensor_type
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


def resolve_shapes(model: onnx.ModelProto) -> ShapeMap:
    """Shapes of every tensor: strict shape inference + data propagation, then onnxruntime if needed."""
    inferred = _infer(model)
    g = inferred.graph
    shapes: ShapeMap = {}
    for init in g.initializer:
        shapes[init.name] = (tuple(int(d) for d in init.dims), init.data_type)
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.name not in shapes or shapes[vi.name][0] is None:
            shapes[vi.name] = _shape_of(vi)
    # Only tensors something reads (or graph outputs) matter; e.g. Dropout's unused mask is skipped.
    used = {x for n in g.node for x in n.input} | {o.name for o in g.output}
    missing = [o for n in g.node for o in n.output if o in used and shapes.get(o, (None, 0))[0] is None]
    if missing:
        _ort_fallback(model, shapes, missing)
    return shapes


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strict inference; on failure retry without the declared (maybe stale) output shapes, then
    non-strict (some onnx function-op bodies fail strict mode). Raises the first strict error if all
    fail, or when the non-strict pass is the only one that works and leaves shapes unknown."""
    infer = onnx.shape_inference.infer_shapes
    try:
        return infer(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as err:  # InferenceError, ValidationError, ...
        first = err
    del model.graph.value_info[:]
    for vi in model.graph.output:  # exported at another batch size: let inference recompute them
        if vi.type.HasField("tensor_type"):
            vi.type.tensor_type.ClearField("shape")
    try:
        return infer(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception:  # noqa: BLE001
        pass
    try:
        inferred = infer(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001
        inferred = None
    if inferred is not None:
        known = {vi.name for vi in inferred.graph.value_info} | {vi.name for vi in inferred.graph.output}
        if all(o in known for n in inferred.graph.node for o in n.output if o):
            warnings.warn(f"strict ONNX shape inference failed ({first}); used non-strict inference.", stacklevel=4)
            return inferred
    raise GraphLoadError(
        f"ONNX shape inference failed: {first}. The graph is invalid for the bound input shapes; check "
        "input_shapes=/dims=/batch_size (a graph exported with a fixed batch may need input_shapes "
        "matching it) or re-export the model."
    ) from first


def _dummy_value(vi: onnx.ValueInfoProto):
    import numpy as np

    shape, elem = _shape_of(vi)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem or TensorProto.FLOAT)
    if np.issubdtype(dtype, np.integer):
        return np.ones(shape or (), dtype=dtype)  # 1s: valid as indices and as sizes
    return np.zeros(shape or (), dtype=dtype)


def _ort_fallback(model: onnx.ModelProto, shapes: ShapeMap, missing: list[str]) -> None:
    """Run onnxruntime on dummy inputs to measure the shapes static inference left unknown."""
    import numpy as np

    try:
        import onnxruntime as ort

        m = onnx.ModelProto()
        m.CopyFrom(model)
        for init in m.graph.initializer:  # weights are absent: fill with zeros of the right shape
            if init.data_location == TensorProto.EXTERNAL or not (
                init.raw_data or init.float_data or init.int64_data or init.int32_data or init.double_data
            ):
                dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
                filled = onnx.numpy_helper.from_array(np.zeros(tuple(init.dims), dtype=dtype), init.name)
                init.CopyFrom(filled)
        known = {o.name for o in m.graph.output}
        for name in missing:
            if name not in known:
                m.graph.output.add().name = name
        inits = {i.name for i in m.graph.initializer}
        feeds = {vi.name: _dummy_value(vi) for vi in m.graph.input if vi.name not in inits}
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        for name, value in zip(names, sess.run(names, feeds)):
            if name in missing:
                elem = shapes.get(name, (None, 0))[1] or onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
                shapes[name] = (tuple(int(d) for d in value.shape), elem)
    except Exception as err:  # noqa: BLE001 - fallback is best effort; the caller warns about unknowns
        warnings.warn(
            f"{len(missing)} tensor shape(s) stay unknown after shape inference and the onnxruntime "
            f"fallback failed ({type(err).__name__}: {err}); nodes touching them are costed from the "
            "known shapes only.",
            stacklevel=3,
        )
