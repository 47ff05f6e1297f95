"""Graph featurizer: a model graph in, :class:`~featurize.types.GraphFeatures` out.

Public entry point: :func:`featurize`. Pipeline: load without weights (:mod:`featurize.graph.load`) ->
bind symbolic dims (:mod:`featurize.graph.bind`) -> strict shape inference (:mod:`featurize.graph.shapes`) -> the
constant pass (:mod:`featurize.graph.weights`) -> one walk over the nodes through the op-handler registry
(:mod:`featurize.ops`), feeding the liveness (:mod:`featurize.graph.memory`) and backward
(:mod:`featurize.graph.backward`) accumulators -> graph-level features. Plain lists and dicts in the hot path; the
``nodes`` DataFrame is built from the per-node row tuples only when first read (``LazyNodes``,
:mod:`featurize.graph.node_table`).

Conventions (all graph-level counts are per sample = total at the evaluated batch / that batch):

* Evaluated batch ``B_eval``: the first dim of the first activation input after binding (a symbolic
  first dim is bound to ``batch_size``; a graph exported with a fixed batch is evaluated at that
  batch). Per-sample values divide by ``B_eval``; per-node working sets are scaled to ``batch_size``.
* Weights, parameters and buffers: :mod:`featurize.graph.weights`. Backward FLOPs: :mod:`featurize.graph.backward`.
* Optimizer: :data:`featurize.graph.totals.OPTIMIZER_FLOPS_PER_PARAM` = 10 FLOPs per trainable parameter per step (Adam:
  two moment updates, bias correction, sqrt, divide, update), divided by ``batch_size``.
* ``activation_bytes``: unique storages some backward-region node saves for its backward pass, as PyTorch's
  autograd saves them (:mod:`featurize.graph.saved`). ``peak_activation_bytes``: peak of live activations in a
  forward liveness pass in graph order (:mod:`featurize.graph.memory`).
* ``depth``: longest path counted in weight-bearing MAC ops. ``n_nodes``: nodes that do work at
  run time (not folded constants or zero-cost views). ``frac_flops_elementwise``: share of forward
  FLOPs not from MACs.
"""

from __future__ import annotations

import warnings
from collections import Counter
from functools import partial
from typing import Any, Iterable, Mapping

import onnx

from featurize.errors import GraphLoadError, InvalidInputError
from featurize.graph.backward import Backward
from featurize.graph.bind import bind_input_dims
from featurize.graph.limits import batch_cap_error, check_features, check_graph
from featurize.graph.load import NodeFields, ShapeMap, load_graph
from featurize.graph.memory import Liveness
from featurize.graph.node_table import module_path, nodes_frame
from featurize.graph.shapes import resolve_shapes
from featurize.graph.torch_export import export_module, is_torch_module
from featurize.graph.totals import Totals, graph_features, walk_notes
from featurize.graph.views import InfoCache, LazyAttrs, tnew
from featurize.layer_profile import LayerProfile, prior_class
from featurize.graph.weights import CONTROL_FLOW_OPS, Weights, check_frozen, weight_like_inputs, weight_roots
from featurize.ops import NodeView, OpCost, TensorInfo, handler_table, known_domains
from featurize.ops.sequence import SEQUENCE_OPS
from featurize.types import BYTES_PER_ELEMENT, GPUSpec, GraphFeatures, LazyNodes, check_precision

__all__ = ["featurize"]


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
    check_precision(precision)
    frozen_prefixes = check_frozen(frozen)
    from_module = is_torch_module(source)  # exported here in a way that keeps BatchNorm (no inference check)
    if from_module:
        source = export_module(source, example_inputs)
    elif example_inputs is not None:
        raise InvalidInputError("example_inputs= is only used with a torch.nn.Module source; drop it.")
    model, nodes, inits, static, inputs, tied = load_graph(source)
    weight_inputs = weight_like_inputs(model.graph, nodes, inits, static, inputs)
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
    return _with_cache_features(features, gpu, with_nodes) if gpu is not None else features


def _with_cache_features(features: GraphFeatures, gpu: Any, with_nodes: bool) -> GraphFeatures:
    from dataclasses import replace

    from featurize.graph.cache import cache_features

    features = replace(features, cache_features=cache_features(features, gpu))
    return features if with_nodes else replace(features, nodes=None)


def _note_inference_export(features: GraphFeatures, nodes: list[NodeFields]) -> GraphFeatures:
    """``features`` with the inference-mode-export warning added (and raised) when the graph looks like one."""
    from dataclasses import replace

    from featurize.graph.export_mode import inference_export_note

    note = inference_export_note({n.op_type for n in nodes if not n.domain or n.domain == "ai.onnx"})
    if note is None:
        return features
    warnings.warn(note, stacklevel=3)
    return replace(features, warnings=(*features.warnings, note))


def _check_batch(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}; pass e.g. batch_size=32.")
    return batch_size


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
    if init_names is None:
        init_names = [i.name for i in g.initializer]
    w = weight_roots(nodes, shapes, init_names, weight_inputs, tied, frozen)
    if input_names is None:
        init_set = set(init_names)
        input_names = [vi.name for vi in g.input if vi.name not in init_set]
    graph_inputs = [name for name in input_names if name not in weight_inputs]
    b_eval = next((shape[0] for name, shape in bound.items() if shape and name not in weight_inputs), batch_size)
    infos = InfoCache(shapes, elem_bytes, w.const, w.roots, w.param_leaves)  # name -> TensorInfo, on first use
    infos[""] = TensorInfo("", (), 0)  # a missing optional input/output
    info_of = infos.__getitem__
    flow_notes: list[str] = []
    handlers = handler_table()
    if any(n.op_type in CONTROL_FLOW_OPS for n in nodes):
        handlers = {**handlers, **_flow_handlers(model, shapes, precision, flow_notes)}
    liveness, backward = Liveness(graph_inputs), Backward(w.trainable_leaves, w.roots, elem_bytes)
    t = _walk(nodes, w, info_of, handlers, liveness, backward, batch_size / b_eval, with_nodes)
    peak = liveness.peak_bytes([vi.name for vi in g.output], len(nodes), sum(info_of(x).nbytes for x in graph_inputs),
                               lambda x: info_of(x).nbytes)
    notes = flow_notes + walk_notes(t)
    for msg in notes:
        warnings.warn(msg, stacklevel=3)
    per = 1.0 / b_eval
    profile = LayerProfile.build(*(list(c) for c in zip(*t.prof)), b_eval) if t.prof else \
        LayerProfile.build([], [], [], [], b_eval)
    return graph_features(t, w, per, batch_size, precision, elem_bytes, peak * per, profile,
                     backward.saved_bytes(info_of, liveness.storage.get) * per, backward.flops * per,
                     LazyNodes(partial(nodes_frame, t.rows, batch_size / b_eval)) if with_nodes else None,
                     {k: v for k, v in bound.items() if k not in weight_inputs}, g.name, notes)


def _walk(nodes: list[NodeFields], w: Weights, info_of: Any, handlers: dict, liveness: Liveness, backward: Backward,
          ws_scale: float, with_nodes: bool) -> Totals:
    """The one pass over the nodes: each handler's cost, the working sets, liveness reads, depth, and the backward
    accumulator for the backward region. Inline on purpose: this is the featurizer's hot loop."""
    t = Totals()
    rows: list[tuple] = []  # one per node, only when the node table is wanted
    prof: list[tuple] = []  # (prior class, flops, bytes, bytes written) per kernel-launching node: the layer profile
    n_work = 0  # nodes that do work at run time
    unsupported: Counter[str] = Counter()
    unknown_domains: set[str] = set()
    failed: list[str] = []
    unknown_shapes: Counter[str] = Counter()  # op type -> nodes costed with a tensor of unknown shape
    first_unknown = ""
    tot_macs = tot_flops = tot_bytes = tot_wbytes = nonmac_flops = max_ws = 0.0
    cls_macs: Counter[str] = Counter()
    depth_of: dict[str, int] = {}
    depth_get, max_depth = depth_of.get, 0
    requires_grad, node_const, roots_get = backward.requires_grad, w.node_const, w.roots.get
    storage_get, last_use, outputs = liveness.storage.get, liveness.last_use, liveness.outputs
    new_object, set_proto = object.__new__, LazyAttrs._proto.__set__  # LazyAttrs(proto) without its __init__ frame
    for idx, (name, op, dom, node_ins, node_outs, proto) in enumerate(nodes):
        if dom == "ai.onnx":
            dom = ""
        outs = tuple(map(info_of, node_outs))
        if node_const[idx]:
            if with_nodes:
                rows.append((name or f"{op}_{idx}", op, dom, "constant", outs, 0.0, 0.0, 0, 0.0, 0.0, 0.0, False, 0.0,
                             (), (), node_outs, ""))
            continue
        ins = tuple(map(info_of, node_ins))
        # one pass over the inputs: liveness (last read of a storage), weights, activations, gradients, depth
        w_bytes = bytes_in = w_params = 0
        w_trainable = unknown = False
        acts: list[str] = []  # activation inputs: names, and their bytes
        act_bytes: list[int] = []
        n_act_rg = d_in = 0
        for ti in ins:
            t_name, shape, _, is_const, is_weight, is_param, numel, nbytes = ti
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
        bytes_out = outputs(idx, op, node_ins, outs)
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
            attrs = new_object(LazyAttrs)
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
            ws = wb = 0.0
        else:
            n_work += 1
            wb = float(min(w_bytes, br))
            ws = wb + (br + bw - wb) * ws_scale
        pcls = prior_class(cls, op)
        if pcls:
            prof.append((pcls, flops, br + bw, bw))
        if with_nodes:
            rows.append((
                name, op, dom, cls, outs, macs, flops, cost.params, br, bw, ws, w_trainable, wb,
                acts, act_bytes, node_outs,  # act_bytes scaled by ws_scale when the table is built
                module_path(ins, roots_get) if w_bytes else "",
            ))
        tot_wbytes += wb
        if ws > max_ws:
            max_ws = ws
        if n_act_rg or w_trainable:
            backward.node(op, cls, macs, flops, ins, acts, outs, node_ins[0] if node_ins else "", w_trainable,
                          n_act_rg)
        d = d_in + 1 if (macs and cost.params) else d_in  # depth in weight-bearing MAC ops
        for o in node_outs:
            if o:
                depth_of[o] = d
        if d > max_depth:
            max_depth = d
    t.prof = prof
    t.rows, t.n_work, t.unsupported, t.unknown_domains, t.failed = rows, n_work, unsupported, unknown_domains, failed
    t.unknown_shapes, t.first_unknown, t.macs, t.flops, t.bytes = unknown_shapes, first_unknown, tot_macs, tot_flops, \
        tot_bytes
    t.wbytes, t.nonmac_flops, t.max_ws, t.cls_macs, t.max_depth = tot_wbytes, nonmac_flops, max_ws, cls_macs, max_depth
    return t


def _flow_handlers(model: onnx.ModelProto, shapes: ShapeMap, precision: str, notes: list[str]) -> dict:
    """Handlers for If / Loop / Scan bound to this graph's shapes (:mod:`featurize.graph.control_flow`; it costs a
    body with the featurizer handed in here); what they state goes into ``notes``."""
    from featurize.graph.control_flow import OuterConstants, control_flow_cost

    outer = OuterConstants(model.graph, featurize)

    def handle(view: NodeView) -> OpCost:
        cost, note = control_flow_cost(view, view.attrs._proto, shapes, model.graph, model.opset_import, precision,
                                       outer)
        if note:
            notes.append(f"featurize: {note}")
        return cost

    return {("", op): handle for op in CONTROL_FLOW_OPS}
