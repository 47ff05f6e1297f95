"""Export a ``torch.nn.Module`` to ONNX so one set of op handlers serves torch and ONNX inputs.

Public entry point: :func:`export_module` (module + example inputs -> ``onnx.ModelProto``). Uses the
dynamo exporter's steps (``torch.onnx.export(..., dynamo=True)``, one trace instead of two: see
:func:`_one_trace_export`; the public call when that fails) at :data:`EXPORT_OPSET`, in eval mode,
without the exporter's graph optimizer so initializer names stay the module's parameter names
(``frozen=`` prefixes match them). torch is imported lazily (extra ``joulecast[torch]``).

Weights are never copied: every initializer of the exported graph becomes an external-data reference
(shape and dtype only), so a module built on the meta device (``with torch.device("meta"): ...``)
featurizes without any weight memory, and a real module costs no second copy of its weights. Hugging
Face switches that change the traced graph (``config.use_cache``) are turned off for the export. The
export of a module is reused for repeated calls with the same example-input shapes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import threading
import warnings
import weakref
from typing import Any

import onnx

from featurize.errors import GraphLoadError, InvalidInputError, require

__all__ = ["export_module", "EXPORT_OPSET", "WEIGHTS_ABSENT"]

EXPORT_OPSET = 18
# external-data location written for every initializer of an exported module (nothing is stored there)
WEIGHTS_ABSENT = "__joulecast_weights_absent__"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CACHE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def export_module(module: Any, example_inputs: Any) -> onnx.ModelProto:
    """Trace ``module`` on ``example_inputs`` (a tensor, a tuple of tensors, or a dict of keyword
    tensors) into a weightless ONNX ModelProto (a copy: callers may mutate it)."""
    torch = require("torch", extra="torch", purpose="featurizing a torch.nn.Module")
    require("onnxscript", extra="torch", purpose="exporting a torch.nn.Module to ONNX")
    args, kwargs = _split_inputs(example_inputs)
    args, kwargs = _to_module_device(torch, module, args, kwargs)
    key = _signature(module, args, kwargs)
    cached = _CACHE.get(module, {}).get(key)
    if cached is None:
        cached = _export(torch, module, args, kwargs)
        _CACHE.setdefault(module, {})[key] = cached
    out = onnx.ModelProto()
    out.CopyFrom(cached)
    return out


def _split_inputs(example_inputs: Any) -> tuple[tuple, dict]:
    if example_inputs is None:
        raise InvalidInputError(
            "a torch.nn.Module needs example_inputs= (a tensor, a tuple of tensors or a dict of keyword "
            "tensors shaped like one batch), e.g. featurize(model, example_inputs=torch.randn(1, 3, 224, 224))."
        )
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    return (example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)), {}


def _to_module_device(torch: Any, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Example tensors moved to the meta device when the module's weights are there (no data needed)."""
    first = next(iter(module.parameters()), None)
    if first is None or first.device.type != "meta":
        return args, kwargs

    def move(x):
        return x.to("meta") if isinstance(x, torch.Tensor) else x

    return tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}


def _signature(module: Any, args: tuple, kwargs: dict) -> tuple:
    def sig(x):
        shape = getattr(x, "shape", None)
        return (tuple(shape), str(x.dtype)) if shape is not None else repr(x)

    return tuple(sig(a) for a in args), tuple((k, sig(v)) for k, v in sorted(kwargs.items()))


@contextlib.contextmanager
def _export_switches(module: Any):
    """Eval mode and ``config.use_cache = False`` (a KV cache adds outputs and a dynamic cache object
    the exporter cannot trace) for the duration of the export; both restored after."""
    was_training = module.training
    config = getattr(module, "config", None)
    had_cache = getattr(config, "use_cache", None)
    module.eval()
    if had_cache:
        config.use_cache = False
    try:
        yield
    finally:
        module.train(was_training)
        if had_cache:
            config.use_cache = had_cache


@contextlib.contextmanager
def _quiet_exporter_logs():
    """The exporter's registry logs one warning per torchvision op when torchvision is absent ("torchvision is not
    installed. Skipping torchvision::nms", 4 lines on every export): nothing a joulecast user can act on."""
    import logging

    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _export(torch: Any, module: Any, args: tuple, kwargs: dict) -> onnx.ModelProto:
    try:
        with _export_switches(module), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                _quiet_exporter_logs():
            warnings.simplefilter("ignore")
            model = _one_trace_export(torch, module, args, kwargs)
            if model is None:
                model = torch.onnx.export(
                    module, args, kwargs=kwargs or None, dynamo=True, opset_version=EXPORT_OPSET,
                    external_data=True, optimize=False, verbose=False,
                ).model
    except Exception as err:  # noqa: BLE001 - exporter errors are many and varied
        text = _ANSI.sub("", f"{type(err).__name__}: {err}").strip().splitlines()
        raise GraphLoadError(
            f"torch.onnx export of {type(module).__name__} failed: {' '.join(text[:3])[:600]}. Check "
            "example_inputs match forward() (pass keyword inputs as a dict, e.g. {'input_ids': ids, "
            "'attention_mask': mask}), or export to .onnx yourself and pass the file."
        ) from err
    proto = _weightless_proto(model)
    _declare_tied(proto, module)
    return proto


TIED_KEY = "joulecast.tied_weights"  # model metadata: JSON {initializer: the initializer it is the same tensor as}


def _declare_tied(proto: onnx.ModelProto, module: Any) -> None:
    """Record parameters that are one tensor under two names (a tied LM head): the exporter writes one
    initializer per name, and without their bytes the loader cannot see that they are equal."""
    import json

    first: dict[int, str] = {}
    tied: dict[str, str] = {}
    names = {i.name for i in proto.graph.initializer}
    for name, param in module.named_parameters(remove_duplicate=False):
        orig = first.setdefault(id(param), name)
        if orig != name and orig in names and name in names:
            tied[name] = orig
    if tied:
        proto.metadata_props.add(key=TIED_KEY, value=json.dumps(tied))


def _one_trace_export(torch: Any, module: Any, args: tuple, kwargs: dict) -> Any:
    """The dynamo exporter's steps with its two traces made one: ``torch.onnx.export`` traces the module
    with ``torch.export`` (pre-dispatch IR), then traces that program again to apply the ONNX
    decomposition table; here one non-strict ``torch.export`` trace to ATen IR applies the same table
    (7B Llama-style: 7.9 s CPU instead of 12.8 s, the same ONNX nodes). Uses private functions of the
    pinned torch: any failure (or a torch without them) returns ``None`` and the caller takes the public
    path."""
    try:
        import torch.export._trace as trace
        from torch.export.exported_program import (
            _override_composite_implicit_decomp,
            _split_decomp_table_to_cia_and_python_decomp,
        )
        from torch.onnx._internal.exporter import _core, _decomp, _flags, _fx_passes, _registration

        registry = _registration.ONNXRegistry.from_torchlib(opset_version=EXPORT_OPSET)
        implemented = set(_decomp.get_onnx_implemented_overloads(registry))
        table = _decomp.create_onnx_friendly_decomposition_table(implemented)
        cia_table, aten_table = _split_decomp_table_to_cia_and_python_decomp(dict(table))
        deferred = getattr(_flags, "PREFER_DEFERRED_RUNTIME_ASSERTS_OVER_GUARDS", False)
        with _TRACE_LOCK, _onnx_exporting(_flags), _override_composite_implicit_decomp(cia_table), \
                torch.fx.experimental._config.patch(backed_size_oblivious=True), \
                _patched(trace, "_export_to_aten_ir", decomp_table=aten_table):
            program = trace._export(module, args, kwargs, strict=False, pre_dispatch=False,
                                    prefer_deferred_runtime_asserts_over_guards=deferred)
            _fx_passes.insert_type_promotion_nodes(program.graph_module)
            program._graph_module = _fx_passes.remove_assertion_nodes(program.graph_module)
            return _core._exported_program_to_onnx_program(program, registry=registry).model
    except Exception:  # noqa: BLE001 - the public exporter decides (and reports) instead
        return None


_TRACE_LOCK = threading.Lock()  # _patched swaps a torch module attribute for the duration of a trace


@contextlib.contextmanager
def _patched(namespace: Any, name: str, **bound: Any):
    """``namespace.name`` called with ``bound`` keywords added, for the duration of the block."""
    original = getattr(namespace, name)
    setattr(namespace, name, functools.partial(original, **bound))
    try:
        yield
    finally:
        setattr(namespace, name, original)


@contextlib.contextmanager
def _onnx_exporting(flags: Any):
    """torch's "an ONNX export is running" flag, as ``torch.onnx.export`` sets it (models may read it)."""
    before = flags._is_onnx_exporting
    flags._is_onnx_exporting = True
    try:
        yield
    finally:
        flags._is_onnx_exporting = before


def _weightless_proto(model: Any) -> onnx.ModelProto:
    """Serialize an ``onnx_ir`` model with every initializer replaced by an external-data reference
    (shape and dtype kept, no bytes read or copied), except small ones with real data (index buffers
    such as ``position_ids`` that shape folding may read)."""
    import onnx_ir as ir

    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is None or _small_real(tensor):
            continue
        value.const_value = ir.ExternalTensor(
            location=WEIGHTS_ABSENT, offset=0, length=0, dtype=tensor.dtype, shape=tensor.shape, name=value.name
        )
    for node in model.graph:  # the exporter's per-node stack traces: most of the proto's bytes
        node.metadata_props.clear()
    return ir.serde.serialize_model(model)


def _small_real(tensor: Any, max_elements: int = 1024) -> bool:
    raw = getattr(tensor, "raw", None)  # the torch tensor behind the exporter's TorchTensor
    device = getattr(raw, "device", None)
    return device is not None and device.type != "meta" and raw.numel() <= max_elements
