"""Tests of the pure-NumPy synthetic nanowire (ecm_dask.synth.model / kernels) against known truth.

Tolerances are statistical: each comparison uses a standard error computed either exactly from the
model (Isserlis' theorem for the Gaussian field) or from the spread over independent pixels, plus the
known first-order bias of the ratio estimator where it applies.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecm_dask import schema as S
from ecm_dask.errors import MetadataError
from ecm_dask.synth.kernels import (
    embedding_size,
    gaussian_process,
    kww_g1,
    render_block,
)
from ecm_dask.synth.model import SynthParams, drift_trace, truth_maps

INF = float("inf")

# A wire with one (tau, beta) everywhere, no crystal and no drift: observed pixel == sample pixel,
# so every wire pixel is an independent realisation of the same process.
UNIFORM = {"ny": 24, "nx": 32, "n_frames": 2048, "frame_time_s": 1.0, "tau_bulk_s": 8.0, "tau_decades": 0.0,
           "beta_range": (0.7, 0.7), "surface_beta": (0.7, 0.7), "surface_tau_ratio": 1.0,
           "crystal_radius_px": 0.0, "drift_px": (0.0, 0.0), "drift_walk_px": 0.0}


def _pair_sum(n: int, f) -> float:
    """sum_{t, t' in [0, n)} f(t - t') using the multiplicity n - |d| of each difference d."""
    d = np.arange(-(n - 1), n)
    return float(np.sum((n - np.abs(d)) * f(d)))


# ------------------------------------------------------------------------------ gaussian process
@pytest.mark.parametrize("tau, beta", [(20.0, 0.6), (5.0, 0.9)])
def test_gaussian_process_g1_matches_kww(tau, beta):
    reps, n = 2000, 128
    e = gaussian_process(np.full(reps, tau), np.full(reps, beta), n, np.random.default_rng(11))
    assert e.shape == (reps, n) and e.dtype == np.complex64
    e = e.astype(np.complex128)

    def c(d):
        return kww_g1(d, tau, beta)

    kmax = int(3 * tau)
    for k in range(kmax + 1):
        nk = n - k
        est = np.mean(e[:, :nk] * np.conj(e[:, k:]))
        # Isserlis for a circular complex Gaussian: Cov(E_t E*_{t+k}, E_t' E*_{t'+k}) = c(t-t')^2 and
        # the pseudo-covariance is c(t-t'-k) c(t-t'+k); Re and Im variances are (V +- P)/2.
        v = _pair_sum(nk, lambda d: c(d) ** 2) / (reps * nk**2)
        pv = _pair_sum(nk, lambda d, k=k: c(d - k) * c(d + k)) / (reps * nk**2)
        sd_re, sd_im = math.sqrt((v + pv) / 2), math.sqrt(max((v - pv) / 2, 1e-300))
        assert abs(est.real - c(k)) < 5 * sd_re, (k, est, c(k), sd_re)
        assert abs(est.imag) < 5 * sd_im + 1e-12, (k, est, sd_im)
        assert abs(abs(est) - c(k)) < 5 * math.sqrt(v)
    # unit variance (k = 0 above) and the Gaussian fourth moment <|E|^4> = 2 (what Siegert needs)
    p = np.abs(e) ** 2
    assert abs(p.mean() - 1.0) < 5 * math.sqrt(_pair_sum(n, lambda d: c(d) ** 2) / (reps * n * n))
    assert abs(np.mean(p**2) - 2.0) < 0.1


def test_gaussian_process_scalar_and_per_pixel_streams():
    e = gaussian_process(10.0, 0.8, 100, np.random.default_rng(0))
    assert e.shape == (100,)
    g = [np.random.default_rng(i) for i in range(3)]
    a = gaussian_process([5.0, 10.0, 20.0], 0.8, 100, g)
    b = gaussian_process([20.0], 0.8, 100, [np.random.default_rng(2)])
    np.testing.assert_array_equal(a[2], b[0])  # a process depends only on its own stream
    assert embedding_size(100) >= 2 * 99 and embedding_size(100) % 2 == 0


# ---------------------------------------------------------------------------------- g2 of renders
def _g2_check(p: SynthParams, frames: np.ndarray, kmax: int, *, shot_noise: float = 0.0):
    """Compare g2(k), averaged over the (independent) wire pixels, with 1 + A exp(-2 (k/tau)^beta).

    Two estimators per pixel:

    * unbiased: <I(t) I(t+k)>_t / m^2 with the true expected intensity m (truth ``mean_counts``);
      its expectation is exactly g2(k), so it must agree within 4 standard errors (SE from the
      spread over pixels, which are independent realisations);
    * direct time-average estimator <I(t) I(t+k)>_t / <I>_t^2.  Normalising by the empirical mean
      biases it: with b = Var(<I>_t)/m^2 = (A/n^2) sum_{t,t'} |g1(t-t')|^2, the delta method gives a
      bias of -b (Gaussian part) plus a third-cumulant term of order sqrt(A) b, so it must agree
      within 4 SE + 5 b (b is ~0.4 % of g2 - 1 at the lags tested).
    """
    tm = truth_maps(p)
    wire = np.isin(tm[S.TRUTH_REGION], (S.REGION_BULK, S.REGION_SURFACE))
    tau = np.unique(tm[S.TRUTH_TAU][wire] / p.frame_time_s)
    beta = np.unique(tm[S.TRUTH_BETA][wire])
    assert tau.size == 1 and beta.size == 1  # uniform settings
    tau, beta = float(tau[0]), float(beta[0])
    x = frames[:, wire].astype(np.float64)  # (n, P)
    m_true = tm[S.TRUTH_MEAN][wire]
    n, npix = x.shape
    assert npix > 300
    mean = x.mean(axis=0)
    a = p.contrast
    b = a * _pair_sum(n, lambda d: kww_g1(d, tau, beta) ** 2) / n**2
    for k in range(kmax + 1):
        expected = 1.0 + a * kww_g1(k, tau, beta) ** 2 + (shot_noise if k == 0 else 0.0)
        prod = np.mean(x[: n - k] * x[k:], axis=0)
        g2u = prod / m_true**2
        est, se = g2u.mean(), g2u.std(ddof=1) / math.sqrt(npix)
        assert abs(est - expected) < 4 * se, ("unbiased", k, est, expected, se)
        g2 = prod / mean**2
        est, se = g2.mean(), g2.std(ddof=1) / math.sqrt(npix)
        assert abs(est - expected) < 4 * se + 5 * b, ("direct", k, est, expected, se, b)
    return tau, beta


def test_g2_noise_free_matches_kww_and_contrast():
    p = SynthParams(**UNIFORM, contrast=0.3, counts_wire=INF)
    frames = render_block(p, 0, p.ny, 0, p.nx, noise=True)  # inf counts: noise-free regardless
    assert frames.dtype == np.float64
    tau, beta = _g2_check(p, frames, kmax=24)
    assert tau == pytest.approx(8.0) and beta == pytest.approx(0.7)
    # the wire mean intensity is the nominal noise-free level 1.0
    wire = truth_maps(p)[S.TRUTH_REGION] == S.REGION_BULK
    assert frames[:, wire].mean() == pytest.approx(1.0, rel=0.01)


def test_g2_with_poisson_noise_at_high_counts():
    p = SynthParams(**UNIFORM, contrast=0.3, counts_wire=2000.0)
    frames = render_block(p, 0, p.ny, 0, p.nx)
    assert frames.dtype == np.uint16
    # Poisson counts: g2(0) carries the shot-noise term 1/<I>, lags >= 1 are unaffected
    _g2_check(p, frames, kmax=24, shot_noise=1.0 / 2000.0)
    # noise-free render of the same params is the expected value of the counts
    clean = render_block(p, 0, p.ny, 0, p.nx, noise=False)
    assert clean.dtype == np.float64
    resid = (frames - clean) / np.sqrt(clean)
    assert abs(resid.mean()) < 0.01 and resid.std() == pytest.approx(1.0, abs=0.02)


def test_tiny_contrast_1e3_noise_free():
    kw = dict(UNIFORM, ny=32, nx=48, n_frames=4096, tau_bulk_s=50.0, beta_range=(0.9, 0.9),
              surface_beta=(0.9, 0.9))
    p = SynthParams(**kw, contrast=1e-3, counts_wire=INF)
    frames = render_block(p, 0, p.ny, 0, p.nx)
    _g2_check(p, frames, kmax=3)  # g2(0) - 1 = 1e-3 and g2(1) - 1 = 1e-3 * 0.94 within ~1 %
    wire = np.isin(truth_maps(p)[S.TRUTH_REGION], (S.REGION_BULK, S.REGION_SURFACE))
    x = frames[:, wire]
    g21 = np.mean(x[:-1] * x[1:], axis=0) / x.mean(axis=0) ** 2 - 1.0
    assert g21.mean() == pytest.approx(1e-3, rel=0.1)  # |g1(1)|^2 = 0.94 at tau = 50 frames


# ------------------------------------------------------------------------------------- truth maps
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_truth_maps_regions_and_fields(seed):
    p = SynthParams(seed=seed)
    tm = truth_maps(p)
    for k in (S.TRUTH_TAU, S.TRUTH_BETA, S.TRUTH_CONTRAST, S.TRUTH_MEAN, S.TRUTH_REGION, S.TRUTH_SURFACE_DISTANCE):
        assert tm[k].shape == (p.ny, p.nx)
    r, tau, beta = tm[S.TRUTH_REGION], tm[S.TRUTH_TAU], tm[S.TRUTH_BETA]
    assert r.dtype == np.int8
    bulk, surf, cryst, vac = (r == S.REGION_BULK), (r == S.REGION_SURFACE), (r == S.REGION_CRYSTAL), (r == S.REGION_VACUUM)
    assert bulk.sum() > 3000 and surf.sum() > 500 and cryst.sum() > 200 and vac.sum() > 3000
    # wire covers ~wire_fraction of the height
    assert (~vac).mean() == pytest.approx(p.wire_fraction, abs=0.08)
    # surface tau ~ bulk tau / ratio; bulk median ~ tau_bulk_s
    ratio = np.median(tau[bulk]) / np.median(tau[surf])
    assert ratio == pytest.approx(p.surface_tau_ratio, rel=0.3)
    assert np.median(tau[bulk]) == pytest.approx(p.tau_bulk_s, rel=0.3)
    lo, hi = np.percentile(np.log10(tau[bulk]), [2.5, 97.5])
    assert hi - lo == pytest.approx(p.tau_decades, rel=0.25)
    # beta inside its ranges, narrow at the surface
    assert np.all((beta[bulk] >= p.beta_range[0]) & (beta[bulk] <= p.beta_range[1]))
    assert np.all((beta[surf] >= p.surface_beta[0]) & (beta[surf] <= p.surface_beta[1]))

    def iqr(v):
        return np.subtract(*np.percentile(v, [75, 25]))

    assert iqr(beta[surf]) < 0.5 * iqr(beta[bulk])
    # no dynamics in vacuum and crystal
    assert np.all(np.isnan(tau[vac | cryst])) and np.all(np.isnan(beta[vac | cryst]))
    assert np.all(tm[S.TRUTH_CONTRAST][vac | cryst] == 0)
    assert np.all(tm[S.TRUTH_CONTRAST][bulk | surf] == p.contrast)
    # surface distance: NaN outside the wire, < thickness exactly in the surface band
    d = tm[S.TRUTH_SURFACE_DISTANCE]
    assert np.all(np.isnan(d[vac])) and np.all(np.isfinite(d[~vac]))
    assert np.all(d[surf] < p.surface_thickness_px) and np.all(d[bulk] >= p.surface_thickness_px)
    # mean counts per region
    mc = tm[S.TRUTH_MEAN]
    assert np.all(mc[vac] == p.counts_vacuum) and np.all(mc[bulk | surf] == p.counts_wire)
    assert np.mean(mc[cryst]) == pytest.approx(p.counts_crystal, rel=0.2) and np.std(mc[cryst]) > 50
    # crystal near the left end of the wire
    assert np.mean(np.nonzero(cryst)[1]) < 0.35 * p.nx


def test_truth_maps_deterministic_and_seed_dependent():
    a, b, c = truth_maps(SynthParams(seed=3)), truth_maps(SynthParams(seed=3)), truth_maps(SynthParams(seed=4))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a[S.TRUTH_BETA], c[S.TRUTH_BETA], equal_nan=True)


def test_crystal_and_vacuum_have_no_dynamics():
    p = SynthParams(ny=48, nx=64, n_frames=64, drift_px=(0.0, 0.0), drift_walk_px=0.0, counts_wire=INF)
    frames = render_block(p, 0, p.ny, 0, p.nx)
    tm = truth_maps(p)
    r = tm[S.TRUTH_REGION]
    var = frames.var(axis=0)
    static = (r == S.REGION_CRYSTAL) | (r == S.REGION_VACUUM)
    assert np.all(var[static] == 0.0)
    np.testing.assert_allclose(frames[0][static], tm[S.TRUTH_MEAN][static], rtol=1e-6)
    wire = (r == S.REGION_BULK) | (r == S.REGION_SURFACE)
    assert np.all(var[wire] > 0)
    # noise-free levels relative to the nominal wire level (see model docstring)
    np.testing.assert_allclose(tm[S.TRUTH_MEAN][r == S.REGION_VACUUM], 5.0 / 200.0)


# ------------------------------------------------------------------------------------------ drift
def _phase_correlate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shift s (dy, dx) such that b(y, x) ~ a(y - dy, x - dx); integer peak + parabola refinement."""
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    cross = np.conj(fa) * fb
    corr = np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)).real
    iy, ix = np.unravel_index(np.argmax(corr), corr.shape)
    out = []
    for axis, i in ((0, iy), (1, ix)):
        size = corr.shape[axis]
        idx = [iy, ix]
        vals = []
        for d in (-1, 0, 1):
            idx[axis] = (i + d) % size
            vals.append(corr[tuple(idx)])
        den = vals[0] - 2 * vals[1] + vals[2]
        frac = 0.5 * (vals[0] - vals[2]) / den if den != 0 else 0.0
        s = i + frac
        out.append(s - size if s > size / 2 else s)
    return np.array(out)


def test_drift_trace_properties():
    p = SynthParams()
    s = drift_trace(p)
    assert s.shape == (p.n_frames, 2) and s.dtype == np.float64
    assert np.all(s[0] == 0.0)
    np.testing.assert_allclose(s[-1], p.drift_px, atol=3 * p.drift_walk_px)
    assert not np.allclose(s[:, 0], s[:, 1])
    # smooth: frame-to-frame steps tiny compared with a pixel
    assert np.max(np.abs(np.diff(s, axis=0))) < 0.05
    # walk part has the requested rms
    t = np.arange(p.n_frames) / (p.n_frames - 1)
    walk = s - t[:, None] * np.array(p.drift_px)
    np.testing.assert_allclose(np.sqrt(np.mean(walk**2, axis=0)), p.drift_walk_px, rtol=1e-6)
    np.testing.assert_array_equal(s, drift_trace(SynthParams()))
    assert not np.array_equal(s, drift_trace(SynthParams(seed=1)))
    my, mx = p.max_drift_px
    assert my == math.ceil(np.abs(s[:, 0]).max()) and mx == math.ceil(np.abs(s[:, 1]).max())
    # no walk: exactly linear
    lin = drift_trace(SynthParams(n_frames=11, drift_walk_px=0.0))
    np.testing.assert_allclose(lin[:, 1], np.linspace(0, -10, 11))


def _template_match(ref: np.ndarray, img: np.ndarray, crop, rmax: int) -> np.ndarray:
    """Shift s (dy, dx) with img(y + dy, x + dx) ~ ref(y, x) on the crop: SSD minimum over integer
    shifts, refined by a parabola through the minimum and its neighbours on each axis."""
    (ya, yb), (xa, xb) = crop
    tpl = ref[ya:yb, xa:xb]
    ssd = np.full((2 * rmax + 1, 2 * rmax + 1), np.inf)
    for dy in range(-rmax, rmax + 1):
        for dx in range(-rmax, rmax + 1):
            if ya + dy >= 0 and yb + dy <= img.shape[0] and xa + dx >= 0 and xb + dx <= img.shape[1]:
                ssd[dy + rmax, dx + rmax] = np.sum((img[ya + dy:yb + dy, xa + dx:xb + dx] - tpl) ** 2)
    iy, ix = np.unravel_index(np.argmin(ssd), ssd.shape)
    assert 0 < iy < 2 * rmax and 0 < ix < 2 * rmax
    out = []
    for v in ((ssd[iy - 1, ix], ssd[iy, ix], ssd[iy + 1, ix]), (ssd[iy, ix - 1], ssd[iy, ix], ssd[iy, ix + 1])):
        out.append(0.5 * (v[0] - v[2]) / (v[0] - 2 * v[1] + v[2]))
    return np.array([iy - rmax + out[0], ix - rmax + out[1]])


@pytest.mark.parametrize("seed", [0, 2])
def test_rendered_frames_move_with_documented_sign(seed):
    p = SynthParams(ny=48, nx=64, n_frames=200, counts_wire=INF, seed=seed)
    frames = render_block(p, 0, p.ny, 0, p.nx)
    truth = drift_trace(p)
    assert np.abs(truth[-1]).min() > 3  # a real test: the drift is several pixels on both axes
    for t in (60, 130, p.n_frames - 1):
        # whole-frame phase correlation (Hann window; the window and the content leaving the frame
        # bias it by up to ~0.3 px here): right shift and sign
        est = _phase_correlate(frames[0], frames[t])
        np.testing.assert_allclose(est, truth[t], atol=0.5, err_msg=f"phase correlation, frame {t}")
        assert np.linalg.norm(est - truth[t]) < 0.2 * np.linalg.norm(est + truth[t])
        # template matching of the central part of frame 0 (holds the crystal) in frame t: < 0.3 px
        est = _template_match(frames[0], frames[t], ((12, 36), (14, 50)), rmax=13)
        np.testing.assert_allclose(est, truth[t], atol=0.3, err_msg=f"template match, frame {t}")


def test_static_pixels_are_bilinear_samples_of_the_drifted_truth():
    """observed[t, y, x] = sample(y - dy(t), x - dx(t)) exactly (bilinear), checked where it is static."""
    from scipy import ndimage

    p = SynthParams(ny=48, nx=64, n_frames=200, counts_wire=INF, seed=1)
    frames = render_block(p, 0, p.ny, 0, p.nx)
    truth = drift_trace(p)
    tm = truth_maps(p)
    mean = tm[S.TRUTH_MEAN]
    static = ~np.isin(tm[S.TRUTH_REGION], (S.REGION_BULK, S.REGION_SURFACE))
    yy, xx = np.mgrid[0:p.ny, 0:p.nx]
    for t in (60, 199):
        sy, sx = yy - truth[t, 0], xx - truth[t, 1]
        inside = (sy >= 0) & (sy <= p.ny - 1) & (sx >= 0) & (sx <= p.nx - 1)
        iy, ix = np.clip(np.floor(sy).astype(int), 0, p.ny - 2), np.clip(np.floor(sx).astype(int), 0, p.nx - 2)
        ok = inside & static[iy, ix] & static[iy + 1, ix] & static[iy, ix + 1] & static[iy + 1, ix + 1]
        assert ok.sum() > 500 and (ok & (tm[S.TRUTH_REGION][iy, ix] == S.REGION_CRYSTAL)).sum() > 100
        expected = ndimage.map_coordinates(mean, [sy, sx], order=1, mode="nearest")
        np.testing.assert_allclose(frames[t][ok], expected[ok], rtol=1e-6)
        # the opposite sign convention would not match
        wrong = ndimage.map_coordinates(mean, [yy + truth[t, 0], xx + truth[t, 1]], order=1, mode="nearest")
        assert np.max(np.abs(frames[t][ok] - wrong[ok]) / expected[ok]) > 0.5
    # frame 0 is the undrifted sample: static regions equal the truth (up to float32 rounding)
    np.testing.assert_allclose(frames[0][static], mean[static], rtol=1e-6)


# ------------------------------------------------------------------------------------ determinism
SMALL = {"ny": 20, "nx": 24, "n_frames": 64, "tau_bulk_s": 5.0, "crystal_radius_px": 5.0}


@pytest.mark.parametrize("noise", [True, False])
def test_render_deterministic_and_partition_independent(noise):
    p = SynthParams(**SMALL)
    full = render_block(p, 0, p.ny, 0, p.nx, noise=noise)
    assert full.shape == (p.n_frames, p.ny, p.nx)
    np.testing.assert_array_equal(full, render_block(p, 0, p.ny, 0, p.nx, noise=noise))
    assert not np.array_equal(full, render_block(SynthParams(**SMALL, seed=1), 0, p.ny, 0, p.nx, noise=noise))
    for ys, xs in (((0, 7, 20), (0, 11, 24)), ((0, 1, 9, 13, 20), (0, 5, 6, 17, 24))):
        stitched = np.empty_like(full)
        for ya, yb in itertools.pairwise(ys):
            for xa, xb in itertools.pairwise(xs):
                stitched[:, ya:yb, xa:xb] = render_block(p, ya, yb, xa, xb, noise=noise)
        np.testing.assert_array_equal(full, stitched)


@functools.lru_cache(maxsize=2)
def _full_small(noise: bool) -> np.ndarray:
    p = SynthParams(**SMALL)
    return render_block(p, 0, p.ny, 0, p.nx, noise=noise)


def _cuts(size: int):
    return st.sets(st.integers(1, size - 1), max_size=3).map(lambda c: (0, *sorted(c), size))


@settings(max_examples=12, deadline=None, derandomize=True)
@given(ys=_cuts(SMALL["ny"]), xs=_cuts(SMALL["nx"]), noise=st.booleans())
def test_render_any_partition_stitches_to_full_frame(ys, xs, noise):
    p = SynthParams(**SMALL)
    full = _full_small(noise)
    stitched = np.empty_like(full)
    for ya, yb in itertools.pairwise(ys):
        for xa, xb in itertools.pairwise(xs):
            stitched[:, ya:yb, xa:xb] = render_block(p, ya, yb, xa, xb, noise=noise)
    np.testing.assert_array_equal(full, stitched)


def test_render_small_strips_equal_full(monkeypatch):
    """Forcing one-row strips and tiny generation batches changes nothing."""
    from ecm_dask.synth import kernels

    p = SynthParams(**SMALL)
    full = render_block(p, 0, p.ny, 0, p.nx, noise=False)
    monkeypatch.setattr(kernels, "STRIP_BYTES", 1)
    monkeypatch.setattr(kernels, "BATCH_ELEMENTS", 3 * kernels.embedding_size(p.n_frames))
    np.testing.assert_array_equal(full, kernels.render_block(p, 0, p.ny, 0, p.nx, noise=False))


def test_render_block_bounds():
    p = SynthParams(**SMALL)
    with pytest.raises(ValueError, match="y1"):
        render_block(p, 0, p.ny + 1, 0, 4)
    with pytest.raises(ValueError, match="x0"):
        render_block(p, 0, 4, 5, 5)


# ------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name, value", [
    ("ny", 4), ("nx", 2.5), ("n_frames", 1), ("seed", -1), ("frame_time_s", 0.0), ("frame_time_s", float("nan")),
    ("pixel_size_nm", -1.0), ("tau_bulk_s", 0), ("tau_decades", -0.5), ("beta_range", (0.9, 0.4)),
    ("beta_range", (0.0, 0.5)), ("surface_beta", (0.5, 2.5)), ("domain_size_nm", 0.0),
    ("surface_thickness_px", -1.0), ("surface_tau_ratio", 0.0), ("contrast", 0.0), ("contrast", 1.5),
    ("counts_wire", 0.0), ("counts_wire", -INF), ("counts_vacuum", -1.0), ("counts_crystal", INF),
    ("wire_fraction", 1.0), ("crystal_radius_px", -2.0), ("drift_px", (1.0,)), ("drift_px", (INF, 0.0)),
    ("drift_walk_px", -0.1), ("temperature_C", -500.0), ("material", 3),
])
def test_params_validation_names_parameter(name, value):
    with pytest.raises(MetadataError, match=name):
        SynthParams(**{name: value})


def test_params_accept_lists_and_are_hashable():
    p = SynthParams(beta_range=[0.5, 0.8], drift_px=[1, 2])
    assert p.beta_range == (0.5, 0.8) and p.drift_px == (1.0, 2.0)
    assert hash(p) == hash(SynthParams(beta_range=(0.5, 0.8), drift_px=(1.0, 2.0)))
    assert SynthParams(counts_wire=INF).noise is False
