"""g2 of every pixel of a labelled series, mapped over dask pixel blocks that hold the whole time axis.

Graph shape
-----------
The series store keeps inner chunks ``(frames_per_shard, tile, tile)``.  Optional drift correction
is applied on those chunks (a small spatial halo of the maximum shift, no time halo: shifts are per
frame), then ``rechunk({time: -1})`` concatenates the time chunks of each spatial tile - no all-to-all
shuffle - and the g2 kernel turns each ``(T, by, bx)`` block into ``(by, bx, lag)``.  A series whose
chunks span whole frames would need an all-to-all rechunk; :func:`correlate` refuses it and
:func:`relayout` rewrites such a series into the store layout with bounded memory instead.
"""

from __future__ import annotations

import math
import os
import warnings
from contextlib import nullcontext
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import ParameterError
from ..kernels import g2 as K
from ..kernels.lags import default_max_lag
from ..kernels.shift import SHIFT_MODES, coverage, halo_for, shift_block, source_offsets
from ..store.series import store_backed
from .g2plan import BLOCK_BYTES, G2Plan, block_tiles, plan_g2  # noqa: F401 - block_tiles, BLOCK_BYTES re-exported

#: spatial chunks larger than this (pixels) count as "whole frame" chunking
MAX_TILE_PIXELS = 256 * 256
G2_VARS = ("g2", "g2_lag0", "mean_intensity", "status")


def _as_intensity(series):
    import xarray as xr

    if isinstance(series, xr.Dataset):
        if S.INTENSITY not in series:
            raise ValueError(f"the dataset has no {S.INTENSITY!r} variable")
        da_ = series[S.INTENSITY]
        attrs = series.attrs
    elif isinstance(series, xr.DataArray):
        da_, attrs = series, series.attrs
    else:
        raise TypeError(f"expected an xarray Dataset or DataArray, got {type(series).__name__}")
    if tuple(da_.dims) != S.SERIES_DIMS:
        raise ValueError(f"{S.INTENSITY} must have dims {S.SERIES_DIMS}, got {tuple(da_.dims)}")
    frame_time = attrs.get(S.ATTR_FRAME_TIME, da_.attrs.get(S.ATTR_FRAME_TIME))
    if frame_time is None:
        t = np.asarray(da_[S.TIME].values, dtype=float)
        frame_time = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    return da_, float(frame_time)


def needs_relayout(data) -> bool:
    """True if the dask chunks span (nearly) whole frames over several time chunks: correlating them would
    need an all-to-all rechunk (every pixel block reads every chunk)."""
    if not hasattr(data, "chunks"):
        return False
    ct, cy, cx = (max(c) for c in data.chunks)
    return len(data.chunks[0]) > 1 and cy * cx > MAX_TILE_PIXELS


def _g2_block(block, *, method, points_per_octave, max_lag, normalization, frame_mask, saturation):
    """apply_ufunc core: block (..., time) -> g2 (..., lag), lag0, mean, status."""
    # xarray hands (by, bx, T) views of time-major chunks; the kernel prefers time-major memory
    arr = np.moveaxis(block, -1, 0)
    with _one_thread():
        r = K.g2(arr, method=method, points_per_octave=points_per_octave, max_lag=max_lag,
                 normalization=normalization, frame_mask=frame_mask, saturation=saturation, axis=0)
    return r.g2, r.g2_lag0, r.mean.astype(np.float32), r.status


def _read_region(path, plan: G2Plan, y0, y1, x0, x1, dtype=None, fill=None, out=None):
    """The region of block ``[y0, y1) x [x0, x1)`` (all frames, plus the plan's halo) read from the store."""
    from ..store.region import read_region

    return read_region(path, plan.reads(y0, y1, x0, x1), plan.region_shape(y0, y1, x0, x1),
                       plan.region_origin(y0, x0), dtype=dtype, fill=fill, out=out)


def _direct_block(ys, xs, shifts, *, path, plan, stored, mode, n_out, method, **kw):
    """One g2 task of the direct path: read the region (+ halo), correlate it with the drift undone, pack.

    ``ys``, ``xs`` are the pixel indices of the block (blocks of two aranges), ``shifts`` the whole trace, ``stored``
    the stored dtype.  In
    whole-pixel mode (and without drift) the region stays in the stored dtype, in this thread's reused buffer, and
    the multi-tau kernel gathers the registered pixels while it loads them; bilinear shifts (and ``fft``) blend a
    registered float32 copy first.  Pixels that leave the field of view get NaN and ``PIXEL_OUTSIDE``.
    """
    from ..store.region import scratch

    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    has_shifts = shifts is not None and shifts.size
    shape = plan.region_shape(y0, y1, x0, x1)
    hy, hx = plan.halo
    out = np.empty((y1 - y0, x1 - x0, n_out), dtype=np.float32)
    if method == "multitau" and (mode == "integer" or not has_shifts):
        with _one_thread():
            region = _read_region(path, plan, y0, y1, x0, x1, out=scratch(shape, stored))
            offsets = np.zeros((shape[0], 2), dtype=np.int64) + (hy, hx)
            if has_shifts:
                offsets += source_offsets(shifts, "integer")[0]  # whole pixels, rounded as shift_block does
            # g2 lands in the task's output block: no float64 or separate float32 copy of the block's g2
            r = K.g2_region(region, (y1 - y0, x1 - x0), offsets, out=out[..., :-3], **kw)
        g0, mean, status = r.g2_lag0, r.mean.astype(np.float32), r.status
    else:
        region = _read_region(path, plan, y0, y1, x0, x1, dtype=np.float32, fill=np.nan)
        block = shift_block(region, shifts, plan.halo, mode) if has_shifts else region
        g, g0, mean, status = _g2_block(np.moveaxis(block, 0, -1), method=method, **kw)
        out[..., :-3] = g
    out[..., -3], out[..., -2], out[..., -1] = g0, mean, status
    if has_shifts:  # pixels whose source leaves the stored frame in some frame
        cover = coverage(plan.frame, shifts, mode)[y0:y1, x0:x1]
        out[~cover, :-1] = np.nan
        out[~cover, -1] = K.PIXEL_OUTSIDE
    return out


def _one_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return nullcontext()
    return threadpool_limits(limits=1)


def _direct(intensity, path, plan: G2Plan, shifts, mode, n_lag, kw):
    """g2, lag0, mean, status as dask arrays, one task per block of ``plan`` reading the store itself."""
    import dask.array as da

    n_t, ny, nx = intensity.shape
    by, bx = plan.block
    ys, xs = da.arange(ny, chunks=by), da.arange(nx, chunks=bx)
    if shifts is None:
        sh = da.zeros((0, 2), chunks=(0, 2))
    else:
        sh = da.from_array(np.asarray(shifts, dtype=np.float64), chunks=(n_t, 2))
    n_out = n_lag + 3
    with warnings.catch_warnings():  # the (y, x) block grid is the point, not a performance problem
        warnings.simplefilter("ignore", da.PerformanceWarning)
        packed = da.blockwise(_direct_block, "yxl", ys, "y", xs, "x", sh, "ta", new_axes={"l": n_out},
                              concatenate=True, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32), path=path,
                              plan=plan, stored=np.dtype(intensity.dtype), mode=mode, n_out=n_out, **kw)
    return (packed[..., :n_lag], packed[..., n_lag], packed[..., n_lag + 1],
            packed[..., n_lag + 2].astype(np.uint8))


def _register_chunk(block, shifts, *, halo, mode):
    return shift_block(block, shifts, halo, mode)


def _shift_array(shifts, n_t: int) -> np.ndarray:
    """Per-frame shifts (array or DataArray) as float64 (time, 2), checked against the number of frames."""
    s = np.asarray(getattr(shifts, "values", shifts), dtype=np.float64)
    if s.shape != (n_t, 2):
        raise ValueError(f"shifts must have shape (time, 2) = ({n_t}, 2), got {s.shape}")
    return s


def register(intensity, shifts, mode: str = "integer"):
    """Lazily undo drift: ``registered[t, y, x] = observed[t, y + dy(t), x + dx(t)]`` chunk by chunk.

    Parameters
    ----------
    intensity : DataArray (time, y, x), dask-backed
    shifts : (time, 2) array or DataArray of (dy, dx) in pixels (convention of :mod:`ecm_dask.kernels.shift`)
    mode : ``"integer"`` (default) or ``"bilinear"``

    Returns
    -------
    (registered DataArray float32 with NaN outside the field of view, coverage map (y, x) bool)
    """
    import dask.array as da
    import xarray as xr

    n_t, ny, nx = intensity.shape
    s = _shift_array(shifts, n_t)
    if mode not in SHIFT_MODES:
        raise ValueError(f"shift mode must be one of {SHIFT_MODES}, got {mode!r}")
    hy, hx = halo_for(s, mode)
    cover = coverage((ny, nx), s, mode)
    data = intensity.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(-1, 64, 64))
    data = data.astype(np.float32)
    if (hy, hx) != (0, 0):
        min_cy, min_cx = min(data.chunks[1]), min(data.chunks[2])
        if hy > min_cy or hx > min_cx:  # halo wider than a chunk: use wider spatial chunks
            data = data.rechunk({1: max(hy, max(data.chunks[1])), 2: max(hx, max(data.chunks[2]))})
        data = da.overlap.overlap(data, depth={0: 0, 1: hy, 2: hx}, boundary={0: "none", 1: np.nan, 2: np.nan})
    sh = da.from_array(s, chunks=(data.chunks[0], 2))
    reg = da.blockwise(_register_chunk, "tyx", data, "tyx", sh, "ta", dtype=np.float32, concatenate=True,
                       adjust_chunks={"y": lambda n: n - 2 * hy, "x": lambda n: n - 2 * hx},
                       halo=(hy, hx), mode=mode)
    out = xr.DataArray(reg, dims=intensity.dims, coords=intensity.coords, attrs=dict(intensity.attrs))
    cov = xr.DataArray(cover, dims=(S.Y, S.X), coords={S.Y: intensity[S.Y], S.X: intensity[S.X]})
    return out, cov


def _frame_mask(bad_frames, n_t: int):
    if bad_frames is None:
        return None
    b = np.asarray(getattr(bad_frames, "values", bad_frames))
    if b.dtype == bool:
        if b.shape != (n_t,):
            raise ParameterError(f"bad_frames as a boolean mask needs one entry per frame ({n_t}), got {b.shape}")
        _check_mask(~b, n_t)
        return ~b
    idx = b.astype(np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n_t):
        raise ParameterError(f"bad_frames holds frame indices outside 0..{n_t - 1}: {idx[(idx < 0) | (idx >= n_t)][:5]}")
    mask = np.ones(n_t, dtype=bool)
    mask[idx] = False
    _check_mask(mask, n_t)
    return mask


def _check_mask(mask, n_t: int) -> None:
    if mask is not None and int(mask.sum()) < 2:
        raise ParameterError(f"bad_frames leaves {int(mask.sum())} of {n_t} frames; a correlation needs at least 2")


def check_pool(pool, ny: int, nx: int) -> None:
    """Refuse, naming ``--pool`` and the frame size, a pooling ``k`` that is not a whole number >= 1 or that leaves
    less than a 2 x 2 map of the ``ny x nx`` frame (one pooled pixel has no map, no neighbours, no pixel size)."""
    whole = isinstance(pool, (int, np.integer)) or isinstance(pool, float) and pool.is_integer()
    if isinstance(pool, bool) or not whole or pool < 1:
        raise ParameterError(f"pool (--pool) must be a whole number >= 1, got {pool!r}")
    pool = int(pool)
    if pool > min(ny, nx):
        raise ParameterError(f"--pool {pool} is larger than the frame of {ny} x {nx} pixels")
    if min(ny, nx) // pool < 2:
        raise ParameterError(f"--pool {pool} leaves a {ny // pool} x {nx // pool} map of the frame of {ny} x {nx} "
                             f"pixels; at most --pool {max(1, min(ny, nx) // 2)} on this frame")


def correlate(series, *, method: str = "multitau", points_per_octave: int = 8, max_lag: float | None = None,
              normalization: str = "symmetric", bad_frames=None, shifts=None, shift_mode: str = "integer",
              saturation: float | None = None, pool: int = 1, pool_mode: str = "average",
              block_bytes: int = BLOCK_BYTES):
    """Per-pixel g2 of a series as a lazy labelled dataset.

    Parameters
    ----------
    series : Dataset with ``intensity (time, y, x)`` (e.g. :func:`ecm_dask.store.series.open_series`) or that DataArray
    method : ``"multitau"`` (default) or ``"fft"`` (see :mod:`ecm_dask.kernels.g2`)
    points_per_octave : lag points per octave
    max_lag : largest lag in seconds (default: half the series)
    normalization : ``"symmetric"`` (default) or ``"standard"``
    bad_frames : frame indices, or a boolean (time,) array True for bad frames; skipped exactly
    shifts : per-frame drift ``(time, 2)`` in pixels (dy, dx), undone inside the graph before correlating
    shift_mode : ``"integer"`` (default: whole pixels, speckle intensities untouched) or ``"bilinear"``
    saturation : counts marking a saturated pixel (default: the integer dtype's maximum)
    pool : ``k`` to pool ``k x k`` pixels (default 1: none)
    pool_mode : ``"average"`` (average the k x k g2 curves; default) or ``"sum"`` (sum intensities first)
    block_bytes : target size of one (time, y, x) block of the g2 step

    Returns
    -------
    Dataset with ``g2 (y, x, lag)``, ``g2_lag0``, ``mean_intensity``, ``status (y, x)`` and ``pairs (lag)``;
    ``lag`` in seconds (``lag_frames`` alongside); attrs record the estimator.
    """
    import xarray as xr

    intensity, frame_time = _as_intensity(series)
    n_t, ny, nx = intensity.shape
    check_pool(pool, ny, nx)
    if pool_mode not in ("average", "sum"):
        raise ParameterError(f"pool_mode must be 'average' or 'sum', got {pool_mode!r}")
    max_lag_frames = default_max_lag(n_t) if max_lag is None else int(math.floor(max_lag / frame_time + 1e-9))
    if not 1 <= max_lag_frames <= n_t - 1:
        raise ParameterError(f"max_lag = {max_lag} s is {max_lag_frames} frames; it must be between 1 and {n_t - 1} "
                         f"frames ({frame_time:g} s each)")
    mask = _frame_mask(bad_frames, n_t)
    if needs_relayout(intensity.data):
        raise ValueError("the series is chunked in whole frames; correlating it would need an all-to-all rechunk. "
                         "Rewrite it once with ecm_dask.ops.correlation.relayout(series, 'series.zarr') "
                         "(bounded memory), then correlate that")
    if saturation is None and np.issubdtype(intensity.dtype, np.integer):
        saturation = float(np.iinfo(intensity.dtype).max)
    cover = None
    data = intensity
    path = store_backed(intensity) if not (pool > 1 and pool_mode == "sum") else None
    if shifts is not None:
        if shift_mode not in SHIFT_MODES:
            raise ValueError(f"shift mode must be one of {SHIFT_MODES}, got {shift_mode!r}")
        shifts = _shift_array(shifts, n_t)
        if path is None:
            data, cover = register(intensity, shifts, shift_mode)  # the direct path's tasks mark pixels out of view
    if pool > 1 and pool_mode == "sum":
        data = data.coarsen({S.Y: pool, S.X: pool}, boundary="trim").reduce(np.sum)  # NaN stays NaN
        if saturation is not None:
            saturation = saturation * pool * pool  # a pooled pixel saturates only if its sum says so
    # grid (pixel independent): lags and pairs from a one-pixel run of the same estimator
    probe = K.g2(np.ones((n_t, 1)), method=method, points_per_octave=points_per_octave, max_lag=max_lag_frames,
                 normalization=normalization, frame_mask=mask, axis=0)
    lag_frames, pairs = probe.lag, probe.pairs
    # blocks: whole store tiles over all frames
    darr = data.data
    tile = (max(darr.chunks[1]), max(darr.chunks[2]))
    kw = dict(method=method, points_per_octave=points_per_octave, max_lag=max_lag_frames,
              normalization=normalization, frame_mask=mask, saturation=saturation)
    if path is not None:  # one task per block reads its region from the store: no per-chunk tasks or transfers
        plan = plan_g2(n_t, (ny, nx), tile, np.dtype(intensity.dtype).itemsize, shard_frames=max(darr.chunks[0]),
                       block_bytes=block_bytes, shifts=shifts, mode=shift_mode, method=method)
        arrays = _direct(intensity, path, plan, shifts, shift_mode, lag_frames.size, kw)
        dims = [(S.Y, S.X, S.LAG), (S.Y, S.X), (S.Y, S.X), (S.Y, S.X)]
        coords = {S.Y: intensity[S.Y], S.X: intensity[S.X]}
        g, g0, mean, status = (xr.DataArray(a, dims=d, coords=coords) for a, d in zip(arrays, dims))
    else:
        itemsize = 4 if shifts is not None else np.dtype(data.dtype).itemsize  # registered blocks are float32
        by, bx = block_tiles(n_t, itemsize, tile, data.shape[1:], block_bytes)
        data = data.chunk({S.TIME: -1, S.Y: by, S.X: bx})
        g, g0, mean, status = xr.apply_ufunc(
            _g2_block, data, input_core_dims=[[S.TIME]], output_core_dims=[[S.LAG], [], [], []],
            dask="parallelized", output_dtypes=[np.float32, np.float32, np.float32, np.uint8],
            dask_gufunc_kwargs={"output_sizes": {S.LAG: lag_frames.size}}, kwargs=kw)
    if cover is not None:
        if pool > 1 and pool_mode == "sum":
            cover = cover.coarsen({S.Y: pool, S.X: pool}, boundary="trim").min()
        status = xr.where(cover, status, np.uint8(K.PIXEL_OUTSIDE)).astype(np.uint8)
    ds = xr.Dataset({"g2": g, "g2_lag0": g0, "mean_intensity": mean, "status": status})
    ds = ds.drop_vars(S.TIME, errors="ignore")
    if pool > 1 and pool_mode == "average":
        # average the g2 curves of the k x k neighbourhood; a cell is ok only if all its pixels are
        ok = ds["status"] == K.PIXEL_OK
        worst = ds["status"].coarsen({S.Y: pool, S.X: pool}, boundary="trim").max()
        ds = ds[["g2", "g2_lag0", "mean_intensity"]].where(ok).coarsen({S.Y: pool, S.X: pool},
                                                                        boundary="trim").mean()
        ds = ds.where(worst == K.PIXEL_OK)
        ds["status"] = worst.astype(np.uint8)
    return label_g2(ds, lag_frames, pairs, frame_time, {
        "read_path": "direct from store" if path is not None else "dask chunks",
        "estimator": method, "normalization": normalization, "points_per_octave": int(points_per_octave),
        "max_lag_frames": int(max_lag_frames), "frame_time_s": frame_time, "n_frames": int(n_t),
        "n_bad_frames": int(0 if mask is None else (~mask).sum()), "pool": int(pool), "pool_mode": pool_mode,
        "shift_mode": shift_mode if shifts is not None else "none",
        "saturation": float("nan") if saturation is None else float(saturation),
        S.ATTR_TEMPERATURE: getattr(series, "attrs", {}).get(S.ATTR_TEMPERATURE, intensity.attrs.get(S.ATTR_TEMPERATURE)),
    })


def label_g2(ds, lag_frames, pairs, frame_time: float, attrs: dict):
    """The g2 dataset's coordinates, attributes and descriptions: ``ds`` holds ``g2 (y, x, lag)``, ``g2_lag0``,
    ``mean_intensity`` and ``status (y, x)``; one description for every producer of a ``g2.zarr`` (the g2 stage
    and the live correlator), so the fit and the results read them alike."""
    import xarray as xr

    ds = ds.assign_coords({S.LAG: (S.LAG, lag_frames * frame_time, S.coord_attrs(S.LAG, "lag time")),
                           "lag_frames": (S.LAG, lag_frames, {"long_name": "lag in frames"})})
    ds["pairs"] = xr.DataArray(pairs, dims=(S.LAG,), attrs={
        "long_name": "frame pairs per lag point",
        "description": "sum of w(t) w(t+k) over the lags of a bin (fft) or over the averaged frames of the "
                       "channel's level (multitau); w = 1 for used frames"})
    ds["g2"].attrs.update({"long_name": "intensity autocorrelation g2", "units": "1"})
    ds["g2_lag0"].attrs.update({"long_name": "g2 at lag 0 (includes shot noise; never fitted)", "units": "1"})
    ds["mean_intensity"].attrs.update({"long_name": "mean intensity over used frames", "units": "counts"})
    ds["status"].attrs.update({"long_name": "pixel status", "flag_values": list(K.PIXEL_STATUS),
                               "flag_meanings": " ".join(v.replace(" ", "_").replace("(", "").replace(")", "")
                                                         for v in K.PIXEL_STATUS.values())})
    ds.attrs.update(attrs)
    return ds


def g2(series, **kwargs):
    """Per-pixel g2 as a DataArray ``(y, x, lag)`` with ``lag`` in seconds; see :func:`correlate` for options."""
    ds = correlate(series, **kwargs)
    out = ds["g2"].assign_coords(pairs=ds["pairs"])
    out.attrs.update(ds.attrs)
    return out


def relayout(series, path: str | os.PathLike, *, overwrite: bool = False, progress: bool = True, **layout: Any):
    """Rewrite a series chunked in whole frames into the store layout at ``path`` (bounded memory) and open it.

    Reads the series in time slabs of one shard each and writes whole shards, exactly as ingest does.
    """
    from ..readers.memory import DaskArraySource
    from ..store.series import open_series
    from ..store.writer import provenance, write_series

    intensity, frame_time = _as_intensity(series)
    attrs = dict(series.attrs) if hasattr(series, "attrs") else {}
    px = attrs.get(S.ATTR_PIXEL_SIZE)
    if px is None:
        x = np.asarray(intensity[S.X].values, dtype=float)
        px = float(x[1] - x[0]) if x.size > 1 else 1.0
    src = DaskArraySource(intensity.data, frame_time, px, f"<relayout of {intensity.name or 'series'}>")
    meta = S.series_attrs({S.ATTR_FRAME_TIME: frame_time, S.ATTR_PIXEL_SIZE: px,
                           S.ATTR_TEMPERATURE: attrs.get(S.ATTR_TEMPERATURE),
                           S.ATTR_MATERIAL: attrs.get(S.ATTR_MATERIAL), S.ATTR_INSTRUMENT: attrs.get(S.ATTR_INSTRUMENT),
                           S.ATTR_SOURCE: attrs.get(S.ATTR_SOURCE, "relayout")})
    meta[S.ATTR_PROVENANCE] = provenance({"relayout_of": attrs.get(S.ATTR_PROVENANCE)})
    write_series(src, path, meta, overwrite=overwrite, progress=progress, **layout)
    return open_series(path)
