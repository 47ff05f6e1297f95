"""Physical orderings (issue 17): per-layer prior, whole-graph prior and the shipped model side by side.

Usage: ``python bench/orderings.py`` (from the repository root). Prints, for each ordering of
``tests/test_model_orderings.py``, the throughput ratio under the per-layer physics prior (what the time model's
residual multiplies since issue 28), the whole-graph prior (``t_phys``) and the shipped model (``predict``), and
whether each honours it. ``tests/test_model_time_orderings.py`` asserts the shipped model's column.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from _graphs import RESNET50, conv_stack_onnx, gpt_onnx  # noqa: E402

GRAPHS = {"resnet50": (lambda: str(RESNET50), 64), "convs": (conv_stack_onnx, 64),
          "gpt": (lambda: gpt_onnx(layers=12, seq=512, batch=8), 8)}
# (label, graph, (gpu, precision) numerator, (gpu, precision) denominator, low, high): ratio must be in [low, high]
ORDERINGS = [
    ("RTX 4090 / RTX 3090, ResNet-50 fp32 (measured 1.41)", "resnet50", ("RTX-4090", "fp32"), ("RTX-3090", "fp32"),
     1.2, 9),
    ("RTX 4090 / RTX 3090, ResNet-50 fp16 (measured 1.44)", "resnet50", ("RTX-4090", "fp16"), ("RTX-3090", "fp16"),
     1.2, 9),
    ("A100 SXM4 40GB / PCIe 40GB, ResNet-50 (measured 1.05)", "resnet50", ("A100-SXM4-40GB", "fp32"),
     ("A100-PCIE-40GB", "fp32"), 1.0, 9),
    ("H100 SXM / H100 PCIe, ResNet-50", "resnet50", ("H100-SXM5-80GB", "fp32"), ("H100-PCIE-80GB", "fp32"), 1.0, 9),
    ("H100 SXM / H100 NVL, ResNet-50", "resnet50", ("H100-SXM5-80GB", "fp32"), ("H100-NVL-94GB", "fp32"), 1.0, 9),
    ("H100 SXM / H100 NVL, conv stack fp16", "convs", ("H100-SXM5-80GB", "fp16"), ("H100-NVL-94GB", "fp16"), 1.0, 9),
    ("H200 / H100, conv stack fp16 (within 10 %)", "convs", ("H200-SXM-141GB", "fp16"), ("H100-SXM5-80GB", "fp16"),
     0.9, 1.1),
    ("H200 / H100, ResNet-50 fp16 (memory-bound: faster)", "resnet50", ("H200-SXM-141GB", "fp16"),
     ("H100-SXM5-80GB", "fp16"), 1.1, 9),
    ("A100 AMP / TF32, ResNet-50 (measured 1.48)", "resnet50", ("A100-SXM4-80GB", "fp16"), ("A100-SXM4-80GB", "tf32"),
     1.4, 9),
    ("H100 AMP / TF32, ResNet-50 (measured 1.48)", "resnet50", ("H100-SXM5-80GB", "fp16"), ("H100-SXM5-80GB", "tf32"),
     1.4, 9),
    ("H100 bf16 / fp32, GPT step", "gpt", ("H100-SXM5-80GB", "bf16"), ("H100-SXM5-80GB", "fp32"), 2.5, 99),
    ("A100 tf32 / fp32, GPT step (PyTorch fp32 GEMMs)", "gpt", ("A100-SXM4-80GB", "tf32"), ("A100-SXM4-80GB", "fp32"),
     1.8, 99),
]


def throughputs(graph: str, gpu: str, precision: str, cache: dict) -> tuple[float, float, float]:
    """(per-layer prior, whole-graph prior, shipped model) samples/s of one training step."""
    from featurize import featurize, lookup_gpu
    from predictor import predict
    from predictor.layers import layer_prior_for

    build, batch = GRAPHS[graph]
    key = (graph, precision)
    if key not in cache:
        cache[key] = (build(), featurize(build(), batch_size=batch, precision=precision))
    model, gf = cache[key]
    spec = lookup_gpu(gpu)
    layered = batch / float(layer_prior_for(gf, spec, precision=precision, batch_size=batch)["time_s"].sum())
    p = predict(model, gpu=spec, batch_size=batch, samples_per_epoch=batch, precision=precision)
    return layered, 1.0 / p.features["t_phys_s"], batch / p.time_s


def main() -> int:
    warnings.simplefilter("ignore")
    cache: dict = {}
    print(f"{'ordering':<58} {'layered':>8} {'whole':>8} {'model':>8}")
    fails = {"layered": 0, "whole": 0, "model": 0}
    for label, graph, (g1, p1), (g2, p2), lo, hi in ORDERINGS:
        a, b = throughputs(graph, g1, p1, cache), throughputs(graph, g2, p2, cache)
        cells = []
        for i, name in enumerate(fails):
            r = a[i] / b[i]
            ok = lo <= r <= hi
            fails[name] += not ok
            cells.append(f"{r:7.2f}{' ' if ok else '!'}")
        print(f"{label:<58} " + " ".join(cells))
    print(f"broken ('!'): per-layer prior {fails['layered']}, whole-graph prior {fails['whole']}, "
          f"shipped model {fails['model']} of {len(ORDERINGS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
