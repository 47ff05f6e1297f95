"""`joulecast retrain`: fit a new model on your measured runs and print how it compares with the base model.

Thin layer over :func:`predictor.retrain.retrain`; the comparison printed is the one stored in the new
model's ``manifest.json`` (``"retrain"`` section).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _fmt(stats: dict[str, Any] | None, key: str, spec: str = ".1f") -> str:
    if not stats or key not in stats:
        return "-"
    return format(stats[key], spec)


def print_summary(path: Path, summary: dict[str, Any]) -> None:
    from rich.table import Table

    from predictor.cli._common import console as plain_console, styled

    console = plain_console()
    console.print(styled("new model: ", "bold", path))
    console.print(
        f"{summary['user_rows']} user runs ({summary['user_graphs']} graphs) on "
        f"{', '.join(summary['user_gpus'])}; base: {summary['base']}"
        + (f" [{summary['mode']}]" if summary.get("mode") else "") + " "
        f"({summary['base_rows']} rows, model {summary['base_model_version']}); seed {summary['seed']}; "
        f"weight per run {summary.get('user_row_weight', 1.0):g}; time imputed for "
        f"{summary.get('rows_with_imputed_time', 0)} run(s)"
    )
    table = Table(title="error on your runs (energy per epoch, absolute %)")
    for col in ("model", "median %", "p90 %", "median pred/measured"):
        table.add_column(col, justify="left" if col == "model" else "right")
    rows = [
        ("base model (before retraining)", summary.get("base_model_error_on_user_rows")),
        ("new model, held-out graphs (grouped CV)", summary.get("new_model_grouped_cv_on_user_rows")),
        ("new model, fitted rows (in-sample)", summary.get("new_model_fit_error_on_user_rows")),
    ]
    for name, stats in rows:
        table.add_row(
            name,
            _fmt(stats, "median_ape"),
            _fmt(stats, "p90_ape"),
            _fmt(stats, "median_pred_over_measured", ".3f"),
        )
    console.print(table)
    for gpu, cal in summary.get("gpu_calibration", {}).items():
        parts = ", ".join(f"{k.removesuffix('_factor')} x{v:.3g}" for k, v in cal.items()
                          if k.endswith("_factor") and k not in ("energy_factor", "offset_energy_factor"))
        console.print(f"calibration for {gpu}: forecasts move x{cal['energy_factor']:.3g} (offsets {parts or 'none'}, "
                      f"within the power cap) from {cal['n_rows']} runs; the measured runs themselves are reproduced")
    verdict = summary.get("verdict")
    if verdict:
        console.print(styled("warning: " if verdict["use"] == "base" else "", "bold red", verdict["note"] + "."),
                      soft_wrap=True)
    if not verdict or verdict["use"] != "base":
        console.print(f"use it with: joulecast predict MODEL.onnx --gpu ... --model-dir {path}", soft_wrap=True)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # retrain() names the bad value


SCHEMA_HELP = (
    "RUNS is a comma-separated CSV (or Parquet) with a header row, one measured training run per row.\n\n"
    "Required columns: model (path of the .onnx graph the run trained; relative to the CSV's folder), gpu (name "
    "as in `joulecast gpus`), batch_size, samples_per_epoch, epochs, energy_j (GPU energy of the WHOLE run, "
    "all epochs together, in joules; '2.5 kWh' style cells convert).\n\n"
    "Optional columns: val_samples (validation samples per epoch, default 0), precision (fp32, tf32, fp16, "
    "bf16, fp8; default fp32), time_s (wall time of the whole run, s), frozen (parameter-name prefixes not "
    "trained, ';'-separated), power_limit_w (enforced limit, W), architecture, scope (default gpu_nvml), "
    "run_id."
)
EXAMPLES = (
    "Examples:\n\n"
    "joulecast retrain runs.csv --out mymodel\n\n"
    "joulecast predict model.onnx --gpu L4 --model-dir mymodel\n\n"
    "runs.csv:  model,gpu,batch_size,samples_per_epoch,epochs,energy_j,time_s  /  "
    "resnet18.onnx,L4,64,50000,10,3.1e6,52000"
)


def register(app: typer.Typer) -> None:
    @app.command("retrain", help="Fit a new model on your measured runs (CSV/Parquet) into a new directory.\n\n"
                 + SCHEMA_HELP, epilog=EXAMPLES)
    def retrain_cmd(
        runs: Path = typer.Argument(
            ...,
            help="Runs table (CSV with commas, or Parquet): model, gpu, batch_size, samples_per_epoch, epochs, "
            "energy_j = whole-run total in J (+ val_samples, precision, time_s, frozen, power_limit_w).",
        ),
        out: Path = typer.Option(..., "--out", "-o", help="New model directory (must not exist)."),
        base: str = typer.Option(
            "shipped", "--base",
            help="'shipped' (build on the base model: refit with --base-table, else per-GPU calibration) or 'none'.",
        ),
        base_table: Path = typer.Option(
            None, "--base-table",
            help="Base training table to merge with (python -m training_data.build_table writes "
            "training_data/table/training_table.parquet).",
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out directory."),
        seed: int = typer.Option(0, "--seed", help="LightGBM seed."),
        cv: bool = typer.Option(False, "--cv", help="Also run full grouped CV for the manifest (slow)."),
        user_weight: str = typer.Option(
            "auto", "--user-weight", help="Weight of each of your runs vs a base row ('auto' or a number)."
        ),
        model_dir: Path = typer.Option(None, "--model-dir", help="Base model directory (default: shipped)."),
        as_json: bool = typer.Option(
            False, "--json", help="Print the summary as JSON on stdout, nothing else."
        ),
    ) -> None:
        from featurize.errors import InvalidInputError
        from predictor.retrain import read_retrain_summary, retrain

        if base.lower() not in ("shipped", "none"):
            raise InvalidInputError(f"--base must be 'shipped' or 'none', got {base!r}")
        path = retrain(
            runs,
            out_dir=out,
            base=None if base.lower() == "none" else "shipped",
            overwrite=overwrite,
            seed=seed,
            cv=cv,
            model_dir=model_dir,
            user_weight=user_weight if user_weight == "auto" else _number(user_weight),
            base_table=base_table,
        )
        summary = read_retrain_summary(path)
        if as_json:
            typer.echo(json.dumps({"model_dir": str(path), **summary}))
            return
        print_summary(path, summary)
