"""Correlation lengths: Gaussian random fields of known exponential correlation, and Gaussian speckle series."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.analysis.lengths import (
    crossing_length,
    intensity_g4,
    map_correlation_length,
    masked_autocorrelation,
    ring_average,
)
from ecm_dask.errors import InputError


def exponential_field(shape, xi_px, rng):
    """Gaussian random field with covariance exp(-r / xi) exactly (FFT filter on a torus twice as large, cropped)."""
    big = [2 * n for n in shape]
    fy = np.fft.fftfreq(big[0]) * big[0]
    fx = np.fft.fftfreq(big[1]) * big[1]
    cov = np.exp(-np.hypot(fy[:, None], fx[None, :]) / xi_px)
    spectrum = np.clip(np.fft.fft2(cov).real, 0, None)
    f = np.fft.ifft2(np.sqrt(spectrum) * np.fft.fft2(rng.standard_normal(big))).real
    return f[: shape[0], : shape[1]]


def irregular_mask(shape):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = shape[0] / 2, shape[1] / 2
    ellipse = (yy - cy) ** 2 / (0.47 * shape[0]) ** 2 + (xx - cx) ** 2 / (0.35 * shape[1]) ** 2 < 1
    hole = (yy - 0.4 * shape[0]) ** 2 + (xx - 0.55 * shape[1]) ** 2 < (0.12 * shape[0]) ** 2
    return ellipse & ~hole


def test_masked_autocorrelation_against_a_direct_sum():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(9, 11))
    m = rng.random((9, 11)) > 0.3
    prod, pairs = masked_autocorrelation(f, m)
    g = np.where(m, f - f[m].mean(), 0.0)
    for dy, dx in ((0, 0), (1, 0), (0, 3), (-2, 5), (4, -7), (8, 10)):
        a = g[max(0, -dy):9 - max(0, dy), max(0, -dx):11 - max(0, dx)]
        b = g[max(0, dy):9 + min(0, dy), max(0, dx):11 + min(0, dx)]
        ma = m[max(0, -dy):9 - max(0, dy), max(0, -dx):11 - max(0, dx)]
        mb = m[max(0, dy):9 + min(0, dy), max(0, dx):11 + min(0, dx)]
        assert prod[dy + 8, dx + 10] == pytest.approx(np.sum(a * b), abs=1e-9)
        assert pairs[dy + 8, dx + 10] == np.sum(ma & mb)


@pytest.mark.parametrize("seed", [0, 1])
def test_correlation_length_of_exponential_fields_full_and_masked(seed):
    xi_px, px, n = 2.5, 0.4, 256  # xi = 1 nm; ~7 % scatter of one estimate (masked), see the calibration test
    f = exponential_field((n, n), xi_px, np.random.default_rng(seed))
    da = xr.DataArray(f, dims=(S.Y, S.X), coords={S.Y: np.arange(n) * px, S.X: np.arange(n) * px})
    full = map_correlation_length(da)
    masked = map_correlation_length(da, irregular_mask((n, n)))
    for res in (full, masked):
        xi, err = float(res.xi), float(res.xi_err)
        assert abs(xi - 1.0) < 0.15 and abs(xi - 1.0) < 3 * err, (xi, err)
        assert res.xi.attrs["units"] == "nm" and float(res.correlation.sel(r=0.0)) == pytest.approx(1.0)
        # the ring average follows exp(-r/xi) at the rings' mean pair distances out to 4 xi
        c = res.correlation.sel(r=slice(0.3, 4.0))
        np.testing.assert_allclose(c.values, np.exp(-res.r_mean.sel(r=slice(0.3, 4.0)).values / 1.0), atol=0.05)
    assert masked.attrs["n_pixels"] < 0.6 * full.attrs["n_pixels"]
    assert abs(float(masked.xi) - float(full.xi)) < 2 * float(masked.xi_err)


def test_jackknife_error_is_calibrated():
    xi_px = 4.0
    mask = irregular_mask((96, 96))
    est, err = [], []
    for seed in range(16):
        r = map_correlation_length(exponential_field((96, 96), xi_px, np.random.default_rng(100 + seed)), mask,
                                   pixel_size=1.0)
        est.append(float(r.xi))
        err.append(float(r.xi_err))
    est, err = np.array(est), np.array(err)
    assert abs(est.mean() - xi_px) < 0.1 * xi_px  # no bias beyond ~2.5 standard errors of the mean
    # the reported error matches the actual scatter (the jackknife errs on the large side on small maps: ~0.7)
    assert 0.5 < est.std(ddof=1) / np.mean(err) < 1.6


def gaussian_speckle(n_t, n, sigma_px, tau_frames, rng):
    """Intensity of circular Gaussian speckle: E = h * W (Gaussian kernel h of width sigma_px, periodic),
    W white in space and AR(1) in time (g1 = exp(-lag / tau)); grains of size ~sigma move together.

    Returns the series and the exact normalised field correlation gamma(d) (d = 0 at [0, 0])."""
    k = np.fft.fftfreq(n) * n
    h = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * sigma_px**2))
    H = np.fft.fft2(h / np.sqrt(np.sum(h**2)))
    phi = np.exp(-1.0 / tau_frames)
    w = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / np.sqrt(2)
    out = np.empty((n_t, n, n))
    for t in range(n_t):
        out[t] = np.abs(np.fft.ifft2(H * np.fft.fft2(w))) ** 2
        w = phi * w + np.sqrt(1 - phi**2) * (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / np.sqrt(2)
    return out, np.fft.ifft2(np.abs(H) ** 2).real


def test_g4_of_gaussian_speckle_matches_the_exact_four_point_function():
    n, sigma, tau = 64, 2.0, 4.0
    series, gamma = gaussian_speckle(1000, n, sigma, tau, np.random.default_rng(0))
    da = xr.DataArray(series * 50.0, dims=S.SERIES_DIMS,
                      coords={S.TIME: np.arange(1000) * 0.1, S.Y: np.arange(n) * 0.3, S.X: np.arange(n) * 0.3})
    res = intensity_g4(da, [0, 60])
    assert list(res.lag.values) == pytest.approx([0.0, 6.0]) and res.xi4.attrs["units"] == "nm"
    # exact ring averages of the truth on the same rings: gamma centred, displacements -(n/2-1)..n/2-1
    g = np.fft.fftshift(gamma)[1:, 1:]
    ones = np.ones_like(g)

    def truth(values):
        return ring_average(values, ones, (0.3, 0.3), res.r.values)[1]

    rm = res.r_mean.values

    cases = {"g2_spatial": truth(g**2), 0: truth((g**2 + g**4) / 2), 60: truth(g**4)}
    np.testing.assert_allclose(res.g2_spatial.values, cases["g2_spatial"], atol=0.02)
    np.testing.assert_allclose(res.g4.isel(lag=0).values, cases[0], atol=0.02)
    np.testing.assert_allclose(res.g4.isel(lag=1).values, cases[60], atol=0.02)
    # lengths: g2 1/e at sqrt(2) sigma, g4(lag >> tau) at sigma (continuum Gaussian grains), in nm
    assert float(res.xi_g2) == pytest.approx(crossing_length(rm, cases["g2_spatial"]), rel=0.03)
    assert float(res.xi_g2) == pytest.approx(np.sqrt(2) * sigma * 0.3, rel=0.05)
    assert float(res.xi4.isel(lag=1)) == pytest.approx(crossing_length(rm, cases[60]), rel=0.03)
    assert float(res.xi4.isel(lag=0)) == pytest.approx(crossing_length(rm, cases[0]), rel=0.03)
    assert float(res.xi4.isel(lag=1)) == pytest.approx(sigma * 0.3, rel=0.1)  # 1-px rings blur the continuum value
    assert float(res.xi4.isel(lag=0)) > float(res.xi4.isel(lag=1))
    # q_mean is g2(lag) - 1 of unit-contrast speckle: 1 at lag 0, exp(-2 lag / tau) later
    assert res.q_mean.values == pytest.approx([1.0, np.exp(-30.0)], abs=0.05)


def test_errors():
    with pytest.raises(InputError, match="pixel_size"):
        map_correlation_length(np.ones((20, 20)))
    with pytest.raises(InputError, match="constant"):
        map_correlation_length(np.ones((20, 20)), pixel_size=1.0)
    with pytest.raises(InputError, match="at least 16"):
        map_correlation_length(np.random.default_rng(0).normal(size=(20, 20)), np.eye(20, dtype=bool) & (
            np.arange(20) < 10), pixel_size=1)
    with pytest.raises(InputError, match="longer than"):
        intensity_g4(np.ones((10, 8, 8)), [9])
    with pytest.raises(InputError, match="non-negative integers"):
        intensity_g4(np.ones((10, 8, 8)), [1.5])
