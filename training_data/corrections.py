"""Per-source label corrections, applied when the training table is built (never by the shipped package).

Public entry points: :func:`apply_corrections` (table -> corrected table, with ``attrs["source_corrections"]``
describing what was applied, which the model's prior spec records), :func:`source_gpu_names`, :func:`describe`,
and ``python -m training_data.corrections TABLE.parquet`` (apply to a table built before the corrections moved
here; rewrites it with a new ``table_sha256``).

* :data:`SOURCE_GPU_NAMES` -- a source's bare GPU name resolved to the board it measured (Zeus PCIe cards).
* :func:`canonical_gpu_names` -- every GPU name as :func:`featurize.lookup_gpu` resolves it (``NVIDIA GeForce RTX
  3090`` and ``RTX-3090`` are one GPU, ``RTX-3090``); the name the source logged stays in ``gpu_logged``.
* :data:`SOURCE_PRECISION` -- a recorded precision that is physically impossible, replaced (Mayaki: TF32).
* :data:`SOURCE_IMPLEMENTATION` -- whose training code a source ran (``implementation_class``: ``tuned`` =
  NVIDIA DeepLearningExamples / MLPerf-class code, ``reference`` otherwise): the time model learns an offset per
  class and source instead of pooling implementations that differ up to 2x.
* :data:`SOURCE_POWER_UNRELIABLE` -- sources whose power is not the step's: ``power_reliable`` = False on their
  rows and ``power_note`` says why; the fitter keeps their time target and drops power/energy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

SOURCE_GPU_NAMES: dict[str, dict[str, str]] = {
    # Zeus reports "NVIDIA V100"/"NVIDIA P100" with a 250 W maximum power limit: PCIe boards, not the
    # 300 W SXM2 part the bare alias resolves to (hardware engineer's note).
    "zeus": {"NVIDIA V100": "V100-PCIE-32GB", "NVIDIA P100": "P100-PCIE-16GB"},
}
SOURCE_PRECISION: dict[str, str] = {
    # Mayaki's A100 steps run at up to 2x the FP32 peak (e.g. 540 GFLOP in 14 ms = 39 TFLOP/s vs 19.5):
    # PyTorch's TF32 default on Ampere, not FP32 (their stated peak, 156 TFLOP/s, is the TF32 one).
    "mayaki": "tf32",
}
SOURCE_POWER_UNRELIABLE: dict[str, str] = {
    "mayaki": (
        "power is a point sample, not the step's power: 97 +/- 4.5 W (87-124 W) on a 300 W A100 across all 561 "
        "configurations, flat or falling with load (correlation -0.62 with the achieved TFLOP/s; 89 W at 14 "
        "TFLOP/s by the authors' own FLOP count); its CUDA-event step times are kept (time model only)"
    ),
}
SOURCE_IMPLEMENTATION: dict[str, str] = {
    # whose training code a source ran (predictor.time_model.IMPLEMENTATIONS); every other source: "reference"
    "lambda_dlbench": "tuned",   # NVIDIA DeepLearningExamples in NGC containers (AMP, DALI, fused optimizers)
    "nvidia_dle": "tuned",       # NVIDIA's own published DeepLearningExamples figures
    "mlperf_training": "tuned",  # MLPerf submissions (vendor-optimised NGC MLPerf code)
}
IMPLEMENTATION_COL = "implementation_class"
POWER_RELIABLE_COL = "power_reliable"
POWER_NOTE_COL = "power_note"


def describe() -> dict[str, Any]:
    """The corrections as data (recorded in the model's prior spec)."""
    return {"gpu_names": SOURCE_GPU_NAMES, "canonical_gpu_names": "featurize.lookup_gpu(name).name",
            "precision": SOURCE_PRECISION, "implementation": SOURCE_IMPLEMENTATION,
            "power_unreliable": SOURCE_POWER_UNRELIABLE}


def source_gpu_names(rows: pd.DataFrame) -> pd.Series:
    """``rows['gpu']`` with :data:`SOURCE_GPU_NAMES` applied per source."""
    gpu = rows["gpu"].astype(str).copy()
    if "source" not in rows:
        return gpu
    for src, names in SOURCE_GPU_NAMES.items():
        m = rows["source"].astype(str) == src
        gpu[m] = gpu[m].replace(names)
    return gpu


def canonical_gpu_names(names: pd.Series) -> pd.Series:
    """Each name as :func:`featurize.lookup_gpu` resolves it (its ``GPUSpec.name``): one GPU, one name, so grouped
    CV holds a GPU out whole and per-GPU figures count it once."""
    import warnings

    from featurize import lookup_gpu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alias notes are expected for logged names
        canon = {n: lookup_gpu(n).name for n in names.astype(str).unique()}
    return names.astype(str).map(canon)


def apply_corrections(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with every correction applied (idempotent)."""
    out = table.copy()
    src = out["source"].astype(str)
    if "gpu" in out:
        if "gpu_logged" not in out:
            out["gpu_logged"] = out["gpu"].astype(str)
        out["gpu"] = canonical_gpu_names(source_gpu_names(out))
    for name, prec in SOURCE_PRECISION.items():
        if "precision" in out:
            out.loc[src == name, "precision"] = prec
    out[IMPLEMENTATION_COL] = src.map(SOURCE_IMPLEMENTATION).fillna("reference").astype(str)
    out[POWER_RELIABLE_COL] = ~src.isin(list(SOURCE_POWER_UNRELIABLE))
    out[POWER_NOTE_COL] = src.map(SOURCE_POWER_UNRELIABLE).fillna("").astype(str)
    out.attrs["source_corrections"] = describe()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training_data.corrections", description=__doc__.split("\n")[0])
    parser.add_argument("table", type=Path)
    args = parser.parse_args(argv)
    from predictor.table_hash import table_sha256

    table = apply_corrections(pd.read_parquet(args.table).drop(columns=["table_sha256"], errors="ignore"))
    table["table_sha256"] = table_sha256(table)
    table.to_parquet(args.table, index=False)
    print(f"corrected {len(table)} rows in {args.table} (table_sha256 {table['table_sha256'].iloc[0][:8]})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
