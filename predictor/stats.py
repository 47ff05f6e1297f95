"""The two error statistics every fit and evaluation in joulecast uses, written once.

- :func:`robust_sd`: the MAD-based standard deviation (1.4826 x median absolute deviation; the normal's sd).
- :func:`ape_pct`: absolute percent error of a prediction against the measured value.
"""

from __future__ import annotations

import numpy as np

MAD_TO_SD = 1.4826
"""Median absolute deviation -> standard deviation of a normal distribution."""


def robust_sd(x) -> float:
    """``1.4826 x median(|x - median(x)|)``: a standard deviation that one outlier cannot move."""
    x = np.asarray(x, dtype=float)
    return float(MAD_TO_SD * np.median(np.abs(x - np.median(x))))


def ape_pct(pred, true) -> np.ndarray:
    """Absolute percent error, ``|pred / true - 1| x 100``, elementwise."""
    return np.abs(np.asarray(pred, dtype=float) / np.asarray(true, dtype=float) - 1.0) * 100.0
