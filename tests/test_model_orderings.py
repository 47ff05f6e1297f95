"""Physical orderings the per-layer physics prior must honour (issue 17's table; measured figures in comments).

Each case compares training-step throughput (samples/s) of one real graph under the per-layer prior
(:func:`predictor.layers.layer_prior_for`). ``bench/orderings.py`` prints the same table for the shipped model
(prior x boosters) next to these figures.
"""

from __future__ import annotations

import functools
import warnings

import pytest
from _graphs import RESNET50, conv_stack_onnx, gpt_onnx

from featurize import featurize, lookup_gpu
from predictor.layers import layer_prior_for

GRAPHS = {"resnet50": (lambda: str(RESNET50), 64), "convs": (conv_stack_onnx, 64),
          "gpt": (lambda: gpt_onnx(layers=12, seq=512, batch=8), 8)}


@functools.lru_cache(maxsize=None)
def _features(graph: str, precision: str):
    build, batch = GRAPHS[graph]
    return featurize(build(), batch_size=batch, precision=precision), batch


def throughput(graph: str, gpu: str, precision: str) -> float:
    """Samples per second of one training step under the per-layer prior."""
    gf, batch = _features(graph, precision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = lookup_gpu(gpu)
    return batch / float(layer_prior_for(gf, spec, precision=precision, batch_size=batch)["time_s"].sum())


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_rtx4090_faster_than_rtx3090_on_resnet50(precision):
    # Lambda (NGC PyTorch): 721 vs 513 img/s TF32 (1.41x), 1301 vs 905 AMP (1.44x)
    assert throughput("resnet50", "RTX-4090", precision) > 1.2 * throughput("resnet50", "RTX-3090", precision)


@pytest.mark.parametrize("sxm, pcie", [("A100-SXM4-40GB", "A100-PCIE-40GB"), ("A100-SXM4-80GB", "A100-PCIE-80GB"),
                                       ("H100-SXM5-80GB", "H100-PCIE-80GB")])
@pytest.mark.parametrize("graph", ["resnet50", "convs"])
def test_sxm_at_least_pcie_of_the_same_chip(sxm, pcie, graph):
    # Lambda ResNet-50 TF32: A100 SXM4 40GB 928 vs PCIe 40GB 882 img/s
    assert throughput(graph, sxm, "fp32") >= throughput(graph, pcie, "fp32")


def test_h100_sxm_above_h100_nvl_when_compute_bound():
    assert throughput("convs", "H100-SXM5-80GB", "fp16") > throughput("convs", "H100-NVL-94GB", "fp16")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_h200_like_h100_when_compute_bound_and_faster_when_memory_bound(precision):
    ratio_compute = throughput("convs", "H200-SXM-141GB", precision) / throughput("convs", "H100-SXM5-80GB", precision)
    assert 0.9 <= ratio_compute <= 1.1
    ratio_memory = (throughput("resnet50", "H200-SXM-141GB", precision)
                    / throughput("resnet50", "H100-SXM5-80GB", precision))
    assert ratio_memory > 1.1


@pytest.mark.parametrize("gpu", ["A100-SXM4-80GB", "H100-SXM5-80GB"])
def test_amp_at_least_1_4x_tf32_for_resnet50(gpu):
    # Lambda: A100 SXM4 80GB 1582 / 1067 = 1.48x, H100 SXM5 2800 / 1898 = 1.48x
    assert throughput("resnet50", gpu, "fp16") >= 1.4 * throughput("resnet50", gpu, "tf32")


def test_bf16_llm_step_on_h100_at_least_2_5x_fp32():
    assert throughput("gpt", "H100-SXM5-80GB", "bf16") >= 2.5 * throughput("gpt", "H100-SXM5-80GB", "fp32")


def test_fp32_gemms_slower_than_tf32_on_a100_but_not_on_rtx3090():
    """PyTorch keeps matmuls in FP32 unless allow_tf32: a GPT step in fp32 on an A100 is far slower than in tf32
    (19.5 vs 156 TFLOP/s peaks); on an RTX 3090 dense TF32 runs at the FP32 rate, so they are the same."""
    assert throughput("gpt", "A100-SXM4-80GB", "tf32") > 1.8 * throughput("gpt", "A100-SXM4-80GB", "fp32")
    assert throughput("gpt", "RTX-3090", "tf32") == pytest.approx(throughput("gpt", "RTX-3090", "fp32"))
