"""What every fit needs of the training rows: their weights, their implementation class, their row folds, and how the
table they come from is rebuilt."""

from __future__ import annotations

import numpy as np
import pandas as pd

TABLE_REBUILD = "python -m training_data.build_table --shared ../shared/data"
"""How to rebuild the shipped model's training table (not shipped: the public rows stay in ``../shared/data``)."""


ROW_FOLDS = "row_fold"
"""Pseudo grouping for :func:`grouped_cv`: rows assigned at random to :data:`N_ROW_FOLDS` folds (seeded)."""


N_ROW_FOLDS = 5


def sample_weights(rows: pd.DataFrame) -> np.ndarray:
    """Row weights: uniform. Grouped CV (leave-one-GPU-out median 35 % uniform vs 41 % with each
    (source, gpu, group_arch) cell weighing sqrt(n) and 50 % with 1/n) chose uniform.
    An optional ``sample_weight`` column multiplies them (``retrain`` up-weights the user's own runs)."""
    w = np.ones(len(rows), dtype=float)
    if "sample_weight" in rows:
        w = w * pd.to_numeric(rows["sample_weight"], errors="coerce").fillna(1.0).to_numpy(dtype=float)
    return w


def implementation_of(rows: pd.DataFrame) -> np.ndarray:
    """Each row's implementation class (``implementation_class`` column; ``reference`` where absent)."""
    from predictor.time_model import DEFAULT_IMPLEMENTATION, IMPLEMENTATION_COL

    if IMPLEMENTATION_COL not in rows:
        return np.full(len(rows), DEFAULT_IMPLEMENTATION, object)
    return rows[IMPLEMENTATION_COL].fillna(DEFAULT_IMPLEMENTATION).astype(str).to_numpy(object)


def row_folds(n: int, seed: int = 0) -> np.ndarray:
    """Random fold labels ('0'..) for :data:`ROW_FOLDS` CV: each row held out once, as a withheld run would be."""
    return np.random.default_rng(seed).integers(0, N_ROW_FOLDS, n).astype(str)
