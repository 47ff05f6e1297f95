"""Op-handler registry: ``(domain, op_type) -> handler(view) -> OpCost``.

Public entry points: :func:`register` (decorator), :func:`get_handler`, :func:`registered_ops`,
:class:`NodeView` / :class:`TensorInfo` (the read-only view a handler receives) and :class:`OpCost`
(the frozen cost record it returns). Handlers are small pure functions; families of ops are
registered through factories in the sibling modules (``elementwise``, ``linear``, ``normalization``,
``pooling``, ``data_movement``, ``recurrent``, ``sequence``, ``quantized``). Importing this package registers all built-in handlers.

Counting conventions (see also :mod:`featurize.types`):

* ``macs`` are multiply-accumulates of matmul-like ops; ``flops = 2 * macs + other arithmetic``.
* ``bytes_read`` / ``bytes_written`` are the bytes of the node's inputs / outputs at the evaluated
  batch size: floating tensors at the precision's element size, integer/bool tensors at their own size.
  View-only ops (Reshape, Squeeze, Identity, ...) move nothing.
* ``params`` are elements of the node's weight tensors (parameters only; BatchNorm running statistics
  are buffers and are not counted as parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

__all__ = [
    "OpCost",
    "TensorInfo",
    "NodeView",
    "register",
    "get_handler",
    "handler_table",
    "registered_ops",
    "known_domains",
    "OP_CLASSES",
]

# op_class values. "conv"/"matmul"/"attention"/"recurrent" carry MACs; the rest are non-MAC work.
OP_CLASSES: tuple[str, ...] = (
    "conv",
    "matmul",
    "attention",
    "recurrent",
    "elementwise",
    "normalization",
    "pooling",
    "reduction",
    "softmax",
    "data_movement",
    "zero",
    "constant",
    "unsupported",
)


@dataclass(frozen=True)
class OpCost:
    """Cost of one node at the evaluated batch size (not per sample)."""

    macs: float = 0.0
    flops: float = 0.0
    params: int = 0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    op_class: str = "elementwise"

    def __init__(self, macs: float = 0.0, flops: float = 0.0, params: int = 0, bytes_read: float = 0.0,
                 bytes_written: float = 0.0, op_class: str = "elementwise"):
        # One per node in the featurizer's hot loop: set the fields once, directly (the generated frozen
        # __init__ goes through object.__setattr__ per field, about twice as slow). Still frozen after.
        d = self.__dict__
        d["macs"] = macs
        d["flops"] = flops
        d["params"] = params
        d["bytes_read"] = bytes_read
        d["bytes_written"] = bytes_written
        d["op_class"] = op_class


class TensorInfo(NamedTuple):
    """One input/output of a node: resolved shape, element size in bytes, and its role (immutable).

    ``is_const``: value known without running the graph (initializer, Constant, folded constant);
    ``is_weight``: a weight/buffer tensor (float constant with more than one element, or a weight-like
    graph input); ``is_param``: a weight that counts as a parameter. Build with :meth:`make`, which
    fills ``numel`` / ``nbytes`` (0 when the shape is unknown).
    """

    name: str
    shape: tuple[int, ...] | None
    itemsize: int
    is_const: bool = False
    is_weight: bool = False
    is_param: bool = False
    numel: int = 0
    nbytes: int = 0

    @classmethod
    def make(cls, name: str, shape: tuple[int, ...] | None, itemsize: int, is_const: bool = False,
             is_weight: bool = False, is_param: bool = False) -> "TensorInfo":
        n = math.prod(shape) if shape is not None else 0
        return cls(name, shape, itemsize, is_const, is_weight, is_param, n, n * itemsize)

    @property
    def rank(self) -> int:
        return len(self.shape) if self.shape is not None else 0


_EMPTY = TensorInfo("", (), 0)


class NodeView(NamedTuple):
    """Read-only view of one node. Missing optional inputs are ``TensorInfo`` with name ``""``.

    ``attrs`` maps attribute names to Python values (ints, floats, str, tuples); absent attributes
    take the default given to :meth:`attr`.
    """

    name: str
    op_type: str
    domain: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    attrs: Mapping[str, Any]
    bytes_in: int = -1  # precomputed by the featurizer; -1 = compute from inputs
    bytes_out: int = -1
    weight_params: int = -1

    @classmethod
    def make(cls, name: str, op_type: str, domain: str, inputs: tuple[TensorInfo, ...],
             outputs: tuple[TensorInfo, ...], attrs: Mapping[str, Any]) -> "NodeView":
        """A view with the byte/parameter sums filled in."""
        return cls(name, op_type, domain, inputs, outputs, attrs, sum(t.nbytes for t in inputs),
                   sum(t.nbytes for t in outputs), sum(t.numel for t in inputs if t.is_param))

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def inp(self, i: int) -> TensorInfo:
        """Input ``i`` or an empty placeholder when absent/optional-empty."""
        return self.inputs[i] if i < len(self.inputs) else _EMPTY

    def has_input(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i].name != ""

    @property
    def out_numel(self) -> int:
        return self.outputs[0].numel if self.outputs else 0


Handler = Callable[[NodeView], OpCost]
_REGISTRY: dict[tuple[str, str], Handler] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register(op_type: str | tuple[str, ...], domain: str = "", *, overwrite: bool = False):
    """Decorator registering ``fn(view) -> OpCost`` for ``op_type`` (one name or several) in ``domain``.

    Registering an already-registered (domain, op_type) raises ``ValueError`` unless ``overwrite=True``.
    """
    names = (op_type,) if isinstance(op_type, str) else tuple(op_type)

    def deco(fn: Handler) -> Handler:
        for name in names:
            key = (_norm_domain(domain), name)
            if key in _REGISTRY and not overwrite:
                raise ValueError(
                    f"a handler for op {name!r} in domain {domain!r} is already registered; "
                    "pass overwrite=True to replace it"
                )
            _REGISTRY[key] = fn
        return fn

    return deco


def get_handler(op_type: str, domain: str = "") -> Handler | None:
    return _REGISTRY.get((_norm_domain(domain), op_type))


def handler_table() -> Mapping[tuple[str, str], Handler]:
    """The live registry, ``(normalised domain, op_type) -> handler`` (read-only use: the featurizer's
    per-node lookup skips :func:`get_handler`'s domain normalisation)."""
    return _REGISTRY


def registered_ops() -> list[tuple[str, str]]:
    """All registered ``(domain, op_type)`` keys, sorted."""
    return sorted(_REGISTRY)


def known_domains() -> set[str]:
    return {d for d, _ in _REGISTRY}


def io_cost(view: NodeView, *, macs: float = 0.0, flops: float = 0.0, op_class: str) -> OpCost:
    """An :class:`OpCost` reading all inputs and writing all outputs of ``view``."""
    cost = _new_object(OpCost)  # the same fields OpCost.__init__ sets, without its Python frame (hot path)
    _set_attr(cost, "__dict__", {
        "macs": float(macs), "flops": float(flops), "params": view.weight_params,
        "bytes_read": float(view.bytes_in), "bytes_written": float(view.bytes_out), "op_class": op_class,
    })
    return cost


_new_object = object.__new__
_set_attr = object.__setattr__


# Register the built-in handlers (import for side effects, at the end to avoid cycles).
from featurize.ops import data_movement, elementwise, linear, normalization, pooling, quantized, recurrent, sequence  # noqa: E402,F401,E501
