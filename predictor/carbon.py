"""Carbon and cost of a forecast run: grid carbon intensity by region, CO2 and money from kWh.

Public entry points: :func:`grid_intensity` (region name/code/alias/cloud region -> :class:`GridIntensity`),
:func:`list_regions` (the whole offline table), :func:`co2_kg` and :func:`cost` (pure arithmetic on kWh), and
:data:`DEFAULT_REGION` (``"world"``, used when neither an intensity nor a region is given).

The table ``predictor/data/grid_intensity.csv`` holds **annual average** carbon intensities of electricity
generation (g CO2e per kWh) with the source and year on every row (Ember 2023 country figures, US EIA 2022
state figures; entered from the published reviews, rounded). Annual averages ignore the hour-by-hour mix: a
run at night on a wind-heavy grid can differ by 2x. Cloud region codes (``us-east-1``, ``europe-west4``, ...) are
aliases of the country/state that hosts the data centre, not provider-specific (market-based) figures.
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
from dataclasses import dataclass
from importlib import resources

from featurize.errors import InvalidInputError

DEFAULT_REGION = "world"
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class GridIntensity:
    """One row of the grid table: ``g_co2e_per_kwh`` is an annual average for ``year`` from ``source``."""

    region: str
    name: str
    g_co2e_per_kwh: float
    year: int
    source: str
    aliases: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for humans, e.g. ``France: 56 g CO2e/kWh (2023 annual average; Ember Yearly Electricity Data
        2023)``: "annual average" once, the source's own note of it dropped."""
        source = self.source.replace(" (annual average)", "").replace("(annual average, ", "(")
        return f"{self.name}: {self.g_co2e_per_kwh:g} g CO2e/kWh ({self.year} annual average; {source})"


def _norm(key: str) -> str:
    return " ".join(str(key).strip().lower().replace("_", " ").split())


@functools.lru_cache(maxsize=1)
def list_regions() -> tuple[GridIntensity, ...]:
    """Every row of the offline grid-intensity table, in file order."""
    text = resources.files("predictor").joinpath("data/grid_intensity.csv").read_text(encoding="utf-8")
    rows = []
    for rec in csv.DictReader(text.splitlines()):
        rows.append(
            GridIntensity(
                region=rec["region"],
                name=rec["name"],
                g_co2e_per_kwh=float(rec["g_co2e_per_kwh"]),
                year=int(rec["year"]),
                source=rec["source"],
                aliases=tuple(a for a in rec["aliases"].split(";") if a),
            )
        )
    return tuple(rows)


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, GridIntensity]:
    idx: dict[str, GridIntensity] = {}
    for row in list_regions():
        for key in (row.region, row.name, *row.aliases):
            idx.setdefault(_norm(key), row)
            idx.setdefault(_norm(key).replace(" ", "-"), row)
    return idx


def grid_intensity(region: str) -> GridIntensity:
    """Look up a region by code (``"fr"``, ``"us-ca"``), name (``"France"``) or alias (``"us-east-1"``).

    Raises:
        InvalidInputError: unknown region; the message lists close names and how to pass a number instead.
    """
    if not isinstance(region, str) or not region.strip():
        raise InvalidInputError(f"region must be a non-empty string such as 'fr' or 'us-ca', got {region!r}")
    idx = _index()
    key = _norm(region)
    for candidate in (key, key.replace(" ", "-"), key.replace("-", " ")):
        if candidate in idx:
            return idx[candidate]
    close = difflib.get_close_matches(key, list(idx), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(repr(c) for c in close)}?" if close else ""
    raise InvalidInputError(
        f"unknown grid region {region!r}.{hint} Known regions: "
        f"{', '.join(r.region for r in list_regions())}. Or pass your grid's intensity directly with "
        f"grid_g_per_kwh= (CLI: --grid-g-per-kwh)."
    )


def resolve_intensity(grid_g_per_kwh: float | None = None, region: str | None = None) -> tuple[float, str]:
    """The intensity to use (g CO2e/kWh) and a sentence saying where it came from.

    An explicit ``grid_g_per_kwh`` wins; then ``region``; else the world average (:data:`DEFAULT_REGION`).
    Giving both is an error (ambiguous).
    """
    if grid_g_per_kwh is not None and region is not None:
        raise InvalidInputError("give either grid_g_per_kwh or region, not both")
    if grid_g_per_kwh is not None:
        value = float(grid_g_per_kwh)
        if not math.isfinite(value) or value < 0:
            raise InvalidInputError(f"grid_g_per_kwh must be a finite number >= 0, got {grid_g_per_kwh!r}")
        return value, f"user-supplied grid intensity {value:g} g CO2e/kWh"
    row = grid_intensity(region if region is not None else DEFAULT_REGION)
    prefix = "" if region is not None else "default (no region given) "
    return row.g_co2e_per_kwh, prefix + row.describe()


def _check_pue(pue: float) -> float:
    pue = float(pue)
    if not math.isfinite(pue) or pue < 1.0:
        raise InvalidInputError(f"pue (power usage effectiveness) must be >= 1.0, got {pue!r}")
    return pue


def co2_kg(
    energy_kwh: float, *, grid_g_per_kwh: float | None = None, region: str | None = None, pue: float = 1.0
) -> float:
    """Kilograms of CO2e for ``energy_kwh`` of GPU energy, scaled by the facility's ``pue`` (>= 1)."""
    intensity, _ = resolve_intensity(grid_g_per_kwh, region)
    return float(energy_kwh) * _check_pue(pue) * intensity / 1000.0


def cost(energy_kwh: float, price_per_kwh: float, *, pue: float = 1.0) -> float:
    """Money for ``energy_kwh`` at ``price_per_kwh`` (any currency; the result is in the same one)."""
    price = float(price_per_kwh)
    if not math.isfinite(price) or price < 0:
        raise InvalidInputError(f"price_per_kwh must be a finite number >= 0, got {price_per_kwh!r}")
    return float(energy_kwh) * _check_pue(pue) * price
