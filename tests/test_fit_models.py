"""Declared fit models, the shared LM plumbing, the labelled fit over any leading dims, and the two-term fit
started from a one-term fit (kernels.models, kernels.lm, ops.fit.fit_labelled, kww2 start1=)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.kernels import kww as KW
from ecm_dask.kernels import kww2 as KW2
from ecm_dask.kernels import lm as LM
from ecm_dask.kernels.lags import multitau_lags
from ecm_dask.kernels.models import KWW, KWW2, MODELS, get_model
from ecm_dask.ops.fit import (
    IMPRECISE_TAU_REL_ERR,
    QUALITY_IMPRECISE,
    QUALITY_SHORT_SERIES,
    QUALITY_UNDERSAMPLED,
    fit_kww,
    fit_labelled,
    quality_flags,
)

GRID = multitau_lags(2000, 8, 200)
LAG = GRID.lag * 0.5  # s (0.5 s frames)
PAIRS = ((2000 >> GRID.level) - GRID.k).astype(np.float64)


def _one_term(n, seed, noise=0.004):
    rng = np.random.default_rng(seed)
    truth = np.column_stack([np.ones(n), rng.uniform(0.05, 0.2, n), np.exp(rng.uniform(np.log(2), np.log(40), n)),
                             rng.uniform(0.5, 1.2, n)])
    sigma = noise * np.sqrt(PAIRS[0] / PAIRS)
    return truth, KW.kww_model(LAG, truth) + rng.normal(size=(n, LAG.size)) * sigma, sigma


def _two_term(n, seed, noise=0.002):
    rng = np.random.default_rng(seed)
    t1 = np.exp(rng.uniform(0.0, np.log(5.0), n))
    f = rng.uniform(0.3, 0.7, n)
    truth = np.column_stack([np.ones(n), 0.3 * f, t1, rng.uniform(0.7, 1.3, n), 0.3 * (1 - f),
                             t1 * rng.uniform(8, 20, n), rng.uniform(0.7, 1.3, n)])
    sigma = noise * np.sqrt(PAIRS[0] / PAIRS)
    return truth, KW2.kww2_model(LAG, truth) + rng.normal(size=(n, LAG.size)) * sigma, sigma


def test_declared_models_agree_with_their_compiled_functions():
    assert get_model("kww") is KWW and get_model(KWW2) is KWW2 and set(MODELS) == {"kww", "kww2"}
    assert KWW.taus == (2,) and KWW.tau_names == ("tau",) and KWW2.taus == (2, 5)
    assert KW.PARAMS == KWW.params and KW2.PARAMS2 == KWW2.params
    with pytest.raises(ValueError, match="unknown fit model"):
        get_model("kww3")
    # the compiled chi2 (internal parameters: log tau) equals the NumPy formula of the declaration
    rng = np.random.default_rng(0)
    for spec, p in ((KWW, np.array([1.01, 0.2, 7.0, 0.8])), (KWW2, np.array([0.99, 0.1, 2.0, 1.2, 0.15, 30.0, 0.7]))):
        y = spec.g2(LAG, p)[0] + rng.normal(size=LAG.size) * 0.01
        w = rng.uniform(0.5, 2.0, LAG.size)
        th = p.copy()
        th[list(spec.taus)] = np.log(p[list(spec.taus)])
        h, g = np.empty((spec.n_params, spec.n_params)), np.empty(spec.n_params)
        work = np.empty((spec.n_params + 2, LAG.size))
        chi2 = spec.evaluate(LAG.size, y, np.log(LAG), w, th, h, g, work, np.empty(LAG.size, dtype=np.int64))
        expected = float(np.sum(w * (y - spec.g2(LAG, p)[0]) ** 2))
        assert chi2 == pytest.approx(expected, rel=1e-12)
        # J^T W r against central differences of the NumPy model (in the internal parameters)
        jac = np.empty((spec.n_params, LAG.size))
        for j in range(spec.n_params):
            d = 1e-6 * max(1.0, abs(th[j]))
            hi_, lo_ = th.copy(), th.copy()
            hi_[j] += d
            lo_[j] -= d
            ext = [np.where(np.isin(np.arange(spec.n_params), spec.taus), np.exp(v), v) for v in (hi_, lo_)]
            jac[j] = (spec.g2(LAG, ext[0])[0] - spec.g2(LAG, ext[1])[0]) / (2 * d)
        np.testing.assert_allclose(g, jac @ (w * (y - spec.g2(LAG, p)[0])), rtol=1e-5, atol=1e-9)


def test_lm_plumbing_parses_options_and_names_bad_ones():
    t = LAG
    lo, hi = LM.parse_bounds(t, {"tau": (1.0, None)}, KWW.default_bounds(t), KWW.params, KWW.taus)
    assert lo[2] == 1.0 and hi[2] == np.inf and (lo[3], hi[3]) == (0.1, 2.5) and lo[1] == 0.0
    with pytest.raises(ValueError, match="unknown parameter 'tau1'"):
        LM.parse_bounds(t, {"tau1": (1, 2)}, KWW.default_bounds(t), KWW.params, KWW.taus)
    with pytest.raises(ValueError, match="tau bounds must be positive"):
        LM.parse_bounds(t, {"tau2": (-1, 2)}, KWW2.default_bounds(t), KWW2.params, KWW2.taus)
    fix = LM.parse_fixed({"beta1": [1.0, 0.5]}, "fixed", 2, KWW2.params, KWW2.tau_names)
    np.testing.assert_array_equal(fix["beta1"], [1.0, 0.5])
    np.testing.assert_array_equal(fix["baseline"], [1.0, 1.0])
    with pytest.raises(ValueError, match="fixed tau must be > 0"):
        LM.parse_fixed({"tau2": -3.0}, "free", 1, KWW2.params, KWW2.tau_names)
    with pytest.raises(ValueError, match=r"fixed\['beta'\] must be a scalar or have one value per curve"):
        LM.parse_fixed({"beta": [1, 2, 3]}, "free", 2, KWW.params, KWW.tau_names)
    w, absolute = LM.weights(np.full(LAG.size, 0.1), None, np.zeros((3, LAG.size)))
    assert absolute and np.allclose(w, 100.0)
    w, absolute = LM.weights(None, PAIRS, np.zeros((3, LAG.size)))
    assert not absolute and np.array_equal(w[0], PAIRS)


def test_two_term_fit_from_a_given_one_term_fit_equals_the_fit_that_makes_its_own():
    truth, y, sigma = _two_term(40, seed=3, noise=0.001)
    ref = KW2.fit_kww2(y, LAG, sigma=sigma)  # fits the one-term start itself (default bounds)
    one = KW.fit_kww(y, LAG, sigma=sigma, max_iter=200)
    new = KW2.fit_kww2(y, LAG, sigma=sigma, start1=one)
    assert new.single is one
    for key in ("params", "errors", "chi2_red", "status", "f_stat", "p_value", "supported"):
        np.testing.assert_array_equal(getattr(new, key), getattr(ref, key), err_msg=key)
    # and the answers are right: most curves support two terms (36 of 40; the others have a fast component
    # near the first lag) and those recover the true taus within their errors
    ok = new.status == KW.FIT_OK
    assert ok.mean() >= 0.8
    pull = (new.params[ok] - truth[ok]) / new.errors[ok]
    assert np.all(np.abs(pull[:, [2, 5]]) < 5) and np.median(np.abs(pull[:, [2, 5]])) < 1.5
    with pytest.raises(ValueError, match="start1 must hold one one-term fit per curve"):
        KW2.fit_kww2(y[:3], LAG, sigma=sigma, start1=one)
    with pytest.raises(ValueError, match="start1 must be the KWWFit"):
        KW2.fit_kww2(y, LAG, sigma=sigma, start1=one.params)


def test_user_bounds_on_tau_reach_the_one_term_start():
    # one-term curves with tau = 60 s: with tau1, tau2 bounded to <= 20 s the one-term start is bounded too
    t_true = np.array([[1.0, 0.2, 60.0, 0.9]] * 3)
    y = KW.kww_model(LAG, t_true)
    assert KW2.single_bounds(None, LAG) == {}
    sb = KW2.single_bounds({"tau1": (0.5, 5.0), "tau2": (2.0, 20.0), "contrast2": (0.0, 0.5)}, LAG)
    assert sb == {"tau": (0.5, 20.0), "contrast": (0.0, 10.5)}
    free = KW2.fit_kww2(y, LAG, pairs=PAIRS)
    np.testing.assert_allclose(free.single.params[:, 2], 60.0, rtol=1e-6)  # unbounded: the true tau
    bounded = KW2.fit_kww2(y, LAG, pairs=PAIRS, bounds={"tau1": (0.5, 20.0), "tau2": (0.5, 20.0)})
    np.testing.assert_allclose(bounded.single.params[:, 2], 20.0, rtol=1e-12)  # the start honours the bound
    assert (bounded.single.status == KW.FIT_AT_BOUND).all()
    assert (bounded.params[:, [2, 5]] <= 20.0).all()


@pytest.mark.parametrize("dims", [("q",), ("temperature", "q")])
def test_labelled_fit_over_any_leading_dims_equals_the_kernel(dims):
    truth, y, sigma = _one_term(12, seed=5)
    shape = (12,) if len(dims) == 1 else (3, 4)
    coords = {d: np.arange(n) * 1.5 for d, n in zip(dims, shape)}
    curves = xr.DataArray(y.reshape(*shape, LAG.size), dims=(*dims, S.LAG), coords={**coords, S.LAG: LAG})
    err = xr.DataArray(np.broadcast_to(sigma, y.shape).reshape(*shape, LAG.size), dims=curves.dims)
    out = fit_labelled(curves, "kww", sigma=err, max_tau_rel_err=0.5).compute()
    ref = KW.fit_kww(y, LAG, sigma=sigma)
    assert out.tau.dims == dims and out.covariance.dims == (*dims, "param", "param2")
    np.testing.assert_array_equal(out.tau.values.ravel(), ref.params[:, 2].astype(np.float32))
    np.testing.assert_array_equal(out.tau_err.values.ravel(), ref.errors[:, 2].astype(np.float32))
    np.testing.assert_array_equal(out.covariance.values.reshape(-1, 4, 4), ref.cov)
    np.testing.assert_array_equal(out.status.values.ravel(), ref.status)
    np.testing.assert_allclose(out[dims[0]].values, coords[dims[0]])
    # the true taus within a few errors (independent Gaussian noise of the given sigma)
    pull = (out.tau.values.ravel() - truth[:, 2]) / out.tau_err.values.ravel()
    assert np.all(np.abs(pull) < 4)
    two = fit_labelled(curves, "kww2", sigma=err, start1=out).compute()
    assert two.tau2.dims == dims and S.FIT_SUPPORTED in two and "covariance" not in two


def test_quality_flags_rules():
    tau = np.array([10.0, 10.0, 10.0, 0.2, np.nan, 10.0])
    err = np.array([4.9, 5.1, np.nan, 0.01, 1.0, 0.0])
    q = quality_flags(tau, np.ones(6), err, frame_time=0.05, series_s=1000.0, max_tau_rel_err=IMPRECISE_TAU_REL_ERR)
    # 40 tau = 400 s < 1000 s series; tau 0.2 s < 10 frames of 0.05 s; err > tau / 2 or undefined: imprecise
    np.testing.assert_array_equal(q, [0, QUALITY_IMPRECISE, QUALITY_IMPRECISE, QUALITY_UNDERSAMPLED, 0, 0])
    q = quality_flags(tau, np.ones(6), err, frame_time=None, series_s=300.0)
    np.testing.assert_array_equal(q, [QUALITY_SHORT_SERIES] * 3 + [0, 0, QUALITY_SHORT_SERIES])


def _g2_dataset(y, sigma=None):
    n = y.shape[0]
    ds = xr.Dataset({"g2": ((S.Y, S.X, S.LAG), y.reshape(2, n // 2, LAG.size)), "pairs": (S.LAG, PAIRS)},
                    coords={S.Y: np.arange(2.0), S.X: np.arange(n // 2), S.LAG: LAG},
                    attrs={"frame_time_s": 0.5, "n_frames": 2000})
    if sigma is not None:
        ds[S.G2_ERR] = ((S.Y, S.X, S.LAG), np.broadcast_to(sigma, y.shape).reshape(2, n // 2, LAG.size))
    return ds


def test_ops_two_term_fit_from_the_one_term_maps_fits_one_term_once(monkeypatch):
    truth, y, sigma = _two_term(24, seed=7, noise=0.001)
    ds = _g2_dataset(y)
    own = fit_kww(ds, model="kww2").compute()  # its one-term start fitted inside, with the same options
    maps = fit_kww(ds)

    def no_second_fit(*args, **kwargs):
        raise AssertionError("the two-term fit fitted one term again")

    monkeypatch.setattr(KW2, "fit_kww", no_second_fit)
    two = fit_kww(ds, model="kww2", start1=maps).compute()
    with pytest.raises(AssertionError, match="fitted one term again"):
        fit_kww(ds, model="kww2").compute()
    # the one-term maps are float32: the same minima to float32 precision, the same statuses and selection
    np.testing.assert_array_equal(two.status.values, own.status.values)
    np.testing.assert_array_equal(two[S.FIT_SUPPORTED].values, own[S.FIT_SUPPORTED].values)
    for name in ("tau1", "tau2", "beta1", "beta2", "contrast1", "contrast2", "baseline"):
        np.testing.assert_allclose(two[name].values, own[name].values, rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(two[S.FIT_F_STAT].values, own[S.FIT_F_STAT].values, rtol=1e-4)
    ok = two.status.values == KW.FIT_OK
    assert ok.mean() >= 0.75  # 20 of 24 with this seed; the others: second component not supported
    np.testing.assert_allclose(two.tau2.values[ok], truth[:, 5].reshape(2, -1)[ok], rtol=0.3)
    with pytest.raises(ValueError, match="start1"):
        fit_kww(ds, start1=maps)
    with pytest.raises(ValueError, match="missing"):
        fit_kww(ds, model="kww2", start1=maps.drop_vars("chi2"))


def test_run_fit_kww2_passes_the_one_term_maps(tmp_path, monkeypatch):
    from ecm_dask.pipeline.fit import run_fit

    truth, y, _ = _two_term(8, seed=11)
    path = tmp_path / "g2.zarr"
    _g2_dataset(y).to_zarr(path, zarr_format=3, consolidated=False)
    ref = fit_kww(xr.open_zarr(path), model="kww2").compute()

    def no_second_fit(*args, **kwargs):
        raise AssertionError("the two-term fit fitted one term again")

    monkeypatch.setattr(KW2, "fit_kww", no_second_fit)
    out = run_fit(path, tmp_path / "maps.zarr", progress=False, model="kww2")
    maps = xr.open_zarr(out).load()
    assert "tau" in maps and "tau2" in maps and "status_kww2" in maps and "quality" in maps
    np.testing.assert_array_equal(maps.status_kww2.values, ref.status.values)
    np.testing.assert_allclose(maps.tau2.values, ref.tau2.values, rtol=1e-4)


def test_sigma_weights_and_the_imprecise_bit_in_fit_kww():
    truth, y, sigma = _one_term(8, seed=2)
    # noise only, with a positive model-free contrast (a flat or rising curve is not fitted): tau undetermined
    y[0] = 1.0 + np.random.default_rng(1).normal(size=LAG.size) * sigma
    ds = _g2_dataset(y, sigma)
    m = fit_kww(ds, weights="sigma").compute()
    ref = KW.fit_kww(y, LAG, sigma=sigma, bounds={"tau": (0.5, 10 * 1000.0), "beta": (0.1, 2.5)})
    np.testing.assert_array_equal(m.tau.values.ravel(), ref.params[:, 2].astype(np.float32))
    rel = ref.errors[:, 2] / ref.params[:, 2]
    imprecise = (m.quality.values.ravel() & QUALITY_IMPRECISE) > 0
    np.testing.assert_array_equal(imprecise, ~(rel <= IMPRECISE_TAU_REL_ERR))
    assert imprecise[0] and not imprecise[1:].any()
    assert m.quality.attrs["max_tau_rel_err"] == IMPRECISE_TAU_REL_ERR
    # relative weights: the bit is not evaluated unless asked for
    assert not (fit_kww(ds).compute().quality.values & QUALITY_IMPRECISE).any()
    asked = fit_kww(ds, max_tau_rel_err=0.5).compute()
    assert (asked.quality.values.ravel()[0] & QUALITY_IMPRECISE) > 0
    with pytest.raises(ValueError, match="g2_err"):
        fit_kww(ds.drop_vars(S.G2_ERR), weights="sigma")
    with pytest.raises(ValueError, match="max_tau_rel_err"):
        fit_kww(ds, max_tau_rel_err=0.0)
