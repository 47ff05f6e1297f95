"""`joulecast refine --prior-json P.json --epochs-csv E.csv [--total-epochs N] [--max-epochs N] [--plot out.png]`.

Declared phases: ``--phase 10`` (repeatable: epoch index where a new phase starts) and optionally one
``--phase-prior-json`` per phase, in order (e.g. a ``predict --frozen ...`` JSON for the frozen phase, a plain
``predict`` JSON for fine-tuning), with ``--prior-rho`` (correlation of their errors, default 0.5).

P.json is a ``Prediction.to_dict()`` JSON; E.csv has a column ``energy_j`` (one row per finished epoch, in
order) and optionally ``time_s``. Prints the refined summary (or ``--json``); ``--plot`` writes a PNG of the
projected total vs epochs measured, with the interval narrowing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from featurize.errors import InvalidInputError, SchemaError


def load_prior(path: Path, option: str = "--prior-json"):
    from predictor.prediction import Prediction

    if Path(path).is_dir():
        raise InvalidInputError(f"{option} {path} is a directory; give the JSON file `joulecast predict ... --json` "
                                "wrote.")
    try:
        data = json.loads(Path(path).read_text())
        return Prediction.from_dict(data)
    except FileNotFoundError as err:
        raise InvalidInputError(f"{option} {path}: file not found; write one with `joulecast predict ... --json`.") from err
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise SchemaError(
            f"{option} {path} is not a Prediction JSON ({err}); produce it with Prediction.to_dict() "
            f"or `joulecast predict ... --json`."
        ) from err


def load_epochs(path: Path):
    import pandas as pd

    from predictor.retrain import delimiter_hint

    if Path(path).is_dir():
        raise InvalidInputError(f"--epochs-csv {path} is a directory; give the CSV file (one row per epoch).")

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError as err:
        raise InvalidInputError(f"--epochs-csv {path}: file not found.") from err
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SchemaError(f"--epochs-csv {path} is not a readable CSV ({err}).") from err
    if "energy_j" not in frame.columns:
        raise SchemaError(
            f"--epochs-csv {path} has columns {list(frame.columns)}; it needs an 'energy_j' column "
            f"(one row per finished epoch, joules) and optionally 'time_s'{delimiter_hint(frame.columns)}."
        )
    energies = _quantities(frame, "energy_j", path, required=True)
    times = _quantities(frame, "time_s", path, required=False) if "time_s" in frame.columns else None
    return energies, times


def _quantities(frame, column: str, path: Path, *, required: bool) -> list[float]:
    """A column read with the unit parser ``retrain`` uses (``9.8 kJ``, ``95 min``); a cell that is not a quantity is
    an error naming its line (an empty ``time_s`` cell is allowed: that epoch's time is unknown)."""
    import math

    from predictor.units import parse_quantity, row_label, units_hint

    out = []
    for idx, raw in enumerate(frame[column]):
        value = parse_quantity(raw, column)
        empty = raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() == ""
        if math.isnan(value) and (required or not empty):
            raise SchemaError(f"{row_label(f'--epochs-csv {path}', idx, True)}, column '{column}': {raw!r} is not "
                              f"a number; give a plain number{units_hint(column)}.")
        out.append(value)
    return out


def refinement_path(prior, energies, times, **kw) -> list[tuple[int, float, float, float]]:
    """(k, projected total J, low J, high J) after each k = 1..n measured epochs."""
    from predictor.refine import refine

    out = []
    for k in range(1, len(energies) + 1):
        r = refine(prior, epoch_energies_j=energies[:k], epoch_times_s=times[:k] if times else None, **kw)
        out.append((k, r.energy_j, r.interval_j[0], r.interval_j[1]))
    return out


def write_plot(path: Path, prior, steps) -> None:
    import matplotlib.pyplot as plt

    fig = refine_figure(prior, steps)
    fig.savefig(path)
    plt.close(fig)


def refine_figure(prior, steps):
    """Projected total (and its interval) against the number of epochs measured; whole-epoch ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    k = [s[0] for s in steps]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=90)
    ax.fill_between(k, [s[2] / 1e3 for s in steps], [s[3] / 1e3 for s in steps], alpha=0.25,
                    label=f"{prior.interval_level:.0%} interval")
    ax.plot(k, [s[1] / 1e3 for s in steps], "-o", ms=3, label="projected total")
    ax.axhline(prior.energy_j / 1e3, color="grey", ls=":", label="prior")
    ax.set_xlabel("epochs measured")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # an epoch is measured whole
    ax.set_ylabel("total energy, kJ")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


EXAMPLES = (
    "Examples:\n\n"
    "joulecast refine --prior-json p.json --epochs-csv epochs.csv --total-epochs 10\n\n"
    "joulecast refine --prior-json p.json --epochs-csv epochs.csv --max-epochs 90 --plot refine.png\n\n"
    "epochs.csv: one row per finished epoch, column energy_j (joules of that epoch, or e.g. '9.8 kJ', '0.7 kWh'), "
    "optional time_s (seconds, or e.g. '95 min')."
)


def register(app: typer.Typer) -> None:
    @app.command("refine", help="Refine a prior prediction with the energies of the epochs measured so far.", epilog=EXAMPLES)
    def _cmd(
        prior_json: Path = typer.Option(..., "--prior-json", help="Prediction.to_dict() JSON of the prior."),
        epochs_csv: Path = typer.Option(..., "--epochs-csv", help="CSV with 'energy_j' (+ optional 'time_s')."),
        total_epochs: Optional[int] = typer.Option(None, "--total-epochs", help="Planned epochs (omit if unknown)."),
        max_epochs: Optional[int] = typer.Option(None, "--max-epochs", help="Upper end when total is unknown."),
        phase: Optional[list[int]] = typer.Option(None, "--phase", help="Epoch index where a declared phase starts."),
        phase_prior_json: Optional[list[Path]] = typer.Option(
            None, "--phase-prior-json", help="Prediction JSON of one declared phase (one per phase, in order)."),
        prior_rho: float = typer.Option(0.5, "--prior-rho", help="Correlation of the phase priors' errors, [0, 1)."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of projected total vs epochs."),
        as_json: bool = typer.Option(False, "--json", help="Print the refined Prediction as JSON."),
    ) -> None:
        from predictor.refine import refine

        prior = load_prior(prior_json)
        energies, times = load_epochs(epochs_csv)
        phase_priors = [load_prior(q, "--phase-prior-json") for q in phase_prior_json] if phase_prior_json else None
        kw = {"total_epochs": total_epochs, "max_epochs": max_epochs, "phases": phase or None,
              "phase_priors": phase_priors, "prior_rho": prior_rho}
        result = refine(prior, epoch_energies_j=energies, epoch_times_s=times, **kw)
        if plot is not None:
            write_plot(plot, prior, refinement_path(prior, energies, times, **kw))
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2, default=float))
            return
        ref = result.refinement
        lo, hi = result.interval_j
        typer.echo(
            f"refined total: {result.energy_j / 1e3:.4g} kJ ({result.energy_kwh:.4g} kWh), "
            f"{result.interval_level:.0%} interval [{lo / 1e3:.4g}, {hi / 1e3:.4g}] kJ "
            f"(prior {prior.energy_j / 1e3:.4g} kJ)"
        )
        typer.echo(
            f"epochs measured {ref['epochs_measured']}, warm-up {ref['warmup_epochs'] or 'none'}, stable from epoch "
            f"{ref['stable_start']}, "
            + ("no phase change" if ref["phase_change_at"] is None else f"phase change at epoch {ref['phase_change_at']}")
            + "; projected "
            f"{ref['projected_epoch_energy_j'] / 1e3:.4g} kJ/epoch over {ref['total_epochs_assumed']} epochs "
            f"(range {ref['total_epochs_range'][0]}-{ref['total_epochs_range'][1]})"
        )
        if ref.get("phase_priors_used"):
            levels = ", ".join(f"{v / 1e3:.4g}" for v in ref["phase_projected_epoch_energy_j"])
            typer.echo(f"phases from epochs {[0] + ref['declared_phases']}: projected kJ/epoch [{levels}] "
                       f"(current phase {ref['current_phase']}, prior_rho {ref['prior_rho']:g})")
        for w in result.warnings:
            typer.echo(f"warning: {w}")
        if plot is not None:
            typer.echo(f"plot written to {plot}")
