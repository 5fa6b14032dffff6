"""Edge-aware adaptive pooling of g2 curves on the full grid, mapped over dask (y, x) blocks with a halo
(labelled layer of :mod:`ecm_dask.kernels.pooling`), and the adaptive fit built on it."""

from __future__ import annotations

import numpy as np

from .. import schema as S
from ..kernels import pooling as K

#: passes of pool -> fit (the second pools with the first pooled fit's τ, which is far less noisy)
PASSES = 2
#: default pooling of `ecm-dask run` (benchmarks/study_resolution.py, docs/resolution.md)
DEFAULT_RADIUS = 3
DEFAULT_TOL = 0.4


def _pool_block(g2, log_tau, labels, *, radius, tol):
    pooled, n = K.adaptive_pool(g2, log_tau[..., 0], labels[..., 0], radius=radius, tol=tol)
    keep = n == 0  # excluded pixels keep their own curve (their fit stays in /fit; their status says why)
    pooled[keep] = g2[keep]
    return np.concatenate([pooled, n[..., None].astype(np.float64)], axis=-1)


def pool_g2(g2, log_tau, labels, *, radius: int = DEFAULT_RADIUS, tol: float = DEFAULT_TOL):
    """Average every pixel's g2 with its same-label, τ-compatible neighbours (:func:`kernels.pooling.adaptive_pool`).

    Parameters
    ----------
    g2 : xarray.Dataset
        The g2 stage's Dataset (``g2 (y, x, lag)``, ``pairs``, ...), dask-backed or not.
    log_tau : xarray.DataArray (y, x)
        log10 of a τ estimate per pixel (NaN = unknown).
    labels : xarray.DataArray (y, x) of int
        Region label per pixel; negative = excluded (never pooled into others; keeps its own curve).
    radius, tol
        Disc radius (pixels) and largest |log10 τ| difference of a pooled neighbour.

    Returns
    -------
    The Dataset with ``g2`` replaced by the pooled curves and ``n_pooled (y, x)`` (curves averaged; 0 for
    excluded pixels).  Each dask block reads its neighbours' curves within ``radius`` (a halo), nothing more.
    """
    import dask.array as da
    import xarray as xr

    curves = g2[S.G2].transpose(S.Y, S.X, S.LAG)
    data = curves.data if curves.chunks is not None else da.from_array(curves.values, chunks=(128, 128, -1))
    data = data.rechunk({2: -1})
    ychunks, xchunks = data.chunks[0], data.chunks[1]
    lt = da.asarray(np.asarray(log_tau.transpose(S.Y, S.X).values, dtype=np.float64)).rechunk((ychunks, xchunks))
    lab = da.asarray(np.asarray(labels.transpose(S.Y, S.X).values, dtype=np.int64)).rechunk((ychunks, xchunks))
    r = int(radius)
    g_o = da.overlap.overlap(data.astype(np.float64), depth={0: r, 1: r, 2: 0}, boundary="none")
    # (y, x, 1): blocks line up with the g2 blocks along all three axes
    lt_o = da.overlap.overlap(lt[..., None], depth={0: r, 1: r, 2: 0}, boundary="none")
    lab_o = da.overlap.overlap(lab[..., None], depth={0: r, 1: r, 2: 0}, boundary="none")
    out = da.map_blocks(_pool_block, g_o, lt_o, lab_o, radius=r, tol=float(tol), dtype=np.float64,
                        chunks=(g_o.chunks[0], g_o.chunks[1], (data.shape[2] + 1,)))
    out = da.overlap.trim_internal(out, {0: r, 1: r, 2: 0}, boundary="none")
    pooled = xr.DataArray(out[..., :-1].astype(np.float32), dims=curves.dims, coords=curves.coords,
                          attrs=curves.attrs)
    n = xr.DataArray(out[..., -1].astype(np.int16), dims=(S.Y, S.X),
                     coords={d: curves[d] for d in (S.Y, S.X)},
                     attrs={S.ATTR_LONG_NAME: "g2 curves averaged into the pixel's fitted curve (same region, "
                                              f"compatible tau, within {r} px; 0 = not pooled)"})
    res = g2.copy()
    res[S.G2] = pooled
    res[S.N_POOLED] = n
    res.attrs.update({"adaptive_pool_radius_px": r, "adaptive_pool_tol_decades": float(tol)})
    return res


def adaptive_fit(g2, labels, *, radius: int = DEFAULT_RADIUS, tol: float = DEFAULT_TOL, passes: int = PASSES,
                 **fit_options):
    """KWW maps of every pixel from adaptively pooled g2: fit -> pool with its τ -> fit (``passes`` times).

    Parameters
    ----------
    g2 : xarray.Dataset
        The g2 stage's Dataset.
    labels : xarray.DataArray (y, x)
        Region labels (negative = excluded from pooling, e.g. vacuum, artefacts, crystal, bad pixels).
    radius, tol, passes
        Pooling (``radius = 0`` or ``passes = 0``: the plain per-pixel fit).
    **fit_options
        Passed to :func:`ecm_dask.ops.fit.fit_kww` (one-term model).

    Returns
    -------
    (maps, pooled_g2): the fit Dataset of :func:`~ecm_dask.ops.fit.fit_kww` plus ``n_pooled``, and the g2 Dataset
    it was fitted to (``g2`` unchanged when not pooled).
    """
    from .fit import fit_kww

    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 0:
        raise ValueError(f"passes must be a whole number >= 0, got {passes!r}")
    maps = fit_kww(g2, **fit_options)
    if radius == 0 or passes == 0:
        maps[S.N_POOLED] = (maps[S.TAU] * 0 + 1).fillna(1).astype(np.int16)
        return maps, g2
    pooled = g2
    for _ in range(passes):
        tau = maps[S.TAU].where(maps[S.STATUS] == 0).compute()
        log_tau = np.log10(tau.where(tau > 0))
        pooled = pool_g2(g2, log_tau, labels, radius=radius, tol=tol)
        maps = fit_kww(pooled, **fit_options)
    maps[S.N_POOLED] = pooled[S.N_POOLED]
    maps.attrs.update({"adaptive_pool_radius_px": int(radius), "adaptive_pool_tol_decades": float(tol),
                       "adaptive_pool_passes": int(passes)})
    return maps, pooled
