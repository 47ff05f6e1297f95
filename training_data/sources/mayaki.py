"""mayaki_a100_transformers (Mayaki & Charpenay, ECAI 2025): one training step of random BERT/GPT configs -> run schema.

Entry point: :func:`load` (``shared_dir / "mayaki_a100_transformers" / "train_steps.csv"``).

* ``energy_J_nvml_power_x_time`` and ``time_s_sum_over_repeats`` are sums over ``num_repeats`` steps (their ratio, the
  power, is the same ~90-100 W whatever the repeat count), so one step = value / num_repeats.
* One step is treated as one "epoch" of ``batch_size`` samples: ``samples_per_epoch = batch_size``, ``epochs = 1``,
  ``energy_j`` = one step's energy, ``energy_per_sample_j = step energy / batch_size``, ``val_samples = 0``,
  ``phase = step``. A single step includes no data-loader or warm-up amortisation: treat as a different scope.
* GPU: NVIDIA A100 80GB PCIe; scope ``gpu_nvml`` (power x CUDA-event time). Precision recorded as fp32 (PyTorch
  default; the authors' peak_TFLOPS = 156 is the TF32 peak, so TF32 matmuls are possible -- uncertain).
* Architecture: ``zoo:mayaki_bert`` / ``zoo:mayaki_gpt`` with layers/d_model/heads (reconstruction documented in
  :mod:`training_data.zoo.transformers_zoo`), input ``seq<seq_length>`` token ids.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training_data.schema import validate_runs
from training_data.sources import read_csv

SOURCE = "mayaki"
FOLDER = "mayaki_a100_transformers"
NEEDED = ("model", "source", "params", "seq_length", "batch_size", "num_layers", "d_model", "num_attention_heads",
          "time_s_sum_over_repeats", "energy_J_nvml_power_x_time", "num_repeats")


def load(shared_dir: Path) -> pd.DataFrame:
    """One validated row per configuration (one training step)."""
    path = Path(shared_dir) / FOLDER / "train_steps.csv"
    raw = read_csv(path, required=NEEDED)
    step_e = raw["energy_J_nvml_power_x_time"] / raw["num_repeats"]
    step_t = raw["time_s_sum_over_repeats"] / raw["num_repeats"]
    cfg = ("layers=" + raw["num_layers"].astype(str) + "&d_model=" + raw["d_model"].astype(str)
           + "&heads=" + raw["num_attention_heads"].astype(str))
    df = pd.DataFrame({
        "source": SOURCE,
        "run_id": raw["model"] + "/L" + raw["num_layers"].astype(str) + "/d" + raw["d_model"].astype(str) + "/h"
                  + raw["num_attention_heads"].astype(str) + "/s" + raw["seq_length"].astype(str) + "/b"
                  + raw["batch_size"].astype(str),
        "gpu": raw["source"],
        "architecture": "mayaki_" + raw["model"],
        "model": "zoo:mayaki_" + raw["model"] + "?" + cfg,
        "input_shape": "seq" + raw["seq_length"].astype(str),
        "batch_size": raw["batch_size"],
        "samples_per_epoch": raw["batch_size"],
        "val_samples": 0,
        "epochs": 1.0,
        "precision": "fp32",
        "frozen": "",
        "default_power_limit": True,
        "energy_per_epoch_j": step_e,
        "time_per_epoch_s": step_t,
        "avg_power_w": step_e / step_t,
        "energy_j": step_e,
        "time_s": step_t,
        "scope": "gpu_nvml",
        "phase": "step",
        "notes": "one training step (samples_per_epoch = batch_size); params_reported=" + raw["params"].astype(str),
    })
    df["energy_per_sample_j"] = df["energy_per_epoch_j"] / df["batch_size"]
    return validate_runs(df, origin=str(path))
