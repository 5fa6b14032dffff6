"""Synthetic STEM diffraction series with ground truth: KWW speckle on an amorphous halo, beam stop, Poisson.

A coherent probe held at one position gives diffraction patterns ``I(t, ky, kx)``.  The model:

* mean pattern (counts per pixel per frame), isotropic::

      mean(q) = background + halo * exp(-(q - q0)^2 / (2 halo_width^2)) + small_angle / (1 + (q / q_small)^2)

  the amorphous halo (first peak of the structure factor) at ``q0`` (default 4.5 nm^-1);
* dynamics: every pixel carries its own KWW speckle (:func:`ecm_dask.synth.kernels.gaussian_process`, exact
  ``g1 = exp(-(t/tau)^beta)``; Siegert: ``g2 = 1 + contrast exp(-2 (t/tau)^beta)``) with::

      tau(q) = tau_peak * (floor + (1 - floor) * exp(-(q - q0)^2 / (2 tau_width^2)))
      beta(q) = beta

  i.e. the slowest relaxation at the halo (de Gennes narrowing), ``floor * tau_peak`` far from it;
* Poisson counts; a beam stop: zero counts for ``q < beam_stop_q``.

Pixels are independent (no Friedel symmetry, speckle one pixel wide).  Everything is deterministic per seed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import InputError, StoreError
from ..kernels.rings import pixel_q
from .kernels import gaussian_process, speckle_intensity

__all__ = ["DiffractionParams", "mean_pattern", "ring_truth", "synthetic_diffraction", "write_diffraction_series"]

TRUTH_TAU_PIXEL = "truth_tau"
TRUTH_BETA_PIXEL = "truth_beta"
TRUTH_MEAN_PIXEL = "truth_mean"
BEAM_STOP = "beam_stop"


@dataclass(frozen=True)
class DiffractionParams:
    """Parameters of a synthetic diffraction series (camera, profile, dynamics, noise)."""

    ny: int = 64
    nx: int = 64
    n_frames: int = 2000
    frame_time_s: float = 0.1
    calibration: float = 0.15  # nm^-1 per pixel
    centre: tuple[float, float] = (31.3, 32.6)  # (row, column) in pixels
    q0: float = 4.5  # nm^-1, amorphous halo
    halo: float = 30.0  # counts per pixel per frame at the halo (above the background)
    halo_width: float = 0.7  # nm^-1
    background: float = 4.0
    small_angle: float = 20.0
    q_small: float = 1.0  # nm^-1
    tau_peak_s: float = 4.0
    tau_floor: float = 0.3
    tau_width: float = 1.2  # nm^-1
    beta: float = 0.8
    contrast: float = 0.15
    beam_stop_q: float = 1.0  # nm^-1
    poisson: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("ny", "nx", "n_frames"):
            v = getattr(self, name)
            if int(v) != v or v < (2 if name == "n_frames" else 1):
                raise InputError(f"DiffractionParams.{name} must be a whole number >= {2 if name == 'n_frames' else 1}, "
                                 f"got {v!r}")
        for name in ("frame_time_s", "calibration", "tau_peak_s", "tau_width", "halo_width", "q_small"):
            if not float(getattr(self, name)) > 0:
                raise InputError(f"DiffractionParams.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.tau_floor <= 1:
            raise InputError(f"DiffractionParams.tau_floor must be in (0, 1], got {self.tau_floor!r}")
        if not 0 < self.beta <= 2:
            raise InputError(f"DiffractionParams.beta must be in (0, 2], got {self.beta!r}")
        if not 0 <= self.contrast <= 1:
            raise InputError(f"DiffractionParams.contrast must be in [0, 1], got {self.contrast!r}")
        if min(self.background, self.halo, self.small_angle) < 0 or self.background + self.halo + self.small_angle <= 0:
            raise InputError("DiffractionParams background, halo, small_angle must be >= 0 and not all 0")

    def tau_at(self, q) -> np.ndarray:
        """True relaxation time (s) at ``q`` (nm^-1)."""
        q = np.asarray(q, dtype=np.float64)
        peak = np.exp(-((q - self.q0) ** 2) / (2 * self.tau_width ** 2))
        return self.tau_peak_s * (self.tau_floor + (1 - self.tau_floor) * peak)

    def beta_at(self, q) -> np.ndarray:
        """True stretching exponent at ``q``."""
        return np.full(np.shape(q), float(self.beta))

    def mean_at(self, q) -> np.ndarray:
        """Expected counts per pixel per frame at ``q`` (outside the beam stop)."""
        q = np.asarray(q, dtype=np.float64)
        return (self.background + self.halo * np.exp(-((q - self.q0) ** 2) / (2 * self.halo_width ** 2))
                + self.small_angle / (1 + (q / self.q_small) ** 2))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _coords(p: DiffractionParams) -> dict:
    cy, cx = p.centre
    return {
        S.TIME: (S.TIME, np.arange(p.n_frames) * p.frame_time_s, S.coord_attrs(S.TIME, "time")),
        S.KY: (S.KY, (np.arange(p.ny) - cy) * p.calibration, S.coord_attrs(S.KY, "scattering vector, rows")),
        S.KX: (S.KX, (np.arange(p.nx) - cx) * p.calibration, S.coord_attrs(S.KX, "scattering vector, columns")),
    }


def mean_pattern(p: DiffractionParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q map, expected counts per frame, beam-stop mask True inside the beam stop) on the camera."""
    q = pixel_q((p.ny, p.nx), p.centre, p.calibration)
    stop = q < p.beam_stop_q
    mean = np.where(stop, 0.0, p.mean_at(q))
    return q, mean, stop


def synthetic_diffraction(params: DiffractionParams | None = None, **overrides):
    """Render a diffraction series with known tau(q), beta(q) as a labelled dataset (in memory).

    Parameters
    ----------
    params : DiffractionParams (default: the defaults); ``overrides`` replace single fields

    Returns
    -------
    xarray.Dataset with ``intensity (time, ky, kx)`` uint16 counts (coords ``time`` in s, ``ky``, ``kx`` in
    nm^-1 from the beam centre), the truth per pixel ``truth_tau`` (s), ``truth_beta``, ``truth_mean`` (counts
    per frame) and ``beam_stop`` (bool) on ``(ky, kx)``; attrs ``frame_time_s``, ``k_calibration_nm-1_per_px``,
    ``beam_centre_px`` and ``synthetic_params``.  Memory: the complex64 fields of all pixels over all frames
    (8 bytes x frames x pixels; 65 MB for the default 64 x 64 x 2000) plus the uint16 counts.
    """
    import xarray as xr

    p = replace(params or DiffractionParams(), **overrides)
    q, mean, stop = mean_pattern(p)
    tau_s = p.tau_at(q)
    beta = p.beta_at(q)
    live = ~stop
    rng = np.random.default_rng(np.random.SeedSequence([p.seed, 0xD1FF]))
    counts = np.zeros((p.n_frames, p.ny, p.nx), dtype=np.uint16)
    if live.any():
        field = gaussian_process(tau_s[live] / p.frame_time_s, beta[live], p.n_frames, rng)  # (P, T)
        power = field.real.astype(np.float64) ** 2 + field.imag.astype(np.float64) ** 2
        del field
        lam = speckle_intensity(mean[live][:, None], p.contrast, power)
        del power
        if p.poisson:
            lam = rng.poisson(lam)
        else:
            lam = np.rint(lam)
        if lam.max(initial=0) >= np.iinfo(np.uint16).max:
            raise InputError("synthetic counts overflow uint16: lower DiffractionParams.halo/background/small_angle")
        counts[:, live] = lam.T.astype(np.uint16)
    coords = _coords(p)
    ds = xr.Dataset(
        {
            S.INTENSITY: ((S.TIME, S.KY, S.KX), counts, {S.ATTR_UNITS: "counts", S.ATTR_LONG_NAME: "diffracted counts"}),
            TRUTH_TAU_PIXEL: ((S.KY, S.KX), np.where(stop, np.nan, tau_s), S.coord_attrs(S.TRUTH_TAU, "true tau")),
            TRUTH_BETA_PIXEL: ((S.KY, S.KX), np.where(stop, np.nan, beta), {S.ATTR_LONG_NAME: "true beta"}),
            TRUTH_MEAN_PIXEL: ((S.KY, S.KX), mean, {S.ATTR_UNITS: "counts", S.ATTR_LONG_NAME: "expected counts per frame"}),
            BEAM_STOP: ((S.KY, S.KX), stop, {S.ATTR_LONG_NAME: "inside the beam stop"}),
        },
        coords=coords,
        attrs={S.ATTR_FRAME_TIME: float(p.frame_time_s), S.ATTR_K_CALIBRATION: float(p.calibration),
               S.ATTR_BEAM_CENTRE: [float(c) for c in p.centre], S.ATTR_SOURCE: "synthetic",
               S.ATTR_DESCRIPTION: "synthetic STEM diffraction series (ecm_dask.synth.diffraction)",
               "synthetic_params": p.to_dict()},
    )
    return ds


def write_diffraction_series(path: str | os.PathLike, params: DiffractionParams | None = None, *,
                             overwrite: bool = False, tile: int = 32, **overrides) -> Path:
    """Render :func:`synthetic_diffraction` and write it to a Zarr store with chunks ``(all frames, tile, tile)``
    (long in time, small on the camera, as :func:`ecm_dask.analysis.stem.diffraction_g2` reads them)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise StoreError(f"{path} exists; pass overwrite=True to replace it")
    ds = synthetic_diffraction(params, **overrides)
    enc = {S.INTENSITY: {"chunks": (ds.sizes[S.TIME], min(tile, ds.sizes[S.KY]), min(tile, ds.sizes[S.KX]))}}
    ds.to_zarr(path, mode="w", encoding=enc)
    return path


def ring_truth(params: DiffractionParams, labels, n_rings: int, lag_s) -> tuple[np.ndarray, np.ndarray]:
    """Effective true (tau, beta) of each ring: the KWW fit of the noise-free ring-averaged g2 at ``lag_s``.

    A ring spans a range of q, hence of tau; its averaged g2 is a mixture of KWW curves whose fit is the
    value an analysis of perfect data would report (``tau_at(q_mean)`` differs from it by the curvature of
    tau(q) across the ring).  ``labels`` (ky, kx) as :func:`ecm_dask.kernels.rings.ring_index`; NaN for an
    empty ring.
    """
    from ..kernels import kww as KW

    q, _, _ = mean_pattern(params)
    lab = np.asarray(labels)
    lag = np.asarray(lag_s, dtype=np.float64)
    tau, beta = np.full(n_rings, np.nan), np.full(n_rings, np.nan)
    curves = np.full((n_rings, lag.size), np.nan)
    for r in range(n_rings):
        inside = lab == r
        if inside.any():
            t_pix, b_pix = params.tau_at(q[inside]), params.beta_at(q[inside])
            curves[r] = 1 + params.contrast * np.exp(-2 * (lag[None, :] / t_pix[:, None]) ** b_pix[:, None]).mean(0)
    ok = np.isfinite(curves).all(axis=1)
    if ok.any():
        fit = KW.fit_kww(curves[ok], lag, bounds={"tau": (lag[0] * 1e-3, lag[-1] * 1e3)})
        tau[ok], beta[ok] = fit.params[:, 2], fit.params[:, 3]
    return tau, beta
