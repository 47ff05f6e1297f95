"""Per-row arguments (a scalar or one value per row) and the measured configurations a row may match."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from featurize.errors import InvalidInputError

MEASURED_RTOL = 0.01
"""A graph matches a measured run when its params and training FLOPs per sample are within this of the run's."""


def as_rows(value: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.repeat(arr, n)
    if len(arr) != n:
        raise InvalidInputError(f"{name} has {len(arr)} values for {n} rows; pass one value or one per row.")
    return arr


def measured_rows(model: Any, gpu_names: Sequence[str], precisions: Any, params: np.ndarray,
                  flops_train: np.ndarray) -> np.ndarray:
    """True where (GPU, precision) and the graph's params and training FLOPs per sample match a run in the
    training data within :data:`MEASURED_RTOL` (manifest ``local.measured``)."""
    runs = model.local.measured if model.local is not None else {}
    return match_measured(runs, gpu_names, precisions, params, flops_train)


def group_measured(measured: Sequence[Sequence[Any]]) -> dict[tuple[str, str], np.ndarray]:
    """[gpu, precision, params, flops_train] runs -> {(gpu, precision): array of (params, flops_train)}."""
    by_pair: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for g, p, par, fl in measured:
        by_pair.setdefault((str(g), str(p)), []).append((float(par), float(fl)))
    return {k: np.asarray(v, float) for k, v in by_pair.items()}


def match_measured(runs: dict[tuple[str, str], np.ndarray], gpu_names: Sequence[str], precisions: Any,
                   params: np.ndarray, flops_train: np.ndarray) -> np.ndarray:
    """:func:`measured_rows` against runs grouped by :func:`group_measured`."""
    n = len(gpu_names)
    params, flops_train = np.asarray(params, float), np.asarray(flops_train, float)
    out = np.zeros(n, bool)
    if not runs:
        return out
    precs = as_rows(precisions, n, "precision").astype(str)
    for i, (g, p) in enumerate(zip(gpu_names, precs)):
        arr = runs.get((str(g), p))
        if arr is not None:
            close = (np.abs(arr[:, 0] / max(params[i], 1.0) - 1) <= MEASURED_RTOL) & (
                np.abs(arr[:, 1] / max(flops_train[i], 1.0) - 1) <= MEASURED_RTOL)
            out[i] = bool(close.any())
    return out
