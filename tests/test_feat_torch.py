"""torch modules through featurize: same counts as the ONNX path and as fvcore (where it covers the ops)."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
nn = torch.nn

from featurize import featurize  # noqa: E402
from featurize.torch_export import export_module  # noqa: E402


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    module, x = SmallCNN(), torch.randn(2, 3, 32, 32)
    return module, x, export_module(module, x)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    module, x = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), torch.randn(2, 16, 64)
    return module, x, export_module(module, x)


def _fvcore_by_op(module, x):
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fa = FlopCountAnalysis(module.eval(), (x,))
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        return fa.by_operator()


def test_cnn_counts_match_hand_onnx_and_fvcore(cnn):
    module, x, proto = cnn
    f = featurize(proto, batch_size=2)
    # c1: 32*32*16 outputs x 27; c2: 16*16*32 outputs x (8*9); fc: 32*10
    assert f.macs_forward == 16384 * 27 + 8192 * 72 + 320
    assert f.params == sum(p.numel() for p in module.parameters())
    assert f.unsupported_ops == {}
    fv = _fvcore_by_op(module, x)  # fvcore "flops" are MACs for conv/linear
    assert f.macs_forward == pytest.approx((fv["conv"] + fv["linear"]) / 2)
    # exporting through featurize(module) is the same graph
    g = featurize(module, example_inputs=x, batch_size=2)
    assert g.macs_forward == f.macs_forward and g.flops_train == f.flops_train


def test_cnn_frozen_prefixes_match_torch_names(cnn):
    module, x, proto = cnn
    f = featurize(proto, batch_size=2, frozen=["c1.", "bn."])
    frozen = sum(p.numel() for n, p in module.named_parameters() if n.startswith(("c1.", "bn.")))
    assert f.trainable_params == f.params - frozen
    full = featurize(proto, batch_size=2)
    # c1 is upstream of every trainable weight now: its forward share drops out of backward entirely
    assert f.flops_backward < full.flops_backward


def test_transformer_encoder_layer(encoder):
    module, x, proto = encoder
    f = featurize(proto, batch_size=2)
    assert f.params == sum(p.numel() for p in module.parameters())
    assert f.unsupported_ops == {}
    seq, d, ff, heads = 16, 64, 128, 4
    linear = seq * (3 * d * d + d * d + 2 * d * ff)
    attention = 2 * heads * seq * seq * (d // heads)
    assert f.macs_forward == linear + attention
    assert f.frac_macs_attention == pytest.approx(attention / (linear + attention))
    fv = _fvcore_by_op(module, x)  # fvcore lacks scaled_dot_product_attention: compare the linears
    assert f.macs_forward * (1 - f.frac_macs_attention) == pytest.approx(fv["linear"] / 2)
    assert f.depth == 4  # in_proj -> out_proj -> linear1 -> linear2


def test_module_without_example_inputs_is_an_error():
    from featurize import InvalidInputError

    with pytest.raises(InvalidInputError, match="example_inputs"):
        featurize(SmallCNN())
