"""The ``joulecast`` command line: a thin layer that parses, calls the public API and prints.

Each command lives in its own module under ``predictor.cli`` and exposes ``register(app)``.
``main`` turns a usage error (unknown option or command, missing argument, bad value) into one line on stderr
and exit code 2, and the project's own errors into one red line and exit code 1; any other exception is a bug
and keeps its traceback. Every command takes ``--json`` for machine-readable output.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

import typer

from featurize.errors import JoulecastError

COMMAND_MODULES = ("predict", "score", "advise", "refine", "retrain", "gpus", "info")
USAGE_EXIT_CODE = 2

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="joulecast: forecast the energy of training a model on a GPU, before you train.",
    epilog="Example: joulecast predict models/examples/resnet18.onnx --gpu A100 --batch-size 64 "
    "--samples-per-epoch 50000 --epochs 10. Run 'joulecast COMMAND --help' for each command's examples.",
)
for _name in COMMAND_MODULES:
    importlib.import_module(f"predictor.cli.{_name}").register(app)


def version_text() -> str:
    """``joulecast X.Y.Z (model NAME VERSION)``: the installed package and the shipped model's manifest."""
    import json
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("joulecast")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        pkg = "unknown (not installed)"
    try:
        from predictor.model.loaded import MANIFEST, shipped_model_dir

        man = json.loads((shipped_model_dir() / MANIFEST).read_text(encoding="utf-8"))
        model = f" (model {man['model_name']} {man['model_version']})"
    except (OSError, ValueError, KeyError):  # the version must print even with a broken model directory
        model = " (shipped model not readable: run `joulecast info` for why)"
    return f"joulecast {pkg}{model}"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_print_version, is_eager=True, help="Print the package and model versions."
    ),
) -> None:
    """joulecast: forecast the energy of training a model on a GPU, before you train."""


def _named(exc: BaseException, *names: str) -> bool:
    """Whether ``exc`` derives from a class called one of ``names``: typer bundles its own copy of click, so the
    classes of a separately installed click are not the ones raised."""
    return any(c.__name__ in names for c in type(exc).__mro__)


def usage_line(exc: BaseException) -> str:
    """One line for a click/typer usage error: what is wrong and where the help is."""
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "joulecast"
    message = " ".join(str(exc.format_message() if hasattr(exc, "format_message") else exc).split())
    return f"{path}: error: {message} (see '{path} --help')"


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="joulecast")
    except JoulecastError as err:
        from predictor.cli._common import console, styled

        console(stderr=True).print(styled("error: ", "bold red", err), soft_wrap=True)
        return 1
    except typer.Exit as exc:  # pragma: no cover - raised by --help in some typer versions
        return int(exc.exit_code or 0)
    except Exception as exc:
        if _named(exc, "NoArgsIsHelpError"):  # bare `joulecast` / a group without its command: the help
            ctx = getattr(exc, "ctx", None)
            text = ctx.get_help() if ctx is not None else str(exc)  # typer's rich help prints itself
            if text:
                typer.echo(text, err=True)
            return USAGE_EXIT_CODE
        if _named(exc, "UsageError"):
            typer.echo(usage_line(exc), err=True)
            return USAGE_EXIT_CODE
        if _named(exc, "ClickException"):
            typer.echo(f"joulecast: error: {' '.join(exc.format_message().split())}", err=True)
            return int(getattr(exc, "exit_code", 1) or 1)
        if _named(exc, "Abort"):
            typer.echo("joulecast: aborted", err=True)
            return 1
        raise
    return int(result or 0) if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
