"""Control flow: cost ``If``, ``Loop`` and ``Scan`` nodes from their subgraphs.

Public entry point: :func:`control_flow_cost` (node + the outer graph's shapes -> ``(OpCost, note)``).
Each body is featurized as a graph of its own (its inputs and the outer-scope tensors it reads take
their resolved shapes; a leading ``[1]`` input pins the evaluated batch to 1 so counts are totals):

* ``If``: the more expensive branch (by forward FLOPs), stated in the note;
* ``Loop``: body x trip count when the trip count ``M`` is a constant; otherwise the body once, and the
  note (a warning on the result) names the node;
* ``Scan``: body x the length of the scanned axis of the first scan input.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import onnx
from onnx import helper, numpy_helper

from featurize.ops import NodeView, OpCost

__all__ = ["control_flow_cost", "CONTROL_FLOW_OPS", "OuterConstants"]

CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})
_PIN = "__joulecast_batch_pin__"


class OuterConstants:
    """The outer graph's initializer shapes and small integer constants, read once per graph (each control-flow
    node looks up its trip count and start values here; a scan of the whole graph per node is quadratic in a
    long chain of loops), and the costs of the bodies featurized so far (a body identical to an earlier one,
    with the same input shapes, is not featurized again)."""

    def __init__(self, graph: onnx.GraphProto, featurize: Any):
        self.graph = graph
        self.featurize = featurize  # the graph featurizer, handed in (this module sits below the walk)
        self._inits: dict[str, onnx.TensorProto] | None = None
        self._consts: dict[str, onnx.TensorProto] | None = None
        self.bodies: dict[tuple, tuple[OpCost, bool]] = {}

    def init_shape(self, name: str) -> tuple:
        """``(shape, elem_type)`` of an outer initializer (a loop-carried start value), ``(None, 0)`` if not one."""
        init = self._initializers().get(name)
        return (tuple(init.dims), init.data_type) if init is not None else (None, 0)

    def const_int(self, name: str) -> int | None:
        """The first value of the integer initializer or ``Constant`` named ``name``; None if not one."""
        if not name:
            return None
        init = self._initializers().get(name)
        if init is not None and (init.raw_data or init.int64_data or init.int32_data):
            return int(numpy_helper.to_array(init).reshape(-1)[0])
        if self._consts is None:
            self._consts = {n.output[0]: next((a.t for a in n.attribute if a.name == "value"), None)
                            for n in self.graph.node if n.op_type == "Constant" and n.output}
        if name in self._consts:
            t = self._consts[name]
            return int(numpy_helper.to_array(t).reshape(-1)[0]) if t is not None else None
        return None

    def _initializers(self) -> dict[str, onnx.TensorProto]:
        if self._inits is None:
            self._inits = {t.name: t for t in self.graph.initializer}
        return self._inits


def control_flow_cost(
    view: NodeView, proto: onnx.NodeProto, shapes: Mapping[str, tuple], graph: onnx.GraphProto,
    opsets: Any, precision: str, outer: OuterConstants,
) -> tuple[OpCost, str | None]:
    """``(cost, note)`` of a control-flow node; ``note`` is None when nothing needs stating. ``outer``: the
    :class:`OuterConstants` of ``graph`` shared by its control-flow nodes, with the featurizer that costs a body."""
    bodies = {a.name: a.g for a in proto.attribute if a.type == onnx.AttributeProto.GRAPH}
    name = view.name

    def _body(body, given, shapes, opsets, precision):
        return _body_cached(body, given, shapes, opsets, precision, outer.bodies, outer.featurize)

    if view.op_type == "If":
        costs = {k: _body(bodies[k], {}, shapes, opsets, precision) for k in ("then_branch", "else_branch")}
        pick = max(costs, key=lambda k: costs[k][0].flops)
        note = f"If {name!r}: costed as its more expensive branch ({pick})."
        return _scaled(view, costs[pick][0], 1), " ".join(filter(None, [note, _partial_note(view, costs[pick][1])]))
    body = bodies["body"]
    if view.op_type == "Loop":
        carried = {vi.name: shapes.get(x) or outer.init_shape(x) for vi, x in zip(body.input[2:], proto.input[2:])}
        trips = outer.const_int(proto.input[0] if proto.input else "")
        cost, unknown = _body(body, {**_scalars(body), **carried}, shapes, opsets, precision)
        note = _partial_note(view, unknown)
        if trips is None:
            return _scaled(view, cost, 1), " ".join(filter(None, [
                f"Loop {name!r}: trip count unknown (not a constant); costed as ONE iteration of its body.", note]))
        return _scaled(view, cost, trips), note
    n_scan = int(helper.get_attribute_value(next(a for a in proto.attribute if a.name == "num_scan_inputs")))
    n_state = len(proto.input) - n_scan
    axes = next((list(a.ints) for a in proto.attribute if a.name == "scan_input_axes"), [0] * n_scan)
    given: dict[str, tuple] = {}
    trips = 1
    for i, (vi, x) in enumerate(zip(body.input, proto.input)):
        shape, elem = shapes.get(x, (None, 0))
        if i >= n_state and shape is not None:
            axis = axes[i - n_state] % len(shape)
            trips = shape[axis] if i == n_state else trips
            shape = shape[:axis] + shape[axis + 1:]
        given[vi.name] = (shape, elem)
    cost, unknown = _body(body, given, shapes, opsets, precision)
    return _scaled(view, cost, trips), _partial_note(view, unknown)


def _partial_note(view: NodeView, unknown: bool) -> str | None:
    """A body whose own tensors kept unknown shapes is costed partially: say so, naming the node."""
    if not unknown:
        return None
    return (f"{view.op_type} {view.name!r}: its body has tensors of unknown shape; the body's cost counts the known "
            "dimensions only.")


def _scalars(body: onnx.GraphProto) -> dict[str, tuple]:
    """Loop body's iteration number (int64) and condition (bool): scalars."""
    names = [vi.name for vi in body.input[:2]]
    return dict(zip(names, [((), onnx.TensorProto.INT64), ((), onnx.TensorProto.BOOL)]))


def _scaled(view: NodeView, sub: OpCost, trips: int) -> OpCost:
    return OpCost(macs=sub.macs * trips, flops=sub.flops * trips, params=sub.params,
                  bytes_read=float(view.bytes_in) + sub.bytes_read * trips,
                  bytes_written=float(view.bytes_out) + sub.bytes_written * trips, op_class=sub.op_class)


def _body_cached(body: onnx.GraphProto, given: Mapping[str, tuple], shapes: Mapping[str, tuple], opsets: Any,
                 precision: str, memo: dict, featurize: Any) -> tuple[OpCost, bool]:
    """:func:`_body`, once per distinct (body content, shapes of what it reads): a chain of loops around the
    same body featurizes it once."""
    produced = {o for n in body.node for o in n.output} | {i.name for i in body.initializer}
    reads = [vi.name for vi in body.input] + [x for n in body.node for x in n.input if x and x not in produced]
    seen = {vi.name: given.get(vi.name) for vi in body.input}

    def shape_key(x: str) -> tuple:
        shape, elem = (seen[x] if x in seen else shapes.get(x)) or (None, 0)
        return x, None if shape is None else tuple(shape), elem

    key = (_content(body), tuple(shape_key(x) for x in dict.fromkeys(reads)))
    if key not in memo:
        memo[key] = _body(body, given, shapes, opsets, precision, featurize)
    return memo[key]


def _content(body: onnx.GraphProto) -> bytes:
    """A digest of ``body`` without its name (loops in an exported chain differ only by it)."""
    import hashlib

    h = hashlib.sha256()
    for part in (body.node, body.input, body.output, body.initializer):
        for item in part:
            h.update(item.SerializeToString())
        h.update(b"|")
    return h.digest()


def _body(body: onnx.GraphProto, given: Mapping[str, tuple], shapes: Mapping[str, tuple], opsets: Any,
          precision: str, featurize: Any) -> tuple[OpCost, bool]:
    """Total cost of one run of ``body``: a model whose inputs are the body's inputs (shapes ``given``)
    and the outer-scope tensors it reads (shapes from ``shapes``); the flag says its own tensors kept unknown shapes.
    ``featurize``: :func:`featurize.graph.walk.featurize` (handed in)."""
    produced = {o for n in body.node for o in n.output} | {i.name for i in body.initializer}
    declared = [vi.name for vi in body.input]
    outer = [x for n in body.node for x in n.input if x and x not in produced and x not in declared]
    inputs = [helper.make_tensor_value_info(_PIN, onnx.TensorProto.FLOAT, [1])]
    for name in declared + list(dict.fromkeys(outer)):
        shape, elem = given.get(name) or shapes.get(name, (None, 0))
        inputs.append(helper.make_tensor_value_info(name, elem or onnx.TensorProto.FLOAT, shape))
    graph = helper.make_graph(list(body.node), "body", inputs, list(body.output), list(body.initializer))
    model = helper.make_model(graph, opset_imports=list(opsets))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = featurize(model, batch_size=1, precision=precision, with_nodes=False)
    unknown = any("unknown shape" in str(w.message) for w in caught)
    fracs = {"conv": f.frac_macs_conv, "matmul": f.frac_macs_matmul, "attention": f.frac_macs_attention,
             "recurrent": f.frac_macs_recurrent}
    cls = max(fracs, key=fracs.get) if f.macs_forward else "elementwise"
    moved = f.bytes_moved_forward
    cost = OpCost(macs=f.macs_forward, flops=f.flops_forward, params=f.params, bytes_read=moved / 2,
                  bytes_written=moved / 2, op_class=cls)
    return cost, unknown
