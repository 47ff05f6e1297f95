"""The training table's content hash (``table_sha256``), one rule for the table build, its corrections and
``retrain``'s merged tables."""

from __future__ import annotations

import hashlib
import io

import pandas as pd


def table_sha256(df: pd.DataFrame) -> str:
    """sha256 of the table's CSV rendering (rows as given, floats as %.10g; any ``table_sha256`` column left out)
    -- stable across runs and platforms."""
    buf = io.StringIO()
    df.drop(columns=["table_sha256"], errors="ignore").to_csv(buf, index=False, float_format="%.10g",
                                                              lineterminator="\n")
    return hashlib.sha256(buf.getvalue().encode()).hexdigest()
