"""torch modules without weight memory: meta-device modules, Hugging Face switches, export reuse."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")
pytest.importorskip("onnxscript")

from featurize import featurize  # noqa: E402
from featurize.graph import torch_export  # noqa: E402
from featurize.errors import GraphLoadError  # noqa: E402


def _llama(device: str):
    cfg = tf.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=176, vocab_size=512, max_position_embeddings=64)  # use_cache=True
    with torch.device(device):
        torch.manual_seed(0)
        return tf.LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def meta_llama():
    return _llama("meta")


def test_meta_module_featurizes_like_the_real_one(meta_llama):
    ids = torch.ones(2, 16, dtype=torch.long)
    f_meta = featurize(meta_llama, example_inputs={"input_ids": ids}, batch_size=2, with_nodes=False)
    real = _llama("cpu")
    f_real = featurize(real, example_inputs={"input_ids": ids}, batch_size=2, with_nodes=False)
    params = sum(p.numel() for p in real.parameters()) + real.model.rotary_emb.inv_freq.numel()  # see hf_exports
    assert f_meta.params == f_real.params == params
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        real(input_ids=ids, use_cache=False)
    assert f_meta.macs_forward == f_real.macs_forward == pytest.approx(counter.get_total_flops() / 2 / 2, rel=5e-3)
    assert f_meta.warnings == () and real.config.use_cache is True  # the switch is restored


def test_exported_module_carries_no_weight_bytes(meta_llama):
    proto = torch_export.export_module(meta_llama, {"input_ids": torch.ones(1, 8, dtype=torch.long)})
    big = [i for i in proto.graph.initializer if len(i.dims) == 2]
    assert big and all(i.data_location == 1 and not i.raw_data for i in big)  # EXTERNAL, no bytes
    stored = sum(len(i.raw_data) for i in proto.graph.initializer)
    assert stored < 4096  # 158k parameters would be 630 kB of fp32


def test_repeated_calls_reuse_the_export(meta_llama, monkeypatch):
    ids = {"input_ids": torch.ones(1, 12, dtype=torch.long)}
    first = featurize(meta_llama, example_inputs=ids, with_nodes=False)
    calls = []
    real = torch_export._export
    monkeypatch.setattr(torch_export, "_export", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = featurize(meta_llama, example_inputs=ids, batch_size=4, with_nodes=False)
    assert calls == [] and again.macs_forward == first.macs_forward
    featurize(meta_llama, example_inputs={"input_ids": torch.ones(1, 13, dtype=torch.long)}, with_nodes=False)
    assert calls == [1]  # new shapes: a new export


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's own, from the public exporter's second trace
def test_one_trace_export_gives_the_public_exporters_graph(meta_llama):
    """The single-trace path (torch.export straight to ATen IR with the ONNX decomposition table) is
    taken, and writes the same compute nodes and weights as torch.onnx.export(dynamo=True)."""
    ids = {"input_ids": torch.ones(1, 12, dtype=torch.long, device="meta")}
    with torch_export._export_switches(meta_llama):
        fast = torch_export._one_trace_export(torch, meta_llama, (), ids)
        public = torch.onnx.export(meta_llama, (), kwargs=ids, dynamo=True, optimize=False, verbose=False,
                                   opset_version=torch_export.EXPORT_OPSET).model
    assert fast is not None  # None: this torch lacks the private steps (the public path is taken, slower)

    def ops(model):
        return sorted(n.op_type for n in model.graph if n.op_type != "Constant")

    def weights(model):
        return {v.name: tuple(v.shape) for v in model.graph.initializers.values() if v.name in public_names}

    public_names = set(public.graph.initializers)
    assert ops(fast) == ops(public) and len(ops(public)) > 100
    assert weights(fast) == weights(public) and set(public_names) <= set(fast.graph.initializers)


def test_dynamo_export_needs_one_shape_inference(meta_llama, monkeypatch):
    """Its Shape -> Slice -> Concat -> Reshape chains read shapes only inference finds: the first pass
    propagates data, so one pass resolves every shape (plain, then data_prop, took two)."""
    from featurize.graph import shapes

    proto = torch_export.export_module(meta_llama, {"input_ids": torch.ones(1, 12, dtype=torch.long)})
    assert any(n.op_type == "Shape" for n in proto.graph.node)
    passes = []
    real = shapes._c_infer_shapes
    monkeypatch.setattr(shapes, "_c_infer_shapes", lambda *a: passes.append(a[3]) or real(*a))
    feats = featurize(proto, with_nodes=False)
    assert passes == [True] and feats.warnings == () and feats.macs_forward > 0


def test_export_failure_is_one_clean_error():
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x[:, :3])  # 3 features into a 4-input layer

    with pytest.raises(GraphLoadError, match="example_inputs") as info:
        featurize(Bad(), example_inputs=torch.ones(2, 4))
    assert "\x1b[" not in str(info.value)


def test_readme_hugging_face_example_runs_through_predict(meta_llama):
    from predictor import predict

    p = predict(meta_llama, example_inputs={"input_ids": torch.ones(1, 32, dtype=torch.long)}, gpu="H100",
                batch_size=8, samples_per_epoch=1000, epochs=1, precision="bf16")
    assert p.energy_j > 0 and p.time_s > 0
    assert not [w for w in p.warnings if "unknown" in w]
