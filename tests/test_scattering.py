"""Scattering profiles: radial averages against a brute-force loop, OZ and Guinier fits of rendered profiles."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask.analysis.scattering import compare_profiles, fit_guinier, fit_ornstein_zernike, radial_profile
from ecm_dask.errors import InputError
from ecm_dask.kernels.rings import pixel_q, ring_index


def _detector(profile, shape, centre, cal, stop_q, rng, frames=1):
    """Poisson counts of ``profile(q)`` on a camera (frames, ky, kx) with a beam stop, as a labelled series."""
    q = pixel_q(shape, centre, cal)
    lam = np.where(q < stop_q, 0.0, profile(q))
    counts = rng.poisson(np.broadcast_to(lam, (frames,) + shape)).astype(np.float64)
    ky = (np.arange(shape[0]) - centre[0]) * cal
    kx = (np.arange(shape[1]) - centre[1]) * cal
    da = xr.DataArray(counts, dims=("time", "ky", "kx"), coords={"ky": ky, "kx": kx})
    return da, q >= stop_q


def test_radial_profile_equals_loop():
    rng = np.random.default_rng(1)
    da, mask = _detector(lambda q: 50 * np.exp(-q), (40, 44), (19.6, 22.2), 0.1, 0.35, rng, frames=7)
    da[:, 3, 5] = np.nan  # a dead pixel
    for error in ("scatter", "poisson"):
        prof = radial_profile(da, mask=mask, q_bins=12, error=error)
        rings = ring_index((40, 44), (19.6, 22.2), 0.1, 12, mask)
        pat = da.values.mean(axis=0)
        for r in range(rings.n_rings):
            v = pat[rings.labels == r]
            v = v[np.isfinite(v)]
            assert float(prof.intensity[r]) == pytest.approx(v.mean(), rel=1e-12)
            assert int(prof.n_pixels[r]) == v.size
            want = v.std(ddof=1) / np.sqrt(v.size) if error == "scatter" else np.sqrt(v.sum() / 7) / v.size
            assert float(prof.intensity_err[r]) == pytest.approx(want, rel=1e-9)
            assert float(prof.q_mean[r]) == pytest.approx(rings.q_mean[r], rel=1e-12)
    # a single pattern as a NumPy array with explicit geometry gives the same means
    one = radial_profile(pat, centre=(19.6, 22.2), calibration=0.1, mask=mask, q_bins=12)
    np.testing.assert_allclose(one.intensity.values, prof.intensity.values, rtol=1e-12)
    with pytest.raises(InputError, match="centre"):
        radial_profile(pat)
    # the mean pattern of the 7 frames with n_frames=7: the series' Poisson errors (as diffraction mode uses it)
    mean = da.mean("time")
    a = radial_profile(mean, mask=mask, q_bins=12, error="poisson", n_frames=7)
    b = radial_profile(da, mask=mask, q_bins=12, error="poisson")
    np.testing.assert_allclose(a.intensity_err.values, b.intensity_err.values, rtol=1e-12)
    with pytest.raises(InputError, match="n_frames"):
        radial_profile(da, mask=mask, q_bins=12, error="poisson", n_frames=7)


def test_ornstein_zernike_recovered():
    i0, xi, bg = 300.0, 1.6, 4.0
    pulls = []
    for seed in range(4):
        da, mask = _detector(lambda q: i0 / (1 + (q * xi) ** 2) + bg, (96, 96), (47.3, 48.1), 0.05, 0.2,
                             np.random.default_rng(seed), frames=2)
        prof = radial_profile(da, mask=mask, error="poisson")
        fit = fit_ornstein_zernike(prof)
        pulls.append([(float(fit.xi) - xi) / float(fit.xi_err), (float(fit.I0) - i0) / float(fit.I0_err),
                      (float(fit.background) - bg) / float(fit.background_err)])
        assert abs(float(fit.xi) / xi - 1) < 0.05
        assert 0.6 < float(fit.chi2) < 1.5
    pulls = np.array(pulls)
    assert np.abs(pulls).max() < 3.5 and np.mean(np.abs(pulls) < 2.5) >= 0.8, pulls


def test_guinier_sphere_recovered():
    radius = 20.0
    rg_true = np.sqrt(3 / 5) * radius

    def sphere(q):
        x = np.maximum(q * radius, 1e-9)
        return 2000.0 * (3 * (np.sin(x) - x * np.cos(x)) / x ** 3) ** 2 + 1.0

    def guinier(q):  # exactly Guinier: the fit statistics alone
        return 500.0 * np.exp(-(q * rg_true) ** 2 / 3)

    pulls = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        da, mask = _detector(guinier, (96, 96), (47.5, 47.8), 0.0025, 0.008, rng)
        fit = fit_guinier(radial_profile(da, mask=mask, error="poisson"))
        assert float(fit.qRg_max) <= 1.3 + 1e-9 and int(fit.n_points) >= 10
        pulls.append((float(fit.Rg) - rg_true) / float(fit.Rg_err))
        # a sphere: the Guinier law is only the q^2 term (ln P = -(qR)^2/5 - (qR)^4/350 ...): Rg within 3 %
        da, mask = _detector(sphere, (96, 96), (47.5, 47.8), 0.0025, 0.008, rng)
        fit = fit_guinier(radial_profile(da, mask=mask, error="poisson"))
        assert abs(float(fit.Rg) / rg_true - 1) < 0.03
    assert np.abs(pulls).max() < 3, pulls
    flat = radial_profile(np.ones((20, 20)), centre=(10, 10), calibration=0.1, error="poisson")
    with pytest.raises(InputError, match="Guinier"):
        fit_guinier(flat.assign(intensity=flat.intensity * (1 + flat.q)))


def test_compare_profiles_z_scores():
    shape, centre, cal = (128, 128), (63.2, 64.7), 0.04

    def base(q):
        return 40 * np.exp(-((q - 1.8) ** 2) / 0.3) + 8

    bins = np.arange(0.3, 2.5, 0.04)
    z_all = []
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        a, mask = _detector(base, shape, centre, cal, 0.3, rng, frames=3)
        b, _ = _detector(base, shape, centre, cal, 0.3, rng, frames=3)
        for error in ("poisson", "scatter"):
            z = compare_profiles(radial_profile(a, mask=mask, q_bins=bins, error=error),
                                 radial_profile(b, mask=mask, q_bins=bins, error=error)).z.values
            z_all.append(z)
            assert abs(z.mean()) < 0.35 and 0.75 < z.std() < 1.25, (error, z.mean(), z.std())
    z_all = np.concatenate(z_all)
    assert abs(z_all.mean()) < 0.15 and 0.85 < z_all.std() < 1.15
    # a built-in excess at low q (small-angle scattering of the "cold" sample) is detected there only
    rng = np.random.default_rng(7)
    hot, mask = _detector(base, shape, centre, cal, 0.3, rng, frames=3)
    cold, _ = _detector(lambda q: base(q) + 15 * np.exp(-q / 0.25), shape, centre, cal, 0.3, rng, frames=3)
    cmp = compare_profiles(radial_profile(cold, mask=mask, q_bins=bins), radial_profile(hot, mask=mask, q_bins=bins))
    assert (cmp.z.sel(q=slice(0, 0.5)) > 4).all()
    assert float(np.abs(cmp.z.sel(q=slice(1.5, None))).max()) < 4
    with pytest.raises(InputError, match="different q rings"):
        compare_profiles(radial_profile(cold, mask=mask, q_bins=bins), radial_profile(hot, mask=mask, q_bins=10))
