"""`joulecast refine` through typer's CliRunner on predictor.cli.app."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from predictor.cli import app, main
from predictor.prediction import Prediction

runner = CliRunner()


@pytest.fixture()
def files(tmp_path):
    prior = Prediction(energy_j=2000.0, energy_per_epoch_j=100.0, energy_per_sample_j=0.1, time_s=200.0,
                       time_per_epoch_s=10.0, avg_power_w=10.0, interval_j=(1330.0, 3000.0), gpu="A100",
                       epochs=20.0, log_sigma=0.25)
    p = tmp_path / "prior.json"
    p.write_text(json.dumps(prior.to_dict()))
    e = tmp_path / "epochs.csv"
    e.write_text("energy_j,time_s\n130,12\n90,9\n91,9\n89,9\n90.5,9\n")
    return p, e


def test_refine_json_and_plot(files, tmp_path):
    p, e = files
    png = tmp_path / "out.png"
    res = runner.invoke(app, ["refine", "--prior-json", str(p), "--epochs-csv", str(e), "--total-epochs", "20",
                              "--plot", str(png), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["refinement"]["warmup_epochs"] == [0]
    assert out["refinement"]["epochs_measured"] == 5
    assert out["energy_j"] == pytest.approx(490.5 + 15 * 90.0, rel=0.01)
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    back = Prediction.from_dict(out)
    assert back.refinement["total_epochs_assumed"] == 20


def test_refine_text_unknown_total(files):
    p, e = files
    res = runner.invoke(app, ["refine", "--prior-json", str(p), "--epochs-csv", str(e), "--max-epochs", "40"])
    assert res.exit_code == 0, res.output
    assert "refined total" in res.output and "range 5-40" in res.output
    assert "total_epochs unknown" in res.output


def test_refine_bad_csv_is_one_clear_error(files, tmp_path, capsys):
    p, _ = files
    bad = tmp_path / "bad.csv"
    bad.write_text("joules\n1\n")
    assert main(["refine", "--prior-json", str(p), "--epochs-csv", str(bad)]) == 1
    assert "energy_j" in capsys.readouterr().err
    neg = tmp_path / "neg.csv"
    neg.write_text("energy_j\n100\n-5\n")
    assert main(["refine", "--prior-json", str(p), "--epochs-csv", str(neg)]) == 1
    assert "epoch_energies_j[1] = -5.0" in capsys.readouterr().err


def test_refine_declared_phases_with_phase_priors(files, tmp_path, capsys):
    p, _ = files
    mk = dict(energy_per_sample_j=0.1, time_s=100.0, time_per_epoch_s=10.0, avg_power_w=10.0, gpu="A100",
              epochs=10.0, log_sigma=0.25)
    frozen = Prediction(energy_j=400.0, energy_per_epoch_j=40.0, interval_j=(260.0, 600.0), **mk)
    tune = Prediction(energy_j=1200.0, energy_per_epoch_j=120.0, interval_j=(800.0, 1800.0), **mk)
    pf, pt = tmp_path / "frozen.json", tmp_path / "tune.json"
    pf.write_text(json.dumps(frozen.to_dict()))
    pt.write_text(json.dumps(tune.to_dict()))
    e = tmp_path / "e.csv"
    e.write_text("energy_j\n" + "\n".join(["50"] * 5) + "\n")
    base = ["refine", "--prior-json", str(p), "--epochs-csv", str(e), "--total-epochs", "20", "--phase", "10"]
    res = runner.invoke(app, base + ["--phase-prior-json", str(pf), "--phase-prior-json", str(pt), "--json"])
    assert res.exit_code == 0, res.output
    ref = json.loads(res.output)["refinement"]
    assert ref["phase_priors_used"] and ref["declared_phases"] == [10] and ref["prior_rho"] == 0.5
    assert ref["phase_projected_epoch_energy_j"][1] == pytest.approx(120.0 * 1.25**0.5, rel=0.01)
    res0 = runner.invoke(app, base + ["--phase-prior-json", str(pf), "--phase-prior-json", str(pt),
                                      "--prior-rho", "0"])
    assert res0.exit_code == 0, res0.output
    # frozen phase at its measured 50 J/epoch (+ the fitted drift over its 5 remaining epochs), fine-tune at its prior
    levels = re.search(r"projected kJ/epoch \[([0-9.]+), ([0-9.]+)\]", res0.output)
    assert levels and float(levels[1]) == pytest.approx(0.05, rel=0.005) and float(levels[2]) == 0.12
    assert "prior_rho 0" in res0.output
    # one prior for two phases: one clear error
    assert main(base + ["--phase-prior-json", str(pf)]) == 1
    assert "one Prediction per phase" in capsys.readouterr().err
    assert main(base + ["--phase-prior-json", str(e), "--phase-prior-json", str(pt)]) == 1
    assert "--phase-prior-json" in capsys.readouterr().err
