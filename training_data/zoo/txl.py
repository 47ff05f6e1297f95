"""Transformer-XL as trained by NVIDIA DeepLearningExamples ``PyTorch/LanguageModeling/Transformer-XL`` (Dai et al.
2019, relative positional attention with a segment memory), the code Lambda's benchmark runs on WikiText-103.

Entry point: :func:`transformer_xl` ``(size)``: ``base`` = 16 layers, d_model 512, 8 heads x 64, d_inner 2048,
adaptive embedding with div_val 1; ``large`` = 18 layers, d_model 1024, 16 heads x 64, d_inner 4096, div_val 4
(embedding dims 1024/256/64/16 over the cutoffs 19,997 / 39,997 / 199,997 of the 267,735-token vocabulary).

Approximations (documented, both small): the memory of ``mem_len`` = ``tgt_len`` previous hidden states is a zero
input of the same shape (its values do not change the cost); the adaptive softmax computes the head (19,997 frequent
tokens, weights tied to the first embedding cluster, + 3 cluster logits) for every position and omits the tail clusters, which the reference evaluates only for the
positions whose target is a rare token.
"""

from __future__ import annotations

import torch
from torch import nn

CUTOFFS = (19997, 39997, 199997)
VOCAB = 267735
SIZES = {"base": dict(layers=16, d=512, heads=8, d_head=64, d_inner=2048, div_val=1),
         "large": dict(layers=18, d=1024, heads=16, d_head=64, d_inner=4096, div_val=4)}


class AdaptiveEmbedding(nn.Module):
    def __init__(self, d: int, div_val: int):
        super().__init__()
        bounds = (0, *CUTOFFS, VOCAB)
        self.emb = nn.ModuleList(nn.Embedding(hi - lo, d // div_val**i) for i, (lo, hi) in
                                 enumerate(zip(bounds[:-1], bounds[1:])))
        self.proj = nn.ModuleList(nn.Identity() if div_val**i == 1 else nn.Linear(d // div_val**i, d, bias=False)
                                  for i in range(len(self.emb)))
        self.bounds, self.scale = bounds, d**0.5

    def forward(self, ids):
        # every token is looked up in the cluster holding it: sum of masked cluster look-ups (cost ~ one look-up)
        out = 0
        for (lo, hi), emb, proj in zip(zip(self.bounds[:-1], self.bounds[1:]), self.emb, self.proj):
            inside = (ids >= lo) & (ids < hi)
            local = torch.where(inside, ids - lo, torch.zeros_like(ids))
            out = out + proj(emb(local)) * inside.unsqueeze(-1)
        return out * self.scale


class RelLayer(nn.Module):
    def __init__(self, d, heads, d_head, d_inner):
        super().__init__()
        self.h, self.dh = heads, d_head
        self.qkv = nn.Linear(d, 3 * heads * d_head, bias=False)
        self.r = nn.Linear(d, heads * d_head, bias=False)
        self.o = nn.Linear(heads * d_head, d, bias=False)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d_inner), nn.ReLU(), nn.Linear(d_inner, d))
        self.r_w_bias = nn.Parameter(torch.zeros(heads, d_head))
        self.r_r_bias = nn.Parameter(torch.zeros(heads, d_head))

    def forward(self, h, mem, pos):
        b, t, _ = h.shape
        q, k, v = self.qkv(torch.cat([mem, h], dim=1)).chunk(3, dim=-1)
        q = q[:, -t:].reshape(b, t, self.h, self.dh)
        k = k.reshape(b, -1, self.h, self.dh)
        v = v.reshape(b, -1, self.h, self.dh)
        r = self.r(pos).reshape(-1, self.h, self.dh)
        ac = torch.einsum("bihd,bjhd->bhij", q + self.r_w_bias, k)
        bd = torch.einsum("bihd,jhd->bhij", q + self.r_r_bias, r)  # relative shift is a re-indexing: cost-free
        att = torch.softmax((ac + bd) * self.dh**-0.5, dim=-1)
        vec = torch.einsum("bhij,bjhd->bihd", att, v).reshape(b, t, self.h * self.dh)
        h = self.ln1(h + self.o(vec))
        return self.ln2(h + self.ff(h))


class TransformerXL(nn.Module):
    def __init__(self, layers, d, heads, d_head, d_inner, div_val):
        super().__init__()
        self.d = d
        self.emb = AdaptiveEmbedding(d, div_val)
        self.layers = nn.ModuleList(RelLayer(d, heads, d_head, d_inner) for _ in range(layers))
        self.cluster = nn.Linear(d, len(CUTOFFS))  # the head's cluster logits; its token logits are tied to emb[0]

    def forward(self, ids):
        b, t = ids.shape
        h = self.emb(ids)
        mem = torch.zeros_like(h)  # mem_len = tgt_len
        pos_seq = torch.arange(2 * t - 1, -1, -1.0, dtype=h.dtype)
        inv = 1 / (10000 ** (torch.arange(0, self.d, 2.0) / self.d))
        sinus = pos_seq[:, None] * inv[None, :]
        pos = torch.cat([sinus.sin(), sinus.cos()], dim=-1)
        for layer in self.layers:
            h = layer(h, mem, pos)
        logits = torch.cat([h @ self.emb.emb[0].weight.t(), self.cluster(h)], dim=-1)
        return torch.log_softmax(logits, dim=-1)


def transformer_xl(size: str = "base") -> nn.Module:
    return TransformerXL(**SIZES[size])
