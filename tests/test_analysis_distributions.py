"""Per-region statistics with bootstrap intervals and region comparisons, against known distributions."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.stats import norm

from ecm_dask import schema as S
from ecm_dask.analysis.distributions import bootstrap_ci, compare_regions, permutation_pvalue, region_statistics
from ecm_dask.errors import InputError
from ecm_dask.kernels.kww import FIT_NO_DECAY, FIT_OK
from ecm_dask.synth import SynthParams, truth_dataset

IQR_SIGMA = norm.ppf(0.75) - norm.ppf(0.25)  # IQR of a unit normal, 1.349


def lognormal_maps(rng, shape, median_s, sigma_dec, beta_mu, beta_sd, bad_fraction=0.0):
    tau = median_s * 10.0 ** rng.normal(0.0, sigma_dec, shape)
    beta = rng.normal(beta_mu, beta_sd, shape)
    status = np.where(rng.random(shape) < bad_fraction, FIT_NO_DECAY, FIT_OK).astype(np.uint8)
    tau_bad = np.where(status == FIT_OK, tau, 1e6)  # wild values in rejected pixels must be ignored
    return xr.Dataset({"tau": ((S.Y, S.X), tau_bad), "beta": ((S.Y, S.X), beta), "status": ((S.Y, S.X), status)})


def test_median_and_widths_recovered_and_bad_pixels_ignored():
    rng = np.random.default_rng(5)
    maps = lognormal_maps(rng, (60, 80), 20.0, 0.3, 0.6, 0.1, bad_fraction=0.2)
    st = region_statistics(maps, n_boot=2000, ci=0.997, seed=1)  # ~3-sigma intervals: a miss is a bug
    assert list(st.region.values) == ["all"]
    assert int(st.n.sel(region="all")) == int((maps.status == FIT_OK).sum())
    lt = st.log10_tau.sel(region="all")
    truth = {"median": np.log10(20.0), "iqr": 0.3 * IQR_SIGMA, "std": 0.3}
    for stat, value in truth.items():
        lo, hi = float(lt.sel(statistic=stat, estimate="ci_low")), float(lt.sel(statistic=stat, estimate="ci_high"))
        assert lo < value < hi, (stat, lo, value, hi)
        assert hi - lo < 0.15 * max(value, 0.3)  # ~3800 pixels: tight
    tm = st.tau_median.sel(region="all")
    assert float(tm.sel(estimate="ci_low")) < 20.0 < float(tm.sel(estimate="ci_high"))
    assert float(tm.sel(estimate="value")) == pytest.approx(10 ** float(lt.sel(statistic="median", estimate="value")))
    b = st.beta.sel(region="all")
    assert float(b.sel(statistic="median", estimate="value")) == pytest.approx(0.6, abs=0.01)
    assert float(b.sel(statistic="std", estimate="value")) == pytest.approx(0.1, rel=0.05)
    # histograms count every usable pixel once (all inside the default bins here)
    assert int(st.log10_tau_hist.sum()) == int(st.n.sum()) == int(st.beta_hist.sum())


def test_bootstrap_interval_coverage_about_95_percent():
    n, mu, sig = 300, 1.0, 0.3
    true = np.array([mu, sig * IQR_SIGMA, sig])  # median, IQR, std
    hits = np.zeros(3)
    repeats = 100
    for r in range(repeats):
        x = np.random.default_rng(1000 + r).normal(mu, sig, n)
        _, lo, hi = bootstrap_ci(x, n_boot=300, ci=0.95, seed=r)
        hits += (lo <= true) & (true <= hi)
    coverage = hits / repeats
    assert np.all((coverage >= 0.80) & (coverage <= 0.99)), coverage


def test_permutation_pvalue_uniform_under_null_and_small_under_alternative():
    rng = np.random.default_rng(0)

    def diff(a, b, axis=-1):
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    ps = [permutation_pvalue(rng.normal(size=40), rng.normal(size=50), diff, n_perm=200, seed=i) for i in range(60)]
    assert 0.3 < np.mean(ps) < 0.7 and np.mean(np.array(ps) < 0.05) < 0.15
    assert permutation_pvalue(rng.normal(1, 1, 40), rng.normal(size=50), diff, n_perm=500) < 0.01


@pytest.fixture(scope="module")
def wire():
    p = SynthParams(ny=96, nx=128, n_frames=10, seed=0)
    return p, truth_dataset(p)


def test_region_statistics_on_the_synthetic_wire(wire):
    p, truth = wire
    st = region_statistics(truth, truth, n_boot=200)
    assert list(st.region.values) == ["bulk", "surface", "crystal"]
    for code, name in ((S.REGION_BULK, "bulk"), (S.REGION_SURFACE, "surface")):
        sel = truth.region.values == code
        lt = np.log10(truth.tau.values[sel])
        assert int(st.n.sel(region=name)) == sel.sum()
        assert float(st.log10_tau.sel(region=name, statistic="median", estimate="value")) == pytest.approx(
            np.median(lt), abs=1e-12)
        assert float(st.beta.sel(region=name, statistic="std", estimate="value")) == pytest.approx(
            np.std(truth.beta.values[sel], ddof=1), rel=1e-12)
    assert int(st.n.sel(region="crystal")) == 0 and np.isnan(st.log10_tau.sel(region="crystal")).all()


def test_compare_surface_with_bulk_on_the_synthetic_wire(wire):
    p, truth = wire
    c = compare_regions(truth, truth, "surface", "bulk", n_boot=300, n_perm=300)
    tau, region = truth.tau.values, truth.region.values
    true_ratio = np.median(tau[region == S.REGION_SURFACE]) / np.median(tau[region == S.REGION_BULK])
    ratio = c.value.sel(quantity="tau_ratio")
    assert float(ratio) == pytest.approx(true_ratio, rel=1e-3)
    assert float(c.ci_low.sel(quantity="tau_ratio")) < true_ratio < float(c.ci_high.sel(quantity="tau_ratio"))
    # built: surface tau = field / 8 and surface beta confined to (0.8, 0.9), bulk beta in (0.4, 0.9)
    assert 1 / 12 < true_ratio < 1 / 5
    assert bool(c.significant.sel(quantity="tau_ratio")) and float(c.p_value.sel(quantity="tau_ratio")) < 0.01
    bw = c.sel(quantity="beta_width_diff")
    assert float(bw.value) < 0 and float(bw.ci_high) < 0 and bool(bw.significant)
    beta = truth.beta.values
    q = lambda x: np.subtract(*np.percentile(x, [75, 25]))  # noqa: E731
    assert float(bw.value) == pytest.approx(q(beta[region == S.REGION_SURFACE]) - q(beta[region == S.REGION_BULK]))
    lw = c.sel(quantity="log10_tau_width_diff")
    lt = np.log10(tau)
    assert float(lw.value) == pytest.approx(q(lt[region == S.REGION_SURFACE]) - q(lt[region == S.REGION_BULK]))
    assert float(lw.value) < 0 and bool(lw.significant)  # the thin surface layer samples less of the tau field


def test_compare_same_distribution_is_not_significant():
    rng = np.random.default_rng(3)
    maps = lognormal_maps(rng, (40, 60), 10.0, 0.3, 0.6, 0.1)
    regions = xr.DataArray(np.where(np.arange(60)[None, :] < 30, S.REGION_SURFACE, S.REGION_BULK)
                           * np.ones((40, 1), int), dims=(S.Y, S.X))
    c = compare_regions(maps, regions, n_boot=300, n_perm=300, seed=2)
    assert not c.significant.any()
    assert float(c.ci_low.sel(quantity="tau_ratio")) < 1 < float(c.ci_high.sel(quantity="tau_ratio"))
    with pytest.raises(InputError, match="crystal"):
        compare_regions(maps, regions, "crystal", "bulk")
    with pytest.raises(InputError, match="shape"):
        region_statistics(maps, regions.isel(x=slice(0, 10)))
