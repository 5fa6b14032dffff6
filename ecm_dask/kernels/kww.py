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
   baseline) is <= 0: a flat or rising curve.  Such a curve is not fitted (its status could not change):
   parameters, errors and chi2 NaN, 0 iterations.  On noisy maps these are most of the background pixels,
   which otherwise take the longest fits (a wandering search for a decay that is not there).
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

from . import lm as _lm
from .lm import (  # noqa: F401  (re-exported: the status codes and rules of every fit)
    BOUND_RTOL,
    CONTRAST_SIGMAS,
    FIT_AT_BOUND,
    FIT_BAD_INPUT,
    FIT_NO_DECAY,
    FIT_NOT_CONVERGED,
    FIT_NOT_SUPPORTED,
    FIT_OK,
    FIT_STATUS,
    FIT_STATUS2,
    FIT_TOO_FAST,
    FIT_TOO_FEW_POINTS,
)
from .models import (  # noqa: F401  (re-exported: default bounds and starting values of the model)
    BASELINE_BOUNDS,
    BETA_BOUNDS,
    BETA_START,
    CONTRAST_BOUNDS,
    CONTRAST_FLOOR,
    KWW,
    TAU_MAX_OVER_LAST_LAG,
    kww_model,
)
from .models import kww_default_bounds as default_bounds  # noqa: F401
from .models import kww_guess_raw as _guess_raw
from .models import kww_start_from_raw as _guess_from_raw

PARAMS = KWW.params
#: first points averaged for the starting contrast
N_HEAD = 3

_B, _A, _TAU, _BETA = range(4)


@dataclass
class KWWFit:
    """Result of :func:`fit_kww` for N curves.

    Attributes
    ----------
    params : (N, 4) float64
        baseline, contrast A, tau (unit of ``lag``), beta; NaN where the status is bad input or too few points,
        and for the flat or rising curves of status rule 3 (not fitted).
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
def _status(params, errors, n_points, free, lo, hi, lag_first, lag_last, flat, converged,
            bound_rtol=BOUND_RTOL):
    """Status codes from fit results (vectorised; the precedence of the module docstring).

    ``params``/``errors`` (N, 4) external; ``free`` (4,) bool; ``lo``/``hi`` (4,) external bounds;
    ``flat`` (N,) bool: the curves of rule 3 (model-free starting contrast not > 0); ``converged`` (N,) bool.
    Errors are NaN where the covariance is singular (then the contrast counts as not significant).
    ``bound_rtol``: distance (relative) to a bound that counts as on it (also applied to tau at the first lag).
    """
    n = params.shape[0]
    n_free = int(np.count_nonzero(free))
    p = params
    status = _lm.convergence_status(p, free, lo, hi, converged, bound_rtol)
    with np.errstate(invalid="ignore"):
        no_decay = np.zeros(n, dtype=bool)
        if free[_TAU]:
            no_decay |= p[:, _TAU] > lag_last
        if free[_A]:
            no_decay |= ~(p[:, _A] > CONTRAST_SIGMAS * errors[:, _A]) | ~(p[:, _A] > 0)
        status[no_decay] = FIT_NO_DECAY
        if free[_TAU]:
            status[p[:, _TAU] <= lag_first * (1.0 + bound_rtol)] = FIT_TOO_FAST
        status[flat] = FIT_NO_DECAY
    status[n_points < max(5, n_free + 1)] = FIT_TOO_FEW_POINTS
    status[n_points == 0] = FIT_BAD_INPUT
    return status


# ---------------------------------------------------------------------------------------------- API
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
    y = _lm.as_curves(g2)
    t = _lm.check_lags(lag, y.shape[1])
    return _guess_from_raw(_guess_raw(y, t, baseline_fixed), _lm.lag_range(t)[1])


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
    y = smooth_curves(_lm.as_curves(g2), int(smooth))
    t = _lm.check_lags(lag, y.shape[1])
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
    y = _lm.as_curves(g2)
    n, n_lag = y.shape
    t = _lm.check_lags(lag, n_lag)
    lag_first, lag_last = _lm.lag_range(t)
    lo, hi = _lm.parse_bounds(t, bounds, default_bounds(t), PARAMS, KWW.taus)
    fix = _lm.parse_fixed(fixed, baseline, n, PARAMS, KWW.tau_names)
    free = np.array([k not in fix for k in PARAMS])
    w, absolute = _lm.weights(sigma, pairs, y)
    max_iter = _lm.check_solver(max_iter, tol)

    raw = _guess_raw(y, t, fix.get("baseline"))
    start = _guess_from_raw(raw, lag_last)
    if p0 is not None:
        start = _lm.user_start(p0, start, KWW.taus)
    for key, value in fix.items():
        start[:, PARAMS.index(key)] = value
    unfixable = ~np.isfinite(start[:, ~free]).all(axis=1)  # a non-finite fixed value: not fitted

    flat = ~(raw[:, 1] > 0)  # status rule 3: not fitted, and no decay whatever a fit would make of them
    res = _lm.solve(KWW.fit_batch, y, t, w, start, free, lo, hi, KWW.taus, max_iter, tol, skip=flat)
    res.n_points[unfixable] = 0
    params, cov, chi2_red, errors = _lm.to_external(res, start, free, lo, hi, absolute, KWW.taus)
    status = _status(params, errors, res.n_points, free, lo, hi, lag_first, lag_last, flat, res.converged)
    return KWWFit(params=params, errors=errors, cov=cov, chi2_red=chi2_red, n_iter=res.n_iter, status=status)
