"""Learning the data-parallel constants (:class:`predictor.parallel.ScalingConstants`) from measured multi-GPU
throughput, on speed-up ratios (build time; ``bench/scaling.py`` prints the held-out tables).

A ratio of two step times of the same source, model, GPU, per-GPU batch and precision at two GPU counts cancels
the single-GPU time model: only the data-parallel term (:func:`predictor.parallel.step_extra_s`) is left. A group
with a 1-GPU row is anchored there (Lambda, NVIDIA DLE); a group without one (MLPerf nodes) at its smallest GPU
count, whose compute time is recovered by inverting the term (:func:`single_gpu_step_s`).

Public entry points: :func:`scaling_rows` (rows kept, with why others are kept out), :func:`per_gpu_time_rows` (the
multi-GPU rows a single-GPU time model learns from, at their per-GPU time; issue 28), :func:`pair_rows`,
:func:`fit_constants`, :func:`predicted_speedup`, :func:`held_out_speedups` (leave-one-GPU-out, the variant chosen
on inner GPU folds of the training GPUs only).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from predictor.parallel import ScalingConstants, compute_step_s, step_extra_s

SOURCES = ("lambda_dlbench", "nvidia_dle", "mlperf_training")
KEYS = ["source", "gpu", "model", "input_shape", "batch_size", "precision", "implementation"]
NODE_GPUS_DEFAULT = 8
NODE_GPUS = {"V100-SXM3-32GB": 16, "V100-SXM3-32GB-450W": 16}
"""GPUs per node where more than 8 (DGX-2 / HGX-2); MLPerf rows are single-node by construction (its file)."""
MODEL_PARALLEL_COLUMNS = ("tensor_parallel", "pipeline_parallel", "context_parallel")
"""Layout columns of the table (issue 30): a row with any of them above 1 splits the model, not the data."""
DATA_PARALLEL_LAYOUTS = ("none", "ddp", "")
"""Values of the table's ``parallelism`` column (issue 30) that are priced as data-parallel here."""
FREE = {  # parameter -> (lower, upper, start)
    "overlap": (0.0, 1.0, 0.5), "sync_s": (0.0, 0.05, 0.002), "straggler": (0.0, 0.2, 0.02),
    "pcie_factor": (1.0, 20.0, 2.0),
}
VARIANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "overlap+sync": (("overlap", "sync_s"), False),
    "full": (("overlap", "sync_s", "straggler", "pcie_factor"), False),
    "full+source offsets": (("overlap", "sync_s", "straggler", "pcie_factor"), True),
}
"""Candidate model variants: (free constants, per-source offsets); the others keep their defaults."""
SOFT_L1_SCALE = 0.05
"""Residual scale (log ratio) of the robust loss: ~5 % speed-up errors count fully, outliers linearly."""


def scaling_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """(single-node data-parallel time rows of :data:`SOURCES`, the count of rows kept out by reason)."""
    t = table[table["source"].isin(SOURCES) & table["time_per_epoch_s"].gt(0)].copy()
    reasons = pd.Series("", index=t.index, dtype=object)
    for col in MODEL_PARALLEL_COLUMNS:
        if col in t:
            reasons[pd.to_numeric(t[col], errors="coerce").fillna(1).gt(1)] = "model-parallel layout (issue 30)"
    if "parallelism" in t:
        layout = t["parallelism"].astype("string").fillna("").str.lower()
        reasons[~layout.isin(DATA_PARALLEL_LAYOUTS) & (reasons == "")] = "model-parallel layout (issue 30)"
    if "grad_accum" in t:
        accum = pd.to_numeric(t["grad_accum"], errors="coerce").fillna(1).gt(1)
        reasons[accum & (reasons == "")] = "gradient accumulation (one all-reduce per several micro-batches)"
    node = t["gpu"].map(NODE_GPUS).fillna(NODE_GPUS_DEFAULT)
    multi_node = (t["source"] != "mlperf_training") & (t["n_gpus"] > node)
    reasons[multi_node & (reasons == "")] = "more GPUs than one node holds (multi-node: out of scope)"
    kept = t[reasons == ""]
    return kept, reasons[reasons != ""].value_counts()


def per_gpu_time_rows(rows: pd.DataFrame, specs: list[Any]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """What a single-GPU time model can learn from the multi-GPU rows of ``rows`` (``n_gpus`` > 1; ``specs``: the
    GPUSpec of each row): (kept mask over ``rows``, each kept row's per-GPU time per sample --
    :func:`predictor.parallel.single_gpu_time_per_sample_s` with the constants of its source's class of systems,
    :data:`CLASS_SOURCES` -- NaN elsewhere, the multi-GPU rows kept out by reason). Kept: the single-node
    data-parallel rows :func:`scaling_rows` keeps; out: its reasons, and every multi-GPU row of a source without a
    data-parallel fit (Perseus: 4-GPU pipeline-parallel energy rows)."""
    from predictor.parallel import single_gpu_time_per_sample_s

    n = pd.to_numeric(rows["n_gpus"], errors="coerce").fillna(1).to_numpy(float) if "n_gpus" in rows else \
        np.ones(len(rows))
    multi = n > 1
    if not multi.any():
        return multi, np.full(len(rows), np.nan), {}
    sub = rows[multi]
    if "time_per_epoch_s" not in sub:  # a table without epochs (a user's runs): the time per sample says it
        sub = sub.assign(time_per_epoch_s=sub["time_per_sample_s"])
    kept, reasons = scaling_rows(sub)
    out = {f"multi_gpu: {r}": int(c) for r, c in reasons.items()}
    other = rows[multi & ~rows["source"].isin(SOURCES)]
    for src, c in other["source"].value_counts().items():
        out[f"multi_gpu: {src} (no data-parallel fit for this source)"] = int(c)
    untimed = int(multi.sum()) - len(kept) - int(sum(out.values()))
    if untimed:
        out["multi_gpu: no time per epoch"] = untimed
    keep = rows.index.isin(kept.index)
    per_gpu = np.full(len(rows), np.nan)
    class_of = {s: c for c, srcs in CLASS_SOURCES.items() for s in srcs}
    pos = np.flatnonzero(keep)
    for cls in sorted(set(rows["source"].iloc[pos].map(class_of))):
        at = pos[(rows["source"].iloc[pos].map(class_of) == cls).to_numpy()]
        sub = rows.iloc[at]
        per_gpu[at] = single_gpu_time_per_sample_s(
            sub, [specs[i] for i in at], n_gpus=n[at].astype(int), batch_size=sub["batch_size"].to_numpy(float),
            time_per_sample_s=sub["time_per_sample_s"].to_numpy(float), implementation=cls)
    return keep, per_gpu, out


def _graph_col(t: pd.DataFrame, key: str) -> pd.Series:
    return t[f"g_{key}"] if f"g_{key}" in t else t[key]


def pair_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, GPU count) above the group's anchor (its 1-GPU row, else its smallest count): the
    median step times ``t_s`` and ``t_anchor_s``, ``n_anchor``, and the graph columns the term needs."""
    from featurize import lookup_gpu
    from predictor.parallel import comm_columns

    graph = {k: _graph_col(rows, k) for k in ("params", "trainable_params", "flops_forward", "flops_backward",
                                              "flops_train")}
    r = rows.assign(**graph)
    agg = r.groupby(KEYS + ["n_gpus"], dropna=False).agg(
        t_s=("time_per_epoch_s", "median"), **{k: (k, "first") for k in graph}).reset_index()
    anchor = agg.loc[agg.groupby(KEYS, dropna=False)["n_gpus"].idxmin()]
    anchor = anchor[KEYS + ["n_gpus", "t_s"]].rename(columns={"n_gpus": "n_anchor", "t_s": "t_anchor_s"})
    pairs = agg.merge(anchor, on=KEYS, how="inner")
    pairs = pairs[pairs["n_gpus"] > pairs["n_anchor"]].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specs = {g: lookup_gpu(g) for g in pairs["gpu"].unique()}
    row_specs = [specs[g] for g in pairs["gpu"]]
    for tag, n in (("", pairs["n_gpus"]), ("_anchor", pairs["n_anchor"])):
        comm, pcie = comm_columns(pairs, row_specs, n.to_numpy(), "ddp")
        pairs[f"comm{tag}_s"], pairs[f"pcie{tag}"] = comm, pcie
    pairs["share"] = (pairs["flops_backward"] / pairs["flops_train"]).clip(0, 1)
    pairs["speedup"] = pairs["n_gpus"] / pairs["n_anchor"] * pairs["t_anchor_s"] / pairs["t_s"]
    return pairs


def _extra(p: pd.DataFrame, t_c: np.ndarray, tag: str, c: ScalingConstants, scale: Any = 1.0) -> np.ndarray:
    n = p["n_gpus"] if tag == "" else p["n_anchor"]
    return scale * step_extra_s(t_c, p["share"], p[f"comm{tag}_s"], p[f"pcie{tag}"], n, c)


def single_gpu_step_s(t_step_s: Any, p: pd.DataFrame, tag: str, c: ScalingConstants, scale: Any = 1.0
                      ) -> np.ndarray:
    """The per-GPU compute of steps measured as ``t_step_s`` on the pairs' (``tag``) GPU counts
    (:func:`predictor.parallel.compute_step_s`)."""
    n = p["n_gpus"] if tag == "" else p["n_anchor"]
    return compute_step_s(t_step_s, p["share"], p[f"comm{tag}_s"], p[f"pcie{tag}"], n, c, scale)


def predicted_speedup(p: pd.DataFrame, c: ScalingConstants, offsets: dict[str, float] | None = None) -> np.ndarray:
    """Speed-up of each pair (``n_gpus`` over ``n_anchor``) predicted with constants ``c`` (and per-source
    log offsets on the term)."""
    scale = np.exp(p["source"].map(offsets or {}).fillna(0.0).to_numpy(float))  # on every part of the term
    t_c = single_gpu_step_s(p["t_anchor_s"], p, "_anchor", c, scale)
    t_a = t_c + _extra(p, t_c, "_anchor", c, scale)
    t_n = t_c + _extra(p, t_c, "", c, scale)
    return p["n_gpus"].to_numpy(float) / p["n_anchor"].to_numpy(float) * t_a / t_n


@dataclass
class Fit:
    constants: ScalingConstants
    offsets: dict[str, float] = field(default_factory=dict)
    variant: str = "full"

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, **asdict(self.constants), "source_offsets": dict(self.offsets)}


def fit_constants(p: pd.DataFrame, variant: str = "full") -> Fit:
    """Least squares with a soft-L1 loss on log(predicted / measured speed-up) over the pairs ``p``."""
    from scipy.optimize import least_squares

    names, with_offsets = VARIANTS[variant]
    sources = sorted(p["source"].unique()) if with_offsets else []
    lo = [FREE[k][0] for k in names] + [-3.0] * len(sources)
    hi = [FREE[k][1] for k in names] + [3.0] * len(sources)
    x0 = [FREE[k][2] for k in names] + [0.0] * len(sources)
    obs = np.log(p["speedup"].to_numpy(float))

    def unpack(x: np.ndarray) -> Fit:
        offs = {k: float(v) for k, v in zip(sources, x[len(names):])}
        if offs:  # offsets centred: the shared constants are the pooled sources' middle
            mid = float(np.mean(list(offs.values())))
            offs = {k: v - mid for k, v in offs.items()}
        return Fit(ScalingConstants(**{k: float(v) for k, v in zip(names, x[:len(names)])}), offs, variant)

    def resid(x: np.ndarray) -> np.ndarray:
        f = unpack(x)
        return np.log(predicted_speedup(p, f.constants, f.offsets)) - obs

    sol = least_squares(resid, x0, bounds=(lo, hi), loss="soft_l1", f_scale=SOFT_L1_SCALE, diff_step=1e-3)
    return unpack(sol.x)


CLASS_SOURCES = {"reference": ("lambda_dlbench",), "tuned": ("nvidia_dle", "mlperf_training")}
"""Whose systems each class of :data:`predictor.parallel.SCALING` stands for: ``reference`` = ordinary servers and
workstations (Lambda's benchmark machines, PCIe cards to HGX boards), ``tuned`` = vendor-tuned systems and code
(NVIDIA DGX READMEs, MLPerf submissions)."""


def class_constants(fit: Fit, pairs: pd.DataFrame) -> dict[str, ScalingConstants]:
    """The shipped constants per class: the fit with its sources' offsets (pair-weighted mean) folded into
    ``scale``."""
    out = {}
    for name, sources in CLASS_SOURCES.items():
        counts = pairs["source"].value_counts()
        w = {s: float(counts.get(s, 0)) for s in sources if s in fit.offsets}
        offset = sum(fit.offsets[s] * n for s, n in w.items()) / sum(w.values()) if sum(w.values()) else 0.0
        out[name] = dataclasses.replace(fit.constants, scale=float(np.exp(offset)))
    return out


def _abs_err(pred: np.ndarray, p: pd.DataFrame) -> np.ndarray:
    return np.abs(pred / p["speedup"].to_numpy(float) - 1.0)


def choose_variant(p: pd.DataFrame, n_folds: int = 4) -> str:
    """The variant with the lowest median held-out speed-up error over ``n_folds`` GPU folds of ``p``."""
    gpus = sorted(p["gpu"].unique())
    folds = {g: i % n_folds for i, g in enumerate(gpus)}
    fold = p["gpu"].map(folds)
    scores = {}
    for name in VARIANTS:
        errs = []
        for k in range(n_folds):
            train, test = p[fold != k], p[fold == k]
            if len(test) and train["gpu"].nunique() > 1:
                f = fit_constants(train, name)
                errs.append(_abs_err(predicted_speedup(test, f.constants, f.offsets), test))
        scores[name] = float(np.median(np.concatenate(errs))) if errs else np.inf
    return min(scores, key=scores.get)


def held_out_speedups(p: pd.DataFrame, inner_folds: int = 4) -> pd.DataFrame:
    """Leave-one-GPU-out: each GPU's pairs predicted by constants fitted (variant chosen on ``inner_folds`` GPU
    folds) on the other GPUs only. Adds ``pred_speedup``, ``pred_perfect`` (= n / n_anchor), ``pred_comm_only``
    (the untrained default constants) and ``variant``."""
    out = []
    for gpu in sorted(p["gpu"].unique()):
        train, test = p[p["gpu"] != gpu], p[p["gpu"] == gpu].copy()
        variant = choose_variant(train, inner_folds)
        f = fit_constants(train, variant)
        test["pred_speedup"] = predicted_speedup(test, f.constants, f.offsets)
        test["pred_comm_only"] = predicted_speedup(test, ScalingConstants())
        test["pred_perfect"] = test["n_gpus"] / test["n_anchor"]
        test["variant"] = variant
        out.append(test)
    return pd.concat(out, ignore_index=True)
