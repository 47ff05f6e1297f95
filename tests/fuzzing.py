"""Seeded mutation fuzzing of ``predict`` (and so ``featurize``), shared by ``tests/test_fuzz.py`` (CI) and
``bench/fuzz.py`` (10,000 cases).

* :func:`seed_models` -- real seed graphs: one-node cases of ``onnx.backend.test.case.node`` (imported module by
  module: the full collection takes ~30 s), the backend's on-disk PyTorch/simple models and, with
  ``light=True``, the weightless real models in ``onnx/backend/test/data/light``.
* :func:`make_case` -- case ``i`` of a seed: byte flips, truncation, protobuf edits (huge/zero/negative dims,
  retyped or non-finite attributes, swapped op types, broken opsets, dangling inputs, duplicated outputs),
  reproducer nodes (Range/ConstantOfShape/Tile/Expand/Resize of 2^40 elements, Loops of 1e9 iterations),
  external-data paths (/dev/zero, ../.., 5,000 characters, NUL), recursive local functions.
* :func:`run_cases` -- runs cases in worker processes (``RLIMIT_AS`` cap, per-case wall limit enforced by the
  parent, which kills and replaces a worker that overruns or dies), so no case can hang or abort the caller.
  Each result: ``outcome`` in :data:`OUTCOMES`, seconds, the case's peak RSS (``VmHWM`` reset per case).
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import json
import os
import random
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import onnx
from onnx import AttributeProto, TensorProto, helper

OUTCOMES = ("ok", "project_error", "other_exception", "memory_error", "bad_output", "timeout", "crash")
OUTSIDE = ("other_exception", "memory_error", "bad_output", "timeout", "crash")
REPO = Path(__file__).resolve().parents[1]
_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
# node-case modules (cheap to import; maxpool/averagepool compute reference outputs for ~15 s)
QUICK_NODE_MODULES = (
    "conv", "convtranspose", "gemm", "matmul", "relu", "sigmoid", "add", "mul", "reshape", "concat", "softmax",
    "loop", "scan", "if_", "rangeop", "resize", "tile", "expand", "constantofshape", "lstm", "gru", "rnn",
    "gather", "slice", "transpose", "layernormalization", "batch_normalization", "einsum", "split", "pad",
    "where", "cumsum", "dropout", "reducemean", "flatten", "unsqueeze", "squeeze", "globalaveragepool", "shape",
    "cast", "identity",
)


def seed_models(*, all_nodes: bool = False, light: bool = False) -> list[tuple[str, bytes]]:
    """``(name, serialized model)`` seeds (see the module docstring), in a fixed order."""
    import warnings

    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if all_nodes:
            cases = node_cases.collect_testcases(None)
        else:
            for mod in QUICK_NODE_MODULES:
                try:
                    importlib.import_module(f"onnx.backend.test.case.node.{mod}")
                except ImportError:  # a module renamed in another onnx release
                    continue
            cases = node_cases._NodeTestCases
    seeds = {f"node/{c.name}": c.model.SerializeToString() for c in cases if c.model is not None}
    for sub in ("pytorch-operator", "pytorch-converted", "simple"):
        for f in sorted(glob.glob(str(_DATA / sub / "*" / "model.onnx"))):
            seeds[f"{sub}/{Path(f).parent.name}"] = Path(f).read_bytes()
    if light:
        for f in sorted(glob.glob(str(_DATA / "light" / "*.onnx"))):
            seeds[f"light/{Path(f).stem}"] = Path(f).read_bytes()
    return sorted(seeds.items())


# ------------------------------------------------------------------------------------------------ mutations

def _i64(name: str, value) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [] if isinstance(value, int) else [len(value)],
                              [value] if isinstance(value, int) else list(value))


def _first_float_input(m: onnx.ModelProto) -> str | None:
    inits = {i.name for i in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name not in inits and vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            return vi.name
    return None


def _add_reproducer(m: onnx.ModelProto, rng: random.Random) -> None:
    g, out = m.graph, f"fz{rng.randrange(10**6)}"
    kind = rng.choice(["range", "cos", "tile", "expand", "resize", "loop", "loop_cond"])
    big = rng.choice([2**40, 2**62, 10**9, -1])
    if kind == "range":
        g.initializer.extend([_i64(out + "s", 0), _i64(out + "l", big), _i64(out + "d", 1)])
        g.node.append(helper.make_node("Range", [out + "s", out + "l", out + "d"], [out]))
    elif kind == "cos":
        g.initializer.append(_i64(out + "s", [big, 1 << 20]))
        g.node.append(helper.make_node("ConstantOfShape", [out + "s"], [out]))
    elif kind in ("tile", "expand", "resize"):
        x = _first_float_input(m)
        if x is None:
            return
        if kind == "resize":
            g.initializer.append(helper.make_tensor(out + "k", TensorProto.FLOAT, [1], [float(abs(big))]))
            g.node.append(helper.make_node("Resize", [x, "", out + "k"], [out]))
        else:
            g.initializer.append(_i64(out + "k", [abs(big)]))
            g.node.append(helper.make_node("Tile" if kind == "tile" else "Expand", [x, out + "k"], [out]))
    else:
        body = helper.make_graph(
            [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["v_in", "v_in"], ["v_out"]),
             helper.make_node("Identity", ["v_in"], ["sc"])], "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
             helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None),
             helper.make_tensor_value_info("sc", TensorProto.FLOAT, None)])
        g.initializer.extend([_i64(out + "m", 10**9), helper.make_tensor(out + "c", TensorProto.BOOL, [], [True])])
        g.initializer.append(helper.make_tensor(out + "v", TensorProto.FLOAT, [2], [1.0, 2.0]))
        trip = "" if kind == "loop_cond" else out + "m"
        g.node.append(helper.make_node("Loop", [trip, out + "c", out + "v"], [out + "f", out], body=body))
    g.output.append(helper.make_tensor_value_info(out, TensorProto.UNDEFINED, None))


def _edit_dims(m: onnx.ModelProto, rng: random.Random) -> None:
    vis = [vi for vi in list(m.graph.input) + list(m.graph.output) if vi.type.tensor_type.shape.dim]
    if not vis:
        return
    d = rng.choice(list(rng.choice(vis).type.tensor_type.shape.dim))
    value = rng.choice([0, -1, -(2**40), 2**31, 2**40, 2**62, 2**63 - 1, None])
    if value is None:
        d.dim_param = rng.choice(["", "N", "seq", "\x00", "x" * 300])
    else:
        d.dim_value = value


def _edit_attribute(m: onnx.ModelProto, rng: random.Random) -> None:
    nodes = [n for n in m.graph.node if n.attribute]
    if not nodes:
        return
    a = rng.choice(list(rng.choice(nodes).attribute))
    choice = rng.randrange(5)
    if choice == 0 and a.type == AttributeProto.INTS:  # retyped to floats, maybe non-finite
        vals = [rng.choice([float("inf"), float("nan"), -1.0, 1e30, float(v)]) for v in a.ints]
        a.ClearField("ints")
        a.type, a.floats[:] = AttributeProto.FLOATS, vals
    elif choice == 1 and a.type == AttributeProto.INTS:
        a.ints[:] = [rng.choice([0, -1, 2**40, 2**63 - 1]) for _ in a.ints] or [0]
    elif choice == 2 and a.type == AttributeProto.FLOAT:
        a.f = rng.choice([float("inf"), float("nan"), -1e30])
    elif choice == 3 and a.type == AttributeProto.INT:
        a.i = rng.choice([0, -1, 2**62, -(2**62)])
    else:
        a.type = rng.choice([t for t in AttributeProto.AttributeType.values() if t != a.type])


def _edit_graph(m: onnx.ModelProto, rng: random.Random) -> None:
    g, choice = m.graph, rng.randrange(9)
    if choice == 0 and g.node:
        rng.choice(list(g.node)).op_type = rng.choice(["Conv", "MatMul", "NoSuchOp", "Loop", "Scan", "If", "Range",
                                                        "LSTM", "Resize", "Einsum", ""])
    elif choice == 1:
        (m.opset_import[0] if m.opset_import else m.opset_import.add()).version = rng.choice([0, 1, 99, 10**6, -3])
    elif choice == 2:
        m.ir_version = rng.choice([0, 1, 99, -1])
    elif choice == 3 and g.node:
        n = rng.choice(list(g.node))
        if n.input:
            n.input[rng.randrange(len(n.input))] = rng.choice(["dangling", "", n.output[0] if n.output else "x"])
    elif choice == 4 and len(g.node) > 1:
        g.node[0].output[:] = list(g.node[-1].output)  # duplicated producer / cycle
    elif choice == 5 and g.node:
        rng.choice(list(g.node)).domain = rng.choice(["com.microsoft", "evil.domain", "ai.onnx.ml"])
    elif choice == 6 and g.initializer:
        init = rng.choice(list(g.initializer))
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        entry = init.external_data.add()
        entry.key, entry.value = "location", rng.choice(["/dev/zero", "../../../etc/passwd", "a" * 5000, "x\x00y",
                                                           "/proc/self/mem"])
    elif choice == 7 and g.initializer:
        init = rng.choice(list(g.initializer))
        init.dims[:] = [rng.choice([2**40, 0, 2**62])] + list(init.dims[1:])
    elif choice == 8 and g.node:  # a local function that calls itself
        f = m.functions.add()
        f.name, f.domain = "fz_rec", "fz.local"
        f.input[:], f.output[:] = ["a"], ["b"]
        f.node.extend([helper.make_node("fz_rec", ["a"], ["b"], domain="fz.local")])
        f.opset_import.extend([helper.make_opsetid("", 17), helper.make_opsetid("fz.local", 1)])
        m.opset_import.append(helper.make_opsetid("fz.local", 1))
        x = _first_float_input(m) or (g.node[0].input[0] if g.node[0].input else "")
        if x:
            g.node.append(helper.make_node("fz_rec", [x], ["fz_rec_out"], domain="fz.local"))
            g.output.append(helper.make_tensor_value_info("fz_rec_out", TensorProto.FLOAT, None))


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    choice = rng.randrange(3)
    if choice == 0 and b:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif choice == 1:
        b = b[: rng.randrange(len(b) + 1)]
    elif b:
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(b)


def cases(seeds: list[tuple[str, bytes]], n: int, base_seed: int = 0, family: str = "corrupt"):
    """``(case id, bytes, as_path)`` for cases ``0..n-1``: a seeded choice of seed model each, mutated by
    :func:`make_case`; odd cases are passed as a file path (``batch_size=None``), even ones as bytes."""
    for i in range(n):
        name, data = seeds[random.Random(base_seed * 7919 + i).randrange(len(seeds))]
        yield i, make_case(data, i, base_seed, family), i % 2 == 1


def seed_name(seeds: list[tuple[str, bytes]], i: int, base_seed: int = 0) -> str:
    """The seed model case ``i`` was made from."""
    return seeds[random.Random(base_seed * 7919 + i).randrange(len(seeds))][0]


FAMILIES = ("corrupt", "stress", "mixed")


def _stress_module():
    """:mod:`fuzz_stress`, beside this file (``bench/fuzz.py`` loads this module by path)."""
    if "fuzz_stress" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fuzz_stress", Path(__file__).with_name("fuzz_stress.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["fuzz_stress"] = mod
    return sys.modules["fuzz_stress"]


def make_case(seed: bytes, i: int, base_seed: int = 0, family: str = "corrupt") -> bytes:
    """Case ``i``: 1-3 seeded mutations of the serialized ``seed`` model. ``family``: ``"corrupt"`` (the
    mutations above), ``"stress"`` (one of :mod:`fuzz_stress`'s valid-but-expensive inputs, then maybe one
    corrupting edit) or ``"mixed"`` (either, per case)."""
    rng = random.Random(base_seed * 1_000_003 + i)
    m = onnx.ModelProto()
    m.ParseFromString(seed)
    if family == "mixed":
        family = rng.choice(["corrupt", "stress"])
    if family == "stress":
        _stress_module().stress(m, rng)
        if rng.random() < 0.3:
            rng.choice([_add_reproducer, _edit_dims, _edit_attribute])(m, rng)
        return m.SerializeToString()
    edits = [_add_reproducer, _edit_dims, _edit_attribute, _edit_graph]
    raw = rng.random() < 0.25
    for _ in range(rng.randint(1, 3)):
        if not raw:
            rng.choice(edits)(m, rng)
    data = m.SerializeToString()
    return _mutate_bytes(data, rng) if raw else data


# ------------------------------------------------------------------------------------------------ running

_WORKER = r'''
import io, json, math, os, resource, struct, sys, tempfile, time, warnings
out = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # C++ chatter must not corrupt the protocol
resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
sys.path.insert(0, {repo!r})
warnings.simplefilter("ignore")
from featurize.errors import JoulecastError
from predictor import predict

def hwm_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")

def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass

def warm_up():  # one-time imports and predict's inference worker are not a case's cost
    from onnx import helper as h
    x, y = h.make_tensor_value_info("x", 1, ["N", 4]), h.make_tensor_value_info("y", 1, None)
    warm = h.make_model(h.make_graph([h.make_node("Relu", ["x"], ["y"])], "w", [x], [y]),
                        opset_imports=[h.make_opsetid("", 17)])
    predict(warm.SerializeToString(), gpu="A100", batch_size=8)

if not {hook!r}:
    warm_up()
if {hook!r} == "hang":  # runner self-test: a case that never returns / aborts the process
    predict = lambda *a, **k: time.sleep(1e9)
elif {hook!r} == "abort":
    predict = lambda *a, **k: os.abort()
tmp = tempfile.mkdtemp(prefix="joulecast-fuzz-")
path = os.path.join(tmp, "case.onnx")
out.write("ready\n")
stdin = sys.stdin.buffer
while True:
    head = stdin.read(8)
    if len(head) < 8:
        break
    n, as_path = struct.unpack("<IxxxB", head)
    data = stdin.read(n)
    reset_hwm()
    t0 = time.perf_counter()
    detail = ""
    try:
        if as_path:
            with open(path, "wb") as fh:
                fh.write(data)
            p = predict(path, gpu="A100", batch_size=None, samples_per_epoch=1000)
        else:
            p = predict(data, gpu="A100", batch_size=8, samples_per_epoch=1000)
        vals = [p.energy_j, p.time_s, p.avg_power_w, *p.interval_j]
        outcome = "ok" if all(math.isfinite(v) and v > 0 for v in vals) else "bad_output"
        detail = "" if outcome == "ok" else repr(vals)
    except JoulecastError as err:
        outcome, detail = "project_error", type(err).__name__
    except MemoryError as err:
        outcome, detail = "memory_error", str(err)[:200]
    except BaseException as err:
        outcome, detail = "other_exception", f"{{type(err).__name__}}: {{str(err)[:300]}}"
    out.write(json.dumps({{"outcome": outcome, "detail": detail, "seconds": time.perf_counter() - t0,
                          "peak_rss_mb": hwm_mb()}}) + "\n")
'''


class _Worker:
    def __init__(self, mem_bytes: int, hook: str = "") -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER.format(mem=mem_bytes, repo=str(REPO), hook=hook)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, cwd=REPO)
        self.buf = b""
        self.case: int | None = None
        self.started = 0.0
        line = self.read_line(120.0)
        if line != "ready":
            self.kill()
            raise RuntimeError("fuzz worker failed to start")

    def read_line(self, timeout: float) -> str | None:
        """One line from the worker; None on timeout, "" when it died."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return ""
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def send(self, i: int, data: bytes, as_path: bool) -> None:
        self.case, self.started = i, time.monotonic()
        self.proc.stdin.write(struct.pack("<IxxxB", len(data), int(as_path)) + data)
        self.proc.stdin.flush()

    def kill(self) -> int | None:
        self.proc.kill()
        return self.proc.wait()


def run_cases(cases, *, workers: int = 2, timeout_s: float = 10.0, mem_bytes: int = 3 << 30,
              on_result=None, _hook: str = "") -> list[dict]:
    """Run ``cases`` (an iterable of ``(case id, bytes, as_path)``) in ``workers`` processes; returns one result
    dict per case (``id``, ``outcome``, ``detail``, ``seconds``, ``peak_rss_mb``) in completion order.
    ``_hook``: ``"hang"`` / ``"abort"`` replace ``predict`` in the workers (the runner's own test)."""
    todo = iter(cases)
    pool = [_Worker(mem_bytes, _hook) for _ in range(workers)]
    results: list[dict] = []

    def feed(w: _Worker) -> bool:
        nxt = next(todo, None)
        if nxt is None:
            w.case = None
            return False
        w.send(*nxt)
        return True

    busy = [w for w in pool if feed(w)]
    for w in pool:
        if w not in busy:
            w.kill()
    while busy:
        fds = {w.proc.stdout.fileno(): w for w in busy if b"\n" not in w.buf}
        ready_now = [w for w in busy if b"\n" in w.buf]
        wait = min(max(0.0, w.started + timeout_s - time.monotonic()) for w in busy)
        if not ready_now and fds:
            select.select(list(fds), [], [], wait)
        for w in list(busy):
            line = w.read_line(0.0)
            overdue = time.monotonic() - w.started > timeout_s
            if line is None and not overdue:
                continue
            if line:
                res = {"id": w.case, **json.loads(line)}
            else:
                rc = w.kill()
                outcome = "timeout" if line is None else "crash"
                res = {"id": w.case, "outcome": outcome, "detail": f"returncode {rc}",
                       "seconds": time.monotonic() - w.started, "peak_rss_mb": float("nan")}
            results.append(res)
            if on_result is not None:
                on_result(res)
            nxt = next(todo, None)
            if nxt is None:
                busy.remove(w)
                w.kill()
                continue
            if not line:  # the worker was killed or died: a fresh one takes the next case
                busy.remove(w)
                w = _Worker(mem_bytes, _hook)
                busy.append(w)
            w.send(*nxt)
    return results
