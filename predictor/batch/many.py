"""Batch scoring: many candidate graphs x one or more GPUs -> one ranked-ready DataFrame.

Public entry points: :func:`predict_many` and :func:`expand_models` (paths / directories / globs /
ModelProtos / torch modules -> labelled inputs, in order).

How it scales: graphs are featurized in parallel worker processes that return only the small
``GraphFeatures.to_dict()`` dicts, never node tables; the model is loaded once, and finished graphs are
predicted by vectorised calls of :func:`predictor.model.predict_frame` (up to 1,024 rows each) as they arrive.
Each graph runs under a time and memory limit (:mod:`predictor.batch.isolation`, defaults 60 s and 4096 MB): a graph
that passes one, or aborts its process, becomes an error row and a fresh process takes the next graph. On a
Dask cluster (``pip install 'joulecast[dask]'``) the graphs are featurized on its workers, under the same
limits (:mod:`predictor.batch.cluster`)::

    from predictor import predict_many

    df = predict_many("/shared/candidates/*.onnx", gpu=["A100", "H100"], batch_size=64,
                      samples_per_epoch=50_000, scheduler="tcp://scheduler:8786")

One bad input never raises: its row carries an ``error`` message and NaN numbers. ``on_rows`` receives rows
as they are computed (``joulecast score --out`` appends them to its file), so a crash loses nothing finished.
"""

from __future__ import annotations

import os
import time
import warnings as _warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurize.errors import InvalidInputError
from featurize.graph.torch_export import is_torch_module
from predictor.batch.inputs import as_list, expand_models, worker_payload
from predictor.batch.isolation import (
    DEFAULT_MEMORY_LIMIT_MB,
    DEFAULT_TIME_LIMIT_S,
    FEATURIZE_TARGET,
    FEATURIZE_WARMUP,
    Limits,
    borrow_pool,
    check_limits,
)
from predictor.batch.worker import featurize_one
from predictor.units import J_PER_KWH

if TYPE_CHECKING:  # pandas is imported where used: featurization workers import this module and never need it
    import pandas as pd


OUTPUT_COLUMNS: tuple[str, ...] = (
    "model",
    "name",
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
    "memory_bytes",
    "fits",
    "n_gpus",
    "samples_per_epoch",
    "warnings",
    "error",
)


# Above this many inputs a progress bar is shown when ``progress=None`` and stderr is a terminal.
PROGRESS_MIN_INPUTS = 50


# With the default n_jobs=-1, fewer graphs than this are featurized by one worker process: starting more
# (~1.5 s each for the onnx imports) costs more than it saves on a few dozen graphs.
PARALLEL_MIN_INPUTS = 32


PREDICT_CHUNK_ROWS = 1024


FLUSH_EVERY_S = 2.0
"""Finished graphs are predicted and handed to ``on_rows`` at least this often while results arrive."""


def _progress_wanted(progress: bool | None, n: int) -> bool:
    if progress is not None:
        return bool(progress)
    import sys

    return n >= PROGRESS_MIN_INPUTS and sys.stderr.isatty()


def _n_workers(n_jobs: int, n: int) -> int:
    if n_jobs == -1:
        return 1 if n < PARALLEL_MIN_INPUTS else max(1, min(os.cpu_count() or 1, n))
    return max(1, min(int(n_jobs), n))


def featurize_stream(
    sources: Sequence[Any],
    *,
    n_jobs: int = -1,
    backend: str | None = None,
    scheduler: Any = None,
    limits: Limits = Limits(),
    **options: Any,
) -> Iterator[tuple[int, dict[str, Any]] | None]:
    """``(index, result)`` for every source as each finishes (``{"features"...}`` or ``{"error"...}``), and
    ``None`` now and then while nothing finishes.

    Torch modules are exported in this process first (export is not safe to fan out). The rest run in
    isolated worker processes under ``limits`` (:mod:`predictor.batch.isolation`); with ``scheduler`` on a Dask
    cluster (:mod:`predictor.batch.cluster`, the same limits on every worker); with a joblib ``backend`` name
    through joblib, without per-graph limits.
    """
    graph_options = {k: v for k, v in options.items() if k != "example_inputs"}  # torch modules only
    rest = []
    for i, src in enumerate(sources):
        if is_torch_module(src):
            yield i, featurize_one(src, options)
        else:
            rest.append(i)
    if not rest:
        return
    if scheduler is not None:
        from predictor.batch.cluster import featurize_on_cluster

        tasks = [(i, (worker_payload(sources[i]), graph_options)) for i in rest]
        yield from featurize_on_cluster(scheduler, tasks, limits)
    elif backend is not None:
        from joblib import Parallel, delayed

        par = Parallel(n_jobs=n_jobs, backend=backend, return_as="generator", batch_size="auto")
        yield from zip(rest, par(delayed(featurize_one)(sources[i], graph_options) for i in rest))
    else:
        jobs = [(sources[i], graph_options) for i in rest]
        yield from (item if item is None else (rest[item[0]], item[1])
                    for item in featurize_isolated(jobs, n_jobs=n_jobs, limits=limits))


def featurize_isolated(jobs: Sequence[tuple[Any, dict[str, Any]]], *, n_jobs: int = -1, limits: Limits = Limits()
                       ) -> Iterator[tuple[int, dict[str, Any]] | None]:
    """``(job index, result)`` for ``(graph source, featurize options)`` jobs, each featurized in an isolated
    worker process under ``limits`` (:mod:`predictor.batch.isolation`), as each finishes; ``None`` now and then while
    nothing finishes. Sources are paths, bytes or ModelProtos (torch modules are exported by the caller)."""
    with borrow_pool(FEATURIZE_TARGET, _n_workers(n_jobs, len(jobs)), limits, FEATURIZE_WARMUP) as pool:
        yield from pool.run((i, (worker_payload(src), opts)) for i, (src, opts) in enumerate(jobs))


def _in_batches(stream: Iterable[Any], size: int, every_s: float) -> Iterator[list[Any]]:
    """Group a stream into lists of ``size`` items, or fewer once ``every_s`` seconds have passed (``None``
    items only give that clock a chance to fire)."""
    buf: list[Any] = []
    t0 = time.monotonic()
    try:
        for item in stream:
            if item is not None:
                buf.append(item)
            if len(buf) >= size or (buf and time.monotonic() - t0 >= every_s):
                yield buf
                buf, t0 = [], time.monotonic()
    except GeneratorExit:
        raise
    except BaseException:  # Ctrl-C or a failure upstream: hand over what is finished, then re-raise
        if buf:
            yield buf
        raise
    if buf:
        yield buf


def predict_many(
    models: Any,
    *,
    gpu: Any,
    batch_size: int,
    samples_per_epoch: int | None = None,
    epochs: float = 1,
    n_jobs: int = -1,
    backend: str | None = None,
    scheduler: Any = None,
    time_limit_s: float | None = DEFAULT_TIME_LIMIT_S,
    memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB,
    on_rows: Callable[[pd.DataFrame], None] | None = None,
    progress: bool | None = None,
    model_dir: str | os.PathLike | None = None,
    val_samples: int = 0,
    precision: str = "fp32",
    power_limit_w: float | None = None,
    precision_fallback: bool = False,
    implementation: str = "reference",
    n_gpus: int = 1,
    parallelism: str = "ddp",
    tokens: float | None = None,
    **kw: Any,
) -> pd.DataFrame:
    """Forecast training energy for many graphs on one or more GPUs.

    Args:
        models: ``.onnx`` paths, a directory (its ``*.onnx``), a glob, ``onnx.ModelProto``s, ONNX bytes or
            torch modules (then pass ``example_inputs=``), or a list mixing them.
        gpu: a GPU name or a list of names; several give a cross-GPU what-if (one row per model x GPU).
        batch_size, samples_per_epoch, epochs, val_samples, precision, power_limit_w: the training run, as in
            ``predict`` (one power limit for every GPU; it must be settable on each).
        n_jobs: featurizing processes on this machine (-1 = all cores, but one for fewer than 32 graphs).
        backend: a joblib backend name (``"loky"``, ``"threading"``...) to featurize through joblib instead,
            without per-graph limits; ``None`` = joulecast's isolated processes.
        scheduler: a Dask scheduler address (``"tcp://host:8786"``) or a ``dask.distributed.Client``:
            graphs are featurized on the cluster's workers (``pip install 'joulecast[dask]'``); paths must be
            readable there.
        time_limit_s, memory_limit_mb: per-graph limits (defaults 60 s and 4096 MB; ``None`` = none). A graph
            that passes one, or crashes its process, gets an error row.
        on_rows: called with each group of finished rows (:data:`OUTPUT_COLUMNS`, completion order) as they
            arrive, e.g. to append them to a file so that a crash loses nothing already computed.
        progress: tqdm bar; ``None`` shows it for >= 50 inputs on a terminal.
        model_dir: a model directory from :func:`predictor.retrain`; ``None`` = the shipped model.
        precision_fallback: as in ``predict``: a precision a GPU cannot run is priced as frameworks fall back.
        implementation: as in ``predict``: ``"reference"`` (typical PyTorch code) or ``"tuned"``.
        n_gpus, parallelism, tokens: as in ``predict`` (``batch_size`` per GPU; ``tokens`` instead of
            ``samples_per_epoch``, divided by each graph's sequence length; a graph without one gets an error row).
        **kw: passed to ``featurize`` (``dims=``, ``input_shapes=``, ``frozen=``; ``example_inputs=`` goes to
            torch modules only, the same inputs for every module in the call).

    Returns:
        DataFrame in input order (GPU varies fastest) with :data:`OUTPUT_COLUMNS` (energies in J and kWh,
        time in s, power in W, the nominal 90 % interval, params, per-sample training FLOPs, warnings joined
        by ``"; "``, ``error`` -- empty when the row succeeded).

    Raises:
        InvalidInputError: nothing to score, bad run arguments or limits, a path the cluster's workers cannot
            read. UnknownGPUError: a GPU name not in the table. MissingExtraError: ``scheduler`` without Dask.
            UnsupportedPrecisionError: a GPU cannot run ``precision`` (without ``precision_fallback``).
    """
    import pandas as pd

    from featurize import lookup_gpu
    from featurize.hardware.precision import precision_paths
    from predictor.run import check_parallel_args, check_power_limit, check_run_args
    from predictor.model.loaded import load_model

    check_run_args(batch_size=batch_size, samples_per_epoch=samples_per_epoch, epochs=epochs,
                   val_samples=val_samples, precision=precision, n_gpus=n_gpus, parallelism=parallelism,
                   tokens=tokens)
    n_gpus, parallelism = check_parallel_args(n_gpus, parallelism)
    from predictor.time_model import check_implementation

    implementation = check_implementation(implementation)
    if samples_per_epoch is None and tokens is None:
        raise InvalidInputError("predict_many needs samples_per_epoch= (or tokens= for sequence models).")
    limits = check_limits(time_limit_s, memory_limit_mb)
    model = load_model(model_dir)  # fail fast on a bad model dir, before any featurization
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")  # alias notes travel on each row via GPUSpec.note
        specs = [g if hasattr(g, "tdp_w") else lookup_gpu(g) for g in as_list(gpu)]
    for spec in specs:
        power_limit_w = check_power_limit(power_limit_w, spec)
    for spec in specs:  # refuse what a GPU cannot run before featurizing anything
        precision_paths(spec, precision, fallback=precision_fallback)
    items = expand_models(models)
    run = dict(batch_size=int(batch_size), samples_per_epoch=None if tokens is not None else int(samples_per_epoch),
               epochs=epochs, val_samples=int(val_samples), precision=precision, power_limit_w=power_limit_w,
               precision_fallback=precision_fallback, implementation=implementation, n_gpus=n_gpus,
               parallelism=parallelism, tokens=tokens)
    options = {"batch_size": int(batch_size), "precision": precision, **kw,
               "_sequence_length": tokens is not None, "_largest_layer": n_gpus > 1 and parallelism == "fsdp"}
    stream = featurize_stream([src for _, src in items], n_jobs=n_jobs, backend=backend, scheduler=scheduler,
                              limits=limits, **options)
    bar = None
    if _progress_wanted(progress, len(items)):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc="score", unit="graph")
    frames = []
    try:
        for done in _in_batches(stream, max(1, PREDICT_CHUNK_ROWS // len(specs)), FLUSH_EVERY_S):
            frame = _rows(items, done, specs, model, run)
            frames.append(frame)
            if on_rows is not None:
                on_rows(frame.drop(columns="_order").reset_index(drop=True))
            if bar is not None:
                bar.update(len(done))
    finally:
        if bar is not None:
            bar.close()
    df = pd.concat(frames, ignore_index=True).sort_values("_order", kind="stable")
    return df.drop(columns="_order").reset_index(drop=True)


_PRED_COLUMNS = (
    "energy_j",
    "energy_per_epoch_j",
    "time_s",
    "avg_power_w",
    "interval_low_j",
    "interval_high_j",
)


def _name(label: str) -> str:
    """A short name for a row: the file's stem for a path (``runs/resnet50.onnx`` -> ``resnet50``), else the label."""
    return Path(label).stem if label.lower().endswith(".onnx") else label


def _predict_ok(ok: list[tuple[int, dict[str, Any]]], specs: list[Any], model: Any, run: dict[str, Any]):
    """Vectorised predictions for the featurized graphs ``ok``: graph-major, GPU-minor rows."""
    import pandas as pd

    from predictor.model.extrapolation import extrapolation_warnings
    from predictor.model.inference import predict_frame
    from predictor.parallel import data_parallel_frame, scaling_note

    feats = pd.DataFrame([res["features"] for _, res in ok])
    rows = feats.loc[feats.index.repeat(len(specs))].reset_index(drop=True)
    row_specs = specs * len(ok)
    layout = {k: run[k] for k in ("n_gpus", "parallelism", "tokens")}
    frame_args = {k: v for k, v in run.items() if k not in layout}
    if layout["tokens"] is not None:
        from predictor.tokens import samples_from_tokens

        frame_args["samples_per_epoch"] = [samples_from_tokens(layout["tokens"], s) for s in rows["sequence_length"]]
    pred = predict_frame(rows, row_specs, model=model, **frame_args)
    pred["samples_per_epoch"] = frame_args["samples_per_epoch"]
    n = layout["n_gpus"]
    if n > 1:
        pred = data_parallel_frame(pred, rows, row_specs, n_gpus=n, parallelism=layout["parallelism"],
                                   batch_size=run["batch_size"], samples_per_epoch=pred["samples_per_epoch"],
                                   epochs=run["epochs"], implementation=run["implementation"])
    pred["warnings"] = [
        extrapolation_warnings(model, ok[k // len(specs)][1]["features"], gpu=row_specs[k],
                               precision=run["precision"], batch_size=run["batch_size"])
        + ([scaling_note(pred.iloc[k], row_specs[k], n_gpus=n, parallelism=layout["parallelism"],
                         batch_size=run["batch_size"], params=rows["params"].iloc[k],
                         trainable_params=rows["trainable_params"].iloc[k])] if n > 1 else [])
        for k in range(len(pred))
    ]
    return pred


def _rows(items, done, specs, model, run) -> pd.DataFrame:
    """Output rows for the finished ``(index, result)`` pairs ``done``, with an ``_order`` column (input
    position x GPU) that puts them back in input order."""
    import pandas as pd

    from predictor.api import memory_note

    n_gpu = len(specs)
    ok = [(i, res) for i, res in done if "features" in res]
    pred = _predict_ok(ok, specs, model, run) if ok else None
    cols = {c: pred[c].to_numpy(float) for c in (*_PRED_COLUMNS, "samples_per_epoch")} if pred is not None else {}
    row_warn = list(pred["warnings"]) if pred is not None else []
    pos = {i: k for k, (i, _) in enumerate(ok)}
    nan = float("nan")
    records = []
    for i, res in done:
        label = items[i][0]
        for g, spec in enumerate(specs):
            if "error" in res:
                rec = dict.fromkeys(OUTPUT_COLUMNS, nan)
                rec.update(model=label, name=_name(label), gpu=spec.name, fits=None, warnings="", error=res["error"],
                           n_gpus=run["n_gpus"])
            else:
                k = pos[i] * n_gpu + g
                feats = res["features"]
                rec = {c: float(cols[c][k]) for c in _PRED_COLUMNS}
                memory_bytes, fits, memory_warning = memory_note(feats, spec, run["batch_size"], run["n_gpus"],
                                                                 run["parallelism"])
                rec.update(
                    model=label,
                    name=_name(label),
                    gpu=spec.name,
                    memory_bytes=memory_bytes,
                    fits=fits,
                    energy_kwh=rec["energy_j"] / J_PER_KWH,
                    params=feats.get("params", nan),
                    flops_train=feats.get("flops_train", nan),
                    n_gpus=run["n_gpus"],
                    samples_per_epoch=float(cols["samples_per_epoch"][k]),
                    error="",
                )
                msgs = list(res.get("warnings", [])) + ([spec.note] if spec.note else []) + list(row_warn[k])
                msgs += [memory_warning] if memory_warning else []
                rec["warnings"] = "; ".join(dict.fromkeys(m for m in msgs if m))
            rec["_order"] = i * n_gpu + g
            records.append(rec)
    df = pd.DataFrame.from_records(records, columns=[*OUTPUT_COLUMNS, "_order"])
    df["params"] = df["params"].astype("float64")
    df["memory_bytes"] = df["memory_bytes"].astype("float64")
    df["fits"] = df["fits"].astype("boolean")  # <NA> for a failed row
    df["n_gpus"] = df["n_gpus"].astype("int64")
    df["samples_per_epoch"] = df["samples_per_epoch"].astype("float64")
    return df
