"""Converters from the public sources in ``../shared/data`` to the run schema (:mod:`training_data.schema`).

Each module exposes ``load(shared_dir: Path) -> pandas.DataFrame`` (already validated) and documents its
assumptions. :func:`load_source` reads one by name (:data:`SOURCE_NAMES`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _loaders():
    from training_data.sources import delrey, lambda_dlbench, mayaki, mlperf_training, nvidia_dle, perseus, seaa2023, zeus

    return {"seaa2023": seaa2023.load, "delrey": delrey.load, "zeus": zeus.load, "mayaki": mayaki.load,
            "lambda_dlbench": lambda_dlbench.load_with_exclusions, "nvidia_dle": nvidia_dle.load_with_exclusions,
            "mlperf_training": mlperf_training.load_with_exclusions, "perseus_sosp24": perseus.load_with_exclusions}


SOURCE_NAMES: tuple[str, ...] = ("seaa2023", "delrey", "zeus", "mayaki", "lambda_dlbench", "nvidia_dle",
                                 "mlperf_training", "perseus_sosp24")
"""Every source; the first four measure energy, the throughput sources (and Perseus' iterations) add time rows."""


def load_source(name: str, shared_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated rows, rows kept out with a ``reason``; empty for sources that keep every row)."""
    from training_data.sources.throughput import EXCLUDED_COLUMNS

    out = _loaders()[name](Path(shared_dir))
    if isinstance(out, tuple):
        return out
    return out, pd.DataFrame(columns=EXCLUDED_COLUMNS)


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
