"""Batched fits of the sum of two KWW terms, with a test of the second term against one KWW (pure
NumPy/SciPy/Numba: no dask, no xarray).

Model
-----
::

    g2(t) = baseline + A1 exp(-2 (t / tau1)^beta1) + A2 exp(-2 (t / tau2)^beta2),   tau1 <= tau2

(a fast and a slow process).  ``tau`` in the unit of ``lag``.

Fitting
-------
:func:`fit_kww2` fits all curves of an ``(N, L)`` batch with the compiled Levenberg-Marquardt core shared
with :func:`.kww.fit_kww` (:mod:`._lm_numba`; model :mod:`._kww2_numba`: analytic Jacobian of
``(baseline, A1, log tau1, beta1, A2, log tau2, beta2)``, Nielsen damping, Marquardt scaling, bounds by
projection).  The order ``tau1 <= tau2`` is kept by exchanging the two components whenever ``tau1 > tau2``
(after the start and after every accepted step).  This needs interchangeable components: ``contrast``,
``tau`` and ``beta`` free in both and equal bounds for ``contrast1/2``, ``tau1/2``, ``beta1/2``; otherwise
(e.g. ``fixed={"tau1": 5}``) the components are never exchanged and the order is not enforced.

Starts.  The 7-parameter problem has local minima (a small fast component is easily traded for a very
stretched one).  Every curve is first fitted with one KWW term (:func:`.kww.fit_kww`, same weights, fixed
baseline and the user's bounds mapped by :func:`single_bounds`; or given as ``start1=``, e.g. a one-term fit
the caller already has), which gives ``(B, A, tau, beta)``; then the LM runs from each of :data:`N_STARTS` starts
built from it (:func:`starts_from_single`) and the solution of lowest chi2 is kept:

* ``split``: ``A/2`` at ``tau/3`` and at ``3 tau``, betas 1;
* ``fast``: the one-term fit as the slow component plus a small (2-10 % of A) fast one at ``tau/2``,
  ``tau/5``, ``tau/20`` (beta 1) -- three starts;
* ``slow``: the one-term fit as the fast component plus a small slow one at ``5 tau``.

(The free ones of ``B, A1, A2`` are replaced by their linear least-squares values at each start when those
are inside the bounds.)  On noise-free two-term curves this finds the exact minimum in > 99 % of the cases
(tests/test_kww2_kernel.py), where the ``split`` start alone does so in ~73 %.  With a ``p0`` only that
start is used.

Model selection
---------------
The second component is **supported** when the F-test of the nested models (one KWW with 4 free
parameters against two with 7; for fewer free parameters the difference of their numbers)::

    F = ((chi2_1 - chi2_2) / (p2 - p1)) / (chi2_2 / (n - p2))

has a p-value (F distribution with ``p2 - p1``, ``n - p2`` degrees of freedom) below
:data:`SELECTION_ALPHA` (0.01), **and** the two components are separable (:func:`components_separable`).
The F-test is scale free, so it is the same for relative (``pairs``/uniform) and absolute (``sigma``)
weights.  The nested model's extra parameters are not identifiable under the null (tau2, beta2 of a zero
contrast), so the nominal 1 % false-positive rate is only approximate (measured 0.7 % on one-term curves
with independent noise, tests/test_kww2_kernel.py).  The test assumes independent points: on multi-tau g2
of a simulated series (neighbouring lags correlated, lag-1 residual autocorrelation ~0.7) it supports a
second component in ~30-40 % of one-term pixels; treat ``supported`` there as necessary, not sufficient.  Curves whose second component is not supported get ``FIT_NOT_SUPPORTED`` (their
two-term parameters are still reported; use the one-term fit in :attr:`KWW2Fit.single`).

Weights: as :func:`.kww.fit_kww` (``sigma`` absolute, else ``pairs`` relative, else uniform relative).

Status codes (the ``FIT_*`` of :mod:`.kww`, see ``FIT_STATUS2``; first rule that applies, in this order)
--------------------------------------------------------------------------------------------------
1. ``FIT_BAD_INPUT``: no usable point, or a non-finite value for a fixed parameter; parameters NaN.
2. ``FIT_TOO_FEW_POINTS``: fewer than ``max(5, n_free + 1)`` usable points (8 with all 7 free);
   parameters NaN.
3. ``FIT_NO_DECAY``: the model-free initial contrast (:func:`.kww.initial_guess`) is <= 0 (flat or rising
   curve: not fitted, parameters NaN, as in :mod:`.kww`), or the second component is not supported and the
   one-term fit says ``FIT_NO_DECAY``, or the fast tau is beyond the last lag.
4. ``FIT_NOT_SUPPORTED``: the second component is not supported (F-test or not separable, above).
5. ``FIT_NO_DECAY``: a total contrast ``A1 + A2`` not positive or not significant (``<= 2 sigma``).
6. ``FIT_TOO_FAST``: a fitted tau at or below the first lag (1e-6 relative).
7. ``FIT_AT_BOUND``: a free parameter within 1e-6 (relative) of one of its bounds.
8. ``FIT_NOT_CONVERGED``: ``max_iter`` iterations without meeting the tolerance.
9. ``FIT_OK``.

Performance: ~6 LM fits per curve (one one-term, five two-term): about 2e3 fits/s per core for 71-point
curves (benchmarks/bench_fit.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import lm as _lm
from .kww import KWWFit, fit_kww
from .lm import (  # noqa: F401  (re-exported: same codes and meanings as the one-term fit)
    BOUND_RTOL,
    CONTRAST_SIGMAS,
    FIT_AT_BOUND,
    FIT_BAD_INPUT,
    FIT_NO_DECAY,
    FIT_NOT_CONVERGED,
    FIT_NOT_SUPPORTED,
    FIT_OK,
    FIT_STATUS2,
    FIT_TOO_FAST,
    FIT_TOO_FEW_POINTS,
)
from .models import KWW2, kww2_model, kww_guess_raw, kww_start_from_raw  # noqa: F401  (kww2_model re-exported)
from .models import kww2_default_bounds as default_bounds2  # noqa: F401  (public name of this module)

PARAMS2 = KWW2.params
#: components closer than this ratio of their taus are not separable
TAU_RATIO_MIN = 1.5
#: a component with less than this fraction of the total contrast is not a component (noise-free data
#: with relative weights have zero errors: the 2-sigma rule alone would accept any tiny contrast)
CONTRAST_FRACTION_MIN = 1e-3
#: F-test p-value below which the second component is supported
SELECTION_ALPHA = 0.01
#: ``split`` start: tau / TAU_SPLIT and tau * TAU_SPLIT around the one-term tau, betas 1
TAU_SPLIT = 3.0
BETA2_START = 1.0
#: ``fast`` starts (tau divisor, fraction of A) and the ``slow`` start (tau factor, fraction of A)
FAST_STARTS = ((5.0, 0.05), (2.0, 0.02), (20.0, 0.1))
SLOW_START = (5.0, 0.05)
N_STARTS = 2 + len(FAST_STARTS)

_B, _A1, _T1, _BE1, _A2, _T2, _BE2 = range(7)
_TAUS = KWW2.taus
#: component parameters (1, 2) exchanged by a swap
_PAIRS = KWW2.exchangeable


@dataclass
class KWW2Fit:
    """Result of :func:`fit_kww2` for N curves.

    Attributes
    ----------
    params, errors : (N, 7) float64
        as :data:`PARAMS2` (baseline, A1, tau1, beta1, A2, tau2, beta2) and their standard errors
    cov : (N, 7, 7) float64
        covariance (scaled by ``chi2_red`` for relative weights; 0 for fixed parameters, NaN if singular)
    chi2_red : (N,) float64
        ``sum w r^2 / (n_points - n_free)``
    n_iter : (N,) int32
        iterations of the kept start
    status : (N,) uint8
        ``FIT_*`` codes (module docstring; names in ``FIT_STATUS2``)
    f_stat, p_value : (N,) float64
        F statistic of the two-term against the one-term fit and its p-value (NaN if either fit failed)
    supported : (N,) bool
        the second component is supported (``p_value < SELECTION_ALPHA`` and components separable)
    single : :class:`.kww.KWWFit`
        the one-term fit of the same curves (the model to use where ``supported`` is False)
    """

    params: np.ndarray
    errors: np.ndarray
    cov: np.ndarray
    chi2_red: np.ndarray
    n_iter: np.ndarray
    status: np.ndarray
    f_stat: np.ndarray
    p_value: np.ndarray
    supported: np.ndarray
    single: KWWFit


def starts_from_single(single: np.ndarray) -> np.ndarray:
    """(N_STARTS, N, 7) starting values of :func:`fit_kww2` from one-term parameters ``single`` (N, 4)
    (baseline, A, tau, beta): the ``split``, ``fast`` and ``slow`` starts of the module docstring."""
    b, a, tau, beta = (single[:, j] for j in range(4))
    out = np.empty((N_STARTS, single.shape[0], 7))
    out[..., _B] = b
    out[0, :, _A1] = out[0, :, _A2] = 0.5 * a
    out[0, :, _T1], out[0, :, _T2] = tau / TAU_SPLIT, tau * TAU_SPLIT
    out[0, :, _BE1] = out[0, :, _BE2] = BETA2_START
    for k, (div, frac) in enumerate(FAST_STARTS, start=1):
        out[k, :, _A1], out[k, :, _T1], out[k, :, _BE1] = frac * a, tau / div, BETA2_START
        out[k, :, _A2], out[k, :, _T2], out[k, :, _BE2] = (1.0 - frac) * a, tau, beta
    fac, frac = SLOW_START
    out[-1, :, _A1], out[-1, :, _T1], out[-1, :, _BE1] = (1.0 - frac) * a, tau, beta
    out[-1, :, _A2], out[-1, :, _T2], out[-1, :, _BE2] = frac * a, tau * fac, BETA2_START
    return out


def components_separable(params, errors, lag, fixed=()) -> np.ndarray:
    """(N,) bool: the two components are distinguishable: tau ratio >= ``TAU_RATIO_MIN``, the slow tau inside the lag
    window, each free contrast > 2 sigma and > ``CONTRAST_FRACTION_MIN`` of ``A1 + A2``.

    ``params``/``errors`` (N, 7) as :class:`KWW2Fit`; ``fixed``: names of :data:`PARAMS2` that were fixed
    (their values count as known: not tested)."""
    p = np.atleast_2d(params)
    e = np.atleast_2d(errors)
    last = _lm.lag_range(lag)[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.ones(p.shape[0], dtype=bool)
        if "tau1" not in fixed or "tau2" not in fixed:
            hi_tau, lo_tau = np.fmax(p[:, _T1], p[:, _T2]), np.fmin(p[:, _T1], p[:, _T2])
            ok &= hi_tau >= TAU_RATIO_MIN * lo_tau
            ok &= ~(hi_tau > last)
        total = p[:, _A1] + p[:, _A2]
        for j, name in ((_A1, "contrast1"), (_A2, "contrast2")):
            if name not in fixed:
                ok &= (p[:, j] > CONTRAST_SIGMAS * e[:, j]) & (p[:, j] > CONTRAST_FRACTION_MIN * total)
    return ok


def _status2(params, errors, cov, n_points, free, lo, hi, lag_first, lag_last, contrast0, converged, supported,
             single_status):
    p = params
    status = _lm.convergence_status(p, free, lo, hi, converged, BOUND_RTOL)
    with np.errstate(invalid="ignore"):
        for j in _TAUS:
            if free[j]:
                status[p[:, j] <= lag_first * (1.0 + BOUND_RTOL)] = FIT_TOO_FAST
        if free[_A1] or free[_A2]:
            a = p[:, _A1] + p[:, _A2]
            var_a = cov[:, _A1, _A1] + cov[:, _A2, _A2] + 2.0 * cov[:, _A1, _A2]
            status[~(a > 0) | (a <= CONTRAST_SIGMAS * np.sqrt(var_a))] = FIT_NO_DECAY
        status[~supported] = FIT_NOT_SUPPORTED
        no_decay = ~(contrast0 > 0) | (~supported & (single_status == FIT_NO_DECAY))
        if free[_T1] or free[_T2]:
            no_decay |= np.fmin(p[:, _T1], p[:, _T2]) > lag_last
        status[no_decay] = FIT_NO_DECAY
    status[n_points < max(5, int(free.sum()) + 1)] = FIT_TOO_FEW_POINTS
    status[n_points == 0] = FIT_BAD_INPUT
    return status


def f_test(chi2_1, chi2_2, n_points, n_free1: int, n_free2: int):
    """F statistic and p-value of the nested fits: one term (``chi2_1``, ``n_free1`` free parameters)
    against two (``chi2_2``, ``n_free2``); NaN where a chi2 is not finite or ``n_points <= n_free2``."""
    d1 = max(n_free2 - n_free1, 1)
    d2 = np.asarray(n_points, dtype=np.float64) - n_free2
    with np.errstate(invalid="ignore", divide="ignore"):
        f = ((chi2_1 - chi2_2) / d1) / (chi2_2 / d2)
        f = np.where(np.isfinite(chi2_1) & np.isfinite(chi2_2) & (d2 > 0), f, np.nan)
        f = np.where((chi2_2 == 0) & (chi2_1 > 0), np.inf, f)
        from scipy import stats  # here, not at import: scipy.stats costs ~1 s of every run's start

        p = np.where(np.isnan(f), np.nan, stats.f.sf(f, d1, np.where(d2 > 0, d2, 1.0)))
    return f, p


def single_bounds(bounds, lag) -> dict:
    """Bounds of the one-term fit that starts :func:`fit_kww2`, from the two-term ``bounds``.

    Only what the user bounded is passed on (else the one-term defaults apply): ``baseline`` as it is;
    ``tau``, ``beta`` from the smaller low and the larger high bound of the two components (the bound given
    or the default of the other one); ``contrast`` from the smaller low bound and the sum of the high
    bounds.  One-term names (``tau``, ...) are not accepted here: give ``tau1``/``tau2``.

    Parameters
    ----------
    bounds : dict of :data:`PARAMS2` names -> (lo, hi) (None = unbounded side), or None
    lag : (L,) lags (for the defaults)

    Returns
    -------
    dict of one-term names (:data:`.kww.PARAMS`) -> (lo, hi)
    """
    lo, hi = _lm.parse_bounds(np.asarray(lag, dtype=np.float64), bounds, default_bounds2(lag), PARAMS2, _TAUS)
    given = set(bounds or {})
    out = {}
    if "baseline" in given:
        out["baseline"] = (lo[_B], hi[_B])
    for key, (i, j) in (("contrast", (_A1, _A2)), ("tau", (_T1, _T2)), ("beta", (_BE1, _BE2))):
        if {key + "1", key + "2"} & given:
            top = hi[i] + hi[j] if key == "contrast" else max(hi[i], hi[j])
            out[key] = (min(lo[i], lo[j]), top)
    return out


def fit_kww2(g2, lag, *, sigma=None, pairs=None, bounds=None, fixed=None, baseline="free", max_iter=200,
             tol=1e-10, p0=None, alpha=SELECTION_ALPHA, start1: KWWFit | None = None) -> KWW2Fit:
    """Fit ``g2 = baseline + A1 exp(-2 (t/tau1)^beta1) + A2 exp(-2 (t/tau2)^beta2)`` to every curve and test
    the second component against one KWW term.

    Parameters as :func:`.kww.fit_kww`, with the names of :data:`PARAMS2` in ``bounds`` and ``fixed``
    (defaults: :func:`default_bounds2`), and ``p0`` (7,) or (N, 7) (then the only start; its non-finite
    entries from the ``split`` start).  ``alpha``: F-test level of the model selection.

    start1 : :class:`.kww.KWWFit`, optional
        The one-term fit of the same curves with the same weights (``sigma``/``pairs``) and the same fixed
        baseline, e.g. from an earlier :func:`.kww.fit_kww` call: its parameters build the starts, its chi2
        is the null model of the F-test, and it is returned as :attr:`KWW2Fit.single`.  Default: fitted
        here with the same weights, fixed baseline, ``max_iter`` and the bounds of :func:`single_bounds`.

    Returns a :class:`KWW2Fit` (``tau1 <= tau2`` when the components are interchangeable, see the module
    docstring); never raises for a bad curve: it gets a status code.
    """
    y = _lm.as_curves(g2)
    n, n_lag = y.shape
    t = _lm.check_lags(lag, n_lag)
    lag_first, lag_last = _lm.lag_range(t)
    lo, hi = _lm.parse_bounds(t, bounds, default_bounds2(t), PARAMS2, _TAUS)
    fix = _lm.parse_fixed(fixed, baseline, n, PARAMS2, KWW2.tau_names)
    free = np.array([k not in fix for k in PARAMS2])
    w, absolute = _lm.weights(sigma, pairs, y)
    max_iter = _lm.check_solver(max_iter, tol)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")

    raw = kww_guess_raw(y, t, fix.get("baseline"))
    if start1 is None:
        one = fit_kww(y, t, sigma=sigma, pairs=pairs, max_iter=max_iter, bounds=single_bounds(bounds, t),
                      fixed={"baseline": fix["baseline"]} if "baseline" in fix else None)
    else:
        if not isinstance(start1, KWWFit):
            raise ValueError(f"start1 must be the KWWFit of a one-term fit of the same curves, got {type(start1)}")
        if np.shape(start1.params) != (n, 4):
            raise ValueError(f"start1 must hold one one-term fit per curve ({n}, 4), got {np.shape(start1.params)}")
        one = start1
    p1 = np.asarray(one.params, dtype=np.float64)
    p1 = np.where(np.isfinite(p1).all(axis=1)[:, None], p1, kww_start_from_raw(raw, lag_last))
    starts = starts_from_single(p1)
    if p0 is not None:
        starts = _lm.user_start(p0, starts[0], _TAUS)[None]
    for key, value in fix.items():
        starts[:, :, PARAMS2.index(key)] = value
    start = starts[0]
    unfixable = ~np.isfinite(start[:, ~free]).all(axis=1)
    swap = all(free[a] and free[b] and lo[a] == lo[b] and hi[a] == hi[b] for a, b in _PAIRS)

    flat = ~(raw[:, 1] > 0)  # no decay by the model-free rule, whatever a fit would make of it: not fitted
    best = None
    for start_k in starts:  # keep the lowest chi2 over the starts
        res = _lm.solve(KWW2.fit_batch, y, t, w, start_k, free, lo, hi, _TAUS, max_iter, tol, reorder=swap,
                        skip=flat)
        best = res if best is None else _lm.best_of(best, res)
    n_points = best.n_points
    n_points[unfixable] = 0
    params, cov, chi2_red, errors = _lm.to_external(best, start, free, lo, hi, absolute, _TAUS)
    n_free = int(free.sum())
    n_free1 = 3 if "baseline" in fix else 4
    with np.errstate(invalid="ignore"):
        chi2_1 = np.asarray(one.chi2_red, dtype=np.float64) * (n_points - n_free1)
    f_stat, p_value = f_test(chi2_1, best.chi2, n_points, n_free1, n_free)
    fixed_names = [k for k, f in zip(PARAMS2, free) if not f]
    with np.errstate(invalid="ignore"):
        supported = (p_value < alpha) & components_separable(params, errors, t, fixed_names)
    status = _status2(params, errors, cov, n_points, free, lo, hi, lag_first, lag_last, raw[:, 1], best.converged,
                      supported, np.asarray(one.status))
    return KWW2Fit(params=params, errors=errors, cov=cov, chi2_red=chi2_red, n_iter=best.n_iter, status=status,
                   f_stat=f_stat, p_value=p_value, supported=supported, single=one)
