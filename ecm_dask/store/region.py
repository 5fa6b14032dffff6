"""Direct reads of a pixel region over all frames from a series store, into reused per-thread buffers.

The g2 stage's tasks read their own (time, y, x) region straight from the store (no dask chunk tasks, no
transfers between workers).  :func:`read_region` decodes each read's chunks into the region (with
:class:`~ecm_dask.store.shards.ShardReader` for the layout ecm_dask writes, zarr's ``out=`` otherwise), and
:func:`scratch` hands every worker thread one buffer it reuses from task to task: a 100-200 MiB region is not
allocated (and page-faulted) again for every block; :func:`release_scratch` drops them after the stage.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .. import schema as S

#: per-thread buffers, by thread id (a dict so that :func:`release_scratch` can drop every thread's at the end of a
#: stage: the threads of dask's pool outlive it)
_BUFFERS: dict[int, dict[str, np.ndarray]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Read:
    """One store read: frames ``t0:t1``, rows ``y0:y1``, columns ``x0:x1`` of the stored series."""

    t0: int
    t1: int
    y0: int
    y1: int
    x0: int
    x1: int


def scratch(shape: tuple[int, ...], dtype, slot: str = "region") -> np.ndarray:
    """An uninitialised array of ``shape`` and ``dtype`` backed by this thread's buffer ``slot`` (grown when a
    larger one is asked for, never shrunk).  Valid until the same thread asks for ``slot`` again or
    :func:`release_scratch` runs: use it inside one task, never return it."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    key = threading.get_ident()
    with _LOCK:
        bufs = _BUFFERS.setdefault(key, {})
        buf = bufs.get(slot)
        if buf is None or buf.size < n:
            bufs.pop(slot, None)  # let the old one go before the new one is allocated
            buf = None
    if buf is None:
        buf = np.empty(max(n, 1), dtype=np.uint8)
        with _LOCK:
            _BUFFERS.setdefault(key, {})[slot] = buf
    return buf[:n].view(dtype).reshape(shape)


def release_scratch() -> int:
    """Drop the buffers of every thread of this process (after a stage); returns the bytes released."""
    with _LOCK:
        n = sum(b.nbytes for bufs in _BUFFERS.values() for b in bufs.values())
        _BUFFERS.clear()
    return n


def release_everywhere() -> None:
    """:func:`release_scratch` in this process and on the workers of an active cluster (after a stage)."""
    from ..compute import active_client

    release_scratch()
    client = active_client()
    if client is not None:
        try:
            client.run(release_scratch)
        except Exception:  # noqa: BLE001 - a worker gone or busy keeps its buffer: memory, not correctness
            pass


def read_region(path: str | os.PathLike, reads: Iterable[Read], shape: tuple[int, int, int],
                origin: tuple[int, int] | tuple[int, int, int], *, dtype=None, fill=None, out: np.ndarray | None = None,
                name: str = S.INTENSITY) -> np.ndarray:
    """Fill a ``shape`` = (frames, ry, rx) region whose element (0, 0, 0) is stored frame ``origin[0]`` (0 if
    ``origin`` is ``(y, x)``), pixel ``origin[-2:]``, from ``reads``.

    Parameters
    ----------
    path : series store
    reads : :class:`Read` s (stored coordinates, inside the stored series), e.g.
        :meth:`ecm_dask.ops.g2plan.G2Plan.reads`
    dtype : of the region (default: the stored dtype; the reads are then decoded in place, otherwise converted)
    fill : value of the parts no read covers (default: left as they are - never read them)
    out : the region array (default: a new one)

    Damaged or missing chunks raise a StoreError naming the file and the frames (see
    :func:`ecm_dask.store.integrity.read_checked`).
    """
    import zarr

    from .integrity import read_checked
    from .shards import ShardReader, Unreadable

    fast = ShardReader.open(os.path.join(path, name))  # its metadata gives the stored dtype without zarr
    arr = None if fast is not None else zarr.open_array(os.path.join(path, name), mode="r")
    stored = fast.dtype if fast is not None else arr.dtype
    dtype = stored if dtype is None else np.dtype(dtype)
    if dtype != stored:
        fast = None
    chunk = scratch((fast.chunk_bytes,), np.uint8, slot="chunk") if fast is not None else None
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"out has shape {out.shape} {out.dtype}, the region needs {tuple(shape)} {dtype}")
    if fill is not None:
        out.fill(fill)
    ot, oy, ox = origin if len(origin) == 3 else (0, *origin)
    for r in reads:
        sel = (slice(r.t0, r.t1), slice(r.y0, r.y1), slice(r.x0, r.x1))
        dst = out[r.t0 - ot:r.t1 - ot, r.y0 - oy:r.y1 - oy, r.x0 - ox:r.x1 - ox]
        if fast is not None:
            try:
                fast.read(sel, dst, chunk)
                continue
            except Unreadable:  # damaged, missing, unexpected: zarr reads it and names what is wrong
                pass
        if arr is None:
            arr = zarr.open_array(os.path.join(path, name), mode="r")
        if dtype == stored:
            read_checked(arr, sel, path, name, out=dst)
        else:
            dst[...] = read_checked(arr, sel, path, name)
    return out
