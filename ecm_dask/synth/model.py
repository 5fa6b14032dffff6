"""Synthetic metallic-glass nanowire: parameters, ground-truth maps and the drift trace (pure NumPy/SciPy).

The model
---------
A horizontal wire band (gently wavy edges) crosses the frame; above and below is vacuum.  Inside the
wire every pixel carries a stationary complex Gaussian speckle field whose field autocorrelation is a
stretched exponential (KWW), ``g1(lag) = exp(-(lag/tau)**beta)``, so that the intensity correlation is

    g2(lag) = 1 + A * exp(-2 * (lag/tau)**beta)

with ``A`` the speckle contrast.  ``log10(tau)`` and ``beta`` vary smoothly in space (Gaussian-filtered
white noise with correlation length ``domain_size_nm``); within ``surface_thickness_px`` of the wire
surface the dynamics is ``surface_tau_ratio`` times faster and ``beta`` is confined to the narrow range
``surface_beta``.  A static crystallised chunk (bright, with a static internal texture) sits inside the
wire near its left end and has no dynamics, like the vacuum.

Grids
-----
All truth maps live on the *sample grid*: the pixel grid of frame 0 (the drift at t = 0 is exactly
zero).  Internally everything is generated on a larger *canvas* that adds a margin of
``max_drift_px + 1`` pixels on every side, so that drifted frames never look outside the sample;
canvas pixel ``(cy, cx)`` is sample pixel ``(cy - margin_y, cx - margin_x)``.

Drift sign convention
---------------------
``drift_trace(p)[t] = (dy(t), dx(t))`` in pixels.  Frame ``t`` shows the sample displaced by
``+shift(t)``::

    observed[t, y, x] = sample[t, y - dy(t), x - dx(t)]

i.e. a feature at sample position ``(y, x)`` appears in frame ``t`` at ``(y + dy(t), x + dx(t))``.  To
register frame ``t`` onto frame 0 it must be shifted by ``-shift(t)``.

Noise-free mode
---------------
``counts_wire = float('inf')`` switches the Poisson noise off.  The expected intensities are then
expressed relative to a nominal wire level: the wire mean is 1.0 and the vacuum and crystal levels
are ``counts_vacuum / NOMINAL_WIRE_COUNTS`` and ``counts_crystal / NOMINAL_WIRE_COUNTS``
(``NOMINAL_WIRE_COUNTS = 200``, the default wire level), which keeps the default image contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.special import ndtr

from ..errors import MetadataError
from ..schema import (
    REGION_BULK,
    REGION_CRYSTAL,
    REGION_SURFACE,
    REGION_VACUUM,
    TRUTH_BETA,
    TRUTH_CONTRAST,
    TRUTH_MEAN,
    TRUTH_REGION,
    TRUTH_SURFACE_DISTANCE,
    TRUTH_TAU,
    check_temperature,
)

__all__ = [
    "NOMINAL_WIRE_COUNTS",
    "SynthParams",
    "canvas",
    "canvas_margin",
    "drift_trace",
    "stream_key",
    "truth_maps",
]

#: wire level the vacuum and crystal levels are divided by when ``counts_wire`` is infinite
NOMINAL_WIRE_COUNTS = 200.0

# Stream tags: every random quantity has its own family of Philox keys (see :func:`stream_key`).
TAG_FIELDS = 1
TAG_DRIFT = 2
TAG_SPECKLE = 3
TAG_POISSON = 4
TAG_GEOMETRY = 5

# strength of the static texture of the crystal (relative rms of its expected intensity)
CRYSTAL_TEXTURE_RMS = 0.3
CRYSTAL_TEXTURE_LENGTH_PX = 1.5


# --------------------------------------------------------------------------------------- parameters
def _fail(name: str, msg: str, value: Any) -> None:
    raise MetadataError(f"SynthParams.{name} {msg}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(name, f"must be an integer >= {minimum}", value)
    if value < minimum:
        _fail(name, f"must be >= {minimum}", value)


def _check_float(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False, allow_inf: bool = False) -> None:
    if isinstance(value, bool):
        _fail(name, "must be a number", value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        _fail(name, "must be a number", value)
    if math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0)):
        _fail(name, "must be a finite number" + (" or +inf" if allow_inf else ""), value)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        _fail(name, f"must be {'>' if lo_open else '>='} {lo:g}", value)
    if hi is not None and (v > hi or (hi_open and v == hi)):
        _fail(name, f"must be {'<' if hi_open else '<='} {hi:g}", value)


def _check_pair(name: str, value: Any) -> tuple[float, float]:
    try:
        pair = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        _fail(name, "must be a pair of numbers", value)
    if len(pair) != 2:
        _fail(name, "must be a pair of numbers", value)
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class SynthParams:
    """Parameters of a synthetic ECM series of a supercooled-liquid metallic-glass nanowire.

    Times are in seconds, lengths in pixels unless the name says ``_nm``.  Invalid values raise
    :class:`~ecm_dask.errors.MetadataError` naming the parameter.  Hashable (used as a cache key).
    """

    ny: int = 96
    nx: int = 128
    n_frames: int = 4000
    frame_time_s: float = 0.5
    pixel_size_nm: float = 0.33
    seed: int = 0
    tau_bulk_s: float = 30.0
    tau_decades: float = 1.0
    beta_range: tuple[float, float] = (0.4, 0.9)
    domain_size_nm: float = 3.0
    surface_thickness_px: float = 4.0
    surface_tau_ratio: float = 8.0
    surface_beta: tuple[float, float] = (0.8, 0.9)
    contrast: float = 0.05
    counts_wire: float = 200.0
    counts_vacuum: float = 5.0
    counts_crystal: float = 600.0
    wire_fraction: float = 0.6
    crystal_radius_px: float = 10.0
    drift_px: tuple[float, float] = (6.0, -10.0)
    drift_walk_px: float = 1.0
    temperature_C: float = 266.0
    material: str = "Pt57.5Cu14.7Ni5.3P22.5"

    def __post_init__(self) -> None:
        _check_int("ny", self.ny, 8)
        _check_int("nx", self.nx, 8)
        _check_int("n_frames", self.n_frames, 2)
        _check_int("seed", self.seed, 0)
        _check_float("frame_time_s", self.frame_time_s, lo=0.0, lo_open=True)
        _check_float("pixel_size_nm", self.pixel_size_nm, lo=0.0, lo_open=True)
        _check_float("tau_bulk_s", self.tau_bulk_s, lo=0.0, lo_open=True)
        _check_float("tau_decades", self.tau_decades, lo=0.0, hi=6.0)
        _check_float("domain_size_nm", self.domain_size_nm, lo=0.0, lo_open=True)
        _check_float("surface_thickness_px", self.surface_thickness_px, lo=0.0)
        _check_float("surface_tau_ratio", self.surface_tau_ratio, lo=0.0, lo_open=True)
        _check_float("contrast", self.contrast, lo=0.0, hi=1.0, lo_open=True)
        _check_float("counts_wire", self.counts_wire, lo=0.0, lo_open=True, allow_inf=True)
        _check_float("counts_vacuum", self.counts_vacuum, lo=0.0)
        _check_float("counts_crystal", self.counts_crystal, lo=0.0)
        _check_float("wire_fraction", self.wire_fraction, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        _check_float("crystal_radius_px", self.crystal_radius_px, lo=0.0)
        _check_float("drift_walk_px", self.drift_walk_px, lo=0.0)
        for name in ("beta_range", "surface_beta"):
            lo, hi = _check_pair(name, getattr(self, name))
            if not (0.0 < lo <= hi <= 2.0):
                _fail(name, "must be (low, high) with 0 < low <= high <= 2 (KWW stretching exponents)",
                      getattr(self, name))
            object.__setattr__(self, name, (lo, hi))
        dy, dx = _check_pair("drift_px", self.drift_px)
        if not (math.isfinite(dy) and math.isfinite(dx)):
            _fail("drift_px", "must be two finite numbers of pixels (dy, dx)", self.drift_px)
        object.__setattr__(self, "drift_px", (dy, dx))
        if not isinstance(self.material, str):
            _fail("material", "must be a string", self.material)
        check_temperature(self.temperature_C, where="SynthParams.temperature_C")
        # normalise numeric types so equal parameters hash equally
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int",) or f.name in ("ny", "nx", "n_frames", "seed"):
                object.__setattr__(self, f.name, int(v))
            elif f.type in ("float",) and not isinstance(v, float):
                object.__setattr__(self, f.name, float(v))

    # -------------------------------------------------------------------------------- derived
    @property
    def max_drift_px(self) -> tuple[int, int]:
        """``(ceil(max_t |dy(t)|), ceil(max_t |dx(t)|))`` of :func:`drift_trace`, in pixels."""
        shift = drift_trace(self)
        m = np.ceil(np.max(np.abs(shift), axis=0))
        return int(m[0]), int(m[1])

    @property
    def tau_bulk_frames(self) -> float:
        """Median bulk relaxation time in frames."""
        return self.tau_bulk_s / self.frame_time_s

    @property
    def noise(self) -> bool:
        """False when ``counts_wire`` is infinite (noise-free expected intensities)."""
        return math.isfinite(self.counts_wire)

    @property
    def level_wire(self) -> float:
        """Expected intensity of the wire (counts/frame, or 1.0 in noise-free mode)."""
        return self.counts_wire if self.noise else 1.0

    @property
    def level_vacuum(self) -> float:
        return self.counts_vacuum if self.noise else self.counts_vacuum / NOMINAL_WIRE_COUNTS

    @property
    def level_crystal(self) -> float:
        return self.counts_crystal if self.noise else self.counts_crystal / NOMINAL_WIRE_COUNTS


# ------------------------------------------------------------------------------------------ streams
@lru_cache(maxsize=256)
def _seed_base(seed: int, tag: int) -> int:
    """64-bit hash of (seed, tag): the high word of every Philox key of that stream family."""
    state = np.random.SeedSequence([int(seed), int(tag), 0xEC3D]).generate_state(1, np.uint64)
    return int(state[0])


_OFFSET = 1 << 31


def stream_key(seed: int, tag: int, iy: int, ix: int) -> int:
    """128-bit Philox key of one pixel's random stream.

    High 64 bits: hash of (seed, tag); low 64 bits: the pixel (iy, ix), offset by 2**31 so negative
    sample coordinates (canvas margin) are allowed.  Distinct pixels therefore always get distinct
    keys, so every pixel's stream is the same whichever block it is rendered in.
    """
    return (_seed_base(seed, tag) << 64) | ((int(iy) + _OFFSET) << 32) | (int(ix) + _OFFSET)


def _generator(seed: int, tag: int, iy: int = 0, ix: int = 0) -> np.random.Generator:
    return np.random.Generator(np.random.Philox(key=stream_key(seed, tag, iy, ix)))


# -------------------------------------------------------------------------------------------- drift
@lru_cache(maxsize=16)
def _drift_trace_cached(p: SynthParams) -> np.ndarray:
    n = p.n_frames
    t = np.arange(n, dtype=np.float64) / (n - 1)
    linear = t[:, None] * np.asarray(p.drift_px, dtype=np.float64)[None, :]
    walk = np.zeros((n, 2))
    if p.drift_walk_px > 0:
        rng = _generator(p.seed, TAG_DRIFT)
        steps = rng.standard_normal((n, 2))
        walk = np.cumsum(steps, axis=0)
        walk = ndimage.gaussian_filter1d(walk, sigma=max(n / 100.0, 1.0), axis=0, mode="nearest")
        walk -= walk[0]
        rms = np.sqrt(np.mean(walk**2, axis=0))
        rms[rms == 0] = 1.0
        walk *= p.drift_walk_px / rms
    shift = linear + walk
    shift[0] = 0.0
    shift.setflags(write=False)
    return shift


def drift_trace(p: SynthParams) -> np.ndarray:
    """True drift ``(n_frames, 2)`` float64 ``(dy, dx)`` in pixels; exactly 0 at frame 0.

    Linear drift reaching ``p.drift_px`` at the last frame plus a smoothed random walk (Gaussian
    smoothing over ~1 % of the series) of rms ``p.drift_walk_px`` per axis; deterministic per seed.

    Convention: frame ``t`` shows the sample displaced by ``+shift(t)``,
    ``observed[t, y, x] = sample[t, y - dy(t), x - dx(t)]``; registering frame ``t`` onto frame 0
    means shifting it by ``-shift(t)``.
    """
    return _drift_trace_cached(p).copy()


def canvas_margin(p: SynthParams) -> tuple[int, int]:
    """Margin (rows, columns) added on every side of the sample grid: ``max_drift_px + 1``."""
    my, mx = p.max_drift_px
    return my + 1, mx + 1


# ------------------------------------------------------------------------------------ random fields
def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], length_px: float) -> np.ndarray:
    """Gaussian-filtered white noise, standardised; autocorrelation exp(-r**2/length**2)."""
    white = rng.standard_normal(shape)
    sigma = max(length_px / 2.0, 1e-6)  # filtered-noise correlation falls to 1/e at r = 2 sigma
    f = ndimage.gaussian_filter(white, sigma=sigma, mode="wrap")
    f -= f.mean()
    sd = f.std()
    return f / sd if sd > 0 else f


def _wavy(rng: np.random.Generator, x: np.ndarray, amplitude: float, period: float) -> np.ndarray:
    """A smooth random function of x: a sum of three random sinusoids of rms ~ ``amplitude``."""
    out = np.zeros_like(x, dtype=np.float64)
    for k in (1.0, 1.7, 2.9):
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.normal() * amplitude / np.sqrt(3.0 / 2.0) / k**0.5
        out += amp * np.sin(2 * np.pi * k * x / period + phase)
    return out


@lru_cache(maxsize=4)
def canvas(p: SynthParams) -> dict[str, Any]:
    """All maps on the canvas (sample grid plus margin).  Cached; arrays are read-only.

    Keys: the truth names (``tau`` in s, ``beta``, ``contrast``, ``mean_counts``, ``region``,
    ``surface_distance`` in px) plus ``tau_frames`` (float64), ``margin`` (my, mx) and ``dynamic``
    (bool mask of pixels with speckle dynamics).
    """
    my, mx = canvas_margin(p)
    cny, cnx = p.ny + 2 * my, p.nx + 2 * mx
    # sample coordinates of the canvas pixel centres
    sy = np.arange(cny, dtype=np.float64) - my
    sx = np.arange(cnx, dtype=np.float64) - mx

    # --- geometry: horizontal wire band with gently wavy edges
    rng_g = _generator(p.seed, TAG_GEOMETRY)
    half = 0.5 * p.wire_fraction * p.ny
    centre = 0.5 * (p.ny - 1)
    wav = 0.04 * p.ny
    top = centre - half + _wavy(rng_g, sx, wav, max(p.nx, 16))
    bot = centre + half + _wavy(rng_g, sx, wav, max(p.nx, 16))
    Y = sy[:, None]
    wire = (Y >= top[None, :]) & (Y <= bot[None, :])
    # distance (px) from the wire surface: Euclidean distance to the nearest vacuum pixel centre
    # minus half a pixel (the surface lies between a wire and a vacuum pixel centre)
    edt = ndimage.distance_transform_edt(wire)
    surface_distance = np.where(wire, edt - 0.5, np.nan)
    surface = wire & (surface_distance < p.surface_thickness_px)

    # crystal: a disk on the wire axis near the left end (inside the frame-0 field of view)
    crystal = np.zeros_like(wire)
    if p.crystal_radius_px > 0:
        r = p.crystal_radius_px
        cx0 = min(max(1.5 * r, 0.12 * p.nx), 0.5 * (p.nx - 1))
        ix = int(np.clip(np.searchsorted(sx, cx0), 0, cnx - 1))
        cy0 = 0.5 * (top[ix] + bot[ix])
        crystal = wire & (((Y - cy0) ** 2 + (sx[None, :] - cx0) ** 2) <= r * r)

    # --- smooth random fields
    rng_f = _generator(p.seed, TAG_FIELDS)
    length = p.domain_size_nm / p.pixel_size_nm
    z_tau = _smooth_field(rng_f, (cny, cnx), length)
    z_beta = _smooth_field(rng_f, (cny, cnx), length)
    z_tex = _smooth_field(rng_f, (cny, cnx), CRYSTAL_TEXTURE_LENGTH_PX)
    # normalise the tau field on the wire pixels of the frame-0 grid: median 0, 2.5-97.5 % span 1
    central = np.zeros_like(wire)
    central[my:my + p.ny, mx:mx + p.nx] = True
    ref = z_tau[wire & central & ~crystal]
    if ref.size < 8:
        ref = z_tau[central]
    q_lo, q_med, q_hi = np.percentile(ref, [2.5, 50.0, 97.5])
    span = q_hi - q_lo if q_hi > q_lo else 1.0
    log_tau = math.log10(p.tau_bulk_s) + p.tau_decades * (z_tau - q_med) / span
    u_beta = ndtr(z_beta)  # in (0, 1), smooth
    b_lo, b_hi = p.beta_range
    s_lo, s_hi = p.surface_beta
    beta_bulk = b_lo + (b_hi - b_lo) * u_beta
    beta_surf = s_lo + (s_hi - s_lo) * u_beta

    dynamic = wire & ~crystal
    tau = np.where(dynamic, 10.0**log_tau, np.nan)
    tau = np.where(surface & dynamic, tau / p.surface_tau_ratio, tau)
    beta = np.where(dynamic, np.where(surface, beta_surf, beta_bulk), np.nan)
    contrast = np.where(dynamic, p.contrast, 0.0)

    region = np.full((cny, cnx), REGION_VACUUM, dtype=np.int8)
    region[wire] = REGION_BULK
    region[surface] = REGION_SURFACE
    region[crystal] = REGION_CRYSTAL

    mean = np.full((cny, cnx), p.level_vacuum, dtype=np.float64)
    mean[wire] = p.level_wire
    texture = np.clip(1.0 + CRYSTAL_TEXTURE_RMS * z_tex, 0.2, None)
    mean[crystal] = (p.level_crystal * texture)[crystal]

    out: dict[str, Any] = {
        TRUTH_TAU: tau,
        TRUTH_BETA: beta,
        TRUTH_CONTRAST: contrast,
        TRUTH_MEAN: mean,
        TRUTH_REGION: region,
        TRUTH_SURFACE_DISTANCE: surface_distance,
        "tau_frames": tau / p.frame_time_s,
        "dynamic": dynamic,
    }
    for v in out.values():
        v.setflags(write=False)
    out["margin"] = (my, mx)
    return out


def truth_maps(p: SynthParams) -> dict[str, np.ndarray]:
    """Ground truth on the (ny, nx) sample grid (= frame 0).

    Returns a dict of fresh arrays keyed by the schema truth names:

    ``tau``
        KWW relaxation time in seconds (NaN in vacuum and crystal).
    ``beta``
        KWW stretching exponent (NaN in vacuum and crystal).
    ``contrast``
        speckle contrast A (0 in vacuum and crystal).
    ``mean_counts``
        expected counts per frame (relative levels in noise-free mode, see module docstring).
    ``region``
        int8 codes ``schema.REGION_VACUUM / BULK / SURFACE / CRYSTAL``.
    ``surface_distance``
        distance in **pixels** from the wire surface inside the wire (NaN outside).
    """
    c = canvas(p)
    my, mx = c["margin"]
    sl = (slice(my, my + p.ny), slice(mx, mx + p.nx))
    names = (TRUTH_TAU, TRUTH_BETA, TRUTH_CONTRAST, TRUTH_MEAN, TRUTH_REGION, TRUTH_SURFACE_DISTANCE)
    return {k: np.array(c[k][sl]) for k in names}
