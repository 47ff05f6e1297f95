"""Pins the public API so it grows on purpose (names from ../shared/docs/API.md)."""

import featurize
import predictor


def test_featurize_all_is_pinned():
    assert set(featurize.__all__) >= {
        "featurize", "lookup_gpu", "GraphFeatures", "GPUSpec", "JoulecastError", "UnknownGPUError"
    }


def test_predictor_all_is_pinned():
    assert set(predictor.__all__) >= {
        "predict", "predict_many", "refine", "retrain", "Prediction", "JoulecastError"
    }


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
