"""nvidia_dle (NVIDIA DeepLearningExamples README performance tables): training throughput -> time rows.

Entry points: :func:`load` (``shared_dir / "nvidia_dle" / "train_throughput.csv"``), :func:`load_with_exclusions`.

* Rows are NVIDIA's own tables (DGX A100 / DGX-1 / DGX-2), one per framework x model x GPU count x precision;
  ``batch_size`` is per GPU; ``n_gpus`` 1-16 kept. Time-only rows (:mod:`training_data.sources.throughput`).
* Workloads (:func:`_workload`): ResNet-50 v1.5 (PyTorch, TensorFlow, MXNet, PaddlePaddle), ResNeXt-101 32x4d,
  SE-ResNeXt-101 32x4d (224 px), EfficientNet-B0 / B4 and their WideSE variants (224 / 380 px), NCF (MovieLens-20M), BERT: rows with a sequence length are pre-training
  (BERT-Large, MLM + NSP heads, seq 128 or 512), rows without are SQuAD v1.1 fine-tuning (BERT-Large, seq 384, the
  README's default); ELECTRA-Base SQuAD fine-tuning (seq 384; pre-training pairs a generator with the discriminator and
  is not covered), BART-Large pre-training (seq 128 / 512; CNN-DM fine-tuning has no fixed length), VAE-CF. BERT rows whose batch is the gradient-accumulated per-GPU batch (>= 1,024 with an accumulation
  note in ``table_extras``) are kept out: the micro-batch the GPU ran is not logged.
* Units: ``throughput_samples_per_s`` rows (images/s, sequences/s, samples/s), and PyTorch Tacotron2's mel frames/s
  over LJSpeech's mean utterance (566 frames); tokens/s (GNMT (TensorFlow), Transformer, Transformer-XL, wav2vec2) and
  FastSpeech's mel frames/s have no fixed items per sample: kept out. PyTorch Mask R-CNN as MLPerf's (800 x 1333);
  PyTorch Jasper 10x5 DR at LibriSpeech's mean utterance (12.3 s).
* GPUs: DGX-2 V100 SXM3 32 GB (350 W) and DGX-2H (450 W) are their own GPU-table rows (:data:`GPU_NAMES`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from training_data.sources.throughput import PRECISION, convert_file, samples_per_s
from training_data.zoo.seq2seq import TACO_FRAMES, TACO_SYMBOLS

SOURCE = "nvidia_dle"
FOLDER = "nvidia_dle"
NEEDED = ("readme", "framework", "model", "variant", "gpu", "n_gpus", "precision", "precision_raw", "batch_size",
          "throughput_unit", "throughput_per_gpu", "seq_len", "table_extras", "readme_line")
IMAGE = ("3x224x224", "ImageNet, 224x224 image")
NCF_MILLIONS_BELOW = 1000.0
"""PyTorch NCF README cells are millions of samples/s (the "M" was lost in extraction, as for TensorFlow's, which the
shared CSV already rescaled): 22.59 on one A100 TF32 next to TensorFlow's 20.18e6, 10.42 on a V100 next to 9.73e6.
A value below this is rescaled x1e6 (a real NCF step of 1,048,576 samples cannot take 13 hours)."""
CNNS = {"resnet50v1.5": "resnet50_v15", "RN50v1.5": "resnet50_v15", "resnext101-32x4d": "resnext101_32x4d",
        "se-resnext101-32x4d": "se_resnext101_32x4d"}
EFFICIENTNETS = {"efficientnet-b0": (0, 0), "efficientnet-b4": (4, 0), "efficientnet-widese-b0": (0, 1),
                 "efficientnet-widese-b4": (4, 1)}
GPU_NAMES = {"A100 SXM4 80GB": "A100-SXM4-80GB", "A100 SXM4 40GB": "A100-SXM4-40GB",
             "V100 SXM2 16GB": "V100-SXM2-16GB", "V100 SXM2 32GB": "V100-SXM2-32GB",
             "V100 SXM3 32GB (DGX-2)": "V100-SXM3-32GB", "V100 SXM3 32GB (DGX-2H, 450 W)": "V100-SXM3-32GB-450W"}


def _workload(model: str, seq_len: float, framework: str = "PyTorch") -> tuple[str, str, str, str]:
    """(architecture, zoo model, input shape, one sample) of a README model; architecture '' when not covered."""
    if model == "MaskRCNN" and framework == "PyTorch":  # TensorFlow2's Mask R-CNN is a different (TPU) configuration
        return ("maskrcnn_r50_fpn", "zoo:maskrcnn_r50_fpn", "3x800x1344",
                "COCO2017 image, min side 800 / max 1333 padded to 800x1344; 512 box + 128 mask RoIs")
    if model == "Jasper" and framework == "PyTorch":
        return "jasper", "zoo:jasper", "64x1230", "LibriSpeech utterance of the mean 12.3 s (1,230 frames; stated)"
    if model == "Tacotron2" and framework == "PyTorch":
        return ("tacotron2", "zoo:tacotron2", str(TACO_SYMBOLS),
                f"LJSpeech utterance of the mean {TACO_FRAMES} mel frames (mel frames/s / {TACO_FRAMES})")
    if model in CNNS:
        return CNNS[model], f"zoo:{CNNS[model]}", *IMAGE
    if model in EFFICIENTNETS:
        variant, widese = EFFICIENTNETS[model]
        size = {0: 224, 4: 380}[variant]
        return (model.replace("-", "_"), f"zoo:efficientnet?variant={variant}&widese={widese}", f"3x{size}x{size}",
                f"ImageNet, {size}x{size} image")
    if model == "SSD" and framework == "PyTorch":  # TensorFlow's SSD is SSD320 v1.2 (ResNet-50 FPN), not covered
        return "ssd300", "zoo:ssd300", "3x300x300", "COCO2017, 300x300 image"
    if model == "ELECTRA" and seq_len == 384:
        return "electra_base", "zoo:electra_base_qa", "seq384", "SQuAD v1.1, 384-token sequence"
    if model == "BART" and pd.notna(seq_len):
        return "bart_large", "zoo:bart_large", f"seq{int(seq_len)}", f"pre-training, {int(seq_len)}-token sequence"
    if model == "VAE-CF":
        return "vae_cf", "zoo:vae_cf", "20108", "MovieLens-20M user (20,108-item click vector)"
    if model == "NCF":
        return "ncf", "zoo:ncf_dle?users=138493&items=26744", "2", "MovieLens-20M (user, item) pair"
    if model == "BERT" and pd.notna(seq_len):
        return "bert_large", "zoo:bert_large_pretrain", f"seq{int(seq_len)}", f"Wikipedia+BookCorpus, {int(seq_len)} tokens"
    if model == "BERT":
        return "bert_large", "zoo:bert_large_qa", "seq384", "SQuAD v1.1, 384-token sequence"
    return model, f"zoo:{model}", "", "not covered"


def _convert(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    wl = [_workload(m, s, f) for m, s, f in zip(raw["model"], raw["seq_len"], raw["framework"])]
    per_sample = [TACO_FRAMES if w[0] == "tacotron2" else None for w in wl]
    raw = raw.copy()
    millions = (raw["model"] == "NCF") & (raw["framework"] == "PyTorch") & (raw["throughput_per_gpu"] < NCF_MILLIONS_BELOW)
    raw.loc[millions, "throughput_per_gpu"] *= 1e6
    conv = [samples_per_s(t, u, n) for t, u, n in zip(raw["throughput_per_gpu"], raw["throughput_unit"], per_sample)]
    df = pd.DataFrame({
        "run_id": raw["readme"] + ":" + raw["readme_line"].astype(str) + "/" + raw["model"] + "/" + raw["gpu"] + "/x"
                  + raw["n_gpus"].astype(str) + "/" + raw["precision_raw"] + "/b" + raw["batch_size"].map("{:g}".format)
                  + "/s" + raw["seq_len"].map("{:g}".format),
        "gpu_logged": raw["gpu"], "gpu": raw["gpu"].map(GPU_NAMES).fillna(raw["gpu"]),
        "architecture": [w[0] for w in wl], "model": [w[1] for w in wl], "input_shape": [w[2] for w in wl],
        "batch_size": raw["batch_size"], "n_gpus": raw["n_gpus"], "precision": raw["precision"].map(PRECISION),
        "precision_logged": raw["precision_raw"], "implementation": raw["framework"] + " (DeepLearningExamples)",
        "workload": [w[3] for w in wl], "samples_per_s_per_gpu": [c[0] for c in conv],
        "notes": "README " + raw["readme"] + " line " + raw["readme_line"].astype(str) + "; "
                 + raw["throughput_per_gpu"].map("{:.6g}".format) + " " + raw["throughput_unit"] + "/GPU",
    })
    reasons = pd.Series([c[1] for c in conv], index=raw.index, dtype="object")
    accumulated = (raw["model"] == "BERT") & (raw["batch_size"] >= 1024) & raw["table_extras"].fillna("").str.contains(
        "accumul")
    reasons[accumulated] = "batch is the gradient-accumulated per-GPU batch; micro-batch not logged"
    reasons[df["precision"].isna()] = "unknown precision label"
    reasons[~(df["batch_size"] > 0)] = "batch size not logged"
    dup = df.duplicated("run_id", keep="first")
    reasons[dup & (reasons == "")] = "duplicate of an earlier README row (same table, GPU, precision, batch)"
    return df, reasons


def load_with_exclusions(shared_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated time rows, rows kept out with ``reason``)."""
    return convert_file(Path(shared_dir) / FOLDER / "train_throughput.csv", NEEDED, _convert, SOURCE)


def load(shared_dir: Path) -> pd.DataFrame:
    """Validated time rows (see :func:`load_with_exclusions`)."""
    return load_with_exclusions(shared_dir)[0]
