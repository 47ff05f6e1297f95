"""Batch-scoring benchmark: throughput and peak memory of ``predictor.predict_many``.

Run: ``python bench/score.py [--n 10000] [--n-jobs 2] [--family resnet|mlp|bert|all] [--keep DIR]
[--scheduler local|loky|local-cluster]``.

Generates weightless candidate graphs with ``onnx.helper`` (weights are graph inputs, as with
``torch.onnx.export(export_params=False)``) into a temporary directory, scores them with ``predict_many`` and
prints graphs/s, wall time and peak RSS (this process and each worker process, from /proc). Families: small
MLPs, ResNet-50-scale CNNs (bottleneck blocks, widths x0.5-1.5 and depths varied around [3, 4, 6, 3]) and
BERT-base-scale encoders (layers, d_model, heads, FFN, seq varied).
Schedulers: ``local`` (the default path: isolated worker processes with per-graph limits), ``loky`` (joblib's
process pool, no limits) and ``local-cluster`` (a ``dask.distributed.LocalCluster`` of ``--n-jobs`` worker
processes on loopback, each featurizing through its own isolated child); ``local-cluster`` also runs ``loky``
and ``local`` on the same graphs, so the lines compare.
Goal (issue 6): 10,000 ResNet-scale graphs <= 60 s on 2 cores, peak RSS <= 500 MB.
Measured (``--family resnet --n 2000 --scheduler local-cluster``, 2 workers, 2 cores shared at load 13-14):
loky 36.9 graphs/s (8.5 ms CPU/graph, workers 65 MB peak RSS each); local 46.8 graphs/s (7.7 ms, featurizers
54 MB); Dask LocalCluster 37.8 graphs/s after a 7.7 s cluster start (12.8 ms: the Dask worker relays each
chunk; workers 85 MB + their featurizers 54 MB).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

# keep bench/ off the import path (no script may shadow a package)
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

OPSET = 17


class _G:
    """Tiny graph builder: weights become float graph inputs of fixed shape (no data is stored)."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.k = 0

    def fresh(self, prefix: str) -> str:
        self.k += 1
        return f"{prefix}_{self.k}"

    def weight(self, name: str, shape: list[int]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def node(self, op: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        out = self.fresh(prefix or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const_i64(self, values: list[int]) -> str:
        out = self.fresh("shape")
        self.nodes.append(
            helper.make_node(
                "Constant",
                [],
                [out],
                name=out,
                value=helper.make_tensor(out + "_v", TensorProto.INT64, [len(values)], values),
            )
        )
        return out

    def build(self, x: onnx.ValueInfoProto, y: str, y_shape: list) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [x, *self.inputs],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, y_shape)],
        )
        return helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="joulecast-bench"
        )


def _conv_bn_relu(
    g: _G, x: str, cin: int, cout: int, k: int, stride: int, tag: str, relu: bool = True
) -> str:
    w = g.weight(f"{tag}.conv.weight", [cout, cin, k, k])
    y = g.node("Conv", [x, w], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
    bn = [g.weight(f"{tag}.bn.{p}", [cout]) for p in ("weight", "bias", "running_mean", "running_var")]
    y = g.node("BatchNormalization", [y, *bn])
    return g.node("Relu", [y]) if relu else y


def resnet_like(
    name: str, *, width: float = 1.0, depths=(3, 4, 6, 3), image: int = 224, classes: int = 1000
) -> onnx.ModelProto:
    """A ResNet-50-style bottleneck CNN (``width=1, depths=(3,4,6,3)`` is ResNet-50: 25.6 M params)."""
    g = _G(name)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, image, image])
    stem = max(8, int(64 * width))
    y = _conv_bn_relu(g, "x", 3, stem, 7, 2, "stem")
    y = g.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = stem
    for s, n_blocks in enumerate(depths):
        mid = max(8, int(64 * width) * 2**s)
        cout = mid * 4
        for b in range(n_blocks):
            stride = 2 if (b == 0 and s > 0) else 1
            tag = f"layer{s + 1}.{b}"
            h = _conv_bn_relu(g, y, cin, mid, 1, 1, tag + ".a")
            h = _conv_bn_relu(g, h, mid, mid, 3, stride, tag + ".b")
            h = _conv_bn_relu(g, h, mid, cout, 1, 1, tag + ".c", relu=False)
            short = _conv_bn_relu(g, y, cin, cout, 1, stride, tag + ".down", relu=False) if b == 0 else y
            y = g.node("Relu", [g.node("Add", [h, short])])
            cin = cout
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    w = g.weight("fc.weight", [classes, cin])
    bias = g.weight("fc.bias", [classes])
    y = g.node("Gemm", [y, w, bias], transB=1)
    return g.build(x_info, y, ["N", classes])


def mlp(name: str, *, widths=(784, 256, 256, 10)) -> onnx.ModelProto:
    """A plain ReLU MLP."""
    g = _G(name)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", widths[0]])
    y = "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        y = g.node("Gemm", [y, g.weight(f"fc{i}.weight", [b, a]), g.weight(f"fc{i}.bias", [b])], transB=1)
        if i < len(widths) - 2:
            y = g.node("Relu", [y])
    return g.build(x_info, y, ["N", widths[-1]])


def bert_like(
    name: str, *, layers: int = 12, d_model: int = 768, heads: int = 12, ffn: int = 3072, seq: int = 128
) -> onnx.ModelProto:
    """A BERT-base-style encoder on embedded inputs (``x: [N, seq, d_model]``); 85 M params at defaults."""
    g = _G(name)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", seq, d_model])
    dh = d_model // heads
    split = g.const_i64([0, seq, heads, dh])
    merge = g.const_i64([0, seq, d_model])
    y = "x"
    for i in range(layers):
        t = f"layer{i}"

        def lin(inp, a, b, tag):
            h = g.node("MatMul", [inp, g.weight(f"{t}.{tag}.weight", [a, b])])
            return g.node("Add", [h, g.weight(f"{t}.{tag}.bias", [b])])

        q, k, v = (
            g.node("Transpose", [g.node("Reshape", [lin(y, d_model, d_model, n), split])], perm=[0, 2, 1, 3])
            for n in ("q", "k", "v")
        )
        kt = g.node("Transpose", [k], perm=[0, 1, 3, 2])
        scores = g.node("Mul", [g.node("MatMul", [q, kt]), g.weight(f"{t}.scale", [1])])
        att = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])
        att = g.node("Reshape", [g.node("Transpose", [att], perm=[0, 2, 1, 3]), merge])
        y = g.node("Add", [lin(att, d_model, d_model, "o"), y])
        y = g.node(
            "LayerNormalization",
            [y, g.weight(f"{t}.ln1.weight", [d_model]), g.weight(f"{t}.ln1.bias", [d_model])],
            axis=-1,
        )
        h = (
            g.node("Gelu", [lin(y, d_model, ffn, "ffn1")])
            if OPSET >= 20
            else g.node("Relu", [lin(y, d_model, ffn, "ffn1")])
        )
        y = g.node("Add", [lin(h, ffn, d_model, "ffn2"), y])
        y = g.node(
            "LayerNormalization",
            [y, g.weight(f"{t}.ln2.weight", [d_model]), g.weight(f"{t}.ln2.bias", [d_model])],
            axis=-1,
        )
    return g.build(x_info, y, ["N", seq, d_model])


def make_family(family: str, n: int, out_dir: Path, seed: int = 0) -> list[Path]:
    """Write ``n`` distinct variants of ``family`` into ``out_dir``; returns the paths in order."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        name = f"{family}_{i:05d}"
        if family == "resnet":
            width = rng.choice([0.5, 0.625, 0.75, 0.875, 1.0, 1.125, 1.25, 1.5])
            depths = tuple(max(1, d + rng.randint(-1, 1)) for d in (3, 4, 6, 3))
            model = resnet_like(name, width=width, depths=depths, image=rng.choice([160, 192, 224]))
        elif family == "mlp":
            k = rng.randint(1, 4)
            model = mlp(name, widths=(784, *[rng.choice([64, 128, 256, 512, 1024]) for _ in range(k)], 10))
        elif family == "bert":
            heads = rng.choice([8, 12, 16])
            model = bert_like(
                name,
                layers=rng.choice([6, 8, 10, 12]),
                d_model=64 * heads,
                heads=heads,
                ffn=4 * 64 * heads,
                seq=rng.choice([64, 128, 256]),
            )
        else:
            raise ValueError(f"unknown family {family!r}")
        path = out_dir / f"{name}.onnx"
        onnx.save(model, path)
        paths.append(path)
    return paths


def _rss_mb() -> tuple[float, float]:
    scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0  # ru_maxrss: KiB on Linux, bytes on macOS
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / scale
    return own, kids


def _role(pid: int) -> str:
    """What a descendant process is, from its command line."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""
    if not cmd.strip():
        return ""  # a zombie: keep what an earlier reading said
    for needle, role in (("predictor.batch.isolation", "featurizer"), ("resource_tracker", "tracker"),
                         ("loky", "loky-worker"), ("spawn_main", "dask-worker")):
        if needle in cmd:
            return role
    return "other"


def _descendants() -> dict[int, dict[str, float]]:
    """Live descendant processes (loky workers are not reaped until exit, so getrusage misses them):
    ``{pid: {"hwm_mb": peak RSS, "cpu_s": user+system, "role": ...}}`` from /proc (Linux; empty elsewhere)."""
    procs = {}
    try:
        parent_of = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    stat = (d / "stat").read_text()
                    parent_of[int(d.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), stat)
                except OSError:
                    continue
        tick = os.sysconf("SC_CLK_TCK")
        mine = {os.getpid()}
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _) in parent_of.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    changed = True
        for pid in mine - {os.getpid()}:
            fields = parent_of[pid][1].rsplit(")", 1)[1].split()
            hwm = 0.0
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = float(line.split()[1]) / 1024.0
            cpu_s = (int(fields[11]) + int(fields[12])) / tick
            procs[pid] = {"hwm_mb": hwm, "cpu_s": cpu_s, "role": _role(pid)}
    except OSError:
        pass
    return procs


def _predict(graph_dir: Path, n_jobs: int, gpus: list[str], model_dir: Path | None, scheduler: str):
    from predictor import predict_many

    kw = dict(gpu=gpus, batch_size=64, samples_per_epoch=50_000, epochs=10, n_jobs=n_jobs, progress=False,
              model_dir=model_dir)
    if scheduler == "loky":
        return predict_many(str(graph_dir), backend="loky", **kw), 0.0
    if scheduler == "local":
        return predict_many(str(graph_dir), **kw), 0.0
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        start_s = time.perf_counter() - t0
        return predict_many(str(graph_dir), scheduler=client, **kw), start_s


def score_dir(graph_dir: Path, n_jobs: int, gpus: list[str], model_dir: Path | None = None,
              scheduler: str = "local") -> dict:
    """Score every graph in ``graph_dir`` (meant to run in a fresh process, so RSS is scoring alone)."""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    seen: dict[int, dict[str, float]] = {}
    stop = threading.Event()

    def sample() -> None:  # keep each process's largest reading (a zombie reads 0)
        for pid, p in _descendants().items():
            old = seen.get(pid, {"hwm_mb": 0.0, "cpu_s": 0.0, "role": p["role"]})
            seen[pid] = {k: max(old[k], p[k]) if k != "role" else p[k] or old[k] for k in p}

    def watch():  # workers that exit before the end (a Dask cluster's) are sampled while they live
        while not stop.wait(0.2):
            sample()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    df, start_s = _predict(graph_dir, n_jobs, gpus, model_dir, scheduler)
    wall = time.perf_counter() - t0 - start_s
    stop.set()
    watcher.join()
    sample()
    parent_cpu = time.process_time() - cpu0
    worker_cpu = sum(p["cpu_s"] for p in seen.values())
    own, _ = _rss_mb()
    n = len(df) // len(gpus)
    return {
        "scheduler": scheduler,
        "graphs": n,
        "rows": len(df),
        "errors": int((df["error"] != "").sum()),
        "cluster_start_s": round(start_s, 2),
        "score_s": round(wall, 2),
        "graphs_per_s": round(n / wall, 1),
        "cpu_s_parent": round(parent_cpu, 1),
        "cpu_s_workers": round(worker_cpu, 1),
        "cpu_ms_per_graph": round(1000 * (parent_cpu + worker_cpu) / n, 1),
        "peak_rss_parent_mb": round(own),
        "peak_rss_workers_mb": sorted(round(p["hwm_mb"]) for p in seen.values()),
        "peak_rss_by_role_mb": {
            role: max(round(p["hwm_mb"]) for p in seen.values() if p["role"] == role)
            for role in sorted({p["role"] for p in seen.values()})
        },
        "peak_rss_total_mb": round(own + sum(p["hwm_mb"] for p in seen.values())),
        "load_avg_1min": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
    }


def run(
    family: str, n: int, n_jobs: int, workdir: Path, gpus: list[str], model_dir: Path | None = None,
    schedulers: tuple[str, ...] = ("local",),
) -> list[dict]:
    """Generate ``n`` graphs here, then score them in a fresh interpreter per scheduler (import time
    included)."""
    import json
    import subprocess

    t0 = time.perf_counter()
    make_family(family, n, workdir / family)
    t_gen = time.perf_counter() - t0
    lines = []
    for scheduler in schedulers:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--score-dir",
            str(workdir / family),
            "--n-jobs",
            str(n_jobs),
            "--scheduler",
            scheduler,
        ] + [a for g in gpus for a in ("--gpu", g)]
        if model_dir is not None:
            cmd += ["--model-dir", str(model_dir)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        lines.append({"family": family, "generate_s": round(t_gen, 1), **json.loads(out)})
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="graphs for the resnet family (others: n/10)")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--family", default="all", choices=["all", "resnet", "mlp", "bert"])
    ap.add_argument("--gpu", action="append", default=None)
    ap.add_argument("--keep", type=Path, default=None, help="write graphs here instead of a temp dir")
    ap.add_argument("--model-dir", type=Path, default=None, help="model directory (default: shipped)")
    ap.add_argument("--scheduler", default="local", choices=["local", "loky", "local-cluster"],
                    help="local-cluster also runs loky and local on the same graphs")
    ap.add_argument("--score-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.score_dir is not None:  # child mode: score one folder, print one JSON line
        import json

        print(json.dumps(score_dir(args.score_dir, args.n_jobs, args.gpu or ["A100"], args.model_dir,
                                   args.scheduler)))
        return
    families = ["mlp", "resnet", "bert"] if args.family == "all" else [args.family]
    gpus = args.gpu or ["A100"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        for fam in families:
            n = args.n if fam == "resnet" else max(1, args.n // 10)
            schedulers = (
                ("loky", "local", "local-cluster") if args.scheduler == "local-cluster" else (args.scheduler,)
            )
            for line in run(fam, n, args.n_jobs, workdir, gpus, args.model_dir, schedulers):
                print(line, flush=True)


if __name__ == "__main__":
    main()
