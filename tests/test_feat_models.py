"""Real architectures shipped in the onnx wheel: MACs / params against published figures."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from featurize import featurize

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"

# (file, published GMACs at 224x224, published params in millions or None)
PUBLISHED = [
    ("light_resnet50.onnx", 4.09, 25.56),
    ("light_vgg19.onnx", 19.6, 143.67),
    ("light_densenet121.onnx", 2.87, None),  # caffe DenseNet adds Scale layers: params differ from torch's 7.98 M
    ("light_inception_v1.onnx", 1.43, 7.0),  # caffe GoogLeNet (no aux heads): 1.43 GMACs, 7.0 M params
    ("light_bvlc_alexnet.onnx", 0.655, 61.0),  # grouped conv2/4/5 as in the caffe model
    ("light_squeezenet.onnx", 0.35, 1.24),
]


@pytest.mark.parametrize("fname,gmacs,mparams", PUBLISHED)
def test_light_models_match_published(fname, gmacs, mparams):
    feats = featurize(LIGHT / fname)
    assert feats.macs_forward / 1e9 == pytest.approx(gmacs, rel=0.03)
    if mparams is not None:
        assert feats.params / 1e6 == pytest.approx(mparams, rel=0.01)
    assert feats.unsupported_ops == {}
    assert feats.flops_forward >= 2 * feats.macs_forward


def test_resnet50_structure():
    feats = featurize(LIGHT / "light_resnet50.onnx")
    assert feats.depth == 50  # 49 convs on the longest path + the classifier
    assert feats.params == 25_557_032
    assert feats.frac_macs_conv > 0.99
    assert len(feats.nodes) == 415
    assert feats.nodes["macs"].sum() == pytest.approx(feats.macs_forward)
