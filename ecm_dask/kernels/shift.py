"""Undo per-frame drift on a block of frames that carries a halo (pure NumPy).

Convention (the same as :func:`ecm_dask.synth.drift_trace`): frame ``t`` shows the sample displaced by
``+shift(t) = (dy, dx)``, i.e. ``observed[t, y, x] = sample[y - dy, x - dx]``.  Registration onto the
reference grid therefore reads ``registered[t, y, x] = observed[t, y + dy, x + dx]``.

Modes
-----
``"integer"`` (default): shifts rounded to whole pixels; speckle intensities are moved, never blended.
``"bilinear"``: the four neighbours of the sub-pixel source point, weighted; smooths speckle slightly.
"""

from __future__ import annotations

import math

import numpy as np

SHIFT_MODES = ("integer", "bilinear")


def _check(shifts: np.ndarray, mode: str) -> np.ndarray:
    if mode not in SHIFT_MODES:
        raise ValueError(f"shift mode must be one of {SHIFT_MODES}, got {mode!r}")
    s = np.asarray(shifts, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2:
        raise ValueError(f"shifts must have shape (n_frames, 2) = (dy, dx) per frame, got {s.shape}")
    if not np.isfinite(s).all():
        bad = int(np.flatnonzero(~np.isfinite(s).all(axis=1))[0])
        raise ValueError(f"shifts of frame {bad} are not finite: {s[bad].tolist()}")
    return s


def _integer(s: np.ndarray) -> np.ndarray:
    return np.floor(s + 0.5).astype(np.int64)  # round half up, the same for positive and negative halves


def source_offsets(shifts, mode: str = "integer") -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the smallest and largest offset ``(t, 2)`` (pixels, y and x) of the source pixels that
    :func:`shift_block` reads for an output pixel: the rows/columns a block of frames really needs."""
    s = _check(shifts, mode)
    if mode == "integer":
        d = _integer(s)
        return d, d
    f = np.floor(s).astype(np.int64)
    return f, f + (s - f > 0)


def halo_for(shifts, mode: str = "integer") -> tuple[int, int]:
    """Halo ``(hy, hx)`` in pixels a block needs so every frame's source window is inside it."""
    s = _check(shifts, mode)
    if mode == "integer":
        m = np.abs(_integer(s)).max(axis=0) if s.size else np.zeros(2, int)
        return int(m[0]), int(m[1])
    m = np.abs(s).max(axis=0) if s.size else np.zeros(2)
    return int(math.floor(m[0])) + 1, int(math.floor(m[1])) + 1


def coverage(frame_shape: tuple[int, int], shifts, mode: str = "integer") -> np.ndarray:
    """Boolean map: True where the registered pixel's source lies inside the frame in every frame."""
    s = _check(shifts, mode)
    ny, nx = frame_shape
    if mode == "integer":
        lo = -_integer(s).min(axis=0)
        hi = np.array([ny - 1, nx - 1]) - _integer(s).max(axis=0)
    else:
        f = np.floor(s)
        frac = s - f
        lo = -f.min(axis=0)
        # the upper neighbour is needed only where its weight is non-zero
        up = np.where(frac > 0, f + 1, f)
        hi = np.array([ny - 1, nx - 1]) - up.max(axis=0)
    yy = (np.arange(ny) >= lo[0]) & (np.arange(ny) <= hi[0])
    xx = (np.arange(nx) >= lo[1]) & (np.arange(nx) <= hi[1])
    return yy[:, None] & xx[None, :]


def shift_block(block: np.ndarray, shifts, halo: tuple[int, int], mode: str = "integer") -> np.ndarray:
    """Register a block of frames that carries a halo.

    Parameters
    ----------
    block : (t, ny + 2 hy, nx + 2 hx) frames with the halo (NaN where outside the detector)
    shifts : (t, 2) per-frame ``(dy, dx)`` of these frames, in pixels
    halo : (hy, hx), at least :func:`halo_for` of these shifts
    mode : ``"integer"`` or ``"bilinear"``

    Returns
    -------
    (t, ny, nx) float32 registered frames on the reference grid.
    """
    s = _check(shifts, mode)
    hy, hx = halo
    n_t, by, bx = block.shape
    if s.shape[0] != n_t:
        raise ValueError(f"{s.shape[0]} shifts for a block of {n_t} frames")
    ny, nx = by - 2 * hy, bx - 2 * hx
    if ny < 1 or nx < 1:
        raise ValueError(f"block {block.shape[1:]} is smaller than twice the halo {halo}")
    need = halo_for(s, mode) if s.size else (0, 0)
    if need[0] > hy or need[1] > hx:
        raise ValueError(f"shifts up to {need} pixels need a halo of at least that, got {halo}")
    out = np.empty((n_t, ny, nx), dtype=np.float32)
    if mode == "integer":
        d = _integer(s)
        for t in range(n_t):
            y0, x0 = hy + d[t, 0], hx + d[t, 1]
            out[t] = block[t, y0:y0 + ny, x0:x0 + nx]
        return out
    f = np.floor(s).astype(np.int64)
    a = s - f
    for t in range(n_t):
        y0, x0 = hy + f[t, 0], hx + f[t, 1]
        ay, ax = a[t]
        acc = (1 - ay) * (1 - ax) * block[t, y0:y0 + ny, x0:x0 + nx].astype(np.float64)
        if ax > 0:
            acc += (1 - ay) * ax * block[t, y0:y0 + ny, x0 + 1:x0 + 1 + nx]
        if ay > 0:
            acc += ay * (1 - ax) * block[t, y0 + 1:y0 + 1 + ny, x0:x0 + nx]
            if ax > 0:
                acc += ay * ax * block[t, y0 + 1:y0 + 1 + ny, x0 + 1:x0 + 1 + nx]
        out[t] = acc
    return out
