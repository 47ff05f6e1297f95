"""The work one isolated featurization process does for ``predict_many``: featurize one graph, return its features or
its error as data (never raise: one bad file must not stop a batch of thousands)."""

from __future__ import annotations

import warnings as _warnings
from typing import Any

from featurize.errors import JoulecastError


def featurize_one(source: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Worker: featurize one graph; returns ``{"features": dict, "warnings": [...]} `` or ``{"error": str}``.

    Runs in a worker process; only small dicts travel back (never the node table).
    """
    from featurize import featurize
    from predictor.model.notes import featurizer_notes, no_flops_message

    options = dict(options)
    want_seq, want_layer = options.pop("_sequence_length", False), options.pop("_largest_layer", False)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")  # kept: unknown shapes, unsupported ops ... travel on the row
        try:
            seq = _sequence_length(source, options) if want_seq else None
            feats = featurize(source, with_nodes=want_layer, **options)
        except JoulecastError as err:
            return {"error": f"{type(err).__name__}: {err}"}
        except Exception as err:  # noqa: BLE001 - one bad file must not stop a batch of thousands
            return {"error": f"{type(err).__name__}: {err}"}
    out: dict[str, Any] = feats.to_dict()
    out["layer_profile"] = feats.layer_profile.to_text()  # the per-layer prior's input (a few KB of text)
    if want_layer and feats.nodes is not None and len(feats.nodes):
        out["largest_layer_params"] = float(feats.nodes["params"].max())
    if seq is not None:
        out["sequence_length"] = float(seq)
    if not out.get("flops_train", 0) > 0:
        return {"error": f"GraphLoadError: {no_flops_message(feats.unsupported_ops)}"}
    return {"features": out, "warnings": featurizer_notes(caught, feats.unsupported_ops)}


def _sequence_length(source: Any, options: dict[str, Any]) -> int:
    """The graph's tokens per sample (:func:`predictor.tokens.sequence_length`), for a ``tokens=`` budget."""
    from predictor.tokens import sequence_length

    return sequence_length(source, dims=options.get("dims"), input_shapes=options.get("input_shapes"),
                           example_inputs=options.get("example_inputs"))[0]


def featurize_task(payload: tuple[Any, dict[str, Any]], _context: Any = None) -> dict[str, Any]:
    """Worker target: ``payload`` is ``(source, featurize options)``."""
    return featurize_one(*payload)


def warm_up() -> None:
    """Worker start-up: featurize a one-node graph, so that the imports it triggers (~1.5-3 s of onnx, numpy
    and the op handlers) are not charged to the first real graph's time limit; onnxruntime's symbolic inference
    (~0.5 s of sympy imports idle, several seconds under load), which only graphs with unknown shapes reach, loads
    here too, before any clock starts (once per worker; a batch amortises it)."""
    from onnx import TensorProto, helper

    from featurize.graph import inference

    inference.symbolic_class()

    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "warm_up",
        [vi("x", TensorProto.FLOAT, ["N", 4]), vi("w", TensorProto.FLOAT, [4, 2])],
        [vi("y", TensorProto.FLOAT, ["N", 2])],
    )
    featurize_one(helper.make_model(graph), {"batch_size": 1})
