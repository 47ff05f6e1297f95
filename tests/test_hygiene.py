"""Install and output hygiene (issue 32 item 12): no torchvision chatter on a torch-module predict, the [torch] extra
as a range, a CPU-wheel hint, "annual average" once, module paths in --layers, integer epoch ticks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO_ROOT, RESNET18
from predictor.cli import main


def test_a_torch_module_predict_prints_no_torchvision_lines():
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    code = ("import torch\nfrom predictor import predict\n"
            "m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU())\n"
            "p = predict(m, example_inputs=torch.ones(1, 3, 32, 32), gpu='L4', batch_size=8, samples_per_epoch=100)\n"
            "print('RESULT', p.energy_j > 0)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "RESULT True" in out.stdout, out.stderr[-2000:]
    assert "torchvision" not in out.stderr + out.stdout


def test_pyproject_takes_a_torch_range_and_lists_each_dependency_once():
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    torch_spec = next(d for d in meta["optional-dependencies"]["torch"] if d.startswith("torch"))
    assert "==" not in torch_spec and ">=" in torch_spec
    names = [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in meta["dependencies"]]
    assert len(names) == len(set(names)), names


def test_readme_keeps_two_setup_commands_and_hints_at_the_cpu_wheel():
    text = (REPO_ROOT / "README.md").read_text()
    setup = text[text.index("## Set-up"):text.index("## Usage")]
    assert setup.count("```bash") == 2
    assert "download.pytorch.org/whl/cpu" in setup
    assert "torch==2.13.0" in setup  # the test command keeps its pin


def test_the_co2_line_says_annual_average_once(capsys):
    from predictor.carbon import list_regions

    assert all(r.describe().count("annual average") == 1 for r in list_regions())
    assert main(["predict", str(RESNET18), "-g", "L4", "-b", "32", "-n", "1000", "--region", "fr"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("CO2e"))
    assert line.count("annual average") == 1


def test_layers_show_module_paths_where_parameter_names_carry_them(capsys):
    from predictor import predict

    p = predict(str(RESNET18), gpu="L4", batch_size=32, samples_per_epoch=1000)
    convs = p.layers[p.layers["op_type"] == "Conv"]
    assert set(convs["module"]) >= {"stem.0", "layers.0.conv1", "layers.2.down.0"}
    assert (p.layers.loc[p.layers["op_type"] == "Relu", "module"] == "").all()  # no parameter: the node name
    assert main(["predict", str(RESNET18), "-g", "L4", "-b", "32", "-n", "1000", "--layers", "5"]) == 0
    out = capsys.readouterr().out.split("Top 5 layers")[1]
    assert re.search(r"^\s+(stem|layers)\.\S+\s+Conv", out, flags=re.M) and "node_Conv" not in out


def test_the_refine_plot_has_whole_epoch_ticks():
    from predictor import Prediction
    from predictor.cli.refine import refine_figure, refinement_path

    prior = Prediction(energy_j=1e5, energy_per_epoch_j=1e4, energy_per_sample_j=0.2, time_s=1e3,
                       time_per_epoch_s=100.0, avg_power_w=100.0, interval_j=(6e4, 1.6e5), gpu="L4", epochs=10,
                       log_sigma=0.3)
    steps = refinement_path(prior, [1.1e4, 1.0e4, 1.02e4], None, total_epochs=10)
    fig = refine_figure(prior, steps)
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
