"""Segmentation U-Nets behind the throughput sources.

Entry point: :func:`unet3d_kits19` -- the MLPerf Training 3D U-Net (mlcommons/training
``image_segmentation/pytorch/model/unet3d.py``): filters 32-64-128-256-320, a 320-channel bottleneck, every conv block
= Conv3d(3x3x3, no bias) + InstanceNorm3d(affine) + ReLU, downsampling by stride-2 convs, upsampling by
ConvTranspose3d(2, stride 2) + norm + ReLU, skip concatenation, 1x1x1 output conv to 3 classes; one 1x128x128x128
crop per sample.
"""

from __future__ import annotations

import torch
from torch import nn


def _block3d(cin, cout, k=3, stride=1, transpose=False):
    conv = (nn.ConvTranspose3d(cin, cout, k, stride, bias=False) if transpose else
            nn.Conv3d(cin, cout, k, stride, padding=k // 2, bias=False))
    return nn.Sequential(conv, nn.InstanceNorm3d(cout, affine=True), nn.ReLU())


class _Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = _block3d(cin, cout, 2, 2, transpose=True)
        self.conv = nn.Sequential(_block3d(2 * cout, cout), _block3d(cout, cout))

    def forward(self, x, skip):
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet3D(nn.Module):
    def __init__(self, in_channels: int = 1, classes: int = 3, filters: tuple[int, ...] = (32, 64, 128, 256, 320)):
        super().__init__()
        self.inp = nn.Sequential(_block3d(in_channels, filters[0]), _block3d(filters[0], filters[0]))
        self.down = nn.ModuleList(nn.Sequential(_block3d(i, o, stride=2), _block3d(o, o))
                                  for i, o in zip(filters[:-1], filters[1:]))
        self.bottleneck = nn.Sequential(_block3d(filters[-1], filters[-1], stride=2),
                                        _block3d(filters[-1], filters[-1]))
        ins = [filters[-1], *reversed(filters[1:])]
        self.up = nn.ModuleList(_Up(i, o) for i, o in zip(ins, [filters[-1], *reversed(filters[:-1])]))
        self.out = nn.Conv3d(filters[0], classes, 1)

    def forward(self, x):
        skips = [self.inp(x)]
        for d in self.down:
            skips.append(d(skips[-1]))
        x = self.bottleneck(skips[-1])
        for up, skip in zip(self.up, reversed(skips)):
            x = up(x, skip)
        return self.out(x)


def unet3d_kits19() -> nn.Module:
    return UNet3D()
