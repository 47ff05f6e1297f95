"""Isolated worker processes for batch work: a per-task time and memory limit, and a task that hangs, exhausts
memory or aborts its process becomes an error result instead of a lost batch.

:class:`IsolatedPool` starts ``n_workers`` child interpreters (``python -m predictor.batch.isolation``), sends each
the name of a target function (``"module:function"``) and a shared context once, then one task at a time.
A child that passes the time limit is killed; one that dies (SIGABRT from a C++ abort, SIGKILL from the
kernel's OOM killer, a segfault) is reported with its signal and the last line it wrote to stderr. Either
way the task gets an ``{"error": ...}`` result and a fresh child takes the next task. The memory limit is an
address-space limit (``RLIMIT_AS``, Linux) of the child's size after its imports plus ``memory_limit_mb``: an
allocation beyond it fails with ``MemoryError`` (or ``std::bad_alloc`` in C++), never the machine's memory.

:func:`borrow_pool` keeps one pool warm per (target, limits) so that consecutive batches in a process do not
each pay the children's start (~1.5 s of imports); it stops them after 300 s unused.

Children use ``subprocess`` rather than ``multiprocessing``, so they start the same way in a script without a
``__main__`` guard and inside a Dask worker (a daemonic process that ``multiprocessing`` refuses to fork
from).
Messages are length-prefixed pickles over the child's stdin/stdout, between this process and its own children
only; the child's fd 1 is pointed at stderr so that stray prints cannot corrupt them.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from featurize.errors import InvalidInputError, JoulecastError

DEFAULT_TIME_LIMIT_S = 60.0
"""Per-graph featurization time limit. A ResNet-50-scale graph takes ~10 ms, BERT-large ~1 s."""
DEFAULT_MEMORY_LIMIT_MB = 4096
"""Per-graph address space a featurizing process may add to its own size after imports."""
START_TIMEOUT_S = 120.0
"""A child that has not imported its target by then is treated as broken (the pool raises)."""
_HEADER = struct.Struct("!Q")
CHILD_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"
}
"""Defaults for the children's environment (a variable the caller set wins)."""


@dataclass(frozen=True)
class Limits:
    """Per-task limits; ``None`` disables one."""

    time_s: float | None = DEFAULT_TIME_LIMIT_S
    memory_mb: float | None = DEFAULT_MEMORY_LIMIT_MB


def check_limits(time_limit_s: Any, memory_limit_mb: Any) -> Limits:
    """Validated :class:`Limits` (positive finite numbers or None)."""
    out = []
    for name, value, low in (("time_limit_s", time_limit_s, 0.01), ("memory_limit_mb", memory_limit_mb, 64)):
        if value is None:
            out.append(None)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not low <= number < float("inf"):
            raise InvalidInputError(f"{name} must be a number >= {low:g} or None (no limit), got {value!r}")
        out.append(number)
    return Limits(*out)


def _write(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: BinaryIO) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - frames from this process's own parent/child only


def resolve(target: str):
    """``"package.module:function"`` -> the function."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class _Child:
    """One child process, the reader thread that forwards its frames, and the task it is running."""

    def __init__(self, header: dict[str, Any], inbox: queue.Queue, env: dict[str, str]):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "predictor.batch.isolation"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
        )
        self.ready = False
        self.started = time.monotonic()
        self.task: tuple[int, float] | None = None  # (task id, start time)
        try:
            _write(self.proc.stdin, header)
        except OSError:
            pass  # reported as a failed start by the reader thread
        threading.Thread(target=self._pump, args=(inbox,), daemon=True).start()

    def _pump(self, inbox: queue.Queue) -> None:
        try:
            while True:
                inbox.put((self, _read(self.proc.stdout)))
        except (EOFError, OSError, ValueError, pickle.UnpicklingError):  # ValueError: closed by kill()
            inbox.put((self, EOFError))

    def send(self, task_id: int, payload: Any) -> None:
        self.task = (task_id, time.monotonic())
        try:
            _write(self.proc.stdin, (task_id, payload))
        except OSError:
            pass  # the child died: its reader thread reports EOF and the task gets the death message

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def last_words(self) -> str:
        """Last non-empty stderr line (e.g. ``terminate called after throwing ... std::bad_alloc``)."""
        try:
            self.stderr.seek(max(0, self.stderr.seek(0, 2) - 2000))
            lines = [ln.strip() for ln in self.stderr.read().decode("utf-8", "replace").splitlines()]
        except OSError:
            return ""
        lines = [ln for ln in lines if ln]
        return lines[-1][:300] if lines else ""


def _death_message(child: _Child, limits: Limits) -> str:
    code = child.proc.wait()
    if code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
    else:
        how = f"exit status {code}"
    oom_kill = code == -getattr(signal, "SIGKILL", 9)
    hint = " (the kernel's out-of-memory killer sends SIGKILL)" if oom_kill else ""
    words = child.last_words()
    limit = f"; memory limit {limits.memory_mb:g} MB" if limits.memory_mb else ""
    return f"WorkerCrashed: the process featurizing this input died with {how}{hint}{limit}" + (
        f": {words}" if words else ""
    )


class IsolatedPool:
    """Run ``target(payload, context)`` for many payloads in child processes under :class:`Limits`.

    Use as a context manager; :meth:`run` may be called several times (children stay warm in between).
    ``warmup`` (``"module:function"``) runs in each child before it takes tasks, so that lazy imports are not
    charged to the first task's time limit (nor to its memory limit).
    Results are ``dict``s; a task that breaks a limit or kills its child gets ``{"error": "..."}``.
    """

    def __init__(self, target: str, context: dict[str, Any], *, n_workers: int = 1, limits: Limits = Limits(),
                 warmup: str | None = None):
        self.n_workers = max(1, int(n_workers))
        self.limits = limits
        self.header = {"target": target, "context": context, "memory_mb": limits.memory_mb, "path": sys.path,
                       "parent": os.getpid(), "warmup": warmup}
        root = str(Path(__file__).resolve().parents[2])  # so that `-m predictor.batch.isolation` finds this copy
        paths = [root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
        # One thread per child (parallelism is across children, as loky does), which also keeps thread stacks
        # and malloc arenas from eating the address-space limit on many-core machines.
        self.env = {**CHILD_ENV, **os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self.inbox: queue.Queue = queue.Queue()
        self.children: list[_Child] = []
        self.busy = threading.Lock()  # held by whoever runs tasks on a shared pool
        self._idle_timer: threading.Timer | None = None

    def __enter__(self) -> IsolatedPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for child in self.children:
            child.kill()
            child.stderr.close()
        self.children = []

    def _spawn(self) -> _Child:
        child = _Child(self.header, self.inbox, self.env)
        self.children.append(child)
        return child

    def _retire(self, child: _Child) -> None:
        child.kill()
        child.stderr.close()
        self.children.remove(child)

    def _wait_s(self) -> float:
        now, wait = time.monotonic(), 1.0
        for c in self.children:
            if not c.ready:
                wait = min(wait, c.started + START_TIMEOUT_S - now)
            elif c.task is not None and self.limits.time_s is not None:
                wait = min(wait, c.task[1] + self.limits.time_s - now)
        return max(0.0, wait)

    def run(self, tasks: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, dict[str, Any]] | None]:
        """Yield ``(task id, result)`` in completion order for ``(task id, payload)`` pairs, and ``None``
        about once a second while nothing finishes (so that a consumer can flush what it holds)."""
        todo = deque(tasks)
        finished = False
        try:
            yield from self._loop(todo)
            finished = True
        finally:
            if not finished:  # abandoned mid-way: in-flight results must not leak into a later run
                self.close()

    def _loop(self, todo: deque) -> Iterator[tuple[int, dict[str, Any]] | None]:
        while True:
            busy = sum(c.task is not None for c in self.children)
            if not todo and not busy:
                return
            while todo and len(self.children) < min(self.n_workers, len(todo) + busy):
                self._spawn()
            for child in self.children:
                if child.ready and child.task is None and todo:
                    child.send(*todo.popleft())
            try:
                child, msg = self.inbox.get(timeout=self._wait_s())
            except queue.Empty:
                child, msg = None, None
                yield None
            if child is not None and child in self.children:
                yield from self._receive(child, msg)
            yield from self._expire()

    def _receive(self, child: _Child, msg: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        if msg == "ready":
            child.ready = True
        elif msg is EOFError:
            if not child.ready:
                words = child.last_words()
                self.close()
                raise JoulecastError(f"a featurizing process failed to start: {words or 'no output'}")
            task = child.task
            message = _death_message(child, self.limits) if task is not None else ""
            self._retire(child)
            if task is not None:
                yield task[0], {"error": message}
        else:
            task_id, result, retiring = msg
            child.task = None
            if retiring:  # it exits after this result: never hand it another task
                self._retire(child)
            yield task_id, result

    def _expire(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Kill children past the time limit (their task gets an error) or stuck starting (raise)."""
        now = time.monotonic()
        for child in list(self.children):
            if not child.ready and now > child.started + START_TIMEOUT_S:
                self.close()
                raise JoulecastError(f"a featurizing process did not start within {START_TIMEOUT_S:g} s")
            if child.task is not None and self.limits.time_s is not None:
                task_id, t0 = child.task
                if now - t0 > self.limits.time_s:
                    self._retire(child)
                    yield task_id, {
                        "error": "TimeLimitExceeded: featurizing took longer than the "
                        f"{self.limits.time_s:g} s per-graph limit (raise time_limit_s / --time-limit if the "
                        "graph is genuinely large)"
                    }


IDLE_CLOSE_S = 300.0
"""A shared pool's children are stopped after this long unused (a later batch starts new ones)."""
_shared: dict[tuple[str, Limits], IsolatedPool] = {}
_shared_lock = threading.Lock()


@contextmanager
def borrow_pool(target: str, n_workers: int, limits: Limits, warmup: str | None = None
                ) -> Iterator[IsolatedPool]:
    """A warm pool for ``target`` (empty context: pass per-task data in the payload; ``warmup`` as in
    :class:`IsolatedPool`) with ``n_workers``
    children at most, shared by consecutive batches in this process so that each does not pay the children's
    start (~1.5 s); a private pool when another thread is using the shared one."""
    key = (target, limits)
    with _shared_lock:
        pool = _shared.get(key)
        if pool is not None and pool.header["parent"] != os.getpid():  # inherited through fork: not ours
            pool = None
        if pool is None:
            pool = _shared[key] = IsolatedPool(target, {}, limits=limits, warmup=warmup)
        private = not pool.busy.acquire(blocking=False)
        if private:
            pool = IsolatedPool(target, {}, limits=limits, warmup=warmup)
        elif pool._idle_timer is not None:
            pool._idle_timer.cancel()
    pool.n_workers = max(1, int(n_workers))
    try:
        yield pool
    finally:
        if private:
            pool.close()
        else:
            pool._idle_timer = threading.Timer(IDLE_CLOSE_S, _close_if_idle, args=(key, pool))
            pool._idle_timer.daemon = True
            pool._idle_timer.start()
            pool.busy.release()


def prestart(target: str, limits: Limits, warmup: str | None = None) -> None:
    """Start the child of :func:`borrow_pool`'s shared one-worker pool for ``target`` now, without waiting for it,
    so that its imports overlap the caller's own work before the first :func:`call_isolated`."""
    key = (target, limits)
    with _shared_lock:
        pool = _shared.get(key)
        if pool is None or pool.header["parent"] != os.getpid():
            pool = _shared[key] = IsolatedPool(target, {}, limits=limits, warmup=warmup)
        if not pool.busy.acquire(blocking=False):
            return
    try:
        if not pool.children:
            pool._spawn()
    finally:
        pool.busy.release()


def call_isolated(target: str, payload: Any, limits: Limits, warmup: str | None = None) -> dict[str, Any]:
    """``target(payload, {})`` in a warm isolated child (:func:`borrow_pool`) under ``limits``: its result dict,
    or ``{"error": ...}`` when it raised, broke a limit or killed its child."""
    result: dict[str, Any] = {"error": "WorkerCrashed: no result"}
    with borrow_pool(target, 1, limits, warmup) as pool:
        for item in pool.run([(0, payload)]):  # consumed to the end: an abandoned run closes the pool
            if item is not None:
                result = item[1]
    return result


def _close_if_idle(key: tuple[str, Limits], pool: IsolatedPool) -> None:
    with _shared_lock:
        if not pool.busy.acquire(blocking=False):
            return
        if _shared.get(key) is pool:
            del _shared[key]
    pool.close()
    pool.busy.release()


def _close_shared() -> None:
    for pool in list(_shared.values()):
        pool.close()


atexit.register(_close_shared)


def _set_memory_limit(memory_mb: float | None) -> None:
    """RLIMIT_AS = this process's size now + ``memory_mb`` (Linux; elsewhere no limit is set)."""
    if not memory_mb:
        return
    try:
        import resource

        pages = int(Path("/proc/self/statm").read_text().split()[0])
        size = pages * os.sysconf("SC_PAGE_SIZE") + int(memory_mb * 2**20)
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        soft = size if hard == resource.RLIM_INFINITY else min(size, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ImportError, OSError, ValueError):
        pass


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this child when its parent dies (a child busy in C++ never reads its stdin's
    EOF); a parent that is already gone ends it now."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(0)


def _child_main() -> None:
    """Child loop: header, then ``(task id, payload)`` frames until stdin closes."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, not into the frames
    inp = sys.stdin.buffer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it then kills us
    header = _read(inp)
    _die_with_parent(header["parent"])
    sys.path[:0] = [p for p in header["path"] if p not in sys.path]
    fn, context, memory_mb = resolve(header["target"]), header["context"], header["memory_mb"]
    if header["warmup"]:
        resolve(header["warmup"])()  # lazy imports happen here, not inside the first task's time limit
    _set_memory_limit(memory_mb)
    _write(out, "ready")
    while True:
        try:
            task_id, payload = _read(inp)
        except EOFError:
            return
        try:
            result = fn(payload, context)
        except BaseException as err:  # noqa: BLE001 - any failure of one task is that task's result
            result = {"error": f"{type(err).__name__}: {err}"}
        out_of_memory = bool(memory_mb) and _is_out_of_memory(result)
        if out_of_memory:
            result = {
                "error": f"MemoryLimitExceeded: featurizing needed more than the {memory_mb:g} MB per-graph "
                "memory limit (raise memory_limit_mb / --memory-limit if the graph is genuinely large); "
                f"{result['error'][:200]}"
            }
        _write(out, (task_id, result, out_of_memory))
        if out_of_memory:
            return  # a fresh process takes the next task: this heap may be fragmented up to the limit


def _is_out_of_memory(result: Any) -> bool:
    """An error result from an allocation refused by the limit (Python MemoryError or C++ std::bad_alloc)."""
    err = result.get("error", "") if isinstance(result, dict) else ""
    return isinstance(err, str) and (err.startswith("MemoryError") or "bad_alloc" in err)


if __name__ == "__main__":
    _child_main()


# what predict_many's isolated processes run (predictor.batch.worker), by import path
FEATURIZE_TARGET = "predictor.batch.worker:featurize_task"


FEATURIZE_WARMUP = "predictor.batch.worker:warm_up"
