"""Fit models as declarations (pure NumPy/Numba: no dask, no xarray).

A :class:`FitModel` says everything the generic plumbing (:mod:`.lm`, :mod:`ecm_dask.ops.fit`) needs to
know about a model: its parameter names and units, which parameters are relaxation times (fitted as
``log tau``), its default bounds, its g2 formula (NumPy), its compiled model functions (for
:func:`._lm_numba.lm_batch`), the components that may be exchanged, and the names of its per-curve
outputs.  The fitting functions themselves are :func:`.kww.fit_kww` and :func:`.kww2.fit_kww2`.

Models
------
:data:`KWW`
    ``g2 = baseline + contrast exp(-2 (t / tau)^beta)``
:data:`KWW2`
    ``g2 = baseline + contrast1 exp(-2 (t / tau1)^beta1) + contrast2 exp(-2 (t / tau2)^beta2)``, ``tau1 <= tau2``
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _kww2_numba as _nb2
from . import _kww_numba as _nb
from .lm import FIT_STATUS, FIT_STATUS2, lag_range, per_curve

#: unit names of :attr:`FitModel.units`: dimensionless, or the unit of the lags (a time)
UNIT_ONE, UNIT_LAG = "1", "lag"

#: default bounds of the KWW parameters (tau: first lag .. 20 x the last lag, i.e. 10 x a series of 2 x the
#: last lag)
BETA_BOUNDS = (0.1, 2.5)
CONTRAST_BOUNDS = (0.0, 10.0)
BASELINE_BOUNDS = (-np.inf, np.inf)
TAU_MAX_OVER_LAST_LAG = 20.0
#: starting beta, and the floor of the starting contrast (relative to max(|baseline|, 1))
BETA_START = 0.7
CONTRAST_FLOOR = 1e-6


@dataclass(frozen=True)
class FitModel:
    """Declaration of a g2 model for the batched Levenberg-Marquardt fits.

    Attributes
    ----------
    name : str
        short name (``"kww"``, ``"kww2"``)
    params : tuple of str
        parameter names, in the order of the parameter arrays
    units : tuple of str
        per parameter, :data:`UNIT_ONE` or :data:`UNIT_LAG` (a time: fitted as its log, reported in the
        unit of the lags)
    default_bounds : callable ``(lag) -> dict`` name -> (lo, hi)
    g2 : callable ``(lag (L,), params (N, P)) -> (N, L)``: the model in NumPy
    evaluate, linear_start : the compiled model functions given to :func:`._lm_numba.lm_batch`
    fit_batch : callable ``(y, s, w, th0, free, lo, hi, reorder, max_iter, tol, th, cov, chi2, n_points,
        n_iter, conv)``: the compiled batched fit of this model (internal parameters)
    exchangeable : tuple of (i, j) index pairs of parameters of two components that may be exchanged to keep
        the times ordered (empty: none)
    outputs : tuple of str
        names of the per-curve results besides ``params``/``errors``/``cov`` (attributes of the fit result)
    status_names : dict code -> meaning of the status codes this model can return
    formula : str
    """

    name: str
    params: tuple
    units: tuple
    default_bounds: Callable
    g2: Callable
    evaluate: Callable
    linear_start: Callable
    fit_batch: Callable
    exchangeable: tuple = ()
    outputs: tuple = ("chi2_red", "n_iter", "status")
    status_names: dict | None = None
    formula: str = ""

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return len(self.params)

    @property
    def taus(self) -> tuple:
        """Indices of the relaxation times (fitted as log tau)."""
        return tuple(i for i, u in enumerate(self.units) if u == UNIT_LAG)

    @property
    def tau_names(self) -> tuple:
        """Names of the relaxation times."""
        return tuple(self.params[i] for i in self.taus)


# ------------------------------------------------------------------------------------------- one term
def kww_model(lag, params) -> np.ndarray:
    """KWW g2 model ``baseline + A exp(-2 (t / tau)^beta)``.

    Parameters
    ----------
    lag : (L,) array of lags (same unit as tau)
    params : (N, 4) or (4,) array of (baseline, contrast A, tau, beta)

    Returns
    -------
    (N, L) float64 array (N = 1 for a single parameter set).
    """
    t = np.asarray(lag, dtype=np.float64)[None, :]
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    if p.shape[-1] != 4:
        raise ValueError(f"params must be (N, 4), got shape {p.shape}")
    b, a, tau, beta = (p[:, j, None] for j in range(4))
    return b + a * np.exp(-2.0 * (t / tau) ** beta)


def kww_default_bounds(lag) -> dict:
    """Default bounds for lags ``lag``: tau from the first lag to 20x the last (10x a series of 2x the
    last lag), beta in [0.1, 2.5], contrast in [0, 10], baseline unbounded."""
    first, last = lag_range(lag)
    return {"baseline": BASELINE_BOUNDS, "contrast": CONTRAST_BOUNDS,
            "tau": (first, TAU_MAX_OVER_LAST_LAG * last), "beta": BETA_BOUNDS}


def kww_guess_raw(y: np.ndarray, t: np.ndarray, baseline=None) -> np.ndarray:
    """Model-free numbers of every curve: (N, 4) baseline, raw contrast (not floored), the lag where
    ``g2 - baseline`` first falls below ``contrast / e^2`` (NaN if never), number of finite points.

    Parameters
    ----------
    y : (N, L) curves (C-contiguous float32/float64); t : (L,) lags
    baseline : None (median of the last ~20 % of the finite points) or a scalar / (N,) array
    """
    base = np.full(y.shape[0], np.nan) if baseline is None else per_curve(baseline, y.shape[0], "baseline")
    out = np.empty((y.shape[0], 4))
    _nb.guess_batch(y, t, base, out)
    return out


def kww_start_from_raw(raw: np.ndarray, lag_last: float) -> np.ndarray:
    """(N, 4) starting (baseline, A, tau, beta) from :func:`kww_guess_raw`: the contrast floored at
    ``1e-6 max(|baseline|, 1)``, tau ``2 lag_last`` where there is no crossing, beta 0.7; NaN rows where
    there is no finite point."""
    b, a, tau = raw[:, 0], raw[:, 1], raw[:, 2]
    p = np.empty((raw.shape[0], 4))
    p[:, 0] = b
    with np.errstate(invalid="ignore"):
        p[:, 1] = np.maximum(a, CONTRAST_FLOOR * np.maximum(np.abs(b), 1.0))
    p[:, 2] = np.where(np.isfinite(tau), tau, 2.0 * lag_last)
    p[:, 3] = BETA_START
    p[raw[:, 3] == 0] = np.nan
    return p


def _kww_fit_batch(y, s, w, th0, free, lo, hi, reorder, max_iter, tol, *out):
    return _nb.fit_batch(y, s, w, th0, free, lo, hi, max_iter, tol, *out)


KWW = FitModel(
    name="kww",
    params=("baseline", "contrast", "tau", "beta"),
    units=(UNIT_ONE, UNIT_ONE, UNIT_LAG, UNIT_ONE),
    default_bounds=kww_default_bounds,
    g2=kww_model,
    evaluate=_nb.evaluate,
    linear_start=_nb.linear_start,
    fit_batch=_kww_fit_batch,
    status_names=FIT_STATUS,
    formula="g2 = baseline + contrast * exp(-2 (t / tau)^beta)",
)


# ------------------------------------------------------------------------------------------- two terms
def kww2_model(lag, params) -> np.ndarray:
    """Two-KWW g2 model; ``params`` (N, 7) or (7,) as :attr:`KWW2.params <FitModel.params>`; returns (N, L)
    float64."""
    t = np.asarray(lag, dtype=np.float64)[None, :]
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    if p.shape[-1] != 7:
        raise ValueError(f"params must be (N, 7), got shape {p.shape}")
    b, a1, t1, b1, a2, t2, b2 = (p[:, j, None] for j in range(7))
    return b + a1 * np.exp(-2.0 * (t / t1) ** b1) + a2 * np.exp(-2.0 * (t / t2) ** b2)


def kww2_default_bounds(lag) -> dict:
    """Default bounds: those of :func:`kww_default_bounds` for both components."""
    b = kww_default_bounds(lag)
    out = {"baseline": b["baseline"]}
    for c in "12":
        for key in ("contrast", "tau", "beta"):
            out[key + c] = b[key]
    return out


def _kww2_fit_batch(y, s, w, th0, free, lo, hi, reorder, max_iter, tol, *out):
    return _nb2.fit_batch(y, s, w, th0, free, lo, hi, reorder, max_iter, tol, *out)


KWW2 = FitModel(
    name="kww2",
    params=("baseline", "contrast1", "tau1", "beta1", "contrast2", "tau2", "beta2"),
    units=(UNIT_ONE, UNIT_ONE, UNIT_LAG, UNIT_ONE, UNIT_ONE, UNIT_LAG, UNIT_ONE),
    default_bounds=kww2_default_bounds,
    g2=kww2_model,
    evaluate=_nb2.evaluate,
    linear_start=_nb2.linear_start,
    fit_batch=_kww2_fit_batch,
    exchangeable=((1, 4), (2, 5), (3, 6)),
    outputs=("chi2_red", "n_iter", "status", "f_stat", "p_value", "supported"),
    status_names=FIT_STATUS2,
    formula="g2 = baseline + contrast1 * exp(-2 (t / tau1)^beta1) + contrast2 * exp(-2 (t / tau2)^beta2), "
            "tau1 <= tau2",
)

#: the declared models by name
MODELS = {m.name: m for m in (KWW, KWW2)}


def get_model(model) -> FitModel:
    """The :class:`FitModel` of a name in :data:`MODELS` (or the model itself)."""
    if isinstance(model, FitModel):
        return model
    if model not in MODELS:
        raise ValueError(f"unknown fit model {model!r}; known: {list(MODELS)}")
    return MODELS[model]
