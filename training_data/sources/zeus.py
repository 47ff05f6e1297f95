"""zeus_nsdi23 (You et al., NSDI 2023): per-epoch time and power per (GPU, workload, batch, power limit) -> run schema.

Entry point: :func:`load` (``shared_dir / "zeus_nsdi23" / "power_per_epoch.csv"``).

One row per profiled configuration, every power limit kept and written to ``power_limit_w``; the highest limit per GPU
is the card's default (``default_power_limit = True``). One epoch = one pass over the training set, validation excluded
(``val_samples = 0``); ``epochs``/``energy_j``/``time_s`` are NaN (``train_epochs_to_target.csv`` gives epochs to a
target per seed; not joined here). Scope: NVML GPU power (``gpu_nvml``). Precision fp32 (V100/P100 have no TF32)
except DeepSpeech2, which we label fp16 (mixed precision): PROVENANCE is silent, but the measured epochs rule out fp32.
At fp32 its training FLOPs would run at up to 94 % of the V100's fp32 peak (an LSTM network), and it runs 3.9x faster
on the V100 than on the P100 (tensor cores against none), where every other Zeus workload runs 1.7-2.3x faster.
Samples per epoch and inputs we assume, with their uncertainty:

============  ============================  ==========================================================================
dataset       samples_per_epoch             input / note
============  ============================  ==========================================================================
cifar100      50,000                        3x32x32 images (exact)
imagenet      1,281,167                     3x224x224 (ILSVRC-2012 train, exact)
librispeech   281,241                       train-960 utterances (28,539 + 104,014 + 148,688; exact count); input a
                                            161-bin spectrogram, mean utterance ~12.3 s -> 1,230 frames (+-30 %:
                                            utterances vary 1-35 s; we featurize at the mean length)
movielens-1m  4,970,845                     leave-one-out train split: 994,169 positive ratings (1,000,209 - 6,040
                                            held out) x (1 + 4 sampled negatives) (NCF convention; if Zeus counts only
                                            positives, 5x fewer, i.e. per-sample energy x5)
squad         88,641                        SQuAD v1.1 train features at max_seq 384 / stride 128 (87,599 questions;
                                            +-1 %), seq 384
sentiment140  1,600,000                     full training set (tweets), seq 64: inferred from the measured epochs. At
                                            seq 128 and fp32 the V100 would run at 134 % of its fp32 peak; the
                                            GPU-to-GPU ratios match the other fp32 workloads, not mixed precision.
                                            At seq 64 its peak fp32 utilisation per GPU (0.77-0.94) matches SQuAD's
                                            at seq 384 (0.68-0.86): tweets are short and padded to ~64 tokens.
============  ============================  ==========================================================================
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training_data.schema import validate_runs
from training_data.sources import read_csv

SOURCE = "zeus"
FOLDER = "zeus_nsdi23"
NEEDED = ("gpu", "dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch", "average_power",
          "energy_per_epoch_J")
WORKLOADS: dict[tuple[str, str], dict] = {
    ("cifar100", "shufflenetv2"): dict(samples=50_000, model="zoo:shufflenet_v2_cifar", shape="3x32x32",
                                       arch="shufflenet_v2"),
    ("imagenet", "resnet50"): dict(samples=1_281_167, model="zoo:resnet50", shape="3x224x224", arch="resnet50"),
    ("librispeech", "deepspeech2"): dict(samples=281_241, model="zoo:deepspeech2", shape="161x1230",
                                         arch="deepspeech2", precision="fp16"),
    ("movielens-1m", "ncf"): dict(samples=4_970_845, model="zoo:ncf", shape="2", arch="ncf"),
    ("squad", "bert_base_uncased"): dict(samples=88_641, model="zoo:bert_base_qa", shape="seq384", arch="bert_base"),
    ("sentiment140", "bert_base_uncased"): dict(samples=1_600_000, model="zoo:bert_base_cls", shape="seq64",
                                                arch="bert_base"),
}


def load(shared_dir: Path) -> pd.DataFrame:
    """One validated row per (GPU, workload, batch size, optimizer, power limit)."""
    path = Path(shared_dir) / FOLDER / "power_per_epoch.csv"
    raw = read_csv(path, required=NEEDED)
    from featurize.errors import SchemaError

    unknown = [k for k in zip(raw["dataset"], raw["network"]) if k not in WORKLOADS]
    if unknown:
        i = [tuple(k) for k in zip(raw["dataset"], raw["network"])].index(unknown[0])
        raise SchemaError(f"{path}: column 'dataset'/'network', row {i}: workload {unknown[0]} has no dataset size "
                          f"or zoo model; add it to training_data.sources.zeus.WORKLOADS.")
    w = [WORKLOADS[k] for k in zip(raw["dataset"], raw["network"])]
    max_pl = raw.groupby("gpu")["power_limit"].transform("max")
    df = pd.DataFrame({
        "source": SOURCE,
        "run_id": raw["gpu"] + "/" + raw["dataset"] + "/" + raw["network"] + "/bs" + raw["batch_size"].astype(str)
                  + "/" + raw["optimizer"] + "/pl" + raw["power_limit"].astype(str),
        "gpu": raw["gpu"],
        "architecture": [x["arch"] for x in w],
        "model": [x["model"] for x in w],
        "input_shape": [x["shape"] for x in w],
        "batch_size": raw["batch_size"],
        "samples_per_epoch": [x["samples"] for x in w],
        "val_samples": 0,
        "precision": [x.get("precision", "fp32") for x in w],
        "frozen": "",
        "power_limit_w": raw["power_limit"].astype(float),
        "default_power_limit": raw["power_limit"] == max_pl,
        "energy_per_epoch_j": raw["energy_per_epoch_J"],
        "time_per_epoch_s": raw["time_per_epoch"],
        "avg_power_w": raw["average_power"],
        "scope": "gpu_nvml",
        "phase": "all",
        "notes": "dataset=" + raw["dataset"] + "; optimizer=" + raw["optimizer"] + "; one profiled epoch",
    })
    df["energy_per_sample_j"] = df["energy_per_epoch_j"] / df["samples_per_epoch"]
    return validate_runs(df, origin=str(path))
