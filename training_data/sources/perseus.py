"""perseus_sosp24 (Perseus, SOSP'24 artifact): A100 PCIe pipeline-parallel training iterations under power limits.

Entry points: :func:`load` (``shared_dir / "perseus_sosp24" / "iterations_a100.csv"``), :func:`load_with_exclusions`.

* One row per (model, uniform GPU power limit): NVML energy and time of one iteration on a 4x A100 80GB PCIe pipeline
  (Merak; dp x tp x pp = 1 x 1 x 4), mixed precision (artifact README): ``precision = fp16``.
* Per-GPU convention of the run table: one iteration processes ``batch_size`` (global) samples on 4 GPUs, so
  ``samples_per_epoch`` = the global batch, ``time_per_epoch_s`` = iteration time x ``n_gpus`` (GPU-seconds, so
  ``time_per_sample_s`` is GPU-seconds per sample like every multi-GPU row), ``energy_per_epoch_j`` = the iteration's
  energy summed over the 4 GPUs, ``avg_power_w`` = per-GPU mean power; ``batch_size`` = the micro-batch each stage runs.
* ``power_limit_w`` as set; 300 W is the card's default (``default_power_limit``).
* Workloads (:data:`WORKLOADS`, ``training_data.zoo.perseus``): GPT-3 XL (seq 1,024), BERT-huge (seq 512), T5-3B
  (512 + 512 tokens), BLOOM-3B (seq 1,024), Wide-ResNet-101 width 8 (224 px), as ZOO_REFERENCES.md section 8 states.
* Layout as logged: ``pipeline_parallel`` = pp (4 stages), ``tensor_parallel`` = tp, ``data_parallel`` = dp,
  ``grad_accum`` = micro-batches per iteration (``num_microbatches``), ``parallelism = pipeline``: the per-GPU graph
  is 1/4 of the model, so these rows need a pipeline model (bubbles, stage imbalance) before they price a DDP job.
  Merak checkpoints activations by default (the forward runs twice): noted on the row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training_data.schema import validate_runs
from training_data.sources import read_csv
from training_data.sources.throughput import split

SOURCE = "perseus_sosp24"
FOLDER = "perseus_sosp24"
NEEDED = ("model_name", "batch_size", "dp", "tp", "pp", "microbatch_size", "num_microbatches", "gpu", "n_gpus",
          "power_limit_W", "iteration_time_s", "iteration_energy_J", "avg_power_per_gpu_W", "framework")
DEFAULT_LIMIT_W = 300.0
WORKLOADS = {"gpt3-xl": ("gpt3_xl", "zoo:gpt3?size=1", "seq1024"),
             "bert-huge-uncased": ("bert_huge", "zoo:bert_huge", "seq512"),
             "t5-3b": ("t5_3b", "zoo:t5_3b", "1024"), "bloom-3b": ("bloom_3b", "zoo:bloom_3b", "seq1024"),
             "wide-resnet101_8": ("wide_resnet101_8", "zoo:wide_resnet101_8", "3x224x224")}
GPU_NAMES = {"A100 PCIe 80GB": "A100-PCIE-80GB"}


def _convert(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    wl = raw["model_name"].map(WORKLOADS)
    arch = wl.map(lambda w: w[0] if isinstance(w, tuple) else "unknown")
    df = pd.DataFrame({
        "source": SOURCE, "run_id": raw["model_name"] + "/pl" + raw["power_limit_W"].map("{:g}".format),
        "gpu_logged": raw["gpu"], "gpu": raw["gpu"].map(GPU_NAMES).fillna(raw["gpu"]), "architecture": arch,
        "model": wl.map(lambda w: w[1] if isinstance(w, tuple) else "zoo:unknown"),
        "input_shape": wl.map(lambda w: w[2] if isinstance(w, tuple) else ""),
        "batch_size": raw["microbatch_size"].astype("int64"), "samples_per_epoch": raw["batch_size"].astype("int64"),
        "val_samples": 0, "epochs": float("nan"), "precision": "fp16", "frozen": "",
        "power_limit_w": raw["power_limit_W"], "default_power_limit": raw["power_limit_W"] == DEFAULT_LIMIT_W,
        "energy_per_epoch_j": raw["iteration_energy_J"], "time_per_epoch_s": raw["iteration_time_s"] * raw["n_gpus"],
        "avg_power_w": raw["avg_power_per_gpu_W"], "energy_j": raw["iteration_energy_J"],
        "time_s": raw["iteration_time_s"], "scope": "gpu_nvml", "phase": "step", "n_gpus": raw["n_gpus"],
        "implementation": raw["framework"], "precision_logged": "mixed (artifact README)",
        "workload": "pipeline dp=" + raw["dp"].map("{:g}".format) + " tp=" + raw["tp"].map("{:g}".format) + " pp="
                    + raw["pp"].map("{:g}".format) + ", global batch " + raw["batch_size"].map("{:g}".format),
        "notes": "time_s = one iteration (wall); time_per_epoch_s = GPU-seconds of the iteration; activation "
                 "checkpointing on (Merak default)",
        "tensor_parallel": raw["tp"], "pipeline_parallel": raw["pp"], "data_parallel": raw["dp"],
        "grad_accum": raw["num_microbatches"], "parallelism": "pipeline",
    })
    df["energy_per_sample_j"] = df["energy_per_epoch_j"] / df["samples_per_epoch"]
    return df, pd.Series("", index=raw.index, dtype="object")


def load_with_exclusions(shared_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated rows, rows kept out with ``reason``)."""
    path = Path(shared_dir) / FOLDER / "iterations_a100.csv"
    raw = read_csv(path, required=NEEDED)
    df, reasons = _convert(raw)
    kept, out = split(df, reasons, SOURCE)
    return validate_runs(kept.drop(columns=["gpu_logged"]), origin=str(path)), out


def load(shared_dir: Path) -> pd.DataFrame:
    """Validated rows (see :func:`load_with_exclusions`)."""
    return load_with_exclusions(shared_dir)[0]
