"""Numba core of the multi-tau correlator (no dask, no xarray).

For a chunk of pixels ``p0 .. p1`` of a time-major block ``x (T, P)`` (any numeric dtype):

1. ``load_chunk`` copies the pixels into a pixel-major float64 buffer ``b (Pc, T)`` (time-blocked
   transpose, so both sides of the copy stay in cache); masked frames become zeros.
2. the per-``m`` driver walks each pixel's buffer level by level: sum and maximum, then the lagged
   products for the lags of the level accumulated in scalar locals (generated, unrolled source) that
   LLVM keeps in vector registers (lag 0, the sum of squares, comes free with level 0); then pairs of
   frames are averaged in place for the next level.  A non-finite value makes the pixel's sum non-finite.

Accumulation is float64.  The lag loops may reassociate sums (``fastmath`` reassoc/contract only; NaN
and infinity semantics are kept).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_FAST = {"reassoc", "contract"}


@njit(cache=True, nogil=True)
def load_chunk(x, p0, p1, w, buf):  # pragma: no cover - compiled
    """buf[p, t] = x[t, p0 + p] on valid frames, 0 on masked ones (time-blocked transpose, no reductions)."""
    n_t = x.shape[0]
    n_p = p1 - p0
    tb = 64
    for t0 in range(0, n_t, tb):
        t1 = min(n_t, t0 + tb)
        for p in range(n_p):
            for t in range(t0, t1):
                v = np.float64(x[t, p0 + p])
                buf[p, t] = v if w[t] != 0.0 else 0.0
    return 0


_TEMPLATE = '''
def _lags(b, n, k_lo, out):
    """out[j] += sum_{{t < n - k}} b[t] b[t + k], k = k_lo + j, j < {nk}."""
{init}
    t_main = max(n - (k_lo + {nk} - 1), 0)
    bk = b[k_lo:]  # constant offsets below are provably >= 0, so no wraparound checks block vectorisation
    for t in range(t_main):
        bt = b[t]
{update}
{store}
    for t in range(t_main, n):
        bt = b[t]
        for j in range({nk}):
            k = k_lo + j
            if t + k < n:
                out[j] += bt * b[t + k]
'''


def _make_lags(nk: int):
    init = "\n".join(f"    a{j} = 0.0" for j in range(nk))
    update = "\n".join(f"        a{j} += bt * bk[t + {j}]" for j in range(nk))
    store = "\n".join(f"    out[{j}] += a{j}" for j in range(nk))
    src = _TEMPLATE.format(nk=nk, init=init, update=update, store=store)
    namespace: dict = {}
    exec(compile(src, f"<ecm_dask multitau lags nk={nk}>", "exec"), namespace)  # noqa: S102 - generated kernel
    return njit(nogil=True, fastmath=_FAST)(namespace["_lags"])


def _make_driver(lags0, lags_l):
    @njit(nogil=True, fastmath=_FAST)
    def driver(buf, n_t, m, n_levels, num, head, tail, total, maxval):  # pragma: no cover - compiled
        """For every pixel row of buf: num/head/tail (Pc, n_levels, 2m), total (Pc, n_levels), maxval (Pc,).

        ``num[p, 0, 0]`` is the sum of squares (lag 0); a non-finite value makes ``total[p, 0]`` non-finite.
        """
        two_m = 2 * m
        for p in range(buf.shape[0]):
            b = buf[p]
            n = n_t
            for level in range(n_levels):
                if level > 0:
                    half = n // 2
                    for t in range(half):
                        b[t] = 0.5 * (b[2 * t] + b[2 * t + 1])
                    n = half
                s = 0.0
                for t in range(n):
                    s += b[t]
                total[p, level] = s
                if level == 0:
                    mx = -np.inf
                    for t in range(n):
                        mx = max(mx, b[t])
                    maxval[p] = mx
                    lags0(b, n, 0, num[p, 0, 0:two_m])
                    k_lo = 1
                else:
                    lags_l(b, n, m, num[p, level, m:two_m])
                    k_lo = m
                h = 0.0
                for k in range(two_m):
                    if k >= k_lo:
                        head[p, level, k] = h
                    if k < n:
                        h += b[k]
                tl = 0.0
                for k in range(1, two_m):
                    if k <= n:
                        tl += b[n - k]
                    if k >= k_lo:
                        tail[p, level, k] = tl
        return 0

    return driver


_DRIVERS: dict[int, object] = {}


def driver_for(m: int):
    """The compiled multi-tau driver for ``m`` points per octave (built and compiled once per ``m``)."""
    if m not in _DRIVERS:
        _DRIVERS[m] = _make_driver(_make_lags(2 * m), _make_lags(m))
    return _DRIVERS[m]
