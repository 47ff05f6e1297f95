"""The ``joulecast`` command line: a thin layer that parses, calls the public API and prints.

Each command lives in its own module under ``predictor.cli`` and exposes ``register(app)``.
``main`` catches the project's own errors only (one red line, exit 1); any other exception is a bug
and keeps its traceback. Every command takes ``--json`` for machine-readable output.
"""

from __future__ import annotations

import importlib
import sys

import typer

from featurize.errors import JoulecastError

COMMAND_MODULES = ("predict", "score", "refine", "retrain", "gpus", "info")

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="joulecast: forecast the energy of training a model on a GPU, before you train.",
)
for _name in COMMAND_MODULES:
    importlib.import_module(f"predictor.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except JoulecastError as err:
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
        return 1
    except typer.Exit as exc:  # pragma: no cover - raised by --help in some typer versions
        return int(exc.exit_code or 0)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
