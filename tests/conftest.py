"""Shared test fixtures: where ../shared/data lives, and a skip helper when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("JOULECAST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test with a clear reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public measurements not found at {SHARED_DATA} (set JOULECAST_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def built_table(shared_data, tmp_path_factory):
    """The training table built from the fixed CI subset (:func:`training_data.subset.ci_subset`) into a temporary
    folder: every source, 11 small exports (cached in training_data/cache/ between runs), ~3 min cold, ~15 s warm."""
    import pandas as pd

    from training_data.build_table import build_table
    from training_data.subset import ci_subset

    out = tmp_path_factory.mktemp("table")
    build_table(shared_data, out, subset=ci_subset, progress=False)
    return pd.read_parquet(out / "training_table.parquet")
