"""The Pareto plot of ``joulecast score --pareto``: what a user chooses between.

Without ``--accuracy-csv`` each candidate is a point (training time, training energy), both minimised; with it,
(accuracy, energy), accuracy maximised. One colour per GPU; the front of each GPU is drawn as a line and its points
are labelled with the model names. An axis is logarithmic only when all its values are positive and span more than
a decade (a zero is drawn, not dropped).
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["pareto_front", "pareto_figure", "plot_pareto"]


def pareto_front(x, y) -> list[int]:
    """Indices of points not dominated when minimising both ``x`` and ``y``."""
    order = sorted(range(len(x)), key=lambda i: (x[i], y[i]))
    front, best = [], math.inf
    for i in order:
        if y[i] < best:
            front.append(i)
            best = y[i]
    return front


def _log_scale(values) -> bool:
    vals = [float(v) for v in values if v == v]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 10


def pareto_figure(ranked, *, accuracy_name: str | None = None):
    """``(figure, {gpu: [model names on its front]})`` for the scored rows of ``ranked``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = ranked[ranked["error"].astype(str) == ""]
    if accuracy_name:
        ok = ok[ok[accuracy_name].notna()]
    xcol = accuracy_name or "time_h"
    ok = ok.assign(time_h=ok["time_s"] / 3600.0)
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=100)
    fronts: dict[str, list[str]] = {}
    for gpu, part in ok.groupby("gpu", sort=False):
        x, y = part[xcol].to_numpy(float), part["energy_kwh"].to_numpy(float)
        front = pareto_front(list(-x if accuracy_name else x), list(y))  # accuracy is maximised
        pts = ax.scatter(x, y, s=16, alpha=0.6, label=str(gpu))
        fx = sorted((x[i], y[i], part["name"].iloc[i]) for i in front)
        ax.plot([p[0] for p in fx], [p[1] for p in fx], "-", color=pts.get_facecolor()[0], lw=1.2)
        for px, py, name in fx:
            ax.annotate(str(name), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=7)
        fronts[str(gpu)] = [p[2] for p in fx]
    if _log_scale(ok["energy_kwh"]):
        ax.set_yscale("log")
    if not accuracy_name and _log_scale(ok["time_h"]):
        ax.set_xscale("log")
    ax.set_xlabel(accuracy_name or "forecast training time (h)")
    ax.set_ylabel("forecast training energy (kWh)")
    goal = "higher accuracy, lower energy" if accuracy_name else "faster and lower energy"
    ax.set_title(f"Candidates: energy vs {accuracy_name or 'time'} (line = Pareto front: {goal})", fontsize=10)
    if fronts:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, fronts


def plot_pareto(ranked, path: Path, *, accuracy_name: str | None = None) -> dict[str, list[str]]:
    """Write the Pareto plot of ``ranked`` as a PNG at ``path``; returns each GPU's front (model names)."""
    import matplotlib.pyplot as plt

    fig, fronts = pareto_figure(ranked, accuracy_name=accuracy_name)
    fig.savefig(path)
    plt.close(fig)
    return fronts
