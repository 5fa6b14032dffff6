"""Numba model of the batched two-term KWW fit (see :mod:`.kww2`; the Levenberg-Marquardt loop is the
generic one of :mod:`._lm_numba`, shared with the one-term fit).

Internal parameters ``theta = (B, A1, log tau1, beta1, A2, log tau2, beta2)``; at log lag ``s = log t``::

    g2 = B + A1 e1 + A2 e2,   e_k = exp(-2 u_k),   u_k = exp(beta_k (s - log tau_k)) = (t / tau_k)^beta_k

with the analytic Jacobian (per component ``k``)::

    d/dB = 1,  d/dA_k = e_k,  d/dlog tau_k = 2 A_k beta_k u_k e_k,  d/dbeta_k = -2 A_k u_k e_k (s - log tau_k)

Model functions for :func:`._lm_numba.lm_batch`: :func:`evaluate`, :func:`linear_start` (B, A1, A2 by
linear least squares at the starting taus and betas) and :func:`swap_components` (``canonical``: when
``swap`` is set, i.e. both components free with the same bounds, the components are exchanged after the
start and after every accepted step whenever ``tau1 > tau2``, so that ``tau1 <= tau2`` always; the model,
chi2 and the normal equations are invariant under the exchange, only permuted).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._lm_numba import FAST, factor, kww_exps, lm_batch, solve

NP = 7
#: scratch rows of ``work``: the 7 Jacobian columns, (t / tau)^beta and exp(-2 (t / tau)^beta)
N_WORK = NP + 2


@njit(cache=True, nogil=True, fastmath=FAST)
def evaluate(n, y, s, w, th, h, g, work, kb):  # pragma: no cover - compiled
    """chi2 at ``th``; fills ``h`` (7, 7) = J^T W J and ``g`` (7,) = J^T W r; ``work`` (9, L) scratch."""
    jac = work[:NP]
    tu = work[NP]
    te = work[NP + 1]
    b = th[0]
    for c in range(2):
        o = 1 + 3 * c
        a = th[o]
        ltau = th[o + 1]
        beta = th[o + 2]
        kww_exps(n, s, ltau, beta, tu, te, kb)
        c2 = 2.0 * a * beta
        c3 = -2.0 * a
        for i in range(n):
            e = te[i]
            ue = tu[i] * e
            jac[o, i] = e
            jac[o + 1, i] = c2 * ue
            jac[o + 2, i] = c3 * ue * (s[i] - ltau)
    chi2 = 0.0
    for i in range(n):
        jac[0, i] = 1.0
        r = y[i] - (b + th[1] * jac[1, i] + th[4] * jac[4, i])
        tu[i] = w[i] * r  # w r (tu reused)
        chi2 += tu[i] * r
    for j in range(NP):
        v = 0.0
        for i in range(n):
            v += tu[i] * jac[j, i]
        g[j] = v
        for k in range(j + 1):
            v = 0.0
            for i in range(n):
                v += w[i] * jac[j, i] * jac[k, i]
            h[j, k] = v
            h[k, j] = v
    return chi2


@njit(cache=True, nogil=True)
def swap_components(th, h, g, dmp):  # pragma: no cover - compiled
    """Exchange components 1 and 2 when tau1 > tau2 (parameters, gradient, normal matrix, damping)."""
    if not th[2] > th[5]:
        return
    for a in range(1, 4):
        b = a + 3
        th[a], th[b] = th[b], th[a]
        g[a], g[b] = g[b], g[a]
        dmp[a], dmp[b] = dmp[b], dmp[a]
        for j in range(NP):
            h[a, j], h[b, j] = h[b, j], h[a, j]
        for j in range(NP):
            h[j, a], h[j, b] = h[j, b], h[j, a]


@njit(cache=True, nogil=True)
def linear_start(n, y, s, w, th, free, lo, hi, work, kb):  # pragma: no cover - compiled
    """Replace the free ones of (B, A1, A2) by their weighted least-squares values at the starting
    (tau, beta) (the model is linear in them), if all are inside their bounds (contrasts strictly)."""
    jac = work[:NP]
    tu = work[NP]
    te = work[NP + 1]
    lin = np.array([0, 1, 4])
    for c in range(2):
        o = 1 + 3 * c
        kww_exps(n, s, th[o + 1], th[o + 2], tu, te, kb)
        for i in range(n):
            jac[o, i] = te[i]
    for i in range(n):
        jac[0, i] = 1.0
    m = np.zeros((3, 3))
    rhs = np.zeros(3)
    act = np.zeros(3, dtype=np.bool_)
    nf = 0
    for a in range(3):
        act[a] = free[lin[a]]
        if act[a]:
            nf += 1
    if nf == 0:
        return
    for i in range(n):
        r = y[i]
        for a in range(3):  # subtract the fixed linear terms
            if not act[a]:
                r -= th[lin[a]] * jac[lin[a], i]
        for a in range(3):
            if act[a]:
                ja = jac[lin[a], i]
                rhs[a] += w[i] * ja * r
                for b in range(3):
                    if act[b]:
                        m[a, b] += w[i] * ja * jac[lin[b], i]
    dmp = np.zeros(3)
    idx = np.empty(3, dtype=np.int64)
    sc = np.empty(3)
    fac = np.zeros((3, 3))
    tmp = np.empty(3)
    x = np.empty(3)
    k = factor(m, 0.0, dmp, act, idx, sc, fac)
    if k <= 0:
        return
    solve(k, idx, sc, fac, rhs, x, tmp)
    for a in range(3):
        if act[a]:
            j = lin[a]
            if j == 0:
                if not (lo[j] <= x[a] <= hi[j]):
                    return
            elif not (lo[j] < x[a] < hi[j]):
                return
    for a in range(3):
        if act[a]:
            th[lin[a]] = x[a]


@njit(cache=True, nogil=True)
def fit_batch(y, s, w, th0, free, lo, hi, swap, max_iter, tol,
              th_out, cov_out, chi2_out, npts_out, niter_out, conv_out):  # pragma: no cover - compiled
    """Levenberg-Marquardt fits of every row of ``y`` (arguments as :func:`._kww_numba.fit_batch`, with
    7 internal parameters; ``swap``: keep ``log tau1 <= log tau2`` by exchanging the components)."""
    work = np.empty((N_WORK, y.shape[1]))
    return lm_batch(evaluate, linear_start, swap_components, swap, y, s, w, th0, free, lo, hi, max_iter, tol,
                    th_out, cov_out, chi2_out, npts_out, niter_out, conv_out, work)
