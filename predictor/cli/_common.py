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
