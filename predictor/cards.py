"""A forecast where users already are: the Hugging Face model-card CO2 block and the notebook view.

Public entry points (called by :class:`predictor.prediction.Prediction`'s methods of the same purpose):

* :func:`hf_co2_block` — the ``co2_eq_emissions`` metadata block of a Hugging Face model card
  (huggingface.co/docs/hub/model-cards-co2): ``emissions`` in grams of CO2e, ``source``, ``training_type``,
  ``geographical_location``, ``hardware_used`` (:data:`HF_CO2_FIELDS`).
* :func:`prediction_html` — a small HTML table for Jupyter (``Prediction._repr_html_``); all text escaped.
"""

from __future__ import annotations

import html
from typing import Any

HF_CO2_FIELDS = ("emissions", "source", "training_type", "geographical_location", "hardware_used")
"""The keys of the model card's ``co2_eq_emissions`` block (Hugging Face hub docs, model-cards-co2)."""
HF_TRAINING_TYPES = ("pre-training", "fine-tuning")
SOURCE = "joulecast forecast"


def _n_gpus(p: Any) -> int:
    return int(getattr(p, "n_gpus", 1) or 1)  # Prediction.n_gpus arrives with multi-GPU forecasts (issue 29)


def hardware_text(p: Any) -> str:
    """``"1 x H100-SXM5-80GB GPU"`` / ``"8 x A100-SXM4-80GB GPUs"``."""
    n = _n_gpus(p)
    return f"{n} x {p.gpu} GPU{'s' if n > 1 else ''}"


def hf_co2_block(p: Any, *, training_type: str = "pre-training", region: str | None = None,
                 grid_g_per_kwh: float | None = None, pue: float = 1.0) -> dict[str, Any]:
    """The ``co2_eq_emissions`` block for a model card from forecast ``p``.

    ``emissions`` is the forecast's CO2e in grams (energy x PUE x grid intensity of ``region``, or
    ``grid_g_per_kwh``, else the world average: :func:`predictor.carbon.resolve_intensity`), rounded to 0.01 g and
    written as a plain decimal (the hub parses the number out of its text form).
    """
    from featurize.errors import InvalidInputError
    from predictor.carbon import grid_intensity, resolve_intensity

    if training_type not in HF_TRAINING_TYPES:
        raise InvalidInputError(f"training_type={training_type!r} must be one of {', '.join(HF_TRAINING_TYPES)} "
                                "(the model card's values).")
    intensity, where = resolve_intensity(grid_g_per_kwh, region)
    grams = p.co2_kg(grid_g_per_kwh=intensity, pue=pue) * 1000.0
    if region is not None:
        location = grid_intensity(region).name
    elif grid_g_per_kwh is not None:
        location = f"unspecified (grid intensity {intensity:g} g CO2e/kWh given)"
    else:
        location = f"unspecified (world-average grid, {intensity:g} g CO2e/kWh)"
    return {
        "emissions": round(float(grams), 2),
        "source": SOURCE,
        "training_type": training_type,
        "geographical_location": location,
        "hardware_used": hardware_text(p),
    }


def fmt_j(j: float) -> str:
    """``"1.2 GJ"``, ``"58.5 kJ"``, ``"12 J"``."""
    for unit, f in (("GJ", 1e9), ("MJ", 1e6), ("kJ", 1e3)):
        if abs(j) >= f:
            return f"{j / f:,.3g} {unit}"
    return f"{j:.3g} J"


def fmt_s(s: float) -> str:
    """``"2.5 d"``, ``"3.14 h"``, ``"12.5 min"``, ``"4.2 s"``."""
    if s >= 86400:
        return f"{s / 86400:,.3g} d"
    if s >= 3600:
        return f"{s / 3600:,.3g} h"
    return f"{s / 60:.3g} min" if s >= 60 else f"{s:.3g} s"


def prediction_html(p: Any) -> str:
    """An HTML table of the forecast (energy with its interval, time, power, memory, CO2e) and its warnings."""
    lo, hi = p.interval_j
    rows = [
        ("GPU", f"{hardware_text(p)} (batch {p.batch_size}, {p.precision}, {p.epochs:g} epochs of "
                f"{p.samples_per_epoch:,} samples)"),
        ("Energy", f"{fmt_j(p.energy_j)} = {p.energy_kwh:.4g} kWh [{p.interval_level:.0%} interval "
                   f"{fmt_j(lo)} - {fmt_j(hi)}]"),
        ("Time", f"{fmt_s(p.time_s)} ({fmt_s(p.time_per_epoch_s)} per epoch)"),
        ("Average power", f"{p.avg_power_w:.0f} W"),
    ]
    if p.memory_bytes is not None:
        rows.append(("Memory", f"{p.memory_bytes / 2**30:,.1f} GiB per step"
                     + (" (fits)" if p.fits else " (does NOT fit)")))
    rows.append(("CO2e", f"{p.co2_kg():.3g} kg at the world-average grid (co2_kg(region=...) for yours)"))
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                   f"{html.escape(v)}</td></tr>" for k, v in rows)
    notes = "".join(f"<li>{html.escape(w)}</li>" for w in p.warnings)
    title = html.escape(f"joulecast forecast ({p.model_name} {p.model_version})".replace(" ()", ""))
    return (f"<div><b>{title}</b><table>{body}</table>"
            + (f"<details><summary>{len(p.warnings)} warnings</summary><ul>{notes}</ul></details>" if notes else "")
            + "</div>")
