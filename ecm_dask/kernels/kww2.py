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
stretched one).  Every curve is first fitted with one KWW term (:func:`.kww.fit_kww`, same weights and
fixed baseline), which gives ``(B, A, tau, beta)``; then the LM runs from each of :data:`N_STARTS` starts
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
   curve), or the second component is not supported and the one-term fit says ``FIT_NO_DECAY``, or the
   fast tau is beyond the last lag.
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
from scipy import stats

from . import _kww2_numba as _nb2
from . import kww as _k
from .kww import (  # noqa: F401  (re-exported: same codes and meanings)
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

PARAMS2 = ("baseline", "contrast1", "tau1", "beta1", "contrast2", "tau2", "beta2")
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
_TAUS = (_T1, _T2)
#: component parameters (1, 2) exchanged by a swap
_PAIRS = ((_A1, _A2), (_T1, _T2), (_BE1, _BE2))


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
    single: _k.KWWFit


def kww2_model(lag, params) -> np.ndarray:
    """Two-KWW g2 model; ``params`` (N, 7) or (7,) as :data:`PARAMS2`; returns (N, L) float64."""
    t = np.asarray(lag, dtype=np.float64)[None, :]
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    if p.shape[-1] != 7:
        raise ValueError(f"params must be (N, 7), got shape {p.shape}")
    b, a1, t1, b1, a2, t2, b2 = (p[:, j, None] for j in range(7))
    return b + a1 * np.exp(-2.0 * (t / t1) ** b1) + a2 * np.exp(-2.0 * (t / t2) ** b2)


def default_bounds2(lag) -> dict:
    """Default bounds: those of :func:`.kww.default_bounds` for both components."""
    b = _k.default_bounds(lag)
    out = {"baseline": b["baseline"]}
    for c in "12":
        for key in ("contrast", "tau", "beta"):
            out[key + c] = b[key]
    return out


def _bounds2(t: np.ndarray, bounds) -> tuple[np.ndarray, np.ndarray]:
    return _k._bounds(t, bounds, default_bounds2(t), PARAMS2, _TAUS)


def _fixed2(fixed, baseline, n: int) -> dict:
    return _k._fixed(fixed, baseline, n, PARAMS2, ("tau1", "tau2"))


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
    last = _k._lag_range(np.asarray(lag, dtype=np.float64))[1]
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
    status = _k._convergence_status(p, free, lo, hi, converged, BOUND_RTOL)
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
        p = np.where(np.isnan(f), np.nan, stats.f.sf(f, d1, np.where(d2 > 0, d2, 1.0)))
    return f, p


def _run(y, s, w, th0, free, lo_i, hi_i, swap, max_iter, tol):
    n = y.shape[0]
    th = np.empty((n, 7))
    cov = np.empty((n, 7, 7))
    chi2 = np.empty(n)
    n_points = np.empty(n, dtype=np.int64)
    n_iter = np.empty(n, dtype=np.int32)
    conv = np.empty(n, dtype=np.bool_)
    _nb2.fit_batch(y, s, w, th0, free, lo_i, hi_i, swap, max_iter, float(tol), th, cov, chi2, n_points, n_iter,
                   conv)
    return th, cov, chi2, n_points, n_iter, conv


def fit_kww2(g2, lag, *, sigma=None, pairs=None, bounds=None, fixed=None, baseline="free", max_iter=200,
             tol=1e-10, p0=None, alpha=SELECTION_ALPHA) -> KWW2Fit:
    """Fit ``g2 = baseline + A1 exp(-2 (t/tau1)^beta1) + A2 exp(-2 (t/tau2)^beta2)`` to every curve and test
    the second component against one KWW term.

    Parameters as :func:`.kww.fit_kww`, with the names of :data:`PARAMS2` in ``bounds`` and ``fixed``
    (defaults: :func:`default_bounds2`), and ``p0`` (7,) or (N, 7) (then the only start; its non-finite
    entries from the ``split`` start).  ``alpha``: F-test level of the model selection.  Returns a
    :class:`KWW2Fit` (``tau1 <= tau2`` when the components are interchangeable, see the module
    docstring); never raises for a bad curve: it gets a status code.
    """
    y = _k._curves(g2)
    n, n_lag = y.shape
    t = _k._lags(lag, n_lag)
    lag_first, lag_last = _k._lag_range(t)
    lo, hi = _bounds2(t, bounds)
    fix = _fixed2(fixed, baseline, n)
    free = np.array([k not in fix for k in PARAMS2])
    w, absolute = _k._weights(sigma, pairs, y)
    max_iter = int(max_iter)
    if max_iter < 0 or not tol > 0:
        raise ValueError("max_iter must be >= 0 and tol > 0")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")

    raw = _k._guess_raw(y, t, fix.get("baseline"))
    one = _k.fit_kww(y, t, sigma=sigma, pairs=pairs, max_iter=max_iter,
                     fixed={"baseline": fix["baseline"]} if "baseline" in fix else None)
    p1 = np.where(np.isfinite(one.params).all(axis=1)[:, None], one.params, _k._guess_from_raw(raw, lag_last))
    starts = starts_from_single(p1)
    if p0 is not None:
        user = np.broadcast_to(np.asarray(p0, dtype=np.float64), (n, 7))
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(user) & (~np.isin(np.arange(7), _TAUS) | (user > 0))
        starts = np.where(usable, user, starts[0])[None]
    for key, value in fix.items():
        starts[:, :, PARAMS2.index(key)] = value
    start = starts[0]
    unfixable = ~np.isfinite(start[:, ~free]).all(axis=1)
    swap = all(free[a] and free[b] and lo[a] == lo[b] and hi[a] == hi[b] for a, b in _PAIRS)

    with np.errstate(divide="ignore", invalid="ignore"):
        lo_i, hi_i = lo.copy(), hi.copy()
        th0 = starts.copy()
        for j in _TAUS:
            th0[:, :, j] = np.log(starts[:, :, j])
            lo_i[j], hi_i[j] = np.log(lo[j]), np.log(hi[j])
        s = np.log(t)
    best = None
    for th0_k in th0:  # keep the lowest chi2 over the starts
        res = _run(y, s, w, np.ascontiguousarray(th0_k), free, lo_i, hi_i, swap, max_iter, tol)
        if best is None:
            best = res
            continue
        better = res[2] < best[2]
        best = tuple(np.where(better.reshape((-1,) + (1,) * (b.ndim - 1)), r, b) for b, r in zip(best, res))
    th, cov, chi2, n_points, n_iter, conv = best
    n_points[unfixable] = 0
    params, cov, chi2_red, errors = _k._to_external(th, start, free, lo, hi, lo_i, hi_i, cov, chi2, n_points,
                                                    absolute, _TAUS)
    n_free = int(free.sum())
    n_free1 = 3 if "baseline" in fix else 4
    with np.errstate(invalid="ignore"):
        chi2_1 = one.chi2_red * (n_points - n_free1)
    f_stat, p_value = f_test(chi2_1, chi2, n_points, n_free1, n_free)
    fixed_names = [k for k, f in zip(PARAMS2, free) if not f]
    with np.errstate(invalid="ignore"):
        supported = (p_value < alpha) & components_separable(params, errors, t, fixed_names)
    status = _status2(params, errors, cov, n_points, free, lo, hi, lag_first, lag_last, raw[:, 1], conv, supported,
                      one.status)
    return KWW2Fit(params=params, errors=np.ascontiguousarray(errors), cov=cov, chi2_red=chi2_red,
                   n_iter=n_iter, status=status, f_stat=f_stat, p_value=p_value, supported=supported, single=one)
