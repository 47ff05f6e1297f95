"""The activations a training step keeps for backward, counted the way PyTorch's autograd saves them.

:class:`SavedTensors` is fed every node of the backward region in graph order (by :mod:`featurize.graph`) and
returns the bytes of the unique storages saved. The rules (checked against ``torch.autograd.graph.
saved_tensors_hooks`` on ResNet-18/50, BERT-base and a GPT-2 block in ``tests/test_feat_saved_tensors.py``):

* weight-bearing ops (Conv, MatMul/Gemm) save their activation input when the weight trains; attention
  MatMuls (two activations) save both; normalisation, pooling and reductions save their input; Relu, Sigmoid,
  Tanh, Exp and Softmax save their output; ops linear in their inputs or pure data movement save nothing.
* ``Mul(a, b)`` saves ``a`` only when ``b`` requires grad (and vice versa); ``Div(a, b)`` saves ``b`` when
  either requires grad and ``a`` when ``b`` does: a scale by a constant saves nothing.
* a chain of pointwise ops from one tensor ``x`` through ops that save inputs only (the exporters'
  decomposition of ``F.gelu``: Div, Erf, Add, Mul, Mul) saves ``x`` alone, as the fused kernel does; a chain
  through an op that saves its output (Tanh in GPT-2's hand-written ``gelu_new``) is saved op by op, as eager
  PyTorch does.
* MaxPool also saves its int64 argmax indices (one per output element).
* a tensor saved under several names (a view, an Identity) counts once: bytes are summed over storages; so does
  ``Where(IsNaN(s), 0, s)`` after a Softmax (the exporters' decomposition of PyTorch's one-kernel safe softmax).

Dropout masks are not counted: the graph of an eval-mode export (and of a torch module, exported in eval
mode) has no Dropout nodes; with dropout active PyTorch also keeps its masks and dropped copies.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

__all__ = ["SavedTensors", "NO_SAVE_OPS", "SAVE_OUTPUT_OPS"]

# Backward needs nothing saved for these (linear in their inputs, or pure data movement).
NO_SAVE_OPS = frozenset(
    {
        "Add", "Sub", "Sum", "Neg", "Concat", "Split", "Slice", "Transpose", "Gather", "Expand", "Tile",
        "Pad", "Cast", "CastLike", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout",
        "ReduceSum", "ReduceMean", "AveragePool", "GlobalAveragePool", "Resize", "Upsample",
        "DepthToSpace", "SpaceToDepth", "Mean", "Shape", "Size", "Where", "Equal", "Less", "Greater",
        "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor",
    }
)
SAVE_OUTPUT_OPS = frozenset({"Softmax", "LogSoftmax", "Relu", "Sigmoid", "Tanh", "Exp"})
# pointwise ops a chain runs through without saving anything (their output is a pointwise function of the input)
_CHAIN_NO_SAVE = frozenset({"Add", "Sub", "Neg", "Cast", "Identity", "Where"})
INDEX_BYTES = 8  # int64 argmax indices of a max pool


class SavedTensors:
    """Accumulates the saved activations of the backward-region nodes (see the module docstring)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.root: dict[str, str] = {}  # tensor -> the tensor it is a pointwise chain of
        self.extra_bytes = 0.0  # saved tensors that are not graph tensors (max-pool indices), at the evaluated batch
        self.same: dict[str, str] = {}  # tensor -> the tensor it equals for saving (safe softmax's NaN select)
        self._isnan_of: dict[str, str] = {}

    def node(self, op: str, cls: str, ins: tuple, acts: list[str], outs: tuple, w_trainable: bool,
             requires_grad: set[str]) -> None:
        """Record what one backward-region node saves. ``ins``/``outs``: its TensorInfos; ``acts``: the names of
        its activation inputs; ``requires_grad``: the tensors that require grad so far."""
        chain = cls == "elementwise" and op not in SAVE_OUTPUT_OPS or op in _CHAIN_NO_SAVE
        root = self._chain_root(acts, requires_grad) if chain else None
        if root is not None:
            for t in outs:
                if t.name:
                    self.root[t.name] = root
        if op == "IsNaN" and outs and outs[0].name:
            self._isnan_of[outs[0].name] = acts[0] if acts else ""
        elif op == "Where" and len(ins) == 3 and outs and outs[0].name:
            if self._isnan_of.get(ins[0].name) == ins[2].name:  # Where(IsNaN(s), c, s): s with NaN -> c
                self.same[outs[0].name] = self.same.get(ins[2].name, ins[2].name)
        if op in NO_SAVE_OPS:
            return
        saved = _saved_inputs(op, cls, ins, acts, outs, w_trainable, requires_grad)
        if root is not None:
            saved = [root if s in requires_grad else s for s in saved]
        self.names.update(saved)
        if op == "MaxPool" and outs and outs[0].name:
            self.extra_bytes += outs[0].numel * INDEX_BYTES

    def _chain_root(self, acts: list[str], requires_grad: set[str]) -> str | None:
        roots = {self.root.get(a, a) for a in acts if a in requires_grad}
        return roots.pop() if len(roots) == 1 else None

    def nbytes(self, info_of: Callable[[str], Any], storage_of: Callable[[str, str], str]) -> float:
        """Bytes of the unique storages saved (at the evaluated batch), max-pool indices included."""
        same = self.same.get
        storages = {storage_of(y, y) for x in self.names for y in (same(x, x),)}
        return float(sum(info_of(s).nbytes for s in storages)) + self.extra_bytes


def _saved_inputs(op: str, cls: str, ins: tuple, acts: list[str], outs: tuple, w_trainable: bool,
                  requires_grad: set[str]) -> list[str]:
    """Activation tensors a backward-region node keeps for its backward pass."""
    if cls in ("zero", "constant", "data_movement"):
        return []
    if cls in ("conv", "matmul", "recurrent"):
        return acts[:1] if w_trainable or cls == "recurrent" else []
    if cls == "attention":
        return acts
    if op in SAVE_OUTPUT_OPS or cls == "softmax":
        return [t.name for t in outs[:1] if t.name]
    if cls in ("normalization", "pooling", "reduction"):
        return acts[:1]
    if op in ("Mul", "Div") and len(ins) == 2:
        return _product_saves(op, ins[0].name, ins[1].name, set(acts), requires_grad)
    return acts


def _product_saves(op: str, a: str, b: str, acts: Iterable[str], requires_grad: set[str]) -> list[str]:
    """``Mul(a, b)``: grad a = g b, grad b = g a. ``Div(a, b)``: grad a = g / b, grad b = -g a / b^2."""
    a_rg, b_rg = a in requires_grad, b in requires_grad
    keep = {a: b_rg, b: a_rg} if op == "Mul" else {a: b_rg, b: a_rg or b_rg}
    return [x for x in (a, b) if x in acts and keep[x]]
