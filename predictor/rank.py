"""Ranking scored candidates and their Pareto front: the library half of ``joulecast score`` (and of ``advise``'s
time-cost front).

Public entry points: :func:`rank` (a ``predict_many`` frame ranked by energy within each GPU, CO2 and accuracy
attached), :func:`read_accuracy` (a user's accuracy table), :func:`pareto_mask` / :func:`pareto_front` (the one
non-dominated rule, both objectives minimised), :func:`pareto_figure` / :func:`plot_pareto` (the plot of
``joulecast score --pareto``).

The Pareto plot: without an accuracy table each candidate is a point (training time, training energy), both
minimised; with one, (accuracy, energy), accuracy maximised. One colour per GPU; the front of each GPU is drawn as a
line and its points are labelled with the model names. An axis is logarithmic only when all its values are positive
and span more than a decade (a zero is drawn, not dropped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featurize.errors import InvalidInputError
from predictor.carbon import emissions_kg, resolve_intensity

__all__ = ["rank", "read_accuracy", "pareto_mask", "pareto_front", "pareto_figure", "plot_pareto"]


def read_accuracy(path: Path, column: str | None) -> tuple[dict[str, float], str]:
    """``{model name: accuracy}`` and the column used, from a CSV with a ``model`` column."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user input problem here
        raise InvalidInputError(f"--accuracy-csv {str(path)!r}: cannot read it as CSV ({err})") from err
    if "model" not in df.columns:
        raise InvalidInputError(
            f"--accuracy-csv {str(path)!r}: needs a 'model' column (file name or stem of "
            f"each graph) and an accuracy column; found {list(df.columns)}"
        )
    if column is None:
        numeric = [c for c in df.columns if c != "model" and pd.api.types.is_numeric_dtype(df[c])]
        if len(numeric) != 1:
            raise InvalidInputError(
                f"--accuracy-csv {str(path)!r}: pick the accuracy column with "
                f"--accuracy-column (numeric columns: {numeric})"
            )
        column = numeric[0]
    if column not in df.columns:
        raise InvalidInputError(
            f"--accuracy-csv {str(path)!r}: no column {column!r}; found {list(df.columns)}"
        )
    return {Path(str(m)).stem: float(v) for m, v in zip(df["model"], df[column])}, column


def rank(
    df,
    *,
    region: str | None = None,
    grid_g_per_kwh: float | None = None,
    pue: float = 1.0,
    accuracy: dict[str, float] | None = None,
    accuracy_name: str = "accuracy",
):
    """Ranked copy of a ``predict_many`` frame: ``rank`` by energy within each GPU, the rows in GPU blocks (GPUs in
    input order, lowest energy first in each), failed rows last (rank 0); CO2 and accuracy when given."""
    out = df.copy()
    if "name" not in out.columns:
        out.insert(0, "name", [Path(m).stem if isinstance(m, str) else str(m) for m in out["model"]])
    if region is not None or grid_g_per_kwh is not None:
        intensity, _ = resolve_intensity(grid_g_per_kwh, region)
        out["co2_kg"] = emissions_kg(out["energy_kwh"], intensity, pue)
    if accuracy is not None:
        out[accuracy_name] = [accuracy.get(n, np.nan) for n in out["name"]]
    failed = out["error"].astype(str) != ""
    order = {g: i for i, g in enumerate(dict.fromkeys(out["gpu"]))}  # GPUs in input order, each block ranked
    out = (
        out.assign(_failed=failed, _gpu=out["gpu"].map(order))
        .sort_values(["_failed", "_gpu", "energy_j"], kind="stable")
        .drop(columns=["_failed", "_gpu"])
    )
    out.insert(0, "rank", out.groupby("gpu", sort=False).cumcount() + 1)
    out.loc[out["error"].astype(str) != "", "rank"] = 0
    return out.reset_index(drop=True)


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True for points no other point beats on both ``x`` and ``y`` (minimising both; NaN never on the front)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    mask = np.zeros(len(x), bool)
    best = np.inf
    for i in np.lexsort((y, x)):
        if np.isfinite(x[i]) and np.isfinite(y[i]) and y[i] < best:
            mask[i], best = True, y[i]
    return mask


def pareto_front(x, y) -> list[int]:
    """Indices (ascending) of the points not dominated when minimising both ``x`` and ``y``."""
    return [int(i) for i in np.flatnonzero(pareto_mask(x, y))]


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
