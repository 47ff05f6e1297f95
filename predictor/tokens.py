"""Token budgets: ``tokens=`` -> training samples per epoch, from the graph's sequence length.

Public entry points: :func:`sequence_length` and :func:`samples_from_tokens`. The sequence length is, in order:

1. a graph input axis whose symbolic name reads as a sequence axis (:data:`SEQ_NAME`: ``seq``, ``seq_len``,
   ``sequence_length``, ``tokens``, ``n_ctx``, ...), bound by ``dims=`` or ``input_shapes=``;
2. axis 1 of the first integer-typed graph input of rank >= 2 (token ids ``[batch, seq]``), fixed in the graph or
   bound by ``dims=`` / ``input_shapes=``; for a torch module, of the first integer example input;
3. a ``dims=`` binding with such a name (the user names the length of a graph that does not declare one).

A graph with none of these (an image model) gets one :class:`InvalidInputError` naming the fix. The graph is
never run: only its declared inputs are read.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Mapping

from featurize.errors import InvalidInputError

SEQ_NAME = re.compile(r"(^|[^a-z])(seq|sequence|seqlen|tokens?|n_?ctx|context|max_len|length|len)([^a-z]|$)",
                      re.IGNORECASE)
"""A dimension name that reads as a sequence axis (``batch`` names never match)."""
_INT_TYPES = {2, 3, 4, 5, 6, 7, 12, 13}  # onnx.TensorProto: (u)int8/16/32/64


def _is_seq_name(name: str) -> bool:
    return bool(name) and "batch" not in name.lower() and bool(SEQ_NAME.search(name))


def _declared_inputs(model: Any) -> list[tuple[str, bool, list[int | str]]]:
    """``(name, integer-typed, dims)`` of the graph's real inputs (ints fixed, strings symbolic); [] if unreadable."""
    import onnx

    try:
        if isinstance(model, (str, os.PathLike)):
            from featurize.limits import read_model_file

            proto = onnx.load_from_string(read_model_file(model))
        elif isinstance(model, (bytes, bytearray)):
            proto = onnx.load_from_string(bytes(model))
        elif isinstance(model, onnx.ModelProto):
            proto = model
        else:
            return []
    except Exception:  # featurize raises the proper GraphLoadError
        return []
    inits = {i.name for i in proto.graph.initializer}
    out = []
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        dims: list[int | str] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim]
        out.append((inp.name, tt.elem_type in _INT_TYPES, dims))
    return out


def _torch_inputs(example_inputs: Any) -> list[tuple[str, bool, list[int | str]]]:
    if example_inputs is None:
        return []
    items = example_inputs.items() if isinstance(example_inputs, dict) else enumerate(
        example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,))
    out = []
    for name, t in items:
        shape, dtype = getattr(t, "shape", None), str(getattr(t, "dtype", ""))
        if shape is not None:
            out.append((str(name), "int" in dtype, [int(s) for s in shape]))
    return out


def _bound(dim: int | str, axis: int, name: str, dims: Mapping[str, int], shapes: Mapping[str, Any]) -> int | None:
    if name in shapes and len(shapes[name]) > axis:
        return int(shapes[name][axis])
    if isinstance(dim, int) and dim > 0:
        return dim
    return int(dims[dim]) if isinstance(dim, str) and dim in dims else None


def sequence_length(model: Any, *, dims: Mapping[str, int] | None = None,
                    input_shapes: Mapping[str, Any] | None = None, example_inputs: Any = None) -> tuple[int, str]:
    """``(tokens per sample, where it came from)`` for ``model`` (module docstring rules)."""
    dims, shapes = dict(dims or {}), dict(input_shapes or {})
    inputs = _torch_inputs(example_inputs) or _declared_inputs(model)
    for name, ints, declared in inputs:  # 1: a symbolic axis named like a sequence
        for axis, dim in enumerate(declared):
            if isinstance(dim, str) and _is_seq_name(dim) and _bound(dim, axis, name, dims, shapes):
                return _bound(dim, axis, name, dims, shapes), f"input {name!r} axis {axis} ({dim!r})"
    for name, ints, declared in inputs:  # 2: token ids [batch, seq]
        if ints and len(declared) >= 2 and _bound(declared[1], 1, name, dims, shapes):
            return _bound(declared[1], 1, name, dims, shapes), f"input {name!r} (token ids) axis 1"
    named = [(k, v) for k, v in dims.items() if _is_seq_name(k)]
    if named:  # 3: the user bound a sequence-named dimension
        return int(named[0][1]), f"dims[{named[0][0]!r}]"
    seen = ", ".join(f"{n} {d}" for n, _, d in inputs) or "none readable"
    raise InvalidInputError(
        f"tokens= needs the sequence length, but this graph has no sequence axis (inputs: {seen}; no integer "
        "token-id input [batch, seq] and no dimension named like 'seq'). Pass samples_per_epoch= (tokens divided "
        "by your sequence length) instead, or name the length with dims={'seq': N}.")


def samples_from_tokens(tokens: float, seq_len: int) -> int:
    """Training samples that hold ``tokens`` tokens of ``seq_len`` each (rounded up: the budget is covered)."""
    q = float(tokens) / int(seq_len)
    whole = round(q)
    return max(1, whole if abs(q - whole) <= 1e-9 * max(1.0, q) else math.ceil(q))
