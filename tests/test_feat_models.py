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


def test_fixed_batch_graph_scales_to_requested_batch():
    """light_resnet50 fixes batch 1: per-sample counts stay, working sets grow to the training batch."""
    one = featurize(LIGHT / "light_resnet50.onnx")
    many = featurize(LIGHT / "light_resnet50.onnx", batch_size=32)
    assert many.macs_forward == one.macs_forward
    assert many.flops_backward == one.flops_backward
    assert many.flops_optimizer == pytest.approx(one.flops_optimizer / 32)
    assert many.batch_size == 32 and many.input_shapes == {"gpu_0/data_0": [1, 3, 224, 224]}
    # the largest layer working set is activation-dominated: ~32x larger
    assert many.max_layer_working_set_bytes > 20 * one.max_layer_working_set_bytes
    assert many.bytes_moved_forward < one.bytes_moved_forward  # weights amortised over 32 samples


def test_with_nodes_false_keeps_every_feature():
    """Batch scoring skips the node table; the feature vector and cache features must not change."""
    gpu = {"l1_bytes": 256 * 2**10 * 108, "l2_bytes": 40 * 2**20}
    full = featurize(LIGHT / "light_resnet50.onnx", batch_size=16, gpu=gpu)
    lean = featurize(LIGHT / "light_resnet50.onnx", batch_size=16, gpu=gpu, with_nodes=False)
    assert lean.nodes is None and len(full.nodes) == 415
    assert lean.to_dict() == full.to_dict()
    assert lean.cache_features == full.cache_features
    assert lean.unsupported_ops == full.unsupported_ops and lean.input_shapes == full.input_shapes
