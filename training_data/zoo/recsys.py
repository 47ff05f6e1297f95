"""Recommendation models behind the throughput sources: DLRM-DCNv2 (MLPerf) and Wide & Deep (NVIDIA DLE).

Entry points:

* :func:`dlrm_dcnv2` -- MLPerf Training ``recommendation_v2/torchrec_dlrm`` (``../shared/docs/ZOO_REFERENCES.md``
  section 4): 13 dense features -> bottom MLP 512-256-128; 26 embedding tables of dimension 128 (the Criteo 1TB
  multi-hot row counts, 204,184,588 rows) sum-pooled over :data:`DLRM_HOTS` lookups (214 per sample); DCNv2 low-rank
  cross network (3 layers, rank 512) on the 3,456-wide concatenation; top MLP 1024-1024-512-256-1.
  26,151,671,809 parameters (computed; MLCommons' inference weights: 97.31 GB fp32). One sample = one click-log
  example; the graph's input is ``dense (13) | ids (214)`` as floats (ids cast inside). Built on the meta device.
  ``?rows=N`` caps every table at N rows (small graphs of the same layout for tests).
* :func:`wide_and_deep` -- NVIDIA DLE ``TensorFlow2/Recommendation/WideAndDeep`` (Outbrain): see its docstring.
"""

from __future__ import annotations

import torch
from torch import nn

DLRM_ROWS = (40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10, 2209, 11938, 155,
             4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36)
DLRM_HOTS = (3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1)
DENSE = 13


def _mlp(sizes, last_relu: bool = True) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_relu or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class LowRankCross(nn.Module):
    """DCNv2 cross layer, low rank: ``x_{l+1} = x0 * (W (V x_l) + b) + x_l``."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.v, self.w = nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim)

    def forward(self, x0, x):
        return x0 * self.w(self.v(x)) + x


class DLRMDCNv2(nn.Module):
    def __init__(self, rows: int = 0, dim: int = 128, cross_layers: int = 3, rank: int = 512):
        super().__init__()
        sizes = [min(r, rows) if rows else r for r in DLRM_ROWS]
        self.bottom = _mlp((DENSE, 512, 256, dim))
        self.tables = nn.ModuleList(nn.Embedding(r, dim) for r in sizes)
        width = dim * (1 + len(sizes))
        self.cross = nn.ModuleList(LowRankCross(width, rank) for _ in range(cross_layers))
        self.top = _mlp((width, 1024, 1024, 512, 256, 1), last_relu=False)

    def forward(self, flat):
        ids = flat[:, DENSE:].to(torch.long)
        feats, start = [self.bottom(flat[:, :DENSE])], 0
        for table, hot in zip(self.tables, DLRM_HOTS):
            feats.append(table(ids[:, start:start + hot]).sum(dim=1))
            start += hot
        x0 = x = torch.cat(feats, dim=1)
        for layer in self.cross:
            x = layer(x0, x)
        return self.top(x)


def dlrm_dcnv2(rows: int = 0) -> nn.Module:
    return DLRMDCNv2(int(rows))
