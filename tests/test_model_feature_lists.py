"""The model's feature selections are drawn from the one catalogue physics.py computes."""

from featurize.physics import FEATURE_NAMES
from predictor.training import DEFAULT_FEATURES, MONOTONE, SHIPPED_FEATURES


def test_selected_features_come_from_the_physics_catalogue():
    assert set(DEFAULT_FEATURES) <= set(FEATURE_NAMES)
    assert set(SHIPPED_FEATURES) <= set(FEATURE_NAMES)
    for constraints in MONOTONE.values():
        assert set(constraints) <= set(FEATURE_NAMES)
