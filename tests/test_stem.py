"""STEM diffraction mode: q rings, ring-averaged g2 against direct sums, tau(q) against the synthetic truth."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask.analysis.stem import camera_geometry, diffraction_g2, fit_rings, stem_scan_g2
from ecm_dask.errors import InputError
from ecm_dask.kernels.lags import log_lag_bins
from ecm_dask.kernels.rings import pixel_q, ring_average, ring_index, sector_index
from ecm_dask.synth.diffraction import DiffractionParams, ring_truth, synthetic_diffraction


# ------------------------------------------------------------------------------------------ kernel
def _loop_average(values, labels, n):
    """Brute force: one ring after the other, NaN-aware mean, sample std / sqrt(n)."""
    mean = np.full((n,) + values.shape[2:], np.nan)
    sem = np.full_like(mean, np.nan)
    count = np.zeros_like(mean)
    for r in range(n):
        v = values[labels == r]  # (pixels, ...)
        fin = np.isfinite(v)
        count[r] = fin.sum(axis=0)
        for idx in np.ndindex(v.shape[1:]):
            col = v[(slice(None),) + idx]
            col = col[np.isfinite(col)]
            if col.size:
                mean[(r,) + idx] = col.mean()
            if col.size > 1:
                sem[(r,) + idx] = col.std(ddof=1) / np.sqrt(col.size)
    return mean, sem, count


def test_ring_index_geometry():
    centre, cal = (10.3, 12.7), 0.25
    q = pixel_q((21, 26), centre, cal)
    i, j = 4, 20
    assert q[i, j] == pytest.approx(cal * np.hypot(i - 10.3, j - 12.7), rel=1e-12)
    mask = q > 0.8  # beam stop
    mask[0, :] = False  # a bad row
    rings = ring_index((21, 26), centre, cal, q_bins=np.array([1.0, 1.5, 2.5, 4.0]), mask=mask)
    for r in range(3):
        inside = mask & (q >= rings.edges[r]) & (q < rings.edges[r + 1])
        np.testing.assert_array_equal(rings.labels == r, inside)
        assert rings.n_pixels[r] == inside.sum()
        assert rings.q_mean[r] == pytest.approx(q[inside].mean(), rel=1e-12)
    assert (rings.labels[~mask] == -1).all() and (rings.labels[q >= 4.0] == -1).all()
    # default: rings one pixel wide over the usable pixels
    auto = ring_index((21, 26), centre, cal, mask=mask)
    assert auto.edges[0] == pytest.approx(q[mask].min()) and auto.edges[-1] == pytest.approx(q[mask].max())
    assert np.diff(auto.edges).max() <= cal + 1e-12 and auto.n_pixels.sum() == mask.sum()
    # sectors: angle modulo pi, so k and -k share a sector
    sec = sector_index((21, 21), (10, 10), 6)
    assert sec[10 + 3, 10 + 5] == sec[10 - 3, 10 - 5] and len(np.unique(sec)) == 6


def test_ring_average_equals_loop():
    rng = np.random.default_rng(3)
    values = rng.normal(1.0, 0.2, size=(17, 19, 5))
    values[rng.random(values.shape) < 0.05] = np.nan
    rings = ring_index((17, 19), (8.2, 9.6), 0.3, q_bins=6, mask=rng.random((17, 19)) > 0.1)
    mean, sem, count = ring_average(values, rings.labels, rings.n_rings, axes=(0, 1))
    ref = _loop_average(values, rings.labels, rings.n_rings)
    for got, want in zip((mean, sem, count), ref):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    # detector axes last: (..., ky, kx) -> (..., ring)
    m2, s2, c2 = ring_average(np.moveaxis(values, -1, 0), rings.labels, rings.n_rings)
    np.testing.assert_allclose(m2, mean.T, rtol=1e-12)
    with pytest.raises(InputError, match="labels have shape"):
        ring_average(values, rings.labels[:-1], axes=(0, 1))


# ------------------------------------------------------------------------------------------ g2
def _direct_g2(trace, edges):
    """Symmetric g2 of one pixel by direct float64 sums at every linear lag, pair-weighted over lag bins."""
    x = trace.astype(np.float64)
    t = x.size
    lags = np.arange(1, edges[-1])
    g = np.array([np.mean(x[:-k] * x[k:]) / (x[:-k].mean() * x[k:].mean()) for k in lags])
    pairs = t - lags
    return np.array([np.sum((g * pairs)[a - 1:b - 1]) / np.sum(pairs[a - 1:b - 1]) for a, b in zip(edges[:-1], edges[1:])])


@pytest.fixture(scope="module")
def small():
    p = DiffractionParams(ny=20, nx=22, n_frames=300, calibration=0.45, centre=(9.6, 10.2), tau_peak_s=2.0, seed=5)
    return p, synthetic_diffraction(p)


def test_ring_g2_equals_direct_average_of_pixel_g2(small):
    p, ds = small
    q_bins = np.array([1.0, 2.0, 3.0, 4.0, 5.5])
    res = diffraction_g2(ds, mask=~ds.beam_stop, q_bins=q_bins, method="fft", points_per_octave=4, max_lag=6.0,
                         n_sectors=4).compute()
    edges = log_lag_bins(p.n_frames, 4, 60).edges
    counts = ds.intensity.values
    direct = np.full((p.ny, p.nx, edges.size - 1), np.nan)
    for i, j in zip(*np.nonzero(~ds.beam_stop.values)):
        direct[i, j] = _direct_g2(counts[:, i, j], edges)
    rings = ring_index((p.ny, p.nx), p.centre, p.calibration, q_bins, ~ds.beam_stop.values)
    mean, sem, count = _loop_average(direct, rings.labels, rings.n_rings)
    np.testing.assert_allclose(res.g2.values, mean, rtol=2e-6)
    np.testing.assert_allclose(res.g2_err.values, sem, rtol=2e-3)  # g2 per pixel is float32
    np.testing.assert_array_equal(res.n_pixels.values, count[:, 0])
    np.testing.assert_array_equal(res.ring.values, rings.labels)
    # sector means are the same average restricted to each sector
    sec = sector_index((p.ny, p.nx), p.centre, 4)
    r, s = 2, 1
    sel = (rings.labels == r) & (sec == s)
    np.testing.assert_allclose(res.g2_sector.isel(q=r, sector=s).values, direct[sel].mean(axis=0), rtol=2e-6)
    assert int(res.sector_pixels.isel(q=r).sum()) == int(res.n_pixels.isel(q=r))
    # labelled usage
    assert float(res.g2.sel(q=2.5, method="nearest").isel(lag=0)) == pytest.approx(mean[1, 0], rel=2e-6)


def test_beam_stop_pixels_do_not_change_the_answer(small):
    p, ds = small
    stop = ds.beam_stop.values
    garbage = ds.copy(deep=True)
    rng = np.random.default_rng(0)
    vals = garbage.intensity.values
    vals[:, stop] = rng.integers(0, 65536, size=(p.n_frames, int(stop.sum())), dtype=np.uint16)
    vals[5, stop] = 65535
    assert (vals[:, stop] > 0).any()
    kw = dict(mask=~ds.beam_stop, q_bins=8, n_sectors=4)
    a = diffraction_g2(ds, **kw).compute()
    b = diffraction_g2(garbage, **kw).compute()
    for name in ("g2", "g2_err", "n_pixels", "g2_sector"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    # without the mask the beam stop pixels would count (they are not dark any more)
    c = diffraction_g2(garbage, q_bins=a.q_lo.values.tolist() + [float(a.q_hi[-1])], n_sectors=4).compute()
    assert int(c.n_pixels.sum()) >= int(a.n_pixels.sum())


def test_tau_of_q_recovered():
    pulls, rels, beta_pulls = [], [], []
    for seed in (0, 1):
        p = DiffractionParams(ny=48, nx=48, centre=(23.4, 24.3), calibration=0.2, n_frames=2000, seed=seed)
        ds = synthetic_diffraction(p)
        res = diffraction_g2(ds, mask=~ds.beam_stop, q_bins=np.arange(1.0, 6.01, 0.5)).compute()
        fit = fit_rings(res)
        assert (fit.status.values == 0).all()
        tau_true, beta_true = ring_truth(p, res.ring.values, res.sizes["q"], res.lag.values)
        pulls.append((fit.tau.values - tau_true) / fit.tau_err.values)
        beta_pulls.append((fit.beta.values - beta_true) / fit.beta_err.values)
        rels.append(np.where(fit.n_pixels.values >= 100, fit.tau.values / tau_true - 1, 0.0))
        # the slowest ring is at the halo, where the truth peaks
        assert abs(float(fit.q[int(np.nanargmax(fit.tau.values))]) - p.q0) <= 0.75
    pulls, rels, beta_pulls = np.concatenate(pulls), np.concatenate(rels), np.concatenate(beta_pulls)
    assert np.mean(np.abs(pulls) < 3) >= 0.85, pulls
    assert abs(pulls.mean()) < 1.5  # the finite-series estimator bias: tau ~3 % low at T ~ 50-130 tau
    assert np.abs(rels).max() < 0.15, rels
    assert np.mean(np.abs(beta_pulls) < 3) >= 0.85 and abs(beta_pulls.mean()) < 1.0, beta_pulls


def test_fit_errors_jackknife_and_sigma(small):
    p, ds = small
    res = diffraction_g2(ds, mask=~ds.beam_stop, q_bins=4, n_sectors=6).compute()
    jk, sg = fit_rings(res), fit_rings(res, errors="sigma")
    np.testing.assert_array_equal(jk.tau.values, sg.tau.values)  # same fit, different errors
    assert jk.attrs["errors"].startswith("jackknife") and sg.attrs["errors"].startswith("fit covariance")
    assert np.isfinite(jk.tau_err.values).all() and (jk.tau_err.values > 0).all()
    with pytest.raises(InputError, match="n_sectors"):
        fit_rings(diffraction_g2(ds, mask=~ds.beam_stop, q_bins=4, n_sectors=0).compute(), errors="jackknife")


def test_scan_matches_each_probe_position():
    positions = []
    for k in range(6):
        p = DiffractionParams(ny=16, nx=18, n_frames=200, calibration=0.55, centre=(7.5, 8.8), seed=10 + k,
                              tau_peak_s=1.0 + 0.3 * k)
        positions.append(synthetic_diffraction(p).intensity)
    stack = xr.concat(positions, dim="probe").data.reshape(2, 3, 200, 16, 18)
    scan = xr.DataArray(np.moveaxis(stack, 2, 0), dims=("time", "y", "x", "ky", "kx"),
                        coords={"y": [0.0, 0.5], "x": [0.0, 0.5, 1.0]},
                        attrs={"frame_time_s": 0.1, "k_calibration_nm-1_per_px": 0.55, "beam_centre_px": [7.5, 8.8]})
    mask = pixel_q((16, 18), (7.5, 8.8), 0.55) >= p.beam_stop_q
    out = stem_scan_g2(scan, q_bins=4, mask=mask, n_sectors=3, block_bytes=2 * 200 * 16 * 18 * 2).compute()
    assert out.g2.dims == ("y", "x", "q", "lag") and out.attrs["probe_block"] == [1, 2]
    for k in range(6):
        one = diffraction_g2(scan.isel(y=k // 3, x=k % 3), q_bins=4, mask=mask, n_sectors=3).compute()
        for name in ("g2", "g2_err", "n_pixels", "g2_sector"):
            np.testing.assert_allclose(out[name].isel(y=k // 3, x=k % 3).values, one[name].values, rtol=1e-9)
    fit = fit_rings(out)
    assert fit.tau.dims == ("y", "x", "q") and np.isfinite(fit.tau.values).mean() > 0.9


def test_geometry_and_input_errors(small):
    p, ds = small
    (cy, cx), cal = camera_geometry(ds.drop_attrs())  # from the ky, kx coordinates alone
    assert (cy, cx, cal) == pytest.approx((*p.centre, p.calibration))
    bare = ds.intensity.drop_vars(["ky", "kx"]).drop_attrs()
    with pytest.raises(InputError, match="calibration"):
        diffraction_g2(bare)
    with pytest.raises(InputError, match="mask must have the camera shape"):
        diffraction_g2(ds, mask=np.ones((3, 3), bool))
    with pytest.raises(InputError, match="dims"):
        diffraction_g2(ds.intensity.rename(kx="x"))
