"""Edge-aware adaptive pooling of g2 curves on the full pixel grid (pure NumPy/Numba).

A per-pixel g2 from one speckle realisation is noisy, and a 4-parameter fit of a noisy curve is biased (low τ,
high β; ``docs/bias.md``).  The noise is the finite number of independent speckle realisations, so averaging
the g2 *curves* of neighbouring pixels that share the same dynamics reduces it, where summing intensities would
not.  Every output pixel keeps its own grid position (no coarser grid):

    pooled(p) = mean of g2(q) over the neighbours q of p within ``radius`` (a disc) that have the same region label
                and a compatible τ: |log10 τ(q) - log10 τ(p)| <= tol

so a pixel next to a domain of different τ, another region or an artefact does not borrow its curve, and a
step in τ stays a step.  Pixels with a negative label (vacuum, artefacts, bad input) are neither pooled nor
pooled into others: their output is NaN and ``n_used`` 0.  A pixel whose own τ estimate is NaN (its first fit
failed) takes as reference the median log τ of its same-label neighbours.  ``docs/resolution.md`` has the study
that chose the radius, tolerance and number of passes.
"""

from __future__ import annotations

import numba
import numpy as np

#: defaults chosen by benchmarks/study_resolution.py (docs/resolution.md)
RADIUS = 2
TOL = 0.3


@numba.njit(cache=True, nogil=True, inline="always")
def _inside(y, x, dy, dx, ny, nx, r2):  # pragma: no cover - compiled
    """Neighbour (y + dy, x + dx) lies in the disc and in the image."""
    yy, xx = y + dy, x + dx
    return dy * dy + dx * dx <= r2 and 0 <= yy < ny and 0 <= xx < nx


@numba.njit(cache=True, nogil=True)
def _pool(g2, log_tau, labels, radius, tol, out, n_used):  # pragma: no cover - compiled
    ny, nx, nl = g2.shape
    r2 = radius * radius + 0.5
    ref_buf = np.empty((2 * radius + 1) ** 2)
    usable = np.empty((ny, nx), dtype=np.bool_)  # every point of the curve finite (tested once per pixel)
    for y in range(ny):
        for x in range(nx):
            ok = True
            for k in range(nl):
                if not np.isfinite(g2[y, x, k]):
                    ok = False
                    break
            usable[y, x] = ok
    acc = np.empty(nl)
    for y in range(ny):
        for x in range(nx):
            lab = labels[y, x]
            if lab < 0 or not usable[y, x]:
                continue
            ref = log_tau[y, x]
            if not np.isfinite(ref):  # median of the same-label neighbours' estimates
                m = 0
                for dy in range(-radius, radius + 1):
                    for dx in range(-radius, radius + 1):
                        yy, xx = y + dy, x + dx
                        if _inside(y, x, dy, dx, ny, nx, r2) and labels[yy, xx] == lab and np.isfinite(
                                log_tau[yy, xx]):
                            ref_buf[m] = log_tau[yy, xx]
                            m += 1
                if m > 0:
                    ref = np.median(ref_buf[:m])
            acc[:] = 0.0
            n = 0
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    yy, xx = y + dy, x + dx
                    if not _inside(y, x, dy, dx, ny, nx, r2):
                        continue
                    if not (dy == 0 and dx == 0):
                        if labels[yy, xx] != lab or not usable[yy, xx]:
                            continue
                        lt = log_tau[yy, xx]
                        if not (np.isfinite(ref) and np.isfinite(lt) and abs(lt - ref) <= tol):
                            continue
                    q = g2[yy, xx]
                    for k in range(nl):
                        acc[k] += q[k]
                    n += 1
            o = out[y, x]
            for k in range(nl):
                o[k] = acc[k] / n
            n_used[y, x] = n


def adaptive_pool(g2, log_tau, labels, *, radius: int = RADIUS, tol: float = TOL) -> tuple[np.ndarray, np.ndarray]:
    """Average every pixel's g2 with its same-label, τ-compatible neighbours (see the module docstring).

    Parameters
    ----------
    g2 : array (ny, nx, nlag)
        g2 curves (lag 0 excluded); a pixel with any non-finite point is neither pooled nor used.
    log_tau : array (ny, nx)
        log10 of a τ estimate per pixel (any unit; only differences matter); NaN = unknown.
    labels : int array (ny, nx)
        Region label; negative = excluded.
    radius : int
        Neighbours within this distance (pixels, a disc) may be averaged; 0 returns the curves unchanged.
    tol : float
        Largest |log10 τ difference| of a neighbour to the pixel's own estimate.

    Returns
    -------
    (pooled float64 (ny, nx, nlag), n_used int32 (ny, nx)): NaN / 0 for excluded pixels.
    """
    g = np.ascontiguousarray(g2, dtype=np.float64)
    if g.ndim != 3:
        raise ValueError(f"g2 must be (ny, nx, nlag), got shape {g.shape}")
    lt = np.ascontiguousarray(log_tau, dtype=np.float64)
    lab = np.ascontiguousarray(labels, dtype=np.int64)
    if lt.shape != g.shape[:2] or lab.shape != g.shape[:2]:
        raise ValueError(f"log_tau {lt.shape} and labels {lab.shape} must have the pixel shape of g2 {g.shape[:2]}")
    if isinstance(radius, bool) or int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be a whole number of pixels >= 0, got {radius!r}")
    if not (tol >= 0):
        raise ValueError(f"tol must be >= 0 (decades of tau), got {tol!r}")
    out = np.empty(g.shape)  # pixels never visited (n_used 0) become NaN below
    n_used = np.zeros(g.shape[:2], dtype=np.int32)
    _pool(g, lt, lab, int(radius), float(tol), out, n_used)
    out[n_used == 0] = np.nan
    return out, n_used
