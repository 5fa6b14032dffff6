"""Scattering profiles I(q) of diffraction patterns: radial averages with errors, comparisons, OZ and Guinier fits.

* :func:`radial_profile` - ring means of a pattern (or of the time mean of a series, pixel by pixel) with the
  standard error from the pixel scatter in the ring, or from Poisson counting statistics;
* :func:`compare_profiles` - difference of two profiles on the same rings, its propagated error and z-score;
* :func:`fit_ornstein_zernike` - ``I(q) = I0 / (1 + q^2 xi^2) + background`` (correlation length ``xi``);
* :func:`fit_guinier` - ``ln I = ln I0 - q^2 Rg^2 / 3`` over ``q Rg <= 1.3`` (radius of gyration ``Rg``).

Profiles are Datasets on ``q`` (ring centres, nm^-1) with the coordinates ``q_lo``, ``q_hi`` and ``q_mean``
(the mean q of the ring's pixels: the abscissa the fits use); lengths come out in nm.
"""

from __future__ import annotations

import numpy as np

from .. import schema as S
from ..errors import InputError
from ..kernels.rings import ring_average, ring_index
from .stem import camera_geometry

ERROR_MODES = ("scatter", "poisson")
#: Guinier range limit q Rg (spheres: the approximation holds to ~1.3)
GUINIER_QRG_MAX = 1.3


def _pattern(data, time_dim: str):
    """(2-D float64 pattern (ky, kx), frames averaged, the object carrying geometry) from the accepted inputs."""
    import xarray as xr

    obj = data
    if isinstance(data, xr.Dataset):
        if S.INTENSITY not in data:
            raise InputError(f"the dataset has no {S.INTENSITY!r} variable")
        data = data[S.INTENSITY]
    if isinstance(data, xr.DataArray):
        if S.KY not in data.dims or S.KX not in data.dims:
            raise InputError(f"a pattern needs dims ({S.KY!r}, {S.KX!r}), got {tuple(data.dims)}")
        others = [d for d in data.dims if d not in (S.KY, S.KX)]
        if others and others != [time_dim]:
            raise InputError(f"expected dims ({time_dim!r}, {S.KY!r}, {S.KX!r}) or ({S.KY!r}, {S.KX!r}), "
                             f"got {tuple(data.dims)}")
        n_frames = data.sizes[time_dim] if others else 1
        mean = data.mean(time_dim, dtype=np.float64) if others else data
        arr = np.asarray(mean.transpose(S.KY, S.KX).values, dtype=np.float64)
        return arr, n_frames, obj
    arr = np.asarray(data)
    if arr.ndim == 2:
        return arr.astype(np.float64), 1, None
    if arr.ndim == 3:
        return arr.mean(axis=0, dtype=np.float64), arr.shape[0], None
    raise InputError(f"expected a pattern (ky, kx) or a series (time, ky, kx), got an array of shape {arr.shape}")


def radial_profile(data, *, centre=None, calibration=None, q_bins=None, mask=None, error: str = "scatter",
                   time_dim: str = S.TIME, n_frames: int | None = None):
    """Ring-averaged intensity I(q) with error bars.

    Parameters
    ----------
    data : pattern ``(ky, kx)`` or series ``(time, ky, kx)`` (DataArray, Dataset with ``intensity``, or NumPy
        array with ``centre`` and ``calibration`` given); a series is averaged over time pixel by pixel first
    centre, calibration : beam centre (row, column; pixels) and nm^-1 per pixel (default: attributes or the
        ``ky``, ``kx`` coordinates, see :func:`ecm_dask.analysis.stem.camera_geometry`)
    q_bins : None (rings one pixel wide), a number of equal rings, or ring edges (nm^-1)
    mask : (ky, kx) bool, True for usable pixels (False: beam stop, bad pixels)
    error : ``"scatter"`` (default: sample standard deviation of the ring's pixel values / sqrt(n); includes
        speckle and any real variation inside the ring) or ``"poisson"`` (counting statistics of raw counts:
        ``sqrt(sum of the pixel means / n_frames) / n``)
    n_frames : frames a given mean pattern ``(ky, kx)`` averages (for ``"poisson"``; default 1, or the series'
        length when ``data`` is a series)

    Returns
    -------
    Dataset: ``intensity (q)``, ``intensity_err (q)``, ``n_pixels (q)``; coords ``q``, ``q_lo``, ``q_hi``,
    ``q_mean`` (nm^-1).  Non-finite pixels are left out.
    """
    import xarray as xr

    if error not in ERROR_MODES:
        raise InputError(f"error must be one of {ERROR_MODES}, got {error!r}")
    pattern, frames, obj = _pattern(data, time_dim)
    if n_frames is not None:
        if frames != 1:
            raise InputError("n_frames is for a mean pattern (ky, kx); a series (time, ky, kx) counts its own frames")
        frames = int(n_frames)
        if frames < 1:
            raise InputError(f"n_frames must be >= 1, got {n_frames!r}")
    n_frames = frames
    if obj is None:
        if centre is None or calibration is None:
            raise InputError("a NumPy pattern needs centre=(row, column) and calibration= (nm^-1 per pixel)")
        c, cal = (float(centre[0]), float(centre[1])), float(calibration)
    else:
        c, cal = camera_geometry(obj, centre, calibration)
    m = None if mask is None else np.asarray(getattr(mask, "values", mask))
    if m is not None and m.shape != pattern.shape:
        raise InputError(f"mask must have the camera shape {pattern.shape}, got {m.shape}")
    rings = ring_index(pattern.shape, c, cal, q_bins, m)
    mean, sem, count = ring_average(pattern, rings.labels, rings.n_rings)
    if error == "poisson":
        fin = np.where(np.isfinite(pattern), pattern, 0.0)
        lab = rings.labels.ravel()
        keep = lab >= 0
        total = np.bincount(lab[keep], weights=fin.ravel()[keep], minlength=rings.n_rings)
        with np.errstate(invalid="ignore", divide="ignore"):
            sem = np.where(count > 0, np.sqrt(np.maximum(total, 0.0) / n_frames) / count, np.nan)
    ds = xr.Dataset(
        {S.INTENSITY: ((S.Q,), mean, {S.ATTR_LONG_NAME: "ring-averaged intensity", S.ATTR_UNITS: "counts"}),
         S.INTENSITY_ERR: ((S.Q,), sem, {S.ATTR_LONG_NAME: f"standard error of the ring mean ({error})",
                                         S.ATTR_UNITS: "counts"}),
         S.N_PIXELS: ((S.Q,), count.astype(np.int64), {S.ATTR_LONG_NAME: "pixels in the ring"})},
        coords={S.Q: (S.Q, rings.q_centre, S.coord_attrs(S.Q, "ring centre")),
                S.Q_LO: (S.Q, rings.edges[:-1], S.coord_attrs(S.Q_LO, "ring inner edge")),
                S.Q_HI: (S.Q, rings.edges[1:], S.coord_attrs(S.Q_HI, "ring outer edge")),
                S.Q_MEAN: (S.Q, rings.q_mean, S.coord_attrs(S.Q_MEAN, "mean q of the ring's pixels"))},
        attrs={"error": error, "n_frames": int(n_frames), S.ATTR_K_CALIBRATION: cal, S.ATTR_BEAM_CENTRE: list(c)},
    )
    return ds


def _check_profile(p, name: str):
    import xarray as xr

    if not isinstance(p, xr.Dataset) or S.INTENSITY not in p or S.INTENSITY_ERR not in p or S.Q not in p.dims:
        raise InputError(f"{name} must be a profile from radial_profile (intensity, intensity_err on q)")


def compare_profiles(p1, p2):
    """``p1 - p2`` on the same rings, with the propagated error and the per-ring significance ``z``.

    Returns
    -------
    Dataset on ``q``: ``difference``, ``difference_err = sqrt(err1^2 + err2^2)``, ``z = difference / err``,
    ``ratio = p1 / p2``.
    """
    import xarray as xr

    _check_profile(p1, "p1")
    _check_profile(p2, "p2")
    for edge in (S.Q_LO, S.Q_HI):
        a, b = (np.asarray(p[edge].values if edge in p.coords else p[S.Q].values) for p in (p1, p2))
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-9, atol=0):
            raise InputError("the two profiles are on different q rings; compute both with the same q_bins")
    i1, i2 = p1[S.INTENSITY], p2[S.INTENSITY]
    diff = i1 - i2
    err = np.sqrt(p1[S.INTENSITY_ERR] ** 2 + p2[S.INTENSITY_ERR] ** 2)
    out = xr.Dataset({"difference": diff, "difference_err": err, "z": diff / err, "ratio": i1 / i2})
    for name, long_name, units in (("difference", "p1 - p2", "counts"),
                                   ("difference_err", "propagated standard error", "counts"),
                                   ("z", "significance of the difference (sigmas)", "1"), ("ratio", "p1 / p2", "1")):
        out[name].attrs = {S.ATTR_LONG_NAME: long_name, S.ATTR_UNITS: units}
    return out


def _fit_points(profile, q_range):
    q = np.asarray(profile[S.Q_MEAN].values if S.Q_MEAN in profile.coords else profile[S.Q].values, dtype=np.float64)
    y = np.asarray(profile[S.INTENSITY].values, dtype=np.float64)
    e = np.asarray(profile[S.INTENSITY_ERR].values, dtype=np.float64)
    ok = np.isfinite(q) & np.isfinite(y) & np.isfinite(e) & (e > 0)
    if q_range is not None:
        lo, hi = q_range
        ok &= (q >= (-np.inf if lo is None else lo)) & (q <= (np.inf if hi is None else hi))
    return q, y, e, ok


def _oz(q, i0, xi, bg):
    return i0 / (1.0 + (q * xi) ** 2) + bg


def fit_ornstein_zernike(profile, *, q_range=None, background: bool = True):
    """Fit ``I(q) = I0 / (1 + q^2 xi^2) + background`` (weighted by ``intensity_err``, absolute).

    Parameters
    ----------
    profile : Dataset from :func:`radial_profile`
    q_range : (q_lo, q_hi) in nm^-1 of the rings used (None: all)
    background : fit a constant background (else it is 0)

    Returns
    -------
    Dataset of scalars ``I0``, ``xi`` (nm), ``background`` and their ``*_err``, ``chi2`` (reduced), ``n_points``,
    and ``fit (q)``, the model on the profile's rings (NaN outside the fitted ones).
    """
    import xarray as xr
    from scipy.optimize import curve_fit

    _check_profile(profile, "profile")
    q, y, e, ok = _fit_points(profile, q_range)
    n_par = 3 if background else 2
    if ok.sum() < n_par + 1:
        raise InputError(f"Ornstein-Zernike fit needs at least {n_par + 1} rings with finite I and errors, "
                         f"got {int(ok.sum())} (widen q_range)")
    qs, ys, es = q[ok], y[ok], e[ok]
    bg0 = float(np.median(ys[-max(3, ys.size // 5):])) if background else 0.0
    i00 = max(float(ys[0] - bg0), float(ys.max()) * 1e-3, 1e-12)
    above = np.nonzero(ys - bg0 < 0.5 * (ys[0] - bg0))[0]
    xi0 = 1.0 / qs[above[0]] if above.size and qs[above[0]] > 0 else 1.0 / max(qs.mean(), 1e-12)
    if background:
        f, p0, lo, hi = _oz, [i00 * (1 + (qs[0] * xi0) ** 2), xi0, bg0], [0, 0, -np.inf], [np.inf, np.inf, np.inf]
    else:
        def f(qq, i0, xi):
            return _oz(qq, i0, xi, 0.0)
        p0, lo, hi = [i00 * (1 + (qs[0] * xi0) ** 2), xi0], [0, 0], [np.inf, np.inf]
    try:
        popt, pcov = curve_fit(f, qs, ys, p0=p0, sigma=es, absolute_sigma=True, bounds=(lo, hi), max_nfev=10000)
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"Ornstein-Zernike fit failed: {exc}") from None
    perr = np.sqrt(np.clip(np.diag(pcov), 0, None))
    resid = (ys - f(qs, *popt)) / es
    if not background:
        popt, perr = np.append(popt, 0.0), np.append(perr, 0.0)
    model = np.where(ok, _oz(q, *popt), np.nan)
    ds = xr.Dataset(coords={S.Q: profile[S.Q]})
    for name, v, err, unit in (("I0", popt[0], perr[0], "counts"), ("xi", popt[1], perr[1], "nm"),
                               ("background", popt[2], perr[2], "counts")):
        ds[name] = xr.DataArray(float(v), attrs={S.ATTR_UNITS: unit})
        ds[f"{name}_err"] = xr.DataArray(float(err), attrs={S.ATTR_UNITS: unit})
    ds["chi2"] = float(np.sum(resid ** 2) / max(1, qs.size - n_par))
    ds["n_points"] = int(qs.size)
    ds["fit"] = ((S.Q,), model, {S.ATTR_LONG_NAME: "Ornstein-Zernike fit", S.ATTR_UNITS: "counts"})
    ds.attrs.update({"model": "I = I0 / (1 + q^2 xi^2) + background", "q_range": [float(qs.min()), float(qs.max())]})
    return ds


def _weighted_line(x, y, s):
    """Weighted least squares y = a + b x with absolute errors s: (a, b), covariance, chi2."""
    w = 1.0 / s ** 2
    a_mat = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
    rhs = np.array([(w * y).sum(), (w * x * y).sum()])
    cov = np.linalg.inv(a_mat)
    coef = cov @ rhs
    chi2 = float(np.sum(w * (y - coef[0] - coef[1] * x) ** 2))
    return coef, cov, chi2


def fit_guinier(profile, *, q_min: float | None = None, q_max: float | None = None,
                qrg_max: float = GUINIER_QRG_MAX, n_start: int = 5, max_iter: int = 50):
    """Guinier fit ``ln I = ln I0 - q^2 Rg^2 / 3`` over the low-q rings with ``q Rg <= qrg_max``.

    Starts from the first ``n_start`` usable rings above ``q_min`` (or all up to ``q_max`` if given), then
    iterates: fit, set the upper limit to ``qrg_max / Rg``, refit, until the set of rings stops changing.
    Weighted by ``(I / intensity_err)^2`` (errors of ln I).

    Returns
    -------
    Dataset of scalars ``Rg`` (nm), ``I0`` and their ``*_err``, ``chi2`` (reduced), ``n_points``, ``q_max_used``,
    ``qRg_max`` (= Rg x the largest q used), and ``fit (q)`` on the rings used.
    """
    import xarray as xr

    _check_profile(profile, "profile")
    q, y, e, ok = _fit_points(profile, (q_min, None))
    ok &= y > 0
    idx = np.nonzero(ok)[0]
    if idx.size < 3:
        raise InputError(f"Guinier fit needs at least 3 low-q rings with I > 0 and finite errors, got {idx.size}")
    x_all, ly_all, ls_all = q ** 2, np.log(np.where(y > 0, y, np.nan)), e / np.where(y > 0, y, np.nan)
    use = idx[q[idx] <= q_max] if q_max is not None else idx[:max(3, int(n_start))]
    rg = None
    for _ in range(int(max_iter)):
        if use.size < 3:
            raise InputError(f"Guinier fit: only {use.size} rings with q Rg <= {qrg_max} (Rg = {rg} nm); "
                             "finer rings or a smaller beam stop are needed")
        coef, cov, chi2 = _weighted_line(x_all[use], ly_all[use], ls_all[use])
        if not coef[1] < 0:
            raise InputError("Guinier fit: ln I does not fall with q^2 over the low-q rings (no Guinier regime)")
        rg = float(np.sqrt(-3.0 * coef[1]))
        limit = qrg_max / rg if q_max is None else min(q_max, qrg_max / rg)
        new = idx[q[idx] <= limit]
        if np.array_equal(new, use):
            break
        use = new
    coef, cov, chi2 = _weighted_line(x_all[use], ly_all[use], ls_all[use])
    rg = float(np.sqrt(-3.0 * coef[1]))
    rg_err = float(1.5 * np.sqrt(cov[1, 1]) / rg)
    i0 = float(np.exp(coef[0]))
    model = np.full(q.shape, np.nan)
    model[use] = np.exp(coef[0] + coef[1] * x_all[use])
    ds = xr.Dataset(coords={S.Q: profile[S.Q]})
    ds["Rg"] = xr.DataArray(rg, attrs={S.ATTR_UNITS: "nm", S.ATTR_LONG_NAME: "radius of gyration"})
    ds["Rg_err"] = xr.DataArray(rg_err, attrs={S.ATTR_UNITS: "nm"})
    ds["I0"] = xr.DataArray(i0, attrs={S.ATTR_UNITS: "counts"})
    ds["I0_err"] = xr.DataArray(float(i0 * np.sqrt(cov[0, 0])), attrs={S.ATTR_UNITS: "counts"})
    ds["chi2"] = float(chi2 / max(1, use.size - 2))
    ds["n_points"] = int(use.size)
    ds["q_max_used"] = float(q[use].max())
    ds["qRg_max"] = float(q[use].max() * rg)
    ds["fit"] = ((S.Q,), model, {S.ATTR_LONG_NAME: "Guinier fit", S.ATTR_UNITS: "counts"})
    ds.attrs.update({"model": "ln I = ln I0 - q^2 Rg^2 / 3", "qrg_max": float(qrg_max)})
    return ds
