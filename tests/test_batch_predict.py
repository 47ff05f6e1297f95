"""predict_many: input order, cross-GPU what-if, error rows, backends, agreement with predict()."""

from __future__ import annotations

import onnx
import pytest

from featurize.errors import InvalidInputError, UnknownGPUError
from predictor.batch.inputs import expand_models
from predictor.batch.many import OUTPUT_COLUMNS
from test_batch_graphs import write_variants


@pytest.fixture(scope="module")
def graph_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch_graphs")
    write_variants(d, 6, seed=7, prefix="c")
    return d


def _pm(models, model_dir, **kw):
    from predictor import predict_many

    args = dict(
        gpu="L4", batch_size=64, samples_per_epoch=5000, epochs=2, model_dir=model_dir, progress=False
    )
    args.update(kw)
    return predict_many(models, **args)


def test_order_columns_and_cross_gpu(graph_dir, synthetic_model):
    model_dir = synthetic_model[0]
    files = sorted(graph_dir.glob("*.onnx"))
    df = _pm([files[3], graph_dir / "missing.onnx", str(graph_dir)], model_dir, gpu=["A100", "L4", "T4"])
    assert list(df.columns) == list(OUTPUT_COLUMNS)
    labels = [str(files[3]), str(graph_dir / "missing.onnx"), *map(str, files)]
    assert list(df["model"]) == [m for m in labels for _ in range(3)]
    assert list(df["gpu"][:3]) == ["A100-SXM4-80GB", "L4", "T4"]
    bad = df[df["model"].str.endswith("missing.onnx")]
    assert (
        len(bad) == 3 and bad["error"].str.contains("GraphLoadError").all() and bad["energy_j"].isna().all()
    )
    good = df[df["error"] == ""]
    assert len(good) == 3 * 7
    assert (good["energy_j"] > 0).all()
    assert (good["interval_low_j"] < good["energy_j"]).all() and (
        good["energy_j"] < good["interval_high_j"]
    ).all()
    assert good["energy_kwh"].mul(3.6e6).sub(good["energy_j"]).abs().max() < 1e-6
    assert (good["energy_per_epoch_j"] * 2 - good["energy_j"]).abs().max() < 1e-6 * good["energy_j"].max()
    assert good["warnings"].str.contains("ambiguous").sum() == 7  # the A100 alias note, once per A100 row


def test_matches_predict(graph_dir, synthetic_model):
    from predictor import predict

    model_dir = synthetic_model[0]
    f = sorted(graph_dir.glob("*.onnx"))[1]
    row = _pm([f], model_dir, gpu="T4").iloc[0]
    p = predict(str(f), gpu="T4", batch_size=64, samples_per_epoch=5000, epochs=2, model_dir=model_dir)
    assert row["energy_j"] == pytest.approx(p.energy_j, rel=1e-9)
    assert row["time_s"] == pytest.approx(p.time_s, rel=1e-9)
    assert (row["interval_low_j"], row["interval_high_j"]) == pytest.approx(p.interval_j, rel=1e-9)


def test_protos_bytes_and_backends_agree(graph_dir, synthetic_model):
    model_dir = synthetic_model[0]
    files = sorted(graph_dir.glob("*.onnx"))
    by_path = _pm(files, model_dir)
    protos = [onnx.load(str(f)) for f in files]
    by_proto = _pm(protos[:3] + [f.read_bytes() for f in files[3:]], model_dir)
    assert list(by_proto["model"][:3]) == [f.stem for f in files[:3]]
    assert list(by_proto["model"][3:]) == [f"bytes[{i}]" for i in range(3, 6)]
    assert by_proto["energy_j"].tolist() == pytest.approx(by_path["energy_j"].tolist(), rel=1e-12)
    threaded = _pm(files, model_dir, n_jobs=2, backend="threading")  # joblib, no per-graph limits
    assert threaded["energy_j"].tolist() == pytest.approx(by_path["energy_j"].tolist(), rel=1e-12)
    procs = _pm(files, model_dir, n_jobs=2, backend="loky")
    assert procs["energy_j"].tolist() == pytest.approx(by_path["energy_j"].tolist(), rel=1e-12)


def test_bad_inputs_raise_clear_errors(tmp_path, graph_dir, synthetic_model):
    model_dir = synthetic_model[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="contains no .onnx files"):
        _pm(tmp_path / "empty", model_dir)
    with pytest.raises(InvalidInputError, match="matches no files"):
        _pm(str(tmp_path / "nothing*.onnx"), model_dir)
    with pytest.raises(InvalidInputError, match="empty"):
        _pm([], model_dir)
    with pytest.raises(InvalidInputError, match="unsupported type"):
        expand_models([3.5])
    with pytest.raises(InvalidInputError, match="precision"):
        _pm(graph_dir, model_dir, precision="fp64")
    with pytest.raises(InvalidInputError, match="batch_size"):
        _pm(graph_dir, model_dir, batch_size=0)
    with pytest.raises(UnknownGPUError, match="Closest"):
        _pm(graph_dir, model_dir, gpu=["A100", "Z9000"])


def test_garbage_file_is_an_error_row(tmp_path, synthetic_model):
    (tmp_path / "a.onnx").write_bytes(b"\x00garbage")
    write_variants(tmp_path, 1, prefix="b")
    df = _pm(tmp_path, synthetic_model[0])
    assert list(df["model"].map(lambda m: m.rsplit("/", 1)[-1])) == ["a.onnx", "b000.onnx"]
    assert df["error"].iloc[0].startswith("GraphLoadError") and df["error"].iloc[1] == ""


def test_torch_module_next_to_onnx_files(graph_dir, synthetic_model):
    torch = pytest.importorskip("torch")

    class TinyMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(64, 32)
            self.b = torch.nn.Linear(32, 10)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    f = sorted(graph_dir.glob("*.onnx"))[0]
    df = _pm([TinyMLP(), f], synthetic_model[0], example_inputs=(torch.randn(64, 64),))
    assert list(df["model"]) == ["TinyMLP[0]", str(f)]
    assert (df["error"] == "").all()
    assert df["params"].iloc[0] == 64 * 32 + 32 + 32 * 10 + 10
