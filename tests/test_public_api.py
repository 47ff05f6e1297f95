"""Pins the public API so it grows on purpose (names from ../shared/docs/API.md)."""

import subprocess
import sys

import featurize
import predictor
from conftest import REPO_ROOT


def test_featurize_all_is_pinned():
    assert featurize.__all__ == [
        "featurize", "lookup_gpu", "GraphFeatures", "GPUSpec", "JoulecastError", "UnknownGPUError",
        "GraphLoadError", "InvalidInputError", "UnboundDimensionError", "UnsupportedOpError",
        "UnsupportedPrecisionError", "SchemaError", "ModelArtifactError", "MissingExtraError", "NoGPUError",
    ]


def test_predictor_all_is_pinned():
    assert predictor.__all__ == [
        "predict", "predict_many", "advise", "refine", "retrain", "Prediction", "JoulecastError", "ModelArtifactError",
        "SchemaError", "NoGPUError",
    ]


def test_every_name_in_all_resolves():
    for mod in (featurize, predictor):
        for name in mod.__all__:
            assert getattr(mod, name) is not None, (mod.__name__, name)


def _fresh(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_public_functions_are_functions_in_a_fresh_interpreter():
    # API.md's exact import line, before and after the submodules of the same name are imported
    code = (
        "import types\n"
        "from predictor import predict, predict_many, refine, retrain, Prediction, JoulecastError\n"
        "assert isinstance(refine, types.FunctionType) and isinstance(retrain, types.FunctionType)\n"
        "import predictor.refine, predictor.retrain\n"
        "from predictor.refine import segment_epochs\n"
        "from predictor import refine as r2, retrain as t2\n"
        "import predictor\n"
        "assert r2 is refine and t2 is retrain and predictor.refine is refine and predictor.retrain is retrain\n"
        "print(refine.__module__, retrain.__module__, segment_epochs.__module__)\n"
    )
    assert _fresh(code) == "predictor.refine predictor.retrain predictor.refine"


def test_refine_is_a_function_after_predict_ran():
    code = (
        "from predictor import predict\n"
        "p = predict('models/examples/resnet18.onnx', gpu='A100', batch_size=64, samples_per_epoch=50000, epochs=10)\n"
        "from predictor import refine\n"
        "e = p.energy_per_epoch_j\n"
        "print(type(refine(p, epoch_energies_j=[e, e, e], total_epochs=10)).__name__)\n"
    )
    assert _fresh(code) == "Prediction"


def test_error_is_shared_between_layers():
    assert predictor.JoulecastError is featurize.JoulecastError
    assert issubclass(featurize.UnknownGPUError, KeyError)
    assert issubclass(featurize.UnknownGPUError, featurize.JoulecastError)


def test_prediction_round_trips_through_dict():
    p = predictor.Prediction(
        energy_j=7.2e6, energy_per_epoch_j=7.2e5, energy_per_sample_j=14.4, time_s=3600.0,
        time_per_epoch_s=360.0, avg_power_w=2000.0, interval_j=(5e6, 9e6), gpu="A100-SXM4-80GB",
        warnings=["x"], epochs=10,
    )
    d = p.to_dict()
    assert d["energy_kwh"] == 2.0
    assert predictor.Prediction.from_dict(d) == p
