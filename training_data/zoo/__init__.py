"""The architecture zoo: every architecture in the training data, as our own PyTorch / transformers definitions.

Public entry points:

* :func:`get_zoo_model` ``(name, input_shape=None) -> (torch.nn.Module, example_inputs)``; ``name`` is ``<base>`` or
  ``<base>?k=v&k=v`` (the part after ``zoo:`` in the run schema's ``model`` column).
* :func:`export_onnx` ``(name, input_shape, cache_dir) -> Path``: a weightless ONNX graph (initializers keep their
  names and shapes, data marked external and absent), cached by a hash of (name, shape, exporter versions).
* :func:`featurize_args` ``(input_shape, batch_size) -> dict`` of ``dims`` for :func:`featurize.featurize`.
* :data:`ZOO` -- base name -> :class:`ZooEntry` (factory, default input shape, symbolic dims, frozen prefix).

Keras transfer-learning models (``*_tl``) keep their pretrained part under ``backbone.``: ``frozen=["backbone"]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

from featurize.errors import InvalidInputError

CACHE_DIR = Path(__file__).resolve().parents[1] / "cache"
EXPORT_OPSET = 18
ZOO_VERSION = 1  # bump when a definition changes so cached exports are rebuilt


@dataclass(frozen=True)
class ZooEntry:
    factory: Callable[..., object]
    default_shape: str  # per-sample input shape
    input_kind: str = "image"  # image | tokens | spectrogram | ids
    dynamic_seq: bool = False
    frozen_prefix: str = ""
    reference_gflops: dict[str, float] = field(default_factory=dict)  # input shape -> forward GFLOPs (2 x MACs)
    note: str = ""
    revision: int = 0  # bump when this entry's definition changes (cached exports are keyed by it)
    meta: bool = False  # build on the meta device (no weight allocated: 1-70 B parameter graphs)


def _tl(features_fn, hidden=(), **fkw):
    def make(classes: int = 1):
        from training_data.zoo.cnn import TransferHead

        feats, c = features_fn(**fkw)
        return TransferHead(feats, c, tuple(hidden), classes=int(classes))

    return make


def _lazy(mod: str, fn: str, **fixed):
    def make(**kw):
        import importlib

        return getattr(importlib.import_module(f"training_data.zoo.{mod}"), fn)(**{**fixed, **kw})

    return make


def _cnn(fn: str, **fkw):
    def features(**kw):
        from training_data.zoo import cnn

        return getattr(cnn, fn)(**{**fkw, **kw})

    return features


ZOO: dict[str, ZooEntry] = {
    "vgg16_tl": ZooEntry(_tl(_cnn("vgg16_features")), "3x128x128", frozen_prefix="backbone",
                         reference_gflops={"3x128x128": 10.02877}, note="Keras VGG16 include_top=False + GAP + Dense(1)"),
    "resnet50_tl": ZooEntry(_tl(_cnn("resnet50_features")), "3x128x128", frozen_prefix="backbone",
                            reference_gflops={"3x128x128": 2.52438}, note="Keras ResNet50 (v1) + GAP + Dense(1)"),
    "mobilenet_v2_a05_tl": ZooEntry(_tl(_cnn("mobilenet_v2_features", alpha=0.5), hidden=(512,)), "3x128x128",
                                    frozen_prefix="backbone", reference_gflops={"3x128x128": 0.064028},
                                    note="Keras MobileNetV2 alpha 0.5 + GAP + Dense(512) + Dense(1)"),
    "nasnet_mobile_tl": ZooEntry(_tl(_cnn("nasnet_mobile_features")), "3x128x128", frozen_prefix="backbone",
                                 reference_gflops={"3x128x128": 0.371647, "3x224x224": 1.138},
                                 note="NASNet-A Mobile approximation (single-input cells), MACs matched"),
    "inception_v3_tl": ZooEntry(_tl(_cnn("inception_v3_features")), "3x224x224", frozen_prefix="backbone",
                                reference_gflops={"3x75x75": 0.4167, "3x128x128": 1.50256, "3x224x224": 5.89837},
                                note="Keras InceptionV3 include_top=False + GAP + Dense(classes)"),
    "resnet50": ZooEntry(_lazy("cnn", "resnet50"), "3x224x224", reference_gflops={"3x224x224": 7.72},
                         note="ResNet50 ImageNet, 1000 classes (Keras v1 strides; torchvision v1.5 = 8.18 GFLOPs)"),
    "shufflenet_v2_cifar": ZooEntry(_lazy("cnn", "shufflenet_v2_cifar"), "3x32x32",
                                    note="ShuffleNetV2 1.0x, CIFAR stem, 100 classes"),
    "deepspeech2": ZooEntry(_lazy("seq", "deepspeech2"), "161x1230", input_kind="spectrogram", revision=2,
                           note="deepspeech.pytorch BatchRNN: bi-LSTM directions summed, sequence-wise BN"),
    "ncf": ZooEntry(_lazy("seq", "ncf"), "2", input_kind="ids"),
    "bert_base_qa": ZooEntry(_lazy("seq", "bert_base", task="qa"), "seq384", input_kind="tokens", dynamic_seq=True),
    "bert_base_cls": ZooEntry(_lazy("seq", "bert_base", task="cls"), "seq128", input_kind="tokens",
                              dynamic_seq=True),
    "mayaki_bert": ZooEntry(_lazy("seq", "mayaki_transformer", kind="bert"), "seq512", input_kind="tokens",
                            dynamic_seq=True),
    "mayaki_gpt": ZooEntry(_lazy("seq", "mayaki_transformer", kind="gpt"), "seq512", input_kind="tokens",
                           dynamic_seq=True),
}


def parse_name(name: str) -> tuple[str, dict[str, int]]:
    """``"mayaki_bert?layers=4&d_model=512&heads=8"`` -> ``("mayaki_bert", {...})`` (a ``zoo:`` prefix is allowed)."""
    name = name[4:] if name.startswith("zoo:") else name
    base, _, query = name.partition("?")
    if base not in ZOO:
        import difflib

        close = difflib.get_close_matches(base, list(ZOO), n=3)
        raise InvalidInputError(f"unknown zoo model {base!r}; close: {close}; known: {sorted(ZOO)}.")
    try:
        kwargs = {k: int(v) for k, v in parse_qsl(query, strict_parsing=bool(query))}
    except ValueError as err:
        raise InvalidInputError(f"zoo model {name!r}: parameters must be k=<int> pairs joined by '&'.") from err
    return base, kwargs


def parse_shape(input_shape: str) -> list[int]:
    """``"3x224x224"`` -> [3, 224, 224]; ``"seq512"`` -> [512]."""
    text = input_shape[3:] if input_shape.startswith("seq") else input_shape
    try:
        return [int(x) for x in text.split("x")]
    except ValueError as err:
        raise InvalidInputError(f"input_shape {input_shape!r}: use 'CxHxW', 'FxT', 'N' or 'seq<N>'.") from err


def get_zoo_model(name: str, input_shape: str | None = None):
    """Build the module (random init, eval mode) and example inputs for a batch of 2 at ``input_shape``."""
    import torch

    base, kwargs = parse_name(name)
    entry = ZOO[base]
    shape = parse_shape(input_shape or entry.default_shape)
    torch.manual_seed(0)
    device = torch.device("meta" if entry.meta else "cpu")
    with device:
        module = entry.factory(**kwargs).eval()
    dtype = torch.long if entry.input_kind in ("tokens", "ids") else torch.float32
    return module, torch.zeros(2, *shape, dtype=dtype, device=device)


def _cache_key(name: str, input_shape: str) -> str:
    import onnx
    import torch

    base, kwargs = parse_name(name)
    entry = ZOO[base]
    shape = "seq*" if entry.dynamic_seq else input_shape
    parts = [ZOO_VERSION, base, sorted(kwargs.items()), shape, EXPORT_OPSET, torch.__version__, onnx.__version__]
    if not entry.meta:  # (meta entries always were) exported as featurize.torch_export exports a user's module
        parts.append("eval-unoptimized")  # eval mode, exporter optimizer off: BatchNorm kept, as training runs it
    if entry.revision:
        parts.append(f"rev{entry.revision}")
    blob = json.dumps(parts)
    return f"{base}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def export_onnx(name: str, input_shape: str | None = None, cache_dir: Path | None = None) -> Path:
    """Export ``name`` at ``input_shape`` (batch dim symbolic ``batch``; token models also ``seq``) without weights.

    Returns the cached ``.onnx`` path. Initializers keep names (``backbone.…``) and shapes; their data is marked
    external in a file that is never written, so the graph stays small and ``featurize`` counts params from dims.
    """
    import warnings

    import onnx
    import torch
    from onnx.external_data_helper import set_external_data

    base, _ = parse_name(name)
    entry = ZOO[base]
    input_shape = input_shape or entry.default_shape
    cache_dir = Path(cache_dir or CACHE_DIR)
    out = cache_dir / f"{_cache_key(name, input_shape)}.onnx"
    if out.is_file():
        return out
    module, example = get_zoo_model(name, input_shape)
    batch = torch.export.Dim("batch", min=1, max=65536)
    dyn = {0: batch}
    if entry.dynamic_seq:
        dyn[1] = torch.export.Dim("seq", min=2, max=32768 if entry.meta else 4096)  # LLMs train at 8,192
    arg_name = list(__import__("inspect").signature(module.forward).parameters)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamo=True, opset_version=EXPORT_OPSET,
                                    optimize=False, external_data=False, verbose=False,
                                    dynamic_shapes={arg_name: dyn})
    if entry.meta:  # meta weights have no bytes: every initializer becomes a reference (featurize's own rule)
        from featurize.torch_export import _weightless_proto

        proto = _weightless_proto(program.model)
    else:
        proto = program.model_proto
    for init in proto.graph.initializer:
        if init.HasField("raw_data") or init.float_data or init.int64_data or init.int32_data:
            if len(init.dims) == 0 or int(__import__("math").prod(init.dims)) <= 16:
                continue  # keep tiny constants inline
            set_external_data(init, location=f"{out.stem}.weights.absent")
            init.ClearField("raw_data")
            del init.float_data[:]
            del init.int64_data[:]
            del init.int32_data[:]
            init.data_location = onnx.TensorProto.EXTERNAL
    proto.doc_string = f"joulecast zoo:{name} input {input_shape}; weightless export"
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
    os.close(fd)
    onnx.save_model(proto, tmp)
    os.replace(tmp, out)
    return out


def featurize_dims(name: str, input_shape: str | None, batch_size: int) -> dict[str, int]:
    """``dims=`` for :func:`featurize.featurize` on an :func:`export_onnx` graph."""
    base, _ = parse_name(name)
    entry = ZOO[base]
    dims = {"batch": int(batch_size)}
    if entry.dynamic_seq:
        dims["seq"] = parse_shape(input_shape or entry.default_shape)[0]
    return dims


def _eval_dim(expr: str, symbols: dict[str, int]) -> int | None:
    """Evaluate an exporter dim expression (``"4*batch"``, ``"seq*batch"``, ``"Max(1, seq - 1)"``) or None."""
    import ast
    import math
    import operator

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Div: operator.truediv, ast.Mod: operator.mod, ast.Pow: operator.pow}
    funcs = {"Max": max, "Min": min, "floor": math.floor, "ceiling": math.ceil, "FloorDiv": operator.floordiv,
             "CeilDiv": lambda a, b: -(-a // b), "Mod": operator.mod}

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            return symbols[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in funcs:
            return funcs[node.func.id](*[ev(a) for a in node.args])
        raise ValueError(expr)

    try:
        value = ev(ast.parse(expr, mode="eval"))
    except (ValueError, KeyError, SyntaxError, TypeError, ZeroDivisionError):
        return None
    return int(value) if float(value).is_integer() and value > 0 else None


def bind_export(path: Path, name: str, input_shape: str | None, batch_size: int):
    """Load an :func:`export_onnx` graph with its symbolic dims made concrete, including the exporter's composite
    ``value_info`` dims (``4*batch``, ``seq*batch``) that plain symbol binding leaves unknown -- without them ONNX shape
    inference cannot see through dynamic Reshapes and the featurizer would have to run the whole graph."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    symbols = featurize_dims(name, input_shape, batch_size)
    vis = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    for vi in vis:
        if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                value = _eval_dim(d.dim_param, symbols)
                if value is not None:
                    d.dim_value = value  # clears dim_param (oneof)
    fold_shape_chains(model)
    return model


def fold_shape_chains(model) -> int:
    """Replace dynamic ``Reshape``/``Expand`` target shapes that are computed from ``Shape`` ops by constants.

    Works on a graph whose inputs are already concrete: known tensor shapes come from ONNX inference, then the small
    integer subgraph (Shape, Gather, Slice, Concat, (Un)Squeeze, Reshape, Cast, arithmetic, Constant) is evaluated with
    numpy. Returns the number of targets folded. ONNX data propagation stops at some of these ops (e.g. Reshape of a
    shape value), which otherwise leaves the LSTM/attention reshapes of exported graphs without shapes.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    shapes = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") and d.dim_value > 0 for d in tt.shape.dim):
            shapes[vi.name] = [d.dim_value for d in tt.shape.dim]
    vals: dict[str, np.ndarray] = {}
    for init in model.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL and init.data_type in (6, 7) and len(init.dims) <= 1:
            vals[init.name] = numpy_helper.to_array(init)
    attrs = lambda n: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}  # noqa: E731
    arith = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.floor_divide, "Max": np.maximum,
             "Min": np.minimum}
    folded, counter = 0, 0
    for node in model.graph.node:
        a, ins = attrs(node), list(node.input)
        have = all(i in vals for i in ins if i)
        out = None
        try:
            if node.op_type == "Constant" and "value" in a:
                out = numpy_helper.to_array(a["value"])
            elif node.op_type == "Shape" and ins[0] in shapes:
                out = np.array(shapes[ins[0]], dtype=np.int64)[a.get("start", 0):a.get("end", None)]
            elif not have:
                out = None
            elif node.op_type == "Gather":
                out = np.take(vals[ins[0]], vals[ins[1]], axis=a.get("axis", 0))
            elif node.op_type == "Concat":
                out = np.concatenate([np.atleast_1d(vals[i]) for i in ins], axis=a.get("axis", 0))
            elif node.op_type == "Unsqueeze":
                out = np.expand_dims(vals[ins[0]], tuple(int(x) for x in vals[ins[1]]))
            elif node.op_type == "Squeeze":
                out = np.squeeze(vals[ins[0]], tuple(int(x) for x in vals[ins[1]])) if len(ins) > 1 else \
                    np.squeeze(vals[ins[0]])
            elif node.op_type == "Reshape":
                out = vals[ins[0]].reshape([int(x) for x in vals[ins[1]]])
            elif node.op_type == "Cast":
                out = vals[ins[0]].astype(np.int64)
            elif node.op_type in arith:
                out = arith[node.op_type](vals[ins[0]], vals[ins[1]])
            elif node.op_type == "Slice":
                starts, ends = vals[ins[1]], vals[ins[2]]
                axes = vals[ins[3]] if len(ins) > 3 and ins[3] else range(len(starts))
                steps = vals[ins[4]] if len(ins) > 4 and ins[4] else [1] * len(starts)
                sl = [slice(None)] * vals[ins[0]].ndim
                for s, e, ax, st in zip(starts, ends, axes, steps):
                    sl[int(ax)] = slice(int(s), int(e), int(st))
                out = vals[ins[0]][tuple(sl)]
        except Exception:  # noqa: BLE001 - anything odd just stays dynamic
            out = None
        if out is not None and out.size <= 64 and np.issubdtype(out.dtype, np.integer):
            vals[node.output[0]] = out.astype(np.int64)
        if node.op_type in ("Reshape", "Expand") and len(ins) > 1 and ins[1] in vals and \
                not any(isinstance(n, str) and n == ins[1] for n in (i.name for i in model.graph.initializer)):
            counter += 1
            name = f"_jc_shape_{counter}"
            model.graph.initializer.append(numpy_helper.from_array(vals[ins[1]].astype(np.int64), name))
            node.input[1] = name
            folded += 1
    return folded


def _merge_catalog() -> None:
    from training_data.zoo.catalog import ENTRIES

    ZOO.update(ENTRIES)


_merge_catalog()
