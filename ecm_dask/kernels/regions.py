"""Averages of g2 over regions of pixels, and spatial pooling (pure NumPy: no dask, no xarray).

Two ways of combining pixels
----------------------------
* **average the curves** (:func:`roi_average`, :func:`pool_average_g2`): correlate every pixel on its
  own, then average the per-pixel g2 curves.  The contrast (g2 - 1) of each pixel is kept, and the
  spread over pixels gives a standard error.
* **pool the intensities** (:func:`pool_sum`): sum the counts of ``k x k`` neighbourhoods *before*
  correlating.  This raises the counts per (super-)pixel, which helps the estimator at very low dose,
  but averages ``k**2`` independent speckles and so lowers the contrast by up to a factor ``k**2``.

All averages are NaN-aware: a pixel whose g2 is not finite at a lag (a dead, dark or saturated pixel,
see :mod:`ecm_dask.kernels.g2`) is left out at that lag, and the number of pixels used is reported.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pool_average_g2", "pool_sum", "roi_average"]


def _mean_sem(vals: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NaN-aware mean, standard error (std ddof=1 / sqrt(n)) and count of finite values along ``axis``."""
    vals = np.asarray(vals, dtype=np.float64)
    ok = np.isfinite(vals)
    n = ok.sum(axis=axis)
    v = np.where(ok, vals, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = v.sum(axis=axis) / n
        dev = np.where(ok, vals - np.expand_dims(mean, axis), 0.0)
        var = (dev * dev).sum(axis=axis) / (n - 1)
        sem = np.sqrt(var / n)
    mean = np.where(n > 0, mean, np.nan)
    sem = np.where(n > 1, sem, np.nan)
    return mean, sem, n


def roi_average(g2, mask=None, *, axis_pixels=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average per-pixel g2 curves over the pixels of a region of interest.

    Parameters
    ----------
    g2 : array_like, shape ``(..., n_lags)``
        Per-pixel g2 curves, lag along the last axis (e.g. ``G2Result.g2``).  Non-finite values (NaN
        for pixels that are not ok) are left out lag by lag.
    mask : array_like of bool, optional
        True for the pixels of the region.  Shape: the pixel axes of ``g2`` (``g2.shape[:-1]`` by
        default, or the axes named by ``axis_pixels``, in that order).  Default: every pixel.
    axis_pixels : int or tuple of int, optional
        The axes of ``g2`` that index pixels (default: every axis but the last).  Axes of ``g2`` that
        are neither pixel axes nor the last (lag) axis are kept in the result, e.g.
        ``roi_average(g2_windows, mask, axis_pixels=(1, 2))`` for ``g2_windows (n_windows, ny, nx,
        n_lags)`` gives ``(n_windows, n_lags)`` arrays.

    Returns
    -------
    mean : ndarray float64, shape ``(n_lags,)`` (or ``kept axes + (n_lags,)``)
        Mean over the selected pixels with a finite g2 at each lag; NaN where no pixel is finite.
    sem : ndarray float64, same shape
        Standard error of the mean across pixels, ``std(ddof=1) / sqrt(n)``; NaN where ``n < 2``.
    n : ndarray int64, same shape
        Number of pixels used at each lag.

    Raises
    ------
    ValueError
        If ``g2`` has no lag axis, ``axis_pixels`` or ``mask`` do not fit ``g2``, or ``mask`` selects
        no pixel.
    """
    arr = np.asarray(g2)
    if arr.ndim < 1:
        raise ValueError("g2 must have a lag axis (its last axis)")
    nd = arr.ndim
    if axis_pixels is None:
        pix_axes = tuple(range(nd - 1))
    else:
        try:
            raw = (int(axis_pixels),) if np.ndim(axis_pixels) == 0 else tuple(int(a) for a in axis_pixels)
        except TypeError as exc:
            raise ValueError(f"axis_pixels must be an int or a tuple of ints, got {axis_pixels!r}") from exc
        pix_axes = []
        for a in raw:
            if not -nd <= a < nd:
                raise ValueError(f"axis_pixels: axis {a} is out of range for g2 with {nd} dimensions")
            a %= nd
            if a == nd - 1:
                raise ValueError("axis_pixels must not include the last axis of g2 (the lag axis)")
            if a in pix_axes:
                raise ValueError(f"axis_pixels names axis {a} twice")
            pix_axes.append(a)
        pix_axes = tuple(pix_axes)
    kept = tuple(a for a in range(nd - 1) if a not in pix_axes)
    pix_shape = tuple(arr.shape[a] for a in pix_axes)
    # (pixels, kept..., n_lags)
    moved = np.moveaxis(arr, pix_axes, tuple(range(len(pix_axes)))) if pix_axes else arr[None]
    flat = moved.reshape((-1,) + tuple(arr.shape[a] for a in kept) + (arr.shape[-1],))
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool:
            raise ValueError(f"mask must be boolean (True = pixel in the region), got dtype {m.dtype}")
        if m.shape != pix_shape:
            raise ValueError(f"mask must have the shape of the pixel axes of g2 {pix_shape}, got {m.shape}")
        flat = flat[m.reshape(-1)]
    if flat.shape[0] == 0:
        raise ValueError("mask selects no pixel: the region of interest is empty")
    return _mean_sem(flat, axis=0)


def _widened_dtype(dtype: np.dtype, n_terms: int) -> np.dtype:
    """A dtype that holds the sum of ``n_terms`` values of ``dtype`` without overflow."""
    if dtype == np.bool_:
        dtype = np.dtype(np.uint8)
    if np.issubdtype(dtype, np.unsignedinteger):
        top = int(np.iinfo(dtype).max) * n_terms
        return np.dtype(np.uint32) if top <= np.iinfo(np.uint32).max else np.dtype(np.uint64)
    if np.issubdtype(dtype, np.signedinteger):
        info = np.iinfo(dtype)
        fits = max(-int(info.min), int(info.max)) * n_terms <= np.iinfo(np.int32).max
        return np.dtype(np.int32) if fits else np.dtype(np.int64)
    if np.issubdtype(dtype, np.floating):
        return np.dtype(np.float64) if dtype.itemsize >= 8 else np.dtype(np.float32)
    raise ValueError(f"block must hold integer or real counts, got dtype {dtype}")


def _check_k(k) -> int:
    if isinstance(k, bool) or not float(k).is_integer() or int(k) < 1:
        raise ValueError(f"k must be a positive integer (pixels per side of a cell), got {k!r}")
    return int(k)


def pool_sum(block, k: int, axis_time: int = 0) -> np.ndarray:
    """Sum intensities over non-overlapping ``k x k`` pixel neighbourhoods (before correlating).

    Parameters
    ----------
    block : array_like, 3-D
        Image series, e.g. ``(T, ny, nx)``; the two axes other than ``axis_time`` are (y, x).
    k : int
        Side of the square cells.  Trailing rows/columns that do not fill a cell are dropped.
    axis_time : int, default 0
        The time axis of ``block``; it keeps its position in the result.

    Returns
    -------
    ndarray
        ``(T, ny // k, nx // k)`` (time axis where it was) of the cell sums, with a dtype that cannot
        overflow: unsigned integers -> uint32 (uint64 if ``max * k**2`` exceeds uint32), signed
        integers -> int32/int64, bool -> uint32, float16/float32 -> float32, float64 -> float64.
        Note that :func:`ecm_dask.kernels.g2.g2` derives its default saturation level from an integer
        dtype: detect saturated pixels before pooling.

    Raises
    ------
    ValueError
        If ``block`` is not 3-D, ``k`` is not a positive integer, or ``k`` exceeds the image size.
    """
    arr = np.asarray(block)
    if arr.ndim != 3:
        raise ValueError(f"block must be 3-D (time and two pixel axes), got shape {arr.shape}")
    k = _check_k(k)
    if not -3 <= int(axis_time) < 3:
        raise ValueError(f"axis_time must be in -3..2 for a 3-D block, got {axis_time}")
    axis_time = int(axis_time) % 3
    x = np.moveaxis(arr, axis_time, 0)
    n_t, ny, nx = x.shape
    if k > ny or k > nx:
        raise ValueError(f"k={k} is larger than the image ({ny} x {nx} pixels)")
    cy, cx = ny // k, nx // k
    dtype = _widened_dtype(arr.dtype, k * k)
    cells = x[:, :cy * k, :cx * k].reshape(n_t, cy, k, cx, k)
    out = cells.sum(axis=(2, 4), dtype=dtype)
    return np.moveaxis(out, 0, axis_time)


def pool_average_g2(g2, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Average per-pixel g2 curves over non-overlapping ``k x k`` neighbourhoods (NaN-aware).

    Parameters
    ----------
    g2 : array_like, shape ``(..., ny, nx, n_lags)``
        Per-pixel g2 curves; non-finite values are left out lag by lag.
    k : int
        Side of the square cells.  Trailing rows/columns that do not fill a cell are dropped.

    Returns
    -------
    mean : ndarray float64, shape ``(..., ny // k, nx // k, n_lags)``
        Mean over the finite values of each cell (NaN if none).
    sem : ndarray float64, same shape
        Standard error across the pixels of the cell, ``std(ddof=1) / sqrt(n)`` (NaN if ``n < 2``).

    Raises
    ------
    ValueError
        If ``g2`` has fewer than 3 dimensions or ``k`` is not a positive integer no larger than the image.
    """
    arr = np.asarray(g2)
    if arr.ndim < 3:
        raise ValueError(f"g2 must be (..., ny, nx, n_lags), got shape {arr.shape}")
    k = _check_k(k)
    *lead, ny, nx, n_lags = arr.shape
    if k > ny or k > nx:
        raise ValueError(f"k={k} is larger than the image ({ny} x {nx} pixels)")
    cy, cx = ny // k, nx // k
    cells = arr[..., :cy * k, :cx * k, :].reshape(*lead, cy, k, cx, k, n_lags)
    # gather each cell's k*k pixels on one axis
    cells = np.moveaxis(cells, -4, -3).reshape(*lead, cy, cx, k * k, n_lags)
    mean, sem, _ = _mean_sem(cells, axis=-2)
    return mean, sem
