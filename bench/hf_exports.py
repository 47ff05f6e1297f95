"""Benchmark: real Hugging Face transformer exports through featurize (issue 15).

Run: ``python bench/hf_exports.py [--repeat N] [--skip-70b]`` (needs torch, transformers, onnxscript;
onnx-tool optional: ``pip install onnx-tool``). Per graph it prints

* floor: ``onnx.load(load_external_data=False)`` + ``infer_shapes`` (strict, with data propagation),
* featurize (``with_nodes=False``: what ``predict`` pays) and its ratio to the floor,
* onnx-tool's ``Model`` + ``shape_infer`` + ``profile`` when installed, and its MACs,
* forward MACs next to ``torch.utils.flop_counter.FlopCounterMode`` on the same config (meta device,
  math attention so ``scaled_dot_product_attention`` is counted),

for ResNet-50 and DenseNet-121 (onnx wheel), BERT-base (``BertForPreTraining``, TorchScript exporter,
opset 17, dynamic batch/seq, weights inline) and Llama-1.1B (TinyLlama shape, dynamo export of a
meta-device module: weights are external references that do not exist). Then, each in a fresh process so
that RSS is its own: a 7B Llama-style module on the meta device through ``featurize(module)`` (export
included) and the external-data export of a 70B Llama-style graph (weights absent).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
# this checkout's featurize, not an installed (editable) copy of another one
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from featurize import featurize  # noqa: E402

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
SEQ = 128


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _floor(path: Path, dims: dict[str, int]) -> None:
    m = onnx.load(path, load_external_data=False)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_value = dims.get(d.dim_param, 1)
    onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)


def _onnx_tool(path: Path, inputs: dict[str, np.ndarray], repeat: int) -> tuple[float, float] | str:
    try:
        import onnx_tool
    except ImportError:
        return "not installed"
    out = {}

    def run():
        m = onnx_tool.Model(str(path))
        m.graph.shape_infer(inputs or None)
        m.graph.profile()
        out["macs"] = float(np.sum(m.graph.macs))

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return _best(run, max(1, repeat // 3)), out["macs"]
    except Exception as err:  # noqa: BLE001 - a reference only
        return f"failed: {type(err).__name__}: {str(err)[:120]}"


def bench_file(label: str, path: Path, *, repeat: int, dims: dict[str, int], ref_macs: float | None,
               tool_inputs: dict[str, np.ndarray]) -> None:
    batch = dims.get("batch", 1)
    feats = featurize(path, batch_size=batch, dims=dims, with_nodes=False)
    t_floor = t_feat = float("inf")
    for _ in range(repeat):  # interleaved: the two share the machine's load
        t_floor = min(t_floor, _best(lambda: _floor(path, dims), 1))
        t_feat = min(t_feat, _best(lambda: featurize(path, batch_size=batch, dims=dims, with_nodes=False), 1))
    ot = _onnx_tool(path, tool_inputs, repeat)
    print(f"{label}: {feats.params / 1e6:.1f} M params, {feats.macs_forward / 1e9:.4f} GMACs/sample, "
          f"warnings {list(feats.warnings)}")
    print(f"  floor {t_floor * 1e3:8.1f} ms | featurize {t_feat * 1e3:8.1f} ms ({t_feat / t_floor:.2f}x floor)")
    if isinstance(ot, str):
        print(f"  onnx-tool: {ot}")
    else:
        print(f"  onnx-tool {ot[0] * 1e3:8.1f} ms ({ot[0] / t_feat:.1f}x featurize), its MACs "
              f"{ot[1] / 1e9 / batch:.4f} G/sample")
    if ref_macs:
        print(f"  FlopCounterMode {ref_macs / 1e9:.4f} GMACs/sample: featurize {feats.macs_forward / ref_macs - 1:+.3%}")


def _llama_config(size: str):
    import transformers as tf

    shapes = {  # hidden, layers, heads, kv heads, intermediate, vocab
        "1.1b": (2048, 22, 32, 4, 5632, 32000), "7b": (4096, 32, 32, 32, 11008, 32000),
        "70b": (8192, 80, 64, 8, 28672, 32000),
    }[size]
    h, n, a, kv, ff, v = shapes
    return tf.LlamaConfig(hidden_size=h, num_hidden_layers=n, num_attention_heads=a, num_key_value_heads=kv,
                          intermediate_size=ff, vocab_size=v, use_cache=False)


def flop_counter_macs(module, kwargs: dict, batch: int) -> float:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as c, torch.no_grad():
        module(**kwargs)
    return c.get_total_flops() / 2 / batch


def meta_llama(size: str):
    import torch
    import transformers as tf

    with torch.device("meta"):
        return tf.LlamaForCausalLM(_llama_config(size)).eval()


def llama_reference(module, seq: int) -> float:
    import torch

    ids = torch.ones(1, seq, dtype=torch.long, device="meta")
    mask = torch.zeros(1, 1, seq, seq, device="meta")  # a 4-D mask skips transformers' .item() mask checks
    return flop_counter_macs(module, {"input_ids": ids, "attention_mask": mask}, 1)


def export_bert_base(path: Path) -> float:
    import torch
    import transformers as tf

    cfg = tf.BertConfig()
    module = tf.BertForPreTraining(cfg).eval()
    ids = torch.ones(1, SEQ, dtype=torch.long)
    mask = torch.ones(1, SEQ, dtype=torch.long)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (ids, mask), str(path), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"],
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask")})
    with torch.device("meta"):
        meta = tf.BertForPreTraining(cfg).eval()
    return flop_counter_macs(meta, {"input_ids": ids.to("meta")}, 1)


def export_llama(size: str, path: Path) -> float:
    import torch

    from featurize.graph.torch_export import export_module

    module = meta_llama(size)
    proto = export_module(module, {"input_ids": torch.ones(1, SEQ, dtype=torch.long)})
    onnx.save(proto, path)
    return llama_reference(module, SEQ)


def _rss_mb() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss it does not inherit the parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_7b() -> None:
    """featurize(meta 7B Llama module) in this process: export + featurize time and peak RSS."""
    import torch

    t0 = time.perf_counter()
    module = meta_llama("7b")
    t_build, rss_model = time.perf_counter() - t0, _rss_mb()
    t, cpu = time.perf_counter(), time.process_time()
    feats = featurize(module, example_inputs={"input_ids": torch.ones(1, SEQ, dtype=torch.long)}, with_nodes=False)
    t_first, cpu_first = time.perf_counter() - t, time.process_time() - cpu
    t, cpu = time.perf_counter(), time.process_time()
    featurize(module, example_inputs={"input_ids": torch.ones(1, SEQ, dtype=torch.long)}, with_nodes=False)
    t_again, cpu_again = time.perf_counter() - t, time.process_time() - cpu
    rss = _rss_mb()  # before the reference count (FlopCounterMode's own peak is not featurize's)
    print(json.dumps({"params": feats.params, "macs": feats.macs_forward, "build_s": t_build,
                      "featurize_s": t_first, "cpu_s": cpu_first, "again_s": t_again,
                      "again_cpu_s": cpu_again, "rss_mb": rss, "rss_after_build_mb": rss_model,
                      "ref_macs": llama_reference(module, SEQ)}))


def child_file(path: str) -> None:
    """featurize(path) in a fresh process: wall time and peak RSS (imports counted apart)."""
    rss0 = _rss_mb()
    t, cpu = time.perf_counter(), time.process_time()
    feats = featurize(path, with_nodes=False)
    dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
    print(json.dumps({"params": feats.params, "macs": feats.macs_forward, "featurize_s": dt, "cpu_s": dcpu,
                      "rss_mb": _rss_mb(),
                      "rss_after_imports_mb": rss0, "warnings": list(feats.warnings)}))


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-70b", action="store_true")
    parser.add_argument("--only-large", action="store_true", help="only the 7B module and the 70B export")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_7b() if args.child[0] == "7b" else child_file(args.child[1])
    if not args.only_large:
        small_graphs(args.repeat)
    large_graphs(args.skip_70b)


def small_graphs(repeat: int) -> None:
    bench_file("ResNet-50 (onnx wheel)", LIGHT / "light_resnet50.onnx", repeat=repeat, dims={},
               ref_macs=None, tool_inputs={})
    bench_file("DenseNet-121 (onnx wheel)", LIGHT / "light_densenet121.onnx", repeat=repeat, dims={},
               ref_macs=None, tool_inputs={})
    with tempfile.TemporaryDirectory() as tmp:
        bert = Path(tmp) / "bert_base.onnx"
        ref = export_bert_base(bert)
        bench_file("BERT-base BertForPreTraining (TorchScript, opset 17)", bert, repeat=repeat,
                   dims={"batch": 1, "seq": SEQ}, ref_macs=ref,
                   tool_inputs={"input_ids": np.ones((1, SEQ), np.int64), "attention_mask": np.ones((1, SEQ), np.int64)})
        llama = Path(tmp) / "llama_1b.onnx"
        ref = export_llama("1.1b", llama)
        bench_file("Llama-1.1B (dynamo, opset 18, weights absent)", llama, repeat=repeat, dims={},
                   ref_macs=ref, tool_inputs={})


def large_graphs(skip_70b: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        r = _child("--child", "7b")
        print(f"7B Llama-style meta module through featurize(module): {r['params'] / 1e9:.3f} B params, first call "
              f"{r['featurize_s']:.1f} s wall / {r['cpu_s']:.1f} s CPU (export included), repeated call "
              f"{r['again_s'] * 1e3:.0f} ms wall / {r['again_cpu_s'] * 1e3:.0f} ms CPU, peak RSS "
              f"{r['rss_mb']:.0f} MB; "
              f"MACs {r['macs'] / r['ref_macs'] - 1:+.3%} vs FlopCounterMode")
        if not skip_70b:
            big = Path(tmp) / "llama_70b.onnx"
            t = time.perf_counter()
            ref = export_llama("70b", big)
            t_export = time.perf_counter() - t
            r = _child("--child", "file", str(big))
            print(f"70B Llama-style external-data export (weights absent, file {big.stat().st_size / 1e6:.1f} MB, "
                  f"export {t_export:.0f} s): {r['params'] / 1e9:.2f} B params, featurize "
                  f"{r['featurize_s'] * 1e3:.0f} ms wall / "
                  f"{r['cpu_s'] * 1e3:.0f} ms CPU, "
                  f"peak RSS {r['rss_mb']:.0f} MB ({r['rss_after_imports_mb']:.0f} MB after imports); MACs "
                  f"{r['macs'] / ref - 1:+.3%} vs FlopCounterMode; warnings {r['warnings']}")


if __name__ == "__main__":
    main()
