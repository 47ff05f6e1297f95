"""The per-node table of :attr:`GraphFeatures.nodes`, built from the walk's row tuples only when first read."""

from __future__ import annotations

from typing import Any

NODE_COLUMNS = (
    "name", "op_type", "domain", "op_class", "output_shapes", "macs", "flops", "params", "bytes_read",
    "bytes_written", "working_set_bytes", "trainable", "weight_bytes", "act_inputs", "act_input_bytes", "outputs",
    "module",
)


def module_path(ins: tuple, roots_get: Any) -> str:
    """The module a node belongs to, from the name of the first parameter it reads (``layers.3.conv1.weight`` ->
    ``layers.3.conv1``; a transposed or cast copy of a weight counts as that weight); "" when no parameter name
    carries a module path (``onnx::Conv_12``)."""
    for t in ins:
        if t[4]:  # a weight
            leaf = (roots_get(t[0]) or (t[0],))[0]
            head, dot, _ = leaf.rpartition(".")
            if dot and head:
                return head
    return ""


def nodes_frame(rows: list[tuple], ws_scale: float = 1.0):
    """The per-node DataFrame (:data:`NODE_COLUMNS`) from the node loop's row tuples (their
    ``act_inputs`` / ``act_input_bytes`` are lists; the bytes at the evaluated batch, scaled here by
    ``ws_scale`` to the training batch)."""
    import pandas as pd

    cols = list(zip(*rows)) if rows else [()] * len(NODE_COLUMNS)
    data = dict(zip(NODE_COLUMNS, map(list, cols)))
    data["act_inputs"] = [tuple(a) for a in cols[13]]
    data["act_input_bytes"] = [tuple([b * ws_scale for b in a]) for a in cols[14]]
    data["output_shapes"] = [[list(t.shape) if t.shape is not None else None for t in outs] for outs in cols[4]]
    data["outputs"] = [tuple(o) for o in cols[15]]
    return pd.DataFrame(data, columns=list(NODE_COLUMNS))
