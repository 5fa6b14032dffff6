"""Numba core of the batched KWW fit (no dask, no xarray, no Python objects in the loops).

Internal parameters ``theta = (baseline, contrast A, log tau, beta)``; the model at log lag ``s = log t`` is::

    g2 = B + A exp(-2 u),   u = exp(beta (s - log tau)) = (t / tau)^beta

with the analytic Jacobian::

    d/dB = 1,   d/dA = e,   d/dlog tau = 2 A beta u e,   d/dbeta = -2 A u e (s - log tau),   e = exp(-2 u)

Every routine works on one pixel at a time inside a compiled loop over the pixels of a batch (``nogil``,
so threads can fit different blocks at once).  Per pixel, the usable points (finite value, finite lag,
positive finite weight) are first packed into contiguous scratch arrays, so the inner loops are dense.

Levenberg-Marquardt (``fit_batch``)
-----------------------------------
* start: the given (tau, beta), with the free ones of (baseline, A) replaced by their weighted linear
  least-squares values there (the model is linear in them), when those are inside the bounds;
* normal equations ``(H + lam D) delta = g`` with ``H = J^T W J``, ``g = J^T W r`` (``r = y - model``),
  Marquardt scaling ``D = diag(H)`` (running maximum over the iterations, as MINPACK), solved by a scaled
  Cholesky factorisation of the (at most 4x4) system of the active parameters;
* bounds by projection: a parameter on a bound whose gradient (or step) points outwards is held for the
  step, the others are clipped onto the box after the step;
* a step is accepted when chi2 decreases; the damping follows Nielsen's rule
  ``lam *= max(1/3, 1 - (2 rho - 1)^3)`` on success (``rho`` = actual / predicted reduction) and
  ``lam *= nu, nu *= 2`` on failure (starting at ``lam = 0.1``);
* converged when the Gauss-Newton decrement ``g^T H^-1 g`` of the active parameters (the chi2 reduction a
  full Gauss-Newton step would still bring) is ``<= tol * chi2``, when chi2 is at rounding level
  (``<= 1e-28 sum w y^2``: noise-free data), when no parameter can move (all held on bounds), or when no
  step of any length lowers chi2 any more (damping above 1e16: minimum at machine precision).
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
_MAX_EXPONENT = 50.0
#: sums may be reassociated/contracted (NaN and infinity semantics kept)
_FAST = {"reassoc", "contract"}


# exp(x) = 2^k exp(r), k = round(x / ln 2), r = x - k ln 2 (Cody-Waite split of ln 2), |r| <= ln(2) / 2;
# exp(r) by its Taylor polynomial of degree 13 (truncation < 1e-17 relative): <= 1 ulp from numpy's exp.
_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (1.0 / math.factorial(i) for i in range(2, 14))


@njit(cache=True, nogil=True, fastmath=_FAST)
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
        tu[i] = _MAX_EXPONENT if v > _MAX_EXPONENT else v
    exp_inplace(tu, kb, n)
    for i in range(n):
        te[i] = -2.0 * tu[i]
    exp_inplace(te, kb, n)


@njit(cache=True, nogil=True, fastmath=_FAST)
def evaluate(n, y, s, w, th, h, g, tu, te, kb):  # pragma: no cover - compiled
    """chi2 at ``th``; fills ``h`` (4, 4) = J^T W J and ``g`` (4,) = J^T W r over the first ``n`` points.

    Passes that vectorise: ``u`` into the scratch ``tu``, ``e`` into ``te`` (with :func:`exp_inplace`),
    then the sums (reassociation allowed).
    """
    b = th[0]
    a = th[1]
    ltau = th[2]
    beta = th[3]
    kww_exps(n, s, ltau, beta, tu, te, kb)
    c2 = 2.0 * a * beta
    c3 = -2.0 * a
    chi2 = 0.0
    g0 = g1 = g2 = g3 = 0.0
    h00 = h01 = h02 = h03 = h11 = h12 = h13 = h22 = h23 = h33 = 0.0
    for i in range(n):
        e = te[i]
        ue = tu[i] * e
        r = y[i] - (b + a * e)
        wi = w[i]
        j2 = c2 * ue
        j3 = c3 * ue * (s[i] - ltau)
        wr = wi * r
        chi2 += wr * r
        g0 += wr
        g1 += wr * e
        g2 += wr * j2
        g3 += wr * j3
        wj1 = wi * e
        wj2 = wi * j2
        wj3 = wi * j3
        h00 += wi
        h01 += wj1
        h02 += wj2
        h03 += wj3
        h11 += wj1 * e
        h12 += wj1 * j2
        h13 += wj1 * j3
        h22 += wj2 * j2
        h23 += wj2 * j3
        h33 += wj3 * j3
    h[0, 0] = h00
    h[0, 1] = h[1, 0] = h01
    h[0, 2] = h[2, 0] = h02
    h[0, 3] = h[3, 0] = h03
    h[1, 1] = h11
    h[1, 2] = h[2, 1] = h12
    h[1, 3] = h[3, 1] = h13
    h[2, 2] = h22
    h[2, 3] = h[3, 2] = h23
    h[3, 3] = h33
    g[0] = g0
    g[1] = g1
    g[2] = g2
    g[3] = g3
    return chi2


@njit(cache=True, nogil=True)
def factor(h, lam, dmp, act, idx, sc, fac):  # pragma: no cover - compiled
    """Scaled Cholesky factor of ``(h + lam diag(dmp))`` restricted to the ``act`` parameters.

    Fills ``idx`` (active indices), ``sc`` (1 / sqrt of the diagonal) and the lower factor ``fac`` of the
    unit-diagonal matrix; returns the number of active parameters, or -1 if the matrix is not positive
    definite (a pivot below ``PIVOT_MIN``).
    """
    k = 0
    for j in range(4):
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
    for j in range(4):
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
def linear_start(n, y, s, w, th, free, lo, hi, tu, te, kb):  # pragma: no cover - compiled
    """Replace the free ones of (baseline, A) in ``th`` by their weighted least-squares values at the
    starting (tau, beta) (the model is linear in them), if that gives a contrast strictly inside its
    bounds and a baseline inside its bounds."""
    if not (free[0] or free[1]):
        return
    ltau = th[2]
    beta = th[3]
    kww_exps(n, s, ltau, beta, tu, te, kb)
    sw = se = see = sy = sey = 0.0
    for i in range(n):
        wi = w[i]
        e = te[i]
        sw += wi
        se += wi * e
        see += wi * e * e
        sy += wi * y[i]
        sey += wi * e * y[i]
    b = th[0]
    a = th[1]
    if free[0] and free[1]:
        det = sw * see - se * se
        if not det > 1e-9 * sw * see:
            return
        a = (sw * sey - se * sy) / det
        b = (sy - a * se) / sw
    elif free[1]:
        if not see > 0.0:
            return
        a = (sey - b * se) / see
    else:
        b = (sy - a * se) / sw
    if lo[1] < a < hi[1] and lo[0] <= b <= hi[0]:
        th[0] = b
        th[1] = a


@njit(cache=True, nogil=True)
def fit_batch(y, s, w, th0, free, lo, hi, max_iter, tol,
              th_out, cov_out, chi2_out, npts_out, niter_out, conv_out):  # pragma: no cover - compiled
    """Levenberg-Marquardt fits of every row of ``y``.

    Parameters
    ----------
    y : (N, L) float32/float64 curves (non-finite values are skipped)
    s : (L,) log lags (non-finite entries are skipped)
    w : (N, L) or (1, L) weights (points with non-positive or non-finite weight are skipped)
    th0 : (N, 4) internal starting values (baseline, A, log tau, beta); fixed parameters hold their values
    free : (4,) bool, parameters that are fitted
    lo, hi : (4,) internal bounds (may be infinite)
    max_iter : iteration cap
    tol : relative chi2 tolerance of the Gauss-Newton decrement

    Outputs (filled)
    ----------------
    th_out (N, 4) fitted internal parameters (NaN if too few points: fewer than max(5, n_free + 1));
    cov_out (N, 4, 4) inverse of J^T W J over the free parameters (0 elsewhere, NaN if singular);
    chi2_out (N,) sum of w r^2; npts_out (N,) usable points; niter_out (N,) iterations;
    conv_out (N,) True when a convergence criterion was met.
    """
    n_pix, n_lag = y.shape
    per_pixel_w = w.shape[0] > 1
    ty = np.empty(n_lag)
    ts = np.empty(n_lag)
    tw = np.empty(n_lag)
    tu = np.empty(n_lag)
    te = np.empty(n_lag)
    kb = np.empty(n_lag, dtype=np.int64)
    th = np.empty(4)
    tt = np.empty(4)
    h = np.empty((4, 4))
    g = np.empty(4)
    ht = np.empty((4, 4))
    gt = np.empty(4)
    dmp = np.empty(4)
    step = np.empty(4)
    act = np.empty(4, dtype=np.bool_)
    idx = np.empty(4, dtype=np.int64)
    sc = np.empty(4)
    fac = np.zeros((4, 4))
    tmp = np.empty(4)
    unit = np.empty(4)
    col = np.empty(4)
    n_free = 0
    for j in range(4):
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
        for i in range(4):
            th_out[p, i] = np.nan
            for j in range(4):
                cov_out[p, i, j] = np.nan
        if n < n_min:
            continue
        ok = True
        for j in range(4):
            th[j] = th0[p, j]
            if free[j]:
                th[j] = min(max(th[j], lo[j]), hi[j])
            if not np.isfinite(th[j]):
                ok = False
        if not ok:
            continue
        linear_start(n, ty, ts, tw, th, free, lo, hi, tu, te, kb)
        chi2 = evaluate(n, ty, ts, tw, th, h, g, tu, te, kb)
        for j in range(4):
            dmp[j] = max(h[j, j], 1e-300)
        lam = LAMBDA_START
        nu = 2.0
        conv = False
        it = 0
        while True:  # convergence tests first, so the state after the last allowed step is tested too
            if chi2 <= ZERO_RESIDUAL * ysq:
                conv = True
                break
            n_act = 0
            for j in range(4):  # hold parameters on a bound that the gradient pushes outwards
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
                for j in range(4):
                    dec += step[j] * g[j]
                if dec <= tol * chi2:
                    conv = True
                    break
            if it >= max_iter:
                break
            it += 1
            for _ in range(5):  # damped step; hold parameters on a bound that the step pushes outwards
                k = factor(h, lam, dmp, act, idx, sc, fac)
                if k < 0:
                    break
                solve(k, idx, sc, fac, g, step, tmp)
                changed = False
                for j in range(4):
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
                for j in range(4):
                    tt[j] = th[j]
                    if act[j]:
                        tt[j] = min(max(th[j] + step[j], lo[j]), hi[j])
                    step[j] = tt[j] - th[j]
                    if step[j] != 0.0:
                        moved = True
                for i in range(4):  # predicted reduction 2 d.g - d.H.d
                    v = 0.0
                    for j in range(4):
                        v += h[i, j] * step[j]
                    pred += step[i] * (2.0 * g[i] - v)
            chi2_t = evaluate(n, ty, ts, tw, tt, ht, gt, tu, te, kb) if moved else np.inf
            if chi2_t < chi2:
                rho = (chi2 - chi2_t) / pred if pred > 0.0 else 0.0
                lam *= max(LAMBDA_SHRINK, 1.0 - (2.0 * rho - 1.0) ** 3)
                nu = 2.0
                chi2 = chi2_t
                for i in range(4):
                    th[i] = tt[i]
                    g[i] = gt[i]
                    dmp[i] = max(dmp[i], ht[i, i])
                    for j in range(4):
                        h[i, j] = ht[i, j]
            else:
                lam *= nu
                nu *= 2.0
                if lam > LAMBDA_MAX:
                    conv = True
                    break
        niter_out[p] = it
        conv_out[p] = conv
        chi2_out[p] = chi2
        for j in range(4):
            th_out[p, j] = th[j]
            act[j] = free[j]
        # covariance: inverse of J^T W J over all free parameters (including those held on a bound)
        for i in range(4):
            for j in range(4):
                cov_out[p, i, j] = 0.0
        k = factor(h, 0.0, dmp, act, idx, sc, fac)
        if k < 0:
            for i in range(4):
                for j in range(4):
                    if free[i] and free[j]:
                        cov_out[p, i, j] = np.nan
            continue
        for c in range(4):
            if not free[c]:
                continue
            for j in range(4):
                unit[j] = 1.0 if j == c else 0.0
            solve(k, idx, sc, fac, unit, col, tmp)
            for j in range(4):
                if free[j]:
                    cov_out[p, j, c] = col[j]
    return 0


@njit(cache=True, nogil=True)
def guess_batch(y, lag, base_fixed, out):  # pragma: no cover - compiled
    """Model-free starting values of every row of ``y`` (N, L) at lags ``lag`` (L,).

    ``base_fixed`` (N,): baseline to use, NaN to estimate it as the median of the last ~20 % of the finite
    points.  Fills ``out`` (N, 4): baseline, raw contrast (mean of the first 3 finite points minus the
    baseline, not floored), the lag where ``g2 - baseline`` first falls below ``contrast / e^2``
    (interpolated linearly in log lag; NaN if it never does or the contrast is not positive), and the
    number of finite points.  A row with no finite point gets NaN.
    """
    n_pix, n_lag = y.shape
    ty = np.empty(n_lag)
    tl = np.empty(n_lag)
    level_factor = np.exp(-2.0)
    for p in range(n_pix):
        n = 0
        for i in range(n_lag):
            v = np.float64(y[p, i])
            if np.isfinite(v) and np.isfinite(lag[i]) and lag[i] > 0.0:
                ty[n] = v
                tl[n] = lag[i]
                n += 1
        out[p, 3] = n
        if n == 0:
            out[p, 0] = out[p, 1] = out[p, 2] = np.nan
            continue
        b = base_fixed[p]
        if not np.isfinite(b):
            k = max(1, int(round(0.2 * n)))
            b = np.median(ty[n - k:n])
        m = min(3, n)
        a = 0.0
        for i in range(m):
            a += ty[i]
        a = a / m - b
        tau = np.nan
        if a > 0.0:
            level = a * level_factor
            for i in range(n):
                if ty[i] - b < level:
                    if i == 0:
                        tau = tl[0]
                    else:
                        y0 = ty[i - 1] - b
                        y1 = ty[i] - b
                        f = (y0 - level) / (y0 - y1)
                        s0 = np.log(tl[i - 1])
                        tau = np.exp(s0 + f * (np.log(tl[i]) - s0))
                    break
        out[p, 0] = b
        out[p, 1] = a
        out[p, 2] = tau
    return 0
