"""Sequence ops (``SplitToSequence``, ``SequenceAt``, ``ConcatFromSequence``, ...): data movement only.

A sequence has no tensor shape, so the costs use the tensor side of each op:

* ``SplitToSequence``: the input is read once and written once as the pieces (bytes = input both ways).
* ``ConcatFromSequence``: the pieces are read and the result written (bytes = output both ways).
* ``SequenceAt``: one element handed on without a copy, like a view; ``SequenceConstruct``,
  ``SequenceInsert``, ``SequenceErase``, ``SequenceEmpty``, ``SequenceLength``: bookkeeping. None of them
  does arithmetic or moves a tensor: zero cost.

Exporters emit these for e.g. ``torch.split`` into a list (the BERT question-answering head's start/end logits).
"""

from __future__ import annotations

from featurize.ops import NodeView, OpCost, register

BOOKKEEPING_OPS: tuple[str, ...] = (
    "SequenceAt", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SequenceEmpty", "SequenceLength",
)
SEQUENCE_OPS: frozenset[str] = frozenset(BOOKKEEPING_OPS + ("SplitToSequence", "ConcatFromSequence"))
"""Ops with a sequence-typed input or output: such values have no tensor shape, which is not a gap in
shape inference (the featurizer does not warn about them)."""


@register("SplitToSequence")
def handle_split_to_sequence(view: NodeView) -> OpCost:
    nbytes = float(view.inp(0).nbytes)
    return OpCost(bytes_read=nbytes, bytes_written=nbytes, op_class="data_movement")


@register("ConcatFromSequence")
def handle_concat_from_sequence(view: NodeView) -> OpCost:
    nbytes = float(view.bytes_out)
    return OpCost(bytes_read=nbytes, bytes_written=nbytes, op_class="data_movement")


def _bookkeeping(view: NodeView) -> OpCost:
    return OpCost(op_class="zero")


for _op in BOOKKEEPING_OPS:
    register(_op)(_bookkeeping)
