"""The option grid behind :func:`predictor.advice.advise.advise`: the job's size, the pricing, and every (GPU x precision
it runs x batch that fits x GPU count) with the graph featurized once per (batch, precision).

Public entry points: :func:`job_size`, :func:`pricing_for`, :func:`enumerate_options`, :func:`price_options`, the
value types :class:`Job` and :class:`Pricing`, and :data:`BATCH_LADDER` / :data:`GPU_COUNTS`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from featurize.errors import InvalidInputError, UnknownGPUError
from featurize.types import GPUSpec
from predictor.run import MAX_SAMPLES, check_number, check_run_args
from predictor.units import J_PER_KWH

BATCH_LADDER = tuple(2**k for k in range(10))
"""Per-GPU batch sizes tried by default (1..512): per GPU and precision, the :data:`BATCHES_PER_GPU` largest that
fit its memory."""
BATCHES_PER_GPU = 4
GPU_COUNTS = (1, 2, 4, 8)
"""GPU counts tried once ``predict`` models data parallelism (issue 29); until then one GPU per option."""
GIB = 2.0**30


@dataclass(frozen=True)
class Job:
    """The training job: samples per epoch (from ``tokens`` when given), epochs, validation samples."""

    samples_per_epoch: int | None
    epochs: float
    val_samples: int
    tokens: float | None = None
    notes: tuple[str, ...] = ()

    def resolved(self, model: Any, input_shapes: dict[str, list[int]], featurize_kw: dict[str, Any]) -> Job:
        """``tokens`` -> samples per epoch by ``predict``'s rule (:func:`predictor.tokens.sequence_length`,
        :func:`predictor.tokens.samples_from_tokens`), with the batch-1 probe's bound input shapes."""
        from predictor.tokens import samples_from_tokens, sequence_length

        if self.tokens is None:
            return self
        seq, where = sequence_length(model, dims=featurize_kw.get("dims"), input_shapes=input_shapes,
                                     example_inputs=featurize_kw.get("example_inputs"))
        samples = samples_from_tokens(self.tokens, seq)
        return replace(self, samples_per_epoch=samples, notes=(*self.notes, (
            f"tokens={self.tokens:,.0f} at sequence length {seq:,} ({where}) = {samples:,} samples per epoch.")))


def job_size(model: Any, *, samples_per_epoch: Any, epochs: Any, tokens: Any, val_samples: Any, **_: Any) -> Job:
    """The validated job (``tokens`` resolved later, from the graph's shapes: :meth:`Job.resolved`)."""
    if (samples_per_epoch is None) == (tokens is None):
        raise InvalidInputError("advise needs the job's size: pass samples_per_epoch= (with epochs=) or tokens=, "
                                "not both.")
    check_run_args(batch_size=None, samples_per_epoch=samples_per_epoch, epochs=epochs, val_samples=val_samples,
                   precision="fp32")
    if tokens is not None:
        check_number("tokens", tokens, lo=1, hi=MAX_SAMPLES * 1e6, integer=False)
    return Job(None if samples_per_epoch is None else int(samples_per_epoch), float(epochs), int(val_samples),
               None if tokens is None else float(tokens))


@dataclass
class Pricing:
    """Where prices come from (``snapshot`` offers or the user's ``own`` prices), limits and the grid."""

    mode: str
    specs: list[GPUSpec]
    offers: pd.DataFrame
    source: str
    grid_g_per_kwh: float
    grid_note: str
    pue: float = 1.0
    price_per_gpu_hour: float | None = None
    price_per_kwh: float | None = None
    max_gpus: int = 8
    budget_usd: float | None = None
    deadline_s: float | None = None
    notes: list[str] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)


def _optional(name: str, value: Any, lo: float, hi: float) -> float | None:
    return None if value is None else check_number(name, value, lo=lo, hi=hi, integer=False, lo_open=True)


def pricing_for(*, gpus: Any, cloud: Any, region: Any, price_per_gpu_hour: Any, price_per_kwh: Any, pue: Any,
                max_gpus: Any, budget_usd: Any, deadline_s: Any) -> Pricing:
    """Validate the money and limit arguments and pick the candidate GPUs with their offers."""
    from predictor.carbon import resolve_intensity
    from predictor.prices import filter_offers, price_source

    hourly = None if price_per_gpu_hour is None else check_number("price_per_gpu_hour", price_per_gpu_hour, lo=0,
                                                                   hi=1e6, integer=False)
    kwh = None if price_per_kwh is None else check_number("price_per_kwh", price_per_kwh, lo=0, hi=1e3,
                                                          integer=False)
    pue = check_number("pue", pue, lo=1, hi=5, integer=False)
    n_max = int(check_number("max_gpus", max_gpus, lo=1, hi=64, integer=True))
    budget, deadline = _optional("budget_usd", budget_usd, 0, 1e12), _optional("deadline_s", deadline_s, 0, 1e10)
    intensity, grid_note = resolve_intensity(None, region)
    own = hourly is not None or kwh is not None
    offers, notes = filter_offers(cloud=None if own else cloud, region=None if own else region)
    pricing = Pricing("own" if own else "snapshot", [], offers, "", intensity, grid_note, pue, hourly, kwh, n_max,
                      budget, deadline, notes)
    if own:
        pricing.source = "your prices: " + ", ".join(
            p for p in (hourly is not None and f"${hourly:g} per GPU-hour", kwh is not None and f"${kwh:g} per kWh "
                        f"x PUE {pue:g}") if p)
    else:
        pricing.source = price_source()
    pricing.specs = _candidate_specs(gpus, pricing)
    if not pricing.specs:
        raise InvalidInputError("no GPU to advise on: " + ("; ".join(d["reason"] for d in pricing.dropped)
                                                           or "no offer passes the cloud/region filters") + ".")
    return pricing


def _resolve(name: str) -> tuple[GPUSpec | None, str]:
    from featurize import lookup_gpu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return lookup_gpu(name), ""
        except UnknownGPUError as err:
            return None, str(err)


def _candidate_specs(gpus: Any, pricing: Pricing) -> list[GPUSpec]:
    """Default: every GPU with an offer. Named GPUs: resolved (an ambiguous alias brings every variant that has an
    offer); in snapshot mode a GPU without an offer is dropped with the reason."""
    from featurize.hardware.table import list_gpus

    offered = list(dict.fromkeys(pricing.offers["gpu"]))
    if gpus is None:
        names = offered
        if pricing.mode == "own":
            pricing.notes.append("own prices without gpus=: every GPU of the price snapshot is considered.")
    else:
        names = []
        for name in [gpus] if isinstance(gpus, str) else list(gpus):
            spec, err = _resolve(str(name))
            if spec is None:
                raise UnknownGPUError(err)
            variants = [spec.name]
            if spec.note and pricing.mode == "snapshot":
                variants += [v for v in list_gpus(str(name))["name"] if v in offered and v != spec.name]
            names += variants
    specs = []
    for name in dict.fromkeys(names):
        spec, err = _resolve(name)
        if spec is None:
            pricing.dropped.append({"gpu": name, "reason": f"not in this install's GPU tables ({err.split('.')[0]})"})
        elif pricing.mode == "snapshot" and spec.name not in offered:
            pricing.dropped.append({"gpu": spec.name, "reason": "no offer in the price snapshot for the cloud/region "
                                                                "asked (pass price_per_gpu_hour= for your own)"})
        else:
            specs.append(spec)
    return specs


def precisions_for(spec: GPUSpec, asked: Any) -> tuple[list[str], list[str]]:
    """(precisions to try on ``spec``, asked ones frameworks refuse there). Default: fp32, tf32 where it has TF32
    tensor cores, bf16 where it has its own path else fp16 where it has one (an emulated precision is never faster,
    so it is not offered unless asked)."""
    from featurize.hardware.precision import framework_runs, has_path, path_peak

    if asked is None:
        half = "bf16" if has_path(spec, "bf16") else "fp16"
        tf32 = (path_peak(spec, "tf32") or 0.0) > spec.peak_fp32_flops
        return ["fp32", *(["tf32"] if tf32 else []), *([half] if has_path(spec, half) else [])], []
    asked = [asked] if isinstance(asked, str) else list(asked)
    for p in asked:
        check_run_args(batch_size=None, samples_per_epoch=None, epochs=1, val_samples=0, precision=p)
    ok = [p for p in asked if framework_runs(spec, p)]
    return ok, [p for p in asked if p not in ok]


def _width(precision: str) -> int:
    """Bytes per element: the only thing ``featurize`` takes from the precision (its ``precision`` argument "sets
    bytes per float element"), so fp32/tf32 and fp16/bf16 share one featurization per batch."""
    from featurize.types import BYTES_PER_ELEMENT

    return BYTES_PER_ELEMENT[precision]


def _featurize(model: Any, batch: int, precision: str, kw: dict[str, Any]) -> tuple[dict[str, Any], dict, list[str]]:
    """One featurization (no per-node table): (features row, bound input shapes, the featurizer's notes)."""
    from featurize import featurize
    from predictor.model.notes import featurizer_notes

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gf = featurize(model, batch_size=batch, precision=precision, with_nodes=False, **kw)
    notes = featurizer_notes([*caught, *getattr(gf, "warnings", ())], gf.unsupported_ops)
    row = {**gf.to_dict(), "layer_profile": gf.layer_profile}  # the per-layer prior's input, as predict() passes it
    return row, dict(getattr(gf, "input_shapes", {}) or {}), notes


def _fit_bytes(row: dict[str, float], batch: int) -> float:
    from featurize.physics.prior import training_memory_bytes

    return training_memory_bytes(row["params"], row["trainable_params"], row["activation_bytes"], batch)["total_bytes"]


def _batches(row: dict[str, float], spec: GPUSpec, asked: list[int] | None, samples: int) -> tuple[list[int], list[int]]:
    """(batch sizes to try on ``spec``, asked ones that cannot fit) from the batch-1 probe's memory: the asked ones,
    else the :data:`BATCHES_PER_GPU` largest of the ladder that fit (no featurization at a batch that cannot)."""
    from featurize.physics.prior import largest_batch_that_fits

    most = largest_batch_that_fits(row["params"], row["trainable_params"], row["activation_bytes"], spec.mem_bytes)
    if asked is not None:
        return [b for b in asked if b <= most], [b for b in asked if b > most]
    return [b for b in BATCH_LADDER if b <= min(most, max(samples, 1))][-BATCHES_PER_GPU:], []


def _gpu_counts(pricing: Pricing, spec: GPUSpec) -> list[int]:
    """GPU counts for ``spec``: every count of :data:`GPU_COUNTS` up to ``max_gpus`` that some offer holds
    (snapshot pricing; N GPUs run data-parallel, :func:`predictor.advice.advise.on_gpu_counts`)."""
    counts = [n for n in GPU_COUNTS if n <= pricing.max_gpus]
    if pricing.mode == "snapshot":
        most = int(pricing.offers.loc[pricing.offers["gpu"] == spec.name, "gpus_per_instance"].max())
        counts = [n for n in counts if n <= most]
    return counts


def enumerate_options(model: Any, pricing: Pricing, *, precisions: Any, batch_sizes: Any, job: Job,
                      **featurize_kw: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str], Job]:
    """Every option that runs and fits: (grid with one row per GPU x precision x batch x n_gpus and its feature
    row, the feature rows (one per (batch, element size)), dropped options with the reason, notes, the resolved
    job). A batch-1 probe per element size gives the memory per sample, so no batch that cannot fit is featurized."""
    kw = {k: v for k, v in featurize_kw.items() if v is not None}
    if "frozen" in kw and isinstance(kw["frozen"], str):
        kw["frozen"] = [kw["frozen"]]
    asked = _asked_batches(batch_sizes)
    plan = {spec.name: precisions_for(spec, precisions) for spec in pricing.specs}
    dropped = [*pricing.dropped, *({"gpu": g, "precision": p, "reason": f"{g} cannot run {p}"}
                                   for g, (_, bad) in plan.items() for p in bad)]
    cache: dict[tuple[int, int], tuple[dict[str, float], list[str]]] = {}
    for prec in dict.fromkeys(p for ok, _ in plan.values() for p in ok):  # probes: memory per sample
        if (1, _width(prec)) not in cache:
            row, shapes, notes = _featurize(model, 1, prec, kw)
            cache[(1, _width(prec))] = (row, notes)
            job = job.resolved(model, shapes, kw)
    options = []
    for spec in pricing.specs:
        for prec in plan[spec.name][0]:
            probe = cache[(1, _width(prec))][0]
            tried, too_big = _batches(probe, spec, asked, job.samples_per_epoch)
            dropped += [{"gpu": spec.name, "precision": prec, "batch_size": b, "reason": _too_big(probe, spec, b)}
                        for b in too_big]
            if not tried and not too_big:
                dropped.append({"gpu": spec.name, "precision": prec, "reason": _no_fit(probe, spec)})
            options += [(spec, prec, b) for b in tried]
    for _, prec, b in options:
        if (b, _width(prec)) not in cache:
            row, _, notes = _featurize(model, b, prec, kw)
            cache[(b, _width(prec))] = (row, notes)
    return (*_grid(options, cache, pricing, dropped), job)


def _asked_batches(batch_sizes: Any) -> list[int] | None:
    if batch_sizes is None:
        return None
    out = [batch_sizes] if isinstance(batch_sizes, (int, np.integer)) else list(batch_sizes)
    for b in out:
        check_run_args(batch_size=b, samples_per_epoch=None, epochs=1, val_samples=0, precision="fp32")
    return sorted({int(b) for b in out})


def _no_fit(row: dict[str, float], spec: GPUSpec) -> str:
    return (f"does not fit even at batch 1: one training step needs {_fit_bytes(row, 1) / GIB:,.1f} GiB, "
            f"{spec.name} has {spec.mem_bytes / GIB:,.0f} GiB")


def _too_big(row: dict[str, float], spec: GPUSpec, b: int) -> str:
    return (f"batch {b} does not fit: needs {_fit_bytes(row, b) / GIB:,.1f} GiB, {spec.name} has "
            f"{spec.mem_bytes / GIB:,.0f} GiB")


def _grid(options: list, cache: dict, pricing: Pricing, dropped: list[dict[str, Any]]
          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    keys = list(cache)
    feats = pd.DataFrame([cache[k][0] for k in keys])
    index = {k: i for i, k in enumerate(keys)}
    rows = []
    for spec, prec, b in options:
        row = cache[(b, _width(prec))][0]
        need = _fit_bytes(row, b)
        if need > spec.mem_bytes:
            dropped.append({"gpu": spec.name, "precision": prec, "batch_size": b, "reason": _too_big(row, spec, b)})
            continue
        for n in _gpu_counts(pricing, spec):
            rows.append({"gpu": spec.name, "precision": prec, "batch_size": b, "n_gpus": n, "memory_bytes": need,
                         "mem_bytes_gpu": float(spec.mem_bytes), "spec": spec, "feature_row": index[(b, _width(prec))]})
    notes = list(dict.fromkeys(n for _, ns in cache.values() for n in ns))
    cols = ["gpu", "precision", "batch_size", "n_gpus", "reason"]
    return pd.DataFrame(rows), feats, pd.DataFrame(dropped).reindex(columns=cols), notes


def price_options(frame: pd.DataFrame, pricing: Pricing) -> pd.DataFrame:
    """Rental and electricity cost of every option, with intervals from the time and energy intervals.

    Snapshot: the cheapest instance holding ``n_gpus`` GPUs, paid whole (``note`` says when GPUs sit idle).
    Own prices: GPU-hours x ``price_per_gpu_hour`` plus kWh x PUE x ``price_per_kwh``."""
    from predictor.prices import cheapest_offers

    out = frame.copy()
    hours = {k: out[f"time{k}_s"] / 3600.0 for k in ("", "_low", "_high")}
    kwh = {k: out[f"energy{k}_j"] / J_PER_KWH for k in ("", "_low", "_high")}
    out["note"] = ""
    if pricing.mode == "snapshot":
        best = cheapest_offers(pricing.offers, out["gpu"], out["n_gpus"])
        out = out.merge(best.drop(columns=["countries"]), on=["gpu", "n_gpus"], how="left")
        rate = out["price_usd_per_hour"]
        idle = out["idle_gpus"].fillna(0).astype(int) > 0
        out.loc[idle, "note"] = [f"whole {g}-GPU instance billed ({i} idle)"
                                 for g, i in zip(out.loc[idle, "gpus_per_instance"], out.loc[idle, "idle_gpus"])]
        mapped = out["mapping_note"].fillna("") != ""
        out.loc[mapped, "note"] = (out.loc[mapped, "note"] + "; " + out.loc[mapped, "mapping_note"]).str.lstrip("; ")
        out = out.drop(columns=["mapping_note", "idle_gpus"])
        for k in hours:
            out[f"cost{k}_usd"] = rate * hours[k]
        out["rental_usd"], out["electricity_usd"] = out["cost_usd"], np.nan
        return out
    gpu_rate = (pricing.price_per_gpu_hour or 0.0) * out["n_gpus"]
    kwh_rate = (pricing.price_per_kwh or 0.0) * pricing.pue
    for k in hours:
        out[f"cost{k}_usd"] = gpu_rate * hours[k] + kwh_rate * kwh[k]
    out["rental_usd"] = gpu_rate * hours[""] if pricing.price_per_gpu_hour is not None else np.nan
    out["electricity_usd"] = kwh_rate * kwh[""] if pricing.price_per_kwh is not None else np.nan
    out["price_usd_per_hour"] = gpu_rate if pricing.price_per_gpu_hour is not None else np.nan
    return out
