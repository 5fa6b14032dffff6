"""Drift estimation kernel (ecm_dask.kernels.drift): sub-pixel phase correlation, shift traces of a
synthetic drifting series against the known drift, outlier cleaning, reference suggestion, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ecm_dask.kernels.drift import clean_shifts, estimate_shifts, phase_correlation, suggest_reference
from ecm_dask.schema import REGION_CRYSTAL
from ecm_dask.synth import SynthParams, drift_trace, render_block, truth_maps


def _texture(shape, seed=0, sigma=1.5):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")


def _fourier_shift(img, dy, dx):
    """``img`` content displaced by +(dy, dx) (circularly): out[y, x] = img[y - dy, x - dx]."""
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None, :]
    return np.real(np.fft.ifft2(np.fft.fft2(img) * np.exp(-2j * np.pi * (ky * dy + kx * dx))))


SUBPIXEL = [(0.37, -1.81), (-2.63, 4.12), (0.05, 0.49), (3.75, -0.2)]


# ------------------------------------------------------------------------------ phase correlation
@pytest.mark.parametrize("window", ["hann", "tukey", None])
@pytest.mark.parametrize("d", SUBPIXEL)
def test_phase_correlation_subpixel_circular(d, window):
    ref = _texture((64, 80))
    img = _fourier_shift(ref, *d)
    dy, dx, peak = phase_correlation(ref, img, window=window)
    assert abs(dy - d[0]) < 0.02 and abs(dx - d[1]) < 0.02, (dy, dx, d)
    assert 0.9 < peak <= 1.0


@pytest.mark.parametrize("d", SUBPIXEL)
def test_phase_correlation_subpixel_non_periodic(d):
    """Shift a large texture, then cut the same window from both: content enters and leaves at the edges."""
    big = _texture((160, 176), seed=1)
    moved = _fourier_shift(big, *d)
    sl = (slice(40, 120), slice(40, 136))
    dy, dx, peak = phase_correlation(big[sl], moved[sl], window="hann")
    assert abs(dy - d[0]) < 0.02 and abs(dx - d[1]) < 0.02, (dy, dx, d)
    assert peak > 0.8


def test_phase_correlation_sign_and_axes_integer_roll():
    ref = _texture((48, 64), seed=2)
    img = np.roll(ref, (3, -5), axis=(0, 1))  # img[y, x] = ref[y - 3, x + 5]: displaced by (+3, -5)
    dy, dx, _ = phase_correlation(ref, img, upsample=10, window=None)
    assert (round(dy, 6), round(dx, 6)) == (3.0, -5.0)
    dy, dx, _ = phase_correlation(img, ref)  # the reverse is the negative
    assert abs(dy + 3) < 0.02 and abs(dx - 5) < 0.02


def test_phase_correlation_peak_quality_and_max_shift():
    ref = _texture((64, 64), seed=3)
    other = _texture((64, 64), seed=4)
    assert phase_correlation(ref, other)[2] < 0.3
    img = _fourier_shift(ref, 6.3, 0.0)
    assert abs(phase_correlation(ref, img)[0] - 6.3) < 0.02
    # restricting the search range below the true shift cannot find it
    assert abs(phase_correlation(ref, img, max_shift=3)[0]) <= 4.0


# ---------------------------------------------------------------------------- synthetic series
def _crystal_roi(p: SynthParams):
    """Frames of the block around the crystal (region 3) with a margin >= the maximum drift."""
    region = truth_maps(p)["region"]
    ys, xs = np.nonzero(region == REGION_CRYSTAL)
    margin = max(p.max_drift_px) + 2
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + 1 + margin, p.ny)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + 1 + margin, p.nx)
    return render_block(p, int(y0), int(y1), int(x0), int(x1))  # Poisson counts (uint16)


def _params(drift, seed=3):
    return SynthParams(ny=96, nx=128, n_frames=400, drift_px=drift, drift_walk_px=1.0, counts_crystal=600.0,
                       seed=seed)


def _rms(est, truth):
    return np.sqrt(np.mean((est - truth) ** 2, axis=0))


@pytest.fixture(scope="module", params=[(6.0, -10.0), (-6.0, 10.0), (-3.0, 8.0)],
                ids=["drift+6-10", "drift-6+10", "drift-3+8"])
def series(request):
    p = _params(request.param)
    return p, _crystal_roi(p), drift_trace(p)


@pytest.mark.parametrize("reference", ["mean", "iterative", "first"])
def test_estimate_shifts_synthetic(series, reference):
    p, frames, truth = series
    assert frames.dtype == np.uint16  # Poisson noise on
    shifts, peaks = estimate_shifts(frames, reference=reference)
    assert shifts.shape == (p.n_frames, 2) and peaks.shape == (p.n_frames,)
    assert shifts[0, 0] == 0.0 and shifts[0, 1] == 0.0
    rms = _rms(shifts, truth)
    assert (rms <= 0.1).all(), rms
    assert np.abs(shifts - truth).max() < 0.3
    assert 0.5 < peaks.min() and peaks.max() <= 1.0
    # the truth moves by several pixels on each axis, differently: swapped axes would be far off
    assert (_rms(shifts[:, ::-1], truth) > 1.0).all()
    assert (_rms(-shifts, truth) > 1.0).all()


def test_estimate_shifts_matches_integer_rolls_exactly():
    """Integer circular shifts of a textured frame: the estimates are the shifts (to 1e-3 px)."""
    base = 100.0 + 50.0 * _texture((40, 52), seed=5)
    true = np.array([(0, 0), (1, -2), (3, 1), (-2, 4), (0, -3)], dtype=float)
    frames = np.stack([np.roll(base, tuple(int(v) for v in s), axis=(0, 1)) for s in true])
    shifts, peaks = estimate_shifts(frames, window=None)
    np.testing.assert_allclose(shifts, true, atol=1e-3)
    assert (peaks > 0.99).all()


# ----------------------------------------------------------------------------------- cleaning
def test_clean_shifts_flags_exactly_the_outliers():
    p = _params((6.0, -10.0))
    truth = drift_trace(p)
    rng = np.random.default_rng(7)
    noisy = truth + rng.normal(0.0, 0.02, truth.shape)
    noisy[0] = 0.0
    peaks = np.clip(0.95 + rng.normal(0.0, 0.01, p.n_frames), 0.0, 1.0)
    bad = [57, 203, 341]
    noisy[57] += (5.0, 0.0)  # jump on y
    noisy[203] += (-3.0, 5.0)  # jump on both axes
    peaks[341] = 0.2  # weak peak, estimate off
    noisy[341] += (0.0, -2.0)
    cleaned, outliers = clean_shifts(noisy, peaks)
    assert np.flatnonzero(outliers).tolist() == bad
    assert np.abs(cleaned[bad] - truth[bad]).max() < 0.1
    good = np.setdiff1d(np.arange(p.n_frames), bad)
    np.testing.assert_array_equal(cleaned[good], noisy[good])  # good frames untouched
    # smoothing: a moving mean over 5 frames lowers the noise, keeps frame 0 at 0
    smoothed, _ = clean_shifts(noisy, peaks, smooth=5)
    assert smoothed[0].tolist() == [0.0, 0.0]
    assert (_rms(smoothed, truth) < _rms(cleaned, truth)).all()
    # explicit thresholds
    _, o2 = clean_shifts(noisy, peaks, min_peak=0.1, max_jump=4.0)
    assert np.flatnonzero(o2).tolist() == [57, 203]


# ---------------------------------------------------------------------------------- reference
@pytest.mark.parametrize("drift", [(6.0, -10.0), (-3.0, 8.0)])
def test_suggest_reference_picks_the_crystal(drift):
    p = _params(drift)
    frames = render_block(p, 0, p.ny, 0, p.nx).astype(np.float64)
    crystal = truth_maps(p)["region"] == REGION_CRYSTAL
    for n_frames, size in [(50, (48, 48)), (50, (32, 32)), (50, (24, 24)), (400, (24, 24))]:
        stack = frames[:n_frames]
        y0, y1, x0, x1 = suggest_reference(stack.mean(axis=0), stack.var(axis=0), size=size)
        assert (y1 - y0, x1 - x0) == size
        assert 0 <= y0 and y1 <= p.ny and 0 <= x0 and x1 <= p.nx
        overlap = crystal[y0:y1, x0:x1].sum() / min(size[0] * size[1], crystal.sum())
        assert overlap >= 0.5, (n_frames, size, (y0, y1, x0, x1), overlap)


# ------------------------------------------------------------------------------------- errors
def test_errors():
    frames = np.ones((5, 16, 16))
    with pytest.raises(ValueError, match="frames"):
        estimate_shifts(np.ones((16, 16)))
    with pytest.raises(ValueError, match="reference"):
        estimate_shifts(frames, reference="median")
    with pytest.raises(ValueError, match="window"):
        estimate_shifts(frames, window="gauss")
    with pytest.raises(ValueError, match="upsample"):
        phase_correlation(frames[0], frames[1], upsample=0)
    with pytest.raises(ValueError, match="image shape"):
        phase_correlation(frames[0], np.ones((16, 15)))
    with pytest.raises(ValueError, match="size"):
        suggest_reference(np.ones((16, 16)), np.ones((16, 16)), size=(20, 8))
    with pytest.raises(ValueError, match="size"):
        suggest_reference(np.ones((16, 16)), np.ones((16, 16)))  # default 48 x 48 > 16 x 16
    with pytest.raises(ValueError, match="peaks"):
        clean_shifts(np.zeros((5, 2)), np.ones(4))
    with pytest.raises(ValueError, match="shifts"):
        clean_shifts(np.zeros((5, 3)), np.ones(5))


def test_stacked_estimation_equals_the_frame_by_frame_steps():
    """_shifts_against handles frames in stacks (one FFT, one batched upsampled DFT per stack); it gives the
    shifts and peaks of phase correlation applied frame by frame with the same steps (a flat frame included, and
    stacks smaller than the series)."""
    from ecm_dask.kernels import drift as KD

    rng = np.random.default_rng(7)
    base = _texture((64, 64), seed=2)
    true = np.cumsum(rng.normal(0, 0.4, (37, 2)), axis=0)
    frames = np.stack([_fourier_shift(base, dy, dx)[8:56, 8:56] for dy, dx in true])
    frames += rng.normal(0, 0.02, frames.shape)
    frames[11] = 3.0  # beam blanked
    frames = KD._scaled(frames)
    ref = frames[:5].mean(axis=0)
    old_batch = KD.BATCH
    try:
        KD.BATCH = 8
        got, peaks = KD._shifts_against(ref, frames, upsample=20, window="hann", max_shift=None)
    finally:
        KD.BATCH = old_batch
    h, w = frames.shape[1:]
    weights, f_ref = KD._weights((h, w)), KD._spectrum(ref, "hann")
    coarse = np.zeros((37, 2))
    for t in range(37):
        if t == 11:
            continue
        r = KD._cross_power(f_ref, KD._spectrum(frames[t], "hann"), weights)
        coarse[t] = KD._locate(r, KD._coarse_peak(r, None), 20)[:2]
    n_int = np.floor(coarse + 0.5).astype(int)
    my, mx = np.abs(n_int).max(axis=0)
    ih, iw = h - 2 * my, w - 2 * mx
    f_ref_i, weights_i = KD._spectrum(ref[my:my + ih, mx:mx + iw], "hann"), KD._weights((ih, iw))
    for t in range(37):
        if t == 11:
            assert peaks[t] == 0 and (got[t] == 0).all()
            continue
        y0, x0 = my + n_int[t, 0], mx + n_int[t, 1]
        fy, fx, pk = KD._refine_tracked(f_ref_i, frames[t, y0:y0 + ih, x0:x0 + iw], tuple(coarse[t] - n_int[t]), "hann",
                                        weights_i, 20)
        np.testing.assert_allclose(got[t], n_int[t] + (fy, fx), atol=1e-9)
        assert abs(peaks[t] - pk) < 1e-9
    assert np.sqrt(np.mean(((got - got[0]) - (true - true[0]))[np.arange(37) != 11] ** 2)) < 0.1
