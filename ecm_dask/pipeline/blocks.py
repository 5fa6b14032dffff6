"""Block-resumable stage checkpoints.

A stage result (a lazy Dataset chunked over pixels) is written into ``<output>.partial`` one pixel block
per task: the task computes every variable of its block, writes them into the block's own Zarr chunks and
then ticks the block in a small ``_ecm_blocks_done`` array.  A run killed mid-stage leaves a ``.partial``
whose ticked blocks are complete; the next run with the same stage key computes only the other blocks.
When all are done the tick array is removed and the store renamed into place, so ``output`` exists only
when complete.  Tasks are idempotent (a block written twice holds the same bytes), so a worker lost mid-
write is simply rescheduled.
"""

from __future__ import annotations

import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import StoreError
from .checkpoint import check_replaceable, writing

DONE = "_ecm_blocks_done"
KEY_ATTR = "ecm_dask_stage_key"


@contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def _block_grid(ds, dims) -> list[tuple[int, ...]]:
    """Chunk boundaries along ``dims`` shared by every dask variable that has them."""
    bounds = {}
    for name, var in ds.data_vars.items():
        if var.chunks is None:
            continue
        for dim, chunks in zip(var.dims, var.chunks):
            if dim in dims:
                if dim in bounds and bounds[dim] != tuple(chunks):
                    raise StoreError(f"variables of the stage result are chunked differently along {dim!r} "
                                     f"({bounds[dim]} vs {tuple(chunks)} for {name!r})")
                bounds[dim] = tuple(chunks)
    missing = [d for d in dims if d not in bounds]
    if missing:
        raise StoreError(f"no dask variable of the stage result spans {missing}")
    return [bounds[d] for d in dims]


def _offsets(chunks):
    return np.concatenate([[0], np.cumsum(chunks)]).astype(int)


def _mark(store: str, index: tuple[int, ...], *_written) -> bool:
    import zarr

    with writing(f"the progress of {store}"):
        zarr.open_array(store=os.path.join(store, DONE), mode="r+")[index] = 1
    return True


def _write_block(store: str, region: dict, names: list[str], *blocks) -> int:
    """Write one block of every variable into its own chunks (runs on a worker)."""
    import zarr

    span = ", ".join(f"{d} {s.start}:{s.stop}" for d, s in region.items())
    with writing(f"the pixel block {span} of {store}"), _quiet():
        group = zarr.open_group(store, mode="r+")
        for name, data in zip(names, blocks):
            arr = group[name]
            dims = arr.metadata.dimension_names or ()
            index = tuple(region.get(d, slice(None)) for d in dims)
            arr[index] = np.asarray(data).astype(arr.dtype, copy=False)
    return sum(int(np.asarray(b).nbytes) for b in blocks)


def write_blocks(ds, output: str | os.PathLike, *, key: str | None, dims=(S.Y, S.X), overwrite: bool = False,
                 progress: bool = True, label: str = "") -> Path:
    """Compute a lazy Dataset into ``output`` (Zarr v3, consolidated), resumable block by block.

    Parameters
    ----------
    ds : Dataset whose dask variables share their chunking along ``dims``; numpy variables are written first
    output : final store path (written as ``output.partial`` and renamed when complete)
    key : identifies the computation (input + configuration); a ``.partial`` with the same key is resumed,
        one with another key (or None) is discarded
    overwrite : replace an existing complete ``output``

    Returns
    -------
    Path of the complete store.
    """
    import dask

    from ..compute import run
    output = Path(output)
    check_replaceable(output, overwrite)
    partial = output.with_name(output.name + ".partial")
    ds = ds.copy()
    for name, var in ds.data_vars.items():  # one chunk along every other dim: one task per pixel block
        if var.chunks is not None and any(len(c) > 1 for d, c in zip(var.dims, var.chunks) if d not in dims):
            ds[name] = var.chunk({d: -1 for d in var.dims if d not in dims})
    grid = _block_grid(ds, dims)
    n_blocks = tuple(len(c) for c in grid)

    with _quiet():
        done = _resume_state(partial, key, n_blocks)
        if done is None:
            shutil.rmtree(partial, ignore_errors=True)
            with writing(f"the layout of {partial}"):
                _write_template(ds, partial, n_blocks, key, dims)
            done = np.zeros(n_blocks, dtype=bool)
        lazy = [n for n, v in ds.data_vars.items() if v.chunks is not None and set(dims) <= set(v.dims)]
        delayed = {n: ds[n].data.to_delayed(optimize_graph=False) for n in lazy}
        offs = [_offsets(c) for c in grid]
        tasks = []
        for index in np.ndindex(*n_blocks):
            if done[index]:
                continue
            region = {d: slice(int(o[i]), int(o[i + 1])) for d, o, i in zip(dims, offs, index)}
            blocks = []
            for n in lazy:
                where = tuple(index[dims.index(d)] if d in dims else 0 for d in ds[n].dims)
                blocks.append(delayed[n][where])
            written = dask.delayed(_write_block, pure=False)(str(partial), region, lazy, *blocks)
            tasks.append(dask.delayed(_mark, pure=False)(str(partial), index, written))
        if tasks:
            run(tasks, progress=progress, label=label + (f" ({len(tasks)} of {done.size} blocks left)"
                                                          if done.any() else ""))
        with writing(str(output)):
            _finalize(partial, output, n_blocks)
    return output


def _resume_state(partial: Path, key: str | None, n_blocks) -> np.ndarray | None:
    """Ticked blocks of a resumable ``.partial`` with this key, or None to start over."""
    import zarr

    if key is None or not (partial / DONE / "zarr.json").is_file():
        return None
    try:
        group = zarr.open_group(str(partial), mode="r")
        if group.attrs.get(KEY_ATTR) != key:
            return None
        done = np.asarray(zarr.open_array(store=str(partial / DONE), mode="r")[...]).astype(bool)
    except Exception:  # unreadable leftovers of a killed run: start over
        return None
    return done if done.shape == tuple(n_blocks) else None


def _write_template(ds, partial: Path, n_blocks, key: str | None, dims) -> None:
    """Metadata, coordinates and small numpy variables; dask variables as empty arrays chunked by block."""
    import zarr

    template = ds.copy()
    for name in template.variables:
        template[name].encoding = {k: v for k, v in template[name].encoding.items()
                                   if k not in ("chunks", "preferred_chunks", "shards")}
    small = [n for n, v in template.data_vars.items() if v.chunks is not None and not set(dims) <= set(v.dims)]
    for n in small:
        template[n] = template[n].load()
    template.to_zarr(str(partial), mode="w", compute=False, zarr_format=3, consolidated=False)
    zarr.create_array(store=str(partial / DONE), shape=tuple(n_blocks), chunks=(1,) * len(n_blocks),
                      dtype="uint8", fill_value=0, overwrite=True)
    group = zarr.open_group(str(partial), mode="r+")
    group.attrs[KEY_ATTR] = key  # last: a .partial without it is never resumed


def _finalize(partial: Path, output: Path, n_blocks) -> None:
    import zarr

    done = np.asarray(zarr.open_array(store=str(partial / DONE), mode="r")[...])
    if done.shape != tuple(n_blocks) or not done.all():
        raise StoreError(f"{partial}: {int((done == 0).sum())} block(s) were not written; run the stage again")
    shutil.rmtree(partial / DONE)
    zarr.consolidate_metadata(str(partial))
    if output.exists():
        shutil.rmtree(output)
    os.replace(partial, output)
