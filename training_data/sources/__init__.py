"""Converters from the public sources in ``../shared/data`` to the run schema (:mod:`training_data.schema`).

Each module exposes ``load(shared_dir: Path) -> pandas.DataFrame`` (already validated) and documents its
assumptions. :data:`SOURCES` maps source name -> loader; :func:`load_all` concatenates them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _loaders():
    from training_data.sources import delrey, mayaki, seaa2023, zeus

    return {"seaa2023": seaa2023.load, "delrey": delrey.load, "zeus": zeus.load, "mayaki": mayaki.load}


SOURCE_NAMES: tuple[str, ...] = ("seaa2023", "delrey", "zeus", "mayaki")


def load_all(shared_dir: Path) -> pd.DataFrame:
    """All sources, validated, concatenated in :data:`SOURCE_NAMES` order."""
    loaders = _loaders()
    return pd.concat([loaders[name](Path(shared_dir)) for name in SOURCE_NAMES], ignore_index=True)


def read_csv(path: Path, *, required: tuple[str, ...]) -> pd.DataFrame:
    """Read a source CSV; a missing file or missing columns raise SchemaError naming the file."""
    from featurize.errors import SchemaError

    if not path.is_file():
        raise SchemaError(f"{path}: source file not found; point --shared at the shared data folder.")
    df = pd.read_csv(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing}; expected the layout described in its PROVENANCE.md.")
    return df
