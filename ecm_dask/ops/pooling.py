"""Edge-aware adaptive pooling of g2 curves on the full grid, mapped over dask (y, x) blocks with a halo
(labelled layer of :mod:`ecm_dask.kernels.pooling`), and the adaptive fit built on it."""

from __future__ import annotations

import numpy as np

from .. import schema as S
from ..kernels import pooling as K

#: passes of pooling; each tests τ compatibility on the previous pass's (less noisy) pooled curves
PASSES = 3
#: default pooling of `ecm-dask run` (benchmarks/study_resolution.py, docs/resolution.md)
DEFAULT_RADIUS = 3
DEFAULT_TOL = 0.3


def _pool_block(g2, log_tau, labels, *, radius, tol):
    pooled, n = K.adaptive_pool(g2, log_tau[..., 0], labels[..., 0], radius=radius, tol=tol)
    keep = n == 0  # excluded pixels keep their own curve (their fit stays in /fit; their status says why)
    pooled[keep] = g2[keep]
    return np.concatenate([pooled, n[..., None].astype(np.float64)], axis=-1)


def _curves(g2):
    """The g2 curves as a float64 dask array (y, x, lag), lag in one chunk."""
    import dask.array as da

    curves = g2[S.G2].transpose(S.Y, S.X, S.LAG)
    data = curves.data if curves.chunks is not None else da.from_array(curves.values, chunks=(128, 128, -1))
    return curves, data.rechunk({2: -1}).astype(np.float64)


def _pool_dask(data, log_tau, labels, radius: int, tol: float):
    """(y, x, lag + 1) dask array: pooled curves and, last, the number of curves averaged.  ``log_tau`` and
    ``labels`` are (y, x, 1) dask arrays chunked like ``data`` along y and x."""
    import dask.array as da

    r = int(radius)
    # a halo of at most the map's size less one pixel already holds every neighbour (dask refuses a deeper one:
    # a map smaller than the radius, e.g. after --pool)
    depth = {0: min(r, max(data.shape[0] - 1, 0)), 1: min(r, max(data.shape[1] - 1, 0)), 2: 0}
    g_o = da.overlap.overlap(data, depth=depth, boundary="none")
    lt_o = da.overlap.overlap(log_tau, depth=depth, boundary="none")
    lab_o = da.overlap.overlap(labels, depth=depth, boundary="none")
    out = da.map_blocks(_pool_block, g_o, lt_o, lab_o, radius=r, tol=float(tol), dtype=np.float64,
                        chunks=(g_o.chunks[0], g_o.chunks[1], (data.shape[2] + 1,)))
    return da.overlap.trim_internal(out, depth, boundary="none")


def _as_block_map(values, data, dtype):
    """A (y, x) numpy map as a (y, x, 1) dask array chunked like ``data``."""
    import dask.array as da

    return da.asarray(np.asarray(values, dtype=dtype)[..., None]).rechunk((data.chunks[0], data.chunks[1], (1,)))


def _pooled_dataset(g2, curves, out, radius, tol):
    import xarray as xr

    pooled = xr.DataArray(out[..., :-1].astype(np.float32), dims=curves.dims, coords=curves.coords,
                          attrs=curves.attrs)
    n = xr.DataArray(out[..., -1].astype(np.int16), dims=(S.Y, S.X), coords={d: curves[d] for d in (S.Y, S.X)},
                     attrs={S.ATTR_LONG_NAME: "g2 curves averaged into the pixel's fitted curve (same region, "
                                              f"compatible tau, within {int(radius)} px; 0 = not pooled)"})
    res = g2.copy()
    res[S.G2] = pooled
    res[S.N_POOLED] = n
    res.attrs.update({"adaptive_pool_radius_px": int(radius), "adaptive_pool_tol_decades": float(tol)})
    return res


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
    curves, data = _curves(g2)
    lt = _as_block_map(log_tau.transpose(S.Y, S.X).values, data, np.float64)
    lab = _as_block_map(labels.transpose(S.Y, S.X).values, data, np.int64)
    return _pooled_dataset(g2, curves, _pool_dask(data, lt, lab, radius, tol), radius, tol)


def _crossing_block(curves, *, lag):
    """log10 of the model-free 1/e^2 crossing of every curve of a block: (y, x, lag) -> (y, x, 1)."""
    from ..kernels.kww import tau_crossing

    ny, nx, nl = curves.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        t = tau_crossing(curves.reshape(-1, nl), lag) if ny * nx else np.zeros(0)
        return np.log10(t).reshape(ny, nx, 1)


def adaptive_fit(g2, labels, *, radius: int = DEFAULT_RADIUS, tol: float = DEFAULT_TOL, passes: int = PASSES,
                 **fit_options):
    """KWW maps of every pixel from adaptively pooled g2 (one fit, at the end).

    Pass k pools the *original* curves, admitting a neighbour when its τ is compatible according to the
    model-free 1/e² crossing of the curves of pass k-1 (pass 1: of the pixel's own curves).  Each pass makes
    the compatibility test less noisy; the study (``docs/resolution.md``) found this as accurate as refitting
    between passes, at the cost of one fit instead of ``passes + 1``.

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
    it was fitted to (``g2`` unchanged when not pooled).  Lazy: nothing is computed here.
    """
    import dask.array as da
    import xarray as xr

    from .fit import fit_kww

    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 0:
        raise ValueError(f"passes must be a whole number >= 0, got {passes!r}")
    if radius == 0 or passes == 0:
        maps = fit_kww(g2, **fit_options)
        maps[S.N_POOLED] = xr.ones_like(maps[S.TAU], dtype=np.int16)  # every pixel its own curve
        return maps, g2
    curves, data = _curves(g2)
    lab = _as_block_map(labels.transpose(S.Y, S.X).values, data, np.int64)
    lag = np.asarray(g2[S.LAG].values, dtype=np.float64)
    current = data
    for _ in range(passes):
        lt = da.map_blocks(_crossing_block, current, lag=lag, dtype=np.float64,
                           chunks=(data.chunks[0], data.chunks[1], (1,)))
        out = _pool_dask(data, lt, lab, radius, tol)
        current = out[..., :-1]
    pooled = _pooled_dataset(g2, curves, out, radius, tol)
    maps = fit_kww(pooled, **fit_options)
    maps[S.N_POOLED] = pooled[S.N_POOLED]
    maps.attrs.update({"adaptive_pool_radius_px": int(radius), "adaptive_pool_tol_decades": float(tol),
                       "adaptive_pool_passes": int(passes),
                       "adaptive_pool_tau_estimate": "model-free 1/e^2 crossing of the previous pass's curves"})
    return maps, pooled
