"""Mask R-CNN ResNet-50-FPN as trained by MLPerf (maskrcnn-benchmark ``e2e_mask_rcnn_R_50_FPN_1x``) and NVIDIA
DeepLearningExamples ``PyTorch/Segmentation/MaskRCNN`` (the same configuration).

Entry point: :func:`maskrcnn_r50_fpn`. Reference: ``../shared/docs/ZOO_REFERENCES.md`` section 2. ResNet-50 (stride in
the 1x1, FrozenBatchNorm: buffers, no parameters), FPN of 256 channels (P2-P5, P6 = max-pool of P5), RPN (3x3 conv +
3 anchors per location), box head (RoIAlign 7x7 -> 2 x FC 1024 -> 81 classes + 324 box deltas) on 512 sampled RoIs per
image, mask head (RoIAlign 14x14 -> 4 x conv3x3 256 -> deconv 2x2 -> 81 masks of 28x28) on the positive RoIs, capped at
512 x 0.25 = 128 per image (the cap is taken: the mean number of positives is not logged). 44,347,573 parameters
(computed in ZOO_REFERENCES; torchvision's 91-class model: 44,401,393). The stem and res2 are frozen
(``FREEZE_CONV_BODY_AT=2``): :data:`FROZEN`.

Training input: min side 800, max side 1333, padded to a multiple of 32: the graph takes one 3x800x1344 image (the
padded batch shape of landscape images; stated). RoIAlign samples are modelled as gathers from P2 at fixed positions
(bilinear sampling costs next to nothing; level assignment does not change the heads' MACs); proposal NMS, target
matching and the losses are not in the graph.
"""

from __future__ import annotations

import torch
from torch import nn

from training_data.zoo.resnets import DEPTHS

BOX_ROIS, MASK_ROIS = 512, 128
FROZEN = "backbone.stem;backbone.layer1"


class FrozenBN(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.register_buffer("scale", torch.ones(1, c, 1, 1))
        self.register_buffer("shift", torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift


def _conv(cin, cout, k, stride=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), FrozenBN(cout)]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))


class Bottleneck(nn.Module):
    """maskrcnn-benchmark ``STRIDE_IN_1X1``: the stride sits on the first 1x1 conv (ResNet v1)."""

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(_conv(cin, planes, 1, stride), _conv(planes, planes, 3),
                                  _conv(planes, planes * 4, 1, relu=False))
        self.short = _conv(cin, planes * 4, 1, stride, relu=False) if stride != 1 or cin != planes * 4 else nn.Identity()

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_conv(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        c, stages = 64, []
        for planes, n, s in zip((64, 128, 256, 512), DEPTHS[50], (1, 2, 2, 2)):
            stages.append(nn.Sequential(*[Bottleneck(c if i == 0 else planes * 4, planes, s if i == 0 else 1)
                                          for i in range(n)]))
            c = planes * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x):
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c2, c3, c4, self.layer4(c4)]


def _grid_index(h: int, w: int, rois: int, size: int) -> torch.Tensor:
    """Fixed sampling positions of ``rois`` RoIs of ``size x size`` bins on an ``h x w`` map (flat indices)."""
    k = torch.arange(rois * size * size)
    return (k * 7919) % (h * w)


class MaskRCNN(nn.Module):
    def __init__(self, classes: int = 81, image=(800, 1344)):
        super().__init__()
        self.backbone = Backbone()
        self.lateral = nn.ModuleList(nn.Conv2d(c, 256, 1) for c in (256, 512, 1024, 2048))
        self.fpn_out = nn.ModuleList(nn.Conv2d(256, 256, 3, padding=1) for _ in range(4))
        self.rpn_conv = nn.Conv2d(256, 256, 3, padding=1)
        self.rpn_cls, self.rpn_box = nn.Conv2d(256, 3, 1), nn.Conv2d(256, 12, 1)
        self.fc6, self.fc7 = nn.Linear(256 * 7 * 7, 1024), nn.Linear(1024, 1024)
        self.cls, self.box = nn.Linear(1024, classes), nn.Linear(1024, 4 * classes)
        self.mask_convs = nn.Sequential(*[m for i in range(4) for m in (nn.Conv2d(256, 256, 3, padding=1), nn.ReLU())])
        self.deconv = nn.ConvTranspose2d(256, 256, 2, 2)
        self.mask_logits = nn.Conv2d(256, classes, 1)
        h2, w2 = image[0] // 4, image[1] // 4
        self.register_buffer("box_idx", _grid_index(h2, w2, BOX_ROIS, 7), persistent=False)
        self.register_buffer("mask_idx", _grid_index(h2, w2, MASK_ROIS, 14), persistent=False)

    def _roi(self, p2, idx, rois: int, size: int):
        n, c = p2.shape[:2]
        g = p2.reshape(n, c, -1).index_select(2, idx)  # (n, c, rois * size * size)
        return g.reshape(n, c, rois, size, size).transpose(1, 2).reshape(n * rois, c, size, size)

    def forward(self, x):
        feats = self.backbone(x)
        lat = [m(f) for m, f in zip(self.lateral, feats)]
        for i in (2, 1, 0):
            lat[i] = lat[i] + nn.functional.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
        ps = [m(t) for m, t in zip(self.fpn_out, lat)]
        ps.append(nn.functional.max_pool2d(ps[-1], 1, 2))
        rpn = [torch.relu(self.rpn_conv(p)) for p in ps]
        objectness = torch.cat([self.rpn_cls(r).flatten(1) for r in rpn], dim=1)
        deltas = torch.cat([self.rpn_box(r).flatten(1) for r in rpn], dim=1)
        box = self._roi(ps[0], self.box_idx, BOX_ROIS, 7).flatten(1)
        box = torch.relu(self.fc7(torch.relu(self.fc6(box))))
        masks = self.mask_logits(torch.relu(self.deconv(self.mask_convs(self._roi(ps[0], self.mask_idx, MASK_ROIS, 14)))))
        return objectness, deltas, self.cls(box), self.box(box), masks


def maskrcnn_r50_fpn() -> nn.Module:
    return MaskRCNN()
