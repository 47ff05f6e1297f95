"""Graphs with ONNX local functions are inlined and costed (issue 32 item 1), each in a fresh interpreter: the
inliner is a submodule that ``import onnx`` alone does not load, so an interpreter that imported it elsewhere
first would hide the defect."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

FUNCTION_GRAPH = r"""
import json
from onnx import TensorProto, helper
from featurize import featurize

def model(inline):
    body = [helper.make_node("Mul", ["h", "h"], ["t"]), helper.make_node("Add", ["t", "h"], ["out"])]
    head = [helper.make_node("MatMul", ["a", "w"], ["h"])]
    nodes = head + (body if inline else [helper.make_node("Square2", ["h"], ["out"], domain="custom")])
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 32])],
                              initializer=[helper.make_tensor("w", TensorProto.FLOAT, [64, 32], [0.0] * 2048)])
    fn = helper.make_function("custom", "Square2", ["h"], ["out"], body, [helper.make_opsetid("", 17)])
    return helper.make_model(graph, functions=[] if inline else [fn],
                             opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])

out = {}
for inline in (False, True):
    f = featurize(model(inline), batch_size=8)
    out[str(inline)] = [f.params, f.n_nodes, f.flops_forward, f.flops_train, f.activation_bytes]
print("RESULT " + json.dumps(out))
"""

GPT2_META = r"""
import json, torch, transformers as tf
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from featurize import featurize, torch_export

cfg = tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=64, vocab_size=512, bos_token_id=0, eos_token_id=0)
with torch.device("meta"):
    model = tf.GPT2LMHeadModel(cfg)
ids = torch.ones(1, 16, dtype=torch.long)
n_functions = len(torch_export.export_module(model, {"input_ids": ids}).functions)
f = featurize(model, example_inputs={"input_ids": ids}, batch_size=1, with_nodes=False)
real = tf.GPT2LMHeadModel(cfg)  # on the CPU (FlopCounterMode runs it; meta cannot take this path)
with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
    real(input_ids=ids, use_cache=False)
print("RESULT " + json.dumps([n_functions, f.params, sum(p.numel() for p in model.parameters()),
                              f.macs_forward, counter.get_total_flops() / 2]))
"""


def _fresh(code: str) -> object:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def test_hand_made_local_function_is_inlined_and_costed_like_the_inline_graph():
    res = _fresh(FUNCTION_GRAPH)
    params, n_nodes, flops_fwd, flops_train, act = res["False"]
    assert res["False"] == res["True"]  # the function graph costs what the same nodes written inline cost
    assert params == 64 * 32 and n_nodes == 3
    assert flops_fwd == 2 * 64 * 32 + 2 * 32  # per sample: the MatMul plus the function's Mul and Add


def test_gpt2_meta_export_with_local_functions_featurizes():
    pytest.importorskip("transformers")
    pytest.importorskip("onnxscript")
    n_functions, params, torch_params, macs, torch_macs = _fresh(GPT2_META)
    assert n_functions >= 1  # the exporter wrote a local function: the case that failed to inline
    assert params == torch_params  # lm_head tied to wte: counted once, as torch does
    assert macs == pytest.approx(torch_macs, rel=5e-3)
