"""STEM (diffraction) mode: g2 of every camera pixel, averaged over rings of constant q, and KWW fits per ring.

A coherent probe held at one position records diffraction patterns ``I(t, ky, kx)``.  :func:`diffraction_g2`
correlates every camera pixel with the image-mode machinery (:func:`ecm_dask.ops.correlate` on the camera
axes renamed to ``(y, x)``: the same estimators, bad frames, pixel status and dask pixel blocks that hold the
whole time axis), then averages the per-pixel g2 over rings of ``q = |k|`` (beam centre and calibration in
nm^-1 per pixel; masked pixels - beam stop, bad pixels - and pixels whose g2 is NaN are left out) with
partial sums per pixel block (:func:`ecm_dask.kernels.rings.ring_sums`), so the per-pixel g2 is never
gathered in one place.  The ring g2 is the plain mean of its pixels' g2; its error the standard error of that
mean from the pixel scatter.  The same sums per angular sector (angle modulo pi, so a Friedel pair shares a
sector) give :func:`fit_rings` jackknife errors that account for the correlation between lag points.

:func:`stem_scan_g2` does the same for a scan ``(time, y, x, ky, kx)``: one dask task per block of probe
positions, correlating and ring-averaging one probe position after the other.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import schema as S
from ..errors import InputError
from ..kernels import g2 as K
from ..kernels import kww as KW
from ..kernels.lags import default_max_lag
from ..kernels.rings import Rings, ring_index, ring_sums, sector_index

#: target bytes of one (probe block, time, ky, kx) block of :func:`stem_scan_g2`
SCAN_BLOCK_BYTES = 160 << 20
#: camera tile (pixels) of the per-pixel g2 blocks of :func:`diffraction_g2`
TILE = 64
DIFFRACTION_DIMS = (S.TIME, S.KY, S.KX)
SCAN_DIMS = (S.TIME, S.Y, S.X, S.KY, S.KX)
FIT_UNITS = {"tau": "s", "beta": "1", "contrast": "1", "baseline": "1"}


# ------------------------------------------------------------------------------------------ inputs
def _as_array(data, dims):
    """(DataArray with ``dims`` in that order, merged attrs) from a Dataset (its ``intensity``) or DataArray."""
    import xarray as xr

    if isinstance(data, xr.Dataset):
        if S.INTENSITY not in data:
            raise InputError(f"the dataset has no {S.INTENSITY!r} variable (found {sorted(map(str, data.data_vars))})")
        arr, attrs = data[S.INTENSITY], {**data[S.INTENSITY].attrs, **data.attrs}
    elif isinstance(data, xr.DataArray):
        arr, attrs = data, dict(data.attrs)
    else:
        raise InputError(f"expected an xarray Dataset or DataArray with dims {dims}, got {type(data).__name__}")
    if set(arr.dims) != set(dims):
        raise InputError(f"intensity must have dims {dims}, got {tuple(arr.dims)}")
    arr = arr.transpose(*dims)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"intensity has dtype {arr.dtype}, expected integer or floating counts")
    if arr.sizes[S.TIME] < 2:
        raise InputError(f"intensity has {arr.sizes[S.TIME]} frame(s); a correlation needs at least 2")
    return arr, attrs


def _frame_time(arr, attrs) -> float:
    ft = attrs.get(S.ATTR_FRAME_TIME)
    if ft is None and S.TIME in arr.coords and arr.sizes[S.TIME] > 1:
        ft = float(np.median(np.diff(np.asarray(arr[S.TIME].values, dtype=float))))
    if ft is None or not float(ft) > 0:
        raise InputError(f"frame time unknown: set the attribute {S.ATTR_FRAME_TIME!r} or a time coordinate in s")
    return float(ft)


def camera_geometry(data, centre=None, calibration=None) -> tuple[tuple[float, float], float]:
    """Beam centre (row, column; pixels) and calibration (nm^-1 per pixel) of a diffraction series.

    Explicit arguments win; else the attributes ``beam_centre_px`` and ``k_calibration_nm-1_per_px``; else the
    ``ky``, ``kx`` coordinates (nm^-1, zero at the beam centre, uniform steps).
    """
    attrs = dict(getattr(data, "attrs", {}))
    if hasattr(data, "data_vars") and S.INTENSITY in data:
        attrs = {**data[S.INTENSITY].attrs, **attrs}
    coords = getattr(data, "coords", {})
    from_coords = None
    if S.KY in coords and S.KX in coords and coords[S.KY].size > 1 and coords[S.KX].size > 1:
        ky, kx = (np.asarray(coords[d].values, dtype=float) for d in (S.KY, S.KX))
        dy, dx = np.diff(ky), np.diff(kx)
        if np.allclose(dy, dy[0], rtol=1e-6) and np.allclose(dx, dx[0], rtol=1e-6) and np.isclose(dy[0], dx[0]) \
                and dx[0] > 0:
            from_coords = ((-ky[0] / dy[0], -kx[0] / dx[0]), float(dx[0]))
    if calibration is None:
        calibration = attrs.get(S.ATTR_K_CALIBRATION, from_coords[1] if from_coords else None)
    if centre is None:
        centre = attrs.get(S.ATTR_BEAM_CENTRE, from_coords[0] if from_coords else None)
    if calibration is None:
        raise InputError(f"calibration unknown: pass calibration= (nm^-1 per pixel) or set the attribute "
                         f"{S.ATTR_K_CALIBRATION!r}")
    if centre is None:
        raise InputError(f"beam centre unknown: pass centre=(row, column) in pixels or set the attribute "
                         f"{S.ATTR_BEAM_CENTRE!r}")
    try:
        cy, cx = (float(c) for c in centre)
    except (TypeError, ValueError):
        raise InputError(f"centre must be (row, column) in pixels, got {centre!r}") from None
    cal = float(calibration)
    if not (math.isfinite(cal) and cal > 0):
        raise InputError(f"calibration must be a positive number of nm^-1 per pixel, got {calibration!r}")
    return (cy, cx), cal


def _mask_array(mask, shape):
    if mask is None:
        return None
    m = np.asarray(getattr(mask, "values", mask))
    if m.shape != tuple(shape):
        raise InputError(f"mask must have the camera shape (ky, kx) = {tuple(shape)}, got {m.shape}")
    return m


def detector_rings(data, *, centre=None, calibration=None, q_bins=None, mask=None) -> Rings:
    """q rings of the camera of ``data`` (a series, a pattern or anything with ``ky``, ``kx`` dims).

    See :func:`ecm_dask.kernels.rings.ring_index` for ``q_bins`` and ``mask`` (True = usable pixel).
    """
    shape = (data.sizes[S.KY], data.sizes[S.KX])
    c, cal = camera_geometry(data, centre, calibration)
    return ring_index(shape, c, cal, q_bins, _mask_array(mask, shape))


def _labels(rings: Rings, shape, centre, n_sectors: int) -> tuple[np.ndarray, int]:
    """Labels ring * n_sectors + sector (-1 excluded) and the number of sectors (>= 1)."""
    ns = int(n_sectors)
    if ns != n_sectors or ns < 0:
        raise InputError(f"n_sectors must be a whole number >= 0, got {n_sectors!r}")
    ns = max(ns, 1)
    sec = sector_index(shape, centre, ns) if ns > 1 else np.zeros(shape, dtype=np.int64)
    return np.where(rings.labels >= 0, rings.labels * ns + sec, -1), ns


# ------------------------------------------------------------------------------------ ring statistics
def _pack_stats(sums: np.ndarray, n_rings: int, n_sectors: int) -> np.ndarray:
    """(n_rings * n_sectors, 3, L) sums -> (n_rings, 3 + 2 n_sectors, L): mean, sem, count, sector means,
    sector counts."""
    sums = np.asarray(sums, dtype=np.float64).reshape(n_rings, n_sectors, 3, -1)
    tot = sums.sum(axis=1)
    s, s2, c = tot[:, 0], tot[:, 1], tot[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / c
        var = (s2 - c * mean * mean) / (c - 1)
        sem = np.sqrt(np.maximum(var, 0.0) / c)
        sec_mean = sums[:, :, 0] / sums[:, :, 2]
    mean = np.where(c > 0, mean, np.nan)
    sem = np.where(c > 1, sem, np.nan)
    return np.concatenate([mean[:, None], sem[:, None], c[:, None], sec_mean, sums[:, :, 2]], axis=1)


def _partial_sums(g, lab, *, n_labels):
    """blockwise core: g2 block (by, bx, L) and its labels -> (1, 1, n_labels, 3, L) partial sums."""
    return np.stack(ring_sums(g, lab, n_labels, axes=(0, 1)), axis=1)[None, None]


def _ring_dataset(packed, rings: Rings, n_sectors: int, lag_s, lag_frames, pairs, lead_dims=(), lead_coords=None):
    """Labelled ring statistics from packed (..., q, 3 + 2 ns, lag)."""
    import xarray as xr

    d = tuple(lead_dims)
    ds = xr.Dataset(coords=dict(lead_coords or {}))
    ds[S.G2] = (d + (S.Q, S.LAG), packed[..., 0, :], {S.ATTR_LONG_NAME: "ring-averaged g2", S.ATTR_UNITS: "1"})
    ds[S.G2_ERR] = (d + (S.Q, S.LAG), packed[..., 1, :],
                    {S.ATTR_LONG_NAME: "standard error of the ring-averaged g2 (pixel scatter)", S.ATTR_UNITS: "1"})
    ds[S.N_PIXELS] = (d + (S.Q,), packed[..., 2, :].max(axis=-1).astype(np.int64),
                      {S.ATTR_LONG_NAME: "pixels with a finite g2 in the ring"})
    if n_sectors > 1:
        ns = n_sectors
        ds[S.G2_SECTOR] = (d + (S.Q, S.SECTOR, S.LAG), packed[..., 3:3 + ns, :],
                           {S.ATTR_LONG_NAME: "g2 averaged over each angular sector of the ring (angle mod pi)"})
        ds["sector_pixels"] = (d + (S.Q, S.SECTOR), packed[..., 3 + ns:3 + 2 * ns, :].max(axis=-1).astype(np.int64),
                               {S.ATTR_LONG_NAME: "pixels with a finite g2 in each sector"})
        ds = ds.assign_coords({S.SECTOR: (S.SECTOR, np.arange(ns))})
    ds = ds.assign_coords({
        S.Q: (S.Q, rings.q_centre, S.coord_attrs(S.Q, "ring centre")),
        S.Q_LO: (S.Q, rings.edges[:-1], S.coord_attrs(S.Q_LO, "ring inner edge")),
        S.Q_HI: (S.Q, rings.edges[1:], S.coord_attrs(S.Q_HI, "ring outer edge")),
        S.Q_MEAN: (S.Q, rings.q_mean, S.coord_attrs(S.Q_MEAN, "mean q of the ring's pixels")),
        S.LAG: (S.LAG, np.asarray(lag_s, dtype=np.float64), S.coord_attrs(S.LAG, "lag time")),
        "lag_frames": (S.LAG, np.asarray(lag_frames, dtype=np.float64), {S.ATTR_LONG_NAME: "lag in frames"}),
    })
    ds["pairs"] = ((S.LAG,), np.asarray(pairs, dtype=np.float64), {S.ATTR_LONG_NAME: "frame pairs per lag point"})
    return ds


# ------------------------------------------------------------------------------------ one probe
def diffraction_g2(intensity, *, centre=None, calibration=None, q_bins=None, mask=None, n_sectors: int = 8,
                   method: str = "multitau", points_per_octave: int = 8, max_lag: float | None = None,
                   normalization: str = "symmetric", bad_frames=None, saturation: float | None = None,
                   tile: int = TILE):
    """Ring-averaged g2(q, lag) of a diffraction series, lazily.

    Parameters
    ----------
    intensity : Dataset with ``intensity (time, ky, kx)`` or that DataArray (dask or NumPy backed)
    centre : (row, column) of the beam centre in pixels (default: attribute ``beam_centre_px`` or the ``ky``,
        ``kx`` coordinates)
    calibration : nm^-1 per pixel (default: attribute ``k_calibration_nm-1_per_px`` or the coordinates)
    q_bins : None (rings one pixel wide), a number of equal rings, or ring edges in nm^-1
    mask : (ky, kx) bool, True for usable pixels (False: beam stop, bad pixels)
    n_sectors : angular sectors per ring (angle mod pi) kept for jackknife errors (0 or 1: none)
    method, points_per_octave, max_lag, normalization, bad_frames, saturation : as :func:`ecm_dask.ops.correlate`
    tile : camera tile (pixels) of the per-pixel g2 blocks; each block holds all frames

    Returns
    -------
    Dataset: ``g2 (q, lag)``, ``g2_err (q, lag)``, ``n_pixels (q)``, ``g2_sector (q, sector, lag)`` and
    ``sector_pixels (q, sector)`` (if ``n_sectors > 1``), ``pairs (lag)``, and on the camera ``ring (ky, kx)``
    (ring index, -1 excluded), ``pixel_status`` (g2 kernel codes) and ``mean_intensity``; coords ``q`` (ring
    centre), ``q_lo``, ``q_hi``, ``q_mean`` in nm^-1 and ``lag`` in s.  Rings with no usable pixel are NaN.

    Memory: each task holds one (all frames x block) camera block (at most ``ecm_dask.ops.correlation.BLOCK_BYTES``)
    and its per-pixel g2; the per-ring partial sums are ``rings x sectors x 3 x lags`` float64 per block.
    """
    import dask.array as da
    import xarray as xr

    from ..ops.correlation import correlate

    arr, attrs = _as_array(intensity, DIFFRACTION_DIMS)
    n_t, nky, nkx = arr.shape
    c, cal = camera_geometry(intensity, centre, calibration)
    rings = ring_index((nky, nkx), c, cal, q_bins, _mask_array(mask, (nky, nkx)))
    labels, ns = _labels(rings, (nky, nkx), c, n_sectors)
    n_r = rings.n_rings
    frame_time = _frame_time(arr, attrs)
    tile = int(tile)
    if tile < 1:
        raise InputError(f"tile must be >= 1 pixel, got {tile}")
    # per-pixel g2 with the image-mode machinery: the camera axes play (y, x)
    extra = [c for c in arr.coords if c not in arr.dims]  # e.g. the scalar y, x of one scan position
    img = arr.drop_vars(extra).rename({S.KY: S.Y, S.KX: S.X}).chunk({S.TIME: -1, S.Y: tile, S.X: tile})
    img.attrs = {S.ATTR_FRAME_TIME: frame_time}
    res = correlate(img, method=method, points_per_octave=points_per_octave, max_lag=max_lag,
                    normalization=normalization, bad_frames=bad_frames, saturation=saturation)
    g = res["g2"].transpose(S.Y, S.X, S.LAG).data
    n_lab = n_r * ns
    lab = da.from_array(labels, chunks=g.chunks[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", da.PerformanceWarning)
        parts = da.blockwise(_partial_sums, "ijcsl", g, "ijl", lab, "ij", new_axes={"c": n_lab, "s": 3},
                             adjust_chunks={"i": 1, "j": 1}, dtype=np.float64, n_labels=n_lab)
    sums = parts.sum(axis=(0, 1)).rechunk(-1)
    packed = da.map_blocks(_pack_stats, sums, n_rings=n_r, n_sectors=ns, dtype=np.float64,
                           chunks=((n_r,), (3 + 2 * ns,), sums.chunks[-1]))
    ds = _ring_dataset(packed, rings, ns, res[S.LAG].values, res["lag_frames"].values, res["pairs"].values)
    cam = {S.KY: arr[S.KY], S.KX: arr[S.KX]} if S.KY in arr.coords and S.KX in arr.coords else {}
    ds["ring"] = xr.DataArray(rings.labels, dims=(S.KY, S.KX), coords=cam,
                              attrs={S.ATTR_LONG_NAME: "q ring of each pixel (-1: masked or outside the rings)"})
    for name, new in (("status", "pixel_status"), ("mean_intensity", "mean_intensity")):
        v = res[name].rename({S.Y: S.KY, S.X: S.KX}).drop_vars([S.KY, S.KX], errors="ignore")
        ds[new] = v.assign_coords(cam) if cam else v
    ds.attrs.update({k: v for k, v in res.attrs.items() if k in (
        "estimator", "normalization", "points_per_octave", "max_lag_frames", "frame_time_s", "n_frames",
        "n_bad_frames", "saturation")})
    ds.attrs.update({S.ATTR_K_CALIBRATION: cal, S.ATTR_BEAM_CENTRE: [c[0], c[1]], "n_sectors": ns,
                     "ring_average": "plain mean of the per-pixel g2 of the ring's usable pixels; g2_err = sample "
                                     "standard deviation / sqrt(n_pixels)"})
    return ds


# ------------------------------------------------------------------------------------ scans
def _scan_block(block, *, labels, n_rings, n_sectors, kw):
    """apply_ufunc core: (py, px, T, ky, kx) -> (py, px, q, 3 + 2 ns, lag), one probe position after the other."""
    lead = block.shape[:-3]
    flat = block.reshape(-1, *block.shape[-3:])
    out = None
    n_lab = n_rings * n_sectors
    for i in range(flat.shape[0]):
        r = K.g2(flat[i], axis=0, **kw)
        packed = _pack_stats(np.stack(ring_sums(r.g2, labels, n_lab, axes=(0, 1)), axis=1), n_rings, n_sectors)
        if out is None:
            out = np.empty((flat.shape[0],) + packed.shape)
        out[i] = packed
    if out is None:  # empty block
        out = np.empty((0, n_rings, 3 + 2 * n_sectors, 0))
    return out.reshape(*lead, *out.shape[1:])


def stem_scan_g2(intensity, *, centre=None, calibration=None, q_bins=None, mask=None, n_sectors: int = 0,
                 method: str = "multitau", points_per_octave: int = 8, max_lag: float | None = None,
                 normalization: str = "symmetric", bad_frames=None, saturation: float | None = None,
                 block_bytes: int = SCAN_BLOCK_BYTES):
    """Ring-averaged g2 at every probe position of a STEM scan ``(time, y, x, ky, kx)``, lazily.

    Same options and ring statistics as :func:`diffraction_g2` (one camera geometry and mask for all
    positions).  Each dask task takes a block of probe positions with all frames and the whole camera (about
    ``block_bytes``, at least one position) and correlates them one position at a time: per-pixel g2 of one
    position (``ky x kx x lags`` float32) is the only transient beyond the block.  The result is
    ``y x x x q x (3 + 2 n_sectors) x lags`` float64 (``n_sectors`` 0 by default: sector curves multiply it).

    Returns
    -------
    Dataset: ``g2 (y, x, q, lag)``, ``g2_err``, ``n_pixels (y, x, q)`` (and sector variables), ``pairs (lag)``,
    ``ring (ky, kx)``; coordinates as :func:`diffraction_g2`.
    """
    import xarray as xr

    from ..ops.correlation import _frame_mask

    arr, attrs = _as_array(intensity, SCAN_DIMS)
    n_t, ny, nx, nky, nkx = arr.shape
    c, cal = camera_geometry(intensity, centre, calibration)
    rings = ring_index((nky, nkx), c, cal, q_bins, _mask_array(mask, (nky, nkx)))
    labels, ns = _labels(rings, (nky, nkx), c, n_sectors)
    frame_time = _frame_time(arr, attrs)
    max_lag_frames = default_max_lag(n_t) if max_lag is None else int(math.floor(max_lag / frame_time + 1e-9))
    if not 1 <= max_lag_frames <= n_t - 1:
        raise InputError(f"max_lag = {max_lag} s is {max_lag_frames} frames; it must be between 1 and {n_t - 1} frames")
    if saturation is None and np.issubdtype(arr.dtype, np.integer):
        saturation = float(np.iinfo(arr.dtype).max)
    fmask = _frame_mask(bad_frames, n_t)
    kw = dict(method=method, points_per_octave=points_per_octave, max_lag=max_lag_frames,
              normalization=normalization, frame_mask=fmask, saturation=saturation)
    probe = K.g2(np.ones((n_t, 1)), axis=0, **kw)
    per_probe = max(1, n_t * nky * nkx * np.dtype(arr.dtype).itemsize)
    n_probe = max(1, int(block_bytes) // per_probe)
    cy = max(1, min(ny, int(math.isqrt(n_probe))))
    cx = max(1, min(nx, n_probe // cy))
    data = arr.chunk({S.TIME: -1, S.Y: cy, S.X: cx, S.KY: -1, S.KX: -1})
    n_pack = 3 + 2 * ns
    packed = xr.apply_ufunc(
        _scan_block, data, input_core_dims=[[S.TIME, S.KY, S.KX]], output_core_dims=[[S.Q, "_pack", S.LAG]],
        dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {S.Q: rings.n_rings, "_pack": n_pack, S.LAG: probe.lag.size}},
        kwargs=dict(labels=labels, n_rings=rings.n_rings, n_sectors=ns, kw=kw))
    packed = packed.transpose(S.Y, S.X, S.Q, "_pack", S.LAG)
    lead_coords = {d: arr[d] for d in (S.Y, S.X) if d in arr.coords}
    ds = _ring_dataset(packed.data, rings, ns, probe.lag * frame_time, probe.lag, probe.pairs,
                       lead_dims=(S.Y, S.X), lead_coords=lead_coords)
    ds["ring"] = xr.DataArray(rings.labels, dims=(S.KY, S.KX),
                              attrs={S.ATTR_LONG_NAME: "q ring of each pixel (-1: masked or outside the rings)"})
    ds.attrs.update({"estimator": method, "normalization": normalization, "points_per_octave": int(points_per_octave),
                     "max_lag_frames": int(max_lag_frames), "frame_time_s": frame_time, "n_frames": int(n_t),
                     "n_bad_frames": int(0 if fmask is None else (~fmask).sum()), S.ATTR_K_CALIBRATION: cal,
                     S.ATTR_BEAM_CENTRE: [c[0], c[1]], "n_sectors": ns,
                     "probe_block": [cy, cx]})
    return ds


# ------------------------------------------------------------------------------------ fits
def _jackknife(y_sec, n_sec, lag, fit_full, kw):
    """Delete-one-sector jackknife errors of (baseline, contrast, log tau, beta) -> errors (N, 4) in the
    parameters' own units (tau via log tau)."""
    n, g, n_lag = y_sec.shape
    w = np.where(np.isfinite(y_sec), n_sec[..., None], 0.0)
    s = np.where(w > 0, y_sec * w, 0.0)
    tot_s, tot_w = s.sum(axis=1, keepdims=True), w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = (tot_s - s) / (tot_w - w)  # (N, G, L)
    used = n_sec > 0  # (N, G)
    p0 = np.repeat(fit_full.params, g, axis=0)
    fit = KW.fit_kww(loo.reshape(n * g, n_lag), lag, p0=p0, **kw)
    th = fit.params.reshape(n, g, 4).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        th[..., 2] = np.log(th[..., 2])
    th[~used] = np.nan
    m = np.sum(np.isfinite(th), axis=1)  # (N, 4) usable replicates
    mean = np.nanmean(np.where(np.isfinite(th), th, np.nan), axis=1) if th.size else th.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (m - 1) / m * np.nansum((th - mean[:, None]) ** 2, axis=1)
    err = np.where(m >= 2, np.sqrt(var), np.nan)
    err[:, 2] = err[:, 2] * fit_full.params[:, 2]
    return err


def fit_rings(g2_q, *, errors: str = "auto", bounds: dict | None = None, fixed: dict | None = None,
              baseline: str | float = "free", max_iter: int = 100):
    """KWW fit ``g2 = baseline + contrast exp(-2 (t/tau)^beta)`` of every ring-averaged curve.

    Parameters
    ----------
    g2_q : Dataset from :func:`diffraction_g2` or :func:`stem_scan_g2` (``g2``, ``g2_err``; ``g2_sector`` for
        jackknife errors)
    errors : ``"jackknife"`` (delete-one-sector jackknife: honest when lag points are correlated, as they are),
        ``"sigma"`` (covariance of the fit weighted by ``g2_err`` as absolute errors) or ``"auto"`` (jackknife
        when sector curves exist, else sigma)
    bounds, fixed, baseline, max_iter : as :func:`ecm_dask.kernels.kww.fit_kww` (tau in s); tau defaults to
        between one frame and 10x the series length

    Returns
    -------
    Dataset on the curves' dims (``q``, or ``y, x, q``): ``tau`` (s), ``beta``, ``contrast``, ``baseline``, their
    ``*_err``, ``chi2`` (reduced, with ``g2_err`` as absolute errors), ``status`` (kww fit codes), ``n_pixels``,
    and ``g2_fit (..., lag)``, the fitted curves.
    """
    import xarray as xr

    if not isinstance(g2_q, xr.Dataset) or S.G2 not in g2_q or S.G2_ERR not in g2_q:
        raise InputError("fit_rings needs the Dataset of diffraction_g2 or stem_scan_g2 (with 'g2' and 'g2_err')")
    if errors not in ("auto", "jackknife", "sigma"):
        raise InputError(f"errors must be 'auto', 'jackknife' or 'sigma', got {errors!r}")
    has_sec = S.G2_SECTOR in g2_q and g2_q.sizes.get(S.SECTOR, 0) > 1
    if errors == "jackknife" and not has_sec:
        raise InputError("errors='jackknife' needs sector curves: compute g2 with n_sectors >= 2")
    use_jk = errors == "jackknife" or (errors == "auto" and has_sec)
    g = g2_q[S.G2]
    lead = [d for d in g.dims if d != S.LAG]
    g = g.transpose(*lead, S.LAG)
    shape = tuple(g.sizes[d] for d in lead)
    lag = np.asarray(g2_q[S.LAG].values, dtype=np.float64)
    y = np.asarray(g.values, dtype=np.float64).reshape(-1, lag.size)
    sig = np.asarray(g2_q[S.G2_ERR].transpose(*lead, S.LAG).values, dtype=np.float64).reshape(-1, lag.size)
    frame_time = float(g2_q.attrs.get(S.ATTR_FRAME_TIME, lag[0]))
    n_frames = int(g2_q.attrs.get("n_frames", round(2 * lag[-1] / frame_time)))
    b = {"tau": (frame_time, 10.0 * n_frames * frame_time), "beta": KW.BETA_BOUNDS}
    b.update(bounds or {})
    kw = dict(bounds=b, fixed=fixed, baseline=baseline, max_iter=max_iter)
    sig_ok = np.where(np.isfinite(sig) & (sig > 0), sig, np.nan)
    fit = KW.fit_kww(y, lag, sigma=sig_ok, **kw)
    err = fit.errors.copy()
    if use_jk:
        ys = np.asarray(g2_q[S.G2_SECTOR].transpose(*lead, S.SECTOR, S.LAG).values, dtype=np.float64)
        ns = np.asarray(g2_q["sector_pixels"].transpose(*lead, S.SECTOR).values, dtype=np.float64)
        jk = _jackknife(ys.reshape(y.shape[0], -1, lag.size), ns.reshape(y.shape[0], -1), lag, fit,
                        dict(kw, sigma=sig_ok[np.repeat(np.arange(y.shape[0]), ns.shape[-1])]))
        free = np.array([p not in (fixed or {}) and not (p == "baseline" and baseline != "free") for p in KW.PARAMS])
        err = np.where(free[None, :], jk, 0.0)
    coords = {d: g2_q[d] for d in lead if d in g2_q.coords}
    for name in (S.Q_LO, S.Q_HI, S.Q_MEAN):
        if name in g2_q.coords:
            coords[name] = g2_q[name]
    ds = xr.Dataset(coords=coords)
    for i, name in enumerate(KW.PARAMS):
        ds[name] = (tuple(lead), fit.params[:, i].reshape(shape), {S.ATTR_UNITS: FIT_UNITS[name],
                                                                   S.ATTR_LONG_NAME: f"KWW {name}"})
        ds[f"{name}_err"] = (tuple(lead), err[:, i].reshape(shape),
                             {S.ATTR_UNITS: FIT_UNITS[name], S.ATTR_LONG_NAME: f"standard error of {name}"})
    ds["chi2"] = (tuple(lead), fit.chi2_red.reshape(shape), {S.ATTR_LONG_NAME: "reduced chi-square (g2_err absolute)"})
    ds["status"] = (tuple(lead), fit.status.reshape(shape), {
        S.ATTR_LONG_NAME: "fit status", "flag_values": list(KW.FIT_STATUS),
        "flag_meanings": " ".join(v.replace(" ", "_") for v in KW.FIT_STATUS.values())})
    if S.N_PIXELS in g2_q:
        ds[S.N_PIXELS] = g2_q[S.N_PIXELS]
    model = KW.kww_model(lag, fit.params) if y.shape[0] else np.empty((0, lag.size))
    ds["g2_fit"] = (tuple(lead) + (S.LAG,), np.asarray(model).reshape(*shape, lag.size),
                    {S.ATTR_LONG_NAME: "fitted KWW curve"})
    ds = ds.assign_coords({S.LAG: g2_q[S.LAG]})
    ds.attrs.update({"model": "g2 = baseline + contrast * exp(-2 (t / tau)^beta)",
                     "errors": "jackknife over angular sectors" if use_jk else "fit covariance, g2_err absolute",
                     "bounds": {k: [float(v[0]), float(v[1])] for k, v in b.items()},
                     S.ATTR_FRAME_TIME: frame_time})
    return ds
