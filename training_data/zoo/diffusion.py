"""The MLPerf Training Stable Diffusion v2 UNet (text_to_image, v3.1-v5.0), as our own PyTorch definition.

Entry point: :func:`sd2_unet`. Reference (``../shared/docs/ZOO_REFERENCES.md`` section 1): the LDM ``UNetModel`` of
mlcommons/training ``stable_diffusion/configs/train_32x08x04.yaml`` in the diffusers ``UNet2DConditionModel`` layout --
latent 4x64x64 (512 px images, VAE factor 8), block channels 320/640/1280/1280, 2 res blocks per level, linear-projection
transformers (1 layer, head dim 64) with cross-attention to the 77 x 1024 OpenCLIP ViT-H text states at the first three
levels, time embedding 320 -> 1280 -> 1280, GroupNorm of 16 groups in the res blocks (the MLPerf deviation).
865,910,724 parameters (ZOO_REFERENCES: computed; published "865M").

Only the UNet trains: the VAE latents and the text states are pre-computed offline (NVIDIA's ``CLIP_TEXT_ENCODER=offline``),
so one sample is the UNet step of one image. The graph takes one flat input per sample:
``latent (4*64*64) | text states (77*1024) | timestep (1)`` (the zoo's exports have one input; slicing costs nothing).
"""

from __future__ import annotations

import math

import torch
from torch import nn

LATENT, CTX_TOKENS, CTX_DIM = (4, 64, 64), 77, 1024
FLAT = 4 * 64 * 64 + CTX_TOKENS * CTX_DIM + 1


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int = 1280, groups: int = 16):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.short = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, t):
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.temb(nn.functional.silu(t))[:, :, None, None]
        return self.short(x) + self.conv2(nn.functional.silu(self.norm2(h)))


class Attention(nn.Module):
    def __init__(self, dim: int, ctx: int | None, head_dim: int = 64):
        super().__init__()
        self.heads = dim // head_dim
        self.q = nn.Linear(dim, dim, bias=False)
        self.k, self.v = nn.Linear(ctx or dim, dim, bias=False), nn.Linear(ctx or dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, ctx=None):
        n, s, d = x.shape
        src = x if ctx is None else ctx
        split = lambda t: t.view(n, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        y = nn.functional.scaled_dot_product_attention(split(self.q(x)), split(self.k(src)), split(self.v(src)))
        return self.out(y.transpose(1, 2).reshape(n, s, d))


class Transformer(nn.Module):
    """diffusers ``Transformer2DModel`` (use_linear_projection): GroupNorm, proj_in, one BasicTransformerBlock
    (self-attention, cross-attention, GEGLU feed-forward x4), proj_out, residual."""

    def __init__(self, dim: int, ctx: int = CTX_DIM):
        super().__init__()
        self.norm = nn.GroupNorm(32, dim, eps=1e-6)
        self.proj_in, self.proj_out = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn1, self.attn2 = Attention(dim, None), Attention(dim, ctx)
        self.ff_in, self.ff_out = nn.Linear(dim, 8 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x, ctx):
        n, c, hgt, wid = x.shape
        h = self.proj_in(self.norm(x).reshape(n, c, hgt * wid).transpose(1, 2))
        h = h + self.attn1(self.ln1(h))
        h = h + self.attn2(self.ln2(h), ctx)
        a, g = self.ff_in(self.ln3(h)).chunk(2, dim=-1)
        h = h + self.ff_out(a * nn.functional.gelu(g))
        return x + self.proj_out(h).transpose(1, 2).reshape(n, c, hgt, wid)


class UNet(nn.Module):
    def __init__(self, channels=(320, 640, 1280, 1280), attn=(True, True, True, False), per_level: int = 2):
        super().__init__()
        c0, temb = channels[0], 4 * channels[0]
        self.c0 = c0
        self.time = nn.Sequential(nn.Linear(c0, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(4, c0, 3, padding=1)
        half = c0 // 2  # sinusoidal timestep frequencies (a buffer: an exported Range would stay unshaped)
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half),
                             persistent=False)
        self.down, skips, c = nn.ModuleList(), [c0], c0
        for i, (cout, a) in enumerate(zip(channels, attn)):
            for _ in range(per_level):
                self.down.append(nn.ModuleList([ResBlock(c, cout), Transformer(cout) if a else nn.Identity()]))
                c = cout
                skips.append(c)
            if i < len(channels) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(c, c, 3, stride=2, padding=1)]))
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c), Transformer(c), ResBlock(c, c)])
        self.up = nn.ModuleList()
        for i, (cout, a) in enumerate(zip(reversed(channels), reversed(attn))):
            for _ in range(per_level + 1):
                self.up.append(nn.ModuleList([ResBlock(c + skips.pop(), cout), Transformer(cout) if a else nn.Identity()]))
                c = cout
            if i < len(channels) - 1:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]))
        self.out = nn.Sequential(nn.GroupNorm(32, c), nn.SiLU(), nn.Conv2d(c, 4, 3, padding=1))

    def _temb(self, t):
        ang = t[:, None] * self.freqs[None]
        return self.time(torch.cat([ang.cos(), ang.sin()], dim=-1))

    def forward(self, flat):
        n = flat.shape[0]
        lat = 4 * 64 * 64
        x = flat[:, :lat].reshape(n, *LATENT)
        ctx = flat[:, lat:lat + CTX_TOKENS * CTX_DIM].reshape(n, CTX_TOKENS, CTX_DIM)
        t = self._temb(flat[:, -1])
        h, skips = self.conv_in(x), []
        skips.append(h)
        for block in self.down:
            h = block[0](h, t) if len(block) == 2 else block[0](h)
            if len(block) == 2 and not isinstance(block[1], nn.Identity):
                h = block[1](h, ctx)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, t), ctx), t)
        for block in self.up:
            if isinstance(block[0], nn.Upsample):
                h = block[1](block[0](h))
                continue
            h = block[0](torch.cat([h, skips.pop()], dim=1), t)
            if not isinstance(block[1], nn.Identity):
                h = block[1](h, ctx)
        return self.out(h)


def sd2_unet() -> nn.Module:
    return UNet()
