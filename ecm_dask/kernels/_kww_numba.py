"""Numba model of the batched one-term KWW fit (the Levenberg-Marquardt loop is :mod:`._lm_numba`).

Internal parameters ``theta = (baseline, contrast A, log tau, beta)``; the model at log lag ``s = log t`` is::

    g2 = B + A exp(-2 u),   u = exp(beta (s - log tau)) = (t / tau)^beta

with the analytic Jacobian::

    d/dB = 1,   d/dA = e,   d/dlog tau = 2 A beta u e,   d/dbeta = -2 A u e (s - log tau),   e = exp(-2 u)

:func:`evaluate` (chi2, J^T W J, J^T W r in passes that vectorise) and :func:`linear_start` (the free ones
of baseline and A by linear least squares at the starting tau, beta) are the model functions given to
:func:`._lm_numba.lm_batch` by :func:`fit_batch`.  :func:`guess_batch`: model-free starting values.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._lm_numba import (  # noqa: F401  (constants re-exported for the callers of this module)
    FAST,
    LAMBDA_MAX,
    LAMBDA_SHRINK,
    LAMBDA_START,
    PIVOT_MIN,
    ZERO_RESIDUAL,
    exp_inplace,
    kww_exps,
    lm_batch,
    no_reorder,
)

#: scratch rows of ``work`` used by the model: (t / tau)^beta and exp(-2 (t / tau)^beta)
N_WORK = 2


@njit(cache=True, nogil=True, fastmath=FAST)
def evaluate(n, y, s, w, th, h, g, work, kb):  # pragma: no cover - compiled
    """chi2 at ``th``; fills ``h`` (4, 4) = J^T W J and ``g`` (4,) = J^T W r over the first ``n`` points.

    Passes that vectorise: ``u`` into the scratch ``work[0]``, ``e`` into ``work[1]`` (with
    :func:`exp_inplace`), then the sums (reassociation allowed).
    """
    tu = work[0]
    te = work[1]
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
def linear_start(n, y, s, w, th, free, lo, hi, work, kb):  # pragma: no cover - compiled
    """Replace the free ones of (baseline, A) in ``th`` by their weighted least-squares values at the
    starting (tau, beta) (the model is linear in them), if that gives a contrast strictly inside its
    bounds and a baseline inside its bounds."""
    if not (free[0] or free[1]):
        return
    tu = work[0]
    te = work[1]
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
    """Levenberg-Marquardt fits of every row of ``y`` (:func:`._lm_numba.lm_batch` with this model).

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
    work = np.empty((N_WORK, y.shape[1]))
    return lm_batch(evaluate, linear_start, no_reorder, False, y, s, w, th0, free, lo, hi, max_iter, tol,
                    th_out, cov_out, chi2_out, npts_out, niter_out, conv_out, work)


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
