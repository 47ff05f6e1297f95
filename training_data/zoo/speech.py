"""Speech models behind the throughput sources.

Entry points: :func:`jasper` (Jasper 10x5 DR, see its class) and :func:`waveglow` -- WaveGlow (Prenger et al. 2019) as trained by NVIDIA DeepLearningExamples
``PyTorch/SpeechSynthesis/Tacotron2`` (``waveglow/model.py``, the 256-channel configuration Lambda's benchmark runs):
80 mel channels upsampled by ConvTranspose1d(80, 80, 1024, stride 256); audio squeezed into groups of 8; 12 flows,
2 channels output early every 4 flows; each flow = invertible 1x1 conv + affine coupling whose WN has 8 dilated
(1..128) 3-tap layers of 256 channels with tanh x sigmoid gates and per-layer mel conditioning.

One sample = one training segment of 8,000 audio samples with its 32 mel frames. The graph takes both as one flat
input ``(batch, 8000 + 80 x 32)`` and slices it (the zoo's exports have one input); the slicing costs nothing.
"""

from __future__ import annotations

import torch
from torch import nn

SEGMENT = 8000
MEL, FRAMES, HOP = 80, 32, 256


class WN(nn.Module):
    def __init__(self, n_in: int, n_mel: int, layers: int = 8, channels: int = 256, kernel: int = 3):
        super().__init__()
        self.c = channels
        self.start = nn.Conv1d(n_in, channels, 1)
        self.end = nn.Conv1d(channels, 2 * n_in, 1)
        self.in_layers = nn.ModuleList(nn.Conv1d(channels, 2 * channels, kernel, dilation=2**i,
                                                 padding=2**i * (kernel - 1) // 2) for i in range(layers))
        self.cond = nn.ModuleList(nn.Conv1d(n_mel, 2 * channels, 1) for _ in range(layers))
        self.res_skip = nn.ModuleList(nn.Conv1d(channels, 2 * channels if i < layers - 1 else channels, 1)
                                      for i in range(layers))

    def forward(self, audio, spect):
        audio, out = self.start(audio), 0
        for i, (inl, cond, rs) in enumerate(zip(self.in_layers, self.cond, self.res_skip)):
            a = inl(audio) + cond(spect)
            acts = rs(torch.tanh(a[:, : self.c]) * torch.sigmoid(a[:, self.c:]))
            if i < len(self.in_layers) - 1:
                audio = acts[:, : self.c] + audio
                out = out + acts[:, self.c:]
            else:
                out = out + acts
        return self.end(out)


class WaveGlow(nn.Module):
    def __init__(self, flows: int = 12, group: int = 8, early_every: int = 4, early_size: int = 2,
                 channels: int = 256):
        super().__init__()
        self.upsample = nn.ConvTranspose1d(MEL, MEL, 1024, stride=HOP)
        self.group, self.early_every, self.early_size = group, early_every, early_size
        self.convinv, self.wn, remaining = nn.ModuleList(), nn.ModuleList(), group
        for k in range(flows):
            if k % early_every == 0 and k > 0:
                remaining -= early_size
            self.convinv.append(nn.Conv1d(remaining, remaining, 1, bias=False))
            self.wn.append(WN(remaining // 2, MEL * group, channels=channels))

    def forward(self, x):
        b = x.shape[0]
        audio = x[:, :SEGMENT]
        spect = self.upsample(x[:, SEGMENT:].reshape(b, MEL, FRAMES))[:, :, :SEGMENT]
        steps = SEGMENT // self.group
        spect = spect.reshape(b, MEL, steps, self.group).permute(0, 2, 1, 3).reshape(b, steps, -1).permute(0, 2, 1)
        audio = audio.reshape(b, steps, self.group).permute(0, 2, 1)
        outs = []
        for k, (conv, wn) in enumerate(zip(self.convinv, self.wn)):
            if k % self.early_every == 0 and k > 0:
                outs.append(audio[:, : self.early_size])
                audio = audio[:, self.early_size:]
            audio = conv(audio)
            half = audio.shape[1] // 2
            out = wn(audio[:, :half], spect)
            audio = torch.cat([audio[:, :half], torch.exp(out[:, half:]) * audio[:, half:] + out[:, :half]], dim=1)
        outs.append(audio)
        return torch.cat(outs, dim=1)


def waveglow() -> nn.Module:
    return WaveGlow()


JASPER_FILTERS = (256, 256, 384, 384, 512, 512, 640, 640, 768, 768)
JASPER_KERNELS = (11, 11, 13, 13, 17, 17, 21, 21, 25, 25)
JASPER_FRAMES, JASPER_FEATURES = 1230, 64


def _conv_bn1d(cin: int, cout: int, k: int = 1, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, k, stride, dilation * (k // 2), dilation, bias=False), nn.BatchNorm1d(cout))


class JasperBlock(nn.Module):
    """``repeat`` x (conv + BN + ReLU); dense residual: a 1x1 conv + BN from every earlier block output, added before
    the last ReLU."""

    def __init__(self, cin: int, filters: int, kernel: int, residual_ins: list[int], repeat: int = 5):
        super().__init__()
        self.convs = nn.ModuleList(_conv_bn1d(cin if i == 0 else filters, filters, kernel) for i in range(repeat))
        self.res = nn.ModuleList(_conv_bn1d(c, filters) for c in residual_ins)

    def forward(self, x, earlier: list):
        for conv in self.convs[:-1]:
            x = torch.relu(conv(x))
        x = self.convs[-1](x)
        for res, e in zip(self.res, earlier):
            x = x + res(e)
        return torch.relu(x)


class Jasper(nn.Module):
    """Jasper 10x5 with dense residual (Li et al. 2019; DLE ``PyTorch/SpeechRecognition/Jasper``
    ``jasper10x5dr``): prolog conv 11 (256, stride 2), 10 blocks of 5 convs, epilog conv 29 (896, dilation 2) + conv 1
    (1024), 1x1 decoder to 29 characters; 64 log-mel features per 10 ms."""

    def __init__(self, classes: int = 29):
        super().__init__()
        self.prolog = _conv_bn1d(JASPER_FEATURES, 256, 11, stride=2)
        outs, c, blocks = [256], 256, []
        for f, k in zip(JASPER_FILTERS, JASPER_KERNELS):
            blocks.append(JasperBlock(c, f, k, list(outs)))
            outs.append(f)
            c = f
        self.blocks = nn.ModuleList(blocks)
        self.epilog = nn.Sequential(_conv_bn1d(c, 896, 29, dilation=2), nn.ReLU(), _conv_bn1d(896, 1024), nn.ReLU())
        self.decoder = nn.Conv1d(1024, classes, 1)

    def forward(self, x):
        x = torch.relu(self.prolog(x))
        earlier = [x]
        for block in self.blocks:
            x = block(x, earlier)
            earlier.append(x)
        return self.decoder(self.epilog(x))


def jasper() -> nn.Module:
    return Jasper()
