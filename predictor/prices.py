"""GPU rental prices from the packaged snapshot: which instance a job on N GPUs rents, and what it costs per hour.

Public entry points: :func:`price_table` (the packaged offers), :func:`price_source` (one line naming the source,
for every printed price), :func:`filter_offers` (by GPU, cloud and location) and :func:`cheapest_offers` (per GPU
and GPU count, the cheapest instance that holds that many GPUs).

The table ``predictor/data/cloud_prices.csv`` is converted at build time from SkyPilot's public catalog
(``python -m training_data.prices``; provenance and licence in ``predictor/data/cloud_prices.md``). Nothing here
reads ``../shared`` or the network. Prices are per instance-hour and cover all the instance's GPUs: a job on fewer
GPUs than the instance holds pays for the whole instance, and the offer says so (``idle_gpus``).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, Iterable

import numpy as np
import pandas as pd

from featurize.errors import InvalidInputError

EU27 = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())
"""Member states for the grid region ``eu`` (EU-27)."""


@functools.lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    with resources.files("predictor").joinpath("data/cloud_prices.csv").open("r", encoding="utf-8") as fh:
        frame = pd.read_csv(fh, dtype={"catalog_commit": str, "countries": str, "mapping_note": str},
                            keep_default_na=False, na_values={"spot_usd_per_hour": [""]})
    return frame


def price_table() -> pd.DataFrame:
    """Every packaged offer (a copy): cloud, instance_type, accelerator (the catalog's name), gpu (the GPU
    table's), gpu_table, gpus_per_instance, price_usd_per_hour (on-demand, whole instance), spot_usd_per_hour,
    countries (``;``-joined ISO codes, '' = not stated), region, mapping_note, catalog_commit."""
    return _table().copy()


@functools.lru_cache(maxsize=1)
def price_source() -> str:
    """One line naming the snapshot: shown beside every price."""
    commits = ", ".join(f"{c} {h}" for c, h in _table().groupby("cloud")["catalog_commit"].first().items())
    return (f"indicative on-demand list prices from SkyPilot's cloud catalog (catalog commits {commits}; "
            "no snapshot date; see predictor/data/cloud_prices.md)")


def clouds() -> list[str]:
    """Cloud names in the snapshot."""
    return sorted(_table()["cloud"].unique())


def region_countries(region: str) -> tuple[frozenset[str] | None, str]:
    """ISO country codes a grid region (``predictor.carbon`` name, code or alias) covers, and a note; ``None`` for
    the world (no filter). A US state matches the offers listed in the US (the catalog gives countries, not states)."""
    from predictor.carbon import grid_intensity

    row = grid_intensity(region)
    code = row.region
    if code == "world":
        return None, ""
    if code == "eu":
        return EU27, ""
    country = code.split("-")[0].upper()
    note = (f"region {region!r} ({row.name}): offers are located by country only, so every offer listed in "
            f"{country} matches" if "-" in code else "")
    return frozenset({country}), note


def _as_names(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def filter_offers(*, gpus: Iterable[str] | None = None, cloud: str | Iterable[str] | None = None,
                  region: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Offers for these GPU-table names (None: all), clouds and grid region, and notes on what was left out.

    Raises:
        InvalidInputError: an unknown cloud (the message lists the known ones) or region (from ``predictor.carbon``).
    """
    table, notes = _table(), []
    wanted = _as_names(cloud)
    if wanted is not None:
        known = clouds()
        bad = [c for c in wanted if str(c).lower() not in known]
        if bad:
            raise InvalidInputError(f"cloud {', '.join(map(repr, bad))} is not in the price snapshot; known clouds: "
                                    f"{', '.join(known)}.")
        table = table[table["cloud"].isin([str(c).lower() for c in wanted])]
    if gpus is not None:
        table = table[table["gpu"].isin(list(gpus))]
    if region is not None:
        countries, note = region_countries(region)
        if note:
            notes.append(note)
        if countries is not None:
            listed = table["countries"].str.split(";").map(lambda cs: bool(countries & set(cs)))
            unknown = int((table["countries"] == "").sum())
            if unknown:
                notes.append(f"{unknown} offers with no stated location left out for region {region!r}.")
            table = table[listed]
    return table.reset_index(drop=True), notes


def cheapest_offers(offers: pd.DataFrame, gpu_names: Iterable[str], n_gpus: Iterable[int]) -> pd.DataFrame:
    """Per (GPU name, GPU count), the cheapest offer whose instance holds at least that many GPUs (the whole
    instance is paid for); NaN price where none does. Columns: gpu, n_gpus, cloud, instance_type,
    gpus_per_instance, price_usd_per_hour, idle_gpus, countries, mapping_note."""
    keys = pd.DataFrame({"gpu": list(gpu_names), "n_gpus": np.asarray(list(n_gpus), int)})
    keys = keys.drop_duplicates(ignore_index=True)
    ranked = offers.sort_values(["price_usd_per_hour", "gpus_per_instance", "cloud", "instance_type"])
    by_gpu = {g: grp for g, grp in ranked.groupby("gpu", sort=False)}
    rows = []
    for gpu, n in zip(keys["gpu"], keys["n_gpus"]):
        grp = by_gpu.get(gpu)
        fit = grp[grp["gpus_per_instance"] >= n] if grp is not None else None
        if fit is None or fit.empty:
            rows.append({"gpu": gpu, "n_gpus": n, "price_usd_per_hour": np.nan})
            continue
        best = fit.iloc[0]
        rows.append({"gpu": gpu, "n_gpus": n, "cloud": best["cloud"], "instance_type": best["instance_type"],
                     "gpus_per_instance": int(best["gpus_per_instance"]),
                     "price_usd_per_hour": float(best["price_usd_per_hour"]),
                     "idle_gpus": int(best["gpus_per_instance"]) - int(n), "countries": best["countries"],
                     "mapping_note": best["mapping_note"]})
    cols = ["gpu", "n_gpus", "cloud", "instance_type", "gpus_per_instance", "price_usd_per_hour", "idle_gpus",
            "countries", "mapping_note"]
    return pd.DataFrame(rows).reindex(columns=cols)
