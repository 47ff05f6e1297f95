"""The warnings a forecast carries when it extrapolates beyond the model's training data (GPU generation, precision,
model size, batch)."""

from __future__ import annotations

from featurize.hardware.precision import precision_paths
from featurize.types import GPUSpec
from predictor.model.inference import calibrated_pairs
from predictor.model.loaded import LoadedModel


def extrapolation_warnings(model: LoadedModel, row: dict[str, float], *, gpu: GPUSpec, precision: str,
                           batch_size: int) -> list[str]:
    """Warnings for inputs outside the training ranges recorded in the manifest."""
    man = model.manifest
    ranges = man.get("feature_ranges", {})
    out: list[str] = []
    values = {"g_flops_train": row.get("flops_train", row.get("g_flops_train")),
              "g_params": row.get("params", row.get("g_params")), "batch_size": batch_size}
    for key, val in values.items():
        if key in ranges and val is not None and val > 0:
            lo, hi = ranges[key]
            if val < lo / 2 or val > hi * 2:
                out.append(f"extrapolation: {key.removeprefix('g_')}={val:.3g} is far outside the training range "
                           f"[{lo:.3g}, {hi:.3g}]; treat the prediction as physics-prior only.")
    years = ranges.get("launch_year")
    calibrated = (gpu.name, precision) in calibrated_pairs(model)
    if calibrated:
        out.append(f"{gpu.name} at {precision} is calibrated on your own measured runs (retrain).")
    if years and gpu.launch_year and not (years[0] <= gpu.launch_year <= years[1]) and not calibrated:
        out.append(f"extrapolation: GPU generation (launch year {gpu.launch_year}) outside the trained range "
                   f"{years[0]}-{years[1]}; no GPU of that generation was measured.")
    if precision not in man.get("precisions_seen", [precision]) and not calibrated:
        out.append(f"extrapolation: precision {precision} was not in the training data "
                   f"(seen: {', '.join(man.get('precisions_seen', []))}); relies on its peak FLOP/s only.")
    if gpu.name not in man.get("gpus_seen", [gpu.name]):
        out.append(f"GPU {gpu.name} was not measured in the training data; predicted from its specifications.")
    paths = precision_paths(gpu, precision, fallback=True)
    if precision == "fp32" and paths.conv != "fp32" and row.get("frac_macs_conv", 0.0) > 0:  # convolutions on TF32
        out.append(f"fp32 on {gpu.name} as PyTorch runs it by default: matmuls on the FP32 cores, convolutions on "
                   "TF32 tensor cores (cuDNN). With torch.backends.cuda.matmul.allow_tf32=True (NGC containers, "
                   "TensorFlow/JAX defaults) predict precision='tf32' instead.")
    if paths.note:
        out.append(paths.note)
    return out
