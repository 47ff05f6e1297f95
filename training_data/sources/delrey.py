"""delrey_pre_recovered (del Rey et al., PRE, arXiv 2307.05520): run-level mean epoch energies -> run schema.

Entry point: :func:`load` (``shared_dir / "delrey_pre_recovered" / "training_rows.csv"``).

Assumptions (see PROVENANCE.md; rows were recovered from the authors' fitted kernel-ridge models):

* One row per run; the published energies are **GPU + a RAM term**, run means per epoch. We convert them to GPU-only
  (``scope = gpu_nvml``): energy x P / (P + :data:`RAM_TERM_W`), P = the run's mean GPU power (``avg_gpu_power_W``,
  already GPU-only: it equals seaa2023's NVML power of the same runs within 0.01 W). The 6 W is measured, not assumed:
  del Rey's epoch energy minus seaa2023's GPU-only energy of the same runs is a flat 5-7 W x epoch time on all three
  machines. No run ids, epoch counts or totals exist: ``epochs``, ``energy_j`` and ``time_s`` are NaN;
  ``run_id`` = ``row<N>``.
* ``chesslive-occupancy`` rows are the seaa2023 CNN runs (10 frozen epochs, then fine-tuning). We use
  ``avg_stable_epoch_energy_kJ`` (mean over epochs >= 10 = the fine-tuning phase) as ``phase = finetune``, frozen ''.
* InceptionV3 rows (Caltech101 / Stanford Dogs) train a new head on a **frozen base** for every epoch:
  ``phase = all``, ``frozen = backbone``, ``avg_epoch_energy_kJ``. Head classes: Caltech101 102 (3,060 = 30 x 102
  training images), Stanford Dogs 120.
* Every epoch includes validation over ``validation_size`` images (Keras ``fit``): ``val_samples = validation_size``.
* ``time_per_epoch_s`` is not recorded: it is estimated as GPU-only epoch energy / mean GPU power; ``avg_power_w`` =
  the run's mean GPU power. fp32; power limit = card default (flagged True): NaN (spec sheet) except the RTX 3070,
  which is seaa2023's local card whose nvidia-smi limit reads 240 W (:data:`POWER_LIMIT_W`; spec sheet 220 W; its
  VGG16 runs draw 229-231 W).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from predictor.run import training_sample_equivalents
from training_data.schema import validate_runs
from training_data.sources import read_csv

SOURCE = "delrey"
FOLDER = "delrey_pre_recovered"
NEEDED = ("row", "architecture", "dataset", "gpu_model", "batch_size", "image_height", "image_width",
          "training_size", "validation_size", "gflops", "avg_epoch_energy_kJ", "avg_stable_epoch_energy_kJ",
          "avg_gpu_power_W")
CNN_ZOO = {"vgg16": "vgg16_tl", "resnet50": "resnet50_tl", "mobilenet_v2": "mobilenet_v2_a05_tl",
           "nasnet_mobile": "nasnet_mobile_tl"}
RAM_TERM_W = 6.0
"""del Rey energy - GPU-only energy of the same seaa2023 runs (matched by power, 5-7 W on all three machines)."""
POWER_LIMIT_W = {"NVIDIA GeForce RTX 3070": 240.0}
"""The seaa2023 local-v2 card (nvidia-smi limit 240 W; it draws 230 W there), not the 220 W spec sheet."""
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
        "power_limit_w": raw["gpu_model"].map(POWER_LIMIT_W),
        "energy_per_epoch_j": energy_kj * 1e3 * raw["avg_gpu_power_W"] / (raw["avg_gpu_power_W"] + RAM_TERM_W),
        "avg_power_w": raw["avg_gpu_power_W"],
        "scope": "gpu_nvml",
        "phase": inception.map({True: "all", False: "finetune"}),
        "notes": "dataset=" + raw["dataset"] + "; time_per_epoch_s estimated = energy / mean GPU power"
                 + inception.map({True: "; mean over all epochs", False: "; mean over epochs >= 10"}),
    })
    df["time_per_epoch_s"] = df["energy_per_epoch_j"] / df["avg_power_w"]
    df["energy_per_sample_j"] = df["energy_per_epoch_j"] / training_sample_equivalents(
        df["samples_per_epoch"].astype(float), df["val_samples"].astype(float))
    return validate_runs(df, origin=str(path))
