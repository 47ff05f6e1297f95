"""torch modules through featurize: same counts as the ONNX path and as fvcore (where it covers the ops)."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
nn = torch.nn

from featurize import featurize  # noqa: E402
from featurize.graph.torch_export import export_module  # noqa: E402


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


class _ConvToTokens(nn.Module):
    """Conv features reshaped into tokens for an encoder: the dynamo exporter writes compound symbolic dims
    (``4*batch``, ``16*batch``) into the graph's value_info for the flattened batch x token axes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.enc = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.enc(y.reshape(y.shape[0], 16, 64)).mean()


def test_dynamic_batch_export_with_compound_dims(tmp_path):
    import io
    from contextlib import redirect_stdout

    import onnx

    torch.manual_seed(0)
    module, x = _ConvToTokens().eval(), torch.randn(2, 3, 8, 8)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (x,), dynamo=True, opset_version=18, dynamic_shapes={"x": {0: batch}},
                                    external_data=False)
    path = tmp_path / "dynamic.onnx"
    program.save(str(path))
    dims = {d.dim_param for vi in onnx.load(str(path)).graph.value_info for d in vi.type.tensor_type.shape.dim}
    assert any("*" in d for d in dims), dims  # the compound dims this test is about
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unknown shapes, no fallback
        counts = [featurize(str(path), batch_size=b, with_nodes=False).macs_forward for b in (1, 32)]
        static = featurize(module, example_inputs=x, with_nodes=False).macs_forward
    # conv 8*8*16*27 + encoder (4 linear projections + FFN on 16 tokens of 64 + attention 2 x 16 x 16 x 64)
    hand = 8 * 8 * 16 * 27 + 16 * (4 * 64 * 64 + 2 * 64 * 128) + 2 * 16 * 16 * 64
    assert counts[0] == counts[1] == static == hand
