"""Is the dynamics stationary over the series?  g2 in time windows and the drift of a model-free tau.

ECM assumes the dynamics does not change during the acquisition (no beam damage, no aging, no
temperature drift).  :func:`stationarity_check` cuts the series into ``n_windows`` consecutive equal
windows, computes the ROI-averaged g2 of each (:func:`window_g2`, :func:`ecm_dask.kernels.regions.roi_average`),
reads a relaxation time from each curve without fitting a model (:func:`tau_model_free`), and fits
``log10(tau)`` against time: a slope more than 3 standard errors from zero flags a drift.

Pure NumPy/SciPy: no dask, no xarray.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from .g2 import g2 as _g2
from .regions import roi_average

__all__ = ["stationarity_check", "tau_model_free", "twotime_stationarity", "window_g2"]

#: the extrapolated initial contrast is trusted up to this factor above the first point
MAX_EXTRAPOLATION = 4.0


def window_g2(block, n_windows: int, *, axis: int = 0, **g2_kwargs):
    """:func:`ecm_dask.kernels.g2.g2` of every pixel in consecutive equal time windows.

    Parameters
    ----------
    block : array_like
        Image series with its time axis at ``axis`` (e.g. ``(T, ny, nx)`` or ``(T, P)``).
    n_windows : int
        Number of windows; each holds ``T // n_windows`` frames (trailing frames are dropped).
    axis : int, default 0
        The time axis of ``block``.
    **g2_kwargs
        Passed to :func:`ecm_dask.kernels.g2.g2` (``method``, ``points_per_octave``, ``max_lag``,
        ``normalization``, ``saturation``...).  A ``frame_mask`` is given for the whole series
        (shape ``(T,)``) and cut per window.  ``max_lag`` defaults to half a window.

    Returns
    -------
    g2_windows : ndarray float32, shape ``(n_windows, *pixel_shape, n_lags)``
        g2 of each window (NaN for pixels that are not ok in that window).
    lag : ndarray float64, shape ``(n_lags,)``
        Lag in frames (the same grid for every window; for ``method="fft"`` with a frame mask the
        per-window mean lags of the bins may differ slightly, and their mean is returned).
    window_start_frames : ndarray int64, shape ``(n_windows,)``
        First frame of each window.

    Raises
    ------
    ValueError
        If ``n_windows`` is not a positive integer, a window would hold fewer than 2 frames, the
        ``frame_mask`` does not fit, or :func:`~ecm_dask.kernels.g2.g2` rejects a window (the message
        names the window).
    """
    arr = np.asarray(block)
    if arr.ndim < 1:
        raise ValueError("block must have a time axis")
    if not -arr.ndim <= int(axis) < arr.ndim:
        raise ValueError(f"axis {axis} is out of range for a block with {arr.ndim} dimensions")
    axis = int(axis) % arr.ndim
    if isinstance(n_windows, bool) or int(n_windows) != n_windows or int(n_windows) < 1:
        raise ValueError(f"n_windows must be a positive integer, got {n_windows!r}")
    n_windows = int(n_windows)
    n_t = arr.shape[axis]
    length = n_t // n_windows
    if length < 2:
        raise ValueError(f"n_windows={n_windows} leaves {length} frame(s) per window of a {n_t}-frame series; "
                         "a correlation needs at least 2")
    kwargs = dict(g2_kwargs)
    fmask = kwargs.pop("frame_mask", None)
    if fmask is not None:
        fmask = np.asarray(fmask)
        if fmask.shape != (n_t,):
            raise ValueError(f"frame_mask must have one entry per frame ({n_t}), got shape {fmask.shape}")
    starts = np.arange(n_windows, dtype=np.int64) * length
    curves, lags = [], []
    for i, a in enumerate(starts.tolist()):
        idx = [slice(None)] * arr.ndim
        idx[axis] = slice(a, a + length)
        try:
            res = _g2(arr[tuple(idx)], axis=axis, frame_mask=None if fmask is None else fmask[a:a + length],
                      **kwargs)
        except ValueError as exc:
            raise ValueError(f"window {i} (frames {a}..{a + length - 1}): {exc}") from exc
        curves.append(res.g2)
        lags.append(res.lag)
    lag = np.mean(np.stack(lags), axis=0)
    return np.stack(curves), lag, starts


def _initial_contrast(t: np.ndarray, c: np.ndarray) -> float:
    """Contrast at lag 0 extrapolated from the early decay of ``c`` (finite, ``c[0] > 0``).

    The early points (the leading run with ``c > c[0] / e``, at least 4 if positive) are fitted with
    ``log c = a - u (t/t0)**b`` (linear least squares in ``a, u`` for each ``b``, ``b`` in [0.1, 3]),
    which is exact for a KWW decay; the result is ``exp(a)``, kept within ``[c0/2, 4 c0]``.
    """
    c0 = c[0]
    pos = np.flatnonzero(~(c > 0))
    n_pos = c.size if pos.size == 0 else int(pos[0])  # leading positive run
    below = np.flatnonzero(~(c > c0 / math.e))
    n_early = c.size if below.size == 0 else int(below[0])
    n_early = min(max(n_early, 4), n_pos)
    if n_early < 3:
        return float(c0)
    s = t[:n_early] / t[0]
    y = np.log(c[:n_early])
    ones = np.ones_like(s)

    def solve(b):
        design = np.stack([ones, -(s ** b)], axis=1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        r = y - design @ coef
        return coef, float(r @ r)

    best = minimize_scalar(lambda b: solve(b)[1], bounds=(0.1, 3.0), method="bounded",
                           options={"xatol": 1e-7})
    (a, u), _ = solve(best.x)
    if not (np.isfinite(a) and u > 0):  # no decay to extrapolate (flat or rising start): plain average
        return float(np.mean(c[:min(3, n_early)]))
    return float(np.clip(math.exp(a), 0.5 * c0, MAX_EXTRAPOLATION * c0))


def tau_model_free(g2_curve, lag, baseline=None) -> float:
    """Model-free relaxation time: where the baseline-corrected g2 falls to ``1/e**2`` of its start.

    For a KWW curve ``g2 = 1 + A exp(-2 (t/tau)**beta)`` the contrast ``g2 - 1`` drops to ``A / e**2`` at
    ``t = tau`` whatever ``beta``, so this recovers the KWW ``tau`` without fitting one.

    Parameters
    ----------
    g2_curve : array_like, shape ``(n_lags,)``
        One g2 curve (e.g. an ROI average); non-finite points are skipped.
    lag : array_like, shape ``(n_lags,)``
        Positive, increasing lags (any unit: the result has the same unit).
    baseline : float, optional
        Long-time limit of g2 (default 1).

    Returns
    -------
    float
        The lag where ``c = g2 - baseline`` first falls to ``c0 / e**2``, interpolated linearly in
        ``log c`` versus ``log lag`` between the bracketing points (linearly in ``c`` if the lower point
        is not positive).  ``c0``, the contrast at lag 0, is extrapolated from the first points: the
        leading run with ``c > c[0]/e`` is fitted with ``log c = a - u (t/t0)**b`` (exact for KWW
        curves, whose first lags may already have decayed) and ``c0 = exp(a)``, kept within
        ``[c[0]/2, 4 c[0]]``.  NaN if the curve never falls that far, has fewer than 2 finite points,
        or does not start above the baseline.

    Raises
    ------
    ValueError
        If ``g2_curve`` and ``lag`` are not 1-D of the same length, or the finite lags are not positive
        and strictly increasing.
    """
    g = np.asarray(g2_curve, dtype=np.float64)
    t = np.asarray(lag, dtype=np.float64)
    if g.ndim != 1 or t.shape != g.shape:
        raise ValueError(f"g2_curve and lag must be 1-D of the same length, got shapes {g.shape} and {t.shape}")
    base = 1.0 if baseline is None else float(baseline)
    ok = np.isfinite(g) & np.isfinite(t)
    g, t = g[ok], t[ok]
    if t.size and (t[0] <= 0 or np.any(np.diff(t) <= 0)):
        raise ValueError("lag must be positive and strictly increasing")
    if t.size < 2:
        return float("nan")
    c = g - base
    if not c[0] > 0:
        return float("nan")
    c0 = _initial_contrast(t, c)
    level = c0 / math.e ** 2
    below = np.flatnonzero(c <= level)
    if below.size == 0:
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float("nan")
    lo, hi = c[i - 1], c[i]
    x0, x1 = math.log(t[i - 1]), math.log(t[i])
    if hi > 0:
        f = (math.log(level) - math.log(lo)) / (math.log(hi) - math.log(lo))
    else:
        f = (level - lo) / (hi - lo)
    return float(math.exp(x0 + f * (x1 - x0)))


def _weighted_line(x, y, sig):
    """Weighted least-squares line: slope, its standard error (from ``sig``), reduced chi^2."""
    w = 1.0 / sig ** 2
    xm = np.sum(w * x) / np.sum(w)
    ym = np.sum(w * y) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = np.sum(w * (x - xm) * (y - ym)) / sxx
    se = 1.0 / math.sqrt(sxx)
    r = y - ym - slope * (x - xm)
    dof = x.size - 2
    chi2 = float(np.sum(w * r * r) / dof) if dof > 0 else float("nan")
    return float(slope), float(se), chi2


def stationarity_check(block, n_windows: int = 4, *, frame_time: float = 1.0, pixel_mask=None,
                       n_boot: int = 100, seed: int = 0, baseline=None, **g2_kwargs) -> dict:
    """Test whether the relaxation time drifts during the series.

    Parameters
    ----------
    block : array_like
        Image series, time along axis 0 (or ``axis=`` in ``g2_kwargs``), e.g. ``(T, ny, nx)`` or ``(T, P)``.
    n_windows : int, default 4
        Consecutive equal windows (at least 2 for a slope).
    frame_time : float, default 1.0
        Seconds per frame.
    pixel_mask : array_like of bool, optional
        The region: True for the pixels to average (shape of a frame).  Default: every pixel.
    n_boot : int, default 100
        Bootstrap resamples of the pixels for the uncertainty of each window's tau.
    seed : int, default 0
        Seed of the bootstrap (the result is deterministic).
    baseline : float, optional
        Long-time limit of g2 passed to :func:`tau_model_free` (default 1).  Note that g2 estimated
        over a finite window of ``L`` frames falls below 1 by a term of order ``A tau / L`` at long lags (the mean
        intensity is estimated from the same window), which shortens the model-free tau of slow
        dynamics a little; the bias is the same for equal taus, so it does not fake a drift.
    **g2_kwargs
        Passed to :func:`window_g2` / :func:`ecm_dask.kernels.g2.g2`.

    Returns
    -------
    dict
        ``"window_start"`` (n_windows,) int: first frame of each window; ``"window_frames"`` int: frames
        per window; ``"t_mid"`` (n_windows,): mid-time of each window in s; ``"lag"`` (n_lags,): lags in
        frames; ``"lag_time"`` (n_lags,): lags in s; ``"g2"``, ``"g2_sem"`` (n_windows, n_lags): ROI-averaged
        g2 and its standard error; ``"n_pixels"`` (n_windows, n_lags): pixels averaged; ``"tau"``,
        ``"tau_err"`` (n_windows,): model-free tau (:func:`tau_model_free`) in s and its bootstrap
        standard error; ``"slope"``, ``"slope_err"`` float: weighted linear fit of ``log10(tau)`` versus
        ``t_mid``, in decades per 1000 s; ``"chi2_red"`` float: reduced chi^2 of that fit (NaN for 2
        windows); ``"ratio"``, ``"ratio_err"`` float: ``tau[-1] / tau[0]`` with propagated error;
        ``"drifting"`` bool: ``|slope| > 3 slope_err``; ``"n_boot"`` int.  Quantities that cannot be
        computed (a window whose curve never decays, fewer than 2 windows with a tau) are NaN, and
        ``drifting`` is then False.

    Raises
    ------
    ValueError
        If ``frame_time`` is not positive, ``n_boot`` < 2, ``pixel_mask`` does not fit or selects no
        pixel, or :func:`window_g2` rejects the input.
    """
    frame_time = float(frame_time)
    if not frame_time > 0 or not math.isfinite(frame_time):
        raise ValueError(f"frame_time must be a positive number of seconds, got {frame_time}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or int(n_boot) < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    n_boot = int(n_boot)
    g2w, lag, starts = window_g2(block, n_windows, **g2_kwargs)
    n_win, n_lags = g2w.shape[0], g2w.shape[-1]
    pix_shape = g2w.shape[1:-1]
    if pixel_mask is None:
        sel = np.ones(int(np.prod(pix_shape)), dtype=bool)
    else:
        pm = np.asarray(pixel_mask)
        if pm.dtype != bool:
            raise ValueError(f"pixel_mask must be boolean (True = pixel in the region), got dtype {pm.dtype}")
        if pm.shape != pix_shape:
            raise ValueError(f"pixel_mask must have the shape of a frame {pix_shape}, got {pm.shape}")
        sel = pm.reshape(-1)
    n_sel = int(sel.sum())
    if n_sel == 0:
        raise ValueError("pixel_mask selects no pixel: the region of interest is empty")
    length = int(np.shape(block)[g2_kwargs.get("axis", 0)]) // n_win
    rng = np.random.default_rng(seed)
    mean = np.empty((n_win, n_lags))
    sem = np.empty((n_win, n_lags))
    npix = np.empty((n_win, n_lags), dtype=np.int64)
    tau = np.empty(n_win)
    tau_err = np.empty(n_win)
    batch = max(1, min(n_boot, (32 << 20) // (8 * n_sel)))
    for i in range(n_win):
        curves = g2w[i].reshape(-1, n_lags)[sel]
        mean[i], sem[i], npix[i] = roi_average(curves)
        tau[i] = tau_model_free(mean[i], lag, baseline) * frame_time
        ok = np.isfinite(curves)
        vals = np.where(ok, curves, 0.0).astype(np.float64)
        okf = ok.astype(np.float64)
        boots = np.empty(n_boot)
        for b0 in range(0, n_boot, batch):
            nb = min(batch, n_boot - b0)
            wts = rng.multinomial(n_sel, np.full(n_sel, 1.0 / n_sel), size=nb).astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                bmean = (wts @ vals) / (wts @ okf)
            for j in range(nb):
                boots[b0 + j] = tau_model_free(bmean[j], lag, baseline) * frame_time
        fin = np.isfinite(boots)
        tau_err[i] = float(np.std(boots[fin], ddof=1)) if fin.sum() >= 2 else np.nan
    t_mid = (starts + 0.5 * length) * frame_time
    slope = slope_err = chi2 = float("nan")
    use = np.isfinite(tau) & (tau > 0) & np.isfinite(tau_err) & (tau_err > 0)
    if use.sum() >= 2:
        y = np.log10(tau[use])
        sig = tau_err[use] / (tau[use] * math.log(10.0))
        slope, slope_err, chi2 = _weighted_line(t_mid[use] / 1000.0, y, sig)
    ratio = float(tau[-1] / tau[0])
    ratio_err = float(abs(ratio) * math.hypot(tau_err[-1] / tau[-1], tau_err[0] / tau[0]))
    drifting = bool(np.isfinite(slope) and np.isfinite(slope_err) and abs(slope) > 3.0 * slope_err)
    return {
        "window_start": starts,
        "window_frames": length,
        "t_mid": t_mid,
        "lag": lag,
        "lag_time": lag * frame_time,
        "g2": mean,
        "g2_sem": sem,
        "n_pixels": npix,
        "tau": tau,
        "tau_err": tau_err,
        "slope": slope,
        "slope_err": slope_err,
        "chi2_red": chi2,
        "ratio": ratio,
        "ratio_err": ratio_err,
        "drifting": drifting,
        "n_boot": n_boot,
    }



def _lag_bin_edges(max_lag: int, points_per_octave: int) -> np.ndarray:
    """Integer edges of log-spaced lag bins ``[e_i, e_i+1)`` covering lags 1 .. ``max_lag``."""
    n = max(1, int(math.ceil(math.log2(max_lag + 1) * points_per_octave)))
    return np.unique(np.round(np.geomspace(1, max_lag + 1, n + 1)).astype(np.int64))


def _age_binned(c: np.ndarray, n_windows: int, n_blocks: int, edges: np.ndarray):
    """Sums of ``C`` over the pairs of each (age window, lag bin, age block), the sums of their lags, counts."""
    n_t = c.shape[0]
    shape = (n_windows, edges.size - 1, n_blocks)
    s, sk, cnt = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    width = n_t / n_windows
    for b in range(edges.size - 1):
        for k in range(int(edges[b]), int(edges[b + 1])):
            d = np.diagonal(c, k)
            age = np.arange(n_t - k) + 0.5 * k
            w = np.minimum((age / width).astype(np.int64), n_windows - 1)
            blk = np.minimum(((age - w * width) / (width / n_blocks)).astype(np.int64), n_blocks - 1)
            ok = np.isfinite(d)
            idx = w[ok] * n_blocks + blk[ok]
            size = n_windows * n_blocks
            n_k = np.bincount(idx, minlength=size).reshape(n_windows, n_blocks)
            s[:, b] += np.bincount(idx, weights=d[ok], minlength=size).reshape(n_windows, n_blocks)
            sk[:, b] += k * n_k
            cnt[:, b] += n_k
    return s, sk, cnt


def twotime_stationarity(C, *, n_windows: int = 7, frame_time: float = 1.0, max_lag: int | None = None,
                         points_per_octave: int = 4, baseline: float | None = None, method: str = "kww",
                         n_blocks: int = 7, alpha: float = 0.05) -> dict:
    """Is the dynamics stationary along a two-time map?  tau in windows of sample age, and a trend test.

    ``C(t1, t2)`` is cut into ``n_windows`` equal windows of sample age ``(t1 + t2) / 2``.  In each window the
    one-time g2 at lag ``k = t2 - t1 >= 1`` (the main diagonal, which carries shot noise, is left out) is the
    mean of ``C`` over the pairs of that age and lag, averaged over log-spaced lag bins.  A relaxation time is
    read from each window's g2:

    * ``method="kww"`` (default): the ``tau`` of ``baseline + A exp(-2 (t/tau)^beta)`` fitted by
      :func:`ecm_dask.kernels.kww.fit_kww` with the baseline fixed and ``beta`` fixed at the value fitted to the
      g2 of all ages together (one shape, so tau is comparable between windows; with beta free, tau and
      beta trade off on noisy windows);
    * ``method="crossing"``: model free, where the g2 (running mean over 3 lag bins) minus the baseline
      falls to ``1/e^2`` of its initial contrast (:func:`ecm_dask.kernels.kww.tau_crossing`).

    Trend test: ordinary least squares of ``log10 tau`` on age over the windows with a tau; the slope's
    standard error comes from the scatter of the windows about the line, and ``p_value`` is the two-sided
    Student-t probability (``n - 2`` degrees of freedom) of a slope at least that far from 0 if tau did not
    change.  ``non_stationary = p_value < alpha``.  The scatter between windows, not the within-window errors,
    sets the error because a map only a few relaxation times long fluctuates between windows far more than
    the pairs inside a window suggest: on stationary speckle maps (tau 30 frames, 350 frames) a 3-sigma test
    with the within-window errors called 25 % of them non-stationary.

    Parameters
    ----------
    C : array_like (T, T)
        Two-time correlation (e.g. :func:`ecm_dask.kernels.twotime.two_time`); non-finite entries are skipped.
    n_windows : int, default 7
        Windows of age (at least 3 for a trend with an error).
    frame_time : float, default 1.0
        Seconds per frame: ages, lags and taus are returned in s.
    max_lag : int, optional
        Largest lag in frames (default ``T // 2``).
    points_per_octave : int, default 4
        Lag bins per factor 2 of lag.
    baseline : float, optional
        Long-time limit of g2.  Default: the mean of ``C`` over the pairs further apart than ``max_lag``
        (decorrelated when the relaxation is much shorter than ``max_lag``).
    method : ``"kww"`` or ``"crossing"`` (above)
    n_blocks : int, default 7
        Blocks of age per window for the within-window standard errors of g2 and tau (>= 2).
    alpha : float, default 0.05
        Level of the trend test.

    Returns
    -------
    dict
        ``"age"`` (n_windows,): mid age of each window in s; ``"lag"`` (n_windows, n_bins): mean lag of each
        bin in s; ``"g2"``, ``"g2_err"`` (n_windows, n_bins): mean and within-window standard error (from the
        spread of the blocks); ``"n_pairs"`` (n_windows, n_bins) int; ``"baseline"`` float; ``"beta"`` float
        (the all-ages beta of ``method="kww"``, else NaN); ``"tau"``, ``"tau_err"`` (n_windows,) s: tau and its
        within-window error (fit covariance with the g2 errors, inflated by sqrt(chi2_red) when above 1;
        for ``"crossing"`` a bootstrap over the blocks; NaN where there is none); ``"slope"``, ``"slope_err"``
        (log10 tau per s of age), ``"t"``, ``"p_value"``, ``"n_used"`` (windows with a tau);
        ``"ratio"``: tau of the last over the first window; ``"non_stationary"`` bool (False when fewer than
        3 windows have a tau).

    Raises
    ------
    ValueError
        If ``C`` is not a square 2-D array of at least 8 frames, or an option is out of range (the message
        names it).
    """
    from scipy import stats

    from . import kww as _kww

    c = np.asarray(C, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 8:
        raise ValueError(f"C must be a square (T, T) two-time map with T >= 8, got shape {c.shape}")
    n_t = c.shape[0]
    for name, value, low in (("n_windows", n_windows, 3), ("n_blocks", n_blocks, 2),
                             ("points_per_octave", points_per_octave, 1)):
        if isinstance(value, bool) or int(value) != value or int(value) < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    n_windows, n_blocks = int(n_windows), int(n_blocks)
    if method not in ("kww", "crossing"):
        raise ValueError(f"method must be 'kww' or 'crossing', got {method!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    frame_time = float(frame_time)
    if not frame_time > 0 or not math.isfinite(frame_time):
        raise ValueError(f"frame_time must be a positive number of seconds, got {frame_time}")
    max_lag = n_t // 2 if max_lag is None else max_lag
    if isinstance(max_lag, bool) or int(max_lag) != max_lag or not 2 <= int(max_lag) < n_t:
        raise ValueError(f"max_lag must be an integer in [2, {n_t - 1}], got {max_lag!r}")
    max_lag = int(max_lag)
    if baseline is None:
        far = np.abs(np.subtract.outer(np.arange(n_t), np.arange(n_t))) > max_lag
        vals = c[far]
        vals = vals[np.isfinite(vals)]
        if vals.size == 0:
            raise ValueError("no pair is further apart than max_lag to estimate the baseline: give baseline=")
        baseline = float(vals.mean())
    baseline = float(baseline)
    s, sk, cnt = _age_binned(c, n_windows, n_blocks, _lag_bin_edges(max_lag, int(points_per_octave)))
    with np.errstate(invalid="ignore", divide="ignore"):
        n_pairs = cnt.sum(axis=2)
        g2 = s.sum(axis=2) / n_pairs
        lag = sk.sum(axis=2) / n_pairs
        block_mean = s / cnt
        n_full = np.sum(cnt > 0, axis=2)
        g2_err = np.sqrt(np.nansum((block_mean - g2[..., None]) ** 2, axis=2) / (n_full - 1) / n_full)
        lag_all = sk.sum(axis=(0, 2)) / cnt.sum(axis=(0, 2))
        g2_all = s.sum(axis=(0, 2)) / cnt.sum(axis=(0, 2))
    tau = np.full(n_windows, np.nan)
    tau_err = np.full(n_windows, np.nan)
    beta = float("nan")
    tau_bounds = {"tau": (0.5, 20.0 * n_t)}
    if method == "kww":
        ok = np.isfinite(g2_all)
        beta = float(_kww.fit_kww(g2_all[ok], lag_all[ok], fixed={"baseline": baseline}, bounds=tau_bounds).params[0, 3])
    for i in range(n_windows):
        ok = np.isfinite(g2[i]) & (g2_err[i] > 0)
        if ok.sum() < 5:
            continue
        if method == "kww":
            fit = _kww.fit_kww(g2[i][ok], lag[i][ok], sigma=g2_err[i][ok], bounds=tau_bounds,
                               fixed={"baseline": baseline, "beta": beta})
            if fit.status[0] in (_kww.FIT_OK, _kww.FIT_NOT_CONVERGED):
                tau[i] = fit.params[0, 2]
                tau_err[i] = fit.errors[0, 2] * math.sqrt(max(1.0, float(fit.chi2_red[0])))
        else:
            tau[i] = float(_kww.tau_crossing(g2[i][ok][None], lag[i][ok], baseline=baseline, smooth=3)[0])
            boots = []
            for j in range(n_blocks):  # jackknife over the blocks of age
                keep = np.arange(n_blocks) != j
                with np.errstate(invalid="ignore", divide="ignore"):
                    gj = s[i][:, keep].sum(axis=1) / cnt[i][:, keep].sum(axis=1)
                boots.append(float(_kww.tau_crossing(gj[ok][None], lag[i][ok], baseline=baseline, smooth=3)[0]))
            boots = np.asarray(boots)
            if np.isfinite(boots).all():
                tau_err[i] = float(np.sqrt((n_blocks - 1) / n_blocks * np.sum((boots - boots.mean()) ** 2)))
    age = (np.arange(n_windows) + 0.5) * (n_t / n_windows) * frame_time
    tau_s, tau_err_s = tau * frame_time, tau_err * frame_time
    use = np.isfinite(tau_s) & (tau_s > 0)
    slope = slope_err = t_stat = p_value = float("nan")
    if use.sum() >= 3:
        reg = stats.linregress(age[use], np.log10(tau_s[use]))
        slope, slope_err = float(reg.slope), float(reg.stderr)
        t_stat = slope / slope_err if slope_err > 0 else float("inf") * np.sign(slope)
        p_value = float(2.0 * stats.t.sf(abs(t_stat), int(use.sum()) - 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = float(tau_s[-1] / tau_s[0])
    return {"age": age, "lag": lag * frame_time, "g2": g2, "g2_err": g2_err, "n_pairs": n_pairs.astype(np.int64),
            "baseline": baseline, "beta": beta, "tau": tau_s, "tau_err": tau_err_s, "slope": slope,
            "slope_err": slope_err, "t": t_stat, "p_value": p_value, "n_used": int(use.sum()), "ratio": ratio,
            "non_stationary": bool(np.isfinite(p_value) and p_value < alpha)}
