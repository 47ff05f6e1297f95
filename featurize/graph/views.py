"""What an op handler sees of a node: tensor infos built on first use and attributes decoded on first read (most
handlers never read attributes). Plain tuples and dicts: this is the featurizer's hot path."""

from __future__ import annotations

import math
from collections import abc
from typing import Any

import onnx

from featurize.graph.load import ShapeMap
from featurize.graph.weights import FLOAT_TYPES, NO_SHAPE
from featurize.ops import TensorInfo

tnew = tuple.__new__  # builds a NamedTuple without its Python-level __new__
_prod = math.prod


class InfoCache(dict):
    """``{tensor name: TensorInfo}``, each built on first lookup (same fields as ``TensorInfo.make``)
    from the shape map, the constant set, the weight roots and the parameter leaves."""

    __slots__ = ("_const", "_elem_bytes", "_param_leaves", "_roots_get", "_shape_get")

    def __init__(self, shapes: ShapeMap, elem_bytes: int, const: set[str], roots: dict, param_leaves: set[str]):
        super().__init__()
        self._shape_get, self._elem_bytes, self._const = shapes.get, elem_bytes, const
        self._roots_get, self._param_leaves = roots.get, param_leaves

    def __missing__(self, name: str) -> TensorInfo:
        shape, elem = self._shape_get(name, NO_SHAPE)
        r = self._roots_get(name)
        size = self._elem_bytes
        if elem not in FLOAT_TYPES and elem != 0:
            size = itemsize(elem, size)
        n = _prod(shape) if shape is not None else 0
        is_param = bool(r) and not self._param_leaves.isdisjoint(r)
        t = self[name] = tnew(TensorInfo, (name, shape, size, name in self._const, bool(r), is_param, n, n * size))
        return t


class LazyAttrs(abc.Mapping):
    """Attribute mapping decoded on first access (most handlers never read attributes).

    The featurizer's loop builds these without a Python ``__init__`` frame (``object.__new__`` + the slot)."""

    __slots__ = ("_proto", "_d")

    def __init__(self, proto: onnx.NodeProto):
        self._proto = proto

    def _dict(self) -> dict[str, Any]:
        try:
            return self._d
        except AttributeError:  # first read: decode
            d = self._d = attrs(self._proto)
            return d

    def __getitem__(self, key: str) -> Any:
        return self._dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._dict().get(key, default) if self._proto.attribute else default

    def __iter__(self):
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as Python values."""
    if not node.attribute:
        return {}
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.INT:
            out[a.name] = a.i
        elif a.type == onnx.AttributeProto.INTS:
            out[a.name] = tuple(a.ints)
        elif a.type == onnx.AttributeProto.FLOAT:
            out[a.name] = a.f
        elif a.type == onnx.AttributeProto.STRING:
            out[a.name] = a.s.decode("utf-8", "replace")
        elif a.type == onnx.AttributeProto.FLOATS:
            out[a.name] = tuple(a.floats)
        else:
            out[a.name] = onnx.helper.get_attribute_value(a)
    return out


def itemsize(elem: int, elem_bytes: int, _cache: dict[int, int] = {}) -> int:  # noqa: B006
    """Bytes per element of ONNX type ``elem``; floats take the run's precision (``elem_bytes``)."""
    if elem in FLOAT_TYPES or elem == 0:
        return elem_bytes
    size = _cache.get(elem)
    if size is None:
        try:
            size = onnx.helper.tensor_dtype_to_np_dtype(elem).itemsize
        except Exception:  # noqa: BLE001 - string/unknown types
            size = 8
        _cache[elem] = size
    return size
