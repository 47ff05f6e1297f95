"""Publishing a new model directory so that no model is ever lost.

Public entry point: :func:`publication` -- a context manager the whole of ``retrain`` runs inside:

1. before any work: the output path is checked (a usable name; never the base/shipped model, inside it, or a
   directory holding it; an existing ``out`` only with ``overwrite``, and only if it is a model directory) and
   its location writable (the nearest existing ancestor a writable directory; the staging directory is made
   there first, so a read-only or impossible location fails in milliseconds, not after the fit);
2. an exclusive lock per output directory (``flock`` on ``.<name>.joulecast-lock`` beside it, released by the
   kernel if the process dies, removed on exit): a second retrain to the same ``out`` is refused at once,
   naming the holder's pid;
3. under the lock, leftovers of killed runs are cleaned: staging directories are removed, and a previous model
   moved aside by an interrupted swap is put back when ``out`` is missing (never deleted);
4. :func:`publish` moves the finished directory in with renames only, re-checking ``overwrite`` under the lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from featurize.errors import InvalidInputError

__all__ = ["publication", "publish", "check_output", "OutputLock", "clean_stale"]

LOCK_TAG = ".joulecast-lock"
STAGING_TAG = ".joulecast-staging-"
OLD_TAG = ".joulecast-old-"
_LEGACY_STAGING = (".retrain", ".tmp")  # prefixes earlier joulecast versions used: .<name>.retrain*, .<name>.tmp*
_MANIFEST = "manifest.json"


def _usable_name(out: os.PathLike | str) -> Path:
    try:
        text = os.fsdecode(os.fspath(out))
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"out_dir {out!r} is not a usable path ({err}); choose another directory.") from err
    if "\x00" in text or len(text) > 4096 or any(len(os.fsencode(p)) > 255 for p in text.split(os.sep)):
        raise InvalidInputError(f"out_dir {text[:80]!r} contains a NUL byte or is longer than the system allows "
                                "(4096 characters, 255 bytes per component); choose another directory.")
    return Path(text).expanduser().resolve()


def check_output(out: os.PathLike | str, *, protected: Iterable[os.PathLike | str] = (),
                 overwrite: bool = False, check_exists: bool = True) -> Path:
    """The resolved output path after the checks of step 1 (see the module docstring); raises
    :class:`InvalidInputError` naming the fix."""
    path = _usable_name(out)
    for p in protected:
        p = Path(p).expanduser().resolve()
        if path == p or p in path.parents or path in p.parents:
            raise InvalidInputError(
                f"out_dir {path} is, is inside, or contains the base/shipped model directory {p}; retrain never "
                "writes there: choose a directory outside it."
            )
    if check_exists and path.exists():
        if not overwrite:
            raise InvalidInputError(
                f"out_dir {path} already exists; choose a new directory or pass overwrite=True (CLI: --overwrite)."
            )
        if not path.is_dir() or (not (path / _MANIFEST).is_file() and any(path.iterdir())):
            raise InvalidInputError(f"out_dir {path} exists and is not a model directory; refusing to replace it.")
    anc = path.parent
    while not anc.exists():
        if anc.is_symlink() or anc == anc.parent:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise InvalidInputError(f"cannot create out_dir {path}: {anc} is not a directory; choose another location.")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InvalidInputError(f"cannot create out_dir {path}: {anc} is not writable by this user; choose a "
                                "writable location.")
    return path


class OutputLock:
    """Exclusive, non-blocking ``flock`` on ``<parent>/.<name>.joulecast-lock`` (see the module docstring)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out.parent / f".{out.name}{LOCK_TAG}"
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        for _ in range(5):
            fd = self._try_lock()
            try:  # the file may have been removed by the previous holder between our open and flock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._fd = fd
                return self
            os.close(fd)
        raise InvalidInputError(f"could not lock {self.path}: it keeps being replaced; retry.")

    def _try_lock(self) -> int:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise InvalidInputError(
                f"another joulecast retrain (pid {holder}) is writing {self.out} right now; wait for it to "
                "finish, or choose another --out."
            ) from None
        return fd

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # still held: a waiter that opened it sees the inode change and retries
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def clean_stale(out: Path) -> list[str]:
    """Under the lock: remove staging directories left by killed runs for ``out``; when ``out`` is missing,
    restore the newest model an interrupted swap moved aside (the others are removed). Returns what it did."""
    done: list[str] = []
    prefix = f".{out.name}"
    olds: list[Path] = []
    for p in out.parent.iterdir():
        name = p.name
        if not name.startswith(prefix) or not p.is_dir() or p.is_symlink():
            continue
        rest = name[len(prefix):]
        if rest.startswith(OLD_TAG) or rest.startswith(".old-"):
            olds.append(p)
        elif rest.startswith(STAGING_TAG) or rest.startswith(_LEGACY_STAGING):
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed stale staging directory {p.name}")
    olds.sort(key=lambda p: p.stat().st_mtime_ns)
    if olds and not out.exists() and (olds[-1] / _MANIFEST).is_file():
        os.replace(olds.pop(), out)
        done.append(f"restored {out.name} from an interrupted replacement")
    for p in olds:
        shutil.rmtree(p, ignore_errors=True)
        done.append(f"removed {p.name}")
    return done


@contextlib.contextmanager
def publication(out: os.PathLike | str, *, protected: Iterable[os.PathLike | str] = (),
                overwrite: bool = False) -> Iterator[tuple[Path, Path]]:
    """Checks, lock and a fresh staging directory for writing ``out``; yields ``(staging directory, resolved
    out)`` (the staging directory is removed on exit). Call :func:`publish` inside to move the model in."""
    protected = list(protected)
    path = check_output(out, protected=protected, overwrite=overwrite, check_exists=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInputError(f"cannot create the parent of out_dir {path} ({err}); choose another "
                                "location.") from err
    with OutputLock(path):
        clean_stale(path)
        check_output(path, protected=protected, overwrite=overwrite)  # now that no one else can write it
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}{STAGING_TAG}", dir=path.parent))
        except OSError as err:
            raise InvalidInputError(f"cannot write in {path.parent} ({err}); choose a writable location.") from err
        try:
            yield staging, path
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def publish(new_dir: Path, out: Path, *, overwrite: bool) -> None:
    """Move ``new_dir`` to ``out`` with renames only (call it inside :func:`publication`). An existing ``out``
    (allowed only with ``overwrite``) is moved aside, the new one renamed in, then the old one removed; a crash
    between the renames leaves the old model where :func:`clean_stale` puts it back."""
    if not out.exists():
        os.rename(new_dir, out)
        return
    if not overwrite:
        raise InvalidInputError(f"out_dir {out} appeared while retraining; not replaced (pass --overwrite).")
    old = out.parent / f".{out.name}{OLD_TAG}{os.getpid()}"
    os.rename(out, old)
    try:
        os.rename(new_dir, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
