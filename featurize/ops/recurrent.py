"""Recurrent handlers: LSTM, GRU, RNN (ONNX layouts; ``layout=1`` means batch-first X).

MACs per step, direction and sample: ``G * H * (I + H)`` with ``G`` gates (LSTM 4, GRU 3, RNN 1).
Non-MAC FLOPs per step, direction, sample and hidden unit (:data:`CELL_FLOPS`): gate sums, activations
(sigmoid 4, tanh 4) and state updates -- LSTM 28 (+8 with bias), GRU 19 (+6), RNN 5 (+2).
"""

from __future__ import annotations

from featurize.ops import NodeView, OpCost, io_cost, register

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
CELL_FLOPS = {"LSTM": 28, "GRU": 19, "RNN": 5}
BIAS_FLOPS = {"LSTM": 8, "GRU": 6, "RNN": 2}


@register(("LSTM", "GRU", "RNN"))
def handle_rnn(view: NodeView) -> OpCost:
    x = view.inp(0).shape or (1, 1, 1)
    w = view.inp(1).shape or (1, 1, 1)
    seq, batch = (x[1], x[0]) if view.attr("layout", 0) else (x[0], x[1])
    n_in = x[2]
    n_dir = w[0]
    g = GATES[view.op_type]
    hidden = int(view.attr("hidden_size", 0) or w[1] // g)
    steps = n_dir * seq * batch
    macs = steps * g * hidden * (n_in + hidden)
    cell = CELL_FLOPS[view.op_type] + (BIAS_FLOPS[view.op_type] if view.has_input(3) else 0)
    return io_cost(view, macs=macs, flops=2 * macs + steps * hidden * cell, op_class="recurrent")
