"""`joulecast advise FILE -n N -e E`: which GPU, precision, batch and GPU count to rent, priced and ranked.

Thin layer over :func:`predictor.advise.advise`: prints a short table (the best option per GPU and GPU count), a
character Pareto plot (time vs cost, energy as colour, the front lettered), what was dropped and why, and the price
source; ``--pareto FILE.png`` writes the plot as an image, ``--out`` the whole table, ``--json`` records. Every text
that comes from the user, a path or a message is printed verbatim (rich ``Text``, never markup).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

import typer

from featurize.errors import InvalidInputError
from predictor.cards import fmt_s as _fmt_s
from predictor.cli._common import parse_dims

_UNITS_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"24h"``, ``"90min"``, ``"2d"``, ``"3600"`` (seconds) -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(text).lower())
    if not m or (m.group(2) and m.group(2).rstrip("s") not in {u.rstrip("s") for u in _UNITS_S}):
        raise InvalidInputError(f"--deadline {text!r}: give a duration such as 24h, 90min, 2d or 3600 (seconds).")
    unit = m.group(2).rstrip("s") if m.group(2) not in ("s", "") else "s"
    factor = next(v for k, v in _UNITS_S.items() if k.rstrip("s") == unit or k == unit)
    return float(m.group(1)) * factor


def _money(x: float) -> str:
    return "-" if x != x else (f"${x:,.0f}" if x >= 100 else f"${x:,.2f}" if x >= 0.01 else f"${x:.2g}")


def shown_rows(ranked, top: int):
    """The best option per (GPU, GPU count), best first, at most ``top``."""
    return ranked.drop_duplicates(subset=["gpu", "n_gpus"]).head(top)


_SHOWN = {"cost": ("cost_usd", "cost_low_usd", "cost_high_usd"), "time": ("time_s", "time_low_s", "time_high_s"),
          "energy": ("energy_j", "energy_low_j", "energy_high_j"), "co2": ("co2_kg", "co2_low_kg", "co2_high_kg")}


def _value(objective: str, x: float) -> str:
    if objective == "cost":
        return _money(x)
    if objective == "time":
        return _fmt_s(x)
    return f"{x / 3.6e6:.3g} kWh" if objective == "energy" else f"{x:.3g} kg"


def _table(shown, letters: dict, objective: str):
    from rich.table import Table
    from rich.text import Text

    multi = bool((shown["n_gpus"] > 1).any())
    key, lo, hi = _SHOWN[objective]
    table = Table(title=Text(f"best option per GPU, ranked by {objective} (90 % interval)"), title_justify="left")
    cols = ["#", "GPU", *(["n"] if multi else []), "prec", "batch", "cost", "time", "kWh", f"90 % {objective}",
            "front"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("GPU", "prec") else "right", overflow="fold")
    for i, r in shown.iterrows():
        cells = [str(r["rank"]), r["gpu"], *([str(int(r["n_gpus"]))] if multi else []), r["precision"],
                 str(int(r["batch_size"])), _money(r["cost_usd"]), _fmt_s(r["time_s"]), f"{r['energy_j'] / 3.6e6:.3g}",
                 f"{_value(objective, r[lo])}-{_value(objective, r[hi])}", letters.get(i, "")]
        table.add_row(*[Text(str(c)) for c in cells])
    return table


def offer_lines(shown) -> list[str]:
    """One line per shown option: the instance it rents (or your prices), CO2, and its notes."""
    out = []
    for _, r in shown.iterrows():
        rent = (f"{r['cloud']} {r['instance_type']} ({int(r['gpus_per_instance'])} GPU) at "
                f"{_money(r['price_usd_per_hour'])}/h" if isinstance(r.get("cloud"), str) else "your prices")
        if r.get("electricity_usd") == r.get("electricity_usd"):  # not NaN: own electricity price
            rent += f", electricity {_money(r['electricity_usd'])}"
        extra = [str(r.get("note") or ""), f"at risk: {r['at_risk']} (the interval passes it)" if r["at_risk"] else ""]
        if r.get("optimal_power_limit_w") == r.get("optimal_power_limit_w"):
            extra.append(f"energy-optimal power cap {r['optimal_power_limit_w']:.0f} W")
        out.append(f"  #{r['rank']}: {rent}; CO2e {r['co2_kg']:.3g} kg" + "".join(f"; {x}" for x in extra if x))
    return out


def render(ranked, *, top: int, file_label: str, pareto: Path | None) -> None:
    """Print the table, the tie, the character Pareto plot, the dropped options and the sources."""
    from rich.console import Console
    from rich.text import Text

    from predictor.advise import describe
    from predictor.advise_plot import energy_legend, front_labels, text_pareto

    con = Console(highlight=False)
    a = ranked.attrs
    con.print(Text(f"{file_label}: {len(ranked)} options that fit and pass the limits; the table shows the best per "
                   "GPU and GPU count (--out/--json for all)."))
    if len(ranked):
        shown = shown_rows(ranked, top)
        con.print(_table(shown, front_labels(ranked), a["objective"]))
        for line in offer_lines(shown):
            con.print(Text(line))
    if a.get("tie"):
        con.print(Text(a["tie"], style="yellow"))
    lines = text_pareto(ranked)
    if lines:
        con.print(Text("Time vs cost (letters: the time-cost front; " + energy_legend(ranked) + "):"))
        for line in lines:
            con.print(Text.assemble(*line))
        for i, letter in front_labels(ranked).items():
            r = ranked.loc[i]
            con.print(Text(f"  {letter} #{r['rank']} {describe(r)}: {_money(r['cost_usd'])}, {_fmt_s(r['time_s'])}, "
                           f"{r['energy_j'] / 3.6e6:.3g} kWh"))
    _print_dropped(con, a["dropped"])
    for note in a.get("notes", []):
        con.print(Text(f"note: {note}"))
    con.print(Text(f"Prices: {a['price_source']}."))
    con.print(Text(f"CO2e: {a['grid']}."))
    if pareto is not None:
        con.print(Text(f"Pareto plot written to {pareto}."))


def _print_dropped(con: Any, dropped) -> None:
    from rich.text import Text

    if dropped is None or dropped.empty:
        return
    con.print(Text(f"Dropped {len(dropped)} options:"))
    for reason, part in dropped.groupby(dropped["reason"].str.replace(r"[\d.,$]+", "#", regex=True), sort=False):
        first = part.iloc[0]
        what = " ".join(str(first[c]) for c in ("gpu", "precision") if isinstance(first[c], str))
        more = f" (and {len(part) - 1} more like it)" if len(part) > 1 else ""
        con.print(Text(f"  - {what}: {first['reason']}{more}"))


EXAMPLES = (
    "Examples:\n\n"
    "joulecast advise bert.onnx --dim seq=128 -n 100000 -e 3 --deadline 24h --budget-usd 50\n\n"
    "joulecast advise llama.onnx --dim seq=2048 --tokens 2e9 -g H100 -g H200 --objective time --pareto p.png\n\n"
    "joulecast advise model.onnx -n 50000 -e 10 -g RTX-4090 --price-per-gpu-hour 0.1 --price-per-kwh 0.3"
)


def register(app: typer.Typer) -> None:
    @app.command("advise", help="Which GPU, precision, batch and GPU count to rent for a training job, priced.",
                 epilog=EXAMPLES)
    def advise_cmd(
        file: Path = typer.Argument(..., help="ONNX model graph (weights not needed)."),
        samples_per_epoch: Optional[int] = typer.Option(None, "--samples-per-epoch", "-n", help="Samples per epoch."),
        epochs: float = typer.Option(1.0, "--epochs", "-e", help="Epochs of the run."),
        tokens: Optional[float] = typer.Option(None, "--tokens", help="Token budget (instead of -n)."),
        gpu: list[str] = typer.Option([], "--gpu", "-g", help="GPU to consider (repeatable; default: all priced)."),
        batch_size: list[int] = typer.Option([], "--batch-size", "-b", help="Per-GPU batch (repeatable)."),
        precision: list[str] = typer.Option([], "--precision", help="Precision to consider (repeatable)."),
        max_gpus: int = typer.Option(8, "--max-gpus", help="Most GPUs per option."),
        deadline: Optional[str] = typer.Option(None, "--deadline", help="Longest wall time, e.g. 24h, 90min, 2d."),
        budget_usd: Optional[float] = typer.Option(None, "--budget-usd", help="Most money for the run, USD."),
        objective: str = typer.Option("cost", "--objective", help="cost, energy, time or co2."),
        region: Optional[str] = typer.Option(None, "--region", help="Grid region for CO2 and offer location."),
        cloud: list[str] = typer.Option([], "--cloud", help="Cloud(s) to rent from (repeatable)."),
        price_per_gpu_hour: Optional[float] = typer.Option(None, "--price-per-gpu-hour", help="Your own GPU-hour price."),
        price_per_kwh: Optional[float] = typer.Option(None, "--price-per-kwh", help="Your electricity price per kWh."),
        pue: float = typer.Option(1.0, "--pue", help="Data-centre PUE (CO2 and electricity cost)."),
        val_samples: int = typer.Option(0, "--val-samples", help="Validation samples per epoch (forward only)."),
        dim: list[str] = typer.Option([], "--dim", help="Symbolic dimension, name=value (repeatable)."),
        frozen: list[str] = typer.Option([], "--frozen", help="Parameter-name prefix not trained (repeatable)."),
        model_dir: Optional[Path] = typer.Option(None, "--model-dir", help="Model directory (default: shipped)."),
        top: int = typer.Option(10, "--top", min=1, help="Rows in the terminal table."),
        pareto: Optional[Path] = typer.Option(None, "--pareto", help="Write the Pareto plot (.png)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write every option (.csv or .parquet)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON (options, dropped, notes) only."),
    ) -> None:
        from predictor.advise import advise
        from predictor.cli.score import TABLE_SUFFIXES, check_writable, write_table

        if out is not None:
            check_writable(out, suffixes=TABLE_SUFFIXES, flag="--out")
        if pareto is not None:
            check_writable(pareto, suffixes=(".png",), flag="--pareto")
        ranked = advise(str(file), samples_per_epoch=samples_per_epoch, epochs=epochs, tokens=tokens,
                        gpus=list(gpu) or None, precisions=list(precision) or None, max_gpus=max_gpus,
                        deadline_s=None if deadline is None else parse_duration(deadline), budget_usd=budget_usd,
                        region=region, cloud=list(cloud) or None, objective=objective,
                        batch_sizes=list(batch_size) or None, price_per_gpu_hour=price_per_gpu_hour,
                        price_per_kwh=price_per_kwh, pue=pue, val_samples=val_samples, dims=parse_dims(dim),
                        frozen=list(frozen) or None, model_dir=model_dir)
        if out is not None:
            write_table(ranked, out)
        if pareto is not None and len(ranked):
            from predictor.advise_plot import plot_pareto

            plot_pareto(ranked, pareto)
        if as_json:
            a = ranked.attrs
            typer.echo(json.dumps({"options": json.loads(ranked.to_json(orient="records")),
                                   "dropped": json.loads(a["dropped"].to_json(orient="records")),
                                   "tie": a["tie"], "notes": a["notes"], "price_source": a["price_source"],
                                   "grid": a["grid"], "objective": a["objective"]}))
        else:
            render(ranked, top=top, file_label=str(file), pareto=pareto)
        if not len(ranked):
            raise InvalidInputError("no option fits and passes the limits; the dropped list says why for each.")
