"""Resource bounds checked before any heavy step: files before they are read, graphs before shapes are
propagated, attributes before they are costed. Every refusal is one of the project's errors naming the fix.

Public entry points (hooks called by :mod:`featurize.graph.load` and :mod:`predictor.api`):

* :func:`read_model_file` -- a path -> its bytes, after the checks a hostile path needs (no NUL byte, no
  over-long name, a regular file -- never a FIFO, device or directory -- and at most :data:`MAX_FILE_BYTES`),
  all on the opened descriptor so the file cannot be swapped between the check and the read.
* :func:`check_graph` -- element-count and byte caps from the graph alone (bound input shapes, constant
  sizes of Range / ConstantOfShape / Tile / Expand / Resize / Upsample) and attribute sanity (types that
  differ from the op's schema, non-finite floats), before shape inference runs.
* :func:`check_shapes` -- the same caps over every shape inference resolved, before anything is sized from it.
* :func:`check_features` -- no NaN/inf/negative count leaves the featurizer.
"""

from __future__ import annotations

import math
import os
import stat
from typing import Any, Iterable, Mapping

import onnx
from onnx import AttributeProto, TensorProto

from featurize.errors import GraphLoadError

__all__ = [
    "MAX_FILE_BYTES", "MAX_PATH_CHARS", "MAX_CONTROL_FLOW_NODES", "MAX_TENSOR_ELEMENTS", "MAX_TENSOR_BYTES", "MAX_DIM",
    "check_path", "read_model_file", "check_graph", "batch_cap_error", "check_shapes", "check_tensor", "check_features", "tensor_bytes",
]

MAX_FILE_BYTES = 2 << 30
"""Largest .onnx file read (2 GiB: protobuf's own limit; larger models keep weights as external data)."""
MAX_PATH_CHARS = 4096
"""Longest path accepted (Linux PATH_MAX); each component at most 255 bytes (NAME_MAX)."""
MAX_TENSOR_ELEMENTS = 1 << 36
"""Most elements in one tensor (6.9e10: 275 GB at fp32, more than any single GPU holds)."""
MAX_TENSOR_BYTES = 1 << 38
"""Most bytes in one tensor, and in all graph inputs together (256 GiB)."""
MAX_DIM = 1 << 36
"""Largest single dimension."""
MAX_CONTROL_FLOW_NODES = 256
"""Most If/Loop/Scan nodes in a graph, nested bodies included: each body is shape-inferred and costed as a graph
of its own, and onnx's inference of a chain of loops grows with the square of their number (5,000 loops: 4 s
per pass). Exporters that trace (``torch.onnx.export``) unroll Python control flow and write none."""
MAX_RANK = 64
"""Most dimensions of a tensor, and most elements of a shape/axes/index vector (Slice steps, Reshape shape...):
onnx's shape inference loops over such vectors (Slice with a 2^24-element ``steps`` input: 8 s)."""

_FIX_PATH = "pass the path of an existing regular .onnx file"
# Ops whose output size is set by the *values* of an input: (op, index of the size input).
_SIZE_FROM_VALUES = {"ConstantOfShape": 0, "Expand": 1, "Tile": 1}
# Ops whose float attributes are data (a -inf attention mask is legitimate).
_DATA_OPS = frozenset({"Constant", "ConstantOfShape"})


# ------------------------------------------------------------------------------------------------ files

def check_path(path: Any) -> str:
    """The path as ``str`` after the checks that need no file system access (type, NUL byte, length)."""
    try:
        text = os.fsdecode(os.fspath(path))
    except (TypeError, ValueError, UnicodeError) as err:
        raise GraphLoadError(f"the model path {path!r} is not a usable file name ({err}); {_FIX_PATH}.") from err
    if "\x00" in text:
        raise GraphLoadError(f"the model path {text[:80]!r} contains a NUL byte; {_FIX_PATH}.")
    if len(text) > MAX_PATH_CHARS or any(len(os.fsencode(p)) > 255 for p in text.split(os.sep)):
        raise GraphLoadError(
            f"the model path ({len(text)} characters, starting {text[:60]!r}) is longer than the system allows "
            f"({MAX_PATH_CHARS} characters, 255 bytes per component); {_FIX_PATH}."
        )
    return text


def read_model_file(path: Any, max_bytes: int | None = None) -> bytes:
    """Bytes of the file at ``path`` -- a regular file of at most ``max_bytes`` (:data:`MAX_FILE_BYTES`).

    Opened non-blocking (a FIFO cannot stall the open), checked with ``fstat`` on the descriptor (no swap
    between check and read), read to at most the size the check saw. Raises :class:`GraphLoadError`.
    """
    text = check_path(path)
    cap = MAX_FILE_BYTES if max_bytes is None else max_bytes
    try:
        fd = os.open(text, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError as err:
        raise GraphLoadError(f"ONNX file not found: {text!r}; check the path ({_FIX_PATH}).") from err
    except (OSError, ValueError) as err:
        raise GraphLoadError(f"cannot open the model file {text!r} ({err}); {_FIX_PATH}.") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            hint = (" (to score every graph in a folder: predict_many(folder) or `joulecast score DIR`)"
                    if stat.S_ISDIR(st.st_mode) else "")
            raise GraphLoadError(f"{text!r} is {_file_kind(st.st_mode)}, not a regular file; {_FIX_PATH}{hint}.")
        if st.st_size > cap:
            raise GraphLoadError(
                f"{text!r} is {st.st_size / 2**30:.2f} GiB, above the {cap / 2**30:.2f} GiB cap on a model file; "
                "export it with its weights as external data (onnx.save(..., save_as_external_data=True)): "
                "only the graph is read."
            )
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as err:
        raise GraphLoadError(f"cannot read the model file {text!r} ({err}); {_FIX_PATH}.") from err
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


# ------------------------------------------------------------------------------------------------ graphs

def tensor_bytes(shape: Iterable[int], elem: int) -> int:
    """Bytes of a tensor of ``shape`` and ONNX ``elem`` type (8 per element when the type has no size)."""
    return math.prod(shape) * _itemsize(elem)


def _itemsize(elem: int, _cache: dict[int, int] = {}) -> int:  # noqa: B006
    size = _cache.get(elem)
    if size is None:
        try:
            size = onnx.helper.tensor_dtype_to_np_dtype(elem).itemsize if elem else 4
        except Exception:  # noqa: BLE001 - string/undefined types
            size = 8
        _cache[elem] = size
    return size


def check_tensor(name: str, shape: tuple[int, ...], elem: int, where: str) -> None:
    if not shape:
        return
    big = max(shape)
    n = math.prod(shape) if big > 1 else 1
    if big <= MAX_DIM and n <= MAX_TENSOR_ELEMENTS and n * _itemsize(elem) <= MAX_TENSOR_BYTES:
        return
    err = GraphLoadError(
        f"tensor {name!r} ({where}) would have shape {list(shape)}: {n:.3g} elements, above the caps "
        f"(dim {MAX_DIM:.3g}, {MAX_TENSOR_ELEMENTS:.3g} elements, {MAX_TENSOR_BYTES / 2**30:.0f} GiB per tensor) "
        "that no GPU can hold. Check batch_size / dims= / input_shapes=, or the graph's constant sizes."
    )
    err.tensor = (name, tuple(shape), elem)  # for batch_cap_error
    raise err


def batch_cap_error(err: GraphLoadError, batch_size: int, batch_inputs: Mapping[str, Iterable[int]]
                    ) -> GraphLoadError:
    """``err`` (a tensor over the caps, from :func:`check_tensor`) restated for the user when the batch made it
    so: the batch, the input that carries it, the cap and the largest batch under it. ``batch_inputs``: ``{input
    name: bound shape}`` of the inputs whose first dim is the batch. Any other error is returned unchanged."""
    tensor = getattr(err, "tensor", None)
    if tensor is None or batch_size <= 1 or not batch_inputs:
        return err
    name, shape, elem = tensor
    if batch_size not in shape:
        return err  # a constant size, not the batch: the original message says so
    per_sample = math.prod(shape) // batch_size
    largest = min(MAX_TENSOR_ELEMENTS // max(per_sample, 1), MAX_TENSOR_BYTES // max(per_sample * _itemsize(elem), 1),
                  MAX_DIM)
    first, dims = next(iter(batch_inputs.items()))
    return GraphLoadError(
        f"batch_size={batch_size:,} is too large for this graph: input {first!r} of shape {list(dims)} makes an "
        f"intermediate tensor of {math.prod(shape):.3g} elements ({per_sample:,} per sample), above the cap of "
        f"{MAX_TENSOR_ELEMENTS:.3g} elements / {MAX_TENSOR_BYTES / 2**30:.0f} GiB per tensor that no GPU can hold. "
        f"Use batch_size <= {largest:,} (CLI: --batch-size); the memory check of predict then says which batch "
        "fits the GPU.")


def check_graph(model: onnx.ModelProto, bound: Mapping[str, Iterable[int]] | None = None) -> None:
    """Refuse a graph whose sizes or attributes are absurd, before shape inference and data propagation.

    ``bound``: ``{input name: shape}`` of the bound graph inputs (their total bytes are capped too).
    Raises :class:`GraphLoadError` naming the tensor or node.
    """
    g = model.graph
    elems = {vi.name: vi.type.tensor_type.elem_type for vi in g.input}
    total = 0
    for name, shape in (bound or {}).items():
        shape = tuple(int(d) for d in shape)
        check_tensor(name, shape, elems.get(name, 0), "graph input")
        total += tensor_bytes(shape, elems.get(name, 0))
    if total > MAX_TENSOR_BYTES:
        raise GraphLoadError(f"the bound graph inputs total {total / 2**30:.0f} GiB, above the "
                             f"{MAX_TENSOR_BYTES / 2**30:.0f} GiB cap; check batch_size / dims= / input_shapes=.")
    sizes = {t.name: tuple(t.dims) for t in g.initializer}
    sizes.update({n.output[0]: tuple(a.t.dims) for n in g.node if n.op_type == "Constant" and n.output
                  for a in n.attribute if a.type == AttributeProto.TENSOR})
    sizes.update({name: tuple(int(d) for d in shape) for name, shape in (bound or {}).items()})
    _check_ranks(g, sizes)
    _check_control_flow(g)
    consts = _constant_values(g)
    opset = _default_opset(model)
    schemas: dict[tuple[str, str], dict[str, int] | None] = {}
    for node in g.node:
        if node.attribute:
            _check_attributes(node, opset, schemas)
        if node.op_type in _SIZED_OPS:
            _check_sized(node, consts)


def _default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return onnx.defs.onnx_opset_version()


def _constant_values(g: onnx.GraphProto) -> dict[str, Any]:
    """``{name: numpy array}`` of the small integer/float constants (initializers with data, Constant nodes)."""
    import numpy as np
    from onnx import numpy_helper

    out: dict[str, Any] = {}
    tensors = [(t.name, t) for t in g.initializer if math.prod(t.dims) <= 64]
    for node in g.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value" and a.type == AttributeProto.TENSOR and math.prod(a.t.dims) <= 64:
                    tensors.append((node.output[0], a.t))
                elif a.name in ("value_int", "value_ints"):
                    out[node.output[0]] = onnx.helper.get_attribute_value(a)
    for name, t in tensors:
        if t.data_location == TensorProto.EXTERNAL:
            continue
        try:
            raw = _RAW_DTYPES.get(t.data_type) if t.raw_data else None
            out[name] = (np.frombuffer(t.raw_data, raw).reshape(tuple(t.dims)) if raw is not None
                         else numpy_helper.to_array(t))
        except Exception:  # noqa: BLE001 - a corrupt constant: shape inference reports it
            continue
    return out


# little-endian raw_data of the size-carrying types read without numpy_helper's general path (per-call overhead)
_RAW_DTYPES = {TensorProto.INT64: "<i8", TensorProto.INT32: "<i4", TensorProto.FLOAT: "<f4", TensorProto.DOUBLE: "<f8"}


def _check_sized(node: onnx.NodeProto, consts: Mapping[str, Any]) -> None:
    """Cap the output size of an op sized by constant input values (Range, ConstantOfShape, Tile, ...)."""
    import numpy as np

    op, ins = node.op_type, node.input
    try:
        if op == "Range":
            if len(ins) < 3 or not all(x in consts for x in ins[:3]):
                return
            start, limit, delta = (float(np.asarray(consts[x]).reshape(-1)[0]) for x in ins[:3])
            if not all(map(math.isfinite, (start, limit, delta))) or delta == 0:
                raise GraphLoadError(f"Range node {node.name or node.output[0]!r} has start/limit/delta "
                                     f"{start}, {limit}, {delta}: not finite or a zero step; fix the graph.")
            n = max(math.ceil((limit - start) / delta), 0)
            shape = (n,)
        elif op in ("Resize", "Upsample"):
            idx = 2 if op == "Resize" else 1  # Resize scales (input 2) / sizes (input 3)
            if op == "Resize" and len(ins) > 3 and ins[3] in consts:
                shape = tuple(map(int, np.asarray(consts[ins[3]]).reshape(-1).tolist()))
            elif len(ins) > idx and ins[idx] in consts:
                scales = [float(v) for v in np.asarray(consts[ins[idx]]).reshape(-1)]
                if not all(math.isfinite(s) and s >= 0 for s in scales):
                    raise GraphLoadError(f"{op} node {node.name or node.output[0]!r} has scales {scales}: "
                                         "not finite and >= 0; fix the graph.")
                shape = tuple(max(1, math.ceil(s)) for s in scales)  # a lower bound per unit input dim
            else:
                return
        else:
            idx = _SIZE_FROM_VALUES[op]
            if len(ins) <= idx or ins[idx] not in consts:
                return
            shape = tuple(map(int, np.asarray(consts[ins[idx]]).reshape(-1).tolist()))
    except (TypeError, ValueError, OverflowError, IndexError) as err:
        raise GraphLoadError(f"{op} node {node.name or node.output[0]!r} has an unreadable size input "
                             f"({err}); fix the graph.") from err
    if any(d < 0 for d in shape) and op != "Expand":
        raise GraphLoadError(f"{op} node {node.name or node.output[0]!r} asks for the negative size "
                             f"{list(shape)}; fix the graph.")
    check_tensor(node.output[0] if node.output else op, tuple(abs(d) for d in shape), 0, f"output of {op}")


_SIZED_OPS = frozenset({"Range", "Resize", "Upsample", *_SIZE_FROM_VALUES})
_REDUCE = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
# Inputs that carry a shape, axes or per-dim indices (one element per dim): op -> input positions.
_SHAPE_VECTOR_INPUTS = {
    "Slice": (1, 2, 3, 4), "Reshape": (1,), "Resize": (1, 2, 3), "Upsample": (1,), "Pad": (1, 3), "Tile": (1,),
    "Expand": (1,), "ConstantOfShape": (0,), "Unsqueeze": (1,), "Squeeze": (1,), "Split": (1,), "TopK": (1,),
    "Range": (0, 1, 2), "CenterCropPad": (1, 2), "Col2Im": (1, 2), "OneHot": (1,), **{r: (1,) for r in _REDUCE},
}


def _check_ranks(g: onnx.GraphProto, sizes: Mapping[str, tuple[int, ...]]) -> None:
    """Declared ranks <= :data:`MAX_RANK`; shape-like inputs of known size at most that many elements."""
    for vi in (*g.input, *g.output, *g.value_info):
        rank = len(vi.type.tensor_type.shape.dim)
        if rank > MAX_RANK:
            raise GraphLoadError(f"tensor {vi.name!r} is declared with {rank} dimensions, above the {MAX_RANK} any "
                                 "framework supports; the graph is corrupt, re-export it.")
    for node in g.node:
        for idx in _SHAPE_VECTOR_INPUTS.get(node.op_type, ()):
            if idx < len(node.input) and node.input[idx] in sizes:
                n = math.prod(sizes[node.input[idx]])
                if n > MAX_RANK:
                    raise GraphLoadError(
                        f"node {node.name or node.op_type!r} ({node.op_type}) input {idx} {node.input[idx]!r} has "
                        f"{n:.3g} elements, but it holds one value per dimension (at most {MAX_RANK}); the graph is "
                        "corrupt, re-export it."
                    )


def _check_control_flow(g: onnx.GraphProto) -> None:
    """At most :data:`MAX_CONTROL_FLOW_NODES` If/Loop/Scan nodes, counted through every nested body."""
    count, stack = 0, [g]
    while stack:
        for node in stack.pop().node:
            op = node.op_type
            if op in ("If", "Loop", "Scan"):
                count += 1
            elif op != "SequenceMap" and node.domain in ("", "ai.onnx"):
                continue  # no other standard op carries a subgraph
            for a in node.attribute:
                if a.type == AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
        if count > MAX_CONTROL_FLOW_NODES:
            raise GraphLoadError(
                f"the graph has more than {MAX_CONTROL_FLOW_NODES} If/Loop/Scan nodes (nested bodies included); each "
                "body is costed as a graph of its own, so this many cannot be featurized in bounded time. Export "
                "with tracing (torch.onnx.export unrolls Python loops and branches) or pass a graph with fewer.")


_FLOAT_KINDS = (AttributeProto.FLOAT, AttributeProto.FLOATS)


def _check_attributes(node: onnx.NodeProto, opset: int, schemas: dict) -> None:
    """Attribute types must match the op's schema (``kernel_shape`` as floats is refused) and float
    attributes must be finite (except on ops whose attributes are data)."""
    key = (node.op_type, node.domain)
    if key not in schemas:
        schemas[key] = _schema_types(node.op_type, node.domain, opset)
    declared = schemas[key]
    where = f"node {node.name or node.op_type!r} ({node.op_type})"
    for a in node.attribute:
        if declared is not None:
            want = declared.get(a.name)
            if want not in (None, AttributeProto.UNDEFINED) and a.type != want:
                raise GraphLoadError(
                    f"{where}: attribute {a.name!r} is {AttributeProto.AttributeType.Name(a.type)} but the ONNX "
                    f"schema says {AttributeProto.AttributeType.Name(want)}; the graph is corrupt, re-export it."
                )
        if a.type in _FLOAT_KINDS and node.op_type not in _DATA_OPS:
            values = [a.f] if a.type == AttributeProto.FLOAT else list(a.floats)
            if not all(map(math.isfinite, values)):
                raise GraphLoadError(f"{where}: attribute {a.name!r} = {values} is not finite; re-export the graph.")


def _schema_types(op: str, domain: str, opset: int) -> dict[str, int] | None:
    if domain not in ("", "ai.onnx"):
        return None
    try:
        schema = onnx.defs.get_schema(op, opset, domain)
    except Exception:  # noqa: BLE001 - unknown op: reported as unsupported by the featurizer
        return None
    return {name: int(attr.type) for name, attr in schema.attributes.items()}


def check_shapes(shapes: Mapping[str, tuple[tuple[int, ...] | None, int]]) -> None:
    """:func:`check_graph`'s per-tensor caps over every shape inference resolved (``{name: (shape, elem)}``)."""
    small = min(MAX_TENSOR_ELEMENTS, MAX_TENSOR_BYTES // 16, MAX_DIM)  # below it no cap can be exceeded
    prod = math.prod
    for name, (shape, elem) in shapes.items():
        if shape and prod(shape) > small:
            check_tensor(name, shape, elem, "inferred shape")


# ------------------------------------------------------------------------------------------------ features

def check_features(values: Mapping[str, Any], what: str = "the graph") -> None:
    """Refuse features that are NaN, infinite or negative counts (a corrupt attribute slipped through)."""
    bad = []
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v) or (v < 0 and not key.startswith(("log_", "frac_"))):
            bad.append(f"{key}={v}")
    if bad:
        raise GraphLoadError(
            f"featurizing {what} gave {', '.join(bad[:5])}: an attribute or shape in the graph is corrupt "
            "(e.g. a float or negative kernel_shape); re-export the model."
        )
