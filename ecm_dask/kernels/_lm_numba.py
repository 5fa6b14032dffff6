"""Generic compiled Levenberg-Marquardt core shared by the batched KWW fits (:mod:`._kww_numba`: one
term, 4 parameters; :mod:`._kww2_numba`: two terms, 7 parameters).  No dask, no xarray, no Python
objects in the loops.

A model is three compiled functions, passed as arguments to :func:`lm_batch` (numba specialises
:func:`lm_batch` for each model, so the calls are direct; each model's ``fit_batch`` is a thin cached
wrapper that passes its functions)::

    evaluate(n, y, s, w, th, h, g, work, kb) -> chi2
        chi2 = sum w r^2 at ``th`` over the first ``n`` points; fills ``h`` = J^T W J and ``g`` = J^T W r
        (``r = y - model``); ``work`` (n_work, L) float64 and ``kb`` (L,) int64 are scratch
    linear_start(n, y, s, w, th, free, lo, hi, work, kb)
        optional improvement of the starting ``th`` in place (e.g. linear parameters by least squares)
    canonical(th, h, g, dmp)
        optional re-ordering of equivalent parameters after the start and after every accepted step
        (called only when ``reorder`` is set); must permute ``th``, ``g``, ``dmp`` and rows/columns of ``h``
        consistently

Levenberg-Marquardt (per pixel)
-------------------------------
* the usable points (finite value, finite lag, positive finite weight) are packed into contiguous
  scratch arrays first, so the model loops are dense;
* normal equations ``(H + lam D) delta = g`` with Marquardt scaling ``D = diag(H)`` (running maximum over
  the iterations, as MINPACK), solved by a scaled Cholesky factorisation of the system of the active
  parameters (:func:`factor`, :func:`solve`);
* bounds by projection: a parameter on a bound whose gradient (or step) points outwards is held for the
  step, the others are clipped onto the box after the step;
* a step is accepted when chi2 decreases; Nielsen's damping rule ``lam *= max(1/3, 1 - (2 rho - 1)^3)``
  on success (``rho`` = actual / predicted reduction) and ``lam *= nu, nu *= 2`` on failure (``lam``
  starts at 0.1);
* converged when the Gauss-Newton decrement ``g^T H^-1 g`` of the active parameters is ``<= tol * chi2``,
  when chi2 is at rounding level (``<= 1e-28 sum w y^2``: noise-free data), when no parameter can move
  (all held on bounds), or when no step of any length lowers chi2 any more (damping above 1e16);
* covariance: ``(J^T W J)^-1`` over all free parameters at the solution (NaN if singular).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: chi2 below this fraction of sum(w y^2) is rounding noise: the fit is exact
ZERO_RESIDUAL = 1e-28
#: starting damping (relative to diag(J^T W J)) and its largest shrink factor after a good step
LAMBDA_START = 1e-1
LAMBDA_SHRINK = 1.0 / 3.0
#: damping at which the search stops (no step of any length lowers chi2)
LAMBDA_MAX = 1e16
#: smallest pivot of the unit-diagonal (scaled) Cholesky factorisation accepted as non-singular
PIVOT_MIN = 1e-14
#: log(t / tau) is capped here before exponentiating (exp(-2 exp(50)) is 0 in float64)
MAX_EXPONENT = 50.0
#: sums may be reassociated/contracted (NaN and infinity semantics kept)
FAST = {"reassoc", "contract"}


# exp(x) = 2^k exp(r), k = round(x / ln 2), r = x - k ln 2 (Cody-Waite split of ln 2), |r| <= ln(2) / 2;
# exp(r) by its Taylor polynomial of degree 13 (truncation < 1e-17 relative): <= 1 ulp from numpy's exp.
_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (1.0 / math.factorial(i) for i in range(2, 14))


@njit(cache=True, nogil=True, fastmath=FAST)
def exp_inplace(x, kb, n):  # pragma: no cover - compiled
    """``x[:n] = exp(x[:n])`` (arguments clamped to [-708, 709]) in loops that vectorise (no libm call).

    ``kb`` is an int64 scratch array of at least ``n`` entries (holds the bits of ``2^k``).
    """
    kf = kb.view(np.float64)
    for i in range(n):
        v = x[i]
        v = 709.0 if v > 709.0 else v
        v = -708.0 if v < -708.0 else v
        k = np.floor(v * _INV_LN2 + 0.5)
        r = (v - k * _LN2_HI) - k * _LN2_LO
        q = _C13
        q = q * r + _C12
        q = q * r + _C11
        q = q * r + _C10
        q = q * r + _C9
        q = q * r + _C8
        q = q * r + _C7
        q = q * r + _C6
        q = q * r + _C5
        q = q * r + _C4
        q = q * r + _C3
        q = q * r + _C2
        q = q * r + 1.0
        x[i] = q * r + 1.0
        kb[i] = (np.int64(k) + 1023) << 52
    for i in range(n):
        x[i] *= kf[i]


@njit(cache=True, nogil=True)
def kww_exps(n, s, ltau, beta, tu, te, kb):  # pragma: no cover - compiled
    """``tu[i] = (t_i / tau)^beta`` (exponent capped) and ``te[i] = exp(-2 tu[i])`` for ``s = log t``."""
    for i in range(n):
        v = beta * (s[i] - ltau)
        tu[i] = MAX_EXPONENT if v > MAX_EXPONENT else v
    exp_inplace(tu, kb, n)
    for i in range(n):
        te[i] = -2.0 * tu[i]
    exp_inplace(te, kb, n)


@njit(cache=True, nogil=True)
def factor(h, lam, dmp, act, idx, sc, fac):  # pragma: no cover - compiled
    """Scaled Cholesky factor of ``(h + lam diag(dmp))`` restricted to the ``act`` parameters (any size).

    Fills ``idx`` (active indices), ``sc`` (1 / sqrt of the diagonal) and the lower factor ``fac`` of the
    unit-diagonal matrix; returns the number of active parameters, or -1 if the matrix is not positive
    definite (a pivot below ``PIVOT_MIN``).
    """
    k = 0
    for j in range(act.shape[0]):
        if act[j]:
            idx[k] = j
            k += 1
    for i in range(k):
        d = h[idx[i], idx[i]] + lam * dmp[idx[i]]
        if not d > 0.0 or not np.isfinite(d):
            return -1
        sc[i] = 1.0 / np.sqrt(d)
    for i in range(k):
        for j in range(i + 1):
            v = 1.0 if i == j else h[idx[i], idx[j]] * sc[i] * sc[j]  # unit diagonal by construction
            for m in range(j):
                v -= fac[i, m] * fac[j, m]
            if i == j:
                if not v > PIVOT_MIN:
                    return -1
                fac[i, i] = np.sqrt(v)
            else:
                fac[i, j] = v / fac[j, j]
    return k


@njit(cache=True, nogil=True)
def solve(k, idx, sc, fac, rhs, x, tmp):  # pragma: no cover - compiled
    """x = M^-1 rhs with the factor from :func:`factor` (x is 0 outside the active parameters)."""
    for j in range(x.shape[0]):
        x[j] = 0.0
    for i in range(k):  # forward: L z = S rhs
        v = rhs[idx[i]] * sc[i]
        for m in range(i):
            v -= fac[i, m] * tmp[m]
        tmp[i] = v / fac[i, i]
    for i in range(k - 1, -1, -1):  # backward: L^T z' = z
        v = tmp[i]
        for m in range(i + 1, k):
            v -= fac[m, i] * tmp[m]
        tmp[i] = v / fac[i, i]
    for i in range(k):
        x[idx[i]] = tmp[i] * sc[i]


@njit(cache=True, nogil=True)
def no_reorder(th, h, g, dmp):  # pragma: no cover - compiled
    """The ``canonical`` of a model without equivalent parameter orders."""
    return


@njit(nogil=True, inline="always")
def lm_batch(evaluate, linear_start, canonical, reorder, y, s, w, th0, free, lo, hi, max_iter, tol,
             th_out, cov_out, chi2_out, npts_out, niter_out, conv_out, work):  # pragma: no cover - compiled
    """Levenberg-Marquardt fits of every row of ``y`` with the model ``(evaluate, linear_start, canonical)``.

    Parameters
    ----------
    evaluate, linear_start, canonical : compiled model functions (module docstring)
    reorder : call ``canonical`` after the start and after every accepted step
    y : (N, L) float32/float64 curves (non-finite values are skipped)
    s : (L,) abscissae, here log lags (non-finite entries are skipped)
    w : (N, L) or (1, L) weights (points with non-positive or non-finite weight are skipped)
    th0 : (N, P) starting values; fixed parameters hold their values
    free : (P,) bool, parameters that are fitted
    lo, hi : (P,) bounds (may be infinite)
    max_iter : iteration cap
    tol : relative chi2 tolerance of the Gauss-Newton decrement
    work : (n_work, L) float64 scratch for the model

    Outputs (filled)
    ----------------
    th_out (N, P) fitted parameters (NaN if too few points: fewer than max(5, n_free + 1));
    cov_out (N, P, P) inverse of J^T W J over the free parameters (0 elsewhere, NaN if singular);
    chi2_out (N,) sum of w r^2; npts_out (N,) usable points; niter_out (N,) iterations;
    conv_out (N,) True when a convergence criterion was met.
    """
    n_pix, n_lag = y.shape
    npar = th0.shape[1]
    per_pixel_w = w.shape[0] > 1
    ty = np.empty(n_lag)
    ts = np.empty(n_lag)
    tw = np.empty(n_lag)
    kb = np.empty(n_lag, dtype=np.int64)
    th = np.empty(npar)
    tt = np.empty(npar)
    h = np.empty((npar, npar))
    g = np.empty(npar)
    ht = np.empty((npar, npar))
    gt = np.empty(npar)
    dmp = np.empty(npar)
    step = np.empty(npar)
    act = np.empty(npar, dtype=np.bool_)
    idx = np.empty(npar, dtype=np.int64)
    sc = np.empty(npar)
    fac = np.zeros((npar, npar))
    tmp = np.empty(npar)
    unit = np.empty(npar)
    col = np.empty(npar)
    n_free = 0
    for j in range(npar):
        if free[j]:
            n_free += 1
    n_min = max(5, n_free + 1)
    for p in range(n_pix):
        wp = p if per_pixel_w else 0
        n = 0
        ysq = 0.0
        for i in range(n_lag):
            v = np.float64(y[p, i])
            wi = np.float64(w[wp, i])
            if np.isfinite(v) and np.isfinite(s[i]) and wi > 0.0 and np.isfinite(wi):
                ty[n] = v
                ts[n] = s[i]
                tw[n] = wi
                ysq += wi * v * v
                n += 1
        npts_out[p] = n
        niter_out[p] = 0
        conv_out[p] = False
        chi2_out[p] = np.nan
        for i in range(npar):
            th_out[p, i] = np.nan
            for j in range(npar):
                cov_out[p, i, j] = np.nan
        if n < n_min:
            continue
        ok = True
        for j in range(npar):
            th[j] = th0[p, j]
            if free[j]:
                th[j] = min(max(th[j], lo[j]), hi[j])
            if not np.isfinite(th[j]):
                ok = False
        if not ok:
            continue
        linear_start(n, ty, ts, tw, th, free, lo, hi, work, kb)
        chi2 = evaluate(n, ty, ts, tw, th, h, g, work, kb)
        for j in range(npar):
            dmp[j] = max(h[j, j], 1e-300)
        if reorder:
            canonical(th, h, g, dmp)
        lam = LAMBDA_START
        nu = 2.0
        conv = False
        it = 0
        while True:  # convergence tests first, so the state after the last allowed step is tested too
            if chi2 <= ZERO_RESIDUAL * ysq:
                conv = True
                break
            n_act = 0
            for j in range(npar):  # hold parameters on a bound that the gradient pushes outwards
                act[j] = free[j] and not ((th[j] <= lo[j] and g[j] < 0.0) or (th[j] >= hi[j] and g[j] > 0.0))
                if act[j]:
                    n_act += 1
            if n_act == 0:
                conv = True
                break
            k = factor(h, 0.0, dmp, act, idx, sc, fac)
            if k > 0:  # Gauss-Newton decrement: what a full step would still gain
                solve(k, idx, sc, fac, g, step, tmp)
                dec = 0.0
                for j in range(npar):
                    dec += step[j] * g[j]
                if dec <= tol * chi2:
                    conv = True
                    break
            if it >= max_iter:
                break
            it += 1
            for _ in range(npar + 1):  # damped step; hold parameters on a bound that the step pushes outwards
                k = factor(h, lam, dmp, act, idx, sc, fac)
                if k < 0:
                    break
                solve(k, idx, sc, fac, g, step, tmp)
                changed = False
                for j in range(npar):
                    if act[j] and ((th[j] <= lo[j] and step[j] < 0.0) or (th[j] >= hi[j] and step[j] > 0.0)):
                        act[j] = False
                        changed = True
                if not changed:
                    break
            if k == 0:  # every parameter is held on a bound by its step
                conv = True
                break
            moved = False
            pred = 0.0
            if k > 0:
                for j in range(npar):
                    tt[j] = th[j]
                    if act[j]:
                        tt[j] = min(max(th[j] + step[j], lo[j]), hi[j])
                    step[j] = tt[j] - th[j]
                    if step[j] != 0.0:
                        moved = True
                for i in range(npar):  # predicted reduction 2 d.g - d.H.d
                    v = 0.0
                    for j in range(npar):
                        v += h[i, j] * step[j]
                    pred += step[i] * (2.0 * g[i] - v)
            chi2_t = evaluate(n, ty, ts, tw, tt, ht, gt, work, kb) if moved else np.inf
            if chi2_t < chi2:
                rho = (chi2 - chi2_t) / pred if pred > 0.0 else 0.0
                lam *= max(LAMBDA_SHRINK, 1.0 - (2.0 * rho - 1.0) ** 3)
                nu = 2.0
                chi2 = chi2_t
                for i in range(npar):
                    th[i] = tt[i]
                    g[i] = gt[i]
                    dmp[i] = max(dmp[i], ht[i, i])
                    for j in range(npar):
                        h[i, j] = ht[i, j]
                if reorder:
                    canonical(th, h, g, dmp)
            else:
                lam *= nu
                nu *= 2.0
                if lam > LAMBDA_MAX:
                    conv = True
                    break
        niter_out[p] = it
        conv_out[p] = conv
        chi2_out[p] = chi2
        for j in range(npar):
            th_out[p, j] = th[j]
            act[j] = free[j]
        # covariance: inverse of J^T W J over all free parameters (including those held on a bound)
        for i in range(npar):
            for j in range(npar):
                cov_out[p, i, j] = 0.0
        k = factor(h, 0.0, dmp, act, idx, sc, fac)
        if k < 0:
            for i in range(npar):
                for j in range(npar):
                    if free[i] and free[j]:
                        cov_out[p, i, j] = np.nan
            continue
        for c in range(npar):
            if not free[c]:
                continue
            for j in range(npar):
                unit[j] = 1.0 if j == c else 0.0
            solve(k, idx, sc, fac, unit, col, tmp)
            for j in range(npar):
                if free[j]:
                    cov_out[p, j, c] = col[j]
    return 0
