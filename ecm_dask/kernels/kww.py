"""Batched Kohlrausch-Williams-Watts fits of g2 curves (pure NumPy/SciPy/Numba: no dask, no xarray).

Model
-----
::

    g2(t) = baseline + A exp(-2 (t / tau)^beta)

(the intensity autocorrelation of a field whose correlation decays as a stretched exponential, with the
Siegert factor 2 in the exponent).  ``tau`` is in the unit of ``lag``.

Fitting
-------
:func:`fit_kww` fits all curves of an ``(N, L)`` batch in one compiled loop over the pixels
(:mod:`._kww_numba`, ``nogil``): Levenberg-Marquardt on ``(baseline, A, log tau, beta)`` with the analytic
Jacobian, 4x4 normal equations solved by a scaled Cholesky factorisation, adaptive (Nielsen) damping with
Marquardt scaling, and bounds by projection.  Starting values come from :func:`initial_guess` (model free:
baseline from the tail, A from the first points, tau where the curve falls to ``A / e^2``, beta = 0.7).
Non-finite values (NaN, inf) mark missing points; the fit uses the others.

Weights
-------
* ``sigma`` (absolute errors, (L,) or (N, L)): chi2 = sum ((g2 - model) / sigma)^2 and the covariance is
  ``(J^T W J)^-1`` as it is (like ``curve_fit(absolute_sigma=True)``);
* else ``pairs`` (L,): relative weights proportional to the number of frame pairs behind each point
  (variance ~ 1 / pairs), covariance scaled by the reduced chi2 (like ``curve_fit(absolute_sigma=False)``);
* else uniform weights, also relative.

Status codes (first rule that applies, in this order)
-----------------------------------------------------
1. ``FIT_BAD_INPUT``: no usable point (all values or all lags non-finite, or all weights zero), or a
   non-finite value for a fixed parameter; parameters NaN.
2. ``FIT_TOO_FEW_POINTS``: fewer than ``max(5, n_free + 1)`` usable points; parameters NaN.
3. ``FIT_NO_DECAY``: the model-free initial contrast (mean of the first 3 points minus the tail
   baseline) is <= 0: a flat or rising curve, whatever the fit made of it.
4. ``FIT_TOO_FAST``: fitted tau at or below the first lag (1e-6 relative; the default lower bound of tau
   is the first lag): the decay is faster than the sampling (its contrast is then mostly not significant).
5. ``FIT_NO_DECAY``: fitted tau beyond the last lag (no decay inside the window), or a contrast that is
   not significant: ``A <= 2 sigma_A`` (or its error undefined: singular covariance).
6. ``FIT_AT_BOUND``: a fitted parameter within 1e-6 (relative) of one of its bounds.
7. ``FIT_NOT_CONVERGED``: ``max_iter`` iterations without meeting the tolerance.
8. ``FIT_OK``.

The tau rules (4, 5) only apply when tau is fitted, the contrast rule (5) only when A is fitted.
A decay much faster than the first lag leaves (almost) nothing inside the window: such a curve ends as
``FIT_TOO_FAST`` when the fit pins tau on the first lag, else as ``FIT_NO_DECAY`` (the contrast left at
the first lag is not significant); never as ``FIT_OK``.

Performance
-----------
About 1e5 fits/s per core for 71-point curves (one thread; ~12 iterations on average for noisy data).
The exponentials are evaluated by a polynomial kernel that vectorises (:func:`._kww_numba.exp_inplace`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kww_numba as _nb

PARAMS = ("baseline", "contrast", "tau", "beta")
FIT_OK, FIT_NOT_CONVERGED, FIT_AT_BOUND, FIT_NO_DECAY, FIT_TOO_FAST, FIT_TOO_FEW_POINTS, FIT_BAD_INPUT = range(7)
#: two-term fits only (:mod:`.kww2`): the second KWW component is not supported by the data
FIT_NOT_SUPPORTED = 7
FIT_STATUS = {
    FIT_OK: "ok",
    FIT_NOT_CONVERGED: "not converged",
    FIT_AT_BOUND: "parameter at bound",
    FIT_NO_DECAY: "no decay in lag window",
    FIT_TOO_FAST: "decay faster than first lag",
    FIT_TOO_FEW_POINTS: "too few points",
    FIT_BAD_INPUT: "bad input",
}
#: status codes of the two-term fit (:func:`.kww2.fit_kww2`): those of the one-term fit and FIT_NOT_SUPPORTED
FIT_STATUS2 = {**FIT_STATUS, FIT_NOT_SUPPORTED: "second component not supported"}

#: default bounds (tau: first lag .. 10 x the series length, taken as 2 x the last lag)
BETA_BOUNDS = (0.1, 2.5)
CONTRAST_BOUNDS = (0.0, 10.0)
BASELINE_BOUNDS = (-np.inf, np.inf)
TAU_MAX_OVER_LAST_LAG = 20.0
#: starting beta, and the floor of the starting contrast (relative to max(|baseline|, 1))
BETA_START = 0.7
CONTRAST_FLOOR = 1e-6
#: a parameter this close (relative) to a bound is reported as at the bound
BOUND_RTOL = 1e-6
#: a contrast below this many standard errors is not significant
CONTRAST_SIGMAS = 2.0
#: first points averaged for the starting contrast
N_HEAD = 3

_B, _A, _TAU, _BETA = range(4)


@dataclass
class KWWFit:
    """Result of :func:`fit_kww` for N curves.

    Attributes
    ----------
    params : (N, 4) float64
        baseline, contrast A, tau (unit of ``lag``), beta; NaN where the status is bad input or too few points.
    errors : (N, 4) float64
        standard errors, ``sqrt(diag(cov))``; 0 for fixed parameters.
    cov : (N, 4, 4) float64
        covariance of (baseline, A, tau, beta) from the Jacobian at the solution (scaled by ``chi2_red``
        for relative weights); rows/columns of fixed parameters are 0, NaN if singular.
    chi2_red : (N,) float64
        ``sum w r^2 / (n_points - n_free)``.
    n_iter : (N,) int32
        Levenberg-Marquardt iterations.
    status : (N,) uint8
        ``FIT_*`` codes (see :data:`FIT_STATUS` and the module docstring for the precedence).
    """

    params: np.ndarray
    errors: np.ndarray
    cov: np.ndarray
    chi2_red: np.ndarray
    n_iter: np.ndarray
    status: np.ndarray


# ------------------------------------------------------------------------------------------ helpers
def _curves(g2) -> np.ndarray:
    y = np.asarray(g2)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2:
        raise ValueError(f"g2 must be (N, L), got shape {y.shape}")
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    return np.ascontiguousarray(y)


def _lags(lag, n_lag: int) -> np.ndarray:
    t = np.asarray(lag, dtype=np.float64)
    if t.shape != (n_lag,):
        raise ValueError(f"lag must have one entry per g2 point ({n_lag}), got shape {t.shape}")
    tf = t[np.isfinite(t)]
    if (tf <= 0).any():
        raise ValueError("lags must be > 0 (lag 0 is never fitted)")
    if (np.diff(tf) <= 0).any():
        raise ValueError("lags must be strictly increasing")
    return np.ascontiguousarray(t)


def _lag_range(t: np.ndarray) -> tuple[float, float]:
    tf = t[np.isfinite(t)]
    return (float(tf[0]), float(tf[-1])) if tf.size else (np.nan, np.nan)


def _per_pixel(value, n: int, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    if v.ndim == 0:
        return np.full(n, float(v))
    v = v.reshape(-1)
    if v.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have one value per curve ({n}), got shape {v.shape}")
    return v


def _guess_raw(y: np.ndarray, t: np.ndarray, baseline) -> np.ndarray:
    """(N, 4): baseline, raw contrast, crossing lag (NaN if none), number of finite points."""
    base = np.full(y.shape[0], np.nan) if baseline is None else _per_pixel(baseline, y.shape[0], "baseline")
    out = np.empty((y.shape[0], 4))
    _nb.guess_batch(y, t, base, out)
    return out


def _guess_from_raw(raw: np.ndarray, lag_last: float) -> np.ndarray:
    b, a, tau = raw[:, 0], raw[:, 1], raw[:, 2]
    p = np.empty((raw.shape[0], 4))
    p[:, _B] = b
    with np.errstate(invalid="ignore"):
        p[:, _A] = np.maximum(a, CONTRAST_FLOOR * np.maximum(np.abs(b), 1.0))
    p[:, _TAU] = np.where(np.isfinite(tau), tau, 2.0 * lag_last)
    p[:, _BETA] = BETA_START
    p[raw[:, 3] == 0] = np.nan
    return p


def default_bounds(lag) -> dict:
    """Default bounds for lags ``lag``: tau from the first lag to 20x the last (10x a series of 2x the
    last lag), beta in [0.1, 2.5], contrast in [0, 10], baseline unbounded."""
    first, last = _lag_range(np.asarray(lag, dtype=np.float64))
    return {"baseline": BASELINE_BOUNDS, "contrast": CONTRAST_BOUNDS,
            "tau": (first, TAU_MAX_OVER_LAST_LAG * last), "beta": BETA_BOUNDS}


def _bounds(t: np.ndarray, bounds, defaults: dict | None = None, names=PARAMS,
            taus=(_TAU,)) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) arrays in the order of ``names``: ``defaults`` (default: :func:`default_bounds`) overridden by
    ``bounds``; ``taus`` are the indices of the relaxation times (must be positive)."""
    b = default_bounds(t) if defaults is None else dict(defaults)
    for key, value in (bounds or {}).items():
        if key not in names:
            raise ValueError(f"unknown parameter {key!r} in bounds; expected one of {names}")
        lo, hi = value
        b[key] = (-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))
    lo = np.array([b[k][0] for k in names], dtype=np.float64)
    hi = np.array([b[k][1] for k in names], dtype=np.float64)
    if np.isfinite(t).any() and not (lo <= hi).all():
        raise ValueError(f"bounds must have lo <= hi, got {dict(zip(names, zip(lo, hi)))}")
    for j in taus:
        if lo[j] < 0 or hi[j] <= 0:
            raise ValueError("tau bounds must be positive")
    return lo, hi


def _fixed(fixed, baseline, n: int, names=PARAMS, taus=("tau",)) -> dict:
    """Per-pixel values of the fixed parameters (``fixed`` and the ``baseline`` option), checked."""
    out = {}
    for key, value in (fixed or {}).items():
        if key not in names:
            raise ValueError(f"unknown parameter {key!r} in fixed; expected one of {names}")
        out[key] = _per_pixel(value, n, f"fixed[{key!r}]")
    if isinstance(baseline, str):
        if baseline == "fixed":
            value = 1.0
        elif baseline == "free":
            value = None
        else:
            raise ValueError(f"baseline must be 'free', 'fixed' or a number, got {baseline!r}")
    else:
        value = float(baseline)
    if value is not None:
        if "baseline" in out and not np.allclose(out["baseline"], value):
            raise ValueError("baseline is fixed twice with different values (baseline= and fixed=)")
        out["baseline"] = np.full(n, value)
    for key in taus:
        if key in out and not (out[key][np.isfinite(out[key])] > 0).all():
            raise ValueError("a fixed tau must be > 0")
    return out


def _weights(sigma, pairs, y: np.ndarray) -> tuple[np.ndarray, bool]:
    n, n_lag = y.shape
    if sigma is not None:
        sig = np.asarray(sigma, dtype=np.float64)
        if sig.shape == (n_lag,):
            sig = sig[None, :]
        if sig.shape not in ((1, n_lag), (n, n_lag)):
            raise ValueError(f"sigma must be (L,) or (N, L) = {(n, n_lag)}, got shape {np.shape(sigma)}")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            w = np.where(np.isfinite(sig) & (sig > 0), 1.0 / (sig * sig), 0.0)
        return np.ascontiguousarray(w), True
    if pairs is not None:
        pr = np.asarray(pairs, dtype=np.float64)
        if pr.shape != (n_lag,):
            raise ValueError(f"pairs must be (L,) = ({n_lag},), got shape {pr.shape}")
        return np.where(np.isfinite(pr) & (pr > 0), pr, 0.0)[None, :], False
    return np.ones((1, n_lag)), False


def _to_external(th, start, free, lo, hi, lo_i, hi_i, cov, chi2, n_points, absolute: bool, taus):
    """Solver results -> external parameters (log tau -> tau, exactly on a bound when the solver was; fixed
    values exactly), their covariance (by the Jacobian of log tau -> tau, scaled by the reduced chi2 unless
    the weights were absolute), reduced chi2 and standard errors."""
    params = th.copy()
    jac = np.ones(th.shape)
    for j in taus:
        tau = np.exp(th[:, j])
        params[:, j] = np.where(th[:, j] == lo_i[j], lo[j], np.where(th[:, j] == hi_i[j], hi[j], tau))
        jac[:, j] = params[:, j]  # d tau / d log tau
    fitted = np.isfinite(th).all(axis=1)
    params[:, ~free] = np.where(fitted[:, None], start[:, ~free], np.nan)  # fixed values exactly
    cov *= jac[:, :, None] * jac[:, None, :]
    n_free = int(free.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2_red = chi2 / (n_points - n_free)
        if not absolute:
            cov *= chi2_red[:, None, None]
        errors = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    return params, cov, chi2_red, errors


def _convergence_status(p, free, lo, hi, converged, rtol: float) -> np.ndarray:
    """Status codes from the solver alone: ok, not converged, or a free parameter within ``rtol`` of a bound."""
    status = np.full(p.shape[0], FIT_OK, dtype=np.uint8)
    status[~np.asarray(converged, dtype=bool)] = FIT_NOT_CONVERGED
    near = np.zeros(p.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        for j in np.flatnonzero(free):
            for b in (lo[j], hi[j]):
                if np.isfinite(b):
                    near |= np.abs(p[:, j] - b) <= rtol * abs(b)
    status[near] = FIT_AT_BOUND
    return status


def _status(params, errors, n_points, free, lo, hi, lag_first, lag_last, contrast0, converged,
            bound_rtol=BOUND_RTOL):
    """Status codes from fit results (vectorised; the precedence of the module docstring).

    ``params``/``errors`` (N, 4) external; ``free`` (4,) bool; ``lo``/``hi`` (4,) external bounds;
    ``contrast0`` (N,) raw model-free starting contrast; ``converged`` (N,) bool.  Errors are NaN where
    the covariance is singular (then the contrast counts as not significant).  ``bound_rtol``: distance
    (relative) to a bound that counts as on it (also applied to tau at the first lag).
    """
    n = params.shape[0]
    n_free = int(np.count_nonzero(free))
    p = params
    status = _convergence_status(p, free, lo, hi, converged, bound_rtol)
    with np.errstate(invalid="ignore"):
        no_decay = np.zeros(n, dtype=bool)
        if free[_TAU]:
            no_decay |= p[:, _TAU] > lag_last
        if free[_A]:
            no_decay |= ~(p[:, _A] > CONTRAST_SIGMAS * errors[:, _A]) | ~(p[:, _A] > 0)
        status[no_decay] = FIT_NO_DECAY
        if free[_TAU]:
            status[p[:, _TAU] <= lag_first * (1.0 + bound_rtol)] = FIT_TOO_FAST
        status[~(contrast0 > 0)] = FIT_NO_DECAY
    status[n_points < max(5, n_free + 1)] = FIT_TOO_FEW_POINTS
    status[n_points == 0] = FIT_BAD_INPUT
    return status


# ---------------------------------------------------------------------------------------------- API
def kww_model(lag, params) -> np.ndarray:
    """KWW g2 model ``baseline + A exp(-2 (t / tau)^beta)``.

    Parameters
    ----------
    lag : (L,) array of lags (same unit as tau)
    params : (N, 4) or (4,) array of (baseline, contrast A, tau, beta)

    Returns
    -------
    (N, L) float64 array (N = 1 for a single parameter set).
    """
    t = np.asarray(lag, dtype=np.float64)[None, :]
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    if p.shape[-1] != 4:
        raise ValueError(f"params must be (N, 4), got shape {p.shape}")
    b, a, tau, beta = (p[:, j, None] for j in range(4))
    return b + a * np.exp(-2.0 * (t / tau) ** beta)


def mean_tau(tau, beta):
    """Mean relaxation time of a KWW decay, ``<tau> = integral of exp(-(t/tau)^beta) dt = tau Gamma(1/beta) / beta``.

    Equal to ``tau`` for ``beta = 1``, longer for stretched decays (1.37 tau at beta = 0.65, 3.32 tau at 0.4):
    the time scale that sets how many independent relaxations a series of given length holds.

    Parameters
    ----------
    tau, beta : arrays (broadcast together); NaN or non-positive values give NaN

    Returns
    -------
    float64 array
    """
    from scipy.special import gamma

    t = np.asarray(tau, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((t > 0) & (b > 0), t * gamma(1.0 / b) / b, np.nan)


def initial_guess(g2, lag, baseline_fixed=None) -> np.ndarray:
    """Robust, model-free starting values for :func:`fit_kww`.

    Parameters
    ----------
    g2 : (N, L) curves (NaN/inf mark missing points)
    lag : (L,) lags, > 0 and increasing
    baseline_fixed : None (estimate), or a scalar / (N,) array: the baseline to use

    Returns
    -------
    (N, 4) float64 array of (baseline, A, tau, beta):

    * baseline: median of the last ~20 % of the finite points (or ``baseline_fixed``);
    * A: mean of the first 3 finite points minus the baseline, floored at ``1e-6 max(|baseline|, 1)``;
    * tau: the lag where ``g2 - baseline`` first falls below ``A / e^2`` (linear interpolation in log lag;
      the first lag if the first point already is below), ``2 lag[-1]`` if it never does;
    * beta: 0.7.

    Rows without a finite point are NaN.
    """
    y = _curves(g2)
    t = _lags(lag, y.shape[1])
    return _guess_from_raw(_guess_raw(y, t, baseline_fixed), _lag_range(t)[1])


def smooth_curves(y: np.ndarray, window: int) -> np.ndarray:
    """NaN-aware centred running mean over ``window`` neighbouring lag points (shrinking at the ends)."""
    if window <= 1:
        return y
    half = window // 2
    finite = np.isfinite(y)
    v = np.where(finite, y, 0.0)
    cs = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(v, axis=1)], axis=1)
    cn = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(finite, axis=1)], axis=1)
    idx = np.arange(y.shape[1])
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, y.shape[1])
    n = cn[:, hi] - cn[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (cs[:, hi] - cs[:, lo]) / n
    return np.where(finite & (n > 0), out, np.nan)


def tau_crossing(g2, lag, baseline=None, smooth: int = 1) -> np.ndarray:
    """Model-free relaxation time: where ``g2 - baseline`` first falls below ``A / e^2``.

    ``A`` is the mean of the first 3 finite points minus the baseline; for a KWW curve the crossing is at
    ``t = tau`` exactly (for any beta).  Interpolated linearly in log lag between the bracketing points.

    Parameters
    ----------
    g2 : (N, L) curves (NaN/inf mark missing points)
    lag : (L,) lags, > 0 and increasing
    baseline : None (median of the last ~20 % of the finite points), or a scalar / (N,) array
    smooth : running mean over this many neighbouring lag points first (1 = none); on noisy per-pixel
        curves 3 keeps a noise spike from ending the search early

    Returns
    -------
    (N,) float64 crossing lags (unit of ``lag``); NaN where the curve never falls below the level, where
    the contrast is not positive, or where there is no finite point.
    """
    y = smooth_curves(_curves(g2), int(smooth))
    t = _lags(lag, y.shape[1])
    return _guess_raw(y, t, baseline)[:, 2].copy()


def fit_kww(g2, lag, *, sigma=None, pairs=None, bounds=None, fixed=None, baseline="free", max_iter=100,
            tol=1e-10, p0=None) -> KWWFit:
    """Fit ``g2 = baseline + A exp(-2 (t / tau)^beta)`` to every curve of a batch.

    Parameters
    ----------
    g2 : (N, L) array (float32 or float64; NaN/inf mark missing points); a (L,) curve is taken as N = 1
    lag : (L,) lags > 0, strictly increasing (non-finite lags are skipped)
    sigma : (L,) or (N, L) absolute standard errors of g2 (points with sigma <= 0 or non-finite are skipped)
    pairs : (L,) frame pairs per lag point, relative weights ~ pairs (used when ``sigma`` is None)
    bounds : dict overriding default bounds, e.g. ``{"tau": (lo, hi), "beta": (lo, hi),
        "contrast": (0, hi), "baseline": (lo, hi)}`` (None = unbounded side).  Defaults: tau in
        ``[lag[0], 20 lag[-1]]``, beta in [0.1, 2.5], contrast in [0, 10], baseline unbounded.
    fixed : dict of parameters held fixed, e.g. ``{"beta": 1.0}``; values scalar or (N,) arrays (a curve
        whose fixed value is not finite is not fitted: bad input); fixed parameters have zero errors
    baseline : ``"free"`` (default), ``"fixed"`` (= 1.0) or a number to fix it at
    max_iter : Levenberg-Marquardt iteration cap
    tol : convergence when a full Gauss-Newton step would lower chi2 by less than ``tol * chi2``
    p0 : (4,) or (N, 4) starting values (baseline, A, tau, beta); non-finite entries fall back to
        :func:`initial_guess`; clipped into the bounds

    Returns
    -------
    KWWFit
        parameters, standard errors, covariance, reduced chi2, iterations and status codes (see the
        module docstring for their precedence).  Never raises for a bad curve: it gets a status code.
    """
    y = _curves(g2)
    n, n_lag = y.shape
    t = _lags(lag, n_lag)
    lag_first, lag_last = _lag_range(t)
    lo, hi = _bounds(t, bounds)
    fix = _fixed(fixed, baseline, n)
    free = np.array([k not in fix for k in PARAMS])
    w, absolute = _weights(sigma, pairs, y)
    max_iter = int(max_iter)
    if max_iter < 0 or not tol > 0:
        raise ValueError("max_iter must be >= 0 and tol > 0")

    raw = _guess_raw(y, t, fix.get("baseline"))
    start = _guess_from_raw(raw, lag_last)
    if p0 is not None:
        user = np.broadcast_to(np.asarray(p0, dtype=np.float64), (n, 4))
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(user) & ((np.arange(4) != _TAU) | (user > 0))
        start = np.where(usable, user, start)
    for key, value in fix.items():
        start[:, PARAMS.index(key)] = value
    unfixable = ~np.isfinite(start[:, ~free]).all(axis=1)  # a non-finite fixed value: not fitted

    with np.errstate(divide="ignore", invalid="ignore"):
        th0 = start.copy()
        th0[:, _TAU] = np.log(start[:, _TAU])
        s = np.log(t)
        lo_i, hi_i = lo.copy(), hi.copy()
        lo_i[_TAU], hi_i[_TAU] = np.log(lo[_TAU]), np.log(hi[_TAU])
    th = np.empty((n, 4))
    cov = np.empty((n, 4, 4))
    chi2 = np.empty(n)
    n_points = np.empty(n, dtype=np.int64)
    n_iter = np.empty(n, dtype=np.int32)
    conv = np.empty(n, dtype=np.bool_)
    _nb.fit_batch(y, s, w, th0, free, lo_i, hi_i, max_iter, float(tol), th, cov, chi2, n_points, n_iter, conv)

    n_points[unfixable] = 0
    params, cov, chi2_red, errors = _to_external(th, start, free, lo, hi, lo_i, hi_i, cov, chi2, n_points,
                                                 absolute, (_TAU,))
    status = _status(params, errors, n_points, free, lo, hi, lag_first, lag_last, raw[:, 1], conv)
    return KWWFit(params=params, errors=np.ascontiguousarray(errors), cov=cov, chi2_red=chi2_red,
                  n_iter=n_iter, status=status)
