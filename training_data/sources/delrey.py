"""delrey_pre_recovered (del Rey et al., PRE, arXiv 2307.05520): run-level mean epoch energies -> run schema.

Entry point: :func:`load` (``shared_dir / "delrey_pre_recovered" / "training_rows.csv"``).

Assumptions (see PROVENANCE.md; rows were recovered from the authors' fitted kernel-ridge models):

* One row per run; energies are **GPU + estimated RAM** (``scope = gpu_nvml+ram_est``), run means per epoch. No run ids,
  epoch counts or totals exist: ``epochs``, ``energy_j`` and ``time_s`` are NaN; ``run_id`` = ``row<N>``.
* ``chesslive-occupancy`` rows are the seaa2023 CNN runs (10 frozen epochs, then fine-tuning). We use
  ``avg_stable_epoch_energy_kJ`` (mean over epochs >= 10 = the fine-tuning phase) as ``phase = finetune``, frozen ''.
* InceptionV3 rows (Caltech101 / Stanford Dogs) train a new head on a **frozen base** for every epoch:
  ``phase = all``, ``frozen = backbone``, ``avg_epoch_energy_kJ``. Head classes: Caltech101 102 (3,060 = 30 x 102
  training images), Stanford Dogs 120.
* Every epoch includes validation over ``validation_size`` images (Keras ``fit``): ``val_samples = validation_size``.
* ``time_per_epoch_s`` is not recorded: it is estimated as epoch energy / mean GPU power (the RAM term, ~1-4 W, makes it
  slightly long); ``avg_power_w`` = the run's mean GPU power. fp32; power limit = card default (NaN, flagged True).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training_data.schema import DEFAULT_FORWARD_TRAIN_RATIO, training_sample_equivalents, validate_runs
from training_data.sources import read_csv

SOURCE = "delrey"
FOLDER = "delrey_pre_recovered"
NEEDED = ("row", "architecture", "dataset", "gpu_model", "batch_size", "image_height", "image_width",
          "training_size", "validation_size", "gflops", "avg_epoch_energy_kJ", "avg_stable_epoch_energy_kJ",
          "avg_gpu_power_W")
CNN_ZOO = {"vgg16": "vgg16_tl", "resnet50": "resnet50_tl", "mobilenet_v2": "mobilenet_v2_a05_tl",
           "nasnet_mobile": "nasnet_mobile_tl"}
INCEPTION_CLASSES = {"caltech101": 102, "stanford_dogs": 120}


def _zoo_model(arch: str, dataset: str) -> str:
    if arch == "inception_v3":
        return f"zoo:inception_v3_tl?classes={INCEPTION_CLASSES[dataset]}"
    return f"zoo:{CNN_ZOO[arch]}"


def load(shared_dir: Path) -> pd.DataFrame:
    """One validated row per recovered run."""
    path = Path(shared_dir) / FOLDER / "training_rows.csv"
    raw = read_csv(path, required=NEEDED)
    inception = raw["architecture"] == "inception_v3"
    energy_kj = raw["avg_stable_epoch_energy_kJ"].where(~inception, raw["avg_epoch_energy_kJ"])
    df = pd.DataFrame({
        "source": SOURCE,
        "run_id": "row" + raw["row"].astype(str),
        "gpu": raw["gpu_model"],
        "architecture": raw["architecture"],
        "model": [_zoo_model(a, d) for a, d in zip(raw["architecture"], raw["dataset"])],
        "input_shape": "3x" + raw["image_height"].astype(str) + "x" + raw["image_width"].astype(str),
        "batch_size": raw["batch_size"],
        "samples_per_epoch": raw["training_size"],
        "val_samples": raw["validation_size"],
        "precision": "fp32",
        "frozen": inception.map({True: "backbone", False: ""}),
        "default_power_limit": True,
        "energy_per_epoch_j": energy_kj * 1e3,
        "avg_power_w": raw["avg_gpu_power_W"],
        "scope": "gpu_nvml+ram_est",
        "phase": inception.map({True: "all", False: "finetune"}),
        "notes": "dataset=" + raw["dataset"] + "; time_per_epoch_s estimated = energy / mean GPU power"
                 + inception.map({True: "; mean over all epochs", False: "; mean over epochs >= 10"}),
    })
    df["time_per_epoch_s"] = df["energy_per_epoch_j"] / df["avg_power_w"]
    df["energy_per_sample_j"] = df["energy_per_epoch_j"] / training_sample_equivalents(
        df["samples_per_epoch"], df["val_samples"], DEFAULT_FORWARD_TRAIN_RATIO)
    return validate_runs(df, origin=str(path))
