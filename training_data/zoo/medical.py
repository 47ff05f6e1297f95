"""Segmentation U-Nets behind the throughput sources.

Entry points: :func:`unet3d_kits19`, :func:`nnunet`.

:func:`unet3d_kits19` is the MLPerf Training 3D U-Net (mlcommons/training
``image_segmentation/pytorch/model/unet3d.py``): filters 32-64-128-256-320, a 320-channel bottleneck, every conv block
= Conv3d(3x3x3, no bias) + InstanceNorm3d(affine) + ReLU, downsampling by stride-2 convs, upsampling by
ConvTranspose3d(2, stride 2) + norm + ReLU, skip concatenation, 1x1x1 output conv to 3 classes; one 1x128x128x128
crop per sample.

:func:`nnunet` is NVIDIA DeepLearningExamples' nnU-Net (``PyTorch/Segmentation/nnUNet``; the TensorFlow2 port builds the
same network) as its README benchmarks it (``scripts/benchmark.py``: task 01, MSD Task01_BrainTumour, 4 MRI modalities,
4 label classes, no deep supervision, instance norm): MONAI's ``DynUNet`` with nnU-Net's plan rule
(:func:`nnunet_plan`: stride 2 along every axis whose spacing ratio is <= 2 and whose size is >= 2 x ``min_fmap`` (4),
at most ``depth`` (5) times, 3x3(x3) kernels), filters ``min(2 ** (5 + i), 320 in 3D / 512 in 2D)``, each level two
Conv(no bias) + InstanceNorm(affine) + LeakyReLU(0.01), up-sampling by a biased ConvTranspose of kernel = stride, skip
concatenation, a biased 1x1 output conv. Patches (``data_preprocessing/configs.py``, isotropic 1 mm spacing):
128^3 in 3D, 192x160 slices in 2D; one sample = one patch (3D) or one slice (2D), as the README's img/s counts them.
Parameters computed (no published count): 3D 31,192,868 (482.80 GMACs per patch), 2D 20,613,092 (6.69 GMACs per
slice) -- the parameter shapes, counts and FlopCounterMode MACs MONAI 1.6.1's ``DynUNet`` gives at the same kernels,
strides and filters (checked once, not a test dependency). ZOO_REFERENCES.md has no nnU-Net section: the
configuration is the DLE code's as cited, not re-read from a fetched copy here (unverified).
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


NNUNET_PATCH = {2: (192, 160), 3: (128, 128, 128)}  # Task01_BrainTumour, 1 mm isotropic
NNUNET_IN_CHANNELS, NNUNET_CLASSES = 4, 4  # FLAIR, T1w, T1gd, T2w; background, edema, non-enhancing, enhancing


def nnunet_plan(patch: tuple[int, ...], min_fmap: int = 4, depth: int = 5) -> tuple[list, list]:
    """(kernels, strides) per level by DLE's ``get_unet_params`` for isotropic spacing: halve every axis that stays
    >= 2 x ``min_fmap``, at most ``depth`` times; level 0 has stride 1."""
    sizes, strides = list(patch), []
    while len(strides) < depth:
        stride = [2 if s >= 2 * min_fmap else 1 for s in sizes]
        if all(s == 1 for s in stride):
            break
        sizes = [s // st for s, st in zip(sizes, stride)]
        strides.append(stride)
    strides.insert(0, [1] * len(patch))
    return [[3] * len(patch)] * len(strides), strides


def _nn(dim: int, kind: str):
    return {("conv", 2): nn.Conv2d, ("conv", 3): nn.Conv3d, ("up", 2): nn.ConvTranspose2d,
            ("up", 3): nn.ConvTranspose3d, ("norm", 2): nn.InstanceNorm2d, ("norm", 3): nn.InstanceNorm3d}[kind, dim]


def _basic(dim: int, cin: int, cout: int, kernel, stride) -> nn.Sequential:
    """MONAI ``UnetBasicBlock``: (Conv -> InstanceNorm -> LeakyReLU) x 2, the first conv strided."""
    conv, norm = _nn(dim, "conv"), _nn(dim, "norm")
    pad = [k // 2 for k in kernel]
    return nn.Sequential(conv(cin, cout, kernel, stride, pad, bias=False), norm(cout, affine=True), nn.LeakyReLU(0.01),
                         conv(cout, cout, kernel, 1, pad, bias=False), norm(cout, affine=True), nn.LeakyReLU(0.01))


class _DynUp(nn.Module):
    def __init__(self, dim, cin, cout, kernel, stride):
        super().__init__()
        self.up = _nn(dim, "up")(cin, cout, stride, stride, bias=True)
        self.conv = _basic(dim, 2 * cout, cout, kernel, 1)

    def forward(self, x, skip):
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class DynUNet(nn.Module):
    def __init__(self, dim: int, in_channels: int, classes: int, kernels, strides):
        super().__init__()
        filters = [min(2 ** (5 + i), 320 if dim == 3 else 512) for i in range(len(strides))]
        self.down = nn.ModuleList(_basic(dim, cin, cout, k, s) for cin, cout, k, s in
                                  zip([in_channels, *filters[:-1]], filters, kernels, strides))
        self.up = nn.ModuleList(_DynUp(dim, cin, cout, k, s) for cin, cout, k, s in
                                zip(filters[:0:-1], filters[-2::-1], kernels[:0:-1], strides[:0:-1]))
        self.out = _nn(dim, "conv")(filters[0], classes, 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for up, skip in zip(self.up, reversed(skips[:-1])):
            x = up(x, skip)
        return self.out(x)


def nnunet(dim: int = 3) -> nn.Module:
    """DLE nnU-Net for MSD Task01_BrainTumour in ``dim`` (2 or 3) dimensions (module docstring)."""
    if dim not in NNUNET_PATCH:
        raise ValueError(f"nnunet: dim must be 2 or 3, got {dim}")
    return DynUNet(dim, NNUNET_IN_CHANNELS, NNUNET_CLASSES, *nnunet_plan(NNUNET_PATCH[dim]))
