"""EfficientNet B0-B7 and the DLE WideSE variant (Tan & Le 2019; NVIDIA DeepLearningExamples
``PyTorch/Classification/ConvNets/efficientnet``).

Entry point: :func:`efficientnet` ``(variant, widese, classes)``. MBConv blocks (expand 1x1, depthwise k x k, SE,
project 1x1; SiLU), B0 stage table below, width/depth multipliers per variant, filters rounded to multiples of 8,
repeats rounded up. SE width: 1/4 of the block's input channels (original) or of its expanded channels (WideSE: "the
width of the SE module is proportional to the width of the depthwise separable convolutions", DLE README).
Published: B0 5.29 M params / 0.39 GMACs at 224 px, B4 19.34 M / 4.49 GMACs at 380 px (DLE README, timm).
"""

from __future__ import annotations

import math

from torch import nn

STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
"""(expansion, kernel, stride, output channels, repeats) of EfficientNet-B0."""
SCALES = {0: (1.0, 1.0, 224), 1: (1.0, 1.1, 240), 2: (1.1, 1.2, 260), 3: (1.2, 1.4, 300), 4: (1.4, 1.8, 380),
          5: (1.6, 2.2, 456), 6: (1.8, 2.6, 528), 7: (2.0, 3.1, 600)}
"""variant -> (width, depth, resolution)."""


def _round(c: float, divisor: int = 8) -> int:
    out = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * c else out


def _cbs(cin, cout, k=1, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.SiLU()) if act else nn.Sequential(*layers)


class MBConv(nn.Module):
    def __init__(self, cin, cout, expand, k, stride, widese):
        super().__init__()
        mid = cin * expand
        se = max(1, int((mid if widese else cin) * 0.25))
        self.expand = _cbs(cin, mid) if expand != 1 else nn.Identity()
        self.dw = _cbs(mid, mid, k, stride, groups=mid)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, se, 1), nn.SiLU(), nn.Conv2d(se, mid, 1),
                                nn.Sigmoid())
        self.project = _cbs(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = self.dw(self.expand(x))
        h = self.project(h * self.se(h))
        return x + h if self.residual else h


def efficientnet(variant: int = 0, widese: int = 0, classes: int = 1000) -> nn.Module:
    width, depth, _ = SCALES[int(variant)]
    c = _round(32 * width)
    layers = [_cbs(3, c, 3, 2)]
    for expand, k, stride, cout, repeats in STAGES:
        cout = _round(cout * width)
        for i in range(int(math.ceil(repeats * depth))):
            layers.append(MBConv(c, cout, expand, k, stride if i == 0 else 1, bool(widese)))
            c = cout
    head = _round(1280 * width)
    layers += [_cbs(c, head), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(head, classes)]
    return nn.Sequential(*layers)
