"""Recommendation models behind the throughput sources: DLRM-DCNv2 (MLPerf) and Wide & Deep (NVIDIA DLE).

Entry points:

* :func:`dlrm_dcnv2` -- MLPerf Training ``recommendation_v2/torchrec_dlrm`` (``../shared/docs/ZOO_REFERENCES.md``
  section 4): 13 dense features -> bottom MLP 512-256-128; 26 embedding tables of dimension 128 (the Criteo 1TB
  multi-hot row counts, 204,184,588 rows) sum-pooled over :data:`DLRM_HOTS` lookups (214 per sample); DCNv2 low-rank
  cross network (3 layers, rank 512) on the 3,456-wide concatenation; top MLP 1024-1024-512-256-1.
  26,151,671,809 parameters (computed; MLCommons' inference weights: 97.31 GB fp32). One sample = one click-log
  example; the graph's input is ``dense (13) | ids (214)`` as floats (ids cast inside). Built on the meta device.
  ``?rows=N`` caps every table at N rows (small graphs of the same layout for tests).
* :func:`wide_and_deep` -- NVIDIA DLE ``TensorFlow2/Recommendation/WideAndDeep`` on Outbrain Click Prediction
  (``data/outbrain/features.py``, ``trainer/model/widedeep.py``, default arguments): 13 single-valued categorical
  features and 3 multi-hot lists (topic, entity, category; :data:`WD_HOTS` ids each, mean-combined) with the
  hash-bucket sizes and embedding widths of :data:`WD_FEATURES` (dimensions 128 / 64 / 19), 13 numerical features;
  deep part = the 1,248-wide concatenation of embeddings and numericals -> 5 x Dense(1024, ReLU) -> Dense(1); wide
  part = a linear model over the same categorical ids (1-wide embeddings, summed) and numericals; output = sigmoid of
  the sum. 91,777,245 parameters (computed: the README publishes none), 5.47 M forward MACs. One sample = one
  (display, ad) example; the graph's input is ``numerical (13) | ids (13 + 3 x 3)`` as floats (ids cast inside).
  Built on the meta device. ZOO_REFERENCES.md has no Wide&Deep section: the configuration is the DLE code's as
  cited, not re-read from a fetched copy here (unverified).
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


WD_FEATURES = (  # (name, hash buckets, embedding width): DLE TF2 data/outbrain/features.py
    ("document_id", 300000, 128), ("ad_id", 250000, 128), ("document_id_promo", 100000, 128),
    ("source_id_promo", 4000, 64), ("source_id", 4000, 64), ("geo_location", 2500, 64), ("advertiser_id", 2500, 64),
    ("geo_location_state", 2000, 64), ("publisher_id_promo", 1000, 64), ("publisher_id", 1000, 64),
    ("geo_location_country", 300, 64), ("platform", 4, 19), ("campaign_id", 5000, 128),
    ("topic_id_list", 350, 64), ("entity_id_list", 10000, 64), ("category_id_list", 100, 64))
WD_HOTS = (1,) * 13 + (3, 3, 3)  # ids per feature: the three *_list features are multi-hot (padded to 3; stated)
WD_NUMERICAL = 13
WD_HIDDEN = (1024,) * 5


class WideAndDeep(nn.Module):
    def __init__(self):
        super().__init__()
        self.deep_tables = nn.ModuleList(nn.Embedding(rows, dim) for _, rows, dim in WD_FEATURES)
        self.wide_tables = nn.ModuleList(nn.Embedding(rows, 1) for _, rows, _ in WD_FEATURES)
        width = sum(dim for _, _, dim in WD_FEATURES) + WD_NUMERICAL
        self.deep = _mlp((width, *WD_HIDDEN, 1), last_relu=False)
        self.wide_numerical = nn.Linear(WD_NUMERICAL, 1)

    def forward(self, flat):
        numerical, ids = flat[:, :WD_NUMERICAL], flat[:, WD_NUMERICAL:].to(torch.long)
        deep, wide, start = [], [self.wide_numerical(numerical)], 0
        for deep_table, wide_table, hot in zip(self.deep_tables, self.wide_tables, WD_HOTS):
            chunk = ids[:, start:start + hot]
            deep.append(deep_table(chunk).mean(dim=1))
            wide.append(wide_table(chunk).sum(dim=1))
            start += hot
        logit = self.deep(torch.cat([*deep, numerical], dim=1)) + torch.stack(wide, dim=0).sum(dim=0)
        return torch.sigmoid(logit)


def wide_and_deep() -> nn.Module:
    return WideAndDeep()
