"""refine: measured epochs in another unit (kWh or Wh in the joules column) are named as such; the CLI never
prints 'phase change at None'."""

from __future__ import annotations

import json

import pytest

from predictor import Prediction, refine
from predictor.cli import main

PRIOR = Prediction(energy_j=7.2e6, energy_per_epoch_j=7.2e5, energy_per_sample_j=14.4, time_s=3600.0,
                   time_per_epoch_s=360.0, avg_power_w=2000.0, interval_j=(3.6e6, 1.44e7), gpu="A100-SXM4-80GB",
                   epochs=10, log_sigma=0.42)


@pytest.mark.parametrize("factor", [1 / 3.6e6, 1 / 3600, 1e-6, 10.0 * 1000])  # kWh, Wh, 1e-6, a cumulative sum x1000
def test_a_unit_slip_is_named(factor):
    e = PRIOR.energy_per_epoch_j * factor
    r = refine(PRIOR, epoch_energies_j=[e * 1.01, e, e * 0.99], total_epochs=10)
    notes = [w for w in r.warnings if "check the unit" in w]
    assert len(notes) == 1 and "3.6e6" in notes[0]
    assert f"{factor:.3g}x" in notes[0]
    assert not any("-100%" in w for w in r.warnings)


@pytest.mark.parametrize("factor", [0.5, 0.9, 1.3, 20.0])
def test_plausible_levels_get_no_unit_warning(factor):
    e = PRIOR.energy_per_epoch_j * factor
    r = refine(PRIOR, epoch_energies_j=[e, e, e], total_epochs=10)
    assert not any("check the unit" in w for w in r.warnings)


def test_cli_says_no_phase_change_instead_of_none(tmp_path, capsys):
    prior = tmp_path / "p.json"
    prior.write_text(json.dumps(PRIOR.to_dict()))
    epochs = tmp_path / "e.csv"
    epochs.write_text("energy_j\n720000\n719000\n721000\n")
    assert main(["refine", "--prior-json", str(prior), "--epochs-csv", str(epochs), "--total-epochs", "10"]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "no phase change" in out and "warm-up none" in out
