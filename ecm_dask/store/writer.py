"""Write any :class:`~ecm_dask.readers.base.FrameSource` into a series store: whole shards, resumable.

Input is read in time slabs of one shard each (the order in which it lies on disk) and written as
whole shards whose inner chunks are long in time and small in space.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import StoreError
from ..readers.base import FrameSource
from . import blocks as B
from . import layout as L
from . import series as SS


def provenance(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Package versions, time and command line, recorded in every store ecm_dask writes."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("ecm_dask", "numpy", "scipy", "dask", "distributed", "xarray", "zarr", "numcodecs"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    out = {"created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
           "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else "",
           "versions": versions}
    if extra:
        out.update(extra)
    return out


def _write_one(source: FrameSource, writer: SS.ShardWriter, index: int) -> int:
    from .region import scratch

    start, stop = writer.layout.shard_frames(index)
    frames = scratch((stop - start, *source.frame_shape), source.dtype, "ingest")  # reused by this thread's shards
    return writer(index, source.read(start, stop, out=frames))


def write_series(source: FrameSource, output: str | os.PathLike, attrs: dict[str, Any], *, overwrite: bool = False,
                 tile: int = L.DEFAULT_TILE, shard_bytes: int = L.DEFAULT_SHARD_BYTES,
                 frames_per_shard: int | None = None, layout: L.SeriesLayout | None = None, key_extra: Any = None,
                 extra_groups: Mapping[str, Any] | None = None, progress: bool = True) -> Path:
    """Write ``source`` into a series store at ``output``, resuming an interrupted write of the same input.

    Parameters
    ----------
    source : any :class:`~ecm_dask.readers.base.FrameSource`
    output : store path; written as ``<output>.partial`` and renamed when complete.  An interrupted write of the
        same input and settings is resumed; an existing store is replaced only with ``overwrite`` (and stays
        whole until the new one is complete)
    attrs : series attributes (from :func:`resolve_metadata`)
    tile, shard_bytes, frames_per_shard : layout (see :func:`~ecm_dask.store.layout.plan_layout`)
    layout : a layout planned already (overrides the three above)
    key_extra : anything else that must match for a resume (e.g. synthetic parameters)
    extra_groups : ``{name: xarray.Dataset}`` written as groups of the store before it is marked complete
        (e.g. the ground truth of a synthetic series)
    progress : show a progress bar

    Returns
    -------
    Path of the complete store.
    """
    import dask

    output = Path(output)
    if layout is None:
        layout = L.plan_layout(source.shape, source.dtype.itemsize, tile=tile, shard_bytes=shard_bytes,
                               frames_per_shard=frames_per_shard)
    elif tuple(layout.shape) != tuple(source.shape):
        raise ValueError(f"layout is for shape {layout.shape}, the source has {source.shape}")
    key_attrs = {k: v for k, v in attrs.items() if k != S.ATTR_PROVENANCE}
    key = SS.fingerprint({"input": source.fingerprint(), "layout": layout.as_dict(), "attrs": key_attrs,
                          "extra": key_extra})
    state = SS.store_state(output)
    if state == SS.FOREIGN:
        raise StoreError(f"{output} exists and is not an ecm_dask store; choose another output path")
    if state == SS.COMPLETE and not overwrite:
        raise StoreError(f"{output} already holds a complete series; use --overwrite to replace it")
    if state == SS.INCOMPLETE and not overwrite:
        raise StoreError(f"{output} holds an ingest interrupted by an older ecm_dask (written in place); "
                         "use --overwrite to start over")

    def create(partial):
        SS.create_series(partial, layout, source.dtype, attrs, key)

    # an interrupted ingest of this input resumes; one of another input is refused unless overwrite
    partial, done, resumed = B.prepare(output, key, layout.n_shards, create, other="discard" if overwrite else "refuse",
                                       what=f"ingest into {output}")
    todo = [int(i) for i in np.flatnonzero(~done)]
    if progress and resumed:
        print(f"resuming {output}: {layout.n_shards - len(todo)} of {layout.n_shards} shards already written",
              file=sys.stderr)
    writer = SS.ShardWriter(partial, layout)
    tasks = [dask.delayed(_write_one, pure=False)(source, writer, i, dask_key_name=f"ingest-shard-{i}-{key[:8]}")
             for i in todo]
    from ..compute import run

    run(tasks, progress=progress,
        label=f"ingest {source.label} -> {output}: {source.shape} {source.dtype}, {len(todo)} shard(s) "
              f"of {layout.shard[0]} frames, chunks {layout.chunk}")
    from .region import release_everywhere

    release_everywhere()  # the shard buffers of every thread (and worker)
    with B.quiet():
        for name, group in (extra_groups or {}).items():
            SS.write_group(partial, name, group)
    B.commit(partial, output, attrs={S.ATTR_COMPLETE: True})  # complete, consolidated, then renamed into place
    return output


