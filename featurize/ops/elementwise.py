"""Elementwise, activation, softmax and reduction handlers (registered through factories).

FLOPs per output element (documented constants, training-agnostic): 1 for arithmetic, comparison,
logic and simple math (Add, Mul, Relu, Sqrt, Exp, Erf, Pow, ...); a few composite activations cost more
(:data:`UNARY_FLOPS`). Variadic Sum/Max/Min cost ``n_inputs - 1`` per element (Mean ``n_inputs``).
Softmax/LogSoftmax: 5 per element (max, subtract, exp, sum, divide/log). Reductions: 1 per input
element (2 for ReduceL2/ReduceSumSquare/ReduceLogSumExp). Where is a select: 0 FLOPs, bytes only.
"""

from __future__ import annotations

from featurize.ops import NodeView, OpCost, io_cost, register

# FLOPs per output element of unary/activation ops; anything not listed and registered below costs 1.
UNARY_FLOPS: dict[str, int] = {
    "Relu": 1, "Abs": 1, "Neg": 1, "Sqrt": 1, "Reciprocal": 1, "Exp": 1, "Log": 1, "Erf": 1,
    "Sin": 1, "Cos": 1, "Tan": 1, "Asin": 1, "Acos": 1, "Atan": 1, "Sinh": 1, "Cosh": 1,
    "Asinh": 1, "Acosh": 1, "Atanh": 1, "Floor": 1, "Ceil": 1, "Round": 1, "Sign": 1, "Not": 1,
    "IsNaN": 1, "IsInf": 1, "BitwiseNot": 1,
    "Sigmoid": 4, "Tanh": 4, "Softplus": 3, "Softsign": 3, "Elu": 3, "Selu": 4, "Celu": 4,
    "LeakyRelu": 2, "ThresholdedRelu": 1, "HardSigmoid": 3, "HardSwish": 4, "Clip": 2,
    "Shrink": 2, "Gelu": 8, "Mish": 7, "PRelu": 2, "Swish": 5,
}
BINARY_OPS: tuple[str, ...] = (
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "Greater", "LessOrEqual",
    "GreaterOrEqual", "And", "Or", "Xor", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
    "PRelu",
)
VARIADIC_OPS: tuple[str, ...] = ("Sum", "Max", "Min", "Mean")
REDUCTION_FLOPS: dict[str, int] = {
    "ReduceSum": 1, "ReduceMean": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1,
    "ReduceL1": 1, "ReduceL2": 2, "ReduceSumSquare": 2, "ReduceLogSum": 1, "ReduceLogSumExp": 2,
    "ArgMax": 1, "ArgMin": 1, "CumSum": 1,
}
SOFTMAX_FLOPS = 5


def _unary_factory(op_type: str, per_element: int):
    @register(op_type)
    def _handler(view: NodeView) -> OpCost:
        return io_cost(view, flops=per_element * view.out_numel, op_class="elementwise")

    _handler.__name__ = f"handle_{op_type}"
    return _handler


def _binary_factory(op_type: str):
    per = UNARY_FLOPS.get(op_type, 1)

    @register(op_type)
    def _handler(view: NodeView) -> OpCost:
        return io_cost(view, flops=per * view.out_numel, op_class="elementwise")

    _handler.__name__ = f"handle_{op_type}"
    return _handler


def _variadic_factory(op_type: str):
    @register(op_type)
    def _handler(view: NodeView) -> OpCost:
        n = sum(1 for t in view.inputs if t.name)
        per = n if op_type == "Mean" else max(n - 1, 0)
        return io_cost(view, flops=per * view.out_numel, op_class="elementwise")

    _handler.__name__ = f"handle_{op_type}"
    return _handler


def _reduction_factory(op_type: str, per_element: int):
    @register(op_type)
    def _handler(view: NodeView) -> OpCost:
        return io_cost(view, flops=per_element * view.inp(0).numel, op_class="reduction")

    _handler.__name__ = f"handle_{op_type}"
    return _handler


for _op, _per in UNARY_FLOPS.items():
    if _op not in BINARY_OPS:
        _unary_factory(_op, _per)
for _op in BINARY_OPS:
    _binary_factory(_op)
for _op in VARIADIC_OPS:
    _variadic_factory(_op)
for _op, _per in REDUCTION_FLOPS.items():
    _reduction_factory(_op, _per)


@register(("Softmax", "LogSoftmax", "Hardmax"))
def handle_softmax(view: NodeView) -> OpCost:
    return io_cost(view, flops=SOFTMAX_FLOPS * view.out_numel, op_class="softmax")


@register("Where")
def handle_where(view: NodeView) -> OpCost:
    return io_cost(view, flops=0, op_class="data_movement")
