"""mlperf_training (MLPerf Training v3.0-v5.0 results, single-node systems): logged throughput -> time rows.

Entry points: :func:`load` (``shared_dir / "mlperf_training" / "single_node_runs.csv"``), :func:`load_with_exclusions`.

* One row per result file (a run to the target quality) on 2-16 GPUs of one node: ``n_gpus`` kept, ``batch_size``
  per GPU, ``samples_per_s_per_gpu`` = the logged training throughput / GPUs (includes all-reduce overhead). Heavily
  tuned submitter code: learn it as its own source. Aborted runs and runs without a logged throughput are kept out.
* Precision is not logged (``precision_logged`` = "mixed (not logged)"): NVIDIA-derived code runs FP16/BF16 AMP, so
  ``precision = fp16`` (same tensor peak as bf16 on every GPU here); the LLM benchmarks (FP8) have no zoo graph.
* Workloads (:data:`WORKLOADS`): ResNet-50 v1.5 (ImageNet 224 px), 3D U-Net (KiTS19, one 128^3 crop per sample),
  SSD-RetinaNet ResNeXt-50 (800 px) and the rest.
* BERT-Large pre-training is kept out (:data:`PACKED_BERT`): its throughput counts original sequences packed several
  to a 512-token row, and the tokens per sample are not logged.
* Whole-server power (195 runs) is not GPU power: it is left out of the energy columns (noted on the row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training_data.sources.throughput import convert_file, samples_per_s

SOURCE = "mlperf_training"
FOLDER = "mlperf_training"
NEEDED = ("version", "submitter", "system", "benchmark", "model", "dataset", "framework", "gpu", "n_gpus", "precision",
          "batch_size", "status", "samples_per_s_per_gpu", "throughput_unit", "node_avg_power_W", "result_file")
WORKLOADS: dict[str, tuple[str, str, str, str]] = {
    "resnet": ("resnet50_v15", "zoo:resnet50_v15", "3x224x224", "ImageNet-1k, 224x224 image"),
    "bert": ("bert_large", "zoo:bert_large_pretrain", "seq512", "Wikipedia 2020, packed 512-token sequence"),
    "unet3d": ("unet3d", "zoo:unet3d_kits19", "1x128x128x128", "KiTS19, one 128^3 crop"),
    "ssd": ("retinanet_resnext50", "zoo:retinanet_resnext50", "3x800x800", "OpenImages subset, 800x800 image"),
    "retinanet": ("retinanet_resnext50", "zoo:retinanet_resnext50", "3x800x800", "OpenImages subset, 800x800 image"),
    "maskrcnn": ("maskrcnn_r50_fpn", "zoo:maskrcnn_r50_fpn", "", "COCO2017 image"),
    "rnnt": ("rnnt", "zoo:rnnt", "", "LibriSpeech utterance"),
    "dlrm_dcnv2": ("dlrm_dcnv2", "zoo:dlrm_dcnv2", "", "Criteo 4TB multi-hot example"),
    "stable_diffusion": ("stable_diffusion_v2_unet", "zoo:sd2_unet", "", "LAION 512x512 image"),
    "llama2_70b_lora": ("llama2_70b", "zoo:llama2_70b", "seq8192", "GovReport 8,192-token sequence"),
    "gnn": ("rgat", "zoo:rgat", "", "IGBH node"),
    "rgat": ("rgat", "zoo:rgat", "", "IGBH node"),
}
PACKED_BERT = ("packed sequences: a logged sample is one original sequence and several share a 512-token row; tokens "
               "per sample are not logged (1,030 seq/s per H100 at 512 tokens would exceed its FP16 peak)")
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


def _convert(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    wl = raw["benchmark"].map(WORKLOADS)
    get = lambda i: wl.map(lambda w: w[i] if isinstance(w, tuple) else "")  # noqa: E731
    conv = [samples_per_s(t, u) for t, u in zip(raw["samples_per_s_per_gpu"], raw["throughput_unit"])]
    power = raw["node_avg_power_W"]
    df = pd.DataFrame({
        "run_id": raw["version"] + "/" + raw["result_file"], "gpu_logged": raw["gpu"], "gpu": raw["gpu"].map(GPU_NAMES).fillna(raw["gpu"]),
        "architecture": get(0).replace("", "unknown"), "model": get(1), "input_shape": get(2),
        "batch_size": raw["batch_size"], "n_gpus": raw["n_gpus"], "precision": "fp16",
        "precision_logged": raw["precision"], "implementation": raw["submitter"] + " " + raw["version"] + " ("
                                                                + raw["framework"].fillna("?") + ")",
        "workload": raw["dataset"] + "; sample = " + get(3), "samples_per_s_per_gpu": [c[0] for c in conv],
        "notes": "system " + raw["system"] + np.where(power.notna(), "; whole-server power " + power.map(
            "{:.0f}".format) + " W (not GPU power; not used)", ""),
    })
    reasons = pd.Series([c[1] for c in conv], index=raw.index, dtype="object")
    reasons[wl.isna()] = "unknown benchmark"
    reasons[raw["benchmark"] == "bert"] = PACKED_BERT
    gpu_bad = raw["gpu"].map(GPU_EXCLUDED)
    reasons[gpu_bad.notna()] = gpu_bad[gpu_bad.notna()]
    reasons[raw["status"] != "success"] = "run aborted"
    reasons[~(df["batch_size"] > 0)] = "batch size not logged"
    return df, reasons


def load_with_exclusions(shared_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated time rows, rows kept out with ``reason``)."""
    return convert_file(Path(shared_dir) / FOLDER / "single_node_runs.csv", NEEDED, _convert, SOURCE)


def load(shared_dir: Path) -> pd.DataFrame:
    """Validated time rows (see :func:`load_with_exclusions`)."""
    return load_with_exclusions(shared_dir)[0]
