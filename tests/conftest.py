"""Shared test fixtures: where ../shared/data lives (and a skip helper when it is absent), the bundled example
graph, a synthetic retrained model used by the retrain, batch and CLI tests, and a featurizer op registry that
is restored after a test registers handlers."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RESNET18 = REPO_ROOT / "models" / "examples" / "resnet18.onnx"
"""The bundled example graph (ResNet-18, 11,689,512 parameters, weightless)."""
SHARED_DATA = Path(os.environ.get("JOULECAST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test with a clear reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public measurements not found at {SHARED_DATA} (set JOULECAST_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture()
def op_registry():
    """``featurize.ops``, with every handler a test registers removed again afterwards (tests stay
    order-independent: a leftover custom op would, e.g., appear in ``registered_ops()``)."""
    from featurize import ops

    table = ops.handler_table()
    saved = dict(table)
    yield ops
    table.clear()
    table.update(saved)


GPUS = ("L4", "A100", "V100", "T4")


def synthetic_runs(paths, *, gpus=GPUS, batch_sizes=(32, 128), seed=0) -> pd.DataFrame:
    """Runs whose energy follows t = flops_train / (0.35 peak) + launch floor, P = 0.55 TDP (+3 % noise)."""
    from featurize import featurize, lookup_gpu

    rng = np.random.default_rng(seed)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specs = {g: lookup_gpu(g) for g in gpus}
        for p in paths:
            for bs in batch_sizes:
                f = featurize(str(p), batch_size=bs)
                for g in gpus:
                    t = f.flops_train / (0.35 * specs[g].peak_fp32_flops) + f.n_nodes * 15e-6 / bs
                    e = t * 0.55 * specs[g].tdp_w * 10_000 * 3
                    rows.append(
                        dict(
                            model=str(p),
                            gpu=g,
                            batch_size=bs,
                            samples_per_epoch=10_000,
                            epochs=3,
                            energy_j=e * rng.lognormal(0, 0.03),
                            time_s=t * 30_000,
                        )
                    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def synthetic_model(tmp_path_factory):
    """(model_dir, runs csv path, graph paths) of a base=None model trained on synthetic runs."""
    from predictor.retrain import retrain

    from test_batch_graphs import write_variants

    root = tmp_path_factory.mktemp("synthetic_model")
    paths = write_variants(root / "graphs", 24, seed=0)
    runs = synthetic_runs(paths)
    csv = root / "runs.csv"
    runs.to_csv(csv, index=False)
    out = retrain(csv, out_dir=root / "model", base=None, seed=0)
    return out, csv, paths


@pytest.fixture(scope="session")
def built_table(shared_data, tmp_path_factory):
    """The training table built from the fixed CI subset (:func:`training_data.subset.ci_subset`) into a temporary
    folder: every source, 12 small exports (cached in training_data/cache/ between runs), ~3 min CPU cold, ~15 s warm."""
    import pandas as pd

    from training_data.build_table import build_table
    from training_data.subset import ci_subset

    out = tmp_path_factory.mktemp("table")
    build_table(shared_data, out, subset=ci_subset, progress=False)
    return pd.read_parquet(out / "training_table.parquet")
