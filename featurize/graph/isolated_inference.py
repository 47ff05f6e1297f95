"""Where shape inference runs: in this process, or in an isolated one a caller provides.

onnx's C++ shape inference and onnxruntime's symbolic inference are the two steps of featurization that a
hostile graph can keep busy past any bound checked beforehand (they cannot be interrupted from Python). The
featurizer calls them through :func:`run`: in this process by default, or through the runner a caller installs
with :func:`runner` -- ``predictor.predict`` installs one that sends each call to a worker process under a time
and memory limit (:mod:`predictor.batch.isolation`, the isolation batch scoring uses), so that no input can hang it.

Public entry points: :func:`run`, :func:`runner` (context manager), :func:`task` (the worker-side target,
``"featurize.graph.isolated_inference:task"``), :func:`warm_up` (the worker's start-up).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

__all__ = ["run", "runner", "task", "warm_up", "TARGET", "WARMUP"]

TARGET = "featurize.graph.isolated_inference:task"
WARMUP = "featurize.graph.isolated_inference:warm_up"
# kind ("c_infer" | "symbolic"), args -> result; None: run here
_RUNNER: ContextVar[Callable[[str, tuple], Any] | None] = ContextVar("joulecast_inference_runner", default=None)


@contextmanager
def runner(run_fn: Callable[[str, tuple], Any]) -> Iterator[None]:
    """Route the shape-inference calls made inside the ``with`` block (this thread / task) through
    ``run_fn(kind, args)``, which returns what :func:`local` would or raises."""
    token = _RUNNER.set(run_fn)
    try:
        yield
    finally:
        _RUNNER.reset(token)


def run(kind: str, args: tuple) -> Any:
    """One shape-inference call: ``"c_infer"`` (``(model_bytes, check_type, strict_mode, data_prop)`` ->
    inferred model bytes) or ``"symbolic"`` (``(model_bytes, wanted names)`` -> ``{name: (shape, elem)}``)."""
    fn = _RUNNER.get()
    return local(kind, args) if fn is None else fn(kind, args)


def local(kind: str, args: tuple) -> Any:
    """:func:`run` in this process."""
    from featurize.graph import inference

    if kind == "c_infer":
        return inference.c_infer_local(*args)
    if kind == "symbolic":
        return inference.symbolic_shapes(*args)
    raise ValueError(f"unknown shape-inference call {kind!r}")


def task(payload: tuple[str, tuple], _context: Any = None) -> dict[str, Any]:
    """Worker target (:class:`predictor.batch.isolation.IsolatedPool`): ``payload`` is ``(kind, args)``."""
    return {"value": local(*payload)}


def warm_up() -> None:
    """Worker start-up: import onnx and run inference once, so neither is charged to the first call's limit;
    onnxruntime's symbolic inference (~1.5 s of sympy imports) loads in a background thread."""
    import threading

    from onnx import TensorProto, helper

    from featurize.graph import inference

    threading.Thread(target=inference.symbolic_class, daemon=True).start()
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warm_up",
                              [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, None)])
    local("c_infer", (helper.make_model(graph).SerializeToString(), True, True, True))
