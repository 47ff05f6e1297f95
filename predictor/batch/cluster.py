"""Featurize graphs on a Dask cluster (``pip install 'joulecast[dask]'``) for :func:`predictor.predict_many`.

The graphs go to the workers in chunks; on each worker an :class:`predictor.batch.isolation.IsolatedPool` (one child
process per worker thread, kept warm between chunks) featurizes them under the same per-graph time and memory
limits as on one machine, so a hostile graph costs one error row, not a Dask worker. Only the small feature
dicts come back; the model is applied on the client, in vectorised chunks, as the chunks finish.

Paths travel as absolute paths and must be readable on the workers (shared storage, or the same files on each
machine): a path this process can read that a worker cannot stops the batch with one error naming the path and
the worker. ModelProtos and bytes travel as bytes. joulecast must be installed on the workers.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from typing import Any

from featurize.errors import InvalidInputError, require
from predictor.batch.isolation import FEATURIZE_TARGET, FEATURIZE_WARMUP, IsolatedPool, Limits

CHUNKS_PER_SLOT = 4
"""Chunks per worker thread: enough to balance uneven graphs and show progress, few enough to keep the
scheduler's per-task overhead (~1 ms) far below the featurization time."""
MAX_CHUNK_GRAPHS = 64
CONNECT_TIMEOUT_S = 30
_local = threading.local()


def connect(scheduler: Any):
    """``(client, owned)`` for a ``dask.distributed.Client`` or a scheduler address; owned clients are closed
    by the caller."""
    distributed = require("distributed", extra="dask", purpose="predict_many(scheduler=...)")
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise InvalidInputError(
            f"scheduler must be a Dask scheduler address such as 'tcp://host:8786' or a "
            f"dask.distributed.Client, got {scheduler!r}"
        )
    try:
        return distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S), True
    except (OSError, TimeoutError, ValueError) as err:
        raise InvalidInputError(
            f"cannot reach the Dask scheduler at {scheduler!r} ({type(err).__name__}: {err}); start one with "
            "`dask scheduler` and `dask worker ADDRESS`, or check the address"
        ) from err


def _chunks(tasks: list[tuple[int, Any, bool]], slots: int) -> list[list[tuple[int, Any, bool]]]:
    size = max(1, min(MAX_CHUNK_GRAPHS, math.ceil(len(tasks) / (CHUNKS_PER_SLOT * max(1, slots)))))
    return [tasks[a : a + size] for a in range(0, len(tasks), size)]


def _travel(source: Any, options: dict[str, Any]) -> tuple[tuple[Any, dict[str, Any]], bool]:
    """The task with an absolute path (and whether this process can read it), or the bytes unchanged."""
    if isinstance(source, str):
        path = os.path.abspath(os.path.expanduser(source))
        return (path, options), os.path.isfile(path) and os.access(path, os.R_OK)
    return (source, options), False


def featurize_on_cluster(
    scheduler: Any, tasks: list[tuple[int, tuple[Any, dict[str, Any]]]], limits: Limits
) -> Iterator[tuple[int, dict[str, Any]] | None]:
    """``(index, result)`` for every ``(index, (source payload, featurize options))`` task as its chunk
    finishes on the cluster, and ``None`` each second nothing does.

    Raises:
        InvalidInputError: the scheduler cannot be reached, or a worker cannot read a path that this process
            can.
        MissingExtraError: dask.distributed is not installed.
    """
    distributed = require("distributed", extra="dask", purpose="predict_many(scheduler=...)")
    client, owned = connect(scheduler)
    try:
        slots = sum(client.nthreads().values())
        chunks = _chunks([(i, *_travel(src, opts)) for i, (src, opts) in tasks], slots)
        futures = {client.submit(_remote_chunk, c, limits, pure=False): c for c in chunks}
        pending = set(futures)
        while pending:
            try:
                done, pending = distributed.wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
            except TimeoutError:
                yield None  # nothing finished this second: the consumer may flush what it holds
                continue
            for fut in done:
                yield from _chunk_results(client, fut, futures)
    finally:
        if owned:
            client.close()


def _chunk_results(client: Any, fut: Any, futures: dict[Any, list]) -> list[tuple[int, dict[str, Any]]]:
    try:
        out = fut.result()
    except Exception as err:  # noqa: BLE001 - a lost worker (KilledWorker...) costs its chunk's rows
        msg = f"WorkerCrashed: the Dask worker featurizing this input was lost ({type(err).__name__}: {err})"
        return [(i, {"error": msg}) for i, _, _ in futures[fut]]
    if isinstance(out, dict):  # a path this process reads but a worker cannot
        client.cancel(list(futures))
        raise InvalidInputError(
            f"{out['path']!r} is not readable on Dask worker {out['worker']}; put the graphs on storage that "
            "every worker mounts at the same path, or pass ModelProtos / bytes instead of paths"
        )
    return out


def _worker_pool(limits: Limits) -> IsolatedPool:
    """This worker thread's warm pool (one child process), rebuilt when the limits change."""
    cached = getattr(_local, "pool", None)
    if cached is not None and cached[0] == limits:
        return cached[1]
    if cached is not None:
        cached[1].close()
    pool = IsolatedPool(FEATURIZE_TARGET, {}, n_workers=1, limits=limits, warmup=FEATURIZE_WARMUP)
    _local.pool = (limits, pool)
    return pool


def _remote_chunk(
    chunk: list[tuple[int, tuple[Any, dict[str, Any]], bool]], limits: Limits
) -> list[tuple[int, dict[str, Any]]] | dict[str, str]:
    """Runs on a Dask worker: featurize one chunk under ``limits``; ``{"path", "worker"}`` when a path the
    client could read is not readable here."""
    for _, (source, _), readable_on_client in chunk:
        if readable_on_client and not (os.path.isfile(source) and os.access(source, os.R_OK)):
            from distributed import get_worker

            return {"path": source, "worker": get_worker().address}
    return [r for r in _worker_pool(limits).run((i, p) for i, p, _ in chunk) if r is not None]
