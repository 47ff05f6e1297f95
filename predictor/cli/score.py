"""`joulecast score`: placeholder until its issue lands (registered so the CLI frame is complete)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("score", help="(not implemented yet)")
    def _cmd() -> None:
        raise typer.Exit(code=2)
