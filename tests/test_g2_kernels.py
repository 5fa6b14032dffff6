"""g2 kernels against direct float64 references, closed forms and synthetic data with known τ, β, A."""

from __future__ import annotations

import numpy as np
import pytest

from ecm_dask.kernels.g2 import PIXEL_DARK, PIXEL_NONFINITE, PIXEL_OK, PIXEL_SATURATED, g2
from ecm_dask.kernels.lags import log_lag_bins, multitau_lags
from ecm_dask.synth.kernels import gaussian_process


# ------------------------------------------------------------------------ direct float64 references
def direct_linear(x, w, normalization):
    """g2(k), k = 1..T-1, per pixel by explicit sums (x: (P, T) float64, w: (T,) in {0,1})."""
    n_p, n_t = x.shape
    out = np.full((n_p, n_t - 1), np.nan)
    pairs = np.zeros(n_t - 1)
    m_all = (x * w).sum(1) / w.sum()
    for k in range(1, n_t):
        ww = w[:-k] * w[k:]
        pairs[k - 1] = ww.sum()
        if ww.sum() == 0:
            continue
        num = (x[:, :-k] * x[:, k:] * ww).sum(1) / ww.sum()
        if normalization == "symmetric":
            den = ((x[:, :-k] * w[:-k]).sum(1) / w[:-k].sum()) * ((x[:, k:] * w[k:]).sum(1) / w[k:].sum())
        else:
            den = m_all**2
        out[:, k - 1] = num / den
    return out, pairs


def direct_binned(x, w, normalization, bins):
    g, pairs = direct_linear(x, w, normalization)
    res = np.empty((x.shape[0], bins.lag.size))
    for b, (lo, hi) in enumerate(zip(bins.edges[:-1], bins.edges[1:])):
        pk = pairs[lo - 1:hi - 1]
        res[:, b] = np.nansum(g[:, lo - 1:hi - 1] * pk, axis=1) / pk.sum()
    return res


def direct_multitau(x, w, normalization, grid):
    """The multi-tau estimator evaluated directly: weighted pair averages per level, explicit sums."""
    xs, ws = x * w, w.copy()
    out = np.empty((x.shape[0], grid.lag.size))
    m_all = xs.sum(1) / w.sum()
    for level in range(grid.n_levels):
        if level:
            h = xs.shape[1] // 2
            xs = 0.5 * (xs[:, 0:2 * h:2] + xs[:, 1:2 * h:2])
            ws = 0.5 * (ws[0:2 * h:2] + ws[1:2 * h:2])
        for c in np.flatnonzero(grid.level == level):
            k = grid.k[c]
            num = (xs[:, :-k] * xs[:, k:]).sum(1) / (ws[:-k] * ws[k:]).sum()
            if normalization == "symmetric":
                den = (xs[:, :-k].sum(1) / ws[:-k].sum()) * (xs[:, k:].sum(1) / ws[k:].sum())
            else:
                den = m_all**2
            out[:, c] = num / den
    return out


def speckle(n_pix, n_t, tau, beta, contrast, mean=100.0, seed=0, dtype=np.float32):
    rngs = [np.random.default_rng([seed, i]) for i in range(n_pix)]
    e = gaussian_process(np.full(n_pix, tau), np.full(n_pix, beta), n_t, rngs)
    s = np.sqrt(contrast)
    return (mean * ((1 - s) + s * np.abs(e) ** 2)).astype(dtype)  # (P, T)


# ---------------------------------------------------------------------------- exactness vs direct
@pytest.mark.parametrize("normalization", ["symmetric", "standard"])
@pytest.mark.parametrize("masked", [False, True])
def test_fft_matches_direct_float64_on_float32_input(normalization, masked):
    x = speckle(12, 300, tau=6.0, beta=0.7, contrast=0.4, seed=1)
    w = np.ones(300)
    if masked:
        w[[0, 7, 8, 9, 150, 299]] = 0
    r = g2(x, method="fft", normalization=normalization, frame_mask=w.astype(bool), points_per_octave=8)
    bins = log_lag_bins(300, 8)
    ref = direct_binned(x.astype(np.float64), w, normalization, bins)
    np.testing.assert_allclose(r.g2, ref, rtol=1e-6)
    assert r.g2.shape == (12, bins.lag.size) and (r.status == PIXEL_OK).all()


@pytest.mark.parametrize("normalization", ["symmetric", "standard"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("m", [4, 8, 16])
def test_multitau_matches_direct_float64_on_float32_input(normalization, masked, m):
    n_t = 1000  # not a power of two: odd frames are dropped at some levels
    x = speckle(10, n_t, tau=15.0, beta=0.6, contrast=0.3, seed=2)
    w = np.ones(n_t)
    if masked:
        w[[3, 4, 100, 101, 102, 513, 998]] = 0
    r = g2(x, method="multitau", normalization=normalization, frame_mask=w.astype(bool), points_per_octave=m)
    grid = multitau_lags(n_t, m)
    ref = direct_multitau(x.astype(np.float64), w, normalization, grid)
    np.testing.assert_allclose(r.g2, ref, rtol=1e-6)
    np.testing.assert_array_equal(r.lag, grid.lag)


def test_time_axis_and_integer_input_and_lag0():
    rng = np.random.default_rng(3)
    x = rng.poisson(30, (200, 5, 7)).astype(np.uint16)  # time-major, as blocks come from the store
    r0 = g2(x, axis=0)
    r1 = g2(np.moveaxis(x, 0, -1), axis=-1)
    np.testing.assert_array_equal(r0.g2, r1.g2)
    assert r0.g2.shape == (5, 7, multitau_lags(200).lag.size)
    xf = x.astype(np.float64)
    np.testing.assert_allclose(r0.g2_lag0, (xf**2).mean(0) / xf.mean(0) ** 2, rtol=1e-6)
    np.testing.assert_allclose(r0.mean, xf.mean(0))


def test_both_methods_agree_where_the_lag_grids_coincide():
    x = speckle(20, 2048, tau=30.0, beta=0.8, contrast=0.5, seed=4, dtype=np.float64)
    mt = g2(x, method="multitau", points_per_octave=8)
    ff = g2(x, method="fft", points_per_octave=8)
    # at level 0 both hold single linear lags 1..12: identical estimators
    np.testing.assert_allclose(mt.g2[:, :12], ff.g2[:, :12], rtol=1e-9)


# ------------------------------------------------------------------------- masks and bad pixels
@pytest.mark.parametrize("method", ["multitau", "fft"])
def test_masked_frames_are_skipped_exactly_whatever_they_hold(method):
    x = speckle(6, 512, tau=8.0, beta=0.9, contrast=0.3, seed=5)
    mask = np.ones(512, bool)
    mask[[10, 11, 200, 300]] = False
    clean = g2(x, method=method, frame_mask=mask)
    x2 = x.copy()
    x2[:, ~mask] = np.array([1e6, np.nan, -5.0, np.inf], dtype=np.float32)
    dirty = g2(x2, method=method, frame_mask=mask)
    np.testing.assert_array_equal(dirty.status, PIXEL_OK)
    np.testing.assert_allclose(dirty.g2, clean.g2, rtol=1e-12)


@pytest.mark.parametrize("method", ["multitau", "fft"])
def test_dead_saturated_and_dark_pixels_get_nan_and_a_reason(method):
    rng = np.random.default_rng(6)
    x = rng.poisson(40, (9, 256)).astype(np.uint16)
    x[1, 17] = 65535  # saturated (integer maximum)
    x[2] = 0  # dark
    xf = x.astype(np.float32)
    xf[3, 100] = np.nan  # dead
    xf[4, 5] = np.inf
    r = g2(x, method=method)
    assert r.status[1] == PIXEL_SATURATED and r.status[2] == PIXEL_DARK
    rf = g2(xf, method=method, saturation=65535)
    assert list(rf.status[:5]) == [PIXEL_OK, PIXEL_SATURATED, PIXEL_DARK, PIXEL_NONFINITE, PIXEL_NONFINITE]
    assert np.isnan(rf.g2[1:5]).all() and np.isnan(rf.g2_lag0[1:5]).all()
    good = [0, 5, 6, 7, 8]
    alone = g2(xf[good], method=method)  # bad neighbours do not change good pixels
    np.testing.assert_allclose(rf.g2[good], alone.g2, rtol=1e-12)



def test_multitau_flags_what_float32_cannot_hold_and_empty_windows():
    """The compiled finisher's statuses: float64 sums that overflow give no finite g2 (non-finite), a symmetric
    window without intensity is dark, and the standard normalisation of that pixel equals direct sums."""
    rng = np.random.default_rng(8)
    x = rng.poisson(40, (3, 256)).astype(np.float64)
    x[1] = 1e200  # lagged products overflow float64
    x[2, :128] = 0.0  # no intensity in the first half: the first window of long lags is empty
    r = g2(x, method="multitau")
    assert list(r.status) == [PIXEL_OK, PIXEL_NONFINITE, PIXEL_DARK]
    assert np.isnan(r.g2[1:]).all() and np.isnan(r.g2_lag0[1:]).all() and np.isfinite(r.g2[0]).all()
    s = g2(x, method="multitau", normalization="standard")
    assert list(s.status) == [PIXEL_OK, PIXEL_NONFINITE, PIXEL_OK]
    xi = x[2]
    for j in range(4):  # level 0: exact lags 1..4
        k = int(s.lag[j])
        assert k == j + 1
        direct = np.mean(xi[:-k] * xi[k:]) / np.mean(xi) ** 2
        assert s.g2[2, j] == pytest.approx(direct, rel=1e-6)
    assert s.g2_lag0[2] == pytest.approx(np.mean(xi * xi) / np.mean(xi) ** 2, rel=1e-6)

def test_bad_arguments_name_the_parameter():
    x = np.ones((3, 10))
    with pytest.raises(ValueError, match="method"):
        g2(x, method="spline")
    with pytest.raises(ValueError, match="normalization"):
        g2(x, normalization="odd")
    with pytest.raises(ValueError, match="frame_mask"):
        g2(x, frame_mask=np.ones(9, bool))
    with pytest.raises(ValueError, match="at least 2"):
        g2(x, frame_mask=np.eye(10, dtype=bool)[0])
    with pytest.raises(ValueError, match="max_lag"):
        g2(x, max_lag=10)


def test_two_frames_is_the_smallest_series():
    r = g2(np.array([[1.0, 3.0]]), method="fft")
    np.testing.assert_allclose(r.g2[0], [3.0 / (1.0 * 3.0)])
    r = g2(np.array([[1.0, 3.0]]), method="multitau")
    np.testing.assert_allclose(r.g2[0], [1.0])


# ------------------------------------------------------------------- physics: known τ, β, contrast
def expected_multitau(grid, tau, beta, contrast):
    """E[channel] for g2 = 1 + A g1^2: the binned frames see lags k 2^l + d with triangular weights."""
    out = np.empty(grid.lag.size)
    for c, (level, k) in enumerate(zip(grid.level, grid.k)):
        n = 1 << level
        d = np.arange(-(n - 1), n)
        wts = (n - np.abs(d)) / n**2
        lagd = np.abs(k * n + d)
        out[c] = 1 + contrast * np.sum(wts * np.exp(-2 * (lagd / tau) ** beta))
    return out


@pytest.mark.parametrize("method", ["multitau", "fft"])
def test_g2_of_synthetic_speckle_matches_kww_within_statistical_error(method):
    tau, beta, contrast, n_t, n_pix = 12.0, 0.7, 0.3, 4096, 600
    x = speckle(n_pix, n_t, tau, beta, contrast, seed=7)
    r = g2(x, method=method, points_per_octave=8, max_lag=200)
    mean = r.g2.mean(0)
    sem = r.g2.std(0, ddof=1) / np.sqrt(n_pix)
    if method == "multitau":
        expect = expected_multitau(multitau_lags(n_t, 8, 200), tau, beta, contrast)
    else:
        bins = log_lag_bins(n_t, 8, 200)
        lags = np.arange(1, 201)
        pk = (n_t - lags).astype(float)
        g_true = 1 + contrast * np.exp(-2 * (lags / tau) ** beta)
        expect = np.array([np.sum((g_true * pk)[lo - 1:hi - 1]) / pk[lo - 1:hi - 1].sum()
                           for lo, hi in zip(bins.edges[:-1], bins.edges[1:])])
    bias = contrast * 4 * tau / n_t  # finite-series bias of the normalised estimator, O(tau/T)
    z = np.abs(mean - expect) / (4 * sem + bias)
    assert (z < 1).all(), (mean - expect)[z >= 1]
    # the contrast at the first lag is the requested one, and g2 decays to 1
    assert abs(mean[0] - 1 - contrast * np.exp(-2 * (1 / tau) ** beta)) < 4 * sem[0] + bias
    assert abs(mean[-1] - 1) < 4 * sem[-1] + bias


def test_low_contrast_1e3_with_poisson_noise_is_measured():
    tau, beta, contrast = 10.0, 0.8, 1e-3
    x = speckle(2000, 2048, tau, beta, contrast, mean=2000.0, seed=8, dtype=np.float64)
    counts = np.random.default_rng(9).poisson(x).astype(np.uint16)
    r = g2(counts, method="multitau", max_lag=64)
    mean = r.g2.mean(0)
    sem = r.g2.std(0, ddof=1) / np.sqrt(2000)
    expect = expected_multitau(multitau_lags(2048, 8, 64), tau, beta, contrast)
    assert np.all(np.abs(mean - expect) < 4 * sem + contrast * 4 * tau / 2048)
    # lag 0 carries the shot noise 1/<I> on top of the contrast, which is why it is never fitted
    assert abs(r.g2_lag0.mean() - (1 + contrast + 1 / 2000)) < 2e-4


def test_the_multitau_driver_is_compiled_once_per_machine(tmp_path):
    """The generated driver lives in a real file, so numba caches its machine code: a second process loads it."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from ecm_dask.kernels.g2 import g2\n"
            "from ecm_dask.kernels._multitau import driver_for\n"
            "r = g2(np.arange(1.0, 401.0).reshape(200, 2), method='multitau', points_per_octave=5, axis=0)\n"
            "d = driver_for(5)\n"
            "print(d.stats.cache_hits.most_common(1) and 1 or 0, d.stats.cache_misses.most_common(1) and 1 or 0)\n")
    env = {**os.environ, "ECM_DASK_KERNEL_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert first.stdout.split() == ["0", "1"]  # compiled (a cache miss) and saved
    assert second.stdout.split() == ["1", "0"]  # loaded from the cache: no compilation
    assert len(list(tmp_path.glob("multitau_m5_*.py"))) == 1


@pytest.mark.parametrize("dtype", ["uint16", "float32", "int32"])
def test_the_tiled_transpose_equals_a_direct_masked_copy(dtype):
    """load_chunk and load_plain (tiles of 8 frames) = the zero-filled pixel-major copy, at any frame count, offset
    and mask."""
    from ecm_dask.kernels._multitau import load_chunk, load_plain

    rng = np.random.default_rng(3)
    for n_t in (1, 7, 8, 9, 37, 64):
        x = rng.integers(0, 500, (n_t, 21)).astype(dtype)
        w = np.ones(n_t)
        w[rng.random(n_t) < 0.2] = 0.0
        if dtype == "float32" and n_t > 2:
            x[0, 3] = np.nan  # a NaN in a frame: kept where the frame is valid, zero where it is masked
            w[1] = 0.0
            x[1, 4] = np.nan
        buf = np.full((10, n_t), -1.0)
        zero = np.zeros(n_t, dtype=np.int64)
        load_chunk(x[:, None, :], zero, zero, 21, 5, 15, w, buf)
        expected = np.where(w[:, None] != 0, x[:, 5:15].astype(np.float64), 0.0).T
        np.testing.assert_array_equal(buf, expected)
        buf[:] = -1.0
        load_plain(x, 5, 15, w, buf)
        np.testing.assert_array_equal(buf, expected)


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_the_gather_through_per_frame_offsets_equals_fancy_indexing(dtype):
    """load_chunk with per-frame offsets = the registered pixels picked one by one, for chunks that wrap over
    several rows of the output grid and start mid-row."""
    from ecm_dask.kernels._multitau import load_chunk

    rng = np.random.default_rng(4)
    ny, nx = 5, 7
    for n_t in (3, 8, 29):
        x = rng.integers(0, 500, (n_t, ny + 4, nx + 6)).astype(dtype)
        oy = rng.integers(0, 5, n_t).astype(np.int64)
        ox = rng.integers(0, 7, n_t).astype(np.int64)
        w = (rng.random(n_t) > 0.2).astype(np.float64)
        t, y, xx = np.meshgrid(np.arange(n_t), np.arange(ny), np.arange(nx), indexing="ij")
        reg = x[t, oy[t] + y, ox[t] + xx].reshape(n_t, -1)  # (T, ny * nx) registered pixels
        for p0, p1 in ((0, 35), (3, 20), (13, 14), (6, 29)):
            buf = np.full((p1 - p0, n_t), -1.0)
            load_chunk(x, oy, ox, nx, p0, p1, w, buf)
            expected = np.where(w[:, None] != 0, reg[:, p0:p1].astype(np.float64), 0.0).T
            np.testing.assert_array_equal(buf, expected)


def test_g2_region_equals_g2_of_the_registered_copy():
    """g2_region (drift undone while loading) = g2 of the block registered by shift_block, bit for bit, with a
    frame mask; offsets that leave the region are refused."""
    from ecm_dask.kernels.g2 import g2, g2_region
    from ecm_dask.kernels.shift import shift_block

    rng = np.random.default_rng(5)
    n_t, by, bx, h = 300, 12, 10, 3
    region = rng.poisson(30.0, (n_t, by + 2 * h, bx + 2 * h)).astype(np.uint16)
    shifts = np.cumsum(rng.normal(0, 0.3, (n_t, 2)), axis=0).clip(-h, h)
    mask = np.ones(n_t, dtype=bool)
    mask[[10, 11, 200]] = False
    registered = shift_block(region.astype(np.float32), shifts, (h, h))
    ref = g2(registered, axis=0, frame_mask=mask, saturation=65535.0)
    offsets = np.floor(shifts + 0.5).astype(np.int64) + h
    got = g2_region(region, (by, bx), offsets, frame_mask=mask)
    np.testing.assert_array_equal(got.g2, ref.g2)
    np.testing.assert_array_equal(got.g2_lag0, ref.g2_lag0)
    np.testing.assert_array_equal(got.status, ref.status)
    np.testing.assert_array_equal(got.pairs, ref.pairs)
    with pytest.raises(ValueError, match="does not fit"):
        g2_region(region, (by, bx), offsets + h + 1)
    # written into part of a caller's block (strided, as the g2 stage's task output): the same numbers, in place
    n_lag = ref.g2.shape[-1]
    block = np.full((by, bx, n_lag + 3), -7.0, np.float32)
    into = g2_region(region, (by, bx), offsets, frame_mask=mask, out=block[..., :-3])
    np.testing.assert_array_equal(block[..., :-3], ref.g2)
    assert np.shares_memory(into.g2, block) and (block[..., -3:] == -7.0).all()
    with pytest.raises(ValueError, match="out must be float32"):
        g2_region(region, (by, bx), offsets, out=np.empty((by, bx, n_lag)))
    with pytest.raises(ValueError, match="without a copy"):
        g2_region(region, (by, bx), offsets, out=np.empty((bx, by, n_lag), np.float32).transpose(1, 0, 2))
