"""N GPUs and token budgets through the CLI (`--n-gpus`, `--parallelism`, `--tokens`) and ``predict_many``: the
same numbers as ``predict``, the same refusals."""

from __future__ import annotations

import json
import warnings

import onnx
import pytest

from predictor import predict, predict_many
from predictor.cli import main

from test_parallel import GPT, token_graph


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    d = tmp_path_factory.mktemp("graphs")
    onnx.save(token_graph(1024), str(d / "tok.onnx"))
    onnx.save(GPT, str(d / "gpt.onnx"))
    return d


def test_cli_predict_n_gpus_fsdp_tokens_json(graphs, capsys):
    argv = ["predict", str(graphs / "tok.onnx"), "--gpu", "H100-SXM5-80GB", "--batch-size", "4", "--precision",
            "bf16", "--n-gpus", "8", "--parallelism", "fsdp", "--tokens", "2e9", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_gpus"] == 8 and out["parallelism"] == "fsdp" and out["samples_per_epoch"] == 1_953_125
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = predict(str(graphs / "tok.onnx"), gpu="H100-SXM5-80GB", batch_size=4, precision="bf16", n_gpus=8,
                    parallelism="fsdp", tokens=2e9)
    assert out["energy_j"] == pytest.approx(p.energy_j) and out["time_s"] == pytest.approx(p.time_s)


def test_cli_summary_says_per_gpu(graphs, capsys):
    assert main(["predict", str(graphs / "gpt.onnx"), "--gpu", "A100-SXM4-80GB", "--n-gpus", "4",
                 "--samples-per-epoch", "1000"]) == 0
    out = capsys.readouterr().out
    assert "x 4 (ddp)" in out and "per GPU" in out and "global batch is" in out


@pytest.mark.parametrize("extra, says", [
    (["--n-gpus", "2", "--parallelism", "tp"], "parallelism='tp' is not supported"),
    (["--n-gpus", "0"], "n_gpus=0 is out of range"),
    (["--tokens", "1e9"], "no sequence axis"),
])
def test_cli_refusals_are_one_error_exit_1(graphs, extra, says, capsys):
    assert main(["predict", str(graphs / "gpt.onnx"), "--gpu", "A100", *extra]) == 1
    err = capsys.readouterr().err
    assert says in " ".join(err.split()) and "Traceback" not in err


def test_predict_many_matches_predict_with_n_gpus_and_tokens(graphs):
    files = [str(graphs / "tok.onnx"), str(graphs / "gpt.onnx")]
    df = predict_many(files, gpu=["H100-SXM5-80GB", "RTX-4090"], batch_size=4, tokens=1e8, n_gpus=4,
                      parallelism="fsdp", precision="bf16", n_jobs=1, dims={"seq": 512})
    assert list(df["n_gpus"]) == [4] * 4
    tok = df[df["name"] == "tok"]
    assert (tok["samples_per_epoch"] == 97_657).all()  # 1e8 / 1024, rounded up
    assert (df[df["name"] == "gpt"]["samples_per_epoch"] == 195_313).all()  # no sequence axis: dims['seq']
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row in df.itertuples():
            p = predict(row.model, gpu=row.gpu, batch_size=4, tokens=1e8, n_gpus=4, parallelism="fsdp",
                        precision="bf16", dims={"seq": 512})
            assert row.energy_j == pytest.approx(p.energy_j, rel=1e-9)
            assert row.time_s == pytest.approx(p.time_s, rel=1e-9)
            assert row.memory_bytes == pytest.approx(p.memory_bytes, rel=1e-9)
            assert "global batch is 16" in row.warnings


def test_predict_many_error_row_for_a_graph_without_sequence_axis(graphs):
    df = predict_many([str(graphs / "gpt.onnx")], gpu="A100", batch_size=4, tokens=1e8, n_jobs=1)
    assert "no sequence axis" in df["error"].iloc[0]


def test_cli_score_takes_the_flags(graphs, capsys):
    assert main(["score", str(graphs / "tok.onnx"), "-g", "H100-SXM5-80GB", "-b", "4", "--tokens", "2e9",
                 "--n-gpus", "2", "--precision", "bf16", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    assert rec["n_gpus"] == 2 and rec["samples_per_epoch"] == 1_953_125
