"""Activation memory against PyTorch's own saved tensors (issue 32 item 4).

The reference is what autograd keeps for backward in one training-mode forward on the CPU, read with
``torch.autograd.graph.saved_tensors_hooks``: the unique storages packed, parameters excluded, per sample. The
transformers run with dropout 0 (what the graph of a module, exported in eval mode, computes; with dropout active
PyTorch also keeps masks) and the math attention kernel (the explicit attention the exported graph shows; fused
GPU kernels do not keep the attention matrix). Our figure is ``GraphFeatures.activation_bytes``, the per-sample
part of ``Prediction.memory_bytes``.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
pytest.importorskip("onnxscript")
from torch import nn  # noqa: E402

from featurize import featurize  # noqa: E402

BATCH = 1


def saved_bytes_per_sample(module, args=(), kwargs=None) -> float:
    """Bytes of the distinct tensors autograd saves in one forward (parameters excluded), per sample."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    module.train()
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params and st.data_ptr() != 0:
            seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    with sdpa_kernel(SDPBackend.MATH), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(*args, **(kwargs or {}))
    return sum(seen.values()) / BATCH


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = 4 * width
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + idt)


def resnet50() -> nn.Module:
    layers, cin = [], 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = 4 * width
    stem = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    return nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000))


def resnet18() -> nn.Module:
    import importlib.util

    from conftest import RESNET18

    spec = importlib.util.spec_from_file_location("make_resnet18", RESNET18.with_name("make_resnet18.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ResNet18()


def _images():
    return (torch.randn(BATCH, 3, 224, 224),), {"example_inputs": torch.ones(1, 3, 224, 224)}


def _bert():
    cfg = tf.BertConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # BERT-base: 12 x 768
    ids = torch.ones(BATCH, 128, dtype=torch.long)
    return tf.BertModel(cfg), (), {"input_ids": ids}, {"example_inputs": {"input_ids": ids[:1]}}


def _gpt2_block():
    cfg = tf.GPT2Config(resid_pdrop=0.0, attn_pdrop=0.0, embd_pdrop=0.0)  # GPT-2 small: 768 wide, 12 heads
    block = tf.models.gpt2.modeling_gpt2.GPT2Block(cfg, layer_idx=0)
    h = torch.randn(BATCH, 1024, 768)
    return block, (h,), {}, {"example_inputs": h[:1]}


def _resnet18_file():
    from conftest import RESNET18

    # the bundled example (a training-mode export of this module): its graph, not a re-export, is what is priced
    return resnet18(), _images()[0], {}, {"source": str(RESNET18)}


CASES = {
    "resnet18": _resnet18_file,
    "resnet50": lambda: (resnet50(), *_images()[:1], {}, _images()[1]),
    "bert-base": _bert,
    "gpt2-block": _gpt2_block,
}


@pytest.mark.parametrize("name", list(CASES))
def test_activation_bytes_match_pytorchs_saved_tensors(name):
    torch.manual_seed(0)
    module, args, kwargs, feat_kw = CASES[name]()
    reference = saved_bytes_per_sample(module, args, kwargs)
    source = feat_kw.pop("source", module)
    ours = featurize(source, batch_size=1, with_nodes=False, **feat_kw).activation_bytes
    assert ours == pytest.approx(reference, rel=0.10), (name, ours / 1e6, reference / 1e6)


def test_memory_bytes_carry_the_activations_times_the_batch():
    from featurize.physics import training_memory_bytes
    from predictor import predict

    from conftest import RESNET18

    p = predict(str(RESNET18), gpu="A100", batch_size=64, samples_per_epoch=1000)
    f = p.features
    parts = training_memory_bytes(f["params"], f["trainable_params"], f["activation_bytes"], 64)
    assert p.memory_bytes == pytest.approx(parts["total_bytes"])
    assert parts["activations_bytes"] == pytest.approx(64 * f["activation_bytes"])
    assert f["activation_bytes"] > 20e6  # ResNet-18 at 224 px keeps ~22 MB per sample for backward
