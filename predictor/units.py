"""One parser for measured quantities in users' tables (``retrain`` runs, ``refine`` epochs): a plain number in
the column's unit, or a number with a unit -- ``"9.8 kJ"``, ``"2.5 kWh"``, ``"95 min"``, ``"300 W"``."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["UNIT_FACTORS", "parse_quantity", "units_hint", "row_label"]

UNIT_FACTORS: dict[str, dict[str, float]] = {
    "energy_j": {"j": 1.0, "kj": 1e3, "mj": 1e6, "wh": 3600.0, "kwh": 3.6e6},
    "time_s": {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0},
    "power_limit_w": {"w": 1.0, "kw": 1e3},
}
"""Per column (named with its unit), the units a cell may carry and their factor to that unit."""
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")


def parse_quantity(raw: Any, column: str) -> float:
    """A cell as a float in ``column``'s unit (``"12.5 kJ"`` in ``energy_j`` -> 12500.0); NaN when unparseable,
    empty, or carrying a unit the column does not take."""
    if isinstance(raw, (int, float, np.integer, np.floating)) and not isinstance(raw, bool):
        return float(raw)
    m = _QUANTITY.match(str(raw)) if raw is not None else None
    if not m:
        return float("nan")
    factor = UNIT_FACTORS.get(column, {}).get(m.group(2).lower(), None) if m.group(2) else 1.0
    return float(m.group(1)) * factor if factor is not None else float("nan")


def units_hint(column: str) -> str:
    """`` or a number with a unit (j, kj, ...)`` for a column that takes units, else ``""``."""
    return f" or a number with a unit ({', '.join(UNIT_FACTORS[column])})" if column in UNIT_FACTORS else ""


def row_label(origin: str, idx: int, is_csv: bool) -> str:
    """Where data row ``idx`` (0-based) is, in one base: the line of a CSV file as an editor numbers it (the header
    is line 1), else the 1-based row."""
    return f"{origin}: line {idx + 2}" if is_csv else f"{origin}: row {idx + 1}"
