"""The terminal tables of ``joulecast score``: one per GPU (its ``#`` column ranks that GPU), one number notation
(positional, 3 significant digits, never an exponent), numbers that never split at 80 columns, and the ``!`` flag
only on rows with a warning of their own (the warnings every row of a GPU shares are printed once)."""

from __future__ import annotations

import math
from typing import Any

WARNING_SEP = "; "  # predict_many joins a row's warnings with it


def plain(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits in positional notation, never an exponent: 140, 27.3, 0.00412,
    1,234,000 (one notation for every number of the table)."""
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    if decimals <= 0:
        return f"{round(x, decimals):,.0f}"
    return f"{x:.{decimals}f}"


def si(x: float) -> str:
    """Compact count: 25.6M, 132k, 4.1G."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{plain(x / div)}{suffix}"
    return plain(x)


def duration(seconds: float) -> str:
    for div, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= div:
            return f"{plain(seconds / div)} {unit}"
    return f"{plain(seconds)} s"


def energy_unit(ranked) -> tuple[str, float]:
    """One unit for the whole table so rows compare at a glance."""
    top = ranked["energy_j"].max()
    if not top == top or top >= 0.1 * 3.6e6:  # NaN (all failed) or >= 0.1 kWh
        return "kWh", 3.6e6
    return ("kJ", 1e3) if top >= 1e3 else ("J", 1.0)


def co2_unit(ranked) -> tuple[str, float]:
    """One CO2e unit for the table (g, kg or t), from its largest value."""
    top = ranked["co2_kg"].max()
    if top == top and top >= 1000:
        return "t", 1000.0
    return ("kg", 1.0) if top == top and top >= 1 else ("g", 1e-3)


def common_warnings(frame) -> dict[str, list[str]]:
    """Per GPU, the warnings every scored row of it carries (its alias note, run-level defaults): printed once under
    the table, not flagged.

    Rows carry their warnings joined with ``"; "``, which some warnings also contain: the pieces every row of the GPU
    has are rejoined where they are adjacent, so a warning is not cut in two."""
    ok = frame[frame["error"].astype(str) == ""]
    out: dict[str, list[str]] = {}
    for gpu, part in ok.groupby("gpu", sort=False):
        pieces = [str(w).split(WARNING_SEP) for w in part["warnings"]]
        shared = set.intersection(*(set(p) for p in pieces)) - {""}
        runs: list[list[str]] = []
        prev = False
        for piece in pieces[0]:
            if piece in shared:
                (runs[-1].append(piece) if prev else runs.append([piece]))
            prev = piece in shared
        if runs:
            out[str(gpu)] = [WARNING_SEP.join(r) for r in runs]
    return out


def own_warnings(warnings: Any, common: list[str]) -> str:
    """What remains of a row's warnings once the shared ones are taken out ("" when nothing)."""
    text = str(warnings or "")
    for note in common:
        text = text.replace(note, "")
    return text.replace(WARNING_SEP, "").strip()


def shown_rows(ranked, top: int | None):
    """The rows the table shows: each GPU's block in rank order (the ``#`` column), GPUs in input order, failed
    rows last; ``top`` keeps the N best per GPU."""
    ok = ranked[ranked["error"].astype(str) == ""]
    failed = ranked[ranked["error"].astype(str) != ""]
    order = {g: i for i, g in enumerate(dict.fromkeys(ranked["gpu"]))}
    ok = ok.assign(_g=ok["gpu"].map(order)).sort_values(["_g", "rank"], kind="stable").drop(columns="_g")
    if top is not None:
        ok = ok.groupby("gpu", sort=False).head(top)
    import pandas as pd

    return pd.concat([ok, failed])


def print_table(ranked, top: int | None, caption: str, extra_columns: list[str], console) -> None:
    """One ranked table per GPU (its ``#`` column is that GPU's ranking), the warnings every row of a GPU shares once,
    each failure on one line (see the module docstring)."""
    shown = shown_rows(ranked, top)
    common = common_warnings(ranked)
    flagged = [bool(own_warnings(w, common.get(str(g), []))) for w, g in zip(shown["warnings"], shown["gpu"])]
    shown = shown.assign(_flag=flagged)
    has_notes = any(flagged) or bool((shown["error"].astype(str) != "").any())
    gpus = list(dict.fromkeys(shown["gpu"]))
    for i, gpu in enumerate(gpus):
        block = shown[shown["gpu"] == gpu]
        if i:
            console.print()
        console.print(_gpu_table(block, ranked, gpu, extra_columns, has_notes))
    from predictor.cli._common import styled

    console.print(caption, soft_wrap=True)
    for gpu, notes in common.items():
        for note in notes:
            console.print(styled(f"every {gpu} row: ", "yellow", note), soft_wrap=True)
    if has_notes:
        console.print("! = warnings of that row (see --out or --json); x = failed (below)", soft_wrap=True)
    failed = shown[shown["error"].astype(str) != ""].drop_duplicates(subset=["model", "error"])
    for _, r in failed.iterrows():
        console.print(styled("failed ", "red", f"{r['name']}: {r['error']}"), soft_wrap=True)


def _gpu_table(block, ranked, gpu: str, extra_columns: list[str], has_notes: bool):
    """The table of one GPU's rows: numbers in one notation that never split, a long model name folds."""
    from rich import box
    from rich.table import Table

    from predictor.cli._common import styled

    unit, div = energy_unit(ranked)
    co2 = co2_unit(ranked) if "co2_kg" in ranked else None
    cols = ["#", "model", f"energy {unit}", f"90 % {unit}", "time", "W", "params"]
    cols += [f"CO2e {co2[0]}"] if co2 else []
    cols += extra_columns + (["!"] if has_notes else [])
    table = Table(title=f"{gpu}: lowest forecast training energy first", box=box.SIMPLE_HEAD,
                  pad_edge=False, show_edge=False, padding=(0, 1, 0, 0), title_justify="left")
    for c in cols:
        table.add_column(c, justify="left" if c in ("model", "!") else "right", no_wrap=c != "model",
                         overflow="fold" if c == "model" else "ellipsis", min_width=8 if c == "model" else None)
    for _, r in block.iterrows():
        if r["error"]:  # the message goes below the tables on one line: a narrow column would fold it
            table.add_row(styled("x", "red"), r["name"], *["-"] * (len(cols) - 2))
            continue
        cells = [str(r["rank"]), r["name"], plain(r["energy_j"] / div),
                 f"{plain(r['interval_low_j'] / div, 2)}-{plain(r['interval_high_j'] / div, 2)}",
                 duration(r["time_s"]), f"{r['avg_power_w']:.0f}", si(r["params"])]
        cells += [plain(r["co2_kg"] / co2[1])] if co2 else []
        cells += [plain(r[c], 4) if isinstance(r[c], float) else str(r[c]) for c in extra_columns]
        cells += ["!" if r["_flag"] else ""] if has_notes else []
        table.add_row(*cells)
    return table
