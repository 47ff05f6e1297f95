"""Self-contained PyTorch model builders for the measurement sweep (no torchvision/timm, independent of the zoo).

Public entry points: :func:`build` (``RunConfig`` -> :class:`Built` = ``(module, example_input_fn)``),
:func:`config_from_ref` (the run schema's ``model`` value ``collect:<arch>?k=v`` -> config),
:func:`architecture_name`, :func:`input_shape` (schema values),
:func:`param_count` (parameters of a config, built on the ``meta`` device: no memory, no compute),
:func:`export_onnx` (a config's graph to an ONNX file for featurization), :data:`ARCHS` (arch -> family).

``example_input_fn(batch_size, device)`` returns ``(inputs, target)``: a tuple of input tensors and the
class-index target that :func:`loss_fn` (cross-entropy over the last logits axis) compares with the output.
Inputs are synthetic and made directly on ``device`` (see ``training_data/runs/README.md``: kernels do not
branch on data values, but bit activity does change power, so the inputs are random, never all-zero).
``tiny=True`` shrinks widths, depths and input sizes for CPU dry runs while keeping the code path.

Config parameters per family (defaults in brackets):
  cnn: ``image_size`` [224], ``num_classes`` [1000]; ``variant``: efficientnet [b0|b1|b2|b3],
       convnext [atto|nano|tiny].
  mlp: ``shape`` [rectangle|trapezoid|exponential|wide_first], ``width`` (widest layer), ``depth`` (hidden
       layers), ``in_features`` [784], ``num_classes`` [10]. BUTTER-style shapes, see :func:`mlp_widths`.
  transformer: ``d_model``, ``layers``, ``heads`` [d_model // 64], ``seq_len``, ``vocab`` [32000],
       ``num_classes`` [2] (bert_encoder, sequence classification on the first token), ViT: ``image_size``,
       ``patch`` [16], ``num_classes`` [1000]. gpt_decoder is a causal LM (loss on every token).
  rnn: ``hidden``, ``layers``, ``seq_len``, ``vocab`` [10000] (a word-level LM, loss on every token).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from featurize.errors import InvalidInputError
from training_data.collect.networks import (
    EFFICIENTNET_VARIANTS,
    MLP,
    RNNLM,
    VGG,
    VGG_CFG,
    BasicBlock,
    Bottleneck,
    ConvNeXt,
    EfficientNet,
    F,
    MobileNetV2,
    ResNet,
    TokenTransformer,
    ViT,
    mlp_widths,
    torch,
)
from training_data.collect.sweep import RunConfig

ARCHS: dict[str, str] = {
    "resnet18": "cnn", "resnet50": "cnn", "vgg11": "cnn", "vgg16": "cnn", "mobilenet_v2": "cnn",
    "efficientnet": "cnn", "convnext": "cnn",
    "mlp": "mlp",
    "bert_encoder": "transformer", "gpt_decoder": "transformer", "vit": "transformer",
    "lstm": "rnn", "gru": "rnn",
}


ExampleInputFn = Callable[..., tuple[tuple[Any, ...], Any]]


class Built(NamedTuple):
    """A built model: unpack as ``module, example_input_fn = build(cfg)``."""

    module: Any  # torch.nn.Module
    example_input_fn: ExampleInputFn


def loss_fn(output, target):
    """Cross-entropy over the last axis; works for (N, C) vs (N,) and (N, T, C) vs (N, T)."""
    return F.cross_entropy(output.reshape(-1, output.shape[-1]).float(), target.reshape(-1))


# ---------------------------------------------------------------- factory
def _image_inputs(size: int, num_classes: int) -> ExampleInputFn:
    def fn(batch_size: int, device: Any = "cpu"):
        x = torch.randn(batch_size, 3, size, size, device=device)
        return (x,), torch.randint(0, num_classes, (batch_size,), device=device)
    return fn


def _token_inputs(vocab: int, seq_len: int, n_targets: int | None) -> ExampleInputFn:
    """Token ids; targets per token (LM, ``n_targets=None``) or one class per sequence."""
    def fn(batch_size: int, device: Any = "cpu"):
        ids = torch.randint(0, vocab, (batch_size, seq_len), device=device)
        if n_targets is None:
            return (ids,), torch.randint(0, vocab, (batch_size, seq_len), device=device)
        return (ids,), torch.randint(0, n_targets, (batch_size,), device=device)
    return fn


def architecture_name(cfg: RunConfig) -> str:
    """The schema's ``architecture``: the arch, plus its variant where that changes the layer structure
    (``convnext_nano``, ``efficientnet_b2``, ``mlp_trapezoid``); sizes of transformers/RNNs stay in ``model``."""
    p = cfg.p
    if cfg.arch == "mlp":
        return f"mlp_{p.get('shape')}"
    if cfg.arch == "convnext":
        return f"convnext_{p.get('variant', 'nano')}"
    if cfg.arch == "efficientnet":
        return f"efficientnet_{p.get('variant', 'b0')}"
    return cfg.arch


def input_shape(cfg: RunConfig) -> str:
    """Per-sample input shape as stored in the run schema, e.g. ``3x224x224``, ``784`` or ``512`` (tokens)."""
    p = cfg.p
    if cfg.family == "cnn" or cfg.arch == "vit":
        s = int(p.get("image_size", 224))
        return f"3x{s}x{s}"
    if cfg.family == "mlp":
        return str(int(p.get("in_features", 784)))
    return f"seq{int(p['seq_len'])}"


def build(cfg: RunConfig, *, tiny: bool = False) -> Built:
    """Build ``cfg``'s model (on the current default device) and its synthetic-input function.

    Raises :class:`InvalidInputError` for an unknown arch or a missing/invalid parameter.
    """
    if cfg.arch not in ARCHS:
        raise InvalidInputError(f"unknown arch {cfg.arch!r}; known: {sorted(ARCHS)}")
    if ARCHS[cfg.arch] != cfg.family:
        raise InvalidInputError(f"arch {cfg.arch!r} belongs to family {ARCHS[cfg.arch]!r}, not {cfg.family!r}")
    p = cfg.p
    try:
        return _build(cfg.arch, p, tiny)
    except KeyError as err:
        raise InvalidInputError(f"config {cfg.model_name()} lacks parameter {err.args[0]!r}") from err


def _build(arch: str, p: dict[str, Any], tiny: bool) -> Built:
    if ARCHS[arch] == "cnn":
        size = 32 if tiny else int(p.get("image_size", 224))
        ncls = 10 if tiny else int(p.get("num_classes", 1000))
        if arch == "resnet18":
            m = ResNet(BasicBlock, [1, 1, 1, 1] if tiny else [2, 2, 2, 2], ncls, tiny)
        elif arch == "resnet50":
            m = ResNet(Bottleneck, [1, 1, 1, 1] if tiny else [3, 4, 6, 3], ncls, tiny)
        elif arch in VGG_CFG:
            m = VGG(VGG_CFG[arch], ncls, tiny)
        elif arch == "mobilenet_v2":
            m = MobileNetV2(ncls, tiny)
        elif arch == "efficientnet":
            variant = str(p.get("variant", "b0"))
            if variant not in EFFICIENTNET_VARIANTS:
                raise InvalidInputError(f"efficientnet variant {variant!r} not in {sorted(EFFICIENTNET_VARIANTS)}")
            m = EfficientNet(ncls, *EFFICIENTNET_VARIANTS[variant], tiny=tiny)
        else:
            m = ConvNeXt(ncls, str(p.get("variant", "nano")), tiny)
        return Built(m, _image_inputs(size, ncls))
    if arch == "mlp":
        width, depth = int(p["width"]), int(p["depth"])
        if tiny:
            width, depth = min(width, 64), min(depth, 3)
        ncls, fin = int(p.get("num_classes", 10)), int(p.get("in_features", 784))
        if tiny:
            fin = min(fin, 64)
        m = MLP(fin, mlp_widths(str(p["shape"]), width, depth), ncls)

        def fn(batch_size: int, device: Any = "cpu"):
            return ((torch.randn(batch_size, fin, device=device),),
                    torch.randint(0, ncls, (batch_size,), device=device))
        return Built(m, fn)
    if arch in ("bert_encoder", "gpt_decoder", "vit"):
        d, layers = int(p["d_model"]), int(p["layers"])
        heads = int(p.get("heads", max(1, d // 64)))
        if tiny:
            d, layers, heads = 32, 1, 2
        if arch == "vit":
            size, patch = (32, 8) if tiny else (int(p.get("image_size", 224)), int(p.get("patch", 16)))
            ncls = 10 if tiny else int(p.get("num_classes", 1000))
            return Built(ViT(size, patch, d, layers, heads, ncls), _image_inputs(size, ncls))
        seq = 16 if tiny else int(p["seq_len"])
        vocab = 100 if tiny else int(p.get("vocab", 32000))
        causal = arch == "gpt_decoder"
        ncls = int(p.get("num_classes", 2))
        m = TokenTransformer(vocab, seq, d, layers, heads, causal, ncls)
        return Built(m, _token_inputs(vocab, seq, None if causal else ncls))
    # rnn
    hidden, layers = int(p["hidden"]), int(p["layers"])
    seq, vocab = int(p["seq_len"]), int(p.get("vocab", 10000))
    if tiny:
        hidden, layers, seq, vocab = 32, 1, 8, 100
    return Built(RNNLM(arch, vocab, hidden, layers), _token_inputs(vocab, seq, None))


def config_from_ref(ref: str, *, batch_size: int = 1, precision: str = "fp32") -> RunConfig:
    """Inverse of ``runner.model_ref``: ``"collect:vit?d_model=768&layers=12"`` -> a :class:`RunConfig`.

    Values are parsed as int, then float, else kept as text. Raises :class:`InvalidInputError` for another scheme.
    """
    if not ref.startswith("collect:"):
        raise InvalidInputError(f"model ref {ref!r} is not a 'collect:<arch>?k=v&...' reference")
    arch, _, query = ref[len("collect:"):].partition("?")
    if arch not in ARCHS:
        raise InvalidInputError(f"unknown arch {arch!r} in {ref!r}; known: {sorted(ARCHS)}")
    params = []
    for item in filter(None, query.split("&")):
        k, _, v = item.partition("=")
        params.append((k, _parse_value(v)))
    return RunConfig(ARCHS[arch], arch, batch_size, precision, params=tuple(sorted(params)))


def _parse_value(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def param_count(cfg: RunConfig) -> int:
    """Number of parameters of ``cfg``'s full-size model, built on the meta device (no memory; cached)."""
    return _param_count(cfg.family, cfg.arch, cfg.params)


@functools.lru_cache(maxsize=4096)
def _param_count(family: str, arch: str, params: tuple[tuple[str, Any], ...]) -> int:
    with torch.device("meta"):
        module = build(RunConfig(family, arch, 1, "fp32", params=params)).module
    return int(sum(p.numel() for p in module.parameters()))


def export_onnx(cfg: RunConfig, path, *, batch_size: int = 1, tiny: bool = False, opset: int = 18):
    """Export ``cfg``'s model (eval mode, no weights stored) to ONNX at ``path`` for featurization."""
    module, fn = build(cfg, tiny=tiny)
    inputs, _ = fn(batch_size, "cpu")
    module.eval()
    torch.onnx.export(module, inputs, str(path), opset_version=opset, dynamo=True, external_data=False,
                      export_params=False)
    return path
