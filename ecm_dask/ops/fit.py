"""Fits of g2 curves mapped over dask blocks: maps of τ, β, contrast, baseline with errors.

``g2 = baseline + contrast * exp(-2 (t / tau)^beta)`` (or the two-term model) is fitted by the batched kernels
of :mod:`ecm_dask.kernels.kww` / :mod:`ecm_dask.kernels.kww2` (no Python loop over curves); each dask task
fits one block of curves.  :func:`fit_labelled` is the generic labelled fit: any leading dims (``(y, x)``,
``(q,)``, ``(temperature, q)``...), named outputs (one variable per output of the model, no packed array);
:func:`fit_kww` is the fit of a g2 dataset of :func:`ecm_dask.ops.correlate` used by the pipeline.
"""

from __future__ import annotations

import numpy as np

from .. import schema as S
from ..kernels import kww as KW
from ..kernels import kww2 as KW2
from ..kernels import lm as LM
from ..kernels.models import UNIT_LAG, get_model

PARAM = S.PARAM
PARAM2 = "param2"
#: reliability rules: a series should last >= 40 mean relaxation times <tau> = tau Gamma(1/beta) / beta (the
#: literature's 40 tau for beta = 1; a stretched decay needs longer: per-pixel fits of series of 50 tau are
#: ~18 % low at beta = 0.4-0.65, see docs/bias.md), frames should be <= 0.1 tau apart
MIN_TAUS_IN_SERIES = 40.0
MAX_FRAME_OVER_TAU = 0.1
#: a fitted tau whose standard error exceeds this fraction of it is imprecise: tau < 2 sigma_tau, i.e. not
#: significant at 2 standard errors (the rule the kernels apply to the contrast, CONTRAST_SIGMAS = 2).  A
#: singular covariance (undefined error) counts as imprecise; a fixed tau never is.  On the measured SiO2 g2
#: (tests/test_real_xpcs.py) the ok fits of the three good attenuations have errors of 2-19 % of tau, the
#: noisiest file's fits 1000 x tau or undefined.
IMPRECISE_TAU_REL_ERR = 0.5
QUALITY_SHORT_SERIES = 1
QUALITY_UNDERSAMPLED = 2
QUALITY_IMPRECISE = 4
QUALITY_FLAGS = {QUALITY_SHORT_SERIES: "series_shorter_than_40_mean_tau",
                 QUALITY_UNDERSAMPLED: "frame_time_longer_than_0.1_tau",
                 QUALITY_IMPRECISE: "tau_error_above_half_tau"}
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
WEIGHTS = ("pairs", "none", "sigma")
#: one-term variables read from ``start1`` by the two-term fit (errors, iterations optional)
START1_VARS = ("baseline", "contrast", "tau", "beta", "chi2", "status")


def _flag_meanings(names: dict) -> str:
    return " ".join(v.replace(" ", "_") for v in names.values())


def _output_table(spec, *, model_free: bool, quality: bool) -> dict:
    """name -> (core dims, dtype, attrs) of the labelled outputs of a model, in block order."""
    out = {}
    one = spec.name == S.MODEL_KWW
    for key, unit in zip(spec.params, spec.units):
        name = key if one else KWW2_NAMES[key]
        u = "s" if unit == UNIT_LAG else "1"
        what = "KWW" if one else "two-term KWW"
        out[name] = ((), np.float32, {"units": u, "long_name": f"{what} {key}"})
        out[f"{name}_err"] = ((), np.float32, {"units": u, "long_name": f"standard error of {key}"})
    if one:
        out["covariance"] = ((PARAM, PARAM2), np.float64, {"long_name": "parameter covariance"})
    out["chi2"] = ((), np.float32, {"long_name": "reduced chi-square" if one
                                    else "reduced chi-square of the two-term fit"})
    out["n_iter"] = ((), np.int16, {"long_name": "Levenberg-Marquardt iterations"})
    out["status"] = ((), np.uint8, {"long_name": "fit status", "flag_values": list(spec.status_names),
                                    "flag_meanings": _flag_meanings(spec.status_names)})
    if "f_stat" in spec.outputs:
        out[S.FIT_F_STAT] = ((), np.float32, {"long_name": "F statistic of two KWW terms against one"})
        out[S.FIT_F_PVALUE] = ((), np.float64, {"long_name": "p-value of the F-test of two KWW terms against one"})
        out[S.FIT_SUPPORTED] = ((), np.bool_, {"long_name": f"second component supported (F-test p < "
                                                            f"{KW2.SELECTION_ALPHA} and components separable)"})
    if model_free:
        out["tau_model_free"] = ((), np.float32, {
            "units": "s", "smoothing_lag_points": MODEL_FREE_SMOOTH,
            "long_name": "time for the smoothed g2 - baseline to fall to 1/e^2 of its initial contrast (no model)"})
    if quality:
        out[S.QUALITY] = ((), np.uint8, {"long_name": "reliability flags (literature rules)",
                                         "flag_masks": list(QUALITY_FLAGS),
                                         "flag_meanings": " ".join(QUALITY_FLAGS.values())})
    return out


def quality_flags(tau, beta, tau_err, *, frame_time=None, series_s=None, max_tau_rel_err=None) -> np.ndarray:
    """Reliability bit flags (:data:`QUALITY_FLAGS`) of fitted one-term parameters (NumPy).

    Parameters
    ----------
    tau, beta, tau_err : arrays of the same shape (tau in s)
    frame_time, series_s : frame time and series length in s; None leaves the short-series and
        undersampled bits unset
    max_tau_rel_err : set :data:`QUALITY_IMPRECISE` where ``tau_err > max_tau_rel_err * tau`` or the error is
        undefined (NaN); None leaves it unset

    Returns
    -------
    uint8 array; 0 where tau is not finite
    """
    tau = np.asarray(tau)  # dtype kept: the rules compare the maps as stored (float32)
    q = np.zeros(tau.shape, dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        if series_s is not None:
            q |= np.where(series_s < MIN_TAUS_IN_SERIES * KW.mean_tau(tau, beta), QUALITY_SHORT_SERIES, 0).astype(
                np.uint8)
        if frame_time is not None:
            q |= np.where(frame_time > MAX_FRAME_OVER_TAU * tau, QUALITY_UNDERSAMPLED, 0).astype(np.uint8)
        if max_tau_rel_err is not None:
            q |= np.where(~(np.asarray(tau_err) <= max_tau_rel_err * tau), QUALITY_IMPRECISE, 0).astype(np.uint8)
    return np.where(np.isfinite(tau), q, 0).astype(np.uint8)


def _start1_fit(n: int, arrays: dict):
    """A :class:`~ecm_dask.kernels.kww.KWWFit` from the flattened one-term variables of ``start1``."""
    def get(name, fill=np.nan):
        return np.asarray(arrays[name], dtype=np.float64).reshape(n) if name in arrays else np.full(n, fill)

    params = np.stack([get(k) for k in KW.PARAMS], axis=1)
    errors = np.stack([get(f"{k}_err") for k in KW.PARAMS], axis=1)
    return KW.KWWFit(params=params, errors=errors, cov=np.full((n, 4, 4), np.nan), chi2_red=get("chi2"),
                     n_iter=get("n_iter", 0).astype(np.int32), status=get("status").astype(np.uint8))


def _fit_block(g2, *extra, spec, names, sigma: bool, start1_names, lag, pairs, bounds, fixed, baseline, max_iter,
               frame_time, series_s, max_tau_rel_err):
    """apply_ufunc core: (..., lag) curves [, (..., lag) sigma] [, one-term variables (...)] -> one array per
    output name (``names``), each (..., *core dims)."""
    shape = g2.shape[:-1]
    n_lag = g2.shape[-1]
    flat = np.ascontiguousarray(g2.reshape(-1, n_lag), dtype=np.float64)
    n = flat.shape[0]
    extra = list(extra)
    sig = np.asarray(extra.pop(0), dtype=np.float64).reshape(n, n_lag) if sigma else None
    kw = dict(sigma=sig, pairs=None if sigma else pairs, bounds=bounds, fixed=fixed, baseline=baseline,
              max_iter=max_iter)
    out = {}
    if spec.name == S.MODEL_KWW:
        fit = KW.fit_kww(flat, lag, **kw)
        out["covariance"] = fit.cov
        out["tau_model_free"] = KW.tau_crossing(flat, lag, smooth=MODEL_FREE_SMOOTH)
        key = dict(zip(spec.params, spec.params))
    else:
        start1 = _start1_fit(n, dict(zip(start1_names, extra))) if start1_names else None
        fit = KW2.fit_kww2(flat, lag, start1=start1, **kw)
        out[S.FIT_F_STAT], out[S.FIT_F_PVALUE], out[S.FIT_SUPPORTED] = fit.f_stat, fit.p_value, fit.supported
        key = KWW2_NAMES
    for j, p in enumerate(spec.params):
        out[key[p]] = fit.params[:, j]
        out[f"{key[p]}_err"] = fit.errors[:, j]
    out["chi2"], out["n_iter"], out["status"] = fit.chi2_red, fit.n_iter, fit.status
    if S.QUALITY in names:
        j_tau, j_beta = spec.params.index("tau"), spec.params.index("beta")
        f32 = fit.params.astype(np.float32)  # the rules read the maps as stored
        out[S.QUALITY] = quality_flags(f32[:, j_tau], f32[:, j_beta], fit.errors[:, j_tau].astype(np.float32),
                                       frame_time=frame_time, series_s=series_s, max_tau_rel_err=max_tau_rel_err)
    res = []
    for name, (core, dtype, _) in names.items():
        v = np.asarray(out[name])
        res.append(v.astype(dtype).reshape(*shape, *v.shape[1:]))
    return tuple(res)


def fit_labelled(curves, model: str = S.MODEL_KWW, *, sigma=None, pairs=None, bounds: dict | None = None,
                 fixed: dict | None = None, baseline: str | float = "free", max_iter: int = 100, start1=None,
                 frame_time: float | None = None, series_s: float | None = None,
                 max_tau_rel_err: float | None = None):
    """Fit every g2 curve of a labelled array over any leading dims; one named output per variable.

    Parameters
    ----------
    curves : xarray.DataArray with a ``lag`` dim (lags in s as its coordinate, > 0, increasing) and any other
        dims, e.g. ``(y, x, lag)``, ``(q, lag)``, ``(temperature, q, lag)``; NaN marks missing points.  Numpy-
        or dask-backed (numpy: one block per 128 along y/x, else one block).
    model : ``"kww"`` or ``"kww2"`` (:data:`ecm_dask.kernels.models.MODELS`)
    sigma : DataArray of absolute standard errors of ``curves`` (same dims; chi2 with these errors and an
        unscaled covariance), or None for relative weights from ``pairs``
    pairs : (lag,) frame pairs per lag point (relative weights), or None (uniform) -- used without ``sigma``
    bounds, fixed, baseline, max_iter : as :func:`ecm_dask.kernels.kww.fit_kww` / ``kww2.fit_kww2`` (times in s;
        names of the model's parameters)
    start1 : Dataset of a one-term fit of the same curves (``baseline, contrast, tau, beta, chi2, status``, e.g.
        from this function or :func:`fit_kww`), for ``model="kww2"`` only: the start and null model of the
        two-term fit (:func:`ecm_dask.kernels.kww2.fit_kww2` ``start1=``) instead of a second one-term fit
    frame_time, series_s : s; with them the one-term ``quality`` has the short-series and undersampled bits
    max_tau_rel_err : the imprecise bit of ``quality`` where ``tau_err > max_tau_rel_err * tau`` (None: not set)

    Returns
    -------
    Dataset over the leading dims of ``curves`` (coordinates kept): per parameter its value and ``*_err``
    (float32), ``chi2`` (reduced), ``n_iter``, ``status``; for ``kww`` also ``covariance (..., param, param2)``,
    ``tau_model_free`` and ``quality`` (uint8 bit flags, :data:`QUALITY_FLAGS`); for ``kww2`` ``f_statistic``,
    ``f_pvalue`` and ``second_supported``.  Lazy (dask).

    Raises
    ------
    ValueError
        If ``curves`` is not a DataArray with a ``lag`` dim, ``sigma`` does not have its dims, the model is
        unknown, or ``start1`` is given for the one-term model, lacks a variable or has other leading dims.
        Bad curves never raise: they get a status code.
    """
    import xarray as xr

    spec = get_model(model)
    if not isinstance(curves, xr.DataArray) or S.LAG not in curves.dims:
        raise ValueError(f"curves must be an xarray.DataArray with a {S.LAG!r} dim")
    lag = np.asarray(curves[S.LAG].values, dtype=np.float64)
    if curves.chunks is None:
        curves = curves.chunk({d: 128 for d in (S.Y, S.X) if d in curves.dims})
    curves = curves.chunk({S.LAG: -1})
    lead = [d for d in curves.dims if d != S.LAG]
    inputs, core = [curves], [[S.LAG]]
    if sigma is not None:
        if not isinstance(sigma, xr.DataArray) or set(sigma.dims) != set(curves.dims):
            raise ValueError(f"sigma must be a DataArray with the dims of curves {curves.dims}")
        inputs.append(sigma.transpose(*curves.dims).chunk(dict(zip(curves.dims, curves.chunks))))
        core.append([S.LAG])
    start1_names = ()
    if start1 is not None:
        if spec.name != S.MODEL_KWW2:
            raise ValueError("start1 (a one-term fit to start from) is only used by model='kww2'")
        missing = [v for v in START1_VARS if v not in start1]
        if missing:
            raise ValueError(f"start1 must be a one-term fit Dataset with {START1_VARS}; missing {missing}")
        start1_names = tuple(v for v in (*START1_VARS, *(f"{k}_err" for k in KW.PARAMS), "n_iter") if v in start1)
        for v in start1_names:
            da = start1[v]
            if set(da.dims) != set(lead):
                raise ValueError(f"start1[{v!r}] must have the leading dims of curves {tuple(lead)}, got {da.dims}")
            inputs.append(da.transpose(*lead).chunk(dict(zip(lead, curves.chunks[:len(lead)]))))
            core.append([])
    one = spec.name == S.MODEL_KWW
    names = _output_table(spec, model_free=one, quality=one)
    used = {d for c, _, _ in names.values() for d in c}
    sizes = {d: spec.n_params for d in (PARAM, PARAM2) if d in used}
    kw = dict(spec=spec, names=names, sigma=sigma is not None, start1_names=start1_names, lag=lag,
              pairs=None if pairs is None else np.asarray(pairs, dtype=np.float64), bounds=bounds, fixed=fixed,
              baseline=baseline, max_iter=max_iter, frame_time=frame_time, series_s=series_s,
              max_tau_rel_err=max_tau_rel_err)
    arrays = xr.apply_ufunc(_fit_block, *inputs, input_core_dims=core,
                            output_core_dims=[list(c) for c, _, _ in names.values()], dask="parallelized",
                            output_dtypes=[d for _, d, _ in names.values()], keep_attrs=False,
                            dask_gufunc_kwargs={"output_sizes": sizes}, kwargs=kw)
    ds = xr.Dataset()
    for (name, (_, _, attrs)), arr in zip(names.items(), arrays):
        ds[name] = arr
        ds[name].attrs.update(attrs)
    if one:
        ds = ds.assign_coords({PARAM: list(spec.params), PARAM2: list(spec.params)})
    return ds


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
    if options.get("weights", "pairs") not in WEIGHTS:
        raise ParameterError(f"fit weights must be one of {WEIGHTS}, got {options['weights']!r}")
    max_iter = options.get("max_iter", 100)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or not 1 <= max_iter <= MAX_ITER:
        raise ParameterError(f"fit max_iter must be a whole number in [1, {MAX_ITER}], got {max_iter!r}")
    bounds, fixed = options.get("bounds") or {}, options.get("fixed") or {}
    if not isinstance(bounds, dict) or not isinstance(fixed, dict):
        raise ParameterError("fit bounds and fixed must be mappings of parameter name to values")
    for key, value in bounds.items():
        if not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise ParameterError(f"fit bounds[{key!r}] must be (low, high), got {value!r}")
        for v in value:
            if v is not None and not _real(v, allow_inf=True):
                raise ParameterError(f"fit bounds[{key!r}] must be numbers (or null for no bound), got {value!r}")
    scalars = {k: v for k, v in fixed.items() if np.ndim(v) == 0}  # per-pixel arrays (API only) checked in the fit
    for key, value in scalars.items():
        if not _real(value):
            raise ParameterError(f"fit fixed[{key!r}] must be a finite number, got {value!r}")
    baseline = options.get("baseline", "free")
    if not isinstance(baseline, str) and not _real(baseline):
        raise ParameterError(f"fit baseline must be 'free', 'fixed' or a finite number, got {baseline!r}")
    lag = np.array([1.0, 2.0, 4.0])
    spec = get_model(model)
    try:
        b = _bounds2(bounds) if model == S.MODEL_KWW2 else bounds
        lo, hi = LM.parse_bounds(lag, b, spec.default_bounds(lag), spec.params, spec.taus)
        LM.parse_fixed(scalars, baseline, 1, spec.params, spec.tau_names)
    except (ValueError, TypeError) as err:
        raise ParameterError(f"fit options: {err}") from None
    for key, value in scalars.items():  # a fixed value outside the bounds would be a map of impossible numbers
        j = spec.params.index(key)
        if j not in spec.taus and not lo[j] <= float(value) <= hi[j]:
            raise ParameterError(f"fit fixed[{key!r}] = {value!r} is outside its bounds [{lo[j]:g}, {hi[j]:g}]")


#: the largest iteration cap a fit accepts (the solver converges in tens of iterations; more is a typo)
MAX_ITER = 10_000


def _real(value, allow_inf: bool = False) -> bool:
    """A real number (not a bool, not a string), finite unless ``allow_inf`` (never NaN)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return not np.isnan(value) and (allow_inf or np.isfinite(value))


def fit_kww(g2, *, weights: str = "pairs", bounds: dict | None = None, fixed: dict | None = None,
            baseline: str | float = "free", max_iter: int = 100, model: str = S.MODEL_KWW, start1=None,
            max_tau_rel_err: float | None = None):
    """Fit every pixel's g2 to ``baseline + contrast * exp(-2 (t/tau)^beta)``.

    Parameters
    ----------
    g2 : the Dataset from :func:`ecm_dask.ops.correlate` (needs ``g2`` and, for weights, ``pairs``; any dims
        besides ``lag``, e.g. ``(y, x)`` or ``(q,)``)
    weights : ``"pairs"`` (relative weights proportional to the frame pairs per lag point; default), ``"none"``,
        or ``"sigma"``: absolute errors from the ``g2_err`` variable (chi2 and covariance with these errors)
    bounds : override default bounds, e.g. ``{"beta": (0.2, 2.0), "tau": (lo_s, hi_s)}`` (tau in seconds);
        defaults: beta in [0.1, 2.5], tau between one frame and 10x the series length, contrast > 0
    fixed : fix parameters, e.g. ``{"beta": 1.0}`` or ``{"baseline": 1.0}`` (tau in seconds)
    baseline : ``"free"`` (default) or ``"fixed"`` (= 1) or a number
    max_iter : iteration cap of the Levenberg-Marquardt solver
    model : ``"kww"`` (default, one term) or ``"kww2"``: two terms
        ``baseline + contrast1 exp(-2 (t/tau1)^beta1) + contrast2 exp(-2 (t/tau2)^beta2)``, ``tau1 <= tau2``
        (:func:`ecm_dask.kernels.kww2.fit_kww2`; ``bounds``/``fixed`` take ``tau1``, ``beta2``, ...; ``bounds`` also the
        one-term names ``tau``, ``beta``, ``contrast`` for both components)
    start1 : with ``model="kww2"``, the one-term maps of the same g2 and options (the Dataset this function
        returns for ``model="kww"``): the two-term fit starts from them and tests against them instead of
        fitting one term again (see :func:`fit_labelled`)
    max_tau_rel_err : threshold of the ``quality`` bit ``tau_error_above_half_tau`` (:data:`QUALITY_IMPRECISE`):
        set where ``tau_err > max_tau_rel_err * tau``.  None (default): :data:`IMPRECISE_TAU_REL_ERR` with
        ``weights="sigma"`` (absolute errors), not evaluated with relative weights; ``numpy.inf`` never sets it.

    Returns
    -------
    Dataset on the dims of ``g2`` without ``lag``: ``tau`` (s), ``beta``, ``contrast``, ``baseline``, their ``*_err``,
    ``chi2`` (reduced), ``n_iter``, ``status`` (fit status codes), ``quality`` (bit flags: series < 40 <tau> = 40 tau
    Gamma(1/beta)/beta, frame time > 0.1 tau, tau error > max_tau_rel_err tau), ``tau_model_free`` (s; where g2 falls
    to 1/e^2 of its initial contrast) and ``covariance (..., param, param2)``.
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
    sigma = None
    if weights == "sigma":
        if S.G2_ERR not in g2:
            raise ValueError(f"weights='sigma' needs the {S.G2_ERR!r} variable (standard errors of g2)")
        sigma = g2[S.G2_ERR]
    if max_tau_rel_err is None and weights == "sigma":
        max_tau_rel_err = IMPRECISE_TAU_REL_ERR
    if max_tau_rel_err is not None and not max_tau_rel_err > 0:
        raise ValueError(f"max_tau_rel_err must be > 0 (inf: never flag), got {max_tau_rel_err!r}")
    kw = dict(sigma=sigma, pairs=pairs if weights == "pairs" else None, fixed=fixed, baseline=baseline,
              max_iter=max_iter)
    attrs = {"weights": weights, "baseline_mode": str(baseline), "fixed": str(fixed or {}),
             "bounds": {k: [float(v[0]), float(v[1])] for k, v in b.items()},
             "series_length_s": series_s, "frame_time_s": frame_time}
    if model == S.MODEL_KWW2:
        b = _bounds2(b)
        attrs["bounds"] = {k: [float(v[0]), float(v[1])] for k, v in b.items()}
        ds = fit_labelled(curves, model, bounds=b, start1=start1, **kw)
        ds.attrs.update({"model": S.MODEL_KWW2, "model_formula": KW2.KWW2.formula,
                         "selection": f"F-test, alpha = {KW2.SELECTION_ALPHA}", **attrs})
    else:
        if start1 is not None:
            raise ValueError("start1 is only used by model='kww2'")
        ds = fit_labelled(curves, model, bounds=b, frame_time=frame_time, series_s=series_s,
                          max_tau_rel_err=None if max_tau_rel_err == np.inf else max_tau_rel_err, **kw)
        ds.attrs.update({"model": KW.KWW.formula, **attrs})
        if max_tau_rel_err not in (None, np.inf):
            ds[S.QUALITY].attrs["max_tau_rel_err"] = float(max_tau_rel_err)
    ds.attrs.update({"g2_estimator": g2.attrs.get("estimator"), "g2_normalization": g2.attrs.get("normalization")})
    return ds
