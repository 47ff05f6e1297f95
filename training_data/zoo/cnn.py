"""Our own PyTorch definitions of the CNNs in the data (no torchvision/timm). Layouts follow the Keras/torchvision
reference architectures; only shapes matter (graphs are exported without weights).

Entry points: :func:`vgg16`, :func:`resnet50`, :func:`mobilenet_v2`, :func:`inception_v3`, :func:`nasnet_mobile`,
:func:`shufflenet_v2_cifar`, and :class:`TransferHead` (Keras ``include_top=False`` + GAP + Dense head). Backbone
parameters live under the prefix ``backbone.`` so ``frozen=["backbone"]`` freezes exactly the pretrained part.
"""

from __future__ import annotations

import torch
from torch import nn


def _cbr(cin, cout, k, s=1, p=None, groups=1, act=nn.ReLU, bn=True):
    p = k // 2 if p is None else p
    layers = [nn.Conv2d(cin, cout, k, s, p, groups=groups, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout, eps=1e-3))
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class TransferHead(nn.Module):
    """``backbone`` (feature maps) + global average pooling + Dense layers (Keras transfer-learning head)."""

    def __init__(self, backbone: nn.Module, channels: int, hidden: tuple[int, ...] = (), classes: int = 1):
        super().__init__()
        self.backbone = backbone
        layers, c = [], channels
        for h in hidden:
            layers += [nn.Linear(c, h), nn.ReLU()]
            c = h
        layers.append(nn.Linear(c, classes))
        self.head = nn.Sequential(*layers)

    def forward(self, x):
        return self.head(self.backbone(x).mean(dim=(2, 3)))


# --- VGG16 ---------------------------------------------------------------------------------------------------------
def vgg16_features() -> tuple[nn.Module, int]:
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    return nn.Sequential(*layers), 512


def vgg16(classes: int = 1000) -> nn.Module:
    """VGG16 with the 4096-4096 classifier (224 px)."""
    feats, _ = vgg16_features()
    return nn.Sequential(feats, nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Linear(4096, 4096),
                         nn.ReLU(), nn.Linear(4096, classes))


# --- ResNet50 ------------------------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    def __init__(self, cin, mid, stride):
        super().__init__()
        cout = mid * 4
        # Keras ResNet50 (v1): the stride sits on the first 1x1 conv
        self.body = nn.Sequential(_cbr(cin, mid, 1, stride), _cbr(mid, mid, 3), _cbr(mid, cout, 1, act=None))
        self.short = _cbr(cin, cout, 1, stride, act=None) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


def resnet50_features() -> tuple[nn.Module, int]:
    layers, c = [_cbr(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, 1)], 64
    for mid, n, s in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(n):
            layers.append(Bottleneck(c, mid, s if i == 0 else 1))
            c = mid * 4
    return nn.Sequential(*layers), 2048


def resnet50(classes: int = 1000) -> nn.Module:
    """ResNet50 (Keras v1 strides) with a GAP + Dense(classes) head; ImageNet version for Zeus."""
    feats, c = resnet50_features()
    return TransferHead(feats, c, classes=classes)


# --- MobileNetV2 ---------------------------------------------------------------------------------------------------
def _make_div(v, d=8):
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


class InvRes(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hid = cin * expand
        layers = [_cbr(cin, hid, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [_cbr(hid, hid, 3, stride, groups=hid, act=nn.ReLU6), _cbr(hid, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


def mobilenet_v2_features(alpha: float = 0.5) -> tuple[nn.Module, int]:
    """Keras MobileNetV2 feature extractor; the last 1x1 conv keeps 1280 channels for alpha <= 1 (as Keras does)."""
    c = _make_div(32 * alpha)
    layers = [_cbr(3, c, 3, 2, act=nn.ReLU6)]
    for t, ch, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1)):
        out = _make_div(ch * alpha)
        for i in range(n):
            layers.append(InvRes(c, out, s if i == 0 else 1, t))
            c = out
    last = 1280 if alpha <= 1.0 else _make_div(1280 * alpha)
    layers.append(_cbr(c, last, 1, act=nn.ReLU6))
    return nn.Sequential(*layers), last


def mobilenet_v2(alpha: float = 0.5, classes: int = 1000) -> nn.Module:
    feats, c = mobilenet_v2_features(alpha)
    return TransferHead(feats, c, classes=classes)


# --- InceptionV3 (Keras layout: 'valid' stem and reductions) -------------------------------------------------------
def _c(cin, cout, k, s=1, p=0):
    return _cbr(cin, cout, k, s, p)


class _Cat(nn.Module):
    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], dim=1)


def _pool_branch(cin, cout):
    return nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), _c(cin, cout, 1))


def _inc_a(cin, pool):
    return _Cat(_c(cin, 64, 1), nn.Sequential(_c(cin, 48, 1), _c(48, 64, 5, p=2)),
                nn.Sequential(_c(cin, 64, 1), _c(64, 96, 3, p=1), _c(96, 96, 3, p=1)), _pool_branch(cin, pool))


def _inc_c(cin, c7):
    return _Cat(_c(cin, 192, 1),
                nn.Sequential(_c(cin, c7, 1), _c(c7, c7, (1, 7), p=(0, 3)), _c(c7, 192, (7, 1), p=(3, 0))),
                nn.Sequential(_c(cin, c7, 1), _c(c7, c7, (7, 1), p=(3, 0)), _c(c7, c7, (1, 7), p=(0, 3)),
                              _c(c7, c7, (7, 1), p=(3, 0)), _c(c7, 192, (1, 7), p=(0, 3))),
                _pool_branch(cin, 192))


class _IncE(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.b1 = _c(cin, 320, 1)
        self.b3 = _c(cin, 384, 1)
        self.b3a, self.b3b = _c(384, 384, (1, 3), p=(0, 1)), _c(384, 384, (3, 1), p=(1, 0))
        self.bd = nn.Sequential(_c(cin, 448, 1), _c(448, 384, 3, p=1))
        self.bda, self.bdb = _c(384, 384, (1, 3), p=(0, 1)), _c(384, 384, (3, 1), p=(1, 0))
        self.bp = _pool_branch(cin, 192)

    def forward(self, x):
        b3, bd = self.b3(x), self.bd(x)
        return torch.cat([self.b1(x), self.b3a(b3), self.b3b(b3), self.bda(bd), self.bdb(bd), self.bp(x)], dim=1)


def inception_v3_features() -> tuple[nn.Module, int]:
    """Keras InceptionV3 ``include_top=False`` (works from 75 px)."""
    stem = nn.Sequential(_c(3, 32, 3, 2), _c(32, 32, 3), _c(32, 64, 3, p=1), nn.MaxPool2d(3, 2), _c(64, 80, 1),
                         _c(80, 192, 3), nn.MaxPool2d(3, 2))
    red_b = _Cat(_c(288, 384, 3, 2), nn.Sequential(_c(288, 64, 1), _c(64, 96, 3, p=1), _c(96, 96, 3, 2)),
                 nn.MaxPool2d(3, 2))
    red_d = _Cat(nn.Sequential(_c(768, 192, 1), _c(192, 320, 3, 2)),
                 nn.Sequential(_c(768, 192, 1), _c(192, 192, (1, 7), p=(0, 3)), _c(192, 192, (7, 1), p=(3, 0)),
                               _c(192, 192, 3, 2)), nn.MaxPool2d(3, 2))
    body = nn.Sequential(stem, _inc_a(192, 32), _inc_a(256, 64), _inc_a(288, 64), red_b, _inc_c(768, 128),
                         _inc_c(768, 160), _inc_c(768, 160), _inc_c(768, 192), red_d, _IncE(1280), _IncE(2048))
    return body, 2048


# --- NASNet-A Mobile (documented approximation) --------------------------------------------------------------------
class _SepConv(nn.Module):
    """NASNet separable conv: (ReLU, depthwise kxk, pointwise 1x1, BN) twice."""

    def __init__(self, c, k, stride=1):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False),
                                  nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, eps=1e-3), nn.ReLU(),
                                  nn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False),
                                  nn.BatchNorm2d(c, eps=1e-3))

    def forward(self, x):
        return self.body(x)


class _NasCell(nn.Module):
    """NASNet-A normal (stride 1) or reduction (stride 2) cell on one input: 5 two-branch combinations, concat."""

    def __init__(self, cin, c, stride):
        super().__init__()
        self.pre = nn.Sequential(nn.ReLU(), nn.Conv2d(cin, c, 1, bias=False), nn.BatchNorm2d(c, eps=1e-3))
        ks = (5, 3, 5, 3, 3) if stride == 1 else (5, 7, 7, 5, 3)
        self.ops = nn.ModuleList(_SepConv(c, k, stride) for k in ks)
        self.pool = nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        self.stride = stride

    def forward(self, x):
        h = self.pre(x)
        p = self.pool(h)
        outs = [op(h) + p for op in self.ops[:2]] + [op(h) for op in self.ops[2:]]
        return torch.cat(outs + [p], dim=1)


def nasnet_mobile_features(penultimate: int = 1152) -> tuple[nn.Module, int]:
    """NASNet-A Mobile-like stack (stem + 2 reduction stems, 3 x 4 normal cells, 2 reductions, 44 x 6 = 264 ...
    1056 output channels). An approximation, not the exact searched cell wiring: cells take one input (NASNet cells
    take two) and use the NASNet-A op mix; the filter count is set so forward MACs match Keras NASNetMobile
    (0.569 GMACs at 224 px, seaa's 0.3716 GFLOPs at 128 px) -- see tests/test_data_zoo.py for the achieved error."""
    f = penultimate // 24  # NASNet-A 4 @ 1056 has 44; 48 here compensates the single-input cells' lower MACs
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 0, bias=False), nn.BatchNorm2d(32, eps=1e-3)]
    c = 32
    for i, mult in enumerate((1, 2, 4)):
        width = f * mult
        stride_cells = [2, 2] if i == 0 else [2]  # two stem reductions, then one reduction per stage
        for s in stride_cells:
            layers.append(_NasCell(c, width // (2 if i == 0 and s == stride_cells[0] else 1), s))
            c = layers[-1].ops[0].body[2].out_channels * 6
        for _ in range(4):
            layers.append(_NasCell(c, width, 1))
            c = width * 6
    layers.append(nn.ReLU())
    return nn.Sequential(*layers), c


# --- ShuffleNetV2 (CIFAR) ------------------------------------------------------------------------------------------
class _ShuffleBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride == 2:
            self.left = nn.Sequential(_cbr(cin, cin, 3, 2, groups=cin, act=None), _cbr(cin, half, 1))
            rin = cin
        else:
            self.left = None
            rin = half
        self.right = nn.Sequential(_cbr(rin, half, 1), _cbr(half, half, 3, stride, groups=half, act=None),
                                   _cbr(half, half, 1))

    def forward(self, x):
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.right(b)], dim=1)
        else:
            out = torch.cat([self.left(x), self.right(x)], dim=1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def shufflenet_v2_cifar(classes: int = 100, width: float = 1.0) -> nn.Module:
    """ShuffleNetV2 1.0x for 32 px CIFAR (3x3 stride-1 stem, no max-pool; Zeus' cifar100 workload)."""
    chans = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024)}[width]
    layers, c = [_cbr(3, 24, 3, 1)], 24
    for out, n in zip(chans[:3], (4, 8, 4)):
        for i in range(n):
            layers.append(_ShuffleBlock(c, out, 2 if i == 0 else 1))
            c = out
    layers.append(_cbr(c, chans[3], 1))
    return TransferHead(nn.Sequential(*layers), chans[3], classes=classes)
