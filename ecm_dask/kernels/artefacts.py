"""Per-pixel artefacts of a registered series: intensity changes explained by the drift, and static pixels.

Pure NumPy.  Everything is computed from what the g2 stage stores (registered mean image, g2 at lag 0 and at the
first lags, frame pairs) and from the drift trace, never from the frames again.

Drift residual
--------------
Frames registered in whole pixels (``shift_mode="integer"``) still carry the sub-pixel residual
``r(t) = s(t) - round(s(t))`` (within ±0.5 px): registered pixel ``p`` shows the sample at ``p - r(t)``.  Where the
mean image changes across a pixel (the wire edge next to vacuum, a static texture), the registered intensity
changes with ``r(t)`` by about ``D · r(t)``, ``D`` the local difference of the mean image towards the side the
residual points to.  That is a *slow* fluctuation (it follows the drift), so it looks like a slow decay in g2:

    predicted drift variance  V = Σ_axes var(r_a) · (D_forward,a² + D_backward,a²) / 2

(one-sided differences: a step edge is smeared over two pixels by the sweep itself, and the side the residual
reaches changes with its sign).  Compared with the pixel's measured fluctuation ``<I>² (g2(first lag) - 1)`` it
gives the **drift fraction** ``f = V / (<I>² (g2(lag 1) - 1))``.  Bilinear registration undoes the sub-pixel part:
its residual is zero.

Static pixels
-------------
A pixel without dynamics has no intensity correlation between frames beyond the drift's: ``g2(lag 1) - 1`` is
zero within its noise.  Under that null hypothesis frames are independent: with ``δ(t) = I(t)/<I> - 1`` (variance
``u = g2(0) - 1``, Poisson and everything else), ``g2(k) - 1`` is the mean of ``δ(t) δ(t+k)`` over the frame pairs
(the symmetric normalisation removes the linear terms), each of variance ``u²`` and uncorrelated between pairs and
between lags, so the standard error of the mean over the first lag points with ``N`` pairs in all is
``u / sqrt(N)`` (checked against Poisson pixels from 0.2 to 500 counts in tests/test_artefacts.py; lag points of
higher multi-tau levels average frames and are less noisy, so this is conservative there).  ``z1 = (g2(lag 1) - 1) / σ`` below :data:`STATIC_Z` means no correlation between neighbouring
frames.  A decay faster than the first lags (the fast surface) has none either, so a static pixel must also lack
excess variance at lag 0: ``e0 = g2(0) - 1 - 1/<I>`` (variance beyond Poisson) with standard error
``u sqrt(2 / T)`` over ``T`` frames, ``z0 = e0 / σ0 < STATIC_Z``.  Both tests must call it static.  A contrast of
1e-4 is still dynamic when enough counts and frames measure it (z grows with ``sqrt(N)``).  Lag 0 enters only
this test, never a fit.

Codes: :data:`ARTEFACT_NONE`, :data:`ARTEFACT_DRIFT_EDGE` (``f >= DRIFT_FRACTION``, or a neighbour the residual
reaches is unknown, e.g. outside the field of view: then the contamination cannot be checked and the pixel is
not trusted), :data:`ARTEFACT_STATIC`.
"""

from __future__ import annotations

import numpy as np

ARTEFACT_NONE, ARTEFACT_DRIFT_EDGE, ARTEFACT_STATIC = 0, 1, 2
ARTEFACTS = {ARTEFACT_NONE: "none", ARTEFACT_DRIFT_EDGE: "drift edge", ARTEFACT_STATIC: "static"}
#: a pixel is a drift edge when the drift residual predicts at least this fraction of its measured fluctuation
#: (measured on the synthetic wire, benchmarks/study_maps.py: interior bulk/surface pixels have f < 0.05 at the
#: 99th percentile, the wire's outermost row f ~ 1 and more)
DRIFT_FRACTION = 0.2
#: a pixel is static when g2(first lag) - 1 is below this many standard errors of a static pixel
STATIC_Z = 4.0
#: first lag points averaged for the measured fluctuation
N_FIRST = 4


def residual_shift(shifts, mode: str = "integer") -> np.ndarray:
    """Sub-pixel displacement left after registration, per frame ``(t, 2)`` in pixels.

    Parameters
    ----------
    shifts : array (t, 2)
        Drift ``(dy, dx)`` per frame in pixels, as estimated by the drift stage.
    mode : ``"integer"`` (shifts undone in whole pixels, rounded half up) or ``"bilinear"`` (undone exactly:
        zero residual)

    Returns
    -------
    float64 (t, 2), each value in [-0.5, 0.5).
    """
    s = np.asarray(shifts, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2:
        raise ValueError(f"shifts must have shape (n_frames, 2), got {s.shape}")
    if mode == "bilinear":
        return np.zeros_like(s)
    if mode != "integer":
        raise ValueError(f"mode must be 'integer' or 'bilinear', got {mode!r}")
    return s - np.floor(s + 0.5)


def drift_variance(mean_image, residual) -> np.ndarray:
    """Predicted variance (counts²) of every registered pixel caused by the residual displacement.

    Parameters
    ----------
    mean_image : array (y, x)
        Registered mean intensity (NaN where unknown: that side is left out).
    residual : array (t, 2)
        :func:`residual_shift`.

    Returns
    -------
    float64 (y, x); NaN where the residual moves a pixel towards a neighbour whose mean is unknown (outside the
    field of view, or outside the image): its drift contamination cannot be predicted.
    """
    m = np.asarray(mean_image, dtype=np.float64)
    r = np.asarray(residual, dtype=np.float64)
    var_r = np.var(r, axis=0) if r.size else np.zeros(2)
    out = np.zeros(m.shape)
    for axis in (0, 1):
        d = np.diff(m, axis=axis)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 0)
        back = np.pad(d, pad, constant_values=np.nan)
        pad[axis] = (0, 1)
        fwd = np.pad(d, pad, constant_values=np.nan)
        both = np.stack([back ** 2, fwd ** 2])
        known = np.isfinite(both)
        sq = np.where(known, both, 0.0).mean(axis=0)
        if var_r[axis] > 0:  # a side the residual reaches but whose content is unknown: cannot be checked
            sq = np.where(known.all(axis=0), sq, np.nan)
        out += var_r[axis] * sq
    return out


def fluctuation(g2, g2_lag0, pairs, n_first: int = N_FIRST) -> tuple[np.ndarray, np.ndarray]:
    """Measured relative fluctuation ``g2(first lags) - 1`` and its standard error for a static pixel.

    Parameters
    ----------
    g2 : array (..., lag)
        g2 at lags > 0 (lag 0 excluded), symmetric or standard normalisation (baseline 1).
    g2_lag0 : array (...)
        g2 at lag 0: ``<I²>/<I>²``.
    pairs : array (lag,)
        Frame pairs behind each lag point.
    n_first : int
        Lag points averaged.

    Returns
    -------
    (c1, sigma) float64 arrays (...).
    """
    g = np.asarray(g2, dtype=np.float64)
    k = int(min(max(n_first, 1), g.shape[-1]))
    c1 = np.mean(g[..., :k], axis=-1) - 1.0
    u = np.asarray(g2_lag0, dtype=np.float64) - 1.0
    n = float(np.sum(np.asarray(pairs, dtype=np.float64)[:k]))
    with np.errstate(invalid="ignore"):
        sigma = np.abs(u) / np.sqrt(max(n, 1.0))
    return c1, sigma


def excess_variance(mean_image, g2_lag0, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative variance beyond Poisson ``g2(0) - 1 - 1/<I>`` and its standard error ``u sqrt(2/T)``.

    For Poisson frames the sample variance ``s²`` has variance ``(μ + 2μ²)/T``, covariance ``μ/T`` with the sample
    mean ``m``; linearising ``s²/m² - 1/m`` gives ``var = 2u²/T`` exactly at every count level (the estimated
    ``1/m`` cancels the ``1/μ`` kurtosis term).

    Parameters
    ----------
    mean_image : array (y, x)
    g2_lag0 : array (y, x)
    n_frames : int
        Frames behind the mean.

    Returns
    -------
    (e0, sigma) float64 arrays (y, x).
    """
    m = np.asarray(mean_image, dtype=np.float64)
    u = np.asarray(g2_lag0, dtype=np.float64) - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        e0 = u - 1.0 / m
        sigma = np.abs(u) * np.sqrt(2.0 / max(int(n_frames), 1))
    return e0, sigma


def classify_artefacts(mean_image, g2, g2_lag0, pairs, residual, *, n_frames: int,
                       drift_fraction: float = DRIFT_FRACTION, static_z: float = STATIC_Z,
                       n_first: int = N_FIRST) -> dict[str, np.ndarray]:
    """Artefact code and diagnostics of every pixel.

    Parameters
    ----------
    mean_image : array (y, x)
        Registered mean intensity.
    g2 : array (y, x, lag)
        g2 at lags > 0.  Only the first ``n_first`` lag points are used (pass just those to save memory).
    g2_lag0 : array (y, x)
    pairs : array (lag,)
        Frame pairs of the lag points of ``g2``.
    residual : array (t, 2)
        :func:`residual_shift` (zeros: no drift).
    n_frames : int
        Frames behind the mean (for the lag-0 test).
    drift_fraction, static_z, n_first
        Thresholds (module constants by default).

    Returns
    -------
    dict of (y, x) arrays: ``artefact`` (uint8 codes of :data:`ARTEFACTS`), ``drift_fraction`` (predicted drift
    variance / measured fluctuation), ``fluctuation`` (g2(first lags) - 1), ``fluctuation_z`` (its significance
    for a static pixel), ``excess_variance`` (g2(0) - 1 - 1/<I>) and ``excess_z``.  Pixels with a non-finite g2 get code none (their g2 status says why).
    """
    if not (0 < drift_fraction) or not (static_z > 0):
        raise ValueError(f"drift_fraction and static_z must be positive, got {drift_fraction!r}, {static_z!r}")
    m = np.asarray(mean_image, dtype=np.float64)
    c1, sigma = fluctuation(g2, g2_lag0, pairs, n_first)
    if c1.shape != m.shape:
        raise ValueError(f"g2 has pixel shape {c1.shape}, mean_image {m.shape}")
    v = drift_variance(m, residual)
    with np.errstate(invalid="ignore", divide="ignore"):
        measured = m * m * c1
        frac = np.where(measured > 0, v / measured, np.where(v > 0, np.inf, 0.0))
        z = c1 / sigma
    e0, sigma0 = excess_variance(m, g2_lag0, n_frames)
    with np.errstate(invalid="ignore", divide="ignore"):
        z0 = e0 / sigma0
    code = np.full(m.shape, ARTEFACT_NONE, dtype=np.uint8)
    finite = np.isfinite(c1) & np.isfinite(m)
    code[finite & ((frac >= drift_fraction) | np.isnan(v))] = ARTEFACT_DRIFT_EDGE
    code[finite & ~(z >= static_z) & ~(z0 >= static_z)] = ARTEFACT_STATIC
    return {"artefact": code, "drift_fraction": frac, "fluctuation": c1, "fluctuation_z": z,
            "excess_variance": e0, "excess_z": z0}
