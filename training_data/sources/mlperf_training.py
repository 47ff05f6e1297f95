"""mlperf_training (MLPerf Training v3.0-v5.0 results, single-node systems): logged throughput -> time rows.

Entry points: :func:`load` (``shared_dir / "mlperf_training" / "single_node_runs.csv"``), :func:`load_with_exclusions`.

* One row per result file (a run to the target quality) on 2-16 GPUs of one node: ``n_gpus`` kept, ``batch_size``
  per GPU, ``samples_per_s_per_gpu`` = the logged training throughput / GPUs (includes all-reduce overhead). Heavily
  tuned submitter code: learn it as its own source. Aborted runs and runs without a logged throughput are kept out.
* Precision is not logged (``precision_logged`` = "mixed (not logged)"): NVIDIA-derived code runs FP16/BF16 AMP, so
  ``precision = fp16`` (same tensor peak as bf16 on every GPU here); Llama-2-70B LoRA runs FP8 (NVIDIA's configs).
* Workloads (:data:`WORKLOADS`), one sample each as the benchmark counts it: ResNet-50 v1.5, 3D U-Net, RetinaNet,
  Mask R-CNN, RNN-T, DLRM-DCNv2, Stable Diffusion v2, R-GAT, Llama-2-70B LoRA, BERT-Large.
* Layout: ``grad_accum`` as logged; ``batch_size`` = the micro-batch (logged per-GPU batch / grad-accum). Every
  benchmark is data-parallel except DLRM-DCNv2 (``hybrid_embedding``: NVIDIA HugeCTR shards the large tables) and the
  70B LoRA, whose tensor/context-parallel layout comes from NVIDIA's configuration of the round
  (:data:`LORA_LAYOUTS`); LoRA rows that match none are kept out ("parallel layout unknown").
* BERT-Large: the throughput counts original sequences packed ~2 to a 512-token row; NVIDIA-derived rows are priced at
  the published packing statistics (:data:`BERT_TOKENS_PER_SEQUENCE`), other implementations are kept out.
* Whole-server power (195 runs) is not GPU power: it is left out of the energy columns (noted on the row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training_data.sources.throughput import convert_file, samples_per_s

SOURCE = "mlperf_training"
BERT_SEQUENCES_PER_PACK = 1.99895
BERT_TOKENS_PER_SEQUENCE = 254
FOLDER = "mlperf_training"
NEEDED = ("version", "submitter", "system", "benchmark", "model", "dataset", "framework", "gpu", "n_gpus", "precision",
          "batch_size", "global_batch_size", "grad_accum", "status", "samples_per_s_per_gpu", "throughput_unit",
          "node_avg_power_W", "result_file")
WORKLOADS: dict[str, tuple[str, str, str, str]] = {
    "resnet": ("resnet50_v15", "zoo:resnet50_v15", "3x224x224", "ImageNet-1k, 224x224 image"),
    "bert": ("bert_large", "zoo:bert_large_pretrain", f"seq{BERT_TOKENS_PER_SEQUENCE}",
             f"Wikipedia 2020, one original sequence of {BERT_TOKENS_PER_SEQUENCE} real tokens (packed "
             f"{BERT_SEQUENCES_PER_PACK} per 512-token row)"),
    "unet3d": ("unet3d", "zoo:unet3d_kits19", "1x128x128x128", "KiTS19, one 128^3 crop"),
    "ssd": ("retinanet_resnext50", "zoo:retinanet_resnext50", "3x800x800", "OpenImages subset, 800x800 image"),
    "retinanet": ("retinanet_resnext50", "zoo:retinanet_resnext50", "3x800x800", "OpenImages subset, 800x800 image"),
    "maskrcnn": ("maskrcnn_r50_fpn", "zoo:maskrcnn_r50_fpn", "3x800x1344",
                 "COCO2017 image, min side 800 / max 1333 padded to 800x1344; 512 box + 128 mask RoIs"),
    "rnnt": ("rnnt", "zoo:rnnt", "98443", "LibriSpeech utterance of the mean 12.3 s (205 encoder x 44 label steps; "
             "stated)"),
    "dlrm_dcnv2": ("dlrm_dcnv2", "zoo:dlrm_dcnv2", "227", "Criteo 1TB multi-hot click example (13 dense, 214 lookups)"),
    "stable_diffusion": ("stable_diffusion_v2_unet", "zoo:sd2_unet", "95233",
                         "LAION 512x512 image = one UNet step on its 4x64x64 latent + 77x1024 text states"),
    "llama2_70b_lora": ("llama2_70b_lora", "zoo:llama2_70b?lora_rank=16", "seq8192",
                        "GovReport, one packed 8,192-token sequence; LoRA r16 on QKV + O, frozen base"),
    "gnn": ("rgat", "zoo:rgat", "937984", "IGBH-Full seed node with a 15-10-5 sampled tree (916 nodes; stated)"),
    "rgat": ("rgat", "zoo:rgat", "937984", "IGBH-Full seed node with a 15-10-5 sampled tree (916 nodes; stated)"),
}
FROZEN = {"llama2_70b_lora": "base"}
"""Parameter-name prefixes a benchmark does not train beyond its zoo entry's own (``frozen_prefix``: Mask R-CNN's stem
+ res2): the LoRA base model."""
LORA_LAYOUTS: dict[tuple[str, str, int, int], tuple[int, int, int]] = {
    ("v4.0", "H100-SXM5-80GB", 8, 4): (4, 1, 1), ("v4.0", "H200-SXM-141GB", 8, 2): (2, 1, 1),
    ("v4.1", "H100-SXM5-80GB", 8, 4): (4, 1, 1), ("v4.1", "H200-SXM-141GB", 8, 2): (1, 1, 2),
    ("v4.1", "B200", 8, 2): (1, 1, 2), ("v5.0", "B200", 8, 1): (1, 1, 1),
}
"""(round, GPU, GPUs, logged grad-accum) -> (tensor, pipeline, context) parallel degrees of NVIDIA's Llama-2-70B LoRA
configuration of that round (ZOO_REFERENCES.md section 6: ``config_DGX<gpu>_1x8x<minibs>xtp<T>pp<P>cp<C>.sh``, micro-batch
1, FP8); a row matches only when data-parallel x grad-accum x 1 = its logged global batch. Other rows cannot fit one
GPU (69 B parameters) and their layout is not logged: kept out."""
LORA_UNKNOWN = "parallel layout unknown"
"""BERT_SEQUENCES_PER_PACK / BERT_TOKENS_PER_SEQUENCE: NVIDIA's packing statistics (ZOO_REFERENCES.md section 7, the packed_data README every NVIDIA-derived submission
ships): 156,726,829 sequences in 78,404,631 packs of 512 (1.99895 per pack), 2.67e8 padding tokens -> 3.99e10 real
tokens = 254.4 per sequence. A logged sample is one sequence: priced as a sequence of 254 tokens (linear layers see
the real tokens of the pack; attention stays within a sequence)."""
BERT_PACKING_UNDOCUMENTED = ("packing of this implementation not documented: average sequences per 512-token row "
                             "and tokens per sequence missing (NVIDIA's statistics cover NVIDIA-derived code only)")
GPU_NAMES = {
    "NVIDIA H100-SXM5-80GB": "H100-SXM5-80GB", "NVIDIA H100-SXM-80GB": "H100-SXM5-80GB",
    "NVIDIA H100 80GB HBM3": "H100-SXM5-80GB", "NVIDIA H100-PCIe-80GB": "H100-PCIE-80GB",
    "NVIDIA H100-PCIe": "H100-PCIE-80GB", "H100 NVL Tensor Core GPU (PCIe)": "H100-NVL-94GB",
    "NVIDIA H200-SXM5-141GB": "H200-SXM-141GB", "NVIDIA H200-NVL-141GB": "H200-NVL-141GB",
    "NVIDIA Blackwell GPU (B200-SXM-180GB)": "B200", "NVIDIA A100-PCIe-80GB": "A100-PCIE-80GB",
    "NVIDIA A100-SXM-80GB CTS": "A100-SXM4-80GB", "NVIDIA A100-SXM-40GB": "A100-SXM4-40GB",
    "NVIDIA A100-SXM4-40GB": "A100-SXM4-40GB", "NVIDIA A30": "A30", "NVIDIA A30-PCIE-24GB": "A30",
    "NVIDIA L40": "L40", "NVIDIA L40S": "L40S", "NVIDIA L4": "L4", "NVIDIA RTX A5000": "RTX-A5000",
    "NVIDIA GeForce RTX 4090": "RTX-4090", "NVIDIA A10G": "A10G", "AMD Instinct MI300X 192GB HBM3": "MI300X",
}
GPU_EXCLUDED = {"Habana Gaudi2": "Gaudi2 is not a GPU in the GPU table", "Intel Gaudi2": "Gaudi2 is not a GPU in the "
                "GPU table", "Intel(R) Gaudi(R) 2 AI Accelerator": "Gaudi2 is not a GPU in the GPU table",
                "NVIDIA Blackwell GPU (GB200)": "GB200 (1,200 W Blackwell in a Grace node) is not in the GPU table",
                "AMD Instinct MI325X 256GB HBM3e": "MI325X is not in the GPU table",
                "AMD Instinct MI325X 256GB HBM3E DLC": "MI325X is not in the GPU table",
                "AMD Radeon RX 7900 XTX": "RX 7900 XTX: consumer AMD card, no tensor peak in the GPU table"}


def _layout(raw: pd.DataFrame, gpu: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """Layout columns and micro-batch per row, and a reason for LoRA rows whose layout is not known."""
    ga = raw["grad_accum"].fillna(1).astype(int)
    out = pd.DataFrame({"grad_accum": ga, "tensor_parallel": 1, "pipeline_parallel": 1, "context_parallel": 1,
                        "parallelism": np.where(raw["benchmark"] == "dlrm_dcnv2", "hybrid_embedding", "")},
                       index=raw.index)
    out["batch_size"] = raw["batch_size"] / ga
    reasons = pd.Series("", index=raw.index, dtype="object")
    for i in np.flatnonzero((raw["benchmark"] == "llama2_70b_lora").to_numpy()):
        r = raw.iloc[i]
        key = (r["version"], gpu.iloc[i], int(r["n_gpus"]), int(ga.iloc[i]))
        tp, pp, cp = LORA_LAYOUTS.get(key, (0, 0, 0))
        if not tp or (r["n_gpus"] // (tp * pp * cp)) * ga.iloc[i] != r["global_batch_size"]:
            reasons.iloc[i] = (f"{LORA_UNKNOWN}: a 69 B-parameter model on {int(r['n_gpus'])} GPUs, grad-accum "
                               f"{int(ga.iloc[i])}; no documented configuration for {key[0]} {key[1]}")
            continue
        out.iloc[i, out.columns.get_indexer(["tensor_parallel", "pipeline_parallel", "context_parallel"])] = (tp, pp, cp)
        out.iloc[i, out.columns.get_loc("batch_size")] = 1  # micro-batch 1 per model replica
    return out, reasons


def _bert_undocumented(raw: pd.DataFrame) -> pd.Series:
    """BERT rows not run by NVIDIA's (packed) implementation: non-NVIDIA GPUs, tinygrad, TensorFlow."""
    framework = raw["framework"].fillna("").str.lower()
    return (raw["benchmark"] == "bert") & (~raw["gpu"].str.contains("NVIDIA") | framework.str.contains(
        "tinygrad|tensorflow"))


def _convert(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    wl = raw["benchmark"].map(WORKLOADS)
    get = lambda i: wl.map(lambda w: w[i] if isinstance(w, tuple) else "")  # noqa: E731
    conv = [samples_per_s(t, u) for t, u in zip(raw["samples_per_s_per_gpu"], raw["throughput_unit"])]
    power = raw["node_avg_power_W"]
    gpu = raw["gpu"].map(GPU_NAMES).fillna(raw["gpu"])
    layout, reasons_layout = _layout(raw, gpu)
    lora = raw["benchmark"] == "llama2_70b_lora"
    df = pd.DataFrame({
        "run_id": raw["version"] + "/" + raw["result_file"], "gpu_logged": raw["gpu"], "gpu": gpu,
        "architecture": get(0).replace("", "unknown"), "model": get(1), "input_shape": get(2),
        "batch_size": layout["batch_size"], "n_gpus": raw["n_gpus"], "precision": np.where(lora, "fp8", "fp16"),
        "precision_logged": raw["precision"], "implementation": raw["submitter"] + " " + raw["version"] + " ("
                                                                + raw["framework"].fillna("?") + ")",
        "workload": raw["dataset"] + "; sample = " + get(3), "samples_per_s_per_gpu": [c[0] for c in conv],
        "notes": "system " + raw["system"] + np.where(power.notna(), "; whole-server power " + power.map(
            "{:.0f}".format) + " W (not GPU power; not used)", ""),
        "frozen": raw["benchmark"].map(FROZEN).fillna(""),
        **{c: layout[c] for c in ("grad_accum", "tensor_parallel", "pipeline_parallel", "context_parallel",
                                  "parallelism")},
    })
    reasons = pd.Series([c[1] for c in conv], index=raw.index, dtype="object")
    reasons[wl.isna()] = "unknown benchmark"
    micro = layout["batch_size"]
    reasons[(micro != micro.round()) | ~(micro >= 1)] = "logged batch not a whole number of micro-batches"
    reasons[reasons_layout != ""] = reasons_layout[reasons_layout != ""]
    reasons[_bert_undocumented(raw)] = BERT_PACKING_UNDOCUMENTED
    gpu_bad = raw["gpu"].map(GPU_EXCLUDED)
    reasons[gpu_bad.notna()] = gpu_bad[gpu_bad.notna()]
    reasons[raw["status"] != "success"] = "run aborted"
    reasons[~(raw["batch_size"] > 0)] = "batch size not logged"
    return df, reasons


def load_with_exclusions(shared_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated time rows, rows kept out with ``reason``)."""
    return convert_file(Path(shared_dir) / FOLDER / "single_node_runs.csv", NEEDED, _convert, SOURCE)


def load(shared_dir: Path) -> pd.DataFrame:
    """Validated time rows (see :func:`load_with_exclusions`)."""
    return load_with_exclusions(shared_dir)[0]
