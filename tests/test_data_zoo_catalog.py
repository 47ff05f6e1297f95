"""Zoo entries behind the throughput sources: parameter counts and MACs against published figures and
torch.utils.flop_counter (built on the meta device: no weights, no graph executed), plus published shape facts."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from training_data.zoo import ZOO, get_zoo_model, parse_name, parse_shape


def _meta(name: str, shape: str | None = None):
    """(params, forward GMACs of one sample, output) of a zoo entry, built and run on the meta device."""
    base, kwargs = parse_name(name)
    entry = ZOO[base]
    dims = parse_shape(shape or entry.default_shape)
    with torch.device("meta"):
        module = entry.factory(**kwargs).eval()
        x = torch.zeros(1, *dims, dtype=torch.long if entry.input_kind in ("tokens", "ids") else torch.float32)
        with FlopCounterMode(display=False) as counter:
            out = module(x)
    return sum(p.numel() for p in module.parameters()), counter.get_total_flops() / 2e9, out


# (zoo name, shape, published params, published GMACs, MAC tolerance); torchvision / timm model cards
PUBLISHED = [
    ("resnet50_v15", "3x224x224", 25_557_032, 4.09, 0.01),  # torchvision resnet50 (v1.5)
    ("resnext101_32x4d", "3x224x224", 44_177_704, 8.01, 0.01),  # timm resnext101_32x4d
    ("se_resnext101_32x4d", "3x224x224", 48_955_416, 8.02, 0.01),  # timm seresnext101_32x4d
    ("efficientnet?variant=0&widese=0", "3x224x224", 5_288_548, 0.39, 0.02),  # torchvision efficientnet_b0
    ("efficientnet?variant=4&widese=0", "3x380x380", 19_341_616, 4.39, 0.01),  # torchvision efficientnet_b4
]


@pytest.mark.parametrize("name,shape,params,gmacs,tol", PUBLISHED)
def test_published_params_and_macs(name, shape, params, gmacs, tol):
    n, macs, _ = _meta(name, shape)
    assert n == params
    assert macs == pytest.approx(gmacs, rel=tol)


def test_bert_large_config_is_the_published_bert_large():
    from transformers import BertConfig, BertModel

    from training_data.zoo.seq import BERT_SIZES

    with torch.device("meta"):
        model = BertModel(BertConfig(**BERT_SIZES["large"]))
    assert sum(p.numel() for p in model.parameters()) == 335_141_888  # bert-large-uncased
    n_qa, macs_qa, _ = _meta("bert_large_qa", "seq384")
    assert n_qa == 335_141_888 - (1024 * 1024 + 1024) + 2 * 1024 + 2  # no pooler, a 2-logit span head
    # 24 layers x (12 d^2 per token + 2 x seq x d attention) at seq 384, d 1024
    assert macs_qa == pytest.approx(24 * (12 * 1024**2 * 384 + 2 * 384**2 * 1024) / 1e9, rel=0.01)


def test_detector_anchor_counts_are_the_published_ones():
    _, macs, (locs, confs) = _meta("ssd300", "3x300x300")
    assert locs.shape == (1, 4, 8732) and confs.shape == (1, 81, 8732)  # SSD300's 8,732 default boxes
    assert macs == pytest.approx(20.151, rel=1e-3)
    _, macs, (cls, box) = _meta("retinanet_resnext50", "3x800x800")
    assert cls.shape == (1, 9 * (100**2 + 50**2 + 25**2 + 13**2 + 7**2), 264) and box.shape[-1] == 4
    assert macs == pytest.approx(201.21, rel=1e-3)


def test_unet3d_waveglow_txl_shapes_and_counts():
    n, macs, out = _meta("unet3d_kits19", "1x128x128x128")
    assert out.shape == (1, 3, 128, 128, 128) and n == 31_191_043 and macs == pytest.approx(477.30, rel=1e-3)
    n, macs, out = _meta("waveglow", "10560")
    assert out.shape == (1, 8, 1000) and macs == pytest.approx(81.24, rel=1e-3)
    n, macs, out = _meta("transformer_xl_base", "seq192")
    assert out.shape == (1, 192, 19997 + 3) and n == 191_697_923
    # 16 layers x (qkv over memory+segment, r, o, FFN per token) + attention + tied head: FlopCounterMode's count
    assert macs == pytest.approx(17.468, rel=1e-3)


def test_ncf_dle_follows_the_dle_layer_sizes():
    n, _, out = _meta("ncf_dle?users=138493&items=26744", "2")
    emb = (138_493 + 26_744) * (64 + 128)
    mlp = 256 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64
    assert out.shape == (1, 1) and n == emb + mlp + (64 + 64) + 1


def test_every_catalog_entry_cites_a_reference():
    from training_data.zoo.catalog import ENTRIES

    assert all(len(e.note) > 20 for e in ENTRIES.values())
    module, x = get_zoo_model("ncf_dle?users=138493&items=26744")
    assert module(x).shape == (2, 1)


def test_hf_config_entries_match_published_sizes():
    n, macs, out = _meta("electra_base_qa", "seq384")
    # ELECTRA-Base discriminator = BERT-Base layout: bert-base-uncased 109,482,240 without its pooler, + a span head
    assert n == 109_482_240 - (768 * 768 + 768) + 2 * 768 + 2 and out.shape == (1, 384)
    assert macs == pytest.approx(12 * (12 * 768**2 * 384 + 2 * 384**2 * 768) / 1e9, rel=0.01)
    n, _, out = _meta("bart_large", "seq128")
    assert n == pytest.approx(406.29e6, rel=1e-3) and out.shape == (1, 128, 50265)  # facebook/bart-large, 406 M
    n, macs, out = _meta("vae_cf", "20108")
    assert n == 20108 * 600 + 600 + 600 * 400 + 400 + 200 * 600 + 600 + 600 * 20108 + 20108 and out.shape == (1, 20108)
    assert macs == pytest.approx((20108 * 600 * 2 + 600 * 400 + 200 * 600) / 1e9, rel=1e-3)


def _conv(cin: int, cout: int, k: int, dim: int, bias: bool = False) -> int:
    return cin * cout * k**dim + (cout if bias else 0)


@pytest.mark.parametrize("dim,patch,params", [(2, (192, 160), 20_613_092), (3, (128, 128, 128), 31_192_868)])
def test_nnunet_is_the_dle_dynunet(dim, patch, params):
    """DLE nnU-Net (MONAI DynUNet) for Task01: 6 levels, filters 32-320 (3D) / 32-512 (2D), two 3x3(x3) conv + affine
    InstanceNorm per level, biased ConvTranspose(2) up, biased 1x1 head; the closed form of its layers."""
    from training_data.zoo.medical import nnunet_plan

    kernels, strides = nnunet_plan(patch)
    assert strides == [[1] * dim] + [[2] * dim] * 5  # 128 -> 4 (3D), 192x160 -> 6x5 (2D): halve while >= 8
    assert kernels == [[3] * dim] * 6
    filters = [min(2 ** (5 + i), 320 if dim == 3 else 512) for i in range(6)]
    total = 0
    for cin, cout in zip([4, *filters[:-1]], filters):  # encoder + bottleneck
        total += _conv(cin, cout, 3, dim) + _conv(cout, cout, 3, dim) + 4 * cout
    for cin, cout in zip(filters[:0:-1], filters[-2::-1]):  # decoder
        total += _conv(cin, cout, 2, dim, bias=True) + _conv(2 * cout, cout, 3, dim) + _conv(cout, cout, 3, dim) \
            + 4 * cout
    total += _conv(32, 4, 1, dim, bias=True)
    n, macs, out = _meta(f"nnunet_{dim}d")
    assert n == total == params and out.shape == (1, 4, *patch)
    # MACs in closed form: every conv at its level's resolution, ConvTranspose(k = stride) = cin x cout per output voxel
    voxels = [math.prod(s // 2**i for s in patch) for i in range(6)]
    enc = sum(v * (_conv(cin, cout, 3, dim) + _conv(cout, cout, 3, dim))
              for v, cin, cout in zip(voxels, [4, *filters[:-1]], filters))
    dec = sum(voxels[i] * (filters[i + 1] * filters[i] + _conv(2 * filters[i], filters[i], 3, dim)
                           + _conv(filters[i], filters[i], 3, dim)) for i in range(5))
    assert macs * 1e9 == pytest.approx(enc + dec + voxels[0] * 32 * 4, rel=1e-9)


def test_wide_and_deep_is_the_dle_outbrain_model():
    from training_data.zoo.recsys import WD_FEATURES

    n, macs, out = _meta("wide_and_deep")
    deep_in = sum(d for _, _, d in WD_FEATURES) + 13
    assert deep_in == 1248 and sum(r for _, r, _ in WD_FEATURES) == 682_754
    mlp = deep_in * 1024 + 1024 + 4 * (1024 * 1024 + 1024) + 1024 + 1
    assert n == sum(r * d for _, r, d in WD_FEATURES) + 682_754 + mlp + 13 + 1 == 91_777_245
    assert out.shape == (1, 1) and macs * 1e9 == pytest.approx(deep_in * 1024 + 4 * 1024**2 + 1024, rel=0.001)
