"""The backward pass: which tensors require grad, what backward costs, and what it saves.

``requires_grad`` flows from trainable parameters downstream. A MAC op costs ``2 * MACs`` per gradient it must
produce (input gradient when an activation input requires grad, weight gradient when its weights are trainable;
attention matmuls one per activation operand); a non-MAC op costs 1x its forward FLOPs when any input requires
grad. So trainable weight ops cost 2x forward, frozen ones 1x downstream of a trainable layer, anything upstream
of all trainable parameters 0, and the first trainable layer 1x (no gradient w.r.t. the data). What each node
saves for backward, as PyTorch's autograd saves it: :mod:`featurize.graph.saved`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from featurize.graph.saved import SavedTensors


class Backward:
    """Accumulates backward FLOPs (at the evaluated batch) and saved activations over the backward-region nodes."""

    __slots__ = ("elem_bytes", "flops", "requires_grad", "saved")

    def __init__(self, trainable_leaves: set[str], roots: Mapping[str, tuple[str, ...]], elem_bytes: int):
        self.requires_grad: set[str] = set(trainable_leaves)
        if trainable_leaves:
            for x, r in roots.items():
                if not trainable_leaves.isdisjoint(r):
                    self.requires_grad.add(x)
        self.elem_bytes = elem_bytes
        self.flops = 0.0
        self.saved = SavedTensors()

    def node(self, op: str, cls: str, macs: float, flops: float, ins: tuple, acts: list[str], outs: tuple,
             first_input: str, w_trainable: bool, n_act_rg: int) -> None:
        """One node with a trainable weight or an activation input that requires grad."""
        rg = self.requires_grad
        if macs:
            n_grads = (n_act_rg if cls == "attention" else min(n_act_rg, 1)) + int(w_trainable)
            self.flops += 2.0 * macs * n_grads + (flops - 2.0 * macs)
        else:
            self.flops += flops
        if op != "CastLike" or first_input in rg:  # CastLike's 2nd input is a type, not a value
            for t in outs:
                if t.name and t.itemsize == self.elem_bytes:
                    rg.add(t.name)
        self.saved.node(op, cls, ins, acts, outs, w_trainable, rg)

    def saved_bytes(self, info_of: Callable, storage_get: Callable) -> float:
        """Bytes of the unique storages the backward pass keeps, at the evaluated batch."""
        return self.saved.nbytes(info_of, storage_get)
