"""The series store: a Zarr v3 group holding ``intensity(time, y, x)`` in the layout of :mod:`.layout`.

Life of a store (written through :mod:`ecm_dask.store.blocks`, the one writer of every ecm_dask store)
------------------------------------------------------------------------------------------------------
1. :func:`create_series` writes the metadata (dims, coords with units, attributes, codecs, shards) into
   ``<output>.partial``, with the completion attribute ``False``; the block writer adds one tick per time shard.
2. :class:`ShardWriter` writes one whole shard and then ticks it (so a killed writer leaves at most one shard
   half-written, and that shard's tick unset).
3. The block writer's commit checks every tick, sets the completion attribute, consolidates the metadata and
   renames ``<output>.partial`` to ``<output>``.  Only then does ``<output>`` exist.

An interrupted ingest is resumed by writing the shards whose tick is unset (:func:`pending_shards`).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from contextlib import contextmanager
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import StoreError, ValidationError
from .integrity import ATTR_INTEGRITY, INTEGRITY, codecs
from .layout import SeriesLayout

PROGRESS = "_ecm_ingest_progress"  # the per-shard flags of stores written in place by ecm_dask < 0.3
#: encoding key on the opened ``intensity`` naming its store, so readers can bypass per-chunk dask tasks
ENC_STORE = "ecm_dask_store"
#: the dask name of the intensity array as opened: the g2 stage reads the store directly only while it is unchanged
ENC_DASK_NAME = "ecm_dask_dask_name"
ATTR_LAYOUT = "ecm_dask_layout"
ATTR_FINGERPRINT = "ecm_dask_fingerprint"

ABSENT, COMPLETE, INCOMPLETE, FOREIGN = "absent", "complete", "incomplete", "foreign"


def compressor():
    """Blosc LZ4 (level 9) with bitshuffle: ~2-4x smaller on detector counts and decoded at memory speed.

    On 40 random inner chunks of the real-scale synthetic series (uint16; vacuum, wire and crystal), one core:
    LZ4 level 9 compresses 2.22x at 1.2 GB/s and decompresses at 2.5 GB/s; zstd level 1 (the codec before)
    2.25x at 0.46 GB/s and 0.82 GB/s; zstd level 5 2.14x at 42 MB/s. The g2 stage decodes every inner chunk
    of a pixel block and its drift halo, so decoding speed is what a run waits for. Stores written with
    another Blosc codec read as before (the codec is in the array metadata).
    """
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=9, shuffle="bitshuffle")


def fingerprint(obj: Any) -> str:
    """A stable hash of a JSON-serialisable description (input files, layout, metadata)."""
    return sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


@contextmanager
def _quiet():
    """Silence zarr's notice that consolidated metadata is not (yet) in the v3 spec."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def store_state(path: str | os.PathLike) -> str:
    """``absent``, ``complete``, ``incomplete`` (an interrupted in-place ingest of an older ecm_dask; interrupted
    ingests now live in ``<path>.partial``, see :func:`interrupted`) or ``foreign`` (something else is there)."""
    p = Path(path)
    if not p.exists():
        return ABSENT
    meta = p / "zarr.json"
    if not p.is_dir() or not meta.is_file():
        return FOREIGN
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return FOREIGN
    if ATTR_FINGERPRINT not in attrs:
        return FOREIGN
    return COMPLETE if attrs.get(S.ATTR_COMPLETE) is True else INCOMPLETE


def remove_store(path: str | os.PathLike) -> None:
    """Delete an ecm_dask store; refuses to delete anything that is not one."""
    state = store_state(path)
    if state == ABSENT:
        return
    if state == FOREIGN:
        raise StoreError(f"{path} exists and is not an ecm_dask store; refusing to delete it. Choose another output path")
    shutil.rmtree(path)


def series_coords(n_frames: int, ny: int, nx: int, frame_time_s: float, pixel_size_nm: float,
                  time_s: np.ndarray | None = None, mode: str = S.MODE_IMAGE) -> dict[str, Any]:
    """Coordinates ``time`` (s from frame 0), ``y``, ``x`` (nm, pixel centres from the first pixel), with units.
    A diffraction series (``mode``) has ``pixel_size_nm`` = its k calibration and ``y``, ``x`` in nm^-1."""
    import xarray as xr

    t = np.arange(n_frames, dtype=np.float64) * frame_time_s if time_s is None else np.asarray(time_s, np.float64)
    axes = {dim: {S.ATTR_UNITS: S.series_units(dim, mode), S.ATTR_LONG_NAME: name}
            for dim, name in ((S.Y, "y" if mode == S.MODE_IMAGE else "camera rows"),
                              (S.X, "x" if mode == S.MODE_IMAGE else "camera columns"))}
    return {
        S.TIME: xr.Variable(S.TIME, t, S.coord_attrs(S.TIME, "time since the first frame")),
        S.Y: xr.Variable(S.Y, np.arange(ny, dtype=np.float64) * pixel_size_nm, axes[S.Y]),
        S.X: xr.Variable(S.X, np.arange(nx, dtype=np.float64) * pixel_size_nm, axes[S.X]),
    }


def _step(attrs) -> float:
    """Coordinate step of the camera axes: the pixel size (nm) or, for a diffraction series, the k calibration."""
    diffraction = S.series_mode(attrs) == S.MODE_DIFFRACTION
    return float(attrs[S.ATTR_K_CALIBRATION] if diffraction else attrs[S.ATTR_PIXEL_SIZE])


def create_series(path: str | os.PathLike, layout: SeriesLayout, dtype, attrs: dict[str, Any], key: str,
                  time_s: np.ndarray | None = None) -> None:
    """Write the metadata of an empty, incomplete series store at ``path`` (which must not exist; the block
    writer calls this on ``<output>.partial``).

    Parameters
    ----------
    path : output directory (``*.zarr``)
    layout : shard and chunk shapes from :func:`~ecm_dask.store.layout.plan_layout`
    dtype : stored dtype of ``intensity`` (the input dtype)
    attrs : series attributes (see :data:`ecm_dask.schema.SERIES_REQUIRED_ATTRS`)
    key : fingerprint of input + settings; a resume must present the same key
    time_s : optional explicit frame times (default ``arange(n) * frame_time``)
    """
    import dask.array as da
    import xarray as xr

    n, ny, nx = layout.shape
    dtype = np.dtype(dtype)
    attrs = dict(attrs)
    attrs[S.ATTR_COMPLETE] = False
    attrs[ATTR_LAYOUT] = layout.as_dict()
    attrs[ATTR_FINGERPRINT] = key
    template = da.zeros(layout.shape, dtype=dtype, chunks=layout.shard)
    intensity = xr.Variable(S.SERIES_DIMS, template, S.coord_attrs(S.INTENSITY, "detector intensity"))
    ds = xr.Dataset({S.INTENSITY: intensity},
                    coords=series_coords(n, ny, nx, attrs[S.ATTR_FRAME_TIME], _step(attrs), time_s, S.series_mode(attrs)),
                    attrs=attrs)
    fill = np.nan if dtype.kind == "f" else 0
    encoding = {S.INTENSITY: {"chunks": layout.chunk, "shards": layout.shard, "compressors": codecs(compressor()),
                              "fill_value": fill},
                **{c: {"compressors": codecs()} for c in ds.coords}}  # the frame times are checksummed too
    attrs[ATTR_INTEGRITY] = dict(INTEGRITY)
    ds.attrs = attrs
    with _quiet():
        ds.to_zarr(path, mode="w-", compute=False, encoding=encoding, zarr_format=3, consolidated=False)


class ShardWriter:
    """Writes whole time shards of a series store being written (``<output>.partial``) and ticks them;
    picklable (holds the path only)."""

    def __init__(self, path: str | os.PathLike, layout: SeriesLayout):
        self.path = str(path)
        self.layout = layout

    def __call__(self, index: int, data: np.ndarray) -> int:
        """Write ``data`` as time shard ``index`` and mark it done. Returns the number of frames written."""
        import zarr

        from .blocks import mark
        from .direct import local_store
        from .shards import ShardEncoder

        start, stop = self.layout.shard_frames(index)
        if data.shape != (stop - start, *self.layout.shape[1:]):
            raise ValueError(f"shard {index} needs shape {(stop - start, *self.layout.shape[1:])}, got {data.shape}")
        try:
            encoder = ShardEncoder.open(os.path.join(self.path, S.INTENSITY))
            if encoder is not None:
                encoder.write_region((start, 0, 0), data)
            else:  # a layout the encoder does not know: zarr writes it
                arr = zarr.open_array(store=local_store(os.path.join(self.path, S.INTENSITY)), mode="r+",
                                      config={"write_empty_chunks": True})  # every shard file exists: completeness
                arr[start:stop] = data
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write frames {start}..{stop - 1}: {exc}") from exc
        mark(self.path, index)
        return stop - start


def pending_shards(output: str | os.PathLike) -> list[int]:
    """Indices of time shards not yet written by an interrupted ingest into ``output``."""
    import zarr

    from .blocks import DONE, partial_path

    flags = zarr.open_array(store=str(partial_path(output) / DONE), mode="r")[:]
    return [int(i) for i in np.flatnonzero(flags == 0)]


def interrupted(output: str | os.PathLike) -> tuple[int, int] | None:
    """``(shards written, shards in all)`` of an interrupted ingest into ``output`` (None if there is none)."""
    from .blocks import partial_path, progress

    partial = partial_path(output)
    if not partial.is_dir() or store_key(partial) is None:
        return None
    return progress(partial)


def store_key(path: str | os.PathLike) -> str | None:
    """The input/settings fingerprint a store was created with."""
    try:
        return json.loads((Path(path) / "zarr.json").read_text())["attributes"].get(ATTR_FINGERPRINT)
    except (OSError, ValueError, KeyError):
        return None


def write_group(path: str | os.PathLike, name: str, ds) -> None:
    """Write (or replace) a small in-memory dataset as group ``name`` of the store at ``path``."""
    from .integrity import checksummed

    with _quiet():
        checksummed(ds).to_zarr(path, group=name, mode="w", zarr_format=3, consolidated=False, write_empty_chunks=True)


def open_series(path: str | os.PathLike, *, require_complete: bool = True, validate: bool = True, chunks="store"):
    """Open a series store as a lazy :class:`xarray.Dataset`.

    Parameters
    ----------
    path : the ``series.zarr`` directory
    require_complete : refuse a store whose ingest has not finished
    validate : run :func:`ecm_dask.schema.validate_series`
    chunks : ``"store"`` for dask chunks equal to the inner chunks (a pixel block over all time is then a
        plain concatenation), or anything :func:`xarray.open_zarr` accepts

    Raises
    ------
    StoreError
        If there is no ecm_dask store at ``path``.
    ValidationError
        If the store is incomplete or breaks the data model (the message lists every problem).
    """
    import xarray as xr

    state = store_state(path)
    if state == ABSENT:
        done = interrupted(path)
        if done is not None:
            raise StoreError(f"{path}: the ingest into it was interrupted ({done[0]} of {done[1]} shards written, in "
                             f"{path}.partial); run the same ingest command again to resume")
        raise StoreError(f"{path}: no such store")
    if state == FOREIGN:
        raise StoreError(f"{path} is not an ecm_dask series store (no {ATTR_FINGERPRINT!r} attribute); "
                         "create one with 'ecm-dask ingest'")
    if state == COMPLETE:
        from .integrity import check_complete

        check_complete(path, [S.INTENSITY])  # every shard file there (a missing one would read as zeros)
    if state == INCOMPLETE and require_complete:
        raise ValidationError([f"the store is incomplete ({S.ATTR_COMPLETE!r} is false): an ingest was "
                               "interrupted; run the same ingest command again to resume"], what=str(path))
    from .integrity import checked, damaged, is_damage

    try:
        with _quiet():
            ds = xr.open_zarr(path, consolidated=state == COMPLETE, chunks={} if chunks == "store" else chunks,
                              drop_variables=[PROGRESS])
    except Exception as err:  # the coordinates are read at once: a damaged one is named, not a traceback
        if not is_damage(err):
            raise
        raise damaged(err, f"{path} (its coordinates time, y, x)") from None
    ds = checked(ds, path, names=[S.INTENSITY])  # a damaged chunk read by dask: a StoreError naming file and block
    ds[S.INTENSITY].encoding[ENC_STORE] = os.path.abspath(path)
    ds[S.INTENSITY].encoding[ENC_DASK_NAME] = ds[S.INTENSITY].data.name  # any derived array gets another name
    if validate:
        try:
            S.validate_series(ds, require_complete=require_complete)
        except ValidationError as exc:
            raise ValidationError(exc.problems, what=str(path)) from None
    return ds


def store_backed(intensity) -> str | None:
    """The store path if ``intensity`` is exactly the array :func:`open_series` opened (not subset, converted or
    modified: any of those gives the dask array a new name)."""
    import dask.array as da

    path, name = intensity.encoding.get(ENC_STORE), intensity.encoding.get(ENC_DASK_NAME)
    data = intensity.data
    if path is None or name is None or not isinstance(data, da.Array) or data.name != name:
        return None
    return path if os.path.isdir(os.path.join(path, S.INTENSITY)) else None


def read_pixels(intensity, t: slice, y: slice, x: slice, *, out: np.ndarray | None = None) -> np.ndarray:
    """``intensity[t, y, x]`` (slices with step 1) as a NumPy array in its dtype: straight from the store (the fast
    shard reader, no dask tasks) when ``intensity`` is exactly an opened series store, else through dask.
    Damaged bytes raise a StoreError naming the file and frames either way."""
    from .region import Read, read_region

    sel = tuple(slice(*s.indices(n)) for s, n in zip((t, y, x), intensity.shape))
    if any(s.step != 1 for s in sel):
        raise ValueError("read_pixels takes slices with step 1")
    shape = tuple(max(0, s.stop - s.start) for s in sel)
    path = store_backed(intensity)
    if path is None or 0 in shape:
        data = np.asarray(intensity.data[sel])
        if out is not None:
            out[...] = data
            return out
        return data
    read = Read(sel[0].start, sel[0].stop, sel[1].start, sel[1].stop, sel[2].start, sel[2].stop)
    return read_region(path, [read], shape, (sel[0].start, sel[1].start, sel[2].start), out=out)


def _scan_slab(path: str, t0: int, t1: int, shape: tuple[int, int], dtype, pixels):
    """Frames ``t0:t1`` of the store ``path`` (stored ``dtype``) read whole into this thread's buffer: per frame the
    sum and the count of finite values (float64), and each pixel set's values (frames, n) in the stored dtype."""
    from .region import Read, read_region, scratch

    ny, nx = shape
    slab = read_region(path, [Read(t0, t1, 0, ny, 0, nx)], (t1 - t0, ny, nx), (t0, 0, 0),
                       out=scratch((t1 - t0, ny, nx), dtype, slot="scan"))
    if slab.dtype.kind == "f":
        finite = np.isfinite(slab)
        sums = np.where(finite, slab, 0).sum(axis=(1, 2), dtype=np.float64)
        counts = finite.sum(axis=(1, 2)).astype(np.float64)
    else:  # integers: the exact sum (as a float64 sum of them is, below 2**53)
        sums = slab.sum(axis=(1, 2), dtype=np.uint64 if slab.dtype.kind == "u" else np.int64).astype(np.float64)
        counts = np.full(t1 - t0, float(ny * nx))
    return sums, counts, [slab[:, iy, ix] for iy, ix in pixels]


def scan_frames(intensity, pixels=(), *, progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """One pass over the series: the mean of every frame over its finite values (float64, NaN for a frame with
    none) and the time series ``(frames, n)`` of each pixel set, given as ``(rows, columns)`` index arrays, in the
    stored dtype.

    Straight from the store, one run of stored frames (at most 256) per task with the fast shard reader, when
    ``intensity`` is exactly an opened series store (memory: one slab of frames per thread plus the pixel series);
    else through dask.  Damaged bytes raise a StoreError naming the file and frames.
    """
    import dask

    from ..compute import run
    from .region import release_everywhere

    pixels = [(np.asarray(iy, dtype=np.intp), np.asarray(ix, dtype=np.intp)) for iy, ix in pixels]
    path = store_backed(intensity)
    if path is None:
        import xarray as xr

        mean_t = intensity.astype("float64").mean((S.Y, S.X)).compute().values
        series = [np.asarray(intensity.isel({S.Y: xr.DataArray(iy, dims="pixel"),
                                             S.X: xr.DataArray(ix, dims="pixel")}).transpose(S.TIME, "pixel").values)
                  for iy, ix in pixels]
        return np.asarray(mean_t, dtype=np.float64), series
    n_t, ny, nx = (int(v) for v in intensity.shape)
    edges = np.concatenate([[0], np.cumsum(intensity.data.chunks[0])]).astype(int)
    tasks = [dask.delayed(_scan_slab, pure=False)(path, int(a), int(b), (ny, nx), np.dtype(intensity.dtype), pixels)
             for a, b in zip(edges[:-1], edges[1:])]
    try:
        parts = run(tasks, progress=progress, label=f"frame means of {tuple(intensity.shape)}")
    finally:
        release_everywhere()
    sums = np.concatenate([p[0] for p in parts])
    counts = np.concatenate([p[1] for p in parts])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_t = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    series = [np.concatenate([p[2][i] for p in parts]) if parts else np.zeros((0, iy.size), intensity.dtype)
              for i, (iy, _) in enumerate(pixels)]
    return mean_t, series
