"""CLI usage errors: one line on stderr and exit code 2 (not a traceback); --version; --help examples."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO_ROOT, RESNET18 as _RESNET18
from predictor.cli import main

RESNET18 = str(_RESNET18)


@pytest.mark.parametrize("argv, says", [
    (["--bogus"], "No such option: --bogus"),
    (["predict", RESNET18, "--gpu", "A100", "--bogus"], "No such option: --bogus"),
    (["predict", RESNET18], "Missing option '--gpu'"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["predict", RESNET18, "--gpu", "A100", "--epochs", "ten"], "'--epochs'"),
    (["score", "--gpu", "A100", "-n", "10"], "Missing argument"),
])
def test_usage_error_is_one_line_on_stderr_with_exit_2(argv, says, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert says in lines[0] and "--help" in lines[0] and "Traceback" not in err


def test_usage_error_in_a_real_process():
    # the console script path: `python -m predictor` with an unknown option, no Python traceback
    out = subprocess.run([sys.executable, "-m", "predictor", "predict", RESNET18, "--nope"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "No such option: --nope" in out.stderr


def test_bare_command_shows_the_commands_and_exits_2(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    text = out + err
    assert "Traceback" not in text
    for command in ("predict", "score", "refine", "retrain", "gpus", "info"):
        assert command in text


def test_version_prints_package_and_model_version(capsys):
    from importlib.metadata import version

    from predictor.model.loaded import load_model

    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.strip() == f"joulecast {version('joulecast')} (model {load_model().name} {load_model().version})"


def test_project_error_is_still_exit_1(capsys):
    assert main(["predict", RESNET18, "--gpu", "NoSuchGPU 9000", "--batch-size", "8"]) == 1
    _, err = capsys.readouterr()
    assert "Unknown GPU" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["predict", "score", "refine", "retrain", "gpus", "info"])
def test_every_command_help_has_examples(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples:" in out
    assert f"joulecast {command} " in out.split("Examples:")[1] or f"joulecast {command}\n" in out.split("Examples:")[1]


def test_retrain_help_documents_the_csv_schema(capsys, monkeypatch):
    from predictor.retraining.measurements import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

    monkeypatch.setenv("COLUMNS", "200")
    assert main(["retrain", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for col in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS):
        assert col in out, col
    assert "WHOLE run" in out and "joules" in out and "comma" in out
