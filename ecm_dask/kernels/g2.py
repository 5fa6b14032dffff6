"""Intensity autocorrelation g2 of many pixels at once (pure NumPy/SciPy/Numba: no dask, no xarray).

Estimators
----------
For a pixel with intensities ``I(t)``, ``t = 0 .. T-1``, and lag ``k``:

* **symmetric** (default)::

      g2(k) = [1/(T-k) sum_t I(t) I(t+k)] / (<I>_{0..T-k-1} * <I>_{k..T-1})

  the normalisation of the XPCS multi-tau correlators (Schätzel's symmetric normalisation, used by
  the APS 8-ID ``boost_corr`` and by scikit-beam's ``multi_tau_auto_corr``); it cancels slow drifts of
  the mean intensity to first order.
* **standard**: divide by ``<I>^2`` over all frames, as in the ECM papers' per-pixel code and in
  ``numpy``-based textbook estimators.

Bad frames (beam blanking, glitches) enter as weights ``w(t)`` in {0, 1}: the sums run over pairs of
valid frames only, and the means over valid frames only, so a masked frame is skipped exactly.

Algorithms (one API, :func:`g2`)
--------------------------------
* ``"multitau"`` (default): the multi-tau correlator: ``m`` channels per octave, frames averaged in
  pairs at each level (weights too, so masks carry through).  Constant memory in ``T`` per channel,
  compiled with numba.  At level ``l`` the estimator above is applied to the averaged series.
* ``"fft"``: all linear lags ``1 .. max_lag`` exactly (float64 real FFTs with zero padding), then the
  pair-weighted average of g2 over log-spaced bins.

Lag 0 (``g2_lag0``) is returned separately: it carries shot noise and is never fitted.

Pixel status
------------
``PIXEL_OK``; ``PIXEL_NONFINITE`` (NaN/inf in a valid frame: dead pixel; also a pixel whose g2 is not
representable, e.g. float64 counts beyond ~1e150 whose products overflow); ``PIXEL_SATURATED`` (a valid
frame at or above ``saturation``); ``PIXEL_DARK`` (mean intensity <= 0 over the valid frames, or, with the
symmetric normalisation, a mean <= 0 over one of the two windows of a lag point that has frame pairs: g2
is undefined there, e.g. a pixel that stays at 0 except in its last frames).  g2 is NaN for every pixel
that is not ``PIXEL_OK``, and for every pixel at lag points without a valid frame pair (``pairs == 0``,
possible with a ``frame_mask``); it is finite everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lags import LagBins, MultiTauLags, log_lag_bins, multitau_lags

PIXEL_OK = 0
PIXEL_NONFINITE = 1
PIXEL_SATURATED = 2
PIXEL_DARK = 3
PIXEL_OUTSIDE = 4  # not inside the field of view for the whole series (set by the drift-aware callers)
PIXEL_STATUS = {PIXEL_OK: "ok", PIXEL_NONFINITE: "non-finite value (dead pixel)",
                PIXEL_SATURATED: "saturated", PIXEL_DARK: "no intensity",
                PIXEL_OUTSIDE: "not in the field of view for the whole series"}

METHODS = ("multitau", "fft")
NORMALIZATIONS = ("symmetric", "standard")

#: pixels processed together (bounds the float64 working copies: T x CHUNK x 8 bytes)
PIXEL_CHUNK = 64


@dataclass
class G2Result:
    """g2 of a block of pixels.

    Attributes
    ----------
    g2 : (..., n_lags) float32, NaN for pixels that are not ok
    g2_lag0 : (...,) float32, <I^2>/<I>^2 (shot noise included)
    lag : (n_lags,) float64, lag in frames (multi-tau channel lag, or mean lag of a bin)
    pairs : (n_lags,) float64, frame pairs behind each point: sum of w(t) w(t+k) over the lags of a bin
        (fft), or over the averaged frames of the channel's level (multitau)
    mean : (...,) float64, mean intensity over valid frames
    status : (...,) uint8, PIXEL_* codes
    """

    g2: np.ndarray
    g2_lag0: np.ndarray
    lag: np.ndarray
    pairs: np.ndarray
    mean: np.ndarray
    status: np.ndarray


def _validate(method, normalization, frame_mask, n_frames):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if frame_mask is None:
        return np.ones(n_frames, dtype=np.float64)
    mask = np.asarray(frame_mask)
    if mask.shape != (n_frames,):
        raise ValueError(f"frame_mask must have one entry per frame ({n_frames}), got shape {mask.shape}")
    w = mask.astype(np.float64)
    if not np.isin(w, (0.0, 1.0)).all():
        raise ValueError("frame_mask must be boolean (True = frame is used)")
    if w.sum() < 2:
        raise ValueError(f"frame_mask leaves {int(w.sum())} valid frame(s); a correlation needs at least 2")
    return w


def pixel_status(x: np.ndarray, w: np.ndarray, saturation: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Status codes and mean intensity over valid frames for ``x (P, T)``."""
    valid = w > 0
    xv = x if valid.all() else x[:, valid]
    with np.errstate(invalid="ignore", over="ignore"):
        mean = xv.mean(axis=1, dtype=np.float64)  # NaN where a valid frame is NaN
        finite = np.isfinite(mean)
        if np.issubdtype(xv.dtype, np.floating):
            finite &= np.isfinite(xv).all(axis=1)
    status = np.zeros(x.shape[0], dtype=np.uint8)
    if saturation is not None:
        sat = (xv >= saturation).any(axis=1)
        status[sat] = PIXEL_SATURATED
    status[~(mean > 0)] = PIXEL_DARK
    status[~finite] = PIXEL_NONFINITE
    return status, mean


def _lag0(xw: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """<I^2>/<I>^2 over valid frames from weighted float64 intensities ``xw`` (zero on masked frames)."""
    n = w.sum()
    m1 = xw.sum(axis=axis) / n
    m2 = np.einsum("ij,ij->j" if axis == 0 else "ij,ij->i", xw, xw) / n
    return m2 / (m1 * m1)


# -------------------------------------------------------------------------------------- multi-tau
def _level_weights(w: np.ndarray, lags: MultiTauLags):
    """Pixel-independent denominators per channel: pairs, valid-frame counts of the two mean ranges."""
    n_ch = lags.lag.size
    pairs = np.empty(n_ch)
    w_first = np.empty(n_ch)  # sum of w_l(t) for t < T_l - k
    w_last = np.empty(n_ch)  # sum of w_l(t) for t >= k
    w_tot = []
    wl = w.copy()
    for level in range(lags.n_levels):
        if level:
            half = wl.size // 2
            wl = 0.5 * (wl[0:2 * half:2] + wl[1:2 * half:2])
        w_tot.append(wl.sum())
        for c in np.flatnonzero(lags.level == level):
            k = int(lags.k[c])
            # not np.dot: for long series OpenBLAS runs a dot product on its other threads, which then spin (~0.1
            # CPU-s per g2 call at T = 16384, uncounted work for the caller's core budget); the sum is exact either
            # way (weights are dyadic fractions)
            pairs[c] = np.multiply(wl[:-k], wl[k:]).sum()
            w_first[c] = wl[:-k].sum()
            w_last[c] = wl[k:].sum()
    return pairs, w_first, w_last, np.asarray(w_tot)


def finish_multitau(num, head, tail, total, maxval, lags: MultiTauLags, weights, normalization: str,
                    saturation: float | None, out, out0, status, mean) -> None:
    """g2 (float32), lag 0, status and mean of pixels from their multi-tau sums (the estimator of the module
    docstring), written into ``out`` (P, n_ch), ``out0``, ``status`` and ``mean`` (P,): NaN where a pixel is not ok,
    and a pixel whose values float32 cannot hold (overflow of the float64 sums or of the output, absurd counts) is
    flagged PIXEL_NONFINITE.

    ``num``, ``head``, ``tail`` (P, n_levels, 2m): per level, the lagged products, the sums of the first ``k`` and
    of the last ``k`` (averaged) frames at lag index ``k`` (``num[:, 0, 0]`` the sum of squares); ``total``
    (P, n_levels) the sums per level; ``maxval`` (P,) the largest raw value; ``weights`` from
    :func:`_level_weights`.  Shared by the block correlator and the streaming one
    (:mod:`ecm_dask.kernels.streaming`), so both give the same numbers from the same sums.  A compiled loop
    (:func:`ecm_dask.kernels._multitau.finish`) that releases the GIL: the g2 stage's threads never wait for each
    other here.
    """
    from ._multitau import finish

    pairs, w_first, w_last, w_tot = weights
    finish(num, head, tail, total, maxval, lags.level, lags.k, pairs, w_first, w_last, float(w_tot[0]),
           normalization == "symmetric", np.nan if saturation is None else float(saturation),
           (PIXEL_NONFINITE, PIXEL_SATURATED, PIXEL_DARK), out, out0, status, mean)


def _multitau_block(x: np.ndarray, oy: np.ndarray, ox: np.ndarray, grid: tuple[int, int], w: np.ndarray,
                    lags: MultiTauLags, normalization: str, saturation: float | None, out: np.ndarray | None = None):
    """Multi-tau g2 of the ``grid = (ny, nx)`` pixels gathered from ``x (T, ry, rx)`` at per-frame offsets ``oy, ox``
    (see :func:`ecm_dask.kernels._multitau.load_chunk`; bounds checked by the caller).

    Returns g2 (P, n_ch) and g2 at lag 0 (P,) as float32 (finished by :func:`finish_multitau` pixel chunk by
    pixel chunk: no float64 copy of the whole block), pairs (n_ch,), status (P,), mean (P,) with P = ny * nx.  ``out``:
    a (P, n_ch) float32 array (a view with any strides) to write g2 into instead of a new one.
    """
    from ._multitau import driver_for, load_chunk, load_plain

    n_t = x.shape[0]
    n_p = grid[0] * grid[1]
    n_ch = lags.lag.size
    if out is None:
        out = np.empty((n_p, n_ch), np.float32)
    elif out.shape != (n_p, n_ch) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(n_p, n_ch)}, got {out.dtype} {out.shape}")
    if n_p == 0:
        return out, np.empty(0, np.float32), _level_weights(w, lags)[0], np.empty(0, np.uint8), np.empty(0)
    m, n_levels = lags.m, max(lags.n_levels, 1)
    driver = driver_for(m)
    weights = _level_weights(w, lags)
    pairs = weights[0]
    lag0 = np.empty(n_p, np.float32)
    status = np.zeros(n_p, dtype=np.uint8)
    mean = np.empty(n_p)
    chunk = min(PIXEL_CHUNK, n_p)
    # no offsets and the grid is the whole (contiguous) region: a plain (T, P) block, loaded without gathering
    plain = None
    if (x.shape[1:] == tuple(grid) and x.flags.c_contiguous and not oy.any() and not ox.any()):
        plain = x.reshape(n_t, n_p)
    buf = np.empty((chunk, n_t))
    num = np.empty((chunk, n_levels, 2 * m))
    head, tail = np.empty_like(num), np.empty_like(num)
    total = np.empty((chunk, n_levels))
    maxval = np.empty(chunk)
    for p0 in range(0, n_p, chunk):
        p1 = min(n_p, p0 + chunk)
        n = p1 - p0
        if plain is not None:
            load_plain(plain, p0, p1, w, buf)
        else:
            load_chunk(x, oy, ox, grid[1], p0, p1, w, buf)
        num[:] = 0.0
        driver(buf[:n], n_t, m, n_levels, num[:n], head[:n], tail[:n], total[:n], maxval[:n])
        finish_multitau(num[:n], head[:n], tail[:n], total[:n], maxval[:n], lags, weights, normalization, saturation,
                        out[p0:p1], lag0[p0:p1], status[p0:p1], mean[p0:p1])
    return out, lag0, pairs, status, mean


# -------------------------------------------------------------------------------------------- fft
def _fft_block(x: np.ndarray, w: np.ndarray, bins: LagBins, normalization: str):
    """Binned g2 (P, n_bins) from exact linear lags, lag 0 (P,), pairs per bin, mean lag per bin, and (P,)
    True where a window mean of the symmetric normalisation is <= 0 at a lag with pairs."""
    import scipy.fft as sfft  # only this estimator needs it (0.25 s of imports)

    n_p, n_t = x.shape
    max_lag = bins.max_lag
    nfft = sfft.next_fast_len(n_t + max_lag, real=True)
    # pixel-independent: pairs per lag and valid-frame counts of the mean ranges
    wf = sfft.rfft(w, nfft)
    pairs_k = np.rint(sfft.irfft(wf * np.conj(wf), nfft)[1:max_lag + 1])
    cw = np.concatenate([[0.0], np.cumsum(w)])
    lags = np.arange(1, max_lag + 1)
    w_first = cw[n_t - lags]  # valid frames with t < T - k
    w_last = cw[n_t] - cw[lags]  # valid frames with t >= k
    which = bins.bin_of_lag()
    pairs_bin = np.bincount(which, weights=pairs_k, minlength=bins.lag.size)
    out = np.empty((n_p, bins.lag.size))
    lag0 = np.empty(n_p)
    empty = np.zeros(n_p, dtype=bool)
    valid = w > 0
    chunk = max(1, min(PIXEL_CHUNK, (64 << 20) // (nfft * 16)))
    for p0 in range(0, n_p, chunk):
        p1 = min(n_p, p0 + chunk)
        xw = np.where(valid, x[p0:p1], 0.0).astype(np.float64, copy=False)  # select, not multiply: NaN*0 is NaN
        lag0[p0:p1] = _lag0(xw, w, axis=1)
        f = sfft.rfft(xw, nfft, axis=-1)
        f *= np.conj(f)
        num = sfft.irfft(f, nfft, axis=-1)[:, 1:max_lag + 1]
        cx = np.concatenate([np.zeros((p1 - p0, 1)), np.cumsum(xw, axis=-1)], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = num / pairs_k
            if normalization == "symmetric":
                first = cx[:, n_t - lags] / w_first
                last = (cx[:, n_t:n_t + 1] - cx[:, lags]) / w_last
                den = first * last
                empty[p0:p1] = ((~(first > 0) | ~(last > 0)) & (pairs_k > 0)).any(axis=-1)
            else:
                m0 = cx[:, n_t] / cw[n_t]
                den = (m0 * m0)[:, None]
            g = corr / den
        # pair-weighted average over each bin (lags with no valid pair carry no weight)
        gw = np.where(pairs_k > 0, g * pairs_k, 0.0)
        out[p0:p1] = np.add.reduceat(gw, bins.edges[:-1] - 1, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out /= pairs_bin
    lag = np.bincount(which, weights=pairs_k * lags, minlength=bins.lag.size) / pairs_bin
    return out, lag0, pairs_bin, np.where(pairs_bin > 0, lag, bins.lag), empty


# ---------------------------------------------------------------------------------------- the API
def g2(block, *, method: str = "multitau", points_per_octave: int = 8, max_lag: int | None = None,
       normalization: str = "symmetric", frame_mask=None, saturation: float | None = None,
       axis: int = -1) -> G2Result:
    """Log-binned intensity autocorrelation of every pixel of ``block``.

    Parameters
    ----------
    block : array (..., time, ...) of counts (any integer or float dtype)
    method : ``"multitau"`` (default, fast, constant memory in T) or ``"fft"`` (exact linear lags, then binned)
    points_per_octave : lag points per octave (multi-tau ``m``; bins per octave for fft)
    max_lag : largest lag in frames (default: half the series)
    normalization : ``"symmetric"`` (default) or ``"standard"`` (see the module docstring)
    frame_mask : (T,) bool, True for frames to use; masked frames are skipped exactly
    saturation : counts at or above this mark a pixel saturated (default: the integer dtype's maximum)
    axis : the time axis of ``block``

    Returns
    -------
    G2Result, with pixel arrays shaped like ``block`` without its time axis.
    """
    arr = np.asarray(block)
    if arr.ndim < 1:
        raise ValueError("block must have a time axis")
    axis = axis % arr.ndim
    n_t = arr.shape[axis]
    pix_shape = arr.shape[:axis] + arr.shape[axis + 1:]
    w = _validate(method, normalization, frame_mask, n_t)
    if saturation is None and np.issubdtype(arr.dtype, np.integer):
        saturation = float(np.iinfo(arr.dtype).max)
    if method == "multitau":
        grid = multitau_lags(n_t, points_per_octave, max_lag)
        lag = grid.lag.astype(np.float64)
        xt = np.moveaxis(arr, axis, 0).reshape(n_t, -1)  # a view for C-ordered time-major blocks
        if not xt.flags.c_contiguous:
            xt = np.ascontiguousarray(xt)
        zero = np.zeros(n_t, dtype=np.int64)
        vals, vals0, pairs, status, mean = _multitau_block(xt[:, None, :], zero, zero, (1, xt.shape[1]), w, grid,
                                                           normalization, saturation)
        return _pack(vals, vals0, lag, pairs, mean, status, pix_shape)
    else:
        grid = log_lag_bins(n_t, points_per_octave, max_lag)
        x = np.moveaxis(arr, axis, -1).reshape(-1, n_t)
        status, mean = pixel_status(x, w, saturation)
        ok = status == PIXEL_OK
        xo = x if ok.all() else (x[ok] if ok.any() else np.ones((1, n_t)))
        with np.errstate(over="ignore", invalid="ignore"):  # absurd float64 counts: flagged below
            vals, vals0, pairs, lag, empty = _fft_block(xo, w, grid, normalization)
        if empty.any():
            status[np.flatnonzero(ok)[empty] if not ok.all() else empty] = PIXEL_DARK
        if not ok.all():  # scatter back to all pixels
            full = np.full((x.shape[0], vals.shape[1]), np.nan)
            full0 = np.full(x.shape[0], np.nan)
            if ok.any():
                full[ok], full0[ok] = vals, vals0
            vals, vals0 = full, full0
    return _result(vals, vals0, lag, pairs, mean, status, pix_shape)


def _finalise(vals, vals0, status, has_pairs, out, out0) -> None:
    """Write float32 g2 and lag 0 of pixels into ``out`` (P, n_ch) and ``out0`` (P,): NaN where the pixel is not ok;
    values float32 cannot hold (overflow of the float64 sums or of the output, absurd counts) flag the pixel
    PIXEL_NONFINITE in ``status`` (in place).  ``has_pairs`` (n_ch,) bool: the lag points a pixel is judged by.
    The rule of :func:`ecm_dask.kernels._multitau._put_pixel`, which the multi-tau finisher applies too."""
    from ._multitau import finalise

    finalise(np.ascontiguousarray(vals, dtype=np.float64), np.ascontiguousarray(vals0, dtype=np.float64), status,
             np.ascontiguousarray(has_pairs, dtype=np.bool_), PIXEL_NONFINITE, out, out0)


def _pack(out, out0, lag, pairs, mean, status, pix_shape) -> G2Result:
    return G2Result(g2=out.reshape(*pix_shape, lag.size), g2_lag0=out0.reshape(pix_shape), lag=np.asarray(lag),
                    pairs=np.asarray(pairs, dtype=np.float64), mean=mean.reshape(pix_shape),
                    status=status.reshape(pix_shape))


def _result(vals, vals0, lag, pairs, mean, status, pix_shape) -> G2Result:
    """float32 g2 and lag 0, NaN where the pixel is not ok; unrepresentable values flagged non-finite."""
    out, out0 = np.empty(vals.shape, np.float32), np.empty(vals0.shape, np.float32)
    _finalise(vals, vals0, status, np.asarray(pairs) > 0, out, out0)
    return _pack(out, out0, lag, pairs, mean, status, pix_shape)


def g2_region(region, shape: tuple[int, int], offsets=None, *, points_per_octave: int = 8,
              max_lag: int | None = None, normalization: str = "symmetric", frame_mask=None,
              saturation: float | None = None, out: np.ndarray | None = None) -> G2Result:
    """Multi-tau g2 of a ``shape = (ny, nx)`` pixel grid read from a region of frames through per-frame offsets.

    Pixel ``(y, x)`` of frame ``t`` is ``region[t, offsets[t, 0] + y, offsets[t, 1] + x]``: with the offsets of a
    block's halo plus each frame's whole-pixel drift, this is the g2 of the registered block, computed without
    making a registered copy (the kernel gathers the pixels while it loads them).  The same numbers as
    :func:`g2` of the registered block (method ``"multitau"``).

    Parameters
    ----------
    region : (T, ry, rx) array of counts (any integer or float dtype)
    shape : (ny, nx) of the output grid
    offsets : (T, 2) integers, each frame's (row, column) of the grid's pixel (0, 0) in the region (default 0)
    points_per_octave, max_lag, normalization, frame_mask, saturation : as :func:`g2`
    out : ``(ny, nx, n_lags)`` float32 array (any strides, e.g. part of a task's output block) the g2 is written
        into; the result's ``g2`` is then a view of it

    Returns
    -------
    G2Result with pixel arrays of ``shape``.
    """
    region = np.asarray(region)
    if region.ndim != 3:
        raise ValueError(f"region must be (time, y, x), got shape {region.shape}")
    n_t, ry, rx = region.shape
    ny, nx = (int(v) for v in shape)
    if offsets is None:
        offsets = np.zeros((n_t, 2), dtype=np.int64)
    off = np.asarray(offsets)
    if off.shape != (n_t, 2) or not np.issubdtype(off.dtype, np.integer):
        raise ValueError(f"offsets must be integers of shape ({n_t}, 2), got {off.dtype} {off.shape}")
    oy, ox = np.ascontiguousarray(off[:, 0], dtype=np.int64), np.ascontiguousarray(off[:, 1], dtype=np.int64)
    if n_t and (ny < 0 or nx < 0 or oy.min() < 0 or ox.min() < 0 or oy.max() + ny > ry or ox.max() + nx > rx):
        raise ValueError(f"a {ny} x {nx} grid at offsets y {oy.min()}..{oy.max()}, x {ox.min()}..{ox.max()} does not "
                         f"fit the {ry} x {rx} region")
    if region.strides[-1] != region.itemsize:
        region = np.ascontiguousarray(region)
    w = _validate("multitau", normalization, frame_mask, n_t)
    if saturation is None and np.issubdtype(region.dtype, np.integer):
        saturation = float(np.iinfo(region.dtype).max)
    grid = multitau_lags(n_t, points_per_octave, max_lag)
    flat = None
    if out is not None:
        if out.shape != (ny, nx, grid.lag.size) or out.dtype != np.float32:
            raise ValueError(f"out must be float32 of shape {(ny, nx, grid.lag.size)}, got {out.dtype} {out.shape}")
        flat = out.reshape(ny * nx, grid.lag.size)
        if flat.size and not np.shares_memory(flat, out):
            raise ValueError("out must be viewable as (pixels, lags) without a copy")
    vals, vals0, pairs, status, mean = _multitau_block(region, oy, ox, (ny, nx), w, grid, normalization, saturation,
                                                       out=flat)
    return _pack(vals, vals0, grid.lag.astype(np.float64), pairs, mean, status, (ny, nx))
