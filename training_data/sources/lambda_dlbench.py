"""lambda_dlbench (Lambda's deeplearning-benchmark, PyTorch NGC DeepLearningExamples): training throughput -> time rows.

Entry points: :func:`load` (``shared_dir / "lambda_dlbench" / "train_throughput.csv"``) and
:func:`load_with_exclusions` (kept rows, rows kept out with a reason).

* One row per system x model x precision x batch (mean over ``n_runs`` repeats; ``throughput_cv`` their spread).
  Throughput only, no power: time-only rows (:mod:`training_data.sources.throughput`).
* ``batch_size`` is per GPU; ``n_gpus`` 1-16 (multi-GPU rows kept). ``precision`` as logged: ``tf32`` (FP32 on
  Ampere+, NGC enables TF32), ``fp32`` before Ampere, ``amp_fp16`` -> ``fp16``; ``precision_logged`` keeps the raw label.
* Units, explicitly (:data:`WORKLOADS`): images/s, sequences/s, samples/s are samples; Transformer-XL tokens/s / target
  length (192 base, 256 large: ``seq_len``); WaveGlow audio samples/s / segment length (8,000 = ``seq_len``); GNMT
  tokens/s / 50 (a stated mean sentence pair, source + target) and Tacotron2 mel frames/s / 566 (LJSpeech's mean
  utterance): :mod:`training_data.zoo.seq2seq`.
* Multi-GPU rows whose per-GPU throughput is above 1.5x the same GPU's best 1-GPU throughput (same tree, model,
  precision label) are kept out (:data:`DOUBLE_COUNTED`): 235 rows, nearly all SSD and NCF, sit at n_gpus x the
  1-GPU figure (median ratio / n_gpus 0.99), i.e. a system total reported per GPU.
* Multi-GPU rows faster per GPU than the same GPU alone at the same per-GPU batch (above :data:`SAME_BATCH_LIMIT`)
  are kept out (:data:`FASTER_THAN_ALONE`): NCF (most of its multi-GPU rows, up to 47x), BERT-base SQuAD (up to 1.41x),
  a few Tacotron2/WaveGlow rows; ResNet-50, GNMT, Mask R-CNN and Transformer-XL never exceed 1.014x.
* GPU names map to the GPU table (:data:`GPU_NAMES`); laptop Max-Q parts (clock and power limit vary by laptop) and
  "A100 (unspecified)" are kept out. "V100 (unspecified)" (Lambda's V100 servers) maps to the V100 alias's variant
  (SXM2 32 GB; SXM2 16/32 GB have the same clocks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training_data.sources.throughput import PRECISION, convert_file, samples_per_s
from training_data.zoo.seq2seq import GNMT_TOKENS, TACO_FRAMES, TACO_SYMBOLS

SOURCE = "lambda_dlbench"
FOLDER = "lambda_dlbench"
NEEDED = ("tree", "system", "model_key", "framework", "gpu", "n_gpus", "precision", "precision_raw",
          "throughput_unit", "seq_len", "dataset", "batch_size", "throughput_per_gpu", "throughput_cv", "n_runs")
# model_key -> (architecture, zoo model, input shape, items per sample (False: the unit is a sample; True: the row's
# seq_len; a number: a stated mean), what one sample is)
WORKLOADS: dict[str, tuple[str, str, str, bool | int, str]] = {
    "resnet50": ("resnet50_v15", "zoo:resnet50_v15", "3x224x224", False, "ImageNet (synthetic), 224x224 image"),
    "bert_base_squad": ("bert_base", "zoo:bert_base_qa", "seq384", False, "SQuAD v1.1, 384-token sequence"),
    "bert_large_squad": ("bert_large", "zoo:bert_large_qa", "seq384", False, "SQuAD v1.1, 384-token sequence"),
    "ncf": ("ncf", "zoo:ncf_dle?users=138493&items=26744", "2", False, "MovieLens-20M (user, item) pair"),
    "SSD": ("ssd300", "zoo:ssd300", "3x300x300", False, "COCO2017, 300x300 image"),
    "maskrcnn": ("maskrcnn_r50_fpn", "zoo:maskrcnn_r50_fpn", "3x800x1344", False,
                 "COCO2017 image, min side 800 / max 1333 padded to 800x1344; 512 box + 128 mask RoIs"),
    "transformerxlbase": ("transformer_xl_base", "zoo:transformer_xl_base", "seq192", True,
                          "WikiText-103 segment of tgt_len=192 tokens"),
    "transformerxllarge": ("transformer_xl_large", "zoo:transformer_xl_large", "seq256", True,
                           "WikiText-103 segment of tgt_len=256 tokens"),
    "waveglow": ("waveglow", "zoo:waveglow", "10560", True, "LJSpeech segment of 8,000 audio samples + 32 mel frames"),
    "gnmt": ("gnmt_v2", "zoo:gnmt_v2", "50", 2 * GNMT_TOKENS,
             f"WMT16 en-de sentence pair of the stated mean {GNMT_TOKENS} + {GNMT_TOKENS} BPE tokens (tokens/s / "
             f"{2 * GNMT_TOKENS})"),
    "tacotron2": ("tacotron2", "zoo:tacotron2", str(TACO_SYMBOLS), TACO_FRAMES,
                  f"LJSpeech utterance of the mean {TACO_FRAMES} mel frames / {TACO_SYMBOLS} characters (mel "
                  f"frames/s / {TACO_FRAMES})"),
}
SCALING_LIMIT = 1.5
SAME_BATCH_LIMIT = 1.05
FASTER_THAN_ALONE = ("per-GPU throughput above 1.05x the same GPU's 1-GPU figure at the same per-GPU batch: a "
                     "data-parallel replica cannot beat the GPU alone (compute-bound workloads stay <= 1.014x); for "
                     "NCF the logged multi-GPU figure is not a per-GPU rate (DATASHEET.md)")
DOUBLE_COUNTED = ("per-GPU throughput above 1.5x the same GPU's 1-GPU figure (235 SSD/NCF rows sit at n_gpus x it, "
                  "median 0.99 n): the logged figure is the system total, the per-GPU division is not trustworthy")
GPU_NAMES = {"A100 SXM4 40GB (AWS p4d)": "A100-SXM4-40GB", "V100 (unspecified)": "V100"}
GPU_EXCLUDED = {"A100 (unspecified)": "A100 variant not logged",
                **{g: "laptop Max-Q part: clock and power limit depend on the laptop" for g in (
                    "RTX 2070 Max-Q (laptop)", "RTX 2080 Max-Q (laptop)", "RTX 2080 Super Max-Q (laptop)",
                    "RTX 3080 Max-Q (laptop)")}}


def _convert(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    wl = raw["model_key"].map(WORKLOADS)
    known = wl.notna()
    get = lambda i, default="": wl.map(lambda w: w[i] if isinstance(w, tuple) else default)  # noqa: E731
    items = get(3, False)
    per_sample = np.where(items.map(lambda v: v is True), raw["seq_len"],
                          items.map(lambda v: float(v) if v is not True and v else np.nan))
    conv = [samples_per_s(t, u, s) for t, u, s in zip(raw["throughput_per_gpu"], raw["throughput_unit"], per_sample)]
    df = pd.DataFrame({
        "run_id": raw["tree"] + "/" + raw["system"] + "/" + raw["model_key"] + "/" + raw["precision_raw"] + "/b"
                  + raw["batch_size"].map("{:g}".format),
        "gpu_logged": raw["gpu"], "gpu": raw["gpu"].replace(GPU_NAMES), "architecture": get(0, "unknown"),
        "model": get(1), "input_shape": get(2), "batch_size": raw["batch_size"], "n_gpus": raw["n_gpus"],
        "precision": raw["precision"].map(PRECISION), "precision_logged": raw["precision_raw"],
        "implementation": raw["framework"], "workload": raw["dataset"] + "; sample = " + get(4),
        "samples_per_s_per_gpu": [c[0] for c in conv],
        "notes": "throughput " + raw["throughput_per_gpu"].map("{:.6g}".format) + " " + raw["throughput_unit"]
                 + "/GPU; cv " + raw["throughput_cv"].map("{:.3g}".format) + " over " + raw["n_runs"].astype(str)
                 + " runs; system " + raw["system"],
    })
    reasons = pd.Series([c[1] for c in conv], index=raw.index, dtype="object")
    reasons[~known] = "unknown model_key " + raw.loc[~known, "model_key"].astype(str)
    gpu_bad = raw["gpu"].map(GPU_EXCLUDED)
    reasons[gpu_bad.notna()] = gpu_bad[gpu_bad.notna()]
    reasons[df["precision"].isna()] = "unknown precision label"
    reasons[~(df["batch_size"] > 0)] = "batch size not logged"
    reasons[_faster_than_alone(raw)] = FASTER_THAN_ALONE
    reasons[_system_total_as_per_gpu(raw)] = DOUBLE_COUNTED
    return df, reasons


def _faster_than_alone(raw: pd.DataFrame) -> pd.Series:
    """Multi-GPU rows whose per-GPU throughput exceeds :data:`SAME_BATCH_LIMIT` x the 1-GPU throughput of the same
    tree, GPU, model, precision label and per-GPU batch (NCF's repeat CV is 4.6 %, hence the 5 % margin)."""
    key = ["tree", "gpu", "model_key", "precision_raw", "batch_size"]
    one = raw[raw["n_gpus"] == 1].groupby(key)["throughput_per_gpu"].max().rename("_one")
    ref = raw[key].merge(one.reset_index(), on=key, how="left")["_one"].to_numpy()
    return pd.Series((raw["n_gpus"] > 1).to_numpy() & (raw["throughput_per_gpu"].to_numpy() > SAME_BATCH_LIMIT * ref),
                     index=raw.index)


def _system_total_as_per_gpu(raw: pd.DataFrame) -> pd.Series:
    """Multi-GPU rows whose per-GPU throughput exceeds :data:`SCALING_LIMIT` x the best 1-GPU per-GPU throughput of the
    same tree, GPU, model and precision label (the 1-GPU figure is the ceiling of a data-parallel GPU)."""
    key = ["tree", "gpu", "model_key", "precision_raw"]
    one = raw[raw["n_gpus"] == 1].groupby(key)["throughput_per_gpu"].max().rename("_one")
    ref = raw[key].merge(one.reset_index(), on=key, how="left")["_one"].to_numpy()
    return pd.Series((raw["n_gpus"] > 1).to_numpy() & (raw["throughput_per_gpu"].to_numpy() > SCALING_LIMIT * ref),
                     index=raw.index)


def load_with_exclusions(shared_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated time rows, rows kept out with ``reason``)."""
    return convert_file(Path(shared_dir) / FOLDER / "train_throughput.csv", NEEDED, _convert, SOURCE)


def load(shared_dir: Path) -> pd.DataFrame:
    """Validated time rows (see :func:`load_with_exclusions`)."""
    return load_with_exclusions(shared_dir)[0]
