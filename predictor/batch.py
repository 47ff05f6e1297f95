"""Batch scoring: many candidate graphs x one or more GPUs -> one ranked-ready DataFrame.

Public entry points: :func:`predict_many` and :func:`expand_models` (paths / directories / globs /
ModelProtos / torch modules -> labelled inputs, in order).

How it scales: graphs are featurized in parallel with joblib (processes by default; workers return only the
small ``GraphFeatures.to_dict()`` dicts, never node tables), the model is loaded once, and every (graph, GPU)
pair is predicted by vectorised calls of :func:`predictor.model.predict_frame` (1,024 rows each). Any joblib
backend passes through, so the featurization can run on a cluster::

    import joblib
    from predictor import predict_many

    # Dask: from dask.distributed import Client; client = Client("scheduler:8786")
    with joblib.parallel_config(backend="dask"):
        df = predict_many("candidates/*.onnx", gpu=["A100", "H100"], batch_size=64, samples_per_epoch=50_000)
    # Ray: from ray.util.joblib import register_ray; register_ray(); then backend="ray"

One bad input never raises: its row carries an ``error`` message and NaN numbers.
"""

from __future__ import annotations

import glob as _glob
import os
import warnings as _warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurize.errors import InvalidInputError, JoulecastError
from featurize.types import PRECISIONS

if TYPE_CHECKING:  # pandas is imported where used: featurization workers import this module and never need it
    import pandas as pd

OUTPUT_COLUMNS: tuple[str, ...] = (
    "model",
    "gpu",
    "energy_j",
    "energy_kwh",
    "energy_per_epoch_j",
    "time_s",
    "avg_power_w",
    "interval_low_j",
    "interval_high_j",
    "params",
    "flops_train",
    "warnings",
    "error",
)
_GLOB_CHARS = set("*?[")
# Above this many inputs a progress bar is shown when ``progress=None`` and stderr is a terminal.
PROGRESS_MIN_INPUTS = 50
# With the default n_jobs=-1, fewer graphs than this are featurized in-process: starting worker processes
# (~2-3 s each for the onnx/pandas imports) costs more than it saves on a few dozen graphs.
PARALLEL_MIN_INPUTS = 32
PREDICT_CHUNK_ROWS = 1024


def _is_torch_module(obj: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(obj).__mro__)


def _expand_one(item: Any, index: int) -> list[tuple[str, Any]]:
    """Labelled sources for one element of ``models`` (a directory/glob may give many)."""
    if isinstance(item, (str, os.PathLike)):
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".onnx" and p.is_file())
            if not found:
                raise InvalidInputError(
                    f"directory {text!r} contains no .onnx files; point to a folder of ONNX graphs or a glob "
                    f"such as '{path / '*.onnx'}'"
                )
            return [(str(p), str(p)) for p in found]
        if _GLOB_CHARS & set(text):
            found = sorted(p for p in _glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                raise InvalidInputError(f"glob {text!r} matches no files; check the pattern and the folder")
            return [(p, p) for p in found]
        return [(text, text)]  # a plain path: a missing file becomes that row's error, not an exception
    if isinstance(item, (bytes, bytearray)):
        return [(f"bytes[{index}]", bytes(item))]
    if type(item).__name__ == "ModelProto":
        name = getattr(getattr(item, "graph", None), "name", "") or f"model[{index}]"
        return [(name, item)]
    if _is_torch_module(item):
        return [(f"{type(item).__name__}[{index}]", item)]
    raise InvalidInputError(
        f"models[{index}] has unsupported type {type(item).__name__}; give .onnx paths, a directory, a glob, "
        "onnx.ModelProto objects, ONNX bytes or torch.nn.Module objects"
    )


def expand_models(models: Any) -> list[tuple[str, Any]]:
    """``(label, source)`` pairs in input order; directories and globs expand sorted by name.

    Raises:
        InvalidInputError: nothing to score (empty list, empty directory, glob matching nothing) or an
            unsupported input type.
    """
    if (
        isinstance(models, (str, os.PathLike, bytes, bytearray))
        or not isinstance(models, Iterable)
        or type(models).__name__ == "ModelProto"
        or _is_torch_module(models)
    ):
        models = [models]
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(models):
        out.extend(_expand_one(item, i))
    if not out:
        raise InvalidInputError("no models to score: `models` is empty")
    return out


def _featurize_one(source: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Worker: featurize one graph; returns ``{"features": dict, "warnings": [...]} `` or ``{"error": str}``.

    Runs in a worker process; only small dicts travel back (never the node table).
    """
    from featurize import featurize

    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # unsupported ops are reported below from the features themselves
        try:
            feats = featurize(source, with_nodes=False, **options)
        except JoulecastError as err:
            return {"error": f"{type(err).__name__}: {err}"}
        except Exception as err:  # noqa: BLE001 - one bad file must not stop a batch of thousands
            return {"error": f"{type(err).__name__}: {err}"}
    out = feats.to_dict()
    if not out.get("flops_train", 0) > 0:
        return {"error": "GraphLoadError: the graph has no countable FLOPs (empty or fully unsupported)"}
    msgs = []
    if feats.unsupported_ops:
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(feats.unsupported_ops.items()))
        msgs.append(
            f"unsupported ops counted as zero cost: {ops}; the estimate may be low and the interval "
            "is widened"
        )
    return {"features": out, "warnings": msgs}


def _progress_wanted(progress: bool | None, n: int) -> bool:
    if progress is not None:
        return bool(progress)
    import sys

    return n >= PROGRESS_MIN_INPUTS and sys.stderr.isatty()


def featurize_many(
    sources: Sequence[Any],
    *,
    n_jobs: int = -1,
    backend: str | None = None,
    progress: bool | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Featurize ``sources`` in parallel, results in input order (``{"features"...}`` or ``{"error"...}``).

    Torch modules are exported in this process (export is not safe to fan out); everything else goes to
    joblib workers. ``backend=None`` uses the active joblib backend (loky processes unless a
    ``joblib.parallel_config`` says otherwise).
    """
    from joblib import Parallel, delayed

    results: list[dict[str, Any] | None] = [None] * len(sources)
    parallel_idx = []
    graph_options = {k: v for k, v in options.items() if k != "example_inputs"}  # torch modules only
    for i, src in enumerate(sources):
        if _is_torch_module(src):
            results[i] = _featurize_one(src, options)
        else:
            parallel_idx.append(i)
    options = graph_options
    show = _progress_wanted(progress, len(sources))
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(sources), desc="featurize", unit="graph", initial=len(sources) - len(parallel_idx)
        )
    small = n_jobs == -1 and backend is None and len(parallel_idx) < PARALLEL_MIN_INPUTS
    if len(parallel_idx) <= 1 or n_jobs == 1 or small:
        gen = (_featurize_one(sources[i], options) for i in parallel_idx)
    else:
        par = Parallel(n_jobs=n_jobs, backend=backend, return_as="generator", batch_size="auto")
        gen = par(delayed(_featurize_one)(sources[i], options) for i in parallel_idx)
    for i, res in zip(parallel_idx, gen):
        results[i] = res
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results  # type: ignore[return-value]


def _as_list(gpu: Any) -> list[Any]:
    if isinstance(gpu, (str, bytes)) or not isinstance(gpu, Iterable):
        return [gpu]
    out = list(gpu)
    if not out:
        raise InvalidInputError("gpu is empty; name at least one GPU, e.g. gpu='A100'")
    return out


def predict_many(
    models: Any,
    *,
    gpu: Any,
    batch_size: int,
    samples_per_epoch: int,
    epochs: float = 1,
    n_jobs: int = -1,
    backend: str | None = None,
    progress: bool | None = None,
    model_dir: str | os.PathLike | None = None,
    val_samples: int = 0,
    precision: str = "fp32",
    precision_fallback: bool = False,
    **kw: Any,
) -> pd.DataFrame:
    """Forecast training energy for many graphs on one or more GPUs.

    Args:
        models: ``.onnx`` paths, a directory (its ``*.onnx``), a glob, ``onnx.ModelProto``s, ONNX bytes or
            torch modules (then pass ``example_inputs=``), or a list mixing them.
        gpu: a GPU name or a list of names; several give a cross-GPU what-if (one row per model x GPU).
        batch_size, samples_per_epoch, epochs, val_samples, precision: the training run, as in ``predict``.
        n_jobs: featurization processes (joblib; -1 = all cores, but fewer than 32 graphs run in-process).
            backend: a joblib backend name
            (``"loky"``, ``"threading"``, ``"dask"``, ``"ray"``...); ``None`` = the active one.
        progress: tqdm bar; ``None`` shows it for >= 50 inputs on a terminal.
        model_dir: a model directory from :func:`predictor.retrain`; ``None`` = the shipped model.
        precision_fallback: as in ``predict``: a precision a GPU cannot run is priced as frameworks fall back.
        **kw: passed to ``featurize`` (``dims=``, ``input_shapes=``, ``frozen=``; ``example_inputs=`` goes to
            torch modules only, the same inputs for every module in the call).

    Returns:
        DataFrame in input order (GPU varies fastest) with :data:`OUTPUT_COLUMNS` (energies in J and kWh,
        time in s, power in W, the nominal 90 % interval, params, per-sample training FLOPs, warnings joined
        by ``"; "``, ``error`` -- empty when the row succeeded).

    Raises:
        InvalidInputError: nothing to score, bad run arguments. UnknownGPUError: a GPU name not in the table.
        UnsupportedPrecisionError: a GPU cannot run ``precision`` (without ``precision_fallback``).
    """
    import pandas as pd

    from featurize import lookup_gpu
    from featurize.precision import precision_paths
    from predictor.model import extrapolation_warnings, load_model, predict_frame

    if int(batch_size) < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size!r}")
    if int(samples_per_epoch) < 1:
        raise InvalidInputError(f"samples_per_epoch must be >= 1, got {samples_per_epoch!r}")
    if not float(epochs) > 0 or int(val_samples) < 0:
        raise InvalidInputError(
            f"epochs must be > 0 and val_samples >= 0, got {epochs!r} and {val_samples!r}"
        )
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    model = load_model(model_dir)  # fail fast on a bad model dir, before any featurization
    measured = model.manifest.get("gpus_seen", ())  # an ambiguous alias prefers a measured variant
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # alias notes travel on each row via GPUSpec.note
        specs = [g if hasattr(g, "tdp_w") else lookup_gpu(g, prefer=measured) for g in _as_list(gpu)]
    for spec in specs:  # refuse what a GPU cannot run before featurizing anything
        precision_paths(spec, precision, fallback=precision_fallback)
    items = expand_models(models)
    options = {"batch_size": int(batch_size), "precision": precision, **kw}
    results = featurize_many(
        [src for _, src in items], n_jobs=n_jobs, backend=backend, progress=progress, **options
    )

    ok = [i for i, r in enumerate(results) if "features" in r]
    pred = None
    if ok:
        # graph-major, GPU-minor: each graph row repeated once per GPU
        feats = pd.DataFrame([results[i]["features"] for i in ok])
        rows = feats.loc[feats.index.repeat(len(specs))].reset_index(drop=True)
        row_specs = specs * len(ok)
        # Vectorised, in chunks: the tree walk's temporaries grow ~30 kB per row, so 10k graphs at once would
        # add ~300 MB of peak memory; 1,024-row chunks keep it near 30 MB at no measurable speed cost.
        pred = pd.concat(
            [
                predict_frame(
                    rows.iloc[a : a + PREDICT_CHUNK_ROWS],
                    row_specs[a : a + PREDICT_CHUNK_ROWS],
                    batch_size=int(batch_size),
                    samples_per_epoch=int(samples_per_epoch),
                    epochs=epochs,
                    val_samples=int(val_samples),
                    precision=precision,
                    model=model,
                    precision_fallback=precision_fallback,
                )
                for a in range(0, len(rows), PREDICT_CHUNK_ROWS)
            ],
            ignore_index=True,
        )
        pred["warnings"] = [
            extrapolation_warnings(
                model,
                results[ok[k // len(specs)]]["features"],
                gpu=row_specs[k],
                precision=precision,
                batch_size=int(batch_size),
            )
            for k in range(len(pred))
        ]
    return _assemble(items, results, ok, specs, pred)


_PRED_COLUMNS = (
    "energy_j",
    "energy_per_epoch_j",
    "time_s",
    "avg_power_w",
    "interval_low_j",
    "interval_high_j",
)


def _assemble(items, results, ok, specs, pred) -> pd.DataFrame:
    """Rows in input order, GPU fastest; ``pred`` rows are graph-major, GPU-minor over the ``ok`` graphs."""
    import pandas as pd

    n_gpu = len(specs)
    pos = {i: k for k, i in enumerate(ok)}
    cols = {c: pred[c].to_numpy(float) for c in _PRED_COLUMNS} if pred is not None else {}
    row_warn = list(pred["warnings"]) if pred is not None else []
    nan = float("nan")
    records = []
    for i, (label, _) in enumerate(items):
        res = results[i]
        for g, spec in enumerate(specs):
            if "error" in res:
                rec = dict.fromkeys(OUTPUT_COLUMNS, nan)
                rec.update(model=label, gpu=spec.name, warnings="", error=res["error"])
            else:
                k = pos[i] * n_gpu + g
                feats = res["features"]
                rec = {c: float(cols[c][k]) for c in _PRED_COLUMNS}
                rec.update(
                    model=label,
                    gpu=spec.name,
                    energy_kwh=rec["energy_j"] / 3.6e6,
                    params=feats.get("params", nan),
                    flops_train=feats.get("flops_train", nan),
                    error="",
                )
                msgs = list(res.get("warnings", [])) + ([spec.note] if spec.note else []) + list(row_warn[k])
                rec["warnings"] = "; ".join(dict.fromkeys(m for m in msgs if m))
            records.append(rec)
    df = pd.DataFrame.from_records(records, columns=list(OUTPUT_COLUMNS))
    df["params"] = df["params"].astype("float64")
    return df
