"""R-GAT on IGBH-Full (MLPerf Training GNN, v4.0-v5.0) as our own PyTorch definition.

Entry point: :func:`rgat`. Reference (``../shared/docs/ZOO_REFERENCES.md`` section 5; mlcommons/training ``rgat``,
NVIDIA's DGL implementation): 3 layers of relation-wise ``GATConv`` (11 edge types, 4 heads x 128 = 512 hidden, one
shared input projection per relation, attention vectors and bias per relation), summed over relations, leaky-ReLU
attention, ReLU between layers; 1024-d input features; final Linear(512 -> 2983) on the seed ``paper`` nodes.
13,115,303 parameters (the code as written; MLCommons publishes "25M", which ZOO_REFERENCES leaves unresolved).

One sample = one seed node with its sampled neighbourhood, taken as a tree of fan-out 15, 10, 5 (the reference's
``15,10,5``): 1 + 15 + 150 + 750 nodes, each projected once per layer that reads it (stated estimate: duplicate nodes,
the per-relation fan-out and nodes without enough neighbours are not modelled; the sampled-subgraph size is not
logged). Source nodes are spread evenly over the 11 relations (each hop's node count padded up to a multiple of 11,
+1.3 % MACs), so every relation's weights are in the graph. The graph's input is the 916 x 1024 feature rows of one
seed's tree, flattened.
"""

from __future__ import annotations

import torch
from torch import nn

RELATIONS, HEADS, HEAD_DIM, FEATURES, CLASSES = 11, 4, 128, 1024, 2983
FANOUT = (15, 10, 5)
HOPS = (1, 15, 150, 750)  # nodes per hop of one seed's tree
FLAT = sum(HOPS) * FEATURES


def _pad(n: int) -> int:
    return -(-n // RELATIONS) * RELATIONS


class RelGAT(nn.Module):
    """11 relation-wise GAT convolutions; source nodes are split evenly over the relations."""

    def __init__(self, n_in: int):
        super().__init__()
        out = HEADS * HEAD_DIM
        self.weight = nn.Parameter(torch.empty(RELATIONS, n_in, out))
        self.attn_src = nn.Parameter(torch.empty(RELATIONS, HEADS, HEAD_DIM))
        self.attn_dst = nn.Parameter(torch.empty(RELATIONS, HEADS, HEAD_DIM))
        self.bias = nn.Parameter(torch.empty(RELATIONS, out))

    def project(self, x):
        """(n, nodes, n_in) -> (n, nodes, heads, dim), nodes padded to a multiple of 11 and grouped by relation."""
        n, nodes, c = x.shape
        pad = _pad(nodes) - nodes
        if pad:
            x = torch.cat([x, x[:, :pad]], dim=1)
        h = torch.einsum("nrkc,rco->nrko", x.reshape(n, RELATIONS, -1, c), self.weight)
        a_src = (h.reshape(n, RELATIONS, -1, HEADS, HEAD_DIM) * self.attn_src[None, :, None]).sum(-1)
        a_dst = (h.reshape(n, RELATIONS, -1, HEADS, HEAD_DIM) * self.attn_dst[None, :, None]).sum(-1)
        keep = lambda t: t.reshape(n, -1, *t.shape[3:])[:, :nodes]  # noqa: E731
        return keep(h).reshape(n, nodes, HEADS, HEAD_DIM), keep(a_src), keep(a_dst)

    def forward(self, x, fanouts: list[tuple[int, int, int]]):
        """``x``: features of the tree's nodes, hop by hop; returns the new features of the destinations (the
        hops listed in ``fanouts``)."""
        n = x.shape[0]
        h, a_src, a_dst = self.project(x)
        outs = []
        for d0, d1, f in fanouts:  # destinations [d0, d1) of one hop read their f children each: the next hop,
            k = d1 - d0  # which starts at d1 in the tree's order
            child = h[:, d1:d1 + k * f].reshape(n, k, f, HEADS, HEAD_DIM)
            e = nn.functional.leaky_relu(a_src[:, d1:d1 + k * f].reshape(n, k, f, HEADS) + a_dst[:, d0:d1, None, :], 0.2)
            outs.append((torch.softmax(e, dim=2)[..., None] * child).sum(2).reshape(n, k, -1))
        return torch.cat(outs, dim=1) + self.bias.sum(0)


class RGAT(nn.Module):
    def __init__(self):
        super().__init__()
        hidden = HEADS * HEAD_DIM
        self.layers = nn.ModuleList([RelGAT(FEATURES), RelGAT(hidden), RelGAT(hidden)])
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, flat):
        n = flat.shape[0]
        x = flat.reshape(n, sum(HOPS), FEATURES)
        # layer 1: destinations = hops 0-2, layer 2: hops 0-1, layer 3: the seed
        bounds = [0, 1, 1 + HOPS[1], 1 + HOPS[1] + HOPS[2]]
        for layer, depth in zip(self.layers, (3, 2, 1)):
            plan = [(bounds[i], bounds[i + 1], FANOUT[i]) for i in range(depth)]
            x = torch.relu(layer(x, plan)) if depth > 1 else layer(x, plan)
        return self.head(x[:, 0])


def rgat() -> nn.Module:
    return RGAT()
