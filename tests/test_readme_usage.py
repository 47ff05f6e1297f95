"""The README's Python usage blocks run verbatim, in order, in a fresh interpreter (with the bundled example graph as
``model.onnx`` and ``candidates/*.onnx``), and print what they promise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from conftest import REPO_ROOT, RESNET18


def readme_python_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    usage = text[text.index("## Usage"):]
    blocks = re.findall(r"```python\n(.*?)```", usage, flags=re.S)
    return [b for b in blocks if "tcp://" not in b]  # a cluster address: tests/test_batch_cluster.py runs that one


def test_readme_usage_blocks_run_verbatim(tmp_path):
    blocks = readme_python_blocks()
    assert len(blocks) >= 3 and "predict(" in blocks[0] and "refine(" in "".join(blocks)
    shutil.copy(RESNET18, tmp_path / "model.onnx")
    (tmp_path / "candidates").mkdir()
    for name in ("a.onnx", "b.onnx"):
        shutil.copy(RESNET18, tmp_path / "candidates" / name)
    code = "\n".join(blocks) + "\nprint('RESULT', type(p2).__name__, len(df), p.energy_kwh > 0, p2.energy_j > 0)\n"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "RESULT Prediction 6 True True"  # 2 candidates x 3 GPUs
    first = out.stdout.strip().splitlines()[0]  # print(p.energy_kwh, p.interval_j, p.time_s, p.avg_power_w, ...)
    assert re.match(r"^\d\.\d+(e-\d+)? \(\d", first), first
    assert any(line.startswith("124,439,808 parameters, ") for line in out.stdout.splitlines()), out.stdout


def test_readme_main_command_runs_verbatim_in_a_fresh_interpreter():
    """The set-up's main job after its install step (`joulecast predict models/examples/resnet18.onnx ...`), with the
    console script's module (`python -m predictor`) so the checkout under test is the one that runs."""
    import shlex

    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- main-command -->\s*```bash\n(.*?)```", text, flags=re.S).group(1).strip()
    command = block.split("&&")[-1].strip()
    argv = shlex.split(command)
    assert argv[0] == "joulecast" and argv[1] == "predict"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "predictor", *argv[1:]], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("GPU            A100-SXM4-80GB")  # "A100": its stated default variant
    assert re.search(r"^Energy\s+[\d.,]+ kJ = [\d.]+ kWh", out.stdout, flags=re.M)
    assert "torchvision" not in out.stderr
