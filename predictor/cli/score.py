"""`joulecast score`: rank many candidate graphs by forecast training energy on one or more GPUs.

Thin layer over :func:`predictor.batch.predict_many`: checks every output path before any work, scores,
ranks (lowest energy first), prints a table (or JSON records), and optionally writes the ranked table
(CSV/Parquet) and a Pareto plot (energy vs time, or vs a user-supplied accuracy column) as PNG.
While scoring, finished rows are appended to ``--out`` (CSV; ``<out>.partial.csv`` for Parquet) as they
arrive, so an interrupted run keeps them; the ranked table replaces them at the end. ``--scheduler`` runs the
featurization on a Dask cluster; ``--time-limit`` / ``--memory-limit`` bound each graph.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import typer

from featurize.errors import InvalidInputError
from predictor.cli._common import parse_dims
from predictor.batch.isolation import DEFAULT_MEMORY_LIMIT_MB, DEFAULT_TIME_LIMIT_S, check_limits
from predictor.rank import plot_pareto, rank, read_accuracy

TABLE_SUFFIXES = (".csv", ".parquet")


def check_writable(path: Path, *, suffixes: tuple[str, ...], flag: str) -> Path:
    """Fail before any work if ``path`` cannot be written (bad suffix, missing/readonly folder or file)."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise InvalidInputError(f"{flag} {str(path)!r}: use a file ending in {' or '.join(suffixes)}")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise InvalidInputError(
            f"{flag} {str(path)!r}: folder {str(parent)!r} does not exist; create it first"
        )
    if path.is_dir():
        raise InvalidInputError(f"{flag} {str(path)!r} is a directory; give a file name")
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"{flag} {str(path)!r} is not writable; choose another location")
    return path


def write_table(ranked, path: Path) -> None:
    """Write ``ranked`` to ``path`` (CSV or Parquet by suffix) through a temporary file and a rename, so that
    ``path`` holds either the rows written so far or the complete table, never half a table."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if path.suffix.lower() == ".parquet":
        ranked.to_parquet(tmp, index=False)
    else:
        ranked.to_csv(tmp, index=False)
    os.replace(tmp, path)


def progress_path(out: Path) -> Path:
    """Where rows go as they are computed: ``--out`` itself for CSV, ``<out>.partial.csv`` beside a Parquet
    ``--out`` (a Parquet file is unreadable until closed)."""
    return out if out.suffix.lower() == ".csv" else out.with_name(out.name + ".partial.csv")


class RowLog:
    """``on_rows`` callback: appends each group of finished rows to a CSV (header once) and flushes it, so a
    crash or Ctrl-C loses nothing already computed; the ranked table replaces it at the end."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = 0
        path.write_text("")

    def __call__(self, frame) -> None:
        with open(self.path, "a", newline="") as fh:
            frame.to_csv(fh, header=self.rows == 0, index=False)
        self.rows += len(frame)


def records(ranked) -> list[dict[str, Any]]:
    """JSON-ready rows (NaN -> null, numpy scalars -> Python numbers, full float precision)."""
    out = []
    for rec in ranked.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if hasattr(v, "item"):
                v = v.item()
            clean[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        out.append(clean)
    return out


EXIT_HELP = ("Exit status: 0 when every input was scored; 1 when any input failed (every row, failed ones with "
             "their error, is still printed and written to --out); 2 for a usage error.")
EXAMPLES = (
    "Examples:\n\n"
    "joulecast score candidates/ --gpu H100 --batch-size 64 --samples-per-epoch 50000 --out ranked.csv\n\n"
    "joulecast score 'runs/*.onnx' -g A100 -g L4 -n 50000 --pareto pareto.png --region us-ca"
)


def register(app: typer.Typer) -> None:
    @app.command("score", help="Rank candidate graphs (files, folders, globs) by forecast training energy.\n\n"
                 + EXIT_HELP, epilog=EXAMPLES)
    def score(
        models: list[str] = typer.Argument(
            ..., help="ONNX files, folders of .onnx files or globs ('runs/*.onnx')."
        ),
        gpu: list[str] = typer.Option(..., "--gpu", "-g", help="GPU name; repeat for a cross-GPU what-if."),
        batch_size: int = typer.Option(32, "--batch-size", "-b", help="Training batch size."),
        samples_per_epoch: int = typer.Option(
            None, "--samples-per-epoch", "-n", help="Training samples per epoch (or --tokens)."
        ),
        epochs: float = typer.Option(1.0, "--epochs", "-e", help="Epochs of the run."),
        val_samples: int = typer.Option(
            0, "--val-samples", help="Validation samples per epoch (forward only)."
        ),
        precision: str = typer.Option("fp32", "--precision", help="fp32, tf32, fp16, bf16 or fp8."),
        n_gpus: int = typer.Option(1, "--n-gpus", help="GPUs on one node, data-parallel (--batch-size is per GPU)."),
        parallelism: str = typer.Option("ddp", "--parallelism", help="ddp or fsdp (with --n-gpus > 1)."),
        tokens: float = typer.Option(None, "--tokens",
                                     help="Tokens per epoch instead of --samples-per-epoch (sequence models)."),
        power_limit_w: float = typer.Option(None, "--power-limit-w", help="Enforced power limit, W (every GPU)."),
        precision_fallback: bool = typer.Option(False, "--precision-fallback",
                                                help="Price a precision frameworks refuse on a GPU (fp8 without FP8 "
                                                "tensor cores) as the nearest one they would pick."),
        implementation: str = typer.Option("reference", "--implementation",
                                           help="Whose training code: reference (typical PyTorch) or tuned "
                                                "(NVIDIA/MLPerf-class)."),
        dim: list[str] = typer.Option(
            None, "--dim", help="Symbolic dimension value, name=value (repeatable)."
        ),
        out: Path = typer.Option(None, "--out", "-o", help="Write the ranked table (.csv or .parquet)."),
        pareto: Path = typer.Option(None, "--pareto", help="Write a Pareto plot (.png): energy vs time, or vs "
                                    "accuracy with --accuracy-csv; the front's models labelled."),
        accuracy_csv: Path = typer.Option(
            None, "--accuracy-csv", help="CSV with 'model' + an accuracy column."
        ),
        accuracy_column: str = typer.Option(
            None, "--accuracy-column", help="Accuracy column in --accuracy-csv."
        ),
        top: int = typer.Option(None, "--top", help="Show only the N best per GPU in the terminal table."),
        region: str = typer.Option(None, "--region", help="Grid region for CO2 (e.g. fr, us-ca, eu-west-1)."),
        grid_g_per_kwh: float = typer.Option(None, "--grid-g-per-kwh", help="Grid intensity for CO2, g/kWh."),
        pue: float = typer.Option(1.0, "--pue", help="Data-centre PUE applied to CO2."),
        n_jobs: int = typer.Option(-1, "--n-jobs", "-j", help="Featurization processes (-1 = all cores)."),
        scheduler: str = typer.Option(
            None, "--scheduler", help="Dask scheduler address (tcp://host:8786): featurize on its workers."
        ),
        time_limit: float = typer.Option(
            DEFAULT_TIME_LIMIT_S, "--time-limit", help="Seconds one graph may take (0 = no limit)."
        ),
        memory_limit: float = typer.Option(
            DEFAULT_MEMORY_LIMIT_MB, "--memory-limit", help="MB one graph may allocate (0 = no limit)."
        ),
        model_dir: Path = typer.Option(None, "--model-dir", help="Model directory from `joulecast retrain`."),
        as_json: bool = typer.Option(
            False, "--json", help="Print JSON records (ranked) on stdout, nothing else."
        ),
    ) -> int:
        from predictor.batch.inputs import expand_models
        from predictor.batch.many import predict_many

        # Every check that can fail cheaply runs before featurization.
        if out is not None:
            check_writable(out, suffixes=TABLE_SUFFIXES, flag="--out")
        if pareto is not None:
            check_writable(pareto, suffixes=(".png",), flag="--pareto")
        check_limits(time_limit or None, memory_limit or None)
        if top is not None and top < 1:
            raise InvalidInputError(f"--top must be >= 1, got {top}")
        accuracy, acc_name = (
            read_accuracy(accuracy_csv, accuracy_column) if accuracy_csv is not None else (None, None)
        )
        intensity_note = ""
        if region is not None or grid_g_per_kwh is not None:
            from predictor.carbon import resolve_intensity

            _, intensity_note = resolve_intensity(grid_g_per_kwh, region)
            if pue < 1.0:
                raise InvalidInputError(f"--pue must be >= 1.0, got {pue}")
        missing = [m for m in models if not set("*?[") & set(m) and not Path(m).expanduser().exists()]
        if missing:
            raise InvalidInputError(
                f"no such file or directory: {', '.join(repr(m) for m in missing)}; check the path(s), or quote a "
                "glob such as 'candidates/*.onnx'"
            )
        expand_models(models)  # empty folder / glob matching nothing -> clear error now
        log = RowLog(progress_path(out)) if out is not None else None
        df = predict_many(
            models,
            gpu=gpu,
            batch_size=batch_size,
            samples_per_epoch=samples_per_epoch,
            epochs=epochs,
            val_samples=val_samples,
            precision=precision,
            power_limit_w=power_limit_w,
            precision_fallback=precision_fallback,
            implementation=implementation,
            n_gpus=n_gpus,
            parallelism=parallelism,
            tokens=tokens,
            n_jobs=n_jobs,
            scheduler=scheduler,
            time_limit_s=time_limit or None,
            memory_limit_mb=memory_limit or None,
            on_rows=log,
            model_dir=model_dir,
            dims=parse_dims(dim),
            progress=None if not as_json else False,
        )
        ranked = rank(
            df,
            region=region,
            grid_g_per_kwh=grid_g_per_kwh,
            pue=pue,
            accuracy=accuracy,
            accuracy_name=acc_name or "accuracy",
        )
        if out is not None:
            write_table(ranked, out)
            if progress_path(out) != out:
                progress_path(out).unlink(missing_ok=True)
        if pareto is not None:
            plot_pareto(ranked, pareto, accuracy_name=acc_name)
        n_err = int((ranked["error"] != "").sum())
        if as_json:
            typer.echo(json.dumps(records(ranked)))
        else:
            per_epoch = (f"{tokens:,.0f} tokens/epoch" if tokens is not None
                         else f"{samples_per_epoch:,} samples/epoch")
            job = (f"batch {batch_size}" + (f" per GPU x {n_gpus} GPUs ({parallelism})" if n_gpus > 1 else "")
                   + f", {per_epoch}")
            _print(ranked, top, n_err, job, epochs, precision, intensity_note, pue, out, pareto)
        if n_err == len(ranked):
            raise InvalidInputError("no input could be scored; " + ("the error of each is in its record" if as_json
                                                                    else "the note column says why for each"))
        return 1 if n_err else 0


def _print(ranked, top, n_err, job, epochs, precision, intensity_note, pue, out, pareto) -> None:
    from predictor.batch.many import OUTPUT_COLUMNS
    from predictor.cli._common import console, styled
    from predictor.cli.score_view import print_table

    caption = f"{len(ranked)} rows, {n_err} failed; {job}, {epochs:g} epochs, {precision}."
    if intensity_note:
        caption += f" CO2e: {intensity_note}, PUE {pue:g}."
    if out is not None:
        caption += f" Wrote {out}."
    if pareto is not None:
        caption += f" Pareto plot: {pareto}."
    known = {"rank", "name", "co2_kg", *OUTPUT_COLUMNS}
    con = console()
    print_table(ranked, top, caption, [c for c in ranked.columns if c not in known], con)
    if n_err and n_err < len(ranked):
        con.print(styled("exit status 1: ", "red", f"{n_err} of {len(ranked)} rows failed (every row is in the "
                                                   "table" + (" and in --out" if out is not None else "") + ")."),
                  soft_wrap=True)
