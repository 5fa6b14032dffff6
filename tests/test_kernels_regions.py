"""Tests of ecm_dask.kernels.regions / twotime / stationarity against direct computations and known truth.

Synthetic speckle: ``gaussian_process`` gives complex Gaussian fields with exact KWW field correlation
``exp(-(k/tau)**beta)``; intensities ``I = mean ((1-s) + s |E|^2)`` with ``s = sqrt(A)`` have
``g2(k) = 1 + A exp(-2 (k/tau)**beta)``.  Statistical tolerances use standard errors measured from the
data (block means along the time axis, or the bootstrap errors the code reports).
"""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
import pytest

from ecm_dask.kernels.g2 import g2
from ecm_dask.kernels.regions import pool_average_g2, pool_sum, roi_average
from ecm_dask.kernels.stationarity import stationarity_check, tau_model_free, window_g2
from ecm_dask.kernels.twotime import two_time, two_time_memory
from ecm_dask.synth.kernels import gaussian_process

A = 0.3  # speckle contrast of the synthetic series


def speckle(tau, beta, n_frames, n_pix, rng, mean=50.0):
    """Time-major ``(n_frames, n_pix)`` float64 intensities with g2 = 1 + A exp(-2 (k/tau)**beta)."""
    e = gaussian_process(np.full(n_pix, float(tau)), beta, n_frames, rng).astype(np.complex128)
    s = np.sqrt(A)
    return (mean * ((1.0 - s) + s * (e.real ** 2 + e.imag ** 2))).T.copy()


def kww_g2(k, tau, beta, contrast=A):
    return 1.0 + contrast * np.exp(-2.0 * (np.asarray(k, dtype=np.float64) / tau) ** beta)


# ------------------------------------------------------------------------------------------ regions
def _direct_roi(curves):
    """Per-lag mean, sem and count of the finite values of ``curves (P, n_lags)`` by plain loops."""
    mean, sem, n = [], [], []
    for col in curves.T:
        v = col[np.isfinite(col)].astype(np.float64)
        n.append(v.size)
        mean.append(v.mean() if v.size else np.nan)
        sem.append(v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else np.nan)
    return np.array(mean), np.array(sem), np.array(n)


def test_roi_average_matches_numpy_with_nan_pixels():
    rng = np.random.default_rng(1)
    g = (1.0 + 0.2 * rng.random((6, 5, 12))).astype(np.float32)
    g[0, 0] = np.nan  # a dead pixel
    g[2, 3, 4:7] = np.nan  # a pixel missing some lags
    g[1, 1, 11] = np.inf
    mask = rng.random((6, 5)) < 0.6
    mask[0, 0] = mask[2, 3] = True
    mean, sem, n = roi_average(g, mask)
    em, es, en = _direct_roi(g[mask])
    assert mean.shape == sem.shape == n.shape == (12,)
    np.testing.assert_allclose(mean, em, rtol=1e-12)
    np.testing.assert_allclose(sem, es, rtol=1e-10)
    np.testing.assert_array_equal(n, en)
    assert n[5] == mask.sum() - 2 and n[0] == mask.sum() - 1
    # no mask: every pixel
    em, es, en = _direct_roi(g.reshape(-1, 12))
    mean, sem, n = roi_average(g)
    np.testing.assert_allclose(mean, em, rtol=1e-12)
    np.testing.assert_array_equal(n, en)
    # extra axes are kept: (windows, ny, nx, lags) -> (windows, lags)
    gw = np.stack([g, g + 1.0, g * 2.0])
    mw, sw, nw = roi_average(gw, mask, axis_pixels=(1, 2))
    assert mw.shape == (3, 12)
    for i in range(3):
        em, es, en = _direct_roi(gw[i][mask])
        np.testing.assert_allclose(mw[i], em, rtol=1e-12)
        np.testing.assert_allclose(sw[i], es, rtol=1e-10)
        np.testing.assert_array_equal(nw[i], en)


def test_roi_average_errors():
    g = np.ones((4, 4, 5))
    with pytest.raises(ValueError, match="mask selects no pixel"):
        roi_average(g, np.zeros((4, 4), dtype=bool))
    with pytest.raises(ValueError, match="mask"):
        roi_average(g, np.ones((4, 3), dtype=bool))
    with pytest.raises(ValueError, match="axis_pixels"):
        roi_average(g, axis_pixels=(2,))
    # a single pixel: mean is its curve, sem undefined
    m = np.zeros((4, 4), dtype=bool)
    m[1, 2] = True
    mean, sem, n = roi_average(g * 2, m)
    np.testing.assert_array_equal(mean, 2.0)
    assert np.isnan(sem).all() and (n == 1).all()


def test_pool_sum_matches_loop():
    rng = np.random.default_rng(2)
    block = rng.integers(0, 1000, size=(7, 11, 13)).astype(np.uint16)
    k = 3
    out = pool_sum(block, k)
    assert out.shape == (7, 3, 4)
    expect = np.zeros((7, 3, 4), dtype=np.int64)
    for t in range(7):
        for i in range(3):
            for j in range(4):
                expect[t, i, j] = int(block[t, i * k:(i + 1) * k, j * k:(j + 1) * k].astype(np.int64).sum())
    np.testing.assert_array_equal(out, expect)
    # time on the last axis
    out_last = pool_sum(np.moveaxis(block, 0, -1), k, axis_time=-1)
    np.testing.assert_array_equal(out_last, np.moveaxis(expect, 0, -1))
    # floats
    f = rng.random((3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(pool_sum(f, 2)[1, 1, 0], f[1, 2:4, 0:2].sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="k"):
        pool_sum(block, 0)
    with pytest.raises(ValueError, match="block"):
        pool_sum(block[0], 2)


def test_pool_sum_uint16_does_not_overflow():
    block = np.full((2, 8, 8), 65530, dtype=np.uint16)
    block[0, 0, 0] = 65535
    out = pool_sum(block, 4)
    assert np.can_cast(np.uint16, out.dtype) and np.iinfo(out.dtype).max >= 16 * 65535
    assert out[0, 0, 0] == 15 * 65530 + 65535
    assert out[1, 1, 1] == 16 * 65530
    big = pool_sum(np.full((1, 300, 300), 65535, dtype=np.uint16), 300)  # 90000 * 65535 > 2**32
    assert int(big[0, 0, 0]) == 90000 * 65535


def test_pool_average_g2_matches_loop():
    rng = np.random.default_rng(3)
    g = 1.0 + rng.random((9, 10, 6))
    g[0, 1] = np.nan
    g[4, 4, 2] = np.nan
    k = 2
    mean, sem = pool_average_g2(g, k)
    assert mean.shape == sem.shape == (4, 5, 6)
    for i in range(4):
        for j in range(5):
            em, es, _ = _direct_roi(g[i * k:(i + 1) * k, j * k:(j + 1) * k].reshape(-1, 6))
            np.testing.assert_allclose(mean[i, j], em, rtol=1e-12)
            np.testing.assert_allclose(sem[i, j], es, rtol=1e-10)


# ----------------------------------------------------------------------------------------- two-time
def _dense_two_time(x):
    x = np.asarray(x, dtype=np.float64)
    m = x.mean(axis=1)
    return (x @ x.T / x.shape[1]) / np.outer(m, m)


@pytest.mark.parametrize("tile", [7, 16, 100])
def test_two_time_matches_dense(tile):
    rng = np.random.default_rng(4)
    x = rng.poisson(5.0, size=(50, 3, 3)).astype(np.uint16)  # (T, ny, nx): flattened to 9 pixels
    flat = x.reshape(50, 9)
    c = two_time(x, tile=tile)
    assert c.shape == (50, 50) and c.dtype == np.float32
    np.testing.assert_allclose(c, _dense_two_time(flat), rtol=1e-6)
    # binning 2 frames (T=51: the last frame is dropped)
    x51 = rng.poisson(5.0, size=(51, 9)).astype(np.float32)
    cb = two_time(x51, tile=tile, bin_frames=2)
    assert cb.shape == (25, 25)
    np.testing.assert_allclose(cb, _dense_two_time(x51[:50].reshape(25, 2, 9).mean(axis=1)), rtol=1e-6)
    # a masked frame: NaN row and column, the rest unchanged
    fm = np.ones(50, dtype=bool)
    fm[13] = False
    cm = two_time(flat, tile=tile, frame_mask=fm)
    assert np.isnan(cm[13]).all() and np.isnan(cm[:, 13]).all()
    assert np.isnan(cm).sum() == 2 * 50 - 1
    keep = np.flatnonzero(fm)
    np.testing.assert_allclose(cm[np.ix_(keep, keep)], _dense_two_time(flat)[np.ix_(keep, keep)], rtol=1e-6)
    # masked frame inside a bin: the bin is the mean of its valid frame(s)
    cmb = two_time(flat, tile=tile, frame_mask=fm, bin_frames=2)
    xb = flat.astype(np.float64).reshape(25, 2, 9).mean(axis=1)
    xb[6] = flat[12]
    np.testing.assert_allclose(cmb, _dense_two_time(xb), rtol=1e-6)


def test_two_time_into_given_out_and_bad_pixels():
    rng = np.random.default_rng(5)
    x = rng.poisson(8.0, size=(40, 6)).astype(np.float64)
    out = np.full((40, 40), -1.0)
    res = two_time(x, tile=9, out=out)
    assert res is out
    np.testing.assert_allclose(out, _dense_two_time(x), rtol=1e-12)
    xn = np.concatenate([x, np.full((40, 1), np.nan)], axis=1)
    xn[3, -1] = 1.0
    np.testing.assert_allclose(two_time(xn, tile=9), _dense_two_time(x), rtol=1e-6)  # NaN pixel left out
    with pytest.raises(ValueError, match="out"):
        two_time(x, out=np.empty((39, 40)))
    with pytest.raises(ValueError, match="frame_mask"):
        two_time(x, frame_mask=np.ones(39, dtype=bool))
    with pytest.raises(ValueError, match="tile"):
        two_time(x, tile=0)
    with pytest.raises(ValueError, match="bin_frames"):
        two_time(x, bin_frames=41)


@pytest.mark.slow
def test_two_time_memory_bound_into_memmap(tmp_path):
    """T=12000, P=16, tile=1024 into a 576 MB float32 memmap: traced peak < 64 MB (measured ~8.6 MB)."""
    n_t, n_p, tile = 12000, 16, 1024
    rng = np.random.default_rng(6)
    x = rng.poisson(20.0, size=(n_t, n_p)).astype(np.float32)
    path = tmp_path / "c2.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_t, n_t))
    try:
        assert out.nbytes == 4 * n_t * n_t  # 576 MB on disk, 9x the bound
        tracemalloc.start()
        t0 = time.perf_counter()
        two_time(x, tile=tile, out=out)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"two_time T={n_t} P={n_p} tile={tile}: {elapsed:.1f} s, traced peak {peak / 2**20:.1f} MiB")
        assert peak < 64 * 2**20
        assert peak <= two_time_memory(n_t, n_p, tile)
        # spot checks against the dense formula, in tiles off and on the diagonal
        for a, b in [(0, 5), (1500, 11999), (11999, 3), (11234, 11234)]:
            xa, xb = x[a].astype(np.float64), x[b].astype(np.float64)
            expect = np.mean(xa * xb) / (xa.mean() * xb.mean())
            np.testing.assert_allclose(out[a, b], expect, rtol=1e-6)
        np.testing.assert_array_equal(out[100:110, 5000:5010], out[5000:5010, 100:110].T)
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        del out
        os.remove(path)  # pytest keeps old tmp dirs: do not leave 1.6 GB behind


def test_two_time_diagonal_matches_g2_of_stationary_speckle():
    tau, beta = 10.0, 0.8
    x = speckle(tau, beta, 2000, 1024, np.random.default_rng(7))
    c = two_time(x, tile=512).astype(np.float64)
    for k in (1, 2, 5, 10, 20, 40, 100):
        d = np.diagonal(c, k)
        nb = d.size // 100  # blocks of 100 frames >> tau are nearly independent
        block_means = d[:nb * 100].reshape(nb, 100).mean(axis=1)
        se = block_means.std(ddof=1) / np.sqrt(nb)
        assert abs(d.mean() - kww_g2(k, tau, beta)) < 4 * se + 2e-4, (k, d.mean(), kww_g2(k, tau, beta), se)


# ------------------------------------------------------------------------------------- stationarity
@pytest.mark.parametrize("ppo", [8, 12, 16])
@pytest.mark.parametrize("tau, beta", [(3.0, 1.0), (10.0, 0.5), (40.0, 0.8), (40.0, 1.5), (250.0, 1.0),
                                       (250.0, 2.0)])
def test_tau_model_free_recovers_kww_tau(ppo, tau, beta):
    lag = 2.0 ** (np.arange(0, 14 * ppo) / ppo)  # 1 .. 16384 frames
    est = tau_model_free(kww_g2(lag, tau, beta, 0.2), lag)
    assert abs(est / tau - 1) < 0.02
    # another baseline, lags in seconds
    est_s = tau_model_free(kww_g2(lag, tau, beta, 0.2) + 0.05, lag * 0.01, baseline=1.05)
    assert abs(est_s / (tau * 0.01) - 1) < 0.02


def test_tau_model_free_nan_when_no_decay():
    lag = 2.0 ** (np.arange(0, 40) / 8)  # up to ~30 frames
    assert np.isnan(tau_model_free(kww_g2(lag, 1000.0, 1.0), lag))
    assert np.isnan(tau_model_free(np.full(lag.size, 0.99), lag))
    with pytest.raises(ValueError, match="lag"):
        tau_model_free(np.ones(5), np.ones(4))


def test_window_g2_equals_g2_of_each_window():
    x = speckle(5.0, 1.0, 403, 12, np.random.default_rng(8)).reshape(403, 3, 4)
    gw, lag, starts = window_g2(x, 4, points_per_octave=4)
    assert gw.shape[:3] == (4, 3, 4)
    np.testing.assert_array_equal(starts, [0, 100, 200, 300])
    for i, a in enumerate(starts):
        r = g2(x[a:a + 100], axis=0, points_per_octave=4)
        np.testing.assert_array_equal(gw[i], r.g2)
        np.testing.assert_array_equal(lag, r.lag)
    with pytest.raises(ValueError, match="n_windows"):
        window_g2(x, 300)


@pytest.fixture(scope="module")
def stationary_series():
    return speckle(10.0, 1.0, 2000, 1000, np.random.default_rng(9))


@pytest.fixture(scope="module")
def doubling_series():
    rng = np.random.default_rng(10)
    return np.concatenate([speckle(10.0, 1.0, 1000, 1000, rng), speckle(20.0, 1.0, 1000, 1000, rng)])


def test_stationarity_check_stationary(stationary_series):
    r = stationarity_check(stationary_series, 4, frame_time=0.5)
    assert r["g2"].shape == (4, r["lag"].size) and r["tau"].shape == (4,)
    np.testing.assert_array_equal(r["n_pixels"], 1000)
    np.testing.assert_allclose(r["t_mid"], [125.0, 375.0, 625.0, 875.0])
    assert np.all(r["tau_err"] > 0) and np.all(r["tau_err"] < 0.05 * r["tau"])
    # 10 frames = 5 s; the finite-window g2 sits slightly below 1 at long lags, shortening tau a bit
    assert np.all(np.abs(r["tau"] / 5.0 - 1) < 0.15)
    assert r["drifting"] is False
    assert abs(r["slope"]) < 3 * r["slope_err"]
    assert abs(r["ratio"] - 1.0) < 3 * r["ratio_err"]


def test_stationarity_check_tau_doubling_halfway(doubling_series):
    r = stationarity_check(doubling_series, 4, frame_time=1.0)
    assert r["drifting"] is True
    assert r["slope"] > 0
    assert abs(r["ratio"] / 2.0 - 1) < 0.3
    # a region of half the pixels gives the same verdict
    mask = np.zeros(1000, dtype=bool)
    mask[::2] = True
    rh = stationarity_check(doubling_series, 4, pixel_mask=mask, n_boot=50)
    np.testing.assert_array_equal(rh["n_pixels"], 500)
    assert rh["drifting"] is True and abs(rh["ratio"] / 2.0 - 1) < 0.3
    with pytest.raises(ValueError, match="pixel_mask"):
        stationarity_check(doubling_series, 4, pixel_mask=np.zeros(1000, dtype=bool))
    with pytest.raises(ValueError, match="frame_time"):
        stationarity_check(doubling_series, 4, frame_time=0.0)
