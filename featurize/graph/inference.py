"""The two shape-inference kernels that may run in another process (:mod:`featurize.graph.isolated_inference`):
onnx's C++ strict inference on serialized bytes, and onnxruntime's symbolic inference for what it leaves unknown."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import onnx

from featurize.graph.bind import shape_of

try:
    from onnx.onnx_cpp2py_export.shape_inference import infer_shapes as C_INFER
except ImportError:  # pragma: no cover - a future onnx moving its binding
    C_INFER = None


def symbolic_shapes(model_bytes: bytes, wanted: list[str]) -> dict[str, tuple[tuple[int, ...], int]]:
    """``{name: (shape, elem)}`` of the ``wanted`` tensors that onnxruntime's symbolic inference sizes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _symbolic_infer(symbolic_class(), onnx.load_from_string(model_bytes))
    if out is None:
        return {}
    want = set(wanted)
    found = {}
    for vi in list(out.graph.value_info) + list(out.graph.output):
        if vi.name in want:
            shape, elem = shape_of(vi)
            if shape is not None:
                found[vi.name] = (shape, elem)
    return found


def symbolic_class():
    """onnxruntime's ``SymbolicShapeInference``, loaded from its file: importing it through
    ``onnxruntime.tools`` also imports torch and the runtime (~3 s, ~300 MB), which it does not use."""
    import sys

    name = "_joulecast_ort_symbolic_shape_infer"
    with _SYMBOLIC_LOCK:  # a worker's warm-up thread may be loading it
        if name not in sys.modules:
            sys.modules[name] = _load_symbolic(name)
    return sys.modules[name].SymbolicShapeInference


def _load_symbolic(name: str) -> Any:
    import importlib.util

    try:
        spec = importlib.util.find_spec("onnxruntime")
        path = Path(spec.origin).parent / "tools" / "symbolic_shape_infer.py"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    except Exception:  # noqa: BLE001 - a layout change: the ordinary import
        from onnxruntime.tools import symbolic_shape_infer

        return symbolic_shape_infer


_SYMBOLIC_LOCK = threading.Lock()


def _symbolic_infer(cls, m: onnx.ModelProto) -> onnx.ModelProto | None:
    """Run onnxruntime's symbolic inference and keep what it resolved even when incomplete.

    ``SymbolicShapeInference.infer_shapes`` drops partial results and, on an incomplete pass, saves
    ``sym_shape_infer_temp.onnx`` into the caller's working directory; a library must do neither, so
    this drives the same steps itself (falling back to the public call inside a temporary directory
    if a future onnxruntime renames them).
    """
    steps = ("_preprocess", "_infer_impl", "_update_output_from_vi")
    ssi = cls(2**31 - 1, False, False, 0)
    if not all(hasattr(ssi, s) for s in steps) or not hasattr(ssi, "run_"):
        import contextlib
        import tempfile

        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
            return cls.infer_shapes(m, auto_merge=False, guess_output_rank=False)
    if not any(o.domain in ("", "ai.onnx") and o.version >= 7 for o in m.opset_import):
        return None
    ssi._preprocess(m)
    while ssi.run_:
        ssi._infer_impl()
    ssi._update_output_from_vi()
    return ssi.out_mp_


def c_infer_local(model_bytes: bytes, check_type: bool, strict_mode: bool, data_prop: bool) -> bytes:
    """onnx's C++ shape inference in this process (``onnx.shape_inference.infer_shapes`` without its
    Python-side parse of the result; that public call when the binding is absent)."""
    if C_INFER is not None:
        return C_INFER(model_bytes, check_type, strict_mode, data_prop)
    return onnx.shape_inference.infer_shapes(
        model_bytes, check_type=check_type, strict_mode=strict_mode, data_prop=data_prop
    ).SerializeToString()
