"""Small Hugging Face models built from ``transformers`` configs (random weights, no network) and their
ONNX exports, for the featurizer's exactness tests (tests/test_feat_hf_exports.py).

Each case: a model built from a config, example inputs (batch 2, sequence 16), the names of its dynamic
axes, and a reference count of forward MACs from ``torch.utils.flop_counter.FlopCounterMode`` on the same
config built on the meta device. Every parameter is re-drawn from a seeded normal so that no two weight
tensors are equal (the TorchScript exporter merges initializers with identical values). Word embeddings
are untied except in ``bert-tied-head``: the TorchScript exporter writes a tied LM head as a second,
transposed copy, which the loader recognises from the weights' values.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import onnx
import torch
import transformers as tf

BATCH, SEQ = 2, 16
IMAGE = 32


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], Any]  # -> torch module (random weights)
    inputs: Callable[[int, int, str], dict]  # (batch, seq, device) -> forward kwargs
    axes: dict  # input name -> {axis: dim name}


def _ids(b, s, device, name="input_ids"):
    return {name: torch.ones(b, s, dtype=torch.long, device=device)}


def _text(b, s, device):
    return {**_ids(b, s, device), "attention_mask": torch.ones(b, s, dtype=torch.long, device=device)}


def _t5_inputs(b, s, device):
    return {**_text(b, s, device), **_ids(b, s // 2, device, "decoder_input_ids")}


def _pixels(b, s, device):
    return {"pixel_values": torch.zeros(b, 3, IMAGE, IMAGE, device=device)}


_TEXT_AXES = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
_SMALL = dict(vocab_size=512, tie_word_embeddings=False, use_cache=False)


def _bert_pretraining():
    return tf.BertForPreTraining(tf.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                               intermediate_size=256, max_position_embeddings=64, **_SMALL))


def _bert_tied():  # the default: LM head tied to the word embeddings
    return tf.BertForPreTraining(tf.BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                               intermediate_size=128, max_position_embeddings=64, vocab_size=512))


def _bert_qa():  # BERT-large's shape ratios (16 heads, 4x FFN), scaled down
    return tf.BertForQuestionAnswering(tf.BertConfig(hidden_size=128, num_hidden_layers=3, num_attention_heads=16,
                                                     intermediate_size=512, max_position_embeddings=64, **_SMALL))


def _gpt2():
    cfg = tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=64, **_SMALL)
    cfg._attn_implementation = "eager"
    return tf.GPT2LMHeadModel(cfg)


def _opt():
    return tf.OPTForCausalLM(tf.OPTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=256,
                                          max_position_embeddings=64, word_embed_proj_dim=64, **_SMALL))


def _llama():  # RMSNorm, RoPE, SwiGLU MLP, grouped-query attention (4 query heads share 2 KV heads)
    return tf.LlamaForCausalLM(tf.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                              num_key_value_heads=2, intermediate_size=176,
                                              max_position_embeddings=64, **_SMALL))


def _t5():
    model = tf.T5ForConditionalGeneration(tf.T5Config(d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                                      num_decoder_layers=2, num_heads=4, **_SMALL))
    if model.lm_head.weight is model.shared.weight:  # transformers 5 ties T5's head whatever the flag
        model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    return model


def _vit():
    return tf.ViTForImageClassification(tf.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                     intermediate_size=256, image_size=IMAGE, patch_size=8,
                                                     num_labels=10))


CASES = {
    "bert-pretraining": Case("bert-pretraining", _bert_pretraining, _text, _TEXT_AXES),
    "bert-tied-head": Case("bert-tied-head", _bert_tied, _text, _TEXT_AXES),
    "bert-large-qa": Case("bert-large-qa", _bert_qa, _text, _TEXT_AXES),
    "gpt2-eager": Case("gpt2-eager", _gpt2, _text, _TEXT_AXES),
    "opt": Case("opt", _opt, _text, _TEXT_AXES),
    "llama-gqa": Case("llama-gqa", _llama, _text, _TEXT_AXES),
    "t5": Case("t5", _t5, _t5_inputs, {**_TEXT_AXES, "decoder_input_ids": {0: "batch", 1: "dec_seq"}}),
    "vit": Case("vit", _vit, _pixels, {"pixel_values": {0: "batch"}}),
}


def build(case: Case) -> Any:
    """The case's module in eval mode with distinct, seeded random weights."""
    torch.manual_seed(0)
    module = case.build().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.02)
    return module


def reference_params(case: Case, module: Any) -> int:
    """Elements of the parameters the forward pass uses (those that get a gradient: a parameter the
    forward never reads, like BERT's untied ``cls.predictions.bias``, is in no exported graph), plus the
    floating-point buffers (Llama's RoPE ``inv_freq``): in an ONNX graph a float buffer read by arithmetic
    is indistinguishable from a weight (only BatchNorm statistics are known by their slot)."""
    from torch.overrides import TorchFunctionMode

    class _Reads(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.ids: set[int] = set()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.ids.update(id(a) for a in args if isinstance(a, torch.Tensor))
            return func(*args, **(kwargs or {}))

    module.zero_grad(set_to_none=True)
    with _Reads() as reads:
        outputs = KeywordForward(module, list(case.inputs(1, 4, "cpu")))(*case.inputs(1, 4, "cpu").values())
    sum(o.float().sum() for o in outputs).backward()
    total = sum(p.numel() for p in module.parameters() if p.grad is not None)
    total += sum(b.numel() for b in module.buffers() if b.is_floating_point() and id(b) in reads.ids)
    module.zero_grad(set_to_none=True)
    return total


def reference_macs(case: Case, module: Any, batch: int, seq: int) -> float:
    """Forward MACs (FLOPs / 2) that ``torch.utils.flop_counter.FlopCounterMode`` counts on ``module``.

    On the CPU: transformers 5's mask helpers call ``Tensor.item()``, which the meta device refuses, and
    these configs are small enough to run in milliseconds."""
    from torch.utils.flop_counter import FlopCounterMode

    from torch.nn.attention import SDPBackend, sdpa_kernel

    # the math backend decomposes scaled_dot_product_attention into the bmm calls FlopCounterMode
    # counts (the fused CPU kernel has no FLOP formula); the MACs are the same
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        module(**case.inputs(batch, seq, "cpu"))
    return counter.get_total_flops() / 2


class KeywordForward(torch.nn.Module):
    """Calls ``inner(**dict(zip(names, args)))`` and returns its tensor outputs: a positional signature
    for the exporters (GPT-2 takes ``past_key_values`` second; causal LMs would export ``logits_to_keep``)."""

    def __init__(self, inner: Any, names: list[str]):
        super().__init__()
        self.inner, self.names = inner, names

    def forward(self, *args):
        out = self.inner(**dict(zip(self.names, args)))
        return tuple(v for v in out.values() if isinstance(v, torch.Tensor))


def export(case: Case, module: Any, exporter: str, opset: int) -> onnx.ModelProto:
    """ONNX export with dynamic batch and sequence axes: ``torchscript`` (``dynamic_axes``) or ``dynamo``
    (``dynamic_shapes`` with ``torch.export.Dim``)."""
    kwargs = case.inputs(BATCH, SEQ, "cpu")
    names = list(kwargs)
    wrapped, args = KeywordForward(module, names), tuple(kwargs.values())
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            buf = io.BytesIO()
            torch.onnx.export(wrapped, args, buf, dynamo=False, opset_version=opset, input_names=names,
                              dynamic_axes={n: case.axes[n] for n in names})
            return onnx.load_from_string(buf.getvalue())
        dims = {}
        shapes = tuple({ax: dims.setdefault(d, torch.export.Dim(d)) for ax, d in case.axes[n].items()} for n in names)
        program = torch.onnx.export(wrapped, args, dynamo=True, opset_version=opset, input_names=names,
                                    dynamic_shapes=(shapes,), optimize=False)
        return program.model_proto
