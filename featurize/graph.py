"""Graph featurizer: a model graph in, :class:`~featurize.types.GraphFeatures` out.

Public entry point: :func:`featurize`. Pipeline: load without weights (:mod:`featurize.loader`) ->
bind symbolic dims -> strict shape inference -> one pass over the nodes through the op-handler
registry (:mod:`featurize.ops`) -> graph-level features. Plain lists and dicts in the hot path; the
``nodes`` DataFrame is built from the per-node row tuples only when first read (``LazyNodes``).

Conventions (all graph-level counts are per sample = total at the evaluated batch / that batch):

* Evaluated batch ``B_eval``: the first dim of the first activation input after binding (a symbolic
  first dim is bound to ``batch_size``; a graph exported with a fixed batch is evaluated at that
  batch). Per-sample values divide by ``B_eval``; per-node working sets are scaled to ``batch_size``.
* Weights: float constants with more than one element (initializers, Constant / ConstantOfShape
  outputs, weight-like graph inputs) and constants derived from them only. ``params`` counts those
  used in parameter slots; BatchNorm running mean/variance are buffers (in ``weight_bytes`` only).
  Nodes whose inputs are all constant are folded: class ``constant``, no cost.
* Backward: ``requires_grad`` flows from trainable parameters downstream. A MAC op costs
  ``2 * MACs`` per gradient it must produce (input gradient when an activation input requires grad,
  weight gradient when its weights are trainable; attention matmuls one per activation operand); a
  non-MAC op costs 1x its forward FLOPs when any input requires grad. So trainable weight ops cost 2x
  forward, frozen ones 1x downstream of a trainable layer, anything upstream of all trainable
  parameters 0, and the first trainable layer 1x (no gradient w.r.t. the data).
* Optimizer: :data:`OPTIMIZER_FLOPS_PER_PARAM` = 10 FLOPs per trainable parameter per step (Adam:
  two moment updates, bias correction, sqrt, divide, update), divided by ``batch_size``.
* ``activation_bytes``: unique storages some backward-region node saves for its backward pass, as PyTorch's
  autograd saves them (:mod:`featurize.saved`). ``peak_activation_bytes``: peak of live activations in a forward liveness
  pass in graph order (view ops alias their input; graph outputs stay live).
* ``depth``: longest path counted in weight-bearing MAC ops. ``n_nodes``: nodes that do work at
  run time (not folded constants or zero-cost views). ``frac_flops_elementwise``: share of forward
  FLOPs not from MACs.
"""

from __future__ import annotations

import math
import warnings
from collections import abc
from collections import Counter
from functools import partial
from typing import Any, Iterable, Mapping

import onnx
from onnx import TensorProto

from featurize.errors import GraphLoadError, InvalidInputError
from featurize.layer_profile import LayerProfile, prior_class
from featurize.limits import batch_cap_error, check_features, check_graph
from featurize.loader import NodeFields, ShapeMap, bind_input_dims, load_graph, node_fields, resolve_shapes
from featurize.ops import NodeView, OpCost, TensorInfo, handler_table, known_domains
from featurize.ops.sequence import SEQUENCE_OPS
from featurize.saved import SavedTensors

CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})  # costed from their subgraphs (featurize.control_flow)
from featurize.types import BYTES_PER_ELEMENT, PRECISIONS, GPUSpec, GraphFeatures, LazyNodes

__all__ = ["featurize", "OPTIMIZER_FLOPS_PER_PARAM", "WEIGHT_SLOTS"]

OPTIMIZER_FLOPS_PER_PARAM = 10.0

_FLOAT_TYPES = frozenset(
    {
        TensorProto.FLOAT,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
        TensorProto.DOUBLE,
        TensorProto.FLOAT8E4M3FN,
        TensorProto.FLOAT8E4M3FNUZ,
        TensorProto.FLOAT8E5M2,
        TensorProto.FLOAT8E5M2FNUZ,
    }
)
# Input slots that hold weights, per op: used to recognise weights passed as graph inputs.
WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    "Conv": frozenset({1, 2}),
    "ConvTranspose": frozenset({1, 2}),
    "Gemm": frozenset({1, 2}),
    "MatMul": frozenset({1}),
    "BatchNormalization": frozenset({1, 2, 3, 4}),
    "LayerNormalization": frozenset({1, 2}),
    "GroupNormalization": frozenset({1, 2}),
    "InstanceNormalization": frozenset({1, 2}),
    "LSTM": frozenset({1, 2, 3}),
    "GRU": frozenset({1, 2, 3}),
    "RNN": frozenset({1, 2, 3}),
    "PRelu": frozenset({1}),
    "QLinearConv": frozenset({3, 8}),
    "QLinearMatMul": frozenset({3}),
    "ConvInteger": frozenset({1}),
    "MatMulInteger": frozenset({1}),
}
# Integer element types of quantized weights: an initializer of these types with more than one element
# is a weight (int64/int32 constants are indices and shapes).
_QUANT_TYPES = frozenset({TensorProto.INT8, TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4})
_BUFFER_SLOTS: dict[str, frozenset[int]] = {"BatchNormalization": frozenset({3, 4})}
_ALIAS_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout"})
_MAC_CLASSES = ("conv", "matmul", "attention", "recurrent")
_NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"})
_VALUE_INPUTS: dict[str, tuple[int, ...]] = {"CastLike": (0,)}
"""Ops some of whose inputs are read for their element type only (CastLike's ``target_type``): the node is a
constant when its value inputs are. The dynamo exporter's zero bias of a bias-free convolution,
``Expand(CastLike(0, x), Shape(W))``, is then free, as it is in PyTorch (no kernel), instead of two launches per
convolution. (Shape/Size stay run-time: ``arange(x.shape[0])`` launches a kernel in eager PyTorch.)"""


def featurize(
    source: Any,
    *,
    batch_size: int | None = None,
    dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, Iterable[int]] | None = None,
    precision: str = "fp32",
    frozen: Iterable[str] | str | None = None,
    example_inputs: Any = None,
    gpu: GPUSpec | Mapping[str, float] | None = None,
    with_nodes: bool = True,
) -> GraphFeatures:
    """Architecture features of a model graph, per training sample.

    Args:
        source: ``.onnx`` path, ONNX bytes, ``onnx.ModelProto``, or ``torch.nn.Module`` (then
            ``example_inputs`` is required; exported through ``torch.onnx``). Weights are never read.
        batch_size: training batch size (> 0); binds a symbolic first input dim. None: the value ``dims`` gives
            that dim by name, else 1; a ``dims`` value for it that differs from ``batch_size`` is an error.
        dims: values for named symbolic dims, e.g. ``{"seq": 512}``.
        input_shapes: full shapes per graph input; override the declared shapes.
        precision: one of ``fp32, tf32, fp16, bf16, fp8``; sets bytes per float element.
        frozen: parameter-name prefixes (initializer names) that are not trained.
        example_inputs: tensor or tuple of tensors for a torch module.
        gpu: optional ``GPUSpec`` or ``{"l1_bytes":..., "l2_bytes":...}``; attaches cache features.
        with_nodes: build the per-node ``nodes`` DataFrame (default). ``False`` leaves ``nodes=None``
            (every graph-level feature and ``to_dict()`` unchanged): faster for batch scoring.

    Raises:
        GraphLoadError, UnboundDimensionError, InvalidInputError (all ``JoulecastError``).
    """
    batch_size = None if batch_size is None else _check_batch(batch_size)
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision={precision!r} is not supported; use one of {PRECISIONS}.")
    frozen_prefixes = _check_frozen(frozen)
    from_module = _is_torch_module(source)  # exported here in a way that keeps BatchNorm (no inference check)
    if from_module:
        from featurize.torch_export import export_module

        source = export_module(source, example_inputs)
    elif example_inputs is not None:
        raise InvalidInputError("example_inputs= is only used with a torch.nn.Module source; drop it.")
    model, nodes, inits, static, inputs, tied = load_graph(source)
    weight_inputs = _weight_like_inputs(model.graph, nodes, inits, static, inputs)
    binding = bind_input_dims(
        model, batch_size=batch_size, dims=dims, input_shapes=input_shapes, skip=weight_inputs,
        initializers=inits, static_inputs=static, inputs=inputs,
    )
    bound, batch_size = binding.shapes, binding.batch_size
    if input_shapes:
        static = {k: v for k, v in static.items() if k not in input_shapes}
    try:
        check_graph(model, bound)  # element/byte caps and attribute sanity before shape inference (limits)
        shapes = resolve_shapes(
            model, batch_positions=binding.batch_positions, nodes=nodes, initializers=inits, known_inputs=static
        )
    except GraphLoadError as err:  # a tensor over the caps because of the batch: say so (limits)
        batched = {k: bound[k] for k in binding.batch_positions if k in bound}
        raise batch_cap_error(err, batch_size, batched) from err
    need_nodes = with_nodes or gpu is not None  # cache features walk the node table
    features = _analyse(
        model, nodes, shapes, weight_inputs, bound, batch_size, precision, frozen_prefixes, need_nodes, list(inits),
        [name for name, _ in inputs], tied,
    )
    check_features(features.to_dict())  # no NaN/inf/negative count leaves the featurizer (limits)
    if not from_module:
        features = _note_inference_export(features, nodes)
    if gpu is not None:
        from dataclasses import replace

        from featurize.cache import cache_features

        features = replace(features, cache_features=cache_features(features, gpu))
        if not with_nodes:
            features = replace(features, nodes=None)
    return features


def _note_inference_export(features: GraphFeatures, nodes: list[NodeFields]) -> GraphFeatures:
    """``features`` with the inference-mode-export warning added (and raised) when the graph looks like one."""
    from dataclasses import replace

    from featurize.export_mode import inference_export_note

    note = inference_export_note({n.op_type for n in nodes if not n.domain or n.domain == "ai.onnx"})
    if note is None:
        return features
    warnings.warn(note, stacklevel=3)
    return replace(features, warnings=(*features.warnings, note))


def _check_batch(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}; pass e.g. batch_size=32.")
    return batch_size


def _check_frozen(frozen: Any) -> tuple[str, ...]:
    if frozen is None:
        return ()
    out = (frozen,) if isinstance(frozen, str) else tuple(frozen)
    if not all(isinstance(p, str) for p in out):
        raise InvalidInputError("frozen= must be a parameter-name prefix or a list of them (strings).")
    if any(not p for p in out):
        raise InvalidInputError(
            "frozen= contains an empty prefix, which would match every parameter (nothing trained); pass the "
            "prefixes of the frozen parameters (e.g. frozen=['backbone.']), or frozen=None to train everything."
        )
    return out


def _check_frozen_matches(frozen: tuple[str, ...], param_names: Any) -> None:
    """Every frozen prefix must name at least one parameter: a typo would silently train everything."""
    unmatched = [p for p in frozen if not any(n.startswith(p) for n in param_names)]
    if unmatched:
        names = sorted(param_names)
        shown = ", ".join(repr(n) for n in names[:6]) + (f" ... ({len(names)} in all)" if len(names) > 6 else "")
        raise InvalidInputError(
            f"frozen prefix(es) {unmatched} match no parameter of the graph; its parameter names are "
            f"{shown or '(none)'}. Pass prefixes of those names (featurize(...).nodes lists them per node)."
        )


def _is_torch_module(obj: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(obj).__mro__)


def _weight_like_inputs(
    graph: onnx.GraphProto, nodes: list[NodeFields] | None = None, inits: Any = None,
    static: Mapping[str, tuple[tuple[int, ...], int]] | None = None,
    inputs: list[tuple[str, onnx.ValueInfoProto]] | None = None,
) -> frozenset[str]:
    """Graph inputs (not initializers) that look like weights passed as inputs (export_params=False).

    Initializer-like: fully static float shape (no symbolic dim), fed only into weight slots of
    weight-bearing ops (:data:`WEIGHT_SLOTS`; for MatMul only a rank-2 second operand), never the first
    graph input. ``inits`` / ``static``: :attr:`~featurize.loader.LoadedGraph.initializers` /
    ``.static_inputs`` when known; ``inputs``: :attr:`~featurize.loader.LoadedGraph.inputs` when known.
    """
    if inits is None:
        inits = {i.name for i in graph.initializer}
    known = static or {}
    real = inputs if inputs is not None else [(vi.name, vi) for vi in graph.input if vi.name not in inits]
    candidates = {}
    for name, vi in real[1:]:
        entry = known.get(name)
        if entry is not None:  # all dims positive values
            if entry[1] in _FLOAT_TYPES:
                candidates[name] = len(entry[0])
            continue
        tt = vi.type.tensor_type  # a default (elem_type 0, no dims) when vi is not a tensor
        if tt.elem_type not in _FLOAT_TYPES:
            continue
        dims = tt.shape.dim
        values = [d.dim_value for d in dims]
        if values and min(values) > 0:
            static = True  # a positive dim_value is set
        else:
            static = vi.type.HasField("tensor_type") and tt.HasField("shape") and all(
                d.HasField("dim_value") for d in dims
            )
        if static:
            candidates[name] = len(values)
    if not candidates:
        return frozenset()
    ok: dict[str, bool] = {}
    if nodes is None:
        nodes = node_fields(graph)
    for node in nodes:
        if candidates.keys().isdisjoint(node.ins):
            continue
        slots = WEIGHT_SLOTS.get(node.op_type, frozenset())
        for i, name in enumerate(node.ins):
            if name in candidates:
                good = i in slots and not (node.op_type == "MatMul" and candidates[name] != 2)
                ok[name] = ok.get(name, True) and good
    return frozenset(n for n, v in ok.items() if v)


class _InfoCache(dict):
    """``{tensor name: TensorInfo}``, each built on first lookup (same fields as ``TensorInfo.make``)
    from the shape map, the constant set, the weight roots and the parameter leaves."""

    __slots__ = ("_const", "_elem_bytes", "_param_leaves", "_roots_get", "_shape_get")

    def __init__(self, shapes: ShapeMap, elem_bytes: int, const: set[str], roots: dict, param_leaves: set[str]):
        super().__init__()
        self._shape_get, self._elem_bytes, self._const = shapes.get, elem_bytes, const
        self._roots_get, self._param_leaves = roots.get, param_leaves

    def __missing__(self, name: str) -> TensorInfo:
        shape, elem = self._shape_get(name, _NO_SHAPE)
        r = self._roots_get(name)
        size = self._elem_bytes
        if elem not in _FLOAT_TYPES and elem != 0:
            size = _itemsize(elem, size)
        n = _prod(shape) if shape is not None else 0
        is_param = bool(r) and not self._param_leaves.isdisjoint(r)
        t = self[name] = _tnew(TensorInfo, (name, shape, size, name in self._const, bool(r), is_param, n, n * size))
        return t


class _LazyAttrs(abc.Mapping):
    """Attribute mapping decoded on first access (most handlers never read attributes).

    The featurizer's loop builds these with :func:`_lazy_attrs` (no Python ``__init__`` frame)."""

    __slots__ = ("_proto", "_d")

    def __init__(self, proto: onnx.NodeProto):
        self._proto = proto

    def _dict(self) -> dict[str, Any]:
        try:
            return self._d
        except AttributeError:  # first read: decode
            d = self._d = _attrs(self._proto)
            return d

    def __getitem__(self, key: str) -> Any:
        return self._dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._dict().get(key, default) if self._proto.attribute else default

    def __iter__(self):
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    if not node.attribute:
        return {}
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.INT:
            out[a.name] = a.i
        elif a.type == onnx.AttributeProto.INTS:
            out[a.name] = tuple(a.ints)
        elif a.type == onnx.AttributeProto.FLOAT:
            out[a.name] = a.f
        elif a.type == onnx.AttributeProto.STRING:
            out[a.name] = a.s.decode("utf-8", "replace")
        elif a.type == onnx.AttributeProto.FLOATS:
            out[a.name] = tuple(a.floats)
        else:
            out[a.name] = onnx.helper.get_attribute_value(a)
    return out


def _itemsize(elem: int, elem_bytes: int, _cache: dict[int, int] = {}) -> int:  # noqa: B006
    if elem in _FLOAT_TYPES or elem == 0:
        return elem_bytes
    size = _cache.get(elem)
    if size is None:
        try:
            size = onnx.helper.tensor_dtype_to_np_dtype(elem).itemsize
        except Exception:  # noqa: BLE001 - string/unknown types
            size = 8
        _cache[elem] = size
    return size


def _analyse(
    model: onnx.ModelProto,
    nodes: list[NodeFields],
    shapes: ShapeMap,
    weight_inputs: frozenset[str],
    bound: dict[str, list[int]],
    batch_size: int,
    precision: str,
    frozen: tuple[str, ...],
    with_nodes: bool = True,
    init_names: list[str] | None = None,
    input_names: list[str] | None = None,
    tied: Mapping[str, str] | None = None,
) -> GraphFeatures:
    """Graph-level features from the resolved shapes. ``init_names`` / ``input_names``: the initializer
    names and the non-initializer graph input names, in order (read from ``model`` when None)."""
    g = model.graph
    elem_bytes = BYTES_PER_ELEMENT[precision]
    shape_get = shapes.get
    if init_names is None:
        init_names = [i.name for i in g.initializer]

    # --- constants, weight roots, parameter vs buffer use (one pass in graph order) ---------------
    const: set[str] = set(init_names)
    roots: dict[str, tuple[str, ...]] = {}  # const tensor -> weight leaves it derives from
    roots_get = roots.get
    leaf_numel: dict[str, int] = {}

    prod = math.prod

    def add_leaf(name: str) -> None:
        shape, elem = shape_get(name, _NO_SHAPE)
        if shape is None or (elem not in _FLOAT_TYPES and elem not in _QUANT_TYPES):
            return
        n = prod(shape)
        if n > 1:
            roots[name] = (name,)
            leaf_numel[name] = n

    for name in init_names:
        add_leaf(name)
    for copy, orig in (tied or {}).items():  # a transposed copy of a weight is that weight (tied LM head)
        if copy in leaf_numel and orig in leaf_numel:
            del leaf_numel[copy]
            roots[copy] = (orig,)
    for name in weight_inputs:
        const.add(name)
        add_leaf(name)
    # a leaf is a parameter if some run-time node uses it outside a buffer slot
    param_leaves: set[str] = set()
    used_leaves: set[str] = set()
    node_const: list[bool] = []
    all_const = const.issuperset
    for _, op, _, node_ins, node_outs, _ in nodes:
        value_ins = node_ins if op not in _VALUE_INPUTS else [node_ins[i] for i in _VALUE_INPUTS[op]
                                                                 if i < len(node_ins)]
        is_const = op not in _NONDETERMINISTIC and op not in CONTROL_FLOW_OPS and (  # bodies read outer tensors
            all_const(value_ins) or ("" in value_ins and all(x in const for x in value_ins if x))
        )
        node_const.append(is_const)
        if is_const:
            const.update(node_outs)
            if op == "Constant" or op == "ConstantOfShape":
                for o in node_outs:
                    add_leaf(o)
            else:
                derived = tuple(dict.fromkeys(r for x in node_ins if x for r in roots_get(x, ())))
                if derived:
                    for o in node_outs:
                        roots[o] = derived
            continue
        buf = _BUFFER_SLOTS.get(op)
        for i, x in enumerate(node_ins):
            r = roots_get(x)
            if r:
                used_leaves.update(r)
                if buf is None or i not in buf:
                    param_leaves.update(r)
    trainable_leaves = {n for n in param_leaves if not (frozen and n.startswith(frozen))}
    _check_frozen_matches(frozen, param_leaves)
    params = sum(leaf_numel[n] for n in param_leaves)
    trainable_params = sum(leaf_numel[n] for n in trainable_leaves)
    weight_bytes = sum(leaf_numel[n] for n in used_leaves) * elem_bytes

    # --- evaluated batch ------------------------------------------------------------------------
    b_eval = batch_size
    for name, shape in bound.items():  # bound: the non-initializer graph inputs, in graph order
        if shape and name not in weight_inputs:
            b_eval = shape[0]
            break
    if input_names is None:
        init_set = set(init_names)
        input_names = [vi.name for vi in g.input if vi.name not in init_set]
    graph_inputs = [name for name in input_names if name not in weight_inputs]
    ws_scale = batch_size / b_eval

    # --- per-node pass --------------------------------------------------------------------------
    tnew = _tnew
    empty = TensorInfo("", (), 0)
    infos = _InfoCache(shapes, elem_bytes, const, roots, param_leaves)  # name -> TensorInfo, built on first use
    infos[""] = empty  # a missing optional input/output
    info_of = infos.__getitem__

    rows: list[tuple] = []  # one per node, only when the node table is wanted
    prof: list[tuple] = []  # (prior class, flops, bytes, bytes written) per kernel-launching node: the layer profile
    n_work = 0  # nodes that do work at run time
    unsupported: Counter[str] = Counter()
    unknown_domains: set[str] = set()
    failed: list[str] = []
    unknown_shapes: Counter[str] = Counter()  # op type -> nodes costed with a tensor of unknown shape
    first_unknown = ""
    requires_grad: set[str] = set(trainable_leaves)
    if trainable_leaves:
        for x, r in roots.items():
            if not trainable_leaves.isdisjoint(r):
                requires_grad.add(x)
    saved = SavedTensors()
    tot_macs = tot_flops = tot_bwd = tot_bytes = tot_wbytes = 0.0
    cls_macs: Counter[str] = Counter()
    nonmac_flops = 0.0
    max_ws = 0.0
    depth_of: dict[str, int] = {}
    depth_get = depth_of.get
    max_depth = 0
    handlers = handler_table()
    flow_notes: list[str] = []
    if any(n.op_type in CONTROL_FLOW_OPS for n in nodes):
        handlers = {**handlers, **_flow_handlers(model, shapes, precision, flow_notes)}
    new_object, set_proto = object.__new__, _LazyAttrs._proto.__set__  # _LazyAttrs(proto) without its __init__ frame
    # liveness bookkeeping (forward pass in graph order): storage a tensor aliases, last node reading it
    storage: dict[str, str] = {name: name for name in graph_inputs}
    storage_get = storage.get
    last_use: dict[str, int] = {}
    new_bytes: list[tuple[int, int]] = []  # (node index, bytes of fresh outputs) of run-time nodes

    for idx, (name, op, dom, node_ins, node_outs, proto) in enumerate(nodes):
        if dom == "ai.onnx":
            dom = ""
        outs = tuple(map(info_of, node_outs))
        if node_const[idx]:
            if with_nodes:
                name = name or f"{op}_{idx}"
                rows.append((name, op, dom, "constant", outs, 0.0, 0.0, 0, 0.0, 0.0, 0.0, False, 0.0, (), (), node_outs,
                             ""))
            continue
        ins = tuple(map(info_of, node_ins))
        # one pass over the inputs: liveness (last read of a storage), weights, activations,
        # gradients, depth, unknown shapes
        w_bytes = bytes_in = w_params = 0
        w_trainable = unknown = False
        acts: list[str] = []  # activation inputs: names, and their bytes
        act_bytes: list[int] = []
        n_act_rg = 0
        d_in = 0
        for t in ins:
            t_name, shape, _, is_const, is_weight, is_param, numel, nbytes = t
            if not t_name:
                continue
            st = storage_get(t_name)
            if st is not None:
                last_use[st] = idx
            bytes_in += nbytes
            if shape is None:
                unknown = True
            if is_weight:
                w_bytes += nbytes
                if is_param:
                    w_params += numel
                if t_name in requires_grad:
                    w_trainable = True
            elif not is_const:
                acts.append(t_name)
                act_bytes.append(nbytes)
                if t_name in requires_grad:
                    n_act_rg += 1
                dd = depth_get(t_name, 0)
                if dd > d_in:
                    d_in = dd
        # liveness: where the outputs live (a view op's first output aliases its input's storage)
        src = storage_get(node_ins[0]) if node_ins and op in _ALIAS_OPS else None
        fresh = bytes_out = 0
        for i, t in enumerate(outs):
            o = t.name
            nbytes = t.nbytes
            bytes_out += nbytes
            if o:
                if src is not None and i == 0:
                    storage[o] = src
                    last_use.setdefault(src, idx)
                else:
                    storage[o] = o
                    last_use.setdefault(o, idx)
                    fresh += nbytes
        new_bytes.append((idx, fresh))
        name = name or f"{op}_{idx}"
        handler = handlers.get((dom, op))
        if handler is None:
            unsupported[op if not dom else f"{dom}::{op}"] += 1
            if dom not in known_domains():
                unknown_domains.add(dom)
            cost = OpCost(bytes_read=float(bytes_in), bytes_written=float(bytes_out), op_class="unsupported")
        else:
            if (unknown or (outs and outs[0].shape is None)) and op not in SEQUENCE_OPS:
                unknown_shapes[op] += 1
                first_unknown = first_unknown or f"{name} ({op})"
            attrs = new_object(_LazyAttrs)
            set_proto(attrs, proto)
            view = tnew(NodeView, (name, op, dom, ins, outs, attrs, bytes_in, bytes_out, w_params))
            try:
                cost = handler(view)
            except Exception as err:  # noqa: BLE001 - a handler must never abort featurization
                failed.append(f"{name} ({op}): {type(err).__name__}: {err}")
                unsupported[op if not dom else f"{dom}::{op}"] += 1
                cost = OpCost(op_class="unsupported")
        cls, macs, flops, br, bw = cost.op_class, cost.macs, cost.flops, cost.bytes_read, cost.bytes_written
        tot_macs += macs
        tot_flops += flops
        tot_bytes += br + bw
        if macs:
            cls_macs[cls] += macs
        nonmac_flops += flops - 2.0 * macs
        # working set at the training batch size: weights + activations (scaled)
        if cls == "zero" or cls == "constant":
            ws = w = 0.0
        else:
            n_work += 1
            w = float(min(w_bytes, br))
            ws = w + (br + bw - w) * ws_scale
        pcls = prior_class(cls, op)
        if pcls:
            prof.append((pcls, flops, br + bw, bw))
        if with_nodes:
            rows.append((
                name, op, dom, cls, outs, macs, flops, cost.params, br, bw, ws, w_trainable, w,
                acts, act_bytes, node_outs,  # act_bytes scaled by ws_scale when the table is built
                _module_path(ins, roots_get) if w_bytes else "",
            ))
        tot_wbytes += w
        if ws > max_ws:
            max_ws = ws
        # backward
        if n_act_rg or w_trainable:
            if macs:
                n_grads = (n_act_rg if cls == "attention" else min(n_act_rg, 1)) + int(w_trainable)
                tot_bwd += 2.0 * macs * n_grads + (flops - 2.0 * macs)
            else:
                tot_bwd += flops
            if op != "CastLike" or node_ins[0] in requires_grad:  # CastLike's 2nd input is a type, not a value
                for t in outs:
                    if t.name and t.itemsize == elem_bytes:
                        requires_grad.add(t.name)
            saved.node(op, cls, ins, acts, outs, w_trainable, requires_grad)
        # depth in weight-bearing MAC ops
        d = d_in + 1 if (macs and cost.params) else d_in
        for o in node_outs:
            if o:
                depth_of[o] = d
        if d > max_depth:
            max_depth = d

    # --- liveness: peak live activation bytes during forward ------------------------------------
    for vi in g.output:
        st = storage_get(vi.name)
        if st is not None:
            last_use[st] = len(nodes)
    live = sum(info_of(x).nbytes for x in graph_inputs)
    peak = _peak_live_bytes(live, new_bytes, last_use, lambda x: info_of(x).nbytes)

    notes: list[str] = list(flow_notes)
    if unsupported or failed:
        msg = "featurize: ops without a cost handler were counted as zero FLOPs: " + ", ".join(
            f"{k} x{v}" for k, v in sorted(unsupported.items())
        )
        if unknown_domains:
            msg += f". Domain(s) {sorted(unknown_domains)} have no registered ops at all"
        if failed:
            msg += f". Handler errors: {failed[:3]}"
        msg += ". Register a handler with featurize.ops.register(op_type, domain=...) to cost them."
        notes.append(msg)
    if unknown_shapes:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(unknown_shapes.items()))
        notes.append(
            f"featurize: {sum(unknown_shapes.values())} node(s) have tensors of unknown shape after constant "
            f"folding and shape inference ({ops}; first: {first_unknown}); their cost counts the known dimensions "
            "only, so the estimate may be far too low: bind the inputs with dims= / input_shapes= or export the "
            "graph with static shapes."
        )
    for msg in notes:
        warnings.warn(msg, stacklevel=3)

    per = 1.0 / b_eval
    flops_forward = tot_flops * per
    flops_backward = tot_bwd * per
    flops_optimizer = OPTIMIZER_FLOPS_PER_PARAM * trainable_params / batch_size
    # weights are read once per step whatever the batch: amortise them over the training batch
    bytes_moved = (tot_bytes - tot_wbytes) * per + tot_wbytes / batch_size
    act_bytes = saved.nbytes(info_of, storage_get) * per
    return GraphFeatures(
        params=int(params),
        trainable_params=int(trainable_params),
        macs_forward=tot_macs * per,
        flops_forward=flops_forward,
        flops_backward=flops_backward,
        flops_optimizer=flops_optimizer,
        flops_train=flops_forward + flops_backward + flops_optimizer,
        activation_bytes=float(act_bytes),
        peak_activation_bytes=float(peak) * per,
        weight_bytes=float(weight_bytes),
        bytes_moved_forward=bytes_moved,
        depth=int(max_depth),
        n_nodes=n_work,
        frac_macs_conv=_frac(cls_macs["conv"], tot_macs),
        frac_macs_matmul=_frac(cls_macs["matmul"], tot_macs),
        frac_macs_attention=_frac(cls_macs["attention"], tot_macs),
        frac_macs_recurrent=_frac(cls_macs["recurrent"], tot_macs),
        frac_flops_elementwise=_frac(nonmac_flops, tot_flops),
        arithmetic_intensity=_frac(flops_forward, bytes_moved),
        max_layer_working_set_bytes=float(max_ws),
        batch_size=batch_size,
        precision=precision,
        unsupported_ops=dict(unsupported),
        nodes=LazyNodes(partial(_nodes_frame, rows, ws_scale)) if with_nodes else None,
        layer_profile=LayerProfile.build(*(list(c) for c in zip(*prof)), b_eval) if prof else
        LayerProfile.build([], [], [], [], b_eval),
        input_shapes={k: v for k, v in bound.items() if k not in weight_inputs},
        graph_name=g.name,
        warnings=tuple(notes),
    )


def _flow_handlers(model: onnx.ModelProto, shapes: ShapeMap, precision: str, notes: list[str]) -> dict:
    """Handlers for If / Loop / Scan bound to this graph's shapes (:mod:`featurize.control_flow`); what
    they state goes into ``notes``."""
    from featurize.control_flow import OuterConstants, control_flow_cost

    outer = OuterConstants(model.graph)

    def handle(view: NodeView) -> OpCost:
        cost, note = control_flow_cost(view, view.attrs._proto, shapes, model.graph, model.opset_import, precision,
                                       outer)
        if note:
            notes.append(f"featurize: {note}")
        return cost

    return {("", op): handle for op in CONTROL_FLOW_OPS}


_NO_SHAPE = (None, 0)
_tnew = tuple.__new__  # builds a NamedTuple without its Python-level __new__
_prod = math.prod


_NODE_COLUMNS = (
    "name", "op_type", "domain", "op_class", "output_shapes", "macs", "flops", "params", "bytes_read",
    "bytes_written", "working_set_bytes", "trainable", "weight_bytes", "act_inputs", "act_input_bytes", "outputs",
    "module",
)


def _module_path(ins: tuple, roots_get: Any) -> str:
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


def _nodes_frame(rows: list[tuple], ws_scale: float = 1.0):
    """The per-node DataFrame (:data:`_NODE_COLUMNS`) from the node loop's row tuples (their
    ``act_inputs`` / ``act_input_bytes`` are lists; the bytes at the evaluated batch, scaled here by
    ``ws_scale`` to the training batch)."""
    import pandas as pd

    cols = list(zip(*rows)) if rows else [()] * len(_NODE_COLUMNS)
    data = dict(zip(_NODE_COLUMNS, map(list, cols)))
    data["act_inputs"] = [tuple(a) for a in cols[13]]
    data["act_input_bytes"] = [tuple([b * ws_scale for b in a]) for a in cols[14]]
    data["output_shapes"] = [[list(t.shape) if t.shape is not None else None for t in outs] for outs in cols[4]]
    data["outputs"] = [tuple(o) for o in cols[15]]
    return pd.DataFrame(data, columns=list(_NODE_COLUMNS))


def _frac(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def _peak_live_bytes(live: int, new_bytes: list[tuple[int, int]], last_use: dict[str, int], nbytes) -> float:
    """Peak sum of live activation bytes, walking the run-time nodes in graph (topological) order.

    ``live``: bytes of the activation graph inputs; ``new_bytes``: ``(node index, bytes of the outputs
    that own a new storage)`` per run-time node (view ops alias their input); ``last_use``: storage ->
    index of the last node touching it (``len(nodes)`` for graph outputs, which stay live). A storage
    is freed right after its last use.
    """
    free_at: dict[int, list[str]] = {}
    for st, i in last_use.items():
        free_at.setdefault(i, []).append(st)
    peak = live
    for idx, fresh in new_bytes:
        live += fresh
        if live > peak:
            peak = live
        for st in free_at.get(idx, ()):
            live -= nbytes(st)
    return float(peak)
