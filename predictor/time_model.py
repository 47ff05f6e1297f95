"""Time learned from every measured row: the per-layer prior x a bounded, monotone residual + implementation offsets.

Public entry points:

* :func:`fit_time` -- prepared rows -> :class:`TimeFit`: one LightGBM booster on ``log(measured GPU-seconds per
  sample / t_layers_s)`` (:mod:`featurize.layer_profile`) over :data:`TIME_FEATURES` (transferable: op-class shares,
  the per-layer prior's time split, batch, precision path, GPU specs as ratios -- no GPU identity), with
  :data:`TIME_MONOTONE` constraints, and per-implementation / per-source offsets learned beside it (backfitting,
  shrunk toward 0 by :data:`CLASS_PRIOR_ROWS` / :data:`SOURCE_PRIOR_ROWS` pseudo-rows).
* :func:`log_time_residual` -- the residual a prediction applies: ``RESIDUAL_BOUND x tanh((booster + offset) /
  RESIDUAL_BOUND)``, so no learned term moves time by more than x exp(RESIDUAL_BOUND) either way and physics keeps
  the orderings the prior gets right.
* :func:`per_gpu_time_s` -- the clean per-GPU prediction (seconds per training sample on one GPU) that data-parallel
  scaling builds on.
* :data:`IMPLEMENTATIONS` -- what ``implementation=`` means.

Implementations differ up to 2x for one model and GPU (NVIDIA's DeepLearningExamples vs typical PyTorch code): each
row carries an ``implementation_class`` (``training_data.corrections``: ``tuned`` for NVIDIA DLE / MLPerf-class code,
``reference`` otherwise). ``reference`` is the booster's own level (offset 0); ``tuned`` gets a learned offset; each
source gets a shrunk offset inside its class, used only while fitting (a user's run is no source of the table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import InvalidInputError

IMPLEMENTATIONS: dict[str, str] = {
    "reference": "typical PyTorch training code (torchvision / Hugging Face examples, eager mode, a standard "
                 "DataLoader and optimizer): the default",
    "tuned": "NVIDIA DeepLearningExamples / MLPerf-class code (fused kernels and optimizers, DALI input, "
             "channels-last, CUDA graphs)",
}
DEFAULT_IMPLEMENTATION = "reference"
IMPLEMENTATION_COL = "implementation_class"
"""Table column naming a row's implementation class (missing = ``reference``)."""
TIME_FEATURES: tuple[str, ...] = (
    "ref_log_layer_kernel_time_s",
    "ref_layer_compute_frac",
    "ref_layer_memory_frac",
    "ref_layer_launch_frac",
    "ref_layer_step_frac",
    "ref_layer_optimizer_frac",
    "ref_layer_conv_compute_frac",
    "ref_layer_conv_memory_frac",
    "ref_layer_gemm_frac",
    "ref_layer_vector_frac",
    "log_batch_size",
    "frac_macs_conv",
    "frac_macs_matmul",
    "frac_macs_attention",
    "frac_macs_recurrent",
    "trainable_frac",
    "tensor_precision",
    "log_tensor_speedup",
    "power_limit_frac",
)
"""Transferable by construction: the workload as the per-layer prior splits it on one reference GPU
(:data:`featurize.layer_profile.REFERENCE_GPU`: compute- or memory-bound nodes, convolutions vs GEMMs vs vector ops,
launches, optimizer, fixed overhead, busy time per kernel), the graph's op-class shares, the batch, and of the GPU only
its precision path and one ratio (reduced-precision GEMM rate / FP32 rate, monotone) and the power cap. The GPU's own
speed enters through the prior alone, so for one graph, batch and precision the model orders GPUs of equal ratio as
the per-layer prior does. Leave-one-GPU-out (2,905 single-GPU rows first built, median %): the same features on the
predicted GPU 20.5, with its DRAM bytes per FLOP and working set over L2 too 20.8: they told GPUs apart without
transferring, and reordered RTX 4090 and 3090."""
TIME_MONOTONE: dict[str, int] = {"ref_log_layer_kernel_time_s": -1, "power_limit_frac": -1, "log_tensor_speedup": 1,
                                 "tensor_precision": -1}
"""Bigger kernels run closer to the prior's rates; a higher power cap is never slower; the more speed-up the prior
promises a reduced-precision GEMM path over FP32, the smaller the share of it training reaches (Lambda BERT fp16 over
the prior: GeForce, promised x1, -0.7; A100, promised x6.9, -0.47); and at an equal promise, the tensor path is never
slower than the prior says relative to FP32 (AMP is never slower than fp32 where the prior prices them alike)."""
RESIDUAL_BOUND = float(np.log(2.5))
"""Largest |log| move of the learned residual (x2.5 either way)."""
RETRAIN_BOUND = 5.0
"""The bound of a model retrained on a user's own runs: their measurements are the truth for their setup (a
framework without the prior's fixed per-step overhead sits x10-100 below it on tiny graphs), so the residual may
follow them (x148 either way, the manifest's ceiling)."""
SOURCE_PRIOR_ROWS = 30.0
"""Shrinkage of a source's offset toward its implementation class: sum of residuals / (rows + this)."""
CLASS_PRIOR_ROWS = 30.0
"""Shrinkage of the ``tuned`` offset toward the reference level."""
BACKFIT_ITERATIONS = 2
MIN_CLASS_ROWS = 200
"""Rows of each implementation class needed before the reference class gets a booster of its own."""


@dataclass
class TimeFit:
    """A fitted time model: the reference booster, per-implementation boosters, features, offsets (log), bound."""

    booster: Any
    features: tuple[str, ...]
    implementation_offsets: dict[str, float]
    source_offsets: dict[str, float] = field(default_factory=dict)
    bound: float = RESIDUAL_BOUND
    n_rows: dict[str, int] = field(default_factory=dict)
    class_boosters: dict[str, Any] = field(default_factory=dict)
    """Implementation -> its own booster (``tuned``: fit on every row); ``booster`` serves the rest (reference)."""

    def predict(self, x: Any, implementation: Any = DEFAULT_IMPLEMENTATION, **kw: Any) -> np.ndarray:
        """Raw score on rows of :data:`TIME_FEATURES` (no offset, unbounded), each row by its implementation's
        booster."""
        return raw_time_score(self.booster, self.class_boosters, np.asarray(x, float), implementation)

    def model_to_string(self, **kw: Any) -> str:
        return self.booster.model_to_string(**kw)

    def feature_name(self) -> list[str]:
        return list(self.features)

    def log_residual(self, feats: pd.DataFrame, implementation: Any = DEFAULT_IMPLEMENTATION) -> np.ndarray:
        """Bounded log(time / t_layers_s) per row for ``implementation`` (one name or one per row)."""
        offs = implementation_offsets(self.implementation_offsets, implementation, len(feats))
        raw = self.predict(feats[list(self.features)].to_numpy(float), implementation)
        return log_time_residual(raw, offs, self.bound)


def raw_time_score(booster: Any, class_boosters: Mapping[str, Any], x: np.ndarray, implementation: Any) -> np.ndarray:
    """The reference booster's score, replaced on the rows of an implementation that has its own booster."""
    names = np.broadcast_to(np.asarray(implementation, object), (len(x),))
    out = booster.predict(x)
    for name, b in class_boosters.items():
        rows = names == name
        if rows.any():
            out = out.copy()
            out[rows] = b.predict(x[rows])
    return out


def check_implementation(implementation: Any) -> str:
    """The implementation name, or InvalidInputError listing the known ones."""
    if implementation not in IMPLEMENTATIONS:
        raise InvalidInputError(f"implementation={implementation!r} is not one of {', '.join(IMPLEMENTATIONS)} "
                                f"({'; '.join(f'{k}: {v}' for k, v in IMPLEMENTATIONS.items())}).")
    return str(implementation)


def implementation_offsets(table: Mapping[str, float], implementation: Any, n: int) -> np.ndarray:
    """Per-row log offset of ``implementation`` (a name, or one name per row)."""
    names = np.broadcast_to(np.asarray(implementation, object), (n,))
    return np.array([float(table.get(str(check_implementation(v)), 0.0)) for v in names])


def log_time_residual(raw: np.ndarray, offset: Any = 0.0, bound: float = RESIDUAL_BOUND) -> np.ndarray:
    """``bound x tanh((raw + offset) / bound)``: monotone in the booster's output, never beyond +-bound."""
    return bound * np.tanh((np.asarray(raw, float) + np.asarray(offset, float)) / bound)


def _classes(rows: pd.DataFrame) -> np.ndarray:
    if IMPLEMENTATION_COL not in rows:
        return np.full(len(rows), DEFAULT_IMPLEMENTATION, object)
    return rows[IMPLEMENTATION_COL].fillna(DEFAULT_IMPLEMENTATION).astype(str).to_numpy(object)


def _shrunk_means(resid: np.ndarray, keys: np.ndarray, prior_rows: float) -> dict[str, float]:
    return {str(k): float(resid[keys == k].sum() / ((keys == k).sum() + prior_rows)) for k in np.unique(keys)}


def _centred(offsets: dict[str, float], sources: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Source offsets minus their class's row-weighted mean: the booster and the class offset carry each class's
    level (a class with one source has no source offset), the sources only their deviations from it."""
    out = dict(offsets)
    for c in np.unique(classes):
        in_c = classes == c
        names, counts = np.unique(sources[in_c], return_counts=True)
        mean = float(np.sum([offsets[str(n)] * k for n, k in zip(names, counts)]) / counts.sum())
        for n in names:
            out[str(n)] = offsets[str(n)] - mean
    return out


def _backfit(feats: pd.DataFrame, y: np.ndarray, weights: np.ndarray, classes: np.ndarray, sources: np.ndarray, *,
             seed: int, params: Mapping[str, Any] | None, rounds: int, bound: float):
    """(booster, class offsets, source offsets) on the rows with a finite ``y``: the booster learns ``y - class
    offset - source offset`` (clipped to +-bound); the non-reference class offset is the shrunk mean residual of its
    rows, each source's the shrunk mean of what its class offset leaves (centred in its class)."""
    from predictor.fit.boosters import fit_one

    ok = np.isfinite(y)
    off_c = {c: 0.0 for c in np.unique(classes[ok])}
    off_s = {s: 0.0 for s in np.unique(sources[ok])}
    booster = None
    for _ in range(BACKFIT_ITERATIONS):
        shift = np.array([off_c.get(c, 0.0) + off_s.get(s, 0.0) for c, s in zip(classes, sources)])
        target = np.where(ok, np.clip(y - shift, -bound, bound), np.nan)
        booster = fit_one(feats, target, weights, list(TIME_FEATURES), "time", seed, params, rounds,
                           monotone=TIME_MONOTONE)
        resid = (y - booster.predict(feats[list(TIME_FEATURES)].to_numpy(float)))[ok]
        off_c = {c: (0.0 if c == DEFAULT_IMPLEMENTATION else v)
                 for c, v in _shrunk_means(resid, classes[ok], CLASS_PRIOR_ROWS).items()}
        within = resid - np.array([off_c[c] for c in classes[ok]])
        off_s = _centred(_shrunk_means(within, sources[ok], SOURCE_PRIOR_ROWS), sources[ok], classes[ok])
    return booster, off_c, off_s


def fit_time(feats: pd.DataFrame, y: np.ndarray, weights: np.ndarray, rows: pd.DataFrame, *, seed: int = 0,
             params: Mapping[str, Any] | None = None, rounds: int | None = None,
             bound: float = RESIDUAL_BOUND) -> TimeFit:
    """Fit the time model on the rows with a finite target ``y`` (log time / t_layers_s) (:func:`_backfit`).

    With rows of both implementation classes, two boosters: ``tuned`` code's learns from every row (with the class
    offset), the reference booster from the reference rows alone -- tuned code's rows made held-out reference
    architectures worse (leave-one-architecture-out time on the energy sources' rows, median %: 24.8 reference rows
    only, 39.8 pooled, 37.6 pooled with tuned rows weighted 0.3)."""
    from predictor.fit.boosters import NUM_ROUNDS

    rounds = rounds or NUM_ROUNDS
    ok = np.isfinite(y)
    classes = _classes(rows)
    sources = rows["source"].astype(str).to_numpy(object)
    kw = dict(seed=seed, params=params, rounds=rounds, bound=bound)
    booster, off_c, off_s = _backfit(feats, y, weights, classes, sources, **kw)
    class_boosters: dict[str, Any] = {}
    ref = ok & (classes == DEFAULT_IMPLEMENTATION)
    if ref.sum() >= MIN_CLASS_ROWS and (ok & ~ref).sum() >= MIN_CLASS_ROWS:
        pooled = booster
        y_ref = np.where(ref, y, np.nan)
        booster, _, ref_s = _backfit(feats, y_ref, weights, classes, sources, **kw)
        off_s = {**off_s, **ref_s}
        class_boosters = {str(c): pooled for c in np.unique(classes[ok & ~ref])}
    impl = {k: float(off_c.get(k, 0.0)) for k in IMPLEMENTATIONS}
    n_rows = {str(k): int(v) for k, v in pd.Series(sources[ok]).value_counts().items()}
    return TimeFit(booster, TIME_FEATURES, impl, off_s, bound, n_rows, class_boosters)


def per_gpu_time_s(t_layers_s: Any, log_residual: Any) -> np.ndarray:
    """Seconds per training sample on ONE GPU: the per-layer prior times the bounded learned residual. Multi-GPU
    scaling (data parallel) multiplies this, never replaces it."""
    return np.asarray(t_layers_s, float) * np.exp(np.asarray(log_residual, float))


def time_model_entry(fit: TimeFit, params: Mapping[str, Any], interval: Mapping[str, Any],
                     rows: pd.DataFrame) -> dict[str, Any]:
    """The manifest's ``time_model`` section: prior, bound, offsets (implementation: applied; source: stated),
    shrinkage, the chosen hyper-parameters, the calibrated time interval and the rows kept out of the fit."""
    return {
        "prior": "t_layers_s",
        "bound": float(fit.bound),
        "implementation_offsets": {k: round(float(v), 6) for k, v in fit.implementation_offsets.items()},
        "class_boosters": {k: {"file": f"time_{k}.txt", "fit_on": "every row (implementation offset learned)"}
                           for k in fit.class_boosters},
        "default_implementation": DEFAULT_IMPLEMENTATION,
        "implementations": dict(IMPLEMENTATIONS),
        "source_offsets": {k: round(float(v), 4) for k, v in sorted(fit.source_offsets.items())},
        "rows_per_source": dict(sorted(fit.n_rows.items())),
        "shrinkage": {"source_prior_rows": SOURCE_PRIOR_ROWS, "class_prior_rows": CLASS_PRIOR_ROWS,
                      "backfit_iterations": BACKFIT_ITERATIONS},
        "params": {k: v for k, v in params.items() if k in ("rounds", "lgbm", "bound")},
        "selection": {k: v for k, v in params.items() if k in ("inner_median_ape", "candidate")},
        "kept_out": dict(rows.attrs.get("kept_out", {})),
        "multi_gpu_rows": int(rows["_multi_gpu"].sum()) if "_multi_gpu" in rows else 0,
        **({"interval": dict(interval)} if interval else {}),
    }
