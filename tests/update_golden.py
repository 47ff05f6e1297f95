"""Regenerate ``tests/golden/predictions.json``: fixed graphs x GPUs -> shipped-model predictions.

Run after an intentional change of the model, the featurizer or the hardware table:
``python tests/update_golden.py``; review the diff, commit it with the change that caused it.
``tests/test_model_golden.py`` compares against this file with a relative tolerance.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden") / "predictions.json"
GPUS = ("A100-SXM4-80GB", "V100-SXM2-32GB", "RTX-3090", "T4")
FIELDS = ("energy_j", "energy_per_epoch_j", "time_s", "avg_power_w", "interval_low_j", "interval_high_j",
          "interval_low_s", "interval_high_s", "t_layers_s")


def cases() -> list[dict]:
    import onnx

    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    return [
        {"graph": "models/examples/resnet18.onnx", "batch_size": 64, "samples_per_epoch": 50_000, "epochs": 10,
         "val_samples": 10_000, "precision": "fp32"},
        {"graph": "onnx-light:light_resnet50.onnx", "batch_size": 1, "samples_per_epoch": 1_281_167, "epochs": 1,
         "val_samples": 0, "precision": "fp32"},
        {"graph": "onnx-light:light_vgg19.onnx", "batch_size": 1, "samples_per_epoch": 10_000, "epochs": 2,
         "val_samples": 0, "precision": "fp16"},
    ], light


def resolve(graph: str, light: str) -> str:
    return os.path.join(light, graph.split(":", 1)[1]) if graph.startswith("onnx-light:") else str(REPO / graph)


def compute() -> list[dict]:
    from predictor import predict

    out = []
    specs, light = cases()
    for case in specs:
        for gpu in GPUS:
            args = {k: v for k, v in case.items() if k != "graph"}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = predict(resolve(case["graph"], light), gpu=gpu, **args)
            out.append({**case, "gpu": gpu, "energy_j": p.energy_j, "energy_per_epoch_j": p.energy_per_epoch_j,
                        "time_s": p.time_s, "avg_power_w": p.avg_power_w, "interval_low_j": p.interval_j[0],
                        "interval_high_j": p.interval_j[1], "interval_low_s": p.interval_s[0],
                        "interval_high_s": p.interval_s[1], "t_layers_s": p.features["t_layers_s"],
                        "model_version": p.model_version})
    return out


def main() -> int:
    sys.path.insert(0, str(REPO))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(compute(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
