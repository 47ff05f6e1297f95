"""Helpers shared by the CLI commands (argument parsing only; no printing)."""

from __future__ import annotations

from featurize.errors import InvalidInputError


def parse_dims(items: list[str] | None) -> dict[str, int] | None:
    """``["seq=512", "batch=8"]`` -> ``{"seq": 512, "batch": 8}``; None when no ``--dim`` was given."""
    out: dict[str, int] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().lstrip("-").isdigit():
            raise InvalidInputError(f"--dim {item!r} must look like name=value, e.g. --dim seq=512.")
        out[name.strip()] = int(value)
    return out or None


def console(**kwargs):
    """A rich Console that prints text as given: no markup, no highlighting. Messages, paths and user input
    contain brackets (``pip install 'joulecast[longtail]'``, ``rn[bold].onnx``) that markup would eat; style goes
    through :func:`styled` instead."""
    from rich.console import Console

    return Console(markup=False, highlight=False, **kwargs)


def styled(label: str, style: str, text: object = "") -> "object":
    """``label`` in ``style`` followed by ``text`` verbatim (a rich Text: brackets in ``text`` are kept)."""
    from rich.text import Text

    return Text.assemble((label, style), str(text))
