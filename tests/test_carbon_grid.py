"""Carbon/cost: the offline grid table, region lookup with close matches, Prediction.co2_kg / .cost."""

import csv
from pathlib import Path

import pytest

from featurize.errors import InvalidInputError, JoulecastError
from predictor import Prediction
from predictor.carbon import co2_kg, cost, grid_intensity, list_regions, resolve_intensity

TABLE = Path(__file__).resolve().parents[1] / "predictor" / "data" / "grid_intensity.csv"


def _pred(energy_j=3.6e6 * 10):  # 10 kWh
    return Prediction(
        energy_j=energy_j,
        energy_per_epoch_j=energy_j,
        energy_per_sample_j=1.0,
        time_s=1.0,
        time_per_epoch_s=1.0,
        avg_power_w=1.0,
        interval_j=(1.0, 2.0),
        gpu="X",
    )


def test_table_has_source_and_year_on_every_row():
    rows = list(csv.DictReader(TABLE.open()))
    assert len(rows) == len(list_regions()) >= 30
    for r in rows:
        assert r["source"].strip() and 2015 <= int(r["year"]) <= 2030
        assert 0 < float(r["g_co2e_per_kwh"]) < 1200
    codes = [r["region"] for r in rows]
    assert len(codes) == len(set(codes))
    for needed in (
        "world",
        "eu",
        "us",
        "cn",
        "in",
        "gb",
        "fr",
        "de",
        "se",
        "no",
        "pl",
        "jp",
        "au",
        "ca",
        "br",
    ):
        assert needed in codes


def test_lookup_by_code_name_alias_and_cloud_region():
    assert grid_intensity("fr").g_co2e_per_kwh == 56
    assert grid_intensity("France").region == "fr"
    assert grid_intensity("UK").region == "gb"
    assert grid_intensity("united_kingdom").region == "gb"
    assert grid_intensity("us-east-1").region == "us-va"
    assert grid_intensity("europe-west4").region == "nl"
    assert grid_intensity(" US-CA ").region == "us-ca"


def test_unknown_region_suggests_close_matches():
    with pytest.raises(InvalidInputError, match="Did you mean") as exc:
        grid_intensity("frnace")
    assert "france" in str(exc.value)
    assert isinstance(exc.value, JoulecastError)
    with pytest.raises(InvalidInputError, match="grid_g_per_kwh"):
        grid_intensity("atlantis")


def test_prediction_co2_and_cost():
    p = _pred()
    assert p.co2_kg(grid_g_per_kwh=100) == pytest.approx(1.0)
    assert p.co2_kg(region="fr") == pytest.approx(0.56)
    assert p.co2_kg(region="fr", pue=1.5) == pytest.approx(0.84)
    assert p.co2_kg() == pytest.approx(10 * grid_intensity("world").g_co2e_per_kwh / 1000)
    assert p.cost(0.25) == pytest.approx(2.5)
    assert p.cost(0.25, pue=1.2) == pytest.approx(3.0)


def test_bad_arguments_raise_project_errors():
    with pytest.raises(InvalidInputError, match="pue"):
        co2_kg(1.0, grid_g_per_kwh=100, pue=0.5)
    with pytest.raises(InvalidInputError, match="not both"):
        co2_kg(1.0, grid_g_per_kwh=100, region="fr")
    with pytest.raises(InvalidInputError, match="price_per_kwh"):
        cost(1.0, -1)
    with pytest.raises(InvalidInputError, match="grid_g_per_kwh"):
        co2_kg(1.0, grid_g_per_kwh=float("nan"))


def test_default_is_stated():
    value, text = resolve_intensity()
    assert value == grid_intensity("world").g_co2e_per_kwh
    assert "default" in text and "annual average" in text
