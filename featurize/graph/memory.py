"""Activation memory of the forward pass: which storage each tensor lives in (view ops alias their input), the last
node reading each storage, and the peak of live activation bytes in graph order (graph outputs stay live)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

ALIAS_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout"})
"""Ops whose first output is a view of their first input (no new storage)."""


class Liveness:
    """Forward liveness bookkeeping, fed node by node in graph order.

    ``storage``: tensor -> the storage it lives in; ``last_use``: storage -> index of the last node touching it
    (the walk records reads inline: ``last_use[storage[x]] = idx``); ``new_bytes``: ``(node index, bytes of the
    outputs that own a new storage)`` per run-time node.
    """

    __slots__ = ("last_use", "new_bytes", "storage")

    def __init__(self, graph_inputs: Iterable[str]):
        self.storage: dict[str, str] = {name: name for name in graph_inputs}
        self.last_use: dict[str, int] = {}
        self.new_bytes: list[tuple[int, int]] = []

    def outputs(self, idx: int, op: str, node_ins: list[str], outs: tuple) -> int:
        """Record where node ``idx``'s outputs live; returns the bytes it writes."""
        storage, last_use = self.storage, self.last_use
        src = storage.get(node_ins[0]) if node_ins and op in ALIAS_OPS else None
        fresh = bytes_out = 0
        for i, t in enumerate(outs):
            o = t.name
            nbytes = t.nbytes
            bytes_out += nbytes
            if o:
                if src is not None and i == 0:
                    storage[o] = src
                    last_use.setdefault(src, idx)
                else:
                    storage[o] = o
                    last_use.setdefault(o, idx)
                    fresh += nbytes
        self.new_bytes.append((idx, fresh))
        return bytes_out

    def peak_bytes(self, graph_outputs: Iterable[str], n_nodes: int, live: int, nbytes: Callable[[str], int]) -> float:
        """Peak live activation bytes; ``live``: bytes of the activation graph inputs; graph outputs stay live."""
        for name in graph_outputs:
            st = self.storage.get(name)
            if st is not None:
                self.last_use[st] = n_nodes
        return peak_live_bytes(live, self.new_bytes, self.last_use, nbytes)


def peak_live_bytes(live: int, new_bytes: list[tuple[int, int]], last_use: dict[str, int],
                    nbytes: Callable[[str], int]) -> float:
    """Peak sum of live activation bytes, walking the run-time nodes in graph (topological) order.

    ``live``: bytes of the activation graph inputs; ``new_bytes``: ``(node index, bytes of the outputs
    that own a new storage)`` per run-time node (view ops alias their input); ``last_use``: storage ->
    index of the last node touching it (``len(nodes)`` for graph outputs, which stay live). A storage
    is freed right after its last use.
    """
    free_at: dict[int, list[str]] = {}
    for st, i in last_use.items():
        free_at.setdefault(i, []).append(st)
    peak = live
    for idx, fresh in new_bytes:
        live += fresh
        if live > peak:
            peak = live
        for st in free_at.get(idx, ()):
            live -= nbytes(st)
    return float(peak)
