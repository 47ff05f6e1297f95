"""``advise``: which GPU, precision, batch and GPU count to rent for a training job, priced and ranked.

Public entry point: :func:`advise` (see ``../shared/docs/API.md``). It enumerates every option (GPU x precision it
runs x batch that fits x GPU count), forecasts energy, time, cost and CO2 for each with the shipped model in one
vectorised call, prices it from the packaged snapshot (:mod:`predictor.prices`) or the user's own prices, drops
options past the deadline or the budget (saying why), and ranks by the objective. The enumeration, the job
size and the pricing live in :mod:`predictor.advice.options`; the forecast of the option grid is :func:`forecast`.

Hooks for the models in flight: :func:`forecast` is the one place options meet the model (issue 28's time model
and its ``interval_s`` arrive through ``predict_frame``'s columns ``interval_low_s``/``interval_high_s``, used when
present); options on N GPUs (:data:`predictor.advice.options.GPU_COUNTS`) run data-parallel through issue 29's
``data_parallel_frame`` (:func:`on_gpu_counts`); :func:`optimal_power_limits` fills ``optimal_power_limit_w`` (issue 31).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import InvalidInputError
from predictor.advice.options import Job, Pricing, enumerate_options, job_size, price_options, pricing_for
from predictor.carbon import emissions_kg
from predictor.rank import pareto_mask
from predictor.units import J_PER_KWH

OBJECTIVES = {"cost": "cost_usd", "energy": "energy_j", "time": "time_s", "co2": "co2_kg"}
TIE_BREAK = ("cost_usd", "time_s", "energy_j")
OUTPUT_COLUMNS = (
    "rank", "gpu", "n_gpus", "precision", "batch_size", "cloud", "instance_type", "gpus_per_instance",
    "price_usd_per_hour", "cost_usd", "cost_low_usd", "cost_high_usd", "time_s", "time_low_s", "time_high_s",
    "energy_j", "energy_low_j", "energy_high_j", "co2_kg", "co2_low_kg", "co2_high_kg", "rental_usd",
    "electricity_usd", "avg_power_w", "memory_bytes", "mem_bytes_gpu", "optimal_power_limit_w", "measured_config",
    "pareto", "at_risk", "note")
"""Columns of an advise result, in order (``mem_bytes_gpu``: the GPU's memory, against ``memory_bytes``)."""


def advise(
    model: Any,
    *,
    samples_per_epoch: int | None = None,
    epochs: float = 1,
    tokens: float | None = None,
    gpus: list[str] | str | None = None,
    precisions: list[str] | str | None = None,
    max_gpus: int = 8,
    deadline_s: float | None = None,
    budget_usd: float | None = None,
    region: str | None = None,
    cloud: str | list[str] | None = None,
    objective: str = "cost",
    batch_sizes: list[int] | int | None = None,
    price_per_gpu_hour: float | None = None,
    price_per_kwh: float | None = None,
    pue: float = 1.0,
    val_samples: int = 0,
    dims: dict[str, int] | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    example_inputs: Any = None,
    frozen: list[str] | str | None = None,
    model_dir: Any = None,
) -> pd.DataFrame:
    """Rank every way to run a training job by ``objective`` (``cost``, ``energy``, ``time`` or ``co2``).

    Args:
        model: anything ``predict`` accepts (``.onnx`` path, bytes, ``ModelProto``, torch module + ``example_inputs``).
        samples_per_epoch / epochs: the job; or ``tokens`` (a token budget: samples = tokens / the graph's sequence
            length, one pass).
        gpus: GPU names to consider (default: every GPU in the price snapshot that passes ``cloud``/``region``).
        precisions: precisions to consider (default: fp32, tf32 where the GPU has it, bf16 else fp16).
        batch_sizes: per-GPU batch sizes to consider (default: the largest powers of two that fit, up to 512).
        max_gpus: most GPUs per option (options with N > 1 once ``predict`` models them: issue 29).
        deadline_s / budget_usd: drop options that take longer / cost more (point forecast), with the reason.
        region: grid region for CO2 (``predictor.carbon``) and the offers' location; cloud: cloud name(s).
        price_per_gpu_hour / price_per_kwh: your own prices (on-premises): cost = GPU-hours x price + kWh x PUE x
            price, for the GPUs in ``gpus``; the snapshot is not used.
        pue: data-centre PUE for CO2 and electricity cost.

    Returns:
        One row per option, best first (``rank``): gpu, precision, batch_size, n_gpus, the offer (cloud,
        instance_type, gpus_per_instance, price_usd_per_hour), time_s, energy_j, cost_usd, co2_kg each with its
        interval (``*_low``/``*_high``), rental_usd, electricity_usd, memory_bytes, pareto (on the time-cost front),
        at_risk (the interval's upper end passes the deadline or budget) and note. ``df.attrs``: ``dropped`` (a
        DataFrame of options left out with the reason), ``notes``, ``price_source``, ``objective``, ``tie``.
    """
    if objective not in OBJECTIVES:
        raise InvalidInputError(f"objective={objective!r} must be one of {', '.join(OBJECTIVES)}.")
    job = job_size(model, samples_per_epoch=samples_per_epoch, epochs=epochs, tokens=tokens, val_samples=val_samples,
                   dims=dims, input_shapes=input_shapes, example_inputs=example_inputs)
    pricing = pricing_for(gpus=gpus, cloud=cloud, region=region, price_per_gpu_hour=price_per_gpu_hour,
                          price_per_kwh=price_per_kwh, pue=pue, max_gpus=max_gpus, budget_usd=budget_usd,
                          deadline_s=deadline_s)
    grid, feats, dropped, notes, job = enumerate_options(
        model, pricing, precisions=precisions, batch_sizes=batch_sizes, job=job, dims=dims,
        input_shapes=input_shapes, example_inputs=example_inputs, frozen=frozen)
    notes = [*job.notes, *pricing.notes, *notes]
    if grid.empty:
        return _empty(dropped, notes, pricing, objective)
    frame = forecast(grid, feats, job, model_dir=model_dir)
    frame = price_options(frame, pricing)
    frame["co2_kg"], frame["co2_low_kg"], frame["co2_high_kg"] = (
        emissions_kg(frame[c] / J_PER_KWH, pricing.grid_g_per_kwh, pricing.pue)
        for c in ("energy_j", "energy_low_j", "energy_high_j"))
    frame["optimal_power_limit_w"] = optimal_power_limits(frame)
    kept, late = _apply_limits(frame, pricing)
    dropped = pd.concat([dropped, late], ignore_index=True)
    ranked = rank(kept, objective)
    _attach(ranked, dropped, notes, pricing, objective)
    return ranked


def forecast(grid: pd.DataFrame, feats: pd.DataFrame, job: Job, *, model_dir: Any = None) -> pd.DataFrame:
    """Energy, time and power of every option in ``grid`` (one row per GPU x precision x batch x n_gpus; ``feats``
    the graph features of its (batch, precision)), with ``predict_frame`` in one vectorised call.

    The only place options meet the model: issue 28's time model arrives through ``predict_frame``; a time
    interval (``interval_low_s``/``interval_high_s``) is used when the model gives one, else the energy interval's
    relative width is applied to time (stated in the notes)."""
    from predictor.model.inference import predict_frame
    from predictor.model.loaded import load_model

    loaded = load_model(model_dir)
    rows = feats.loc[grid["feature_row"].to_numpy()].reset_index(drop=True)
    out = predict_frame(rows, list(grid["spec"]), batch_size=grid["batch_size"].to_numpy(),
                        samples_per_epoch=job.samples_per_epoch, epochs=job.epochs, val_samples=job.val_samples,
                        precision=grid["precision"].to_numpy(), model=loaded)
    out = on_gpu_counts(out, rows, grid, job)
    frame = grid.drop(columns=["spec", "feature_row"]).reset_index(drop=True)
    frame["time_s"] = out["time_s"].to_numpy()
    frame["energy_j"] = out["energy_j"].to_numpy()
    frame["avg_power_w"] = out["avg_power_w"].to_numpy()
    frame["energy_low_j"] = out["interval_low_j"].to_numpy()
    frame["energy_high_j"] = out["interval_high_j"].to_numpy()
    if {"interval_low_s", "interval_high_s"} <= set(out.columns):
        frame["time_low_s"], frame["time_high_s"] = out["interval_low_s"].to_numpy(), out["interval_high_s"].to_numpy()
    else:
        frame["time_low_s"] = frame["time_s"] * frame["energy_low_j"] / frame["energy_j"]
        frame["time_high_s"] = frame["time_s"] * frame["energy_high_j"] / frame["energy_j"]
    frame["measured_config"] = out["measured_config"].to_numpy()
    frame["optimal_power_limit_w"] = out["optimal_power_limit_w"].to_numpy()  # issue 31 (predictor.power_limits)
    return frame


def on_gpu_counts(pred: pd.DataFrame, rows: pd.DataFrame, grid: pd.DataFrame, job: Job) -> pd.DataFrame:
    """``pred`` (single-GPU forecasts of ``grid``'s rows) with each row of ``n_gpus`` > 1 run data-parallel on that
    many GPUs (issue 29's :func:`predictor.parallel.data_parallel_frame`, DDP, the per-GPU batch unchanged)."""
    from predictor.parallel import data_parallel_frame

    out = pred.copy()
    counts = grid["n_gpus"].to_numpy(int)
    for n in sorted(set(counts) - {1}):
        at = np.flatnonzero(counts == n)
        part = data_parallel_frame(pred.iloc[at].reset_index(drop=True), rows.iloc[at].reset_index(drop=True),
                                   list(grid["spec"].iloc[at]), n_gpus=int(n), parallelism="ddp",
                                   batch_size=grid["batch_size"].to_numpy()[at],
                                   samples_per_epoch=job.samples_per_epoch, epochs=job.epochs)
        for col in pred.columns.intersection(part.columns):
            out.loc[at, col] = part[col].to_numpy()
    return out


def optimal_power_limits(frame: pd.DataFrame) -> np.ndarray:
    """The energy-optimal power cap per option within a 10 % slowdown (``predict_frame``'s
    ``optimal_power_limit_w``, :mod:`predictor.power_limits`); NaN where a frame lacks it."""
    if "optimal_power_limit_w" not in frame:
        return np.full(len(frame), np.nan)
    return frame["optimal_power_limit_w"].to_numpy(float)


def _apply_limits(frame: pd.DataFrame, pricing: Pricing) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Options within the deadline and budget (point forecast), and those dropped with the reason; ``at_risk``
    names a limit the interval's upper end passes."""
    reasons = pd.Series("", index=frame.index)
    risk = pd.Series("", index=frame.index)
    if pricing.deadline_s is not None:
        d = pricing.deadline_s
        late = frame["time_s"] > d
        reasons[late] = [f"takes {_hours(t)}, past the deadline of {_hours(d)}" for t in frame.loc[late, "time_s"]]
        risk[~late & (frame["time_high_s"] > d)] = "deadline"
    if pricing.budget_usd is not None:
        b = pricing.budget_usd
        over = (frame["cost_usd"] > b) & (reasons == "")
        reasons[over] = [f"costs ${c:,.2f}, over the budget of ${b:,.2f}" for c in frame.loc[over, "cost_usd"]]
        near = (reasons == "") & (frame["cost_high_usd"] > b)
        risk[near] = np.where(risk[near] == "", "budget", risk[near] + ",budget")
    frame = frame.assign(at_risk=risk)
    cut = reasons != ""
    dropped = frame.loc[cut, ["gpu", "precision", "batch_size", "n_gpus"]].assign(reason=reasons[cut])
    return frame.loc[~cut].reset_index(drop=True), dropped.reset_index(drop=True)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.2f} h" if seconds >= 7200 else f"{seconds / 60:,.1f} min"


def rank(frame: pd.DataFrame, objective: str) -> pd.DataFrame:
    """``frame`` sorted by the objective (ties broken by cost, time, energy; unpriced options last), ``rank`` 1..n,
    and ``pareto`` (on the time-cost front)."""
    key = OBJECTIVES[objective]
    order = [key, *[c for c in TIE_BREAK if c != key]]
    out = frame.sort_values(order, na_position="last", kind="mergesort").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out["pareto"] = pareto_mask(out["time_s"].to_numpy(), out["cost_usd"].to_numpy())
    return out.reindex(columns=list(OUTPUT_COLUMNS))


def tie_note(ranked: pd.DataFrame, objective: str) -> str:
    """A sentence when the runner-up's forecast lies inside the leader's interval (the order of the top two is
    not resolved by the forecast), else ''."""
    if len(ranked) < 2:
        return ""
    key = OBJECTIVES[objective]
    high = {"cost_usd": "cost_high_usd", "energy_j": "energy_high_j", "time_s": "time_high_s",
            "co2_kg": "co2_high_kg"}[key]
    a, b = ranked.iloc[0], ranked.iloc[1]
    if not (np.isfinite(b[key]) and b[key] <= a[high]):
        return ""
    return (f"tie: #2 ({describe(b)}) is within #1's {objective} interval ({describe(a)}); the forecast does "
            "not separate them.")


def describe(row: Any) -> str:
    """``"H100-SXM5-80GB x1, bf16, batch 64"``."""
    return f"{row['gpu']} x{int(row['n_gpus'])}, {row['precision']}, batch {int(row['batch_size'])}"


def _attach(ranked: pd.DataFrame, dropped: pd.DataFrame, notes: list[str], pricing: Pricing, objective: str) -> None:
    ranked.attrs.update(dropped=dropped, notes=list(dict.fromkeys(notes)), price_source=pricing.source,
                        objective=objective, tie=tie_note(ranked, objective), grid=pricing.grid_note)


def _empty(dropped: pd.DataFrame, notes: list[str], pricing: Pricing, objective: str) -> pd.DataFrame:
    out = pd.DataFrame(columns=list(OUTPUT_COLUMNS))
    _attach(out, dropped, notes, pricing, objective)
    return out
