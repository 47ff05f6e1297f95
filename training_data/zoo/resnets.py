"""ResNet v1.5 family as in NVIDIA DeepLearningExamples ``PyTorch/Classification/ConvNets`` (= torchvision layout).

Entry point: :func:`resnet_v15` ``(depth, groups, width_per_group, se, classes)``.

* ResNet-50 v1.5: the stride of a downsampling bottleneck sits on the 3x3 conv (v1 puts it on the first 1x1);
  reference: DLE ``resnet50v1.5`` README / torchvision ``resnet50`` (25,557,032 params, 4.09 GMACs at 224 px).
* ResNeXt-101 32x4d: 32 groups of width 4 per 64 planes (DLE ``resnext101-32x4d``; 44.18 M params).
* SE-ResNeXt-101 32x4d: ResNeXt + squeeze-and-excitation (reduction 16, 1x1 convs with bias) after the last conv of
  every bottleneck (DLE ``se-resnext101-32x4d``; 48.96 M params).
"""

from __future__ import annotations

import torch
from torch import nn

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _conv_bn(cin, cout, k, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, reduction: int = 16):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(c, c // reduction, 1), nn.ReLU(), nn.Conv2d(c // reduction, c, 1),
                                nn.Sigmoid())

    def forward(self, x):
        return x * self.fc(x.mean(dim=(2, 3), keepdim=True))


class BottleneckV15(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, groups: int, width_per_group: int, se: bool):
        super().__init__()
        width = planes * width_per_group // 64 * groups
        cout = planes * 4
        self.body = nn.Sequential(_conv_bn(cin, width, 1), _conv_bn(width, width, 3, stride, groups),
                                  _conv_bn(width, cout, 1, act=False), *([SqueezeExcite(cout)] if se else []))
        self.short = _conv_bn(cin, cout, 1, stride, act=False) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


def resnet_v15_features(depth: int = 50, groups: int = 1, width_per_group: int = 64, se: int = 0):
    layers, c = [_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)], 64
    for planes, n, s in zip((64, 128, 256, 512), DEPTHS[int(depth)], (1, 2, 2, 2)):
        for i in range(n):
            layers.append(BottleneckV15(c, planes, s if i == 0 else 1, int(groups), int(width_per_group), bool(se)))
            c = planes * 4
    return nn.Sequential(*layers), c


class Classifier(nn.Module):
    def __init__(self, features: nn.Module, channels: int, classes: int):
        super().__init__()
        self.features = features
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def resnet_v15(depth: int = 50, groups: int = 1, width_per_group: int = 64, se: int = 0,
               classes: int = 1000) -> nn.Module:
    feats, c = resnet_v15_features(depth, groups, width_per_group, se)
    return Classifier(feats, c, int(classes))
