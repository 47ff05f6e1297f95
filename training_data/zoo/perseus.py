"""The Perseus (SOSP'24) workloads as Merak ran them: Hugging Face models from their configurations (random init, meta
device, no download) and torchvision's Wide-ResNet-101.

Entry points: :func:`gpt3`, :func:`bert_huge`, :func:`t5_3b`, :func:`bloom_3b`, :func:`wide_resnet101_8`.
Reference: ``../shared/docs/ZOO_REFERENCES.md`` section 8 (ml-energy/zeus ``kronos`` @ 38cb3f90,
``merak/examples/language-modeling/config.py``, ``torch-models/config.py``):

* GPT-3 XL / 2.7B / 6.7B: ``GPT2LMHeadModel`` (GPT-2 vocabulary 50,257 and 1,024 positions, tied LM head), n_embd 2048 /
  2560 / 4096, 24 / 32 / 32 layers, 16 / 32 / 32 heads; published 1,313.63 M / 2,648.93 M / 6,654.21 M parameters;
  sequence 1,024 (the cap in ``utils.py``).
* BERT-huge: ``BertForMaskedLM`` with bert-large-uncased's config at hidden 2048, intermediate 8192 (24 layers,
  16 heads); published 1,276.40 M; sequence 512 (the tokenizer's maximum; unverified).
* T5-3B: ``T5ForConditionalGeneration`` with the hub's ``t5-3b`` config (d_model 1024, d_ff 16384, 32 heads of 128,
  24 + 24 layers, vocab 32,128, ReLU feed-forward, tied embeddings; unverified here): input 512 / target 512 tokens
  (``run_t5.py``); the graph takes ``input (512) | target (512)`` ids in one input.
* BLOOM-3B: ``BloomForCausalLM`` with the hub's ``bigscience/bloom-3b`` config (hidden 2560, 30 layers, 32 heads, vocab
  250,880, ALiBi; unverified here), sequence 1,024.
* Wide-ResNet-101 (width 8): torchvision ResNet, layers 3-4-23-3, ``width_per_group`` 8 x 64; published 1,517.37 M.
"""

from __future__ import annotations

import torch
from torch import nn

GPT3 = {"xl": (2048, 24, 16), "2.7b": (2560, 32, 32), "6.7b": (4096, 32, 32)}
GPT3_NAMES = {1: "xl", 2: "2.7b", 6: "6.7b"}
T5_SEQ = 512


class _Logits(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False, return_dict=True).logits


def gpt3(size: int = 1, layers: int = 0) -> nn.Module:
    """``size`` 1 = XL (1.3 B), 2 = 2.7 B, 6 = 6.7 B; ``layers`` truncates the depth (tests)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    d, n, heads = GPT3[GPT3_NAMES[int(size)]]
    cfg = GPT2Config(n_embd=d, n_layer=int(layers) or n, n_head=heads, vocab_size=50257, n_positions=1024,
                     attn_implementation="eager")
    return _Logits(GPT2LMHeadModel(cfg))


def bert_huge(layers: int = 0) -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(hidden_size=2048, num_hidden_layers=int(layers) or 24, num_attention_heads=16,
                     intermediate_size=8192, attn_implementation="eager")
    return _Logits(BertForMaskedLM(cfg))


class _Seq2Seq(nn.Module):
    """One input ``(batch, 2 * T5_SEQ)``: the source ids, then the target ids (teacher forcing)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids[:, :T5_SEQ], decoder_input_ids=ids[:, T5_SEQ:], use_cache=False,
                          return_dict=True).logits


def t5_3b(layers: int = 0) -> nn.Module:
    from transformers import T5Config, T5ForConditionalGeneration

    n = int(layers) or 24
    cfg = T5Config(vocab_size=32128, d_model=1024, d_kv=128, d_ff=16384, num_layers=n, num_decoder_layers=n,
                   num_heads=32, feed_forward_proj="relu", tie_word_embeddings=True, attn_implementation="eager")
    return _Seq2Seq(T5ForConditionalGeneration(cfg))


def bloom_3b(layers: int = 0) -> nn.Module:
    from transformers import BloomConfig, BloomForCausalLM

    cfg = BloomConfig(vocab_size=250880, hidden_size=2560, n_layer=int(layers) or 30, n_head=32,
                      attn_implementation="eager")
    return _Logits(BloomForCausalLM(cfg))


def wide_resnet101_8() -> nn.Module:
    from training_data.zoo.resnets import resnet_v15

    return resnet_v15(depth=101, width_per_group=8 * 64)
