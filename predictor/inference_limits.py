"""``predict``'s shape inference under a time and memory limit.

onnx's C++ shape inference and onnxruntime's symbolic inference cannot be interrupted from Python, and a graph can
make them run for minutes even within the size caps checked beforehand (:mod:`featurize.graph.limits`,
:mod:`featurize.graph.propagation`). :func:`limited_inference` sends each of those calls made by ``featurize`` to a
warm worker process of :mod:`predictor.batch.isolation` -- the isolation batch scoring uses -- under
:data:`INFERENCE_TIME_LIMIT_S` and :data:`INFERENCE_MEMORY_LIMIT_MB`. A call past a limit ends the featurization
with a :class:`~featurize.errors.GraphLoadError` naming the limit (a symbolic-inference call past it only
leaves its shapes unknown: it is a best-effort second opinion).

Public entry points: :func:`limited_inference`, :func:`start_worker`, :data:`INFERENCE_TIME_LIMIT_S`, :data:`INFERENCE_MEMORY_LIMIT_MB`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from featurize.graph import isolated_inference
from featurize.errors import GraphLoadError
from predictor.batch.isolation import DEFAULT_MEMORY_LIMIT_MB, Limits, call_isolated, prestart

__all__ = ["limited_inference", "start_worker", "INFERENCE_TIME_LIMIT_S", "INFERENCE_MEMORY_LIMIT_MB"]

INFERENCE_TIME_LIMIT_S = 30.0
"""Per shape-inference call (a 70B-parameter export takes ~0.2 s, BERT-large ~0.1 s)."""
INFERENCE_MEMORY_LIMIT_MB = DEFAULT_MEMORY_LIMIT_MB
"""Address space one shape-inference call may add to its worker's size after imports."""
_LIMIT_ERRORS = ("TimeLimitExceeded", "MemoryLimitExceeded", "WorkerCrashed")


class InferenceFailed(RuntimeError):
    """Shape inference raised in the worker (an invalid graph): the featurizer's fallbacks handle it."""


def _limits() -> Limits:
    return Limits(time_s=INFERENCE_TIME_LIMIT_S, memory_mb=INFERENCE_MEMORY_LIMIT_MB)


def start_worker() -> None:
    """Start the inference worker now (its imports then overlap the caller's own start-up work)."""
    prestart(isolated_inference.TARGET, _limits(), isolated_inference.WARMUP)


def _isolated(kind: str, args: tuple) -> Any:
    result = call_isolated(isolated_inference.TARGET, (kind, args), _limits(), isolated_inference.WARMUP)
    if "error" not in result:
        return result["value"]
    error = str(result["error"])
    if error.startswith(_LIMIT_ERRORS):
        what = "onnx's shape inference" if kind == "c_infer" else "onnxruntime's symbolic shape inference"
        raise GraphLoadError(
            f"{what} did not finish within the limits for one call ({INFERENCE_TIME_LIMIT_S:g} s, "
            f"{INFERENCE_MEMORY_LIMIT_MB:g} MB): {error[:300]}. The graph builds tensors too large or too many "
            "to analyse; check batch_size / dims= / input_shapes= and the graph's constant sizes, or score it with "
            "predict_many(..., time_limit_s=...) for a longer limit.")
    raise InferenceFailed(error.split(": ", 1)[-1])


@contextmanager
def limited_inference() -> Iterator[None]:
    """Within the block, ``featurize``'s shape-inference calls run isolated under the limits above."""
    with isolated_inference.runner(_isolated):
        yield
