"""What ``predict_many`` accepts as models: files, folders, globs, bytes, ModelProtos and torch modules, expanded
in input order."""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from featurize.errors import InvalidInputError
from featurize.graph.torch_export import is_torch_module

_GLOB_CHARS = set("*?[")


def _expand_one(item: Any, index: int) -> list[tuple[str, Any]]:
    """Labelled sources for one element of ``models`` (a directory/glob may give many)."""
    if isinstance(item, (str, os.PathLike)):
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".onnx" and p.is_file())
            if not found:
                raise InvalidInputError(
                    f"directory {text!r} contains no .onnx files; point to a folder of ONNX graphs or a glob "
                    f"such as '{path / '*.onnx'}'"
                )
            return [(str(p), str(p)) for p in found]
        if _GLOB_CHARS & set(text):
            found = sorted(p for p in _glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                raise InvalidInputError(f"glob {text!r} matches no files; check the pattern and the folder")
            return [(p, p) for p in found]
        return [(text, text)]  # a plain path: a missing file becomes that row's error, not an exception
    if isinstance(item, (bytes, bytearray)):
        return [(f"bytes[{index}]", bytes(item))]
    if type(item).__name__ == "ModelProto":
        name = getattr(getattr(item, "graph", None), "name", "") or f"model[{index}]"
        return [(name, item)]
    if is_torch_module(item):
        return [(f"{type(item).__name__}[{index}]", item)]
    raise InvalidInputError(
        f"models[{index}] has unsupported type {type(item).__name__}; give .onnx paths, a directory, a glob, "
        "onnx.ModelProto objects, ONNX bytes or torch.nn.Module objects"
    )


def expand_models(models: Any) -> list[tuple[str, Any]]:
    """``(label, source)`` pairs in input order; directories and globs expand sorted by name.

    Raises:
        InvalidInputError: nothing to score (empty list, empty directory, glob matching nothing) or an
            unsupported input type.
    """
    if (
        isinstance(models, (str, os.PathLike, bytes, bytearray))
        or not isinstance(models, Iterable)
        or type(models).__name__ == "ModelProto"
        or is_torch_module(models)
    ):
        models = [models]
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(models):
        out.extend(_expand_one(item, i))
    if not out:
        raise InvalidInputError("no models to score: `models` is empty")
    return out


def worker_payload(source: Any) -> Any:
    """What travels to a worker: an absolute path (a warm worker may have started in another working
    directory), or the graph's bytes (a ModelProto is serialised once)."""
    if isinstance(source, (str, os.PathLike)):
        return os.path.abspath(os.path.expanduser(os.fspath(source)))
    if type(source).__name__ == "ModelProto":
        return source.SerializeToString()
    return source


def as_list(gpu: Any) -> list[Any]:
    if isinstance(gpu, (str, bytes)) or not isinstance(gpu, Iterable):
        return [gpu]
    out = list(gpu)
    if not out:
        raise InvalidInputError("gpu is empty; name at least one GPU, e.g. gpu='A100'")
    return out
