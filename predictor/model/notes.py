"""Texts shared by ``predict`` and ``predict_many`` about what the featurizer could not cost (no heavy imports:
the batch workers import this module)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

UNSUPPORTED_PREFIX = "featurize: ops without a cost handler"
REGISTER_HINT = "cost them with featurize.ops.register(op_type, domain=...)"


def unsupported_note(unsupported_ops: Mapping[str, int]) -> str | None:
    """The warning for ops counted as zero cost (None when there are none)."""
    if not unsupported_ops:
        return None
    ops = ", ".join(f"{k} x{v}" for k, v in sorted(unsupported_ops.items()))
    return (f"unsupported ops counted as zero cost: {ops}; the estimate may be low and the interval is widened "
            f"({REGISTER_HINT}).")


def no_flops_message(unsupported_ops: Mapping[str, int]) -> str:
    """Why a graph cannot be forecast when it has no countable FLOPs, naming the ops and the fix."""
    if unsupported_ops:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(unsupported_ops.items()))
        return (f"the graph has no countable FLOPs: every op that would do work is unsupported ({ops}); "
                f"{REGISTER_HINT}, or export the model with standard ONNX ops.")
    return ("the graph has no countable FLOPs (no ops that do arithmetic, or tensor shapes unknown); check the "
            "file, or bind its input shapes with dims= / input_shapes=.")


def featurizer_notes(caught: Iterable[Any], unsupported_ops: Mapping[str, int]) -> list[str]:
    """The featurizer's own warnings (recorded with ``warnings.catch_warnings(record=True)``) as notes, deduplicated,
    followed by the unsupported-ops note (which replaces the featurizer's message of the same content)."""
    out: dict[str, None] = {}
    for w in caught:
        text = " ".join(str(getattr(w, "message", w)).split())
        if text and not text.startswith(UNSUPPORTED_PREFIX):
            out[text if text.startswith("featurize") else f"featurize: {text}"] = None
    note = unsupported_note(unsupported_ops)
    return [*out, *([note] if note else [])]
