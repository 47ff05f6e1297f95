"""The model's feature selections are drawn from the one catalogue physics.py computes, and the shipped model was
fitted on the selection the code ships (a changed selection without a refit fails here)."""

import json

from featurize.physics.prior import FEATURE_NAMES
from predictor.fit.boosters import MONOTONE
from predictor.model.loaded import MANIFEST, shipped_model_dir
from predictor.fit.stages import LOCAL_FEATURES, SHIPPED_FEATURES


def test_selected_features_come_from_the_physics_catalogue():
    assert set(SHIPPED_FEATURES) <= set(FEATURE_NAMES) and len(set(SHIPPED_FEATURES)) == len(SHIPPED_FEATURES)
    assert set(LOCAL_FEATURES) == set(FEATURE_NAMES)  # the seen-configuration stage sees every physics feature
    for target, constraints in MONOTONE.items():
        assert set(constraints) <= set(SHIPPED_FEATURES), target  # a constraint on an unused feature is lost
        assert set(constraints.values()) <= {-1, 1}, target


def test_shipped_manifest_lists_the_shipped_selection():
    manifest = json.loads((shipped_model_dir() / MANIFEST).read_text())
    assert manifest["features"] == list(SHIPPED_FEATURES)
    assert manifest["local"]["features"] == list(LOCAL_FEATURES)
