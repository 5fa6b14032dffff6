"""Python-level plumbing of the batched Levenberg-Marquardt fits, shared by every model (pure NumPy: no
dask, no xarray).

The compiled solver is :func:`._lm_numba.lm_batch`; a model (:mod:`.models`) declares its parameters,
which of them are relaxation times (fitted as ``log tau``), default bounds and compiled functions.  This
module turns user input into solver input and solver output into results, the same way for every model:

* :func:`as_curves`, :func:`check_lags`, :func:`lag_range`, :func:`per_curve`: checked input arrays;
* :func:`parse_bounds`, :func:`parse_fixed`, :func:`weights`, :func:`check_solver`: options;
* :func:`solve`: start values -> internal parameters (log times), one call of the model's compiled
  ``fit_batch``;
* :func:`to_external`: solver results -> parameters, covariance, reduced chi2, standard errors;
* :func:`convergence_status`: the status codes that follow from the solver alone.

The status codes ``FIT_*`` (and their names :data:`FIT_STATUS`, :data:`FIT_STATUS2`) are defined here and
re-exported by :mod:`.kww` and :mod:`.kww2`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
#: status codes of the two-term fit: those of the one-term fit and FIT_NOT_SUPPORTED
FIT_STATUS2 = {**FIT_STATUS, FIT_NOT_SUPPORTED: "second component not supported"}

#: a parameter this close (relative) to a bound is reported as at the bound
BOUND_RTOL = 1e-6
#: a contrast below this many standard errors is not significant
CONTRAST_SIGMAS = 2.0


@dataclass
class LMResult:
    """Raw results of :func:`solve` for N curves (internal parametrisation: log of the times).

    Attributes
    ----------
    th : (N, P) fitted internal parameters (NaN where not fitted)
    cov : (N, P, P) inverse of J^T W J in the internal parameters (0 for fixed ones, NaN if singular)
    chi2 : (N,) sum of w r^2
    n_points : (N,) int64 usable points
    n_iter : (N,) int32 iterations
    converged : (N,) bool
    lo_i, hi_i : (P,) internal bounds
    """

    th: np.ndarray
    cov: np.ndarray
    chi2: np.ndarray
    n_points: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    lo_i: np.ndarray
    hi_i: np.ndarray


# ---------------------------------------------------------------------------------------------- input
def as_curves(g2) -> np.ndarray:
    """``g2`` as a C-contiguous (N, L) float32/float64 array (a (L,) curve becomes N = 1).

    Parameters
    ----------
    g2 : array_like (L,) or (N, L)

    Returns
    -------
    ndarray (N, L)
    """
    y = np.asarray(g2)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2:
        raise ValueError(f"g2 must be (N, L), got shape {y.shape}")
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64)
    return np.ascontiguousarray(y)


def check_lags(lag, n_lag: int) -> np.ndarray:
    """Lags as float64 (L,), checked: one per point, finite ones > 0 and strictly increasing.

    Parameters
    ----------
    lag : array_like (L,)
    n_lag : number of g2 points per curve

    Returns
    -------
    ndarray (L,) float64
    """
    t = np.asarray(lag, dtype=np.float64)
    if t.shape != (n_lag,):
        raise ValueError(f"lag must have one entry per g2 point ({n_lag}), got shape {t.shape}")
    tf = t[np.isfinite(t)]
    if (tf <= 0).any():
        raise ValueError("lags must be > 0 (lag 0 is never fitted)")
    if (np.diff(tf) <= 0).any():
        raise ValueError("lags must be strictly increasing")
    return np.ascontiguousarray(t)


def lag_range(t) -> tuple[float, float]:
    """(first, last) finite lag of ``t``; (NaN, NaN) if none is finite."""
    t = np.asarray(t, dtype=np.float64)
    tf = t[np.isfinite(t)]
    return (float(tf[0]), float(tf[-1])) if tf.size else (np.nan, np.nan)


def per_curve(value, n: int, name: str) -> np.ndarray:
    """A scalar or (N,) value as an (N,) float64 array; ``name`` is used in the error message."""
    v = np.asarray(value, dtype=np.float64)
    if v.ndim == 0:
        return np.full(n, float(v))
    v = v.reshape(-1)
    if v.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have one value per curve ({n}), got shape {v.shape}")
    return v


def parse_bounds(t: np.ndarray, bounds, defaults: dict, names, taus=()) -> tuple[np.ndarray, np.ndarray]:
    """External bounds (lo, hi) as arrays in the order of ``names``.

    Parameters
    ----------
    t : (L,) lags (only used to know whether any is finite)
    bounds : dict name -> (lo, hi) overriding ``defaults`` (None = unbounded side), or None
    defaults : dict name -> (lo, hi) for every name
    names : parameter names
    taus : indices of the relaxation times (their bounds must be positive)

    Returns
    -------
    lo, hi : (P,) float64
    """
    b = dict(defaults)
    for key, value in (bounds or {}).items():
        if key not in names:
            raise ValueError(f"unknown parameter {key!r} in bounds; expected one of {tuple(names)}")
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


def parse_fixed(fixed, baseline, n: int, names, tau_names=()) -> dict:
    """Per-curve values of the fixed parameters (``fixed`` and the ``baseline`` option), checked.

    Parameters
    ----------
    fixed : dict name -> scalar or (N,) value, or None
    baseline : ``"free"``, ``"fixed"`` (= 1.0) or a number
    n : number of curves
    names : parameter names (``"baseline"`` among them)
    tau_names : names of the relaxation times (fixed values must be > 0)

    Returns
    -------
    dict name -> (N,) float64
    """
    out = {}
    for key, value in (fixed or {}).items():
        if key not in names:
            raise ValueError(f"unknown parameter {key!r} in fixed; expected one of {tuple(names)}")
        out[key] = per_curve(value, n, f"fixed[{key!r}]")
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
    for key in tau_names:
        if key in out and not (out[key][np.isfinite(out[key])] > 0).all():
            raise ValueError("a fixed tau must be > 0")
    return out


def weights(sigma, pairs, y: np.ndarray) -> tuple[np.ndarray, bool]:
    """Weights of the points and whether they are absolute.

    Parameters
    ----------
    sigma : (L,) or (N, L) absolute standard errors (points with sigma <= 0 or non-finite get weight 0), or None
    pairs : (L,) frame pairs per point (relative weights ~ pairs; used when ``sigma`` is None), or None
    y : (N, L) curves

    Returns
    -------
    w : (N, L) or (1, L) float64 weights (1 / sigma^2, pairs, or ones)
    absolute : True for ``sigma`` (covariance as it is), False for relative weights (scaled by chi2_red)
    """
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


def check_solver(max_iter, tol) -> int:
    """``max_iter`` as an int, checked with ``tol`` (``max_iter >= 0``, ``tol > 0``)."""
    max_iter = int(max_iter)
    if max_iter < 0 or not tol > 0:
        raise ValueError("max_iter must be >= 0 and tol > 0")
    return max_iter


def user_start(p0, start: np.ndarray, taus) -> np.ndarray:
    """``start`` (N, P) with the finite entries of ``p0`` ((P,) or (N, P); times must be > 0) put in."""
    n, n_par = start.shape
    user = np.broadcast_to(np.asarray(p0, dtype=np.float64), (n, n_par))
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(user) & (~np.isin(np.arange(n_par), list(taus)) | (user > 0))
    return np.where(usable, user, start)


# --------------------------------------------------------------------------------------------- solver
def internal_bounds(lo: np.ndarray, hi: np.ndarray, taus) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the internal parameters: log of the bounds of the times ``taus``."""
    lo_i, hi_i = lo.copy(), hi.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in taus:
            lo_i[j], hi_i[j] = np.log(lo[j]), np.log(hi[j])
    return lo_i, hi_i


def solve(fit_batch, y: np.ndarray, t: np.ndarray, w: np.ndarray, start: np.ndarray, free: np.ndarray,
          lo: np.ndarray, hi: np.ndarray, taus, max_iter: int, tol: float, reorder: bool = False,
          skip: np.ndarray | None = None) -> LMResult:
    """One batched Levenberg-Marquardt run of a model's compiled ``fit_batch`` from external ``start``.

    Parameters
    ----------
    fit_batch : the model's ``fit_batch(y, s, w, th0, free, lo, hi, reorder, max_iter, tol, th, cov, chi2,
        n_points, n_iter, conv)`` (:attr:`.models.FitModel.fit_batch`)
    y : (N, L) curves; t : (L,) lags; w : weights from :func:`weights`
    start : (N, P) external starting values (times in the unit of ``t``)
    free : (P,) bool; lo, hi : (P,) external bounds; taus : indices of the times (fitted as log)
    max_iter, tol : solver options; reorder : the model may exchange equivalent components
    skip : (N,) bool, optional: curves not to fit (their usable points are counted; parameters, covariance and
        chi2 NaN, 0 iterations), e.g. the ones a model-free rule already gives their status

    Returns
    -------
    LMResult
    """
    n, n_par = start.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        th0 = start.copy()
        for j in taus:
            th0[:, j] = np.log(start[:, j])
        s = np.log(t)
    if skip is not None:
        th0[skip] = np.nan  # the compiled loop fits no curve with a non-finite start
    lo_i, hi_i = internal_bounds(lo, hi, taus)
    th = np.empty((n, n_par))
    cov = np.empty((n, n_par, n_par))
    chi2 = np.empty(n)
    n_points = np.empty(n, dtype=np.int64)
    n_iter = np.empty(n, dtype=np.int32)
    conv = np.empty(n, dtype=np.bool_)
    fit_batch(y, s, w, np.ascontiguousarray(th0), free, lo_i, hi_i, bool(reorder), int(max_iter), float(tol),
              th, cov, chi2, n_points, n_iter, conv)
    return LMResult(th=th, cov=cov, chi2=chi2, n_points=n_points, n_iter=n_iter, converged=conv, lo_i=lo_i,
                    hi_i=hi_i)


def best_of(a: LMResult, b: LMResult) -> LMResult:
    """Per curve, the result of lower chi2 (``a`` where equal or ``b`` is NaN)."""
    better = b.chi2 < a.chi2
    out = {}
    for key in ("th", "cov", "chi2", "n_points", "n_iter", "converged"):
        va, vb = getattr(a, key), getattr(b, key)
        out[key] = np.where(better.reshape((-1,) + (1,) * (va.ndim - 1)), vb, va)
    return LMResult(**out, lo_i=a.lo_i, hi_i=a.hi_i)


def to_external(res: LMResult, start, free, lo, hi, absolute: bool, taus):
    """Solver results -> external parameters (log tau -> tau, exactly on a bound when the solver was; fixed
    values exactly), their covariance (by the Jacobian of log tau -> tau, scaled by the reduced chi2 unless
    the weights were absolute), reduced chi2 and standard errors.

    Parameters
    ----------
    res : LMResult (its ``cov`` is scaled in place); start : (N, P) external start (fixed values)
    free : (P,) bool; lo, hi : (P,) external bounds; absolute : weights from sigma; taus : indices of the times

    Returns
    -------
    params (N, P), cov (N, P, P), chi2_red (N,), errors (N, P)
    """
    th, lo_i, hi_i, cov = res.th, res.lo_i, res.hi_i, res.cov
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
        chi2_red = res.chi2 / (res.n_points - n_free)
        if not absolute:
            cov *= chi2_red[:, None, None]
        errors = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    return params, cov, chi2_red, np.ascontiguousarray(errors)


def convergence_status(p, free, lo, hi, converged, rtol: float = BOUND_RTOL) -> np.ndarray:
    """Status codes from the solver alone: ok, not converged, or a free parameter within ``rtol`` of a bound.

    Parameters
    ----------
    p : (N, P) external parameters; free : (P,) bool; lo, hi : (P,) external bounds;
    converged : (N,) bool; rtol : relative distance to a bound that counts as on it

    Returns
    -------
    (N,) uint8 status codes
    """
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
