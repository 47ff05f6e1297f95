"""Second mutation family for the fuzzer (issue 32): inputs that are valid-looking but expensive to analyse, rather
than corrupt. :func:`stress` applies one of them to a parsed seed model:

* large-but-legal constant sizes (``Range`` / ``ConstantOfShape`` / ``Tile`` / ``Expand`` of 2^20..1e9 elements,
  below the per-tensor caps) read by an op that propagates data (``Add``, ``Cast``, ``Concat``, ``Mul``), so that
  onnx's data propagation would materialise them;
* a ``Range`` bounded by a graph input's dim (``Shape -> Gather -> Range``) with that dim set large;
* large legal input dims (2^20..2^31);
* long chains (up to 10,000 nodes), with ``Loop`` nodes in the chain;
* nested ``Loop`` bodies;
* tensors of unknown shape read by long chains (onnxruntime's symbolic inference runs on them).

Used by :func:`fuzzing.make_case` when ``family="stress"`` (``bench/fuzz.py --family stress``).
"""

from __future__ import annotations

import random

import onnx
from onnx import TensorProto, helper

BIG_SIZES = (2**20, 2**22, 2**24, 2**28, 10**9)


def _i64(name: str, value) -> TensorProto:
    scalar = isinstance(value, int)
    return helper.make_tensor(name, TensorProto.INT64, [] if scalar else [len(value)],
                              [value] if scalar else list(value))


def _float_input(m: onnx.ModelProto) -> str | None:
    inits = {i.name for i in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name not in inits and vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            return vi.name
    return None


def _any_input(m: onnx.ModelProto) -> str | None:
    inits = {i.name for i in m.graph.initializer}
    return next((vi.name for vi in m.graph.input if vi.name not in inits and vi.type.tensor_type.shape.dim), None)


def _output(g: onnx.GraphProto, name: str, elem: int = TensorProto.UNDEFINED) -> None:
    g.output.append(helper.make_tensor_value_info(name, elem, None))


def _consume(g: onnx.GraphProto, src: str, out: str, rng: random.Random) -> str:
    """A data-propagating reader of ``src`` (int64); returns its output name."""
    kind = rng.choice(["add", "cast", "mul", "concat", "slice"])
    if kind == "add":
        g.node.append(helper.make_node("Add", [src, src], [out]))
    elif kind == "mul":
        g.node.append(helper.make_node("Mul", [src, src], [out]))
    elif kind == "cast":
        g.node.append(helper.make_node("Cast", [src], [out], to=TensorProto.INT32))
    elif kind == "concat":
        g.node.append(helper.make_node("Concat", [src, src], [out], axis=0))
    else:
        g.initializer.extend([_i64(out + "_a", [1]), _i64(out + "_b", [2**62])])
        g.node.append(helper.make_node("Slice", [src, out + "_a", out + "_b"], [out]))
    return out


def big_constant(m: onnx.ModelProto, rng: random.Random) -> None:
    """A large, legal constant-sized tensor (below the per-tensor caps) read by a data-propagating op."""
    g, out = m.graph, f"st{rng.randrange(10**6)}"
    n = rng.choice(BIG_SIZES)
    kind = rng.choice(["range", "cos", "tile", "expand"])
    if kind == "range":
        g.initializer.extend([_i64(out + "s", 0), _i64(out + "l", n), _i64(out + "d", 1)])
        g.node.append(helper.make_node("Range", [out + "s", out + "l", out + "d"], [out]))
    elif kind == "cos":
        g.initializer.append(_i64(out + "s", [n]))
        g.node.append(helper.make_node("ConstantOfShape", [out + "s"], [out],
                                       value=helper.make_tensor("v", TensorProto.INT64, [1], [1])))
    else:
        g.initializer.extend([_i64(out + "v", [1, 2]), _i64(out + "k", [n // 2 if kind == "tile" else n])])
        if kind == "expand":
            g.initializer[-2].CopyFrom(_i64(out + "v", [3]))
        g.node.append(helper.make_node("Tile" if kind == "tile" else "Expand", [out + "v", out + "k"], [out]))
    _output(g, _consume(g, out, out + "_r", rng))


def range_from_dim(m: onnx.ModelProto, rng: random.Random) -> None:
    """``Range(0, dim)`` of a graph input's first dim, that dim set large, the positions read by an ``Add``."""
    x = _any_input(m)
    if x is None:
        return
    g, out = m.graph, f"st{rng.randrange(10**6)}"
    vi = next(v for v in g.input if v.name == x)
    d = vi.type.tensor_type.shape.dim[0]
    d.Clear()
    d.dim_value = rng.choice(BIG_SIZES[:3] + (2**31,))
    g.initializer.extend([_i64(out + "z", 0), _i64(out + "i", 0), _i64(out + "one", 1)])
    g.node.extend([helper.make_node("Shape", [x], [out + "sh"]),
                   helper.make_node("Gather", [out + "sh", out + "i"], [out + "n"], axis=0),
                   helper.make_node("Range", [out + "z", out + "n", out + "one"], [out])])
    _output(g, _consume(g, out, out + "_r", rng))


def big_dims(m: onnx.ModelProto, rng: random.Random) -> None:
    """Every symbolic or fixed dim of one input set to a large legal value."""
    vis = [vi for vi in m.graph.input if vi.type.tensor_type.shape.dim]
    if not vis:
        return
    for d in rng.choice(vis).type.tensor_type.shape.dim:
        if rng.random() < 0.5:
            d.Clear()
            d.dim_value = rng.choice(BIG_SIZES[:3] + (2**31,))


def _loop(name: str, x: str, trips: str, depth: int) -> onnx.NodeProto:
    """A ``Loop`` carrying ``x`` (float) through ``depth`` nested loops whose innermost body doubles it."""
    inner = [helper.make_node("Add", ["v_in", "v_in"], ["v_out"])]
    if depth > 1:
        inner = [_loop(f"{name}_in", "v_in", "tr_in", depth - 1), helper.make_node("Identity", [f"{name}_in_y"],
                                                                                   ["v_out"])]
        inner.insert(0, helper.make_node("Constant", [], ["tr_in"], value=_i64("t", 1000)))
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), *inner], f"{name}_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
    return helper.make_node("Loop", [trips, "", x], [f"{name}_y"], name=name, body=body)


def long_chain(m: onnx.ModelProto, rng: random.Random) -> None:
    """A chain of up to 10,000 elementwise nodes off a float input, with ``Loop`` nodes every ``k`` links."""
    x = _float_input(m)
    if x is None:
        return
    g, tag = m.graph, f"st{rng.randrange(10**6)}"
    n = rng.choice([1000, 5000, 10_000])
    every = rng.choice([0, 1, 10, 500])
    g.initializer.append(_i64(tag + "m", rng.choice([3, 10**6])))
    cur = x
    for i in range(n):
        name = f"{tag}_{i}"
        if every and i % every == 0:
            g.node.append(_loop(name, cur, tag + "m", rng.choice([1, 1, 2])))
            cur = f"{name}_y"
        else:
            g.node.append(helper.make_node(rng.choice(["Relu", "Neg", "Identity"]), [cur], [name]))
            cur = name
    _output(g, cur, TensorProto.FLOAT)


def nested_loops(m: onnx.ModelProto, rng: random.Random) -> None:
    """``Loop`` nested 2-6 deep, 1,000 trips per level, around a float input."""
    x = _float_input(m)
    if x is None:
        return
    g, tag = m.graph, f"st{rng.randrange(10**6)}"
    g.initializer.append(_i64(tag + "m", 1000))
    g.node.append(_loop(tag, x, tag + "m", rng.randint(2, 6)))
    _output(g, f"{tag}_y", TensorProto.FLOAT)


def unknown_chain(m: onnx.ModelProto, rng: random.Random) -> None:
    """``NonZero`` (data-dependent shape) read by a chain of 200-5,000 reshaping nodes: shapes stay unknown,
    so the loader escalates to onnxruntime's symbolic inference."""
    x = _float_input(m)
    if x is None:
        return
    g, tag = m.graph, f"st{rng.randrange(10**6)}"
    g.initializer.extend([_i64(tag + "ax", [0]), _i64(tag + "shp", [-1])])
    g.node.append(helper.make_node("NonZero", [x], [tag + "nz"]))
    cur = tag + "nz"
    for i in range(rng.choice([200, 1000, 5000])):
        out = f"{tag}_{i}"
        op = rng.choice(["Unsqueeze", "Reshape", "Transpose", "Cast", "Shape", "Concat"])
        if op == "Unsqueeze":
            node = helper.make_node("Unsqueeze", [cur, tag + "ax"], [out])
        elif op == "Reshape":
            node = helper.make_node("Reshape", [cur, tag + "shp"], [out])
        elif op == "Concat":
            node = helper.make_node("Concat", [cur, cur], [out], axis=0)
        elif op == "Cast":
            node = helper.make_node("Cast", [cur], [out], to=TensorProto.INT64)
        else:
            node = helper.make_node(op, [cur], [out])
        g.node.append(node)
        cur = out
    _output(g, cur)


STRESS = (big_constant, range_from_dim, big_dims, long_chain, nested_loops, unknown_chain)


def stress(m: onnx.ModelProto, rng: random.Random) -> None:
    """One seeded stress mutation of ``m`` (in place)."""
    rng.choice(STRESS)(m, rng)
