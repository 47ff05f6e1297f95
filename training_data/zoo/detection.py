"""Single-shot detectors behind the throughput sources (graphs end at the head outputs; the loss is not exported).

Entry points:

* :func:`ssd300` -- NVIDIA DeepLearningExamples ``PyTorch/Detection/SSD`` (SSD300 v1.1): ResNet-50 v1.5 up to conv4_x
  with conv4_x's first stride set to 1 (38x38 map at 300 px), five extra blocks (1x1 conv 256/256/128/128/128 +
  3x3 conv to 512/512/256/256/256, stride 2 for the first three, BN + ReLU), 4/6/6/6/4/4 default boxes per cell,
  3x3 loc (4) and conf (81 COCO classes) heads on the six maps (38, 19, 10, 5, 3, 1).
* :func:`retinanet_resnext50` -- MLPerf Training ``single_stage_detector`` (SSD benchmark since v2.0 = RetinaNet):
  torchvision ``retinanet_resnet50_fpn`` layout on a ResNeXt-50 32x4d backbone, FPN P3-P7 (256 channels, P6/P7 by
  stride-2 3x3 convs from P5), shared heads of four 3x3 conv + ReLU then 9 x 264 class logits / 9 x 4 box deltas,
  800x800 input, 264 OpenImages-MLPerf classes.
"""

from __future__ import annotations

import torch
from torch import nn

from training_data.zoo.resnets import BottleneckV15, _conv_bn


def _stage(c, planes, n, stride, groups=1, width=64):
    blocks = []
    for i in range(n):
        blocks.append(BottleneckV15(c, planes, stride if i == 0 else 1, groups, width, False))
        c = planes * 4
    return nn.Sequential(*blocks), c


class SSD300(nn.Module):
    def __init__(self, classes: int = 81):
        super().__init__()
        l1, c = _stage(64, 64, 3, 1)
        l2, c = _stage(c, 128, 4, 2)
        l3, c = _stage(c, 256, 6, 1)
        self.backbone = nn.Sequential(_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1), l1, l2, l3)
        outs = [1024, 512, 512, 256, 256, 256]
        self.extra = nn.ModuleList()
        for i, (cin, cout, mid) in enumerate(zip(outs[:-1], outs[1:], (256, 256, 128, 128, 128))):
            s, p = (2, 1) if i < 3 else (1, 0)
            self.extra.append(nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                                            nn.Conv2d(mid, cout, 3, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU()))
        boxes = [4, 6, 6, 6, 4, 4]
        self.loc = nn.ModuleList(nn.Conv2d(c, b * 4, 3, padding=1) for c, b in zip(outs, boxes))
        self.conf = nn.ModuleList(nn.Conv2d(c, b * classes, 3, padding=1) for c, b in zip(outs, boxes))
        self.classes = classes

    def forward(self, x):
        maps = [self.backbone(x)]
        for block in self.extra:
            maps.append(block(maps[-1]))
        n = x.shape[0]
        locs = torch.cat([h(m).reshape(n, 4, -1) for h, m in zip(self.loc, maps)], dim=2)
        confs = torch.cat([h(m).reshape(n, self.classes, -1) for h, m in zip(self.conf, maps)], dim=2)
        return locs, confs


class _Head(nn.Module):
    def __init__(self, out_per_anchor: int, anchors: int = 9, c: int = 256):
        super().__init__()
        self.tower = nn.Sequential(*[m for _ in range(4) for m in (nn.Conv2d(c, c, 3, padding=1), nn.ReLU())])
        self.out = nn.Conv2d(c, anchors * out_per_anchor, 3, padding=1)
        self.k = out_per_anchor

    def forward(self, maps):
        n = maps[0].shape[0]
        return torch.cat([self.out(self.tower(m)).reshape(n, -1, self.k) for m in maps], dim=1)


class RetinaNet(nn.Module):
    def __init__(self, classes: int = 264, groups: int = 32, width: int = 4):
        super().__init__()
        l1, c1 = _stage(64, 64, 3, 1, groups, width)
        l2, c2 = _stage(c1, 128, 4, 2, groups, width)
        l3, c3 = _stage(c2, 256, 6, 2, groups, width)
        l4, c4 = _stage(c3, 512, 3, 2, groups, width)
        self.stem = nn.Sequential(_conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1), l1)
        self.c3, self.c4, self.c5 = l2, l3, l4
        self.lateral = nn.ModuleList(nn.Conv2d(c, 256, 1) for c in (c2, c3, c4))
        self.smooth = nn.ModuleList(nn.Conv2d(256, 256, 3, padding=1) for _ in range(3))
        self.p6, self.p7 = nn.Conv2d(256, 256, 3, 2, 1), nn.Conv2d(256, 256, 3, 2, 1)
        self.cls, self.box = _Head(classes), _Head(4)

    def forward(self, x):
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        t5 = self.lateral[2](c5)
        t4 = self.lateral[1](c4) + nn.functional.interpolate(t5, size=c4.shape[-2:], mode="nearest")
        t3 = self.lateral[0](c3) + nn.functional.interpolate(t4, size=c3.shape[-2:], mode="nearest")
        p3, p4, p5 = self.smooth[0](t3), self.smooth[1](t4), self.smooth[2](t5)
        p6 = self.p6(p5)
        p7 = self.p7(torch.relu(p6))
        maps = [p3, p4, p5, p6, p7]
        return self.cls(maps), self.box(maps)


def ssd300() -> nn.Module:
    return SSD300()


def retinanet_resnext50() -> nn.Module:
    return RetinaNet()
