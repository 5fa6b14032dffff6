"""KWW fits of every pixel's g2, mapped over dask blocks: maps of τ, β, contrast, baseline with errors.

``g2 = baseline + contrast * exp(-2 (t / tau)^beta)`` is fitted by the batched kernel of
:mod:`ecm_dask.kernels.kww` (no Python loop over pixels); each dask task fits one block of pixels.
"""

from __future__ import annotations

import numpy as np

from .. import schema as S
from ..kernels import kww as KW
from ..kernels import kww2 as KW2

PARAM = S.PARAM
PARAM2 = "param2"
#: reliability rules: a series should last >= 40 mean relaxation times <tau> = tau Gamma(1/beta) / beta (the
#: literature's 40 tau for beta = 1; a stretched decay needs longer: per-pixel fits of series of 50 tau are
#: ~18 % low at beta = 0.4-0.65, see docs/bias.md), frames should be <= 0.1 tau apart
MIN_TAUS_IN_SERIES = 40.0
MAX_FRAME_OVER_TAU = 0.1
QUALITY_SHORT_SERIES = 1
QUALITY_UNDERSAMPLED = 2
QUALITY_FLAGS = {QUALITY_SHORT_SERIES: "series_shorter_than_40_mean_tau",
                 QUALITY_UNDERSAMPLED: "frame_time_longer_than_0.1_tau"}
#: lag points averaged (running mean) before the model-free 1/e^2 crossing is searched.  1 (none) by
#: default: multi-tau channels already average 2**level frames, and on the synthetic wire extra smoothing
#: over 3/5/7 lag points raised the median |log10 tau error| from 0.133 to 0.136/0.141/0.143 and its bias.
MODEL_FREE_SMOOTH = 1
MAP_UNITS = {"tau": "s", "beta": "1", "contrast": "1", "baseline": "1"}
#: fit models of :func:`fit_kww`
MODELS = (S.MODEL_KWW, S.MODEL_KWW2)
#: names of the two-term maps (kernel order of :data:`ecm_dask.kernels.kww2.PARAMS2`)
KWW2_NAMES = dict(zip(KW2.PARAMS2, (S.FIT_BASELINE, S.FIT_CONTRAST1, S.FIT_TAU1, S.FIT_BETA1, S.FIT_CONTRAST2,
                                     S.FIT_TAU2, S.FIT_BETA2)))


def _fit_block(g2, *, lag, sigma_mode, pairs, bounds, fixed, baseline, max_iter):
    """apply_ufunc core: (..., lag) -> packed (..., 4 params + 4 errors + 16 cov + chi2 + n_iter + status + tau_mf)."""
    shape = g2.shape[:-1]
    flat = np.ascontiguousarray(g2.reshape(-1, g2.shape[-1]), dtype=np.float64)
    fit = KW.fit_kww(flat, lag, pairs=pairs if sigma_mode == "pairs" else None, bounds=bounds, fixed=fixed,
                     baseline=baseline, max_iter=max_iter)
    tau_mf = KW.tau_crossing(flat, lag, smooth=MODEL_FREE_SMOOTH)
    out = np.concatenate([fit.params, fit.errors, fit.cov.reshape(-1, 16), fit.chi2_red[:, None],
                          fit.n_iter[:, None].astype(np.float64), fit.status[:, None].astype(np.float64),
                          np.asarray(tau_mf, dtype=np.float64)[:, None]], axis=1)
    return out.reshape(*shape, out.shape[-1])


def _fit2_block(g2, *, lag, sigma_mode, pairs, bounds, fixed, baseline, max_iter):
    """apply_ufunc core of the two-term fit: (..., lag) -> packed (..., 7 params + 7 errors + chi2 + n_iter
    + status + F + p-value + supported)."""
    shape = g2.shape[:-1]
    flat = np.ascontiguousarray(g2.reshape(-1, g2.shape[-1]), dtype=np.float64)
    fit = KW2.fit_kww2(flat, lag, pairs=pairs if sigma_mode == "pairs" else None, bounds=bounds, fixed=fixed,
                       baseline=baseline, max_iter=max_iter)
    out = np.concatenate([fit.params, fit.errors, fit.chi2_red[:, None], fit.n_iter[:, None].astype(np.float64),
                          fit.status[:, None].astype(np.float64), fit.f_stat[:, None], fit.p_value[:, None],
                          fit.supported[:, None].astype(np.float64)], axis=1)
    return out.reshape(*shape, out.shape[-1])


def _bounds2(b: dict) -> dict:
    """One-term bound names (tau, beta, contrast) apply to both components unless given per component."""
    out = {}
    for key, value in b.items():
        if key in ("tau", "beta", "contrast"):
            out.setdefault(key + "1", value)
            out.setdefault(key + "2", value)
        else:
            out[key] = value
    return out


def _maps2(packed, curves, kw, frame_time, series_s):
    import xarray as xr

    ds = xr.Dataset(coords={S.Y: curves[S.Y], S.X: curves[S.X]})
    for i, key in enumerate(KW2.PARAMS2):
        name = KWW2_NAMES[key]
        unit = MAP_UNITS[key.rstrip("12")]
        ds[name] = packed.isel(_out=i, drop=True).astype(np.float32)
        ds[name].attrs.update({"units": unit, "long_name": f"two-term KWW {key}"})
        ds[f"{name}_err"] = packed.isel(_out=7 + i, drop=True).astype(np.float32)
        ds[f"{name}_err"].attrs.update({"units": unit, "long_name": f"standard error of {key}"})
    ds["chi2"] = packed.isel(_out=14, drop=True).astype(np.float32)
    ds["chi2"].attrs["long_name"] = "reduced chi-square of the two-term fit"
    ds["n_iter"] = packed.isel(_out=15, drop=True).astype(np.int16)
    ds["n_iter"].attrs["long_name"] = "Levenberg-Marquardt iterations"
    ds["status"] = packed.isel(_out=16, drop=True).astype(np.uint8)
    ds["status"].attrs.update({"long_name": "fit status", "flag_values": list(KW.FIT_STATUS2),
                               "flag_meanings": " ".join(v.replace(" ", "_") for v in KW.FIT_STATUS2.values())})
    ds[S.FIT_F_STAT] = packed.isel(_out=17, drop=True).astype(np.float32)
    ds[S.FIT_F_STAT].attrs["long_name"] = "F statistic of two KWW terms against one"
    ds[S.FIT_F_PVALUE] = packed.isel(_out=18, drop=True)
    ds[S.FIT_F_PVALUE].attrs["long_name"] = "p-value of the F-test of two KWW terms against one"
    ds[S.FIT_SUPPORTED] = packed.isel(_out=19, drop=True) > 0.5
    ds[S.FIT_SUPPORTED].attrs["long_name"] = (f"second component supported (F-test p < {KW2.SELECTION_ALPHA} "
                                               "and components separable)")
    ds.attrs.update({"model": S.MODEL_KWW2, "model_formula": "g2 = baseline + contrast1 * exp(-2 (t / tau1)^beta1) "
                     "+ contrast2 * exp(-2 (t / tau2)^beta2), tau1 <= tau2",
                     "selection": f"F-test, alpha = {KW2.SELECTION_ALPHA}",
                     "weights": kw["sigma_mode"], "baseline_mode": str(kw["baseline"]), "fixed": str(kw["fixed"] or {}),
                     "bounds": {k: [float(v[0]), float(v[1])] for k, v in kw["bounds"].items()},
                     "series_length_s": series_s, "frame_time_s": frame_time})
    return ds


FIT_OPTIONS = ("weights", "bounds", "fixed", "baseline", "max_iter", "model")


def check_fit_options(options: dict | None) -> None:
    """Raise :class:`~ecm_dask.errors.ParameterError` naming the option if fit options (as given to
    :func:`fit_kww`, e.g. from a config file) are invalid — before any work starts, not inside a task."""
    from ..errors import ParameterError

    options = dict(options or {})
    unknown = sorted(set(options) - set(FIT_OPTIONS))
    if unknown:
        raise ParameterError(f"unknown fit option(s) {unknown}; known: {list(FIT_OPTIONS)}")
    model = options.get("model", S.MODEL_KWW)
    if model not in MODELS:
        raise ParameterError(f"fit model must be one of {MODELS}, got {model!r}")
    if options.get("weights", "pairs") not in ("pairs", "none"):
        raise ParameterError(f"fit weights must be 'pairs' or 'none', got {options['weights']!r}")
    max_iter = options.get("max_iter", 100)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ParameterError(f"fit max_iter must be a positive integer, got {max_iter!r}")
    bounds, fixed = options.get("bounds") or {}, options.get("fixed") or {}
    if not isinstance(bounds, dict) or not isinstance(fixed, dict):
        raise ParameterError("fit bounds and fixed must be mappings of parameter name to values")
    for key, value in bounds.items():
        if not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise ParameterError(f"fit bounds[{key!r}] must be (low, high), got {value!r}")
    lag = np.array([1.0, 2.0, 4.0])
    scalars = {k: v for k, v in fixed.items() if np.ndim(v) == 0}
    try:
        if model == S.MODEL_KWW2:
            KW2._bounds2(lag, _bounds2(bounds))
            KW2._fixed2(scalars, options.get("baseline", "free"), 1)
        else:
            KW._bounds(lag, bounds)
            KW._fixed(scalars, options.get("baseline", "free"), 1)
    except (ValueError, TypeError) as err:
        raise ParameterError(f"fit options: {err}") from None


def fit_kww(g2, *, weights: str = "pairs", bounds: dict | None = None, fixed: dict | None = None,
            baseline: str | float = "free", max_iter: int = 100, model: str = S.MODEL_KWW):
    """Fit every pixel's g2 to ``baseline + contrast * exp(-2 (t/tau)^beta)``.

    Parameters
    ----------
    g2 : the Dataset from :func:`ecm_dask.ops.correlate` (needs ``g2`` and, for weights, ``pairs``)
    weights : ``"pairs"`` (relative weights proportional to the frame pairs per lag point; default) or ``"none"``
    bounds : override default bounds, e.g. ``{"beta": (0.2, 2.0), "tau": (lo_s, hi_s)}`` (tau in seconds);
        defaults: beta in [0.1, 2.5], tau between one frame and 10x the series length, contrast > 0
    fixed : fix parameters, e.g. ``{"beta": 1.0}`` or ``{"baseline": 1.0}`` (tau in seconds)
    baseline : ``"free"`` (default) or ``"fixed"`` (= 1) or a number
    max_iter : iteration cap of the Levenberg-Marquardt solver
    model : ``"kww"`` (default, one term) or ``"kww2"``: two terms
        ``baseline + contrast1 exp(-2 (t/tau1)^beta1) + contrast2 exp(-2 (t/tau2)^beta2)``, ``tau1 <= tau2``
        (:func:`ecm_dask.kernels.kww2.fit_kww2`; ``bounds``/``fixed`` take ``tau1``, ``beta2``, ...; ``bounds`` also the
        one-term names ``tau``, ``beta``, ``contrast`` for both components)

    Returns
    -------
    Dataset on (y, x): ``tau`` (s), ``beta``, ``contrast``, ``baseline``, their ``*_err``, ``chi2`` (reduced),
    ``n_iter``, ``status`` (fit status codes), ``quality`` (bit flags: series < 40 <tau> = 40 tau Gamma(1/beta)/beta, frame time > 0.1 tau),
    ``tau_model_free`` (s; where g2 falls to 1/e^2 of its initial contrast) and ``covariance (y, x, param, param2)``.
    Pixels whose g2 is NaN (dead, saturated, out of view) get NaN maps and status ``bad input``.

    With ``model="kww2"``: ``tau1``, ``beta1``, ``contrast1``, ``tau2``, ``beta2``, ``contrast2``, ``baseline``
    and their ``*_err``, ``chi2``, ``n_iter``, ``status`` (with ``second component not supported``),
    ``f_statistic``, ``f_pvalue`` (F-test of two terms against one) and ``second_supported`` (bool).
    """
    import xarray as xr

    if not isinstance(g2, xr.Dataset) or "g2" not in g2:
        raise ValueError("fit_kww needs the Dataset returned by ecm_dask.ops.correlate (with 'g2' and 'pairs')")
    check_fit_options({"weights": weights, "bounds": bounds, "fixed": fixed, "baseline": baseline,
                       "max_iter": max_iter, "model": model})
    curves = g2["g2"]
    lag = np.asarray(g2[S.LAG].values, dtype=np.float64)
    frame_time = float(g2.attrs.get("frame_time_s", lag[0]))
    n_frames = int(g2.attrs.get("n_frames", round(2 * lag[-1] / frame_time)))
    series_s = n_frames * frame_time
    b = {"tau": (frame_time, 10.0 * series_s), "beta": (0.1, 2.5)}
    b.update(bounds or {})
    pairs = np.asarray(g2["pairs"].values, dtype=np.float64) if "pairs" in g2 else None
    if weights == "pairs" and pairs is None:
        raise ValueError("weights='pairs' needs the 'pairs' variable of the g2 dataset")
    if curves.chunks is None:
        curves = curves.chunk({S.Y: 128, S.X: 128})
    curves = curves.chunk({S.LAG: -1})
    kw = dict(lag=lag, sigma_mode=weights, pairs=pairs, bounds=b, fixed=fixed, baseline=baseline, max_iter=max_iter)
    if model == S.MODEL_KWW2:
        kw["bounds"] = _bounds2(b)
        packed = xr.apply_ufunc(_fit2_block, curves, input_core_dims=[[S.LAG]], output_core_dims=[["_out"]],
                                dask="parallelized", output_dtypes=[np.float64], keep_attrs=False,
                                dask_gufunc_kwargs={"output_sizes": {"_out": 20}}, kwargs=kw)
        ds = _maps2(packed, curves, kw, frame_time, series_s)
        ds.attrs.update({"g2_estimator": g2.attrs.get("estimator"), "g2_normalization": g2.attrs.get("normalization")})
        return ds
    n_out = 4 + 4 + 16 + 4
    packed = xr.apply_ufunc(_fit_block, curves, input_core_dims=[[S.LAG]], output_core_dims=[["_out"]],
                            dask="parallelized", output_dtypes=[np.float64], keep_attrs=False,
                            dask_gufunc_kwargs={"output_sizes": {"_out": n_out}}, kwargs=kw)
    names = KW.PARAMS
    ds = xr.Dataset(coords={S.Y: curves[S.Y], S.X: curves[S.X]})
    for i, name in enumerate(names):
        ds[name] = packed.isel(_out=i, drop=True).astype(np.float32)
        ds[name].attrs.update({"units": MAP_UNITS[name], "long_name": f"KWW {name}"})
        ds[f"{name}_err"] = packed.isel(_out=4 + i, drop=True).astype(np.float32)
        ds[f"{name}_err"].attrs.update({"units": MAP_UNITS[name], "long_name": f"standard error of {name}"})
    cov = packed.isel(_out=slice(8, 24)).data.reshape(*packed.shape[:2], 4, 4)
    ds["covariance"] = ((S.Y, S.X, PARAM, PARAM2), cov, {"long_name": "parameter covariance"})
    ds = ds.assign_coords({PARAM: list(names), PARAM2: list(names)})
    ds["chi2"] = packed.isel(_out=24, drop=True).astype(np.float32)
    ds["chi2"].attrs["long_name"] = "reduced chi-square"
    ds["n_iter"] = packed.isel(_out=25, drop=True).astype(np.int16)
    ds["n_iter"].attrs["long_name"] = "Levenberg-Marquardt iterations"
    status = packed.isel(_out=26, drop=True).astype(np.uint8)
    ds["status"] = status
    ds["status"].attrs.update({"long_name": "fit status", "flag_values": list(KW.FIT_STATUS),
                               "flag_meanings": " ".join(v.replace(" ", "_") for v in KW.FIT_STATUS.values())})
    ds["tau_model_free"] = packed.isel(_out=27, drop=True).astype(np.float32)
    ds["tau_model_free"].attrs.update({"units": "s", "smoothing_lag_points": MODEL_FREE_SMOOTH,
                                       "long_name": "time for the smoothed g2 - baseline to fall to 1/e^2 of its "
                                                    "initial contrast (no model)"})
    tau = ds["tau"]
    tau_mean = xr.apply_ufunc(KW.mean_tau, tau, ds["beta"], dask="parallelized", output_dtypes=[np.float64])
    quality = (xr.where(series_s < MIN_TAUS_IN_SERIES * tau_mean, QUALITY_SHORT_SERIES, 0)
               + xr.where(frame_time > MAX_FRAME_OVER_TAU * tau, QUALITY_UNDERSAMPLED, 0))
    ds["quality"] = quality.where(np.isfinite(tau), 0).astype(np.uint8)
    ds["quality"].attrs.update({"long_name": "reliability flags (literature rules)",
                                "flag_masks": list(QUALITY_FLAGS), "flag_meanings": " ".join(QUALITY_FLAGS.values())})
    ds.attrs.update({"model": "g2 = baseline + contrast * exp(-2 (t / tau)^beta)", "weights": weights,
                     "baseline_mode": str(baseline), "fixed": str(fixed or {}),
                     "bounds": {k: [float(v[0]), float(v[1])] for k, v in b.items()},
                     "series_length_s": series_s, "frame_time_s": frame_time,
                     "g2_estimator": g2.attrs.get("estimator"), "g2_normalization": g2.attrs.get("normalization")})
    return ds
