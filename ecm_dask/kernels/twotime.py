"""Two-time correlation of a region of interest, tile by tile in bounded memory (pure NumPy).

For an ROI of ``P`` pixels with intensities ``I_p(t)``::

    C(t1, t2) = <I(t1) I(t2)>_pixels / (<I(t1)>_pixels <I(t2)>_pixels)

the standard two-time correlation of XPCS.  For a stationary process the mean of ``C`` along the
diagonal at offset ``k`` (``t2 = t1 + k``) is the one-time g2 at lag ``k``; aging or a change of
dynamics shows as a change along the diagonal.  The main diagonal carries shot noise.

The ``T x T`` matrix is computed in ``tile x tile`` blocks, each from two ``(tile, P)`` float64 slabs of
the (binned) series with one matrix product, and written into ``out`` (a NumPy array, a memmap, a zarr
array...), so the working memory is ``O(tile**2 + tile * P)`` whatever ``T`` (see
:func:`two_time_memory`).  Only blocks with ``t1 <= t2`` are computed; the others are their mirror.
"""

from __future__ import annotations

import numpy as np

__all__ = ["two_time", "two_time_memory"]


def two_time_memory(T: int, P: int, tile: int) -> int:
    """Bytes of working memory :func:`two_time` needs besides its output.

    Parameters
    ----------
    T : int
        Frames of the (binned) series: the output is ``(T, T)``.
    P : int
        Pixels of the region.
    tile : int
        Tile size passed to :func:`two_time` (clipped to ``T``).

    Returns
    -------
    int
        An upper estimate in bytes: one float64 and one float32 ``tile x tile`` product, two float64 ``(tile, P)`` slabs
        plus two slab-sized temporaries while they are loaded, and per-frame vectors.
    """
    T, P, tile = int(T), int(P), int(tile)
    if T < 1 or P < 1 or tile < 1:
        raise ValueError(f"T, P and tile must be positive, got T={T}, P={P}, tile={tile}")
    t = min(tile, T)
    return 12 * t * t + 4 * 8 * t * P + 6 * 8 * t + 16 * T + P + (1 << 20)


def _as_time_pixels(block) -> np.ndarray:
    arr = np.asarray(block)
    if arr.ndim == 3:
        arr = arr.reshape(arr.shape[0], -1)  # a view for C-ordered blocks (and memmaps)
    if arr.ndim != 2:
        raise ValueError(f"block must be (T, P) or (T, ny, nx), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == np.bool_):
        raise ValueError(f"block must hold integer or real intensities, got dtype {arr.dtype}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"block must have at least one frame and one pixel, got shape {arr.shape}")
    return arr


def _finite_pixels(x: np.ndarray, w: np.ndarray, chunk: int) -> np.ndarray | None:
    """Pixels finite in every valid frame (None if all are); scanned ``chunk`` frames at a time."""
    if not np.issubdtype(x.dtype, np.floating):
        return None
    good = np.ones(x.shape[1], dtype=bool)
    for a in range(0, x.shape[0], chunk):
        b = min(a + chunk, x.shape[0])
        valid = w[a:b] > 0
        if valid.any():
            good &= np.isfinite(x[a:b][valid]).all(axis=0)
    return None if good.all() else good


class _Slabs:
    """Loads the binned, weighted float64 slab of frames ``[a, b)`` of the binned series."""

    def __init__(self, x, w, bin_frames, good):
        self.x, self.w, self.b, self.good = x, w, bin_frames, good
        # valid raw frames per binned frame
        n = x.shape[0] // bin_frames
        self.count = w[:n * bin_frames].reshape(n, bin_frames).sum(axis=1)
        self.n_pix = x.shape[1] if good is None else int(good.sum())

    def load(self, a: int, b: int, dest: np.ndarray) -> np.ndarray:
        s = dest[:b - a]
        s[:] = 0.0
        bf = self.b
        raw = self.x[a * bf:b * bf]
        for j in range(bf):
            frames = raw[j::bf]
            if self.good is not None:
                frames = frames[:, self.good]
            wj = self.w[a * bf + j:b * bf:bf]
            if wj.all():
                s += frames
            else:
                s[wj > 0] += frames[wj > 0]
        if bf > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                s /= self.count[a:b, None]
        return s


def two_time(block, *, frame_mask=None, tile: int = 1024, out=None, bin_frames: int = 1) -> np.ndarray:
    """Two-time correlation ``C(t1, t2)`` of a region of interest, in bounded memory.

    Parameters
    ----------
    block : array_like, ``(T, P)`` or ``(T, ny, nx)``
        Intensities of the ROI pixels, time first (a NumPy array or memmap; ``(T, ny, nx)`` is
        flattened to ``(T, ny * nx)``).  Pixels with a non-finite value in a valid frame are left out.
    frame_mask : array_like of bool, shape ``(T,)``, optional
        True for frames to use.  A masked frame gives a NaN row and column.
    tile : int, default 1024
        Side of the blocks of the ``T' x T'`` matrix computed at once; working memory is
        :func:`two_time_memory` ``(T', P, tile)``.  For a chunked ``out`` (zarr) use a multiple of its chunks.
    out : array-like, shape ``(T', T')``, optional
        Destination supporting ``out[a:b, c:d] = values`` (NumPy array, ``np.lib.format.open_memmap``,
        zarr array...).  Default: a new float32 array.
    bin_frames : int, default 1
        Average this many consecutive frames first: ``T' = T // bin_frames`` (trailing frames that do
        not fill a bin are dropped).  A binned frame is the mean of the valid frames of its bin and is
        masked only if none is valid.

    Returns
    -------
    ndarray or the given ``out``
        ``(T', T')`` with ``C[t1, t2] = <I(t1) I(t2)>_p / (<I(t1)>_p <I(t2)>_p)``; NaN rows/columns for
        masked frames and for frames whose ROI mean intensity is not positive.

    Raises
    ------
    ValueError
        For a block that is not 2-D/3-D, a non-positive ``tile`` or ``bin_frames``, a ``frame_mask``
        of the wrong length or non-boolean values, an ``out`` of the wrong shape, or no usable pixel.
    """
    x = _as_time_pixels(block)
    n_raw, n_pix_all = x.shape
    if isinstance(tile, bool) or int(tile) != tile or int(tile) < 1:
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    if isinstance(bin_frames, bool) or int(bin_frames) != bin_frames or int(bin_frames) < 1:
        raise ValueError(f"bin_frames must be a positive integer, got {bin_frames!r}")
    tile, bin_frames = int(tile), int(bin_frames)
    n_t = n_raw // bin_frames
    if n_t < 1:
        raise ValueError(f"bin_frames={bin_frames} is larger than the series ({n_raw} frames)")
    if frame_mask is None:
        w = np.ones(n_raw, dtype=bool)
    else:
        m = np.asarray(frame_mask)
        if m.shape != (n_raw,):
            raise ValueError(f"frame_mask must have one entry per frame ({n_raw}), got shape {m.shape}")
        if m.dtype != bool and not np.isin(m, (0, 1)).all():
            raise ValueError("frame_mask must be boolean (True = frame is used)")
        w = m.astype(bool)
    if out is None:
        out = np.empty((n_t, n_t), dtype=np.float32)
    elif tuple(getattr(out, "shape", ())) != (n_t, n_t):
        raise ValueError(f"out must have shape ({n_t}, {n_t}), got {getattr(out, 'shape', None)}")
    tile = min(tile, n_t)

    good = _finite_pixels(x, w, tile)
    slabs = _Slabs(x, w, bin_frames, good)
    n_pix = slabs.n_pix
    if n_pix == 0:
        raise ValueError(f"no usable pixel: all {n_pix_all} pixels are non-finite in some valid frame")
    valid = slabs.count > 0  # binned frames with at least one valid frame

    buf_a = np.empty((tile, n_pix))
    buf_b = np.empty((tile, n_pix))
    prod = np.empty((tile, tile))
    try:
        out_dtype = np.dtype(getattr(out, "dtype", np.float32))
    except TypeError:
        out_dtype = np.dtype(np.float32)
    if not np.issubdtype(out_dtype, np.floating):
        out_dtype = np.dtype(np.float32)
    # values are cast once per tile to the dtype of ``out`` (no cast buffer for float64)
    cast = None if out_dtype == np.float64 else np.empty((tile, tile), dtype=out_dtype)
    scale = 1.0 / np.sqrt(n_pix)

    def normalised(a, b, dest):
        """Slab of binned frames [a, b) divided by sqrt(P) <I(t)>_p; rows of unusable frames zeroed."""
        sl = slabs.load(a, b, dest)
        mean = sl.mean(axis=1)
        bad = ~(valid[a:b] & (mean > 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            sl *= (scale / mean)[:, None]
        sl[bad] = 0.0
        return sl, bad

    for a0 in range(0, n_t, tile):
        a1 = min(a0 + tile, n_t)
        sa, bad_a = normalised(a0, a1, buf_a)
        for b0 in range(a0, n_t, tile):
            b1 = min(b0 + tile, n_t)
            sb, bad_b = (sa, bad_a) if b0 == a0 else normalised(b0, b1, buf_b)
            c = prod[:a1 - a0, :b1 - b0]
            np.matmul(sa, sb.T, out=c)  # sum_p I_p(t1) I_p(t2) / (P <I(t1)>_p <I(t2)>_p)
            if bad_a.any():
                c[bad_a, :] = np.nan
            if bad_b.any():
                c[:, bad_b] = np.nan
            if cast is not None:
                vals = cast[:a1 - a0, :b1 - b0]
                np.copyto(vals, c, casting="unsafe")
            else:
                vals = c
            out[a0:a1, b0:b1] = vals
            if b0 != a0:
                out[b0:b1, a0:a1] = vals.T
    return out
