"""Large store files written past the page cache (``O_DIRECT``), atomically.

A series store is written once and read later, shard by shard.  Written through the page cache, every byte is
first copied into fresh cache pages, and on some machines (virtual machines in particular) filling those pages
costs the kernel far more than the write itself: on the 2-core VM of the README, ``dd`` of 880 MiB takes 11 s
buffered and 0.6 s with ``oflag=direct``, and reading the file back cold afterwards 1.9 s.  Files of at least
:data:`MIN_BYTES` are therefore written with ``O_DIRECT`` from a page-aligned buffer of :data:`BLOCK` bytes per
thread (the last block padded to the alignment, then the file truncated to its length), into a temporary name
renamed into place, as zarr's own local store does.

Where ``O_DIRECT`` does not exist (macOS, Windows) or the file system refuses it (tmpfs, some network file systems),
the file is written the ordinary way; the refusal is remembered per device.  ``ECM_DASK_DIRECT_IO=0`` turns direct
writes off everywhere.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import mmap
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ALIGN = 4096            # a multiple of every logical block size in use (512, 4096)
BLOCK = 8 << 20         # bytes per direct write; one such buffer per writing thread
MIN_BYTES = 1 << 20     # smaller files (metadata, small chunks) go through the page cache
ENV = "ECM_DASK_DIRECT_IO"

_local = threading.local()
_refused: set[int] = set()  # st_dev of file systems that refused O_DIRECT


def enabled() -> bool:
    """Whether direct writes are possible here and not switched off by ``ECM_DASK_DIRECT_IO=0``."""
    return hasattr(os, "O_DIRECT") and os.environ.get(ENV, "1").strip().lower() not in ("0", "no", "false", "off")


def _buffer() -> mmap.mmap:
    buf = getattr(_local, "buffer", None)
    if buf is None:
        buf = _local.buffer = mmap.mmap(-1, BLOCK)  # anonymous maps are page-aligned
    return buf


@contextmanager
def new_file(path: str | os.PathLike, *, replace: bool = True, exists_hint: str = "") -> Iterator[Path]:
    """A temporary name beside ``path`` to write the whole file under; moved into place in one step when the block
    ends, deleted if it raises, so ``path`` only ever holds a complete file (the old one until then).

    ``replace=False`` refuses to clobber a ``path`` that appeared while the file was written: a StoreError naming it
    (``exists_hint`` appended, e.g. the option that allows replacing).  The temporary name ends in ``.partial``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path, exists_hint)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _link_new(tmp: Path, path: Path, hint: str) -> None:
    from ..errors import StoreError

    try:
        os.link(tmp, path)  # atomic, and refuses an existing target
    except FileExistsError:
        raise StoreError(f"{path} already exists (created meanwhile){hint}") from None
    except OSError:  # a file system without hard links
        if path.exists():
            raise StoreError(f"{path} already exists{hint}") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _buffered(path: Path, view: memoryview) -> int:
    with new_file(path) as tmp, open(tmp, "wb") as f:
        f.write(view)
    return view.nbytes


def _direct(tmp: Path, view: memoryview) -> None:
    """Write ``view`` into the new file ``tmp`` with O_DIRECT; OSError(EINVAL) if the file system refuses."""
    n = view.nbytes
    buf = _buffer()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o666)
    try:
        for start in range(0, n, BLOCK):
            size = min(BLOCK, n - start)
            buf[:size] = view[start:start + size]
            padded = -(-size // ALIGN) * ALIGN
            if padded > size:
                buf[size:padded] = bytes(padded - size)
            out = memoryview(buf)[:padded]
            try:
                done = 0
                while done < padded:
                    done += os.write(fd, out[done:])
            finally:
                out.release()
        os.ftruncate(fd, n)
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike, data) -> int:
    """Write ``data`` (any buffer) to ``path`` atomically, past the page cache when it is large and the file system
    allows it.  Returns the number of bytes written."""
    path = Path(path)
    view = memoryview(data).cast("B")
    path.parent.mkdir(parents=True, exist_ok=True)
    if view.nbytes < MIN_BYTES or not enabled():
        return _buffered(path, view)
    try:
        dev = path.parent.stat().st_dev
    except OSError:
        dev = None
    if dev in _refused:
        return _buffered(path, view)
    try:
        with new_file(path) as tmp:
            _direct(tmp, view)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        _refused.add(dev)  # this file system does not do O_DIRECT (or not with this alignment)
        return _buffered(path, view)
    return view.nbytes


@functools.cache
def _store_class():
    from zarr.storage import LocalStore

    class DirectLocalStore(LocalStore):
        """zarr's LocalStore; values of at least MIN_BYTES are written by :func:`write_file`."""

        async def set(self, key, value) -> None:
            if len(value) < MIN_BYTES or not enabled():
                return await super().set(key, value)
            await self._ensure_open()
            self._check_writable()
            await asyncio.to_thread(write_file, self.root / key, value.as_buffer_like())

    return DirectLocalStore


def local_store(path: str | os.PathLike, *, read_only: bool = False):
    """A zarr ``LocalStore`` at ``path`` whose large values (whole shards) are written with :func:`write_file`."""
    return _store_class()(str(path), read_only=read_only)
