"""The self-contained PyTorch networks the collection harness trains: ResNet, VGG, MobileNetV2, EfficientNet,
ConvNeXt, MLPs of several shapes, token transformers, ViT and RNN language models (no torchvision/timm)."""

from __future__ import annotations

import math

from featurize.errors import InvalidInputError, require

torch = require("torch", extra="torch", purpose="building sweep models")


nn = torch.nn


F = torch.nn.functional


MLP_SHAPES: tuple[str, ...] = ("rectangle", "trapezoid", "exponential", "wide_first")


# ---------------------------------------------------------------- CNNs
def _c(ch: float, tiny: bool) -> int:
    """Channel count rounded to a multiple of 8 (MobileNet's rule); divided by 8 (multiple of 4) when tiny."""
    if tiny:
        return max(4, int(round(ch / 32)) * 4)
    v = max(8, int(ch + 4) // 8 * 8)
    return v + 8 if v < 0.9 * ch else v


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + idt)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes, tiny=False):
        super().__init__()
        base = _c(64, tiny)
        self.stem = nn.Sequential(nn.Conv2d(3, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], base
        for i, n in enumerate(layers):
            width = base * 2**i
            for j in range(n):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


VGG_CFG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG with batch norm; torchvision's classifier (7x7 pool, 4096-4096) at full size."""

    def __init__(self, cfg, num_classes, tiny=False):
        super().__init__()
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                cout = _c(v, tiny)
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = 1 if tiny else 7
        hidden = 64 if tiny else 4096
        self.classifier = nn.Sequential(
            nn.Linear(cin * self.pool**2, hidden), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), self.pool)
        return self.classifier(torch.flatten(x, 1))


class _InvertedResidual(nn.Module):
    """MobileNetV2 block, or EfficientNet MBConv when ``se_ratio`` > 0 (SiLU + squeeze-excitation)."""

    def __init__(self, cin, cout, stride, expand, kernel=3, se_ratio=0.0):
        super().__init__()
        act = nn.SiLU if se_ratio > 0 else nn.ReLU6
        hid = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), act()]
        layers += [nn.Conv2d(hid, hid, kernel, stride, kernel // 2, groups=hid, bias=False), nn.BatchNorm2d(hid),
                   act()]
        self.body = nn.Sequential(*layers)
        self.se = None
        if se_ratio > 0:
            sq = max(1, int(cin * se_ratio))
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hid, sq, 1), nn.SiLU(), nn.Conv2d(sq, hid, 1),
                                    nn.Sigmoid())
        self.proj = nn.Sequential(nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        if self.se is not None:
            y = y * self.se(y)
        y = self.proj(y)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]

    def __init__(self, num_classes, tiny=False):
        super().__init__()
        cin = _c(32, tiny)
        layers = [nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6()]
        for t, c, n, s in self.SETTINGS:
            cout = _c(c, tiny)
            for i in range(1 if tiny else n):
                layers.append(_InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        last = _c(1280, tiny)
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


class EfficientNet(nn.Module):
    """EfficientNet-B0 layout (MBConv + SE, SiLU) scaled by width/depth multipliers."""

    SETTINGS = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5),
                (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)]

    def __init__(self, num_classes, width_mult=1.0, depth_mult=1.0, tiny=False):
        super().__init__()
        cin = _c(32 * width_mult, tiny)
        layers = [nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.SiLU()]
        for t, c, n, s, k in self.SETTINGS:
            cout = _c(c * width_mult, tiny)
            reps = 1 if tiny else int(math.ceil(n * depth_mult))
            for i in range(reps):
                layers.append(_InvertedResidual(cin, cout, s if i == 0 else 1, t, k, se_ratio=0.25))
                cin = cout
        last = _c(1280 * width_mult, tiny)
        layers += [nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


#: EfficientNet (width_mult, depth_mult) per variant, as in the paper's compound scaling
EFFICIENTNET_VARIANTS: dict[str, tuple[float, float]] = {
    "b0": (1.0, 1.0), "b1": (1.0, 1.1), "b2": (1.1, 1.2), "b3": (1.2, 1.4),
}


class _LayerNorm2d(nn.LayerNorm):
    def forward(self, x):  # (N, C, H, W): normalise over C
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


CONVNEXT_VARIANTS: dict[str, tuple[list[int], list[int]]] = {
    "atto": ([2, 2, 6, 2], [40, 80, 160, 320]),
    "nano": ([2, 2, 8, 2], [80, 160, 320, 640]),
    "tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
}


class ConvNeXt(nn.Module):
    def __init__(self, num_classes, variant="nano", tiny=False):
        super().__init__()
        if variant not in CONVNEXT_VARIANTS:
            raise InvalidInputError(f"convnext variant {variant!r} not in {sorted(CONVNEXT_VARIANTS)}")
        depths, dims = CONVNEXT_VARIANTS[variant]
        if tiny:
            depths, dims = [1, 1, 1, 1], [8, 16, 24, 32]
        stages, cin = [], 3
        for i, (d, dim) in enumerate(zip(depths, dims)):
            down = (nn.Sequential(nn.Conv2d(3, dim, 4, 4), _LayerNorm2d(dim)) if i == 0
                    else nn.Sequential(_LayerNorm2d(cin), nn.Conv2d(cin, dim, 2, 2)))
            stages += [down, *[_ConvNeXtBlock(dim) for _ in range(d)]]
            cin = dim
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(cin)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stages(x).mean((2, 3))
        return self.head(self.norm(x))


# ---------------------------------------------------------------- MLPs
def mlp_widths(shape: str, width: int, depth: int) -> list[int]:
    """Hidden-layer widths of a BUTTER-style MLP whose widest layer is ``width``, ``depth`` hidden layers.

    rectangle: all ``width``; trapezoid: linear from ``width`` down to ``width // 4``; exponential: halves
    each layer (floor 8); wide_first: first layer ``width``, the rest ``width // 4`` (BUTTER's wide_first_4x).
    """
    if depth < 1 or width < 1:
        raise InvalidInputError(f"mlp needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
    if shape == "rectangle":
        return [width] * depth
    if shape == "trapezoid":
        last = max(1, width // 4)
        if depth == 1:
            return [width]
        return [int(round(width - (width - last) * i / (depth - 1))) for i in range(depth)]
    if shape == "exponential":
        return [max(8, width >> i) for i in range(depth)]
    if shape == "wide_first":
        return [width] + [max(1, width // 4)] * (depth - 1)
    raise InvalidInputError(f"mlp shape {shape!r} not in {MLP_SHAPES}")


class MLP(nn.Module):
    def __init__(self, in_features, widths, num_classes):
        super().__init__()
        layers, cin = [], in_features
        for w in widths:
            layers += [nn.Linear(cin, w), nn.ReLU()]
            cin = w
        layers.append(nn.Linear(cin, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


# ---------------------------------------------------------------- transformers
class _Block(nn.Module):
    """Pre-LN transformer block: fused-QKV attention through scaled_dot_product_attention + GELU MLP."""

    def __init__(self, d, heads, causal):
        super().__init__()
        if d % heads:
            raise InvalidInputError(f"d_model={d} is not divisible by heads={heads}")
        self.heads, self.causal = heads, causal
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        x = x + self.proj(a.transpose(1, 2).reshape(n, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TokenTransformer(nn.Module):
    """BERT-like encoder (classification on token 0) or GPT-like causal decoder (LM head on every token)."""

    def __init__(self, vocab, seq_len, d, layers, heads, causal, num_classes):
        super().__init__()
        self.causal = causal
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(1, seq_len, d))
        self.blocks = nn.Sequential(*[_Block(d, heads, causal) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab if causal else num_classes)

    def forward(self, ids):
        x = self.ln(self.blocks(self.tok(ids) + self.pos))
        return self.head(x if self.causal else x[:, 0])


class ViT(nn.Module):
    def __init__(self, image_size, patch, d, layers, heads, num_classes):
        super().__init__()
        if image_size % patch:
            raise InvalidInputError(f"vit image_size={image_size} is not a multiple of patch={patch}")
        self.embed = nn.Conv2d(3, d, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + 1, d))
        self.blocks = nn.Sequential(*[_Block(d, heads, False) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, num_classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.ln(self.blocks(x))[:, 0])


# ---------------------------------------------------------------- RNNs
class RNNLM(nn.Module):
    def __init__(self, cell, vocab, hidden, layers):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids):
        y, _ = self.rnn(self.emb(ids))
        return self.head(y)
