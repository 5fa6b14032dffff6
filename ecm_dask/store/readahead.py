"""Read a store's files into the page cache ahead of the stage that reads them whole.

The series store is written past the page cache (:mod:`.direct`), so the g2 stage, which reads every byte of it,
finds none of it in memory and each block waits on the disk for its own small reads.  The drift stage before it
reads only a small reference region.  :func:`warm` reads the chunk files of the series into the page cache in a
background thread while the drift stage computes.  It maps each file, 8 MiB at a time, with ``MAP_POPULATE``: the
kernel reads the file into its cache without a copy into this process and without holding Python's lock.  The
thread runs at the lowest priority (nice 19), so the stage running meanwhile keeps the processors.

It does this only where it can help:

* on Linux (``MAP_POPULATE``); elsewhere nothing is done;
* when the files take at most :data:`FRACTION` of the memory available now: a series larger than memory would
  evict its own first pages before the stage reads them, and would push out what other processes cache.

It is a hint and nothing else: a file it cannot open or map is skipped, and nothing it does changes what a stage
reads (the stage reads through its own files as before).  Leaving the ``with`` block stops it within one window.
``ECM_DASK_READAHEAD=0`` turns it off.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import schema as S

#: warm only when the files take at most this fraction of the memory available
FRACTION = 0.5
ENV = "ECM_DASK_READAHEAD"
#: bytes mapped (and read) at a time; a multiple of every mmap allocation granularity in use
WINDOW = 8 << 20


def enabled() -> bool:
    """Whether this platform can populate the page cache from a file and ``ECM_DASK_READAHEAD=0`` does not forbid it."""
    return hasattr(mmap, "MAP_POPULATE") and os.environ.get(ENV, "1").strip().lower() not in ("0", "no", "false", "off")


def _available() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no figure: do not warm
        return 0


class Warmer:
    """The background thread of :func:`warm` (``files`` and ``bytes``: what it has read so far)."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.files = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ecm-dask-readahead", daemon=True)

    def start(self) -> Warmer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:  # Linux: a thread's own niceness; the stage running meanwhile keeps the processors first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        for path in self.paths:
            if self._stop.is_set():
                return
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                size = os.fstat(fd).st_size
                for offset in range(0, size, WINDOW):  # a window at a time: little of it mapped at once
                    if self._stop.is_set():
                        return
                    length = min(WINDOW, size - offset)
                    mmap.mmap(fd, length, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                              offset=offset).close()
                    self.bytes += length
                self.files += 1
            except (OSError, ValueError):  # e.g. a file system that cannot map files: the stage reads it anyway
                pass
            finally:
                os.close(fd)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every file is read (or ``timeout`` s); True if the thread has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Stop after the window at hand and wait for the thread."""
        self._stop.set()
        self._thread.join()


def chunk_files(path: str | os.PathLike, name: str = S.INTENSITY) -> list[Path]:
    """The chunk (shard) files of array ``name`` of the store ``path``, in the order of their names' numbers."""
    root = Path(path) / name / "c"

    def numbers(p: Path):
        try:
            return tuple(int(part) for part in p.relative_to(root).parts)
        except ValueError:
            return (float("inf"),)

    return sorted((p for p in root.rglob("*") if p.is_file()), key=numbers) if root.is_dir() else []


@contextmanager
def warm(path: str | os.PathLike, *, name: str = S.INTENSITY, fraction: float = FRACTION) -> Iterator[Warmer | None]:
    """Read the chunk files of array ``name`` of the store ``path`` into the page cache in a background thread for
    the duration of the ``with`` block.  Gives the :class:`Warmer`, or None where nothing is done (see the module
    docstring)."""
    warmer = None
    if enabled():
        paths = chunk_files(path, name)
        try:
            total = sum(p.stat().st_size for p in paths)
        except OSError:  # a file gone meanwhile: the stage will say what is wrong
            paths = []
        if paths and total <= fraction * _available():
            warmer = Warmer(paths).start()
    try:
        yield warmer
    finally:
        if warmer is not None:
            warmer.stop()
