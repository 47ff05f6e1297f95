"""Pareto views of an :func:`predictor.advise.advise` result: time vs cost, energy as colour, the front labelled.

Public entry points: :func:`plot_pareto` (a PNG with matplotlib) and :func:`text_pareto` (a character plot for
the terminal: rows of ``(text, style)`` segments, styles as rich colour names). Front points carry letters A, B,
... in rank order of the front (:func:`front_labels`), the same in both views and in the CLI's table.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from predictor.cards import fmt_s

ENERGY_STYLES = ("green", "chartreuse3", "yellow", "dark_orange", "red")
"""Terminal colours from the lowest to the highest energy fifth (log scale)."""


def front_labels(ranked: pd.DataFrame) -> dict[int, str]:
    """Row index -> letter for the time-cost front's options, in rank order (A = best ranked on the front)."""
    front = ranked.index[ranked["pareto"].astype(bool)] if "pareto" in ranked else []
    return {i: _letter(k) for k, i in enumerate(front)}


def _letter(k: int) -> str:
    return chr(ord("A") + k) if k < 26 else f"A{k - 25}"


def _log(values: pd.Series) -> np.ndarray:
    return np.log10(np.maximum(values.to_numpy(float), 1e-12))


def plot_pareto(ranked: pd.DataFrame, path: str | Path) -> None:
    """Write a PNG: each option at (time h, cost USD), log axes, coloured by energy (kWh); the front drawn and
    its points labelled with their letter and configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = ranked[np.isfinite(ranked["cost_usd"].astype(float)) & np.isfinite(ranked["time_s"].astype(float))]
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=100)
    pts = ax.scatter(ok["time_s"] / 3600, ok["cost_usd"], c=ok["energy_j"] / 3.6e6, cmap="viridis", s=18,
                     norm=matplotlib.colors.LogNorm(), alpha=0.85)
    fig.colorbar(pts, ax=ax, label="forecast energy (kWh)")
    front = ok[ok["pareto"].astype(bool)].sort_values("time_s")
    ax.plot(front["time_s"] / 3600, front["cost_usd"], "-", color="black", lw=1.0, label="time-cost front")
    labels = front_labels(ranked)
    for i, r in front.iterrows():
        ax.annotate(f"{labels[i]} {r['gpu']} x{int(r['n_gpus'])} {r['precision']} b{int(r['batch_size'])}",
                    (r["time_s"] / 3600, r["cost_usd"]), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("forecast wall time (h)")
    ax.set_ylabel("forecast cost (USD)")
    ax.set_title("joulecast advise: options, time vs cost (colour = energy)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def text_pareto(ranked: pd.DataFrame, width: int = 60, height: int = 14) -> list[list[tuple[str, str]]]:
    """A character plot (x = time, y = cost, both log): ``.`` per option coloured by energy, front points as their
    letter (bold). Returns lines of ``(text, style)`` segments, axis lines included."""
    ok = ranked[np.isfinite(ranked["cost_usd"].astype(float)) & np.isfinite(ranked["time_s"].astype(float))]
    if ok.empty:
        return []
    x, y, e = _log(ok["time_s"]), _log(ok["cost_usd"]), _log(ok["energy_j"])
    col = _scale(x, width)
    row = height - 1 - _scale(y, height)
    shade = _scale(e, len(ENERGY_STYLES))
    grid: list[list[tuple[str, str]]] = [[(" ", "")] * width for _ in range(height)]
    labels = front_labels(ranked)
    order = sorted(range(len(ok)), key=lambda k: ok.index[k] in labels)  # front letters drawn last, on top
    for k in order:
        i = ok.index[k]
        mark = labels.get(i, ".")
        grid[row[k]][col[k]] = (mark, ENERGY_STYLES[shade[k]] + (" bold" if i in labels else ""))
    t_lo, t_hi = ok["time_s"].min(), ok["time_s"].max()
    c_lo, c_hi = ok["cost_usd"].min(), ok["cost_usd"].max()
    lines = [[(f"${c_hi:>9,.2f} |", "")] + grid[0]]
    lines += [[(" " * 10 + " |", "")] + g for g in grid[1:-1]]
    lines.append([(f"${c_lo:>9,.2f} |", "")] + grid[-1])
    lines.append([(" " * 11 + "+" + "-" * width, "")])
    left, right = fmt_s(t_lo), fmt_s(t_hi)
    lines.append([(" " * 12 + left + " " * max(1, width - len(left) - len(right)) + right, "")])
    lines.append([(" " * 12 + "time ->  (log scales; colour = energy, green low to red high)", "")])
    return lines


def _scale(v: np.ndarray, n: int) -> np.ndarray:
    lo, hi = float(np.min(v)), float(np.max(v))
    if hi - lo < 1e-12:
        return np.full(len(v), n // 2, int)
    return np.clip(np.floor((v - lo) / (hi - lo) * (n - 1) + 0.5).astype(int), 0, n - 1)


def energy_legend(ranked: pd.DataFrame) -> str:
    """``energy: green <= 1.2 kWh ... red >= 9.8 kWh`` for the text plot's colours."""
    e = ranked["energy_j"].astype(float) / 3.6e6
    if e.empty or not math.isfinite(e.min()):
        return ""
    return f"energy: green ~ {e.min():.3g} kWh ... red ~ {e.max():.3g} kWh"
