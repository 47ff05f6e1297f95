"""Llama-2/3-style decoders (1B, 7B/8B, 70B) and the MLPerf Llama-2-70B LoRA fine-tuning graph.

Entry points: :func:`llama` ``(size, lora_rank=0)`` and :data:`LLAMA_SIZES`. Built on the meta device by the zoo
(``ZooEntry(meta=True)``): a 70B graph never allocates a weight.

Configurations (``../shared/docs/ZOO_REFERENCES.md`` section 9, Hugging Face ``config.json`` of each model): SwiGLU MLP,
RMSNorm (eps 1e-5), rotary embeddings, grouped-query attention, no biases, head dim = hidden / heads; parameter count
``L (2h^2 + 2 h kv d + 3 h ffn + 2h) + V h (1 or 2) + h``. The QKV projection is one fused matrix as in
NeMo / Megatron (``llama-v2-fused-qkv``, the MLPerf reference); its MACs and parameters equal the separate q/k/v
projections of Hugging Face ``LlamaForCausalLM`` (tests compare the two).

LoRA (MLPerf ``llama2_70b_lora``: r 16, alpha 32, targets the fused QKV and the output projection): adapters live
under ``lora.*`` and the base model under ``base.*``, so ``frozen="base"`` prices the frozen base (forward + activation
gradients, no weight gradients) apart from the trainable adapters (44,564,480 parameters at 70B, r 16).
"""

from __future__ import annotations

import torch
from torch import nn

LLAMA_SIZES: dict[str, dict[str, int]] = {
    # hidden, layers, heads, kv_heads, ffn, vocab, tied
    "llama3_1b": dict(hidden=2048, layers=16, heads=32, kv_heads=8, ffn=8192, vocab=128256, tied=1),
    "llama2_7b": dict(hidden=4096, layers=32, heads=32, kv_heads=32, ffn=11008, vocab=32000, tied=0),
    "llama3_8b": dict(hidden=4096, layers=32, heads=32, kv_heads=8, ffn=14336, vocab=128256, tied=0),
    "llama2_70b": dict(hidden=8192, layers=80, heads=64, kv_heads=8, ffn=28672, vocab=32000, tied=0),
    "llama3_70b": dict(hidden=8192, layers=80, heads=64, kv_heads=8, ffn=28672, vocab=128256, tied=0),
}
ROPE_THETA = {"llama3_1b": 500000.0, "llama2_7b": 10000.0, "llama3_8b": 500000.0, "llama2_70b": 10000.0,
              "llama3_70b": 500000.0}


def llama_params(size: str) -> int:
    """The closed-form count of ZOO_REFERENCES.md section 9 (no adapters)."""
    c = LLAMA_SIZES[size]
    h, d = c["hidden"], c["hidden"] // c["heads"]
    layer = 2 * h * h + 2 * h * c["kv_heads"] * d + 3 * h * c["ffn"] + 2 * h
    return c["layers"] * layer + c["vocab"] * h * (1 if c["tied"] else 2) + h


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def _rotate(x, cos, sin):
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


class LoRA(nn.Module):
    """x -> B(A(x)) * alpha / r (dropout is elementwise and not modelled)."""

    def __init__(self, d_in: int, d_out: int, rank: int, alpha: float = 32.0):
        super().__init__()
        self.a = nn.Linear(d_in, rank, bias=False)
        self.b = nn.Linear(rank, d_out, bias=False)
        self.scale = alpha / rank

    def forward(self, x):
        return self.b(self.a(x)) * self.scale


class Block(nn.Module):
    def __init__(self, c: dict[str, int]):
        super().__init__()
        h, self.heads, self.kv = c["hidden"], c["heads"], c["kv_heads"]
        self.d = h // self.heads
        self.attn_norm, self.mlp_norm = RMSNorm(h), RMSNorm(h)
        self.qkv = nn.Linear(h, h + 2 * self.kv * self.d, bias=False)
        self.o = nn.Linear(h, h, bias=False)
        self.gate_up = nn.Linear(h, 2 * c["ffn"], bias=False)
        self.down = nn.Linear(c["ffn"], h, bias=False)

    def forward(self, x, cos, sin, adapters=None):
        n, s, h = x.shape
        y = self.attn_norm(x)
        qkv = self.qkv(y) + (adapters["qkv"](y) if adapters is not None else 0)
        q, k, v = qkv.split([h, self.kv * self.d, self.kv * self.d], dim=-1)
        q = _rotate(q.view(n, s, self.heads, self.d).transpose(1, 2), cos, sin)
        k = _rotate(k.view(n, s, self.kv, self.d).transpose(1, 2), cos, sin)
        v = v.view(n, s, self.kv, self.d).transpose(1, 2)
        att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv != self.heads)
        att = att.transpose(1, 2).reshape(n, s, h)
        x = x + self.o(att) + (adapters["o"](att) if adapters is not None else 0)
        g, u = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(nn.functional.silu(g) * u)


def _config(size: str, layers: int = 0) -> dict[str, int]:
    """The size's configuration; ``layers > 0`` truncates the depth (small graphs of the same family for tests)."""
    return {**LLAMA_SIZES[size], **({"layers": int(layers)} if layers else {})}


class Llama(nn.Module):
    def __init__(self, size: str, layers: int = 0):
        super().__init__()
        c = _config(size, layers)
        self.embed = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"])
        self.head = None if c["tied"] else nn.Linear(c["hidden"], c["vocab"], bias=False)
        self.d, self.theta = c["hidden"] // c["heads"], ROPE_THETA[size]

    def rope(self, s: int, device):
        inv = 1.0 / self.theta ** (torch.arange(0, self.d, 2, device=device, dtype=torch.float32) / self.d)
        ang = torch.outer(torch.arange(s, device=device, dtype=torch.float32), inv)
        ang = torch.cat([ang, ang], dim=-1)
        return ang.cos(), ang.sin()

    def forward(self, input_ids, lora=None):
        x = self.embed(input_ids)
        cos, sin = self.rope(input_ids.shape[1], input_ids.device)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if lora is None else lora[i])
        x = self.norm(x)
        return self.head(x) if self.head is not None else x @ self.embed.weight.T


class LlamaLoRA(nn.Module):
    """A frozen :class:`Llama` (``base.*``) with LoRA adapters on the fused QKV and the output projection
    (``lora.<layer>.qkv`` / ``lora.<layer>.o``)."""

    def __init__(self, size: str, rank: int = 16, alpha: float = 32.0, layers: int = 0):
        super().__init__()
        c = _config(size, layers)
        h, d = c["hidden"], c["hidden"] // c["heads"]
        self.base = Llama(size, layers)
        self.lora = nn.ModuleList(nn.ModuleDict({"qkv": LoRA(h, h + 2 * c["kv_heads"] * d, rank, alpha),
                                                 "o": LoRA(h, h, rank, alpha)}) for _ in range(c["layers"]))

    def forward(self, input_ids):
        return self.base(input_ids, self.lora)


def llama(size: str = "llama2_70b", lora_rank: int = 0, layers: int = 0) -> nn.Module:
    """``size`` from :data:`LLAMA_SIZES`; ``lora_rank > 0`` adds MLPerf-style adapters (alpha 32); ``layers > 0``
    truncates the depth."""
    return LlamaLoRA(size, int(lora_rank), layers=int(layers)) if int(lora_rank) > 0 else Llama(size, int(layers))
