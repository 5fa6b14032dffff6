"""Spatial correlation lengths: of a map (e.g. ``log10 tau``) and of the intensity fluctuations (g4).

Numerics (plain NumPy/SciPy): :func:`masked_autocorrelation` (FFT, zero-padded so nothing wraps, divided by
the mask's own autocorrelation so every displacement is the mean over the pixel pairs that are both inside
the mask: edges and holes are handled exactly), :func:`ring_average`, :func:`fit_exponential`,
:func:`crossing_length`.  Labelled layer: :func:`map_correlation_length` and :func:`intensity_g4`.

Definitions
-----------
Map correlation: with ``f`` the map minus its mean over the mask,
``C(d) = <f(r) f(r+d)>_{r, r+d in mask} / <f^2>_mask`` (so ``C(0) = 1``), averaged over rings of ``|d|``
weighted by the number of pairs, and fitted with ``C0 exp(-r / xi)`` over ``0 < r <= r_fit`` (``r = 0`` is
left out: it carries uncorrelated noise).  ``r_fit`` defaults to 3 x the 1/e length of the ring average.
The error of ``xi`` is a delete-one-block jackknife over ``n_blocks x n_blocks`` tiles of the mask's
bounding box (tiles should span several ``xi``): it includes the correlation between neighbouring pixels
that a least-squares error ignores.

Intensity correlations (``intensity_g4``): with ``dI(r, t) = I(r, t) / <I(r)>_t - 1`` (per-pixel temporal
mean) and, for a lag ``k`` frames, the two-time products ``Q(r, t; k) = dI(r, t) dI(r, t + k)``,

* ``g2_spatial(d) = <dI(r, t) dI(r + d, t)> / <dI(r, t)^2>``: the equal-time spatial correlation (speckle
  grain), and
* ``g4(d, k) = <q(r, t; k) q(r + d, t; k)> / <q(r, t; k)^2>``, ``q = Q - <Q>_{r, t}``: the spatial
  correlation of the two-time products (a four-point correlation of the intensity),

both averaged over t and over pixel pairs in the mask, then over rings.  ``xi4(k)`` is the distance where
the ring-averaged ``g4`` first falls to ``1/e`` (linear interpolation), model-free.  For circular Gaussian
speckle with field correlation ``gamma(d)`` and dynamics independent between grains, exactly
``g2_spatial = gamma^2``, ``g4(d, 0) = (gamma^2 + gamma^4) / 2`` and ``g4(d, k >> tau) = gamma^4``; ``g4``
lengths larger than these mark regions whose dynamics is correlated beyond one grain.  Uncorrelated noise
(Poisson) adds to ``d = 0`` only and so lowers the normalised curves at ``d > 0``: compare shapes, or use
counts high enough.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy.optimize import curve_fit

from .. import schema as S
from ..errors import InputError

__all__ = ["crossing_length", "fit_exponential", "intensity_g4", "map_correlation_length", "masked_autocorrelation",
           "ring_average"]

#: float64 elements of one batch of frames in :func:`intensity_g4` (16 MiB)
_BATCH = 1 << 21


# ------------------------------------------------------------------------------------------ numerics
def _padded_shape(shape) -> tuple[int, int]:
    return tuple(sfft.next_fast_len(2 * n - 1, real=True) for n in shape)


def _power(a: np.ndarray, shape) -> np.ndarray:
    """Sum over leading axes of ``|rfft2(a)|^2`` (zero-padded to ``shape``)."""
    F = sfft.rfft2(a, s=shape, axes=(-2, -1), workers=1)
    p = F.real**2 + F.imag**2
    return p.reshape(-1, *p.shape[-2:]).sum(axis=0)


def _unwrap(corr: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Circular correlation (padded) -> displacements ``-(ny-1)..ny-1`` x ``-(nx-1)..nx-1`` (centred)."""
    rows = np.r_[corr.shape[0] - (ny - 1):corr.shape[0], 0:ny]
    cols = np.r_[corr.shape[1] - (nx - 1):corr.shape[1], 0:nx]
    return corr[np.ix_(rows, cols)]


def masked_autocorrelation(field, mask=None, *, frames_axis: bool = False, subtract_mean: bool = True):
    """Sum of products ``f(r) f(r+d)`` over pixel pairs inside ``mask``, and the number of such pairs.

    Parameters
    ----------
    field : array (ny, nx), or (n, ny, nx) with ``frames_axis=True`` (sums over the n frames)
    mask : bool array (ny, nx), optional (default: the finite pixels of every frame)
    subtract_mean : bool
        Subtract the mean over the mask (and the frames) first.

    Returns
    -------
    products : float64 (2 ny - 1, 2 nx - 1), displacement ``(dy, dx)`` at index ``(dy + ny - 1, dx + nx - 1)``
    pairs : float64, same shape: number of pairs (times frames); ``products / pairs`` is the correlation.
    """
    f = np.asarray(field, dtype=np.float64)
    if not frames_axis:
        f = f[None]
    if f.ndim != 3:
        raise InputError(f"field must be 2-D (y, x){' or 3-D (frame, y, x)' if frames_axis else ''}, got {f.shape}")
    n, ny, nx = f.shape
    finite = np.all(np.isfinite(f), axis=0)
    m = finite if mask is None else (np.asarray(mask, dtype=bool) & finite)
    if m.shape != (ny, nx):
        raise InputError(f"mask has shape {m.shape}, the field {(ny, nx)}")
    if not m.any():
        raise InputError("the mask selects no pixel with a finite value")
    g = np.where(m, f, 0.0)
    if subtract_mean:
        g = np.where(m, g - g[:, m].mean(), 0.0)
    shape = _padded_shape((ny, nx))
    prod = sfft.irfft2(_power(g, shape), s=shape, workers=1)
    pairs = sfft.irfft2(_power(m.astype(np.float64), shape), s=shape, workers=1) * n
    return _unwrap(prod, ny, nx), np.rint(_unwrap(pairs, ny, nx))


def _ring_edges(centres) -> np.ndarray:
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 1 or c.size < 2 or np.any(np.diff(c) <= 0) or c[0] < 0:
        raise InputError(f"distances must be >= 2 increasing non-negative ring centres, got {centres!r}")
    mid = 0.5 * (c[1:] + c[:-1])
    lo = max(c[0] - (mid[0] - c[0]), 0.0)
    return np.concatenate([[lo if c[0] > 0 else -1e-12], mid, [c[-1] + (c[-1] - mid[-1])]])


def ring_average(products, pairs, spacing=(1.0, 1.0), distances=None, *, min_pairs: int = 1):
    """Average ``products / pairs`` over rings of ``|d|`` (pair-weighted).

    Parameters
    ----------
    products, pairs : arrays from :func:`masked_autocorrelation`
    spacing : (dy, dx) pixel size
    distances : ring centres (units of ``spacing``); default one ring per pixel, ``0 .. min(ny, nx) / 2``
    min_pairs : displacements with fewer pairs are left out

    Returns
    -------
    r : the ring centres; mean : products/pairs per ring (NaN if empty); n_pairs : pairs per ring;
    r_mean : pair-weighted mean distance in each ring (differs from ``r`` on a lattice: use it for fits)
    """
    ky, kx = products.shape
    ny, nx = (ky + 1) // 2, (kx + 1) // 2
    dy, dx = (float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=np.float64), (2,)))
    if distances is None:
        step = min(dy, dx)
        distances = np.arange(0, int(min(ny * dy, nx * dx) / 2 / step) + 1) * step
    r = np.asarray(distances, dtype=np.float64)
    edges = _ring_edges(r)
    yy = (np.arange(ky) - (ny - 1)) * dy
    xx = (np.arange(kx) - (nx - 1)) * dx
    dist = np.hypot(yy[:, None], xx[None, :])
    ok = pairs >= max(min_pairs, 1)
    idx = np.searchsorted(edges, dist, side="right") - 1
    ok &= (idx >= 0) & (idx < r.size)
    s = np.bincount(idx[ok], weights=products[ok], minlength=r.size)[: r.size]
    w = np.bincount(idx[ok], weights=pairs[ok], minlength=r.size)[: r.size]
    d = np.bincount(idx[ok], weights=(pairs * dist)[ok], minlength=r.size)[: r.size]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(w > 0, s / w, np.nan)
        r_mean = np.where(w > 0, d / w, np.nan)
    return r, mean, w, r_mean


def crossing_length(r, c, level: float = float(np.exp(-1.0))) -> float:
    """First ``r`` where ``c`` falls to ``level`` (linear interpolation); NaN if it never does."""
    r = np.asarray(r, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    good = np.isfinite(c)
    r, c = r[good], c[good]
    below = np.flatnonzero(c <= level)
    if below.size == 0 or below[0] == 0:
        return float("nan") if below.size == 0 else float(r[0])
    i = below[0]
    r0, r1, c0, c1 = r[i - 1], r[i], c[i - 1], c[i]
    return float(r0 + (c0 - level) * (r1 - r0) / (c0 - c1))


def fit_exponential(r, c, *, r_fit: float | None = None, offset: bool = True) -> tuple[float, float, float, float]:
    """Fit ``C0 exp(-r / xi) (+ b)`` to ``c(r)`` over ``0 < r <= r_fit``.

    ``offset=True`` adds a constant ``b``: subtracting the sample mean of a finite map lowers its estimated
    correlation by about the mean correlation over the area, and long-wavelength fluctuations shift it too;
    the offset absorbs both.  ``r_fit`` defaults to 5 (with offset) or 3 (without) times the 1/e crossing of
    ``c / c[first r > 0]``.

    Returns
    -------
    ``(xi, C0, least-squares error of xi, b)``; NaNs when the fit is impossible.
    """
    nan4 = (float("nan"),) * 4
    r = np.asarray(r, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    use = (r > 0) & np.isfinite(c) & np.isfinite(r)
    n_par = 3 if offset else 2
    if use.sum() < n_par + 1:
        return nan4
    rr, cc = r[use], c[use]
    if r_fit is None:
        x0 = crossing_length(rr, cc / cc[0]) if cc[0] > 0 else float("nan")
        x0 = x0 if np.isfinite(x0) and x0 > 0 else float(rr[-1]) / 3.0
        r_fit = max((5.0 if offset else 3.0) * x0, float(rr[min(n_par, rr.size - 1)]))
    sel = rr <= r_fit
    rr, cc = rr[sel], cc[sel]
    if rr.size < n_par + 1 or not cc[0] > 0:
        return nan4
    # start from the log-linear fit of the positive points
    pos = cc > 0
    slope, icpt = np.polyfit(rr[pos], np.log(cc[pos]), 1) if pos.sum() >= 2 else (-1.0 / rr[0], 0.0)
    xi0 = -1.0 / slope if slope < 0 else float(rr[-1])
    if offset:
        def model(x, c0, xi, b):
            return c0 * np.exp(-x / xi) + b
        p0, lo, hi = [np.exp(icpt), xi0, 0.0], [0.0, 1e-9 * rr[0], -1.0], [np.inf, np.inf, 1.0]
    else:
        def model(x, c0, xi):
            return c0 * np.exp(-x / xi)
        p0, lo, hi = [np.exp(icpt), xi0], [0.0, 1e-9 * rr[0]], [np.inf, np.inf]
    try:
        popt, pcov = curve_fit(model, rr, cc, p0=p0, bounds=(lo, hi), method="trf", max_nfev=5000)
    except (RuntimeError, ValueError):
        return nan4
    err = float(np.sqrt(pcov[1, 1])) if np.isfinite(pcov[1, 1]) else float("nan")
    return float(popt[1]), float(popt[0]), err, float(popt[2]) if offset else 0.0


def _blocks(mask: np.ndarray, n_blocks: int):
    """Boolean masks of the tiles (n_blocks x n_blocks over the mask's bounding box) that hold mask pixels."""
    ys, xs = np.nonzero(mask)
    ye = np.linspace(ys.min(), ys.max() + 1, n_blocks + 1).round().astype(int)
    xe = np.linspace(xs.min(), xs.max() + 1, n_blocks + 1).round().astype(int)
    counts, tiles = [], []
    for i in range(n_blocks):
        for j in range(n_blocks):
            t = np.zeros_like(mask)
            t[ye[i]:ye[i + 1], xe[j]:xe[j + 1]] = True
            t &= mask
            if t.any():
                tiles.append(t)
                counts.append(t.sum())
    # tiles with a sliver of the mask would make the jackknife noisy without information: keep sizeable ones
    counts = np.asarray(counts)
    return [t for t, c in zip(tiles, counts) if c >= 0.25 * counts.max()]


# ------------------------------------------------------------------------------------------ labelled
def _spacing(da, pixel_size) -> tuple[float, float]:
    if pixel_size is not None:
        sp = np.broadcast_to(np.asarray(pixel_size, dtype=np.float64), (2,))
        if not np.all(sp > 0):
            raise InputError(f"pixel_size must be positive, got {pixel_size!r}")
        return float(sp[0]), float(sp[1])
    out = []
    for dim in (S.Y, S.X):
        if hasattr(da, "coords") and dim in da.coords and da.sizes[dim] > 1:
            out.append(float(np.median(np.diff(np.asarray(da[dim].values, dtype=np.float64)))))
    if len(out) != 2:
        raise InputError("pixel_size is needed: pass pixel_size=... (nm) or a DataArray with y/x coordinates in nm")
    return out[0], out[1]


def _yx(da):
    import xarray as xr

    if isinstance(da, xr.DataArray):
        if set(da.dims) != {S.Y, S.X} and da.ndim == 2:
            raise InputError(f"the map must have dims ({S.Y}, {S.X}), got {da.dims}")
        return np.asarray(da.transpose(S.Y, S.X).values, dtype=np.float64)
    return np.asarray(da, dtype=np.float64)


def map_correlation_length(field, mask=None, pixel_size=None, *, distances=None, r_fit: float | None = None,
                           offset: bool = True, n_blocks: int = 4):
    """Spatial autocorrelation of a map inside a mask, ring-averaged, and its exponential correlation length.

    Parameters
    ----------
    field : xarray.DataArray (y, x) or 2-D array
        E.g. ``np.log10(maps.tau)``.  NaN pixels are left out.
    mask : bool DataArray / array (y, x), optional
        Pixels to use (e.g. ``(regions.region == REGION_BULK) & (maps.status == 0)``); default all finite.
    pixel_size : float or (dy, dx), optional
        nm; default from the ``y``/``x`` coordinates.
    distances : ring centres in nm, optional (default one ring per pixel up to half the smaller side)
    r_fit : float, optional
        Upper end of the fit range in nm (default 5 x the 1/e length with ``offset``, else 3 x).
    offset : bool
        Fit ``C0 exp(-r/xi) + offset`` (default; see :func:`fit_exponential`) or ``C0 exp(-r/xi)``.
    n_blocks : int
        Tiles per side for the jackknife error (0 or 1: no jackknife, least-squares error instead).

    Returns
    -------
    xarray.Dataset: ``correlation (r)`` (C(r), ``C(0) = 1``), ``pairs (r)``, ``r_mean (r)`` (mean distance of the
    pairs in each ring: the fits use it), and scalars ``xi`` (nm), ``xi_err`` (jackknife, or least squares),
    ``C0``, ``offset``, ``xi_1e`` (1/e crossing, nm), ``variance`` (of the map in the mask).
    """
    import xarray as xr

    f = _yx(field)
    if f.ndim != 2:
        raise InputError(f"field must be a 2-D (y, x) map, got shape {f.shape}")
    sp = _spacing(field, pixel_size)
    m = np.isfinite(f) if mask is None else (_yx(mask).astype(bool) & np.isfinite(f))
    if m.shape != f.shape:
        raise InputError(f"mask has shape {m.shape}, the map {f.shape}")
    if m.sum() < 16:
        raise InputError(f"the mask holds {int(m.sum())} usable pixel(s); need at least 16 for a correlation length")
    prod, pairs = masked_autocorrelation(f, m)
    var = prod[f.shape[0] - 1, f.shape[1] - 1] / pairs[f.shape[0] - 1, f.shape[1] - 1]
    if not var > 0:
        raise InputError("the map is constant inside the mask: no correlation length")
    r, c, w, rm = ring_average(prod / var, pairs, sp, distances)
    xi, c0, err, b = fit_exponential(rm, c, r_fit=r_fit, offset=offset)
    if r_fit is None and np.isfinite(xi):
        pos = rm > 0
        r_fit = (5.0 if offset else 3.0) * crossing_length(rm[pos], c[pos] / c[pos][0])
    method = "least squares"
    if n_blocks and n_blocks > 1 and np.isfinite(xi):
        est = []
        for t in _blocks(m, int(n_blocks)):
            p2, q2 = masked_autocorrelation(f, m & ~t)
            v2 = p2[f.shape[0] - 1, f.shape[1] - 1] / q2[f.shape[0] - 1, f.shape[1] - 1]
            _, c2, _, rm2 = ring_average(p2 / v2, q2, sp, r)
            est.append(fit_exponential(rm2, c2, r_fit=r_fit, offset=offset)[0])
        est = np.asarray(est)
        est = est[np.isfinite(est)]
        if est.size >= 3:
            k = est.size
            err = float(np.sqrt((k - 1) / k * np.sum((est - est.mean()) ** 2)))
            method = f"jackknife over {k} tiles"
    return xr.Dataset(
        {"correlation": (S.RADIUS, c, {"long_name": "ring-averaged spatial autocorrelation", "units": "1"}),
         "pairs": (S.RADIUS, w, {"long_name": "pixel pairs per ring"}),
         "xi": ((), xi, {"units": "nm", "long_name": "correlation length (C0 exp(-r/xi) fit)"}),
         "xi_err": ((), err, {"units": "nm", "method": method}),
         "C0": ((), c0), "offset": ((), b), "xi_1e": ((), crossing_length(rm, c), {"units": "nm"}),
         "r_mean": (S.RADIUS, rm, {"units": "nm", "long_name": "pair-weighted mean distance in the ring"}),
         "variance": ((), float(var))},
        coords={S.RADIUS: (S.RADIUS, r, S.coord_attrs(S.RADIUS, "distance"))},
        attrs={"n_pixels": int(m.sum()), "r_fit_nm": float(r_fit) if r_fit is not None else None,
               "model": "C0 exp(-r/xi) + offset" if offset else "C0 exp(-r/xi)"})


def _series(series, pixel_size, frame_time):
    import xarray as xr

    if isinstance(series, xr.Dataset):
        series = series[S.INTENSITY]
    if isinstance(series, xr.DataArray):
        if set(series.dims) != {S.TIME, S.Y, S.X}:
            raise InputError(f"series must have dims {S.SERIES_DIMS}, got {series.dims}")
        da = series.transpose(S.TIME, S.Y, S.X)
        sp = _spacing(da, pixel_size)
        if frame_time is None and S.TIME in da.coords and da.sizes[S.TIME] > 1:
            frame_time = float(np.median(np.diff(np.asarray(da[S.TIME].values, dtype=np.float64))))
        return np.asarray(da.values, dtype=np.float64), sp, frame_time
    arr = np.asarray(series, dtype=np.float64)
    if arr.ndim != 3:
        raise InputError(f"series must be 3-D (time, y, x), got shape {arr.shape}")
    return arr, _spacing(None, 1.0 if pixel_size is None else pixel_size), frame_time


def intensity_g4(series, lags, distances=None, *, mask=None, pixel_size=None, frame_time=None):
    """Equal-time spatial intensity correlation and four-point correlation ``g4(d, lag)`` of a series block.

    See the module docstring for the exact estimators.  The block is loaded into memory (select a region and
    a time range first, e.g. ``ds.intensity.isel(time=slice(0, 2000), y=..., x=...)``); it should be drift
    corrected.

    Parameters
    ----------
    series : xarray.DataArray (time, y, x), Dataset with ``intensity``, or 3-D array
    lags : sequence of int
        Lags in frames (0 allowed).
    distances : ring centres in nm, optional (default one per pixel up to a quarter of the smaller side)
    mask : bool (y, x), optional
        Pixels to use (default: pixels with a finite, positive temporal mean).
    pixel_size : float or (dy, dx), optional
        nm (default from the coordinates; 1 for a bare array, i.e. pixels).
    frame_time : float, optional
        s (default from the ``time`` coordinate); only labels the ``lag`` coordinate.

    Returns
    -------
    xarray.Dataset: ``g2_spatial (r)``, ``g4 (lag, r)``, ``q_mean (lag)`` (= ``<dI(t) dI(t+k)>``, i.e.
    ``g2(k) - 1``), ``xi_g2`` (1/e length of ``g2_spatial``, nm), ``xi4 (lag)`` (1/e lengths of ``g4``, nm, against
    ``r_mean (r)``, the mean pair distance in each ring);
    coordinates ``lag`` (s, or frames without a frame time) and ``lag_frames``.
    """
    import xarray as xr

    arr, sp, frame_time = _series(series, pixel_size, frame_time)
    n_t, ny, nx = arr.shape
    lags = np.atleast_1d(np.asarray(lags))
    if lags.ndim != 1 or lags.size == 0 or not np.all(np.equal(np.mod(lags, 1), 0)) or lags.min() < 0:
        raise InputError(f"lags must be non-negative integers (frames), got {lags!r}")
    lags = lags.astype(int)
    if lags.max() >= n_t - 1:
        raise InputError(f"the largest lag ({lags.max()} frames) needs a series longer than {n_t} frames")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = arr.mean(axis=0)
        m = np.isfinite(mean) & (mean > 0)
    if mask is not None:
        mk = _yx(mask).astype(bool)
        if mk.shape != (ny, nx):
            raise InputError(f"mask has shape {mk.shape}, the frames {(ny, nx)}")
        m &= mk
    if m.sum() < 4:
        raise InputError("the mask holds fewer than 4 usable pixels")
    dI = np.where(m, arr / np.where(m, mean, 1.0) - 1.0, 0.0)
    if distances is None:
        step = min(sp)
        distances = np.arange(0, int(min(ny * sp[0], nx * sp[1]) / 4 / step) + 1) * step
    r = np.asarray(distances, dtype=np.float64)
    batch = max(1, _BATCH // (4 * ny * nx))

    def spatial(stack_fn, n_frames):
        prod = pairs = None
        for a in range(0, n_frames, batch):
            p, q = masked_autocorrelation(stack_fn(a, min(a + batch, n_frames)), m, frames_axis=True,
                                          subtract_mean=False)
            prod = p if prod is None else prod + p
            pairs = q if pairs is None else pairs + q
        return prod, pairs

    # equal-time correlation of dI (dI has zero temporal mean per pixel)
    prod, pairs = spatial(lambda a, b: dI[a:b], n_t)
    centre = (ny - 1, nx - 1)
    _, g2s, w, rm = ring_average(prod / (prod[centre] / pairs[centre]), pairs, sp, r)
    g4 = np.full((lags.size, r.size), np.nan)
    q_mean = np.full(lags.size, np.nan)
    for i, k in enumerate(lags.tolist()):
        n_k = n_t - k
        total = 0.0
        for a in range(0, n_k, batch):
            b = min(a + batch, n_k)
            total += float(np.sum(dI[a:b] * dI[a + k:b + k]))
        q_mean[i] = total / (n_k * m.sum())

        def qstack(a, b, k=k, qm=q_mean[i]):
            return np.where(m, dI[a:b] * dI[a + k:b + k] - qm, 0.0)

        p, q = spatial(qstack, n_k)
        _, g4[i], _, _ = ring_average(p / (p[centre] / q[centre]), q, sp, r)
    xi4 = np.array([crossing_length(rm, g) for g in g4])
    lag_s = lags * frame_time if frame_time else lags.astype(np.float64)
    return xr.Dataset(
        {"g2_spatial": (S.RADIUS, g2s, {"long_name": "equal-time spatial intensity correlation"}),
         "g4": ((S.LAG, S.RADIUS), g4, {"long_name": "spatial correlation of the two-time products dI(t) dI(t+lag)"}),
         "q_mean": (S.LAG, q_mean, {"long_name": "<dI(t) dI(t+lag)> (g2 - 1)"}),
         "xi_g2": ((), crossing_length(rm, g2s), {"units": "nm", "long_name": "1/e length of g2_spatial"}),
         "r_mean": (S.RADIUS, rm, {"units": "nm", "long_name": "pair-weighted mean distance in the ring"}),
         "xi4": (S.LAG, xi4, {"units": "nm", "long_name": "1/e length of g4"}),
         "pairs": (S.RADIUS, w)},
        coords={S.RADIUS: (S.RADIUS, r, S.coord_attrs(S.RADIUS, "distance")),
                S.LAG: (S.LAG, lag_s, {"units": "s" if frame_time else "frame"}), "lag_frames": (S.LAG, lags)},
        attrs={"n_pixels": int(m.sum()), "n_frames": int(n_t),
               "definition": "dI = I/<I>_t - 1; Q = dI(t) dI(t+lag); g4 = <q(r) q(r+d)>/<q^2>, q = Q - <Q>"})
