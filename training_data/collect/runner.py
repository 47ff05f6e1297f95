"""Run a sweep: train each config for a few short epochs on synthetic data and write its measured rows.

Public entry points:

* :func:`run_sweep` -- measure a list of :class:`RunConfig` on an :class:`EnergyDevice`, one Parquet file per run
  under ``<out>/<gpu-slug>/`` written as soon as the run ends; configs already on disk are skipped (resume).
* :func:`measure_run` -- one run -> DataFrame (one row per epoch + one ``row_kind="run"`` row), or a
  ``row_kind="skipped"`` row on out-of-memory.
* :func:`load_runs` -- read a run directory back (measured rows only by default).
* :func:`gpu_slug`, :func:`done_keys`, :data:`EXTRA_COLUMNS`.

Rows follow ``training_data.schema.RUN_COLUMNS`` plus :data:`EXTRA_COLUMNS`. Method: ``training_data/runs/README.md``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import json
import logging
import math
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from featurize.errors import InvalidInputError

from training_data.collect.nvml import EnergyDevice, EnergyMeter, PowerSampler, WindowEnergy
from training_data.collect.sweep import RunConfig

log = logging.getLogger("training_data.collect")

SOURCE = "joulecast_collect"
#: canonical run columns (same order as ``training_data.schema.RUN_COLUMNS``)
RUN_COLUMNS: tuple[str, ...] = (
    "source", "run_id", "gpu", "architecture", "model", "input_shape", "batch_size", "samples_per_epoch",
    "val_samples", "epochs", "precision", "frozen", "trainable_fraction", "power_limit_w", "default_power_limit",
    "energy_per_epoch_j", "time_per_epoch_s", "avg_power_w", "energy_per_sample_j", "energy_j", "time_s", "scope",
    "phase", "notes", "n_gpus", "implementation", "workload", "precision_logged", "tensor_parallel", "pipeline_parallel",
    "context_parallel", "data_parallel", "grad_accum", "parallelism",
)
#: measurement columns written after the canonical ones
EXTRA_COLUMNS: tuple[str, ...] = (
    "row_kind", "epoch_index", "is_warmup", "config_hash", "repeat", "family", "optimizer", "config_json",
    "params_count", "steps_per_epoch", "energy_method", "counter_energy_j", "integral_energy_j", "power_samples_n",
    "mean_util_pct", "mean_sm_clock_mhz", "max_mem_used_bytes", "mean_temp_c", "torch_max_mem_allocated_bytes",
    "calib_time_s", "calib_energy_j", "gpu_name_nvml", "driver_version", "torch_version", "cuda_version", "torch_flags",
    "energy_device", "dry_run", "sweep_name", "started_at_utc", "hostname", "skip_reason",
)
ROW_KINDS: tuple[str, ...] = ("epoch", "run", "skipped")

Builder = Callable[..., Any]


@dataclass(frozen=True)
class RunnerOptions:
    """How each run is executed. ``steps_per_epoch`` fixed, or calibrated to ``target_epoch_s`` (seconds)."""

    epochs: int = 4
    steps_per_epoch: int | None = None
    target_epoch_s: float | None = 1.0
    min_steps: int = 5
    max_steps: int = 2000
    torch_device: str = "cuda"
    tiny: bool = False
    tiny_batch_cap: int = 4
    seed: int = 0
    sweep_name: str = ""


@dataclass
class SweepSummary:
    """What one :func:`run_sweep` call did. Times in seconds."""

    measured: list[str] = field(default_factory=list)
    skipped_existing: int = 0
    oom: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_started: int = 0
    elapsed_s: float = 0.0
    stopped_by: str = ""  # "", "budget"


def gpu_slug(name: str) -> str:
    """Folder-safe GPU name: ``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "unknown-gpu"


def done_keys(run_dir: Path) -> set[str]:
    """Run keys (``<config_hash>-r<repeat>``) already written in ``run_dir``."""
    if not run_dir.is_dir():
        return set()
    return {p.name[: -len(".parquet")] for p in run_dir.glob("*.parquet")}


def write_run(df: pd.DataFrame, run_dir: Path, key: str) -> Path:
    """Write one run's rows atomically (temp file + rename), so a killed sweep never leaves half a file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{key}.parquet"
    tmp = run_dir / f".{key}.parquet.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def load_runs(out_dir: str | Path, *, row_kinds: Sequence[str] = ("epoch", "run")) -> pd.DataFrame:
    """All run files under ``out_dir`` (recursively) concatenated, keeping rows of ``row_kinds``."""
    files = sorted(Path(out_dir).rglob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(RUN_COLUMNS) + list(EXTRA_COLUMNS))
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df[df["row_kind"].isin(list(row_kinds))].reset_index(drop=True)


def model_ref(cfg: RunConfig) -> str:
    """The schema's ``model`` value: ``collect:<arch>?k=v&...`` (rebuild with ``models.build(config_from_ref)``)."""
    q = "&".join(f"{k}={v}" for k, v in cfg.params)
    return f"collect:{cfg.arch}" + (f"?{q}" if q else "")


# ---------------------------------------------------------------- one run
def _is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _make_optimizer(name: str, params):
    import torch

    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    return torch.optim.AdamW(params, lr=1e-4)


def _versions(torch_device: str) -> dict[str, str]:
    import torch

    flags = (f"matmul_tf32={torch.backends.cuda.matmul.allow_tf32};cudnn_tf32={torch.backends.cudnn.allow_tf32};"
             f"cudnn_benchmark={torch.backends.cudnn.benchmark}")
    return {"torch_version": torch.__version__, "cuda_version": str(torch.version.cuda or ""), "torch_flags": flags}


def measure_run(cfg: RunConfig, *, energy: EnergyDevice, meter: EnergyMeter, opts: RunnerOptions,
                builder: Builder | None = None) -> pd.DataFrame:
    """Train ``cfg`` for ``opts.epochs`` epochs and return its rows (epoch rows + one run row).

    Out-of-memory (``torch.OutOfMemoryError`` or a RuntimeError saying so) returns one ``row_kind="skipped"`` row
    with the reason after freeing memory; any other error propagates.
    """
    import torch

    from training_data.collect import models

    builder = builder or models.build
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        result = _train_and_measure(cfg, energy=energy, meter=meter, opts=opts, builder=builder)
        err_text = ""
    except Exception as err:  # noqa: BLE001 - only OOM is swallowed, see below
        if not _is_oom(err):
            raise
        err_text = f"out of memory: {str(err).splitlines()[0][:300]}"
        result = None
    if result is None:  # outside the except block, so the traceback's tensors can be freed
        _free_memory(opts.torch_device)
        return _rows(cfg, [], energy, opts, started, extra={"skip_reason": err_text}, row_kind="skipped")
    windows, info = result
    return _rows(cfg, windows, energy, opts, started, extra=info)


def _free_memory(torch_device: str) -> None:
    import torch

    gc.collect()
    if torch_device.startswith("cuda"):
        torch.cuda.empty_cache()


def _train_and_measure(cfg, *, energy, meter, opts, builder):
    import torch

    from training_data.collect.models import loss_fn

    dev = opts.torch_device
    torch.manual_seed(opts.seed)
    with torch.device(dev):
        module, input_fn = builder(cfg, tiny=opts.tiny)
    module = module.to(dev).train()
    n_params = int(sum(p.numel() for p in module.parameters()))
    opt = _make_optimizer(cfg.optimizer, module.parameters())
    batch = min(cfg.batch_size, opts.tiny_batch_cap) if opts.tiny else cfg.batch_size
    inputs, target = input_fn(batch, dev)
    autocast = (torch.autocast(device_type=dev.split(":")[0], dtype=torch.bfloat16) if cfg.precision == "bf16"
                else contextlib.nullcontext())

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(module(*inputs), target)
        loss.backward()
        opt.step()

    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # calibration: first step (lazy init, cuDNN algorithm choice) + timing; metered but not an epoch
    token = meter.begin()
    step()
    _sync(dev)
    steps = opts.steps_per_epoch
    if steps is None:
        n, t_start = 1, time.perf_counter()
        while True:
            for _ in range(n):
                step()
            _sync(dev)
            dt = time.perf_counter() - t_start
            if dt >= 0.2 or n >= opts.max_steps:
                break
            n, t_start = n * 2, time.perf_counter()
        per_step = dt / n
        steps = int(min(opts.max_steps, max(opts.min_steps, round((opts.target_epoch_s or 1.0) / per_step))))
    calib = meter.end(token)
    windows: list[WindowEnergy] = []
    for _ in range(opts.epochs):
        token = meter.begin()
        for _ in range(steps):
            step()
        _sync(dev)
        windows.append(meter.end(token))
    peak = float(torch.cuda.max_memory_allocated()) if dev.startswith("cuda") else math.nan
    del module, opt, inputs, target
    info = {"params_count": n_params, "steps_per_epoch": steps, "calib_time_s": calib.time_s,
            "calib_energy_j": calib.energy_j, "torch_max_mem_allocated_bytes": peak, "batch_size": batch}
    return windows, info


def _rows(cfg: RunConfig, windows: list[WindowEnergy], energy: EnergyDevice, opts: RunnerOptions, started: str,
          *, extra: dict[str, Any], row_kind: str = "run") -> pd.DataFrame:
    from training_data.collect.models import architecture_name, input_shape

    slug = gpu_slug(energy.name)
    base_id = f"{slug}-{cfg.run_key}"
    steps = int(extra.get("steps_per_epoch", 0) or 0)
    batch = int(extra.get("batch_size", cfg.batch_size))
    samples = steps * batch
    limit, default_limit = energy.power_limit_w, energy.default_power_limit_w
    common: dict[str, Any] = {
        "source": SOURCE, "gpu": energy.name, "architecture": architecture_name(cfg), "model": model_ref(cfg),
        "input_shape": input_shape(cfg), "batch_size": batch, "samples_per_epoch": samples,
        "val_samples": 0, "precision": cfg.precision, "frozen": "", "trainable_fraction": 1.0,
        "power_limit_w": limit,
        "default_power_limit": (bool(abs(limit - default_limit) < 0.5)
                                if math.isfinite(limit) and math.isfinite(default_limit) else None),
        "scope": "gpu_nvml" if energy.kind == "nvml" else f"gpu_{energy.kind}", "phase": "all",
        "config_hash": cfg.config_hash, "repeat": cfg.repeat, "family": cfg.family, "optimizer": cfg.optimizer,
        "config_json": json.dumps(cfg.identity(), sort_keys=True), "gpu_name_nvml": energy.name,
        "driver_version": energy.driver_version, **_versions(opts.torch_device), "energy_device": energy.kind,
        "dry_run": bool(opts.tiny), "sweep_name": opts.sweep_name, "started_at_utc": started,
        "hostname": platform.node(), "skip_reason": "",
        "notes": (f"synthetic inputs on {opts.torch_device}; {steps} steps/epoch; epoch 0 = warm-up; "
                  f"optimizer {cfg.optimizer}; tiny dry-run model" if opts.tiny else
                  f"synthetic inputs on {opts.torch_device}; {steps} steps/epoch; epoch 0 = warm-up; "
                  f"optimizer {cfg.optimizer}"),
    }
    common.update(extra)
    rows = []
    if row_kind == "skipped":
        rows.append({**common, "run_id": base_id, "row_kind": "skipped", "epochs": math.nan,
                     "notes": f"skipped: {extra.get('skip_reason', '')}"})
    else:
        for i, w in enumerate(windows):
            rows.append({**common, **_window_cols(w, samples), "run_id": f"{base_id}-e{i}", "row_kind": "epoch",
                         "epoch_index": i, "is_warmup": i == 0, "epochs": 1.0})
        steady = windows[1:]
        e_steady = sum(w.energy_j for w in steady)
        t_steady = sum(w.time_s for w in steady)
        run = {
            **common, "run_id": base_id, "row_kind": "run", "epoch_index": -1, "is_warmup": False,
            "epochs": float(len(windows)),
            "energy_j": sum(w.energy_j for w in windows), "time_s": sum(w.time_s for w in windows),
            "energy_per_epoch_j": e_steady / len(steady), "time_per_epoch_s": t_steady / len(steady),
            "avg_power_w": e_steady / t_steady if t_steady > 0 else math.nan,
            "energy_per_sample_j": e_steady / len(steady) / samples if samples else math.nan,
            "energy_method": ",".join(sorted({w.energy_method for w in windows})),
            "counter_energy_j": sum(w.counter_energy_j for w in windows),
            "integral_energy_j": sum(w.integral_energy_j for w in windows),
            "power_samples_n": sum(w.power_samples_n for w in windows),
            "mean_util_pct": _mean([w.mean_util_pct for w in steady]),
            "mean_sm_clock_mhz": _mean([w.mean_sm_clock_mhz for w in steady]),
            "max_mem_used_bytes": max((w.max_mem_used_bytes for w in windows), default=math.nan),
            "mean_temp_c": _mean([w.mean_temp_c for w in steady]),
        }
        rows.append(run)
    df = pd.DataFrame(rows)
    for col in (*RUN_COLUMNS, *EXTRA_COLUMNS):
        if col not in df:
            df[col] = None
    df = df[list(RUN_COLUMNS) + list(EXTRA_COLUMNS)]
    for col in ("energy_per_epoch_j", "time_per_epoch_s", "avg_power_w", "energy_per_sample_j", "energy_j",
                "time_s", "epochs", "power_limit_w", "counter_energy_j", "integral_energy_j", "mean_util_pct",
                "mean_sm_clock_mhz", "max_mem_used_bytes", "mean_temp_c", "torch_max_mem_allocated_bytes",
                "calib_time_s", "calib_energy_j", "trainable_fraction"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("epoch_index", "power_samples_n", "params_count", "steps_per_epoch"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    df["default_power_limit"] = df["default_power_limit"].astype("boolean")
    df["is_warmup"] = df["is_warmup"].astype("boolean")
    return df


def _window_cols(w: WindowEnergy, samples: int) -> dict[str, Any]:
    return {
        "energy_j": w.energy_j, "time_s": w.time_s, "energy_per_epoch_j": w.energy_j, "time_per_epoch_s": w.time_s,
        "avg_power_w": w.energy_j / w.time_s if w.time_s > 0 else math.nan,
        "energy_per_sample_j": w.energy_j / samples if samples else math.nan,
        "energy_method": w.energy_method, "counter_energy_j": w.counter_energy_j,
        "integral_energy_j": w.integral_energy_j, "power_samples_n": w.power_samples_n,
        "mean_util_pct": w.mean_util_pct, "mean_sm_clock_mhz": w.mean_sm_clock_mhz,
        "max_mem_used_bytes": w.max_mem_used_bytes, "mean_temp_c": w.mean_temp_c,
    }


def _mean(vals: Sequence[float]) -> float:
    v = [x for x in vals if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else math.nan


# ---------------------------------------------------------------- the sweep
def run_sweep(configs: Sequence[RunConfig], *, energy: EnergyDevice, out_dir: str | Path,
              opts: RunnerOptions = RunnerOptions(), budget_s: float | None = None, est_run_s: float = 6.0,
              sample_interval_s: float = 0.05, builder: Builder | None = None,
              on_run: Callable[[RunConfig, pd.DataFrame], None] | None = None) -> SweepSummary:
    """Measure ``configs`` in order, writing ``<out_dir>/<gpu-slug>/<config_hash>-r<repeat>.parquet`` per run.

    Skips keys already on disk; stops before a run that would not finish inside ``budget_s`` (estimated from
    the slowest of the last 20 runs, or ``est_run_s`` before any). OOM runs are written as ``skipped`` (not
    retried); other failures are logged, counted in ``summary.failed`` and not written (retried next time).
    """
    if opts.epochs < 2:
        raise InvalidInputError(f"epochs must be >= 2 (epoch 0 is the warm-up), got {opts.epochs}")
    t_start = time.monotonic()
    run_dir = Path(out_dir) / gpu_slug(energy.name)
    done = done_keys(run_dir)
    summary = SweepSummary()
    durations: list[float] = []
    sampler = PowerSampler(energy, interval_s=sample_interval_s)
    meter = EnergyMeter(energy, sampler)
    todo = [c for c in configs if c.run_key not in done]
    summary.skipped_existing = len(configs) - len(todo)
    with sampler:
        for i, cfg in enumerate(todo):
            elapsed = time.monotonic() - t_start
            est = max(durations[-20:]) if durations else est_run_s
            if budget_s is not None and elapsed + est > budget_s:
                summary.stopped_by = "budget"
                summary.not_started = len(todo) - i
                break
            t0 = time.monotonic()
            try:
                df = measure_run(cfg, energy=energy, meter=meter, opts=opts, builder=builder)
            except Exception as err:  # noqa: BLE001 - one broken config must not end a paid GPU session
                log.exception("run %s (%s) failed: %s", cfg.run_key, cfg.model_name(), err)
                summary.failed.append(cfg.run_key)
                _free_memory(opts.torch_device)
                continue
            write_run(df, run_dir, cfg.run_key)
            durations.append(time.monotonic() - t0)
            if (df["row_kind"] == "skipped").any():
                summary.oom.append(cfg.run_key)
                log.warning("run %s (%s) skipped: %s", cfg.run_key, cfg.model_name(), df["skip_reason"].iloc[0])
            else:
                summary.measured.append(cfg.run_key)
                r = df[df["row_kind"] == "run"].iloc[0]
                log.info("[%d/%d] %s %s bs=%d %s: %.1f J/epoch, %.2f s/epoch, %.0f W (%.1f s)", i + 1, len(todo),
                         cfg.run_key, cfg.model_name(), cfg.batch_size, cfg.precision, r["energy_per_epoch_j"],
                         r["time_per_epoch_s"], r["avg_power_w"], durations[-1])
            if on_run is not None:
                on_run(cfg, df)
    summary.elapsed_s = time.monotonic() - t_start
    return summary
