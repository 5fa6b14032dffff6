"""The one way ecm_dask writes a store: atomically, block by block, resumable.

Every store (the ingested series, the synthetic rendering, the g2/fit stage checkpoints, the drift and screen
checkpoints and ``results.zarr``) is written like this:

1. :func:`prepare` makes ``<output>.partial``: the caller's ``create`` writes the metadata and empty arrays, then a
   tick array ``_ecm_blocks_done`` (one flag per block) and, last, the ``ecm_dask_write_key`` attribute.  A
   ``.partial`` without the key is a creation that was interrupted and is simply made again; one with the same
   key is resumed (its ticked blocks are kept); one with another key is discarded (stage checkpoints) or refused
   (``other="refuse"``: an ingest of other input is not thrown away without ``--overwrite``).
2. Tasks write whole blocks and then :func:`mark` them; a task killed mid-block leaves its tick unset, and writing
   a block again gives the same bytes, so a lost worker is simply rescheduled.
3. :func:`commit` checks every tick, removes the tick array, writes the final attributes (the run configuration,
   the completion flag, ...) and consolidates the metadata *inside* ``.partial``, then renames it into place with
   one ``os.replace``.  ``output`` therefore exists only complete, with all its attributes.

A small dataset written in one go uses :func:`atomic` (prepare + commit with no blocks); a lazy dataset chunked
over pixels uses :func:`write_blocks`.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import StoreError
from .integrity import checksummed
from .paths import swap_in

DONE = "_ecm_blocks_done"
KEY_ATTR = "ecm_dask_write_key"
PARTIAL = ".partial"


@contextmanager
def quiet():
    """Silence zarr's notice that consolidated metadata is not (yet) in the v3 spec."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


@contextmanager
def writing(what: str):
    """Turn a disk-full / permission / I/O error (OSError) raised in the block into one StoreError that
    names ``what`` was being written and says what to do; StoreErrors pass unchanged."""
    try:
        yield
    except StoreError:
        raise
    except OSError as err:
        why = err.strerror or str(err)
        where = f" ({err.filename})" if err.filename else ""
        raise StoreError(f"writing {what} failed: {why}{where}. What was written before is kept: free space or "
                         "fix the permissions, then run the same command again to resume") from None


def partial_path(output: str | os.PathLike) -> Path:
    """Where ``output`` is written until it is complete."""
    output = Path(output)
    return output.with_name(output.name + PARTIAL)


def check_replaceable(output: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an existing ``output`` unless ``overwrite``, and never one that is not a Zarr store."""
    output = Path(output)
    if output.exists():
        if not overwrite:
            raise StoreError(f"{output} exists; use --overwrite to replace it")
        if not (output / "zarr.json").is_file():
            raise StoreError(f"{output} exists and is not a Zarr store; refusing to delete it")


def _attrs(path: Path) -> dict | None:
    """The root attributes of the Zarr group at ``path`` (None if unreadable)."""
    try:
        return json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return None


def written_key(partial: str | os.PathLike) -> str | None:
    """The key a ``.partial`` was created with (None: not created completely, or not ours)."""
    attrs = _attrs(Path(partial))
    return None if attrs is None else attrs.get(KEY_ATTR)


def progress(partial: str | os.PathLike) -> tuple[int, int] | None:
    """``(blocks written, blocks in all)`` of a ``.partial``, or None if it has no tick array."""
    import zarr

    try:
        done = np.asarray(zarr.open_array(store=str(Path(partial) / DONE), mode="r")[...])
    except Exception:  # noqa: BLE001 - missing or unreadable: no progress known
        return None
    return int(np.count_nonzero(done)), int(done.size)


def _remove(path: Path) -> None:
    """Delete a leftover ``.partial`` (the name is reserved for ecm_dask's temporaries; a file or a link of that
    name is refused, never followed)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise StoreError(f"{path} exists and is not an interrupted ecm_dask store; move it away and run again")
    shutil.rmtree(path)


def prepare(output: str | os.PathLike, key: str, n_blocks: tuple[int, ...] | int, create: Callable[[Path], None], *,
            other: str = "discard", what: str = "") -> tuple[Path, np.ndarray, bool]:
    """Make (or find, to resume) ``<output>.partial``.

    Parameters
    ----------
    output : the final store path
    key : identifies the content (input + settings); a ``.partial`` with the same key is resumed
    n_blocks : the block grid (one tick per block)
    create : ``create(partial)`` writes the metadata and empty arrays into the (absent) ``partial``
    other : ``"discard"`` a ``.partial`` of another key (start over) or ``"refuse"`` it with a StoreError
    what : a name for messages

    Returns
    -------
    partial, done (bool array of the block grid), resumed (True when an interrupted write continues)
    """
    import zarr

    partial = partial_path(output)
    grid = (n_blocks,) if isinstance(n_blocks, int) else tuple(int(n) for n in n_blocks)
    if partial.exists():
        found = written_key(partial)
        ticks = progress(partial)
        if found == key and ticks is not None and ticks[1] == int(np.prod(grid)):
            done = np.asarray(zarr.open_array(store=str(partial / DONE), mode="r")[...]).astype(bool)
            if done.shape == grid:
                return partial, done, True
        if found is not None and found != key and other == "refuse":
            raise StoreError(f"{partial} holds an interrupted {what or 'write'} of a different input or settings; "
                             "run that command again to finish it, or use --overwrite to start over")
        _remove(partial)  # a creation that was interrupted, or another key: start over
    partial.parent.mkdir(parents=True, exist_ok=True)
    with writing(f"the layout of {partial}"), quiet():
        create(partial)
        zarr.create_array(store=str(partial / DONE), shape=grid, chunks=(1,) * len(grid), dtype="uint8",
                          fill_value=0, overwrite=True, compressors=None)
        group = zarr.open_group(str(partial), mode="r+")
        group.attrs[KEY_ATTR] = key  # last: a .partial without it is never resumed
    return partial, np.zeros(grid, dtype=bool), False


def mark(partial: str | os.PathLike, index, *_after) -> bool:
    """Tick block ``index`` of ``partial`` (call after the block's data is written; extra args order tasks)."""
    import zarr

    index = (index,) if isinstance(index, (int, np.integer)) else tuple(index)
    with writing(f"the progress of {partial}"):
        zarr.open_array(store=os.path.join(str(partial), DONE), mode="r+")[index] = 1
    return True


def commit(partial: str | os.PathLike, output: str | os.PathLike, *, attrs: Mapping[str, Any] | None = None,
           consolidate: bool = True) -> Path:
    """Finish ``partial`` and rename it to ``output``: every tick set (else StoreError), tick array removed,
    ``attrs`` written into the root group, metadata consolidated, then one rename (an existing ``output`` is
    replaced: callers check :func:`check_replaceable` first)."""
    import zarr

    partial, output = Path(partial), Path(output)
    with writing(str(output)), quiet():
        ticks = progress(partial)
        if ticks is not None:
            if ticks[0] != ticks[1]:
                raise StoreError(f"{partial}: {ticks[1] - ticks[0]} of {ticks[1]} block(s) were not written; "
                                 "run the same command again to finish them")
            shutil.rmtree(partial / DONE)
        group = zarr.open_group(str(partial), mode="r+")
        final = {k: v for k, v in (attrs or {}).items()}
        if final:
            group.attrs.update(final)
        if consolidate:
            zarr.consolidate_metadata(str(partial))
        swap_in(partial, output)  # overwrite: the old store stays whole until the new one is in place
    return output


@contextmanager
def atomic(output: str | os.PathLike, *, overwrite: bool = False, attrs: Mapping[str, Any] | None = None,
           consolidated: bool = False):
    """Yield the ``.partial`` path to write a small store in one go; on success it is committed to ``output``
    (refused if ``output`` exists unless ``overwrite``; something that is not a Zarr store is never deleted).
    ``consolidated``: the writer consolidated the metadata itself (and ``attrs`` is empty): not done again."""
    output = Path(output)
    check_replaceable(output, overwrite)
    partial = partial_path(output)
    _remove(partial)
    with writing(str(output)), quiet():
        yield partial
    commit(partial, output, attrs=attrs, consolidate=bool(attrs) or not consolidated)


# --- a lazy dataset, one pixel block per task --------------------------------------------------------------------

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


def _write_block(store: str, region: dict, names: list[str], *blocks) -> int:
    """Write one block of every variable into its own chunks (runs on a worker)."""
    from zarr.core.sync import sync

    span = ", ".join(f"{d} {s.start}:{s.stop}" for d, s in region.items())
    with writing(f"the pixel block {span} of {store}"), quiet():
        sync(_write_all(store, region, names, blocks))  # every variable's chunks encoded and written concurrently
    return sum(int(np.asarray(b).nbytes) for b in blocks)


async def _write_all(store: str, region: dict, names: list[str], blocks) -> None:
    import asyncio

    from zarr.api.asynchronous import open_group

    from .direct import local_store

    group = await open_group(store=local_store(store), mode="r+")

    async def one(name, data):
        arr = (await group.getitem(name)).with_config({"write_empty_chunks": True})
        dims = arr.metadata.dimension_names or ()
        index = tuple(region.get(d, slice(None)) for d in dims)
        await arr.setitem(index, np.asarray(data).astype(arr.dtype, copy=False))

    # every write runs to its end before an error is raised (none is left pending when a disk-full error ends the
    # run: asyncio would report it at exit), the first error then stands for the block
    results = await asyncio.gather(*(one(n, d) for n, d in zip(names, blocks)), return_exceptions=True)
    for res in results:
        if isinstance(res, BaseException):
            raise res


def _template_writer(ds, dims) -> Callable[[Path], None]:
    """``create(partial)``: metadata, coordinates and small numpy variables; dask variables as empty arrays."""

    def create(partial: Path) -> None:
        template = ds.copy()
        for name in template.variables:
            template[name].encoding = {k: v for k, v in template[name].encoding.items()
                                       if k not in ("chunks", "preferred_chunks", "shards")}
        small = [n for n, v in template.data_vars.items() if v.chunks is not None and not set(dims) <= set(v.dims)]
        for n in small:
            template[n] = template[n].load()
        checksummed(template).to_zarr(str(partial), mode="w", compute=False, zarr_format=3, consolidated=False,
                                      write_empty_chunks=True)

    return create


def write_blocks(ds, output: str | os.PathLike, *, key: str | None, dims=(S.Y, S.X), overwrite: bool = False,
                 progress: bool = True, label: str = "", attrs: Mapping[str, Any] | None = None) -> Path:
    """Compute a lazy Dataset into ``output`` (Zarr v3, consolidated), resumable block by block.

    Parameters
    ----------
    ds : Dataset whose dask variables share their chunking along ``dims``; numpy variables are written first
    output : final store path (written as ``output.partial`` and renamed when complete)
    key : identifies the computation (input + configuration); a ``.partial`` with the same key is resumed,
        one with another key is discarded; None: never resumed
    overwrite : replace an existing complete ``output``
    attrs : root attributes written at commit (before the rename)

    Returns
    -------
    Path of the complete store.
    """
    import dask

    from ..compute import run

    output = Path(output)
    check_replaceable(output, overwrite)
    ds = ds.copy()
    for name, var in ds.data_vars.items():  # one chunk along every other dim: one task per pixel block
        if var.chunks is not None and any(len(c) > 1 for d, c in zip(var.dims, var.chunks) if d not in dims):
            ds[name] = var.chunk({d: -1 for d in var.dims if d not in dims})
    grid = _block_grid(ds, dims)
    n_blocks = tuple(len(c) for c in grid)
    with quiet():
        partial, done, _ = prepare(output, key if key is not None else f"unkeyed-{os.getpid()}-{id(ds)}",
                                   n_blocks, _template_writer(ds, dims), what=label)
        lazy = [n for n, v in ds.data_vars.items() if v.chunks is not None and set(dims) <= set(v.dims)]
        delayed = {n: ds[n].data.to_delayed(optimize_graph=False) for n in lazy}
        offs = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in grid]
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
            tasks.append(dask.delayed(mark, pure=False)(str(partial), index, written))
        if tasks:
            run(tasks, progress=progress, label=label + (f" ({len(tasks)} of {done.size} blocks left)"
                                                          if done.any() else ""))
        return commit(partial, output, attrs=attrs)


def write_dataset(ds, output: str | os.PathLike, *, overwrite: bool = False, progress: bool = True, label: str = "",
                  attrs: Mapping[str, Any] | None = None) -> Path:
    """Compute a (small or lazy) dataset into ``output`` (Zarr v3, consolidated) in one go, atomically."""
    from ..compute import run

    with atomic(output, overwrite=overwrite, attrs=attrs) as partial:
        delayed = checksummed(ds).to_zarr(partial, mode="w", compute=False, zarr_format=3, consolidated=False,
                                          write_empty_chunks=True)
        run([delayed], progress=progress, label=label)
    return Path(output)
