"""Prediction latency: import + first prediction (fresh interpreter) and further predictions.

Run: ``python bench/predict_speed.py [--model-dir DIR]``. Goals (issue 5): import + first prediction <= 2 s;
each further prediction for a ResNet-50-sized graph <= 50 ms. Prints:

* cold: a fresh ``python -c`` doing ``from predictor import predict; predict(resnet18.onnx, gpu="A100")``;
* warm, new graph arguments (featurize runs: batch size changes every call) for ResNet-50 (onnx wheel);
* warm, repeated arguments (featurize cache hit; model cached) — what a UI re-query costs;
* ``predict_frame`` for 1,000 rows at once (the vectorised path ``predict_many`` uses).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def resnet50_path() -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light/light_resnet50.onnx")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=None)
    args = ap.parse_args(argv)
    md = repr(args.model_dir)
    code = ("import time; t=time.perf_counter(); from predictor import predict; "
            f"p=predict({str(REPO / 'models/examples/resnet18.onnx')!r}, gpu='A100', model_dir={md}); "
            "print(time.perf_counter()-t)")
    cold = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, cwd=REPO,
                             check=True)
        cold.append(float(out.stdout.strip().splitlines()[-1]))
    print(f"cold import + first prediction (ResNet-18): min {min(cold):.2f} s, max {max(cold):.2f} s  (goal <= 2 s)")

    warnings.simplefilter("ignore")
    from predictor import predict
    from predictor.model.inference import predict_frame
    from predictor.model.loaded import load_model

    r50 = resnet50_path()
    predict(r50, gpu="V100", batch_size=16, model_dir=args.model_dir)
    times = []
    for bs in range(17, 47):
        t = time.perf_counter()
        predict(r50, gpu="V100", batch_size=bs, samples_per_epoch=1_281_167, epochs=90, model_dir=args.model_dir)
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"warm, featurize each call (ResNet-50, 30 batch sizes): median {1e3 * times[len(times) // 2]:.1f} ms, "
          f"max {1e3 * times[-1]:.1f} ms  (goal <= 50 ms)")
    times = []
    for _ in range(50):
        t = time.perf_counter()
        predict(r50, gpu="V100", batch_size=32, samples_per_epoch=1_281_167, epochs=90, model_dir=args.model_dir)
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"warm, repeated arguments (features cached): median {1e3 * times[len(times) // 2]:.2f} ms")
    from featurize import featurize, lookup_gpu

    row = featurize(r50, batch_size=32).to_dict()
    rows = pd.DataFrame([row] * 1000)
    spec = lookup_gpu("V100")
    m = load_model(args.model_dir)
    t = time.perf_counter()
    predict_frame(rows, spec, batch_size=32, samples_per_epoch=1000, model=m)
    print(f"predict_frame, 1,000 rows: {1e3 * (time.perf_counter() - t):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
