"""Real transformer exports (Hugging Face configs, random weights, no network) through featurize.

For each model and exporter: params equal to the parameters the forward uses, forward MACs within 0.5 %
of ``torch.utils.flop_counter.FlopCounterMode`` on the same module, every symbolic axis (batch included)
bound by ``dims``, no tensor of unknown shape and no warning. Exports are built once per session.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxscript")

import hf_exports as H  # noqa: E402  (tests/ is on sys.path under pytest's rootdir conftest)

from featurize import featurize  # noqa: E402
from featurize.errors import UnboundDimensionError  # noqa: E402
from featurize.ops.sequence import SEQUENCE_OPS  # noqa: E402

# every model through the TorchScript exporter at opset 17; the dynamo exporter (slow: ~4 s each) at
# opset 18 on one encoder and the Llama-style decoder; one TorchScript
# export at opset 18. T5 is TorchScript only: torch 2.13's dynamo export of T5 fails in torch itself.
MATRIX = [(name, "torchscript", 17) for name in H.CASES] + [
    ("bert-pretraining", "dynamo", 18), ("llama-gqa", "dynamo", 18),
    ("opt", "torchscript", 18),
]
BATCH, SEQ = 3, 24  # not the export's (2, 16): binding must reach every axis
DIMS = {"batch": BATCH, "seq": SEQ, "dec_seq": SEQ // 2}


@pytest.fixture(scope="session")
def hf_cache():
    return {}


def _exported(cache, name, exporter, opset):
    key = (name, exporter, opset)
    if key not in cache:
        case = H.CASES[name]
        if name not in cache:
            module = H.build(case)
            cache[name] = (module, H.reference_params(case, module), H.reference_macs(case, module, BATCH, SEQ) / BATCH)
        cache[key] = H.export(case, cache[name][0], exporter, opset)
    return cache[name], cache[key]


@pytest.mark.parametrize("name,exporter,opset", MATRIX, ids=[f"{n}-{e}-{o}" for n, e, o in MATRIX])
def test_export_counts_match_flop_counter(hf_cache, name, exporter, opset):
    (module, ref_params, ref_macs), proto = _exported(hf_cache, name, exporter, opset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f = featurize(proto, batch_size=BATCH, dims=DIMS)
    ours = [str(w.message) for w in caught if "featurize" in str(w.message) or w.filename.find("featurize") >= 0]
    assert ours == [] and f.warnings == ()
    assert f.unsupported_ops == {}
    tensors = f.nodes[~f.nodes["op_type"].isin(SEQUENCE_OPS)]  # a sequence of tensors has no single shape
    unknown = [n for n, shapes in zip(tensors["name"], tensors["output_shapes"]) if any(s is None for s in shapes)]
    assert unknown == []
    assert f.macs_forward == pytest.approx(ref_macs, rel=5e-3)
    assert f.params == ref_params
    assert all(shape[0] == BATCH for shape in f.input_shapes.values())


def test_missing_dim_names_the_cli_flag(hf_cache):
    _, proto = _exported(hf_cache, "bert-pretraining", "torchscript", 17)
    with pytest.raises(UnboundDimensionError, match=r"dims=\{'seq': N\}.*--dim seq=N"):
        featurize(proto, batch_size=2)


def test_predict_takes_the_batch_from_dims(hf_cache, tmp_path):
    import onnx

    from predictor import predict

    _, proto = _exported(hf_cache, "bert-pretraining", "torchscript", 17)
    path = tmp_path / "bert.onnx"
    onnx.save(proto, path)
    p = predict(str(path), gpu="A100", dims={"batch": 8, "seq": SEQ})
    assert p.batch_size == 8
    assert not [w for w in p.warnings if "unknown" in w]
