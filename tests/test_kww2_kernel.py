"""Two-term KWW fit kernel (ecm_dask.kernels.kww2): noise-free recovery, error bars, model selection, scipy."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from scipy.optimize import OptimizeWarning, curve_fit

from ecm_dask.kernels import kww as K
from ecm_dask.kernels import kww2 as K2
from ecm_dask.kernels.lags import multitau_lags

T = 4000
LAG = multitau_lags(T, 8).lag.astype(np.float64)  # 71 points, 1 .. 1920 frames
PAIRS = T - LAG


def _model(t, b, a1, t1, b1, a2, t2, b2):
    return b + a1 * np.exp(-2.0 * (t / t1) ** b1) + a2 * np.exp(-2.0 * (t / t2) ** b2)


def _grid():
    """Noise-free grid: tau1 2..60, tau2/tau1 5..30, fast fraction 3 % .. 80 %, betas 0.5..1.5."""
    rows = []
    for t1, r, f1, b1, b2 in itertools.product([2.0, 6.0, 20.0, 60.0], [5.0, 10.0, 30.0],
                                               [0.03, 0.07, 0.2, 0.5, 0.8], [0.5, 1.0, 1.5], [0.5, 1.0, 1.5]):
        if t1 * r <= 0.5 * LAG[-1]:
            rows.append([1.0, 0.3 * f1, t1, b1, 0.3 * (1 - f1), t1 * r, b2])
    return np.array(rows)


def _random_truth(rng, n, frac=(0.2, 0.8)):
    t1 = 10 ** rng.uniform(0.5, 1.5, n)
    t2 = t1 * 10 ** rng.uniform(np.log10(5), np.log10(30), n)
    f = rng.uniform(*frac, n)
    a = rng.uniform(0.1, 0.4, n)
    p = np.column_stack([np.ones(n), a * f, t1, rng.uniform(0.6, 1.4, n), a * (1 - f), t2, rng.uniform(0.6, 1.4, n)])
    return p[t2 < 0.5 * LAG[-1]]


def test_api_and_model():
    assert K2.PARAMS2 == ("baseline", "contrast1", "tau1", "beta1", "contrast2", "tau2", "beta2")
    assert K2.FIT_NOT_SUPPORTED == K.FIT_NOT_SUPPORTED and K.FIT_NOT_SUPPORTED not in K.FIT_STATUS
    assert K.FIT_STATUS2[K.FIT_NOT_SUPPORTED] == "second component not supported"
    p = [1.0, 0.1, 5.0, 1.0, 0.2, 100.0, 0.7]
    m = K2.kww2_model(LAG, p)
    np.testing.assert_allclose(m[0], _model(LAG, *p), rtol=1e-15)
    one = K.kww_model(LAG, [1.0, 0.1, 5.0, 1.0]) + K.kww_model(LAG, [0.0, 0.2, 100.0, 0.7])
    np.testing.assert_allclose(m, one, rtol=1e-15)
    starts = K2.starts_from_single(np.array([[1.0, 0.3, 10.0, 0.8]]))
    assert starts.shape == (K2.N_STARTS, 1, 7)
    # every start describes the same total contrast and the one-term tau is one of its taus or between them
    np.testing.assert_allclose(starts[:, 0, 1] + starts[:, 0, 4], 0.3)
    assert ((starts[:, 0, 2] <= 10.0) & (starts[:, 0, 5] >= 10.0)).all()


@pytest.mark.parametrize("weights", ["none", "pairs"])
def test_noise_free_grid_ok_means_right(weights):
    truth = _grid()
    fit = K2.fit_kww2(K2.kww2_model(LAG, truth), LAG, pairs=PAIRS if weights == "pairs" else None)
    assert fit.params.shape == (len(truth), 7) and fit.cov.shape == (len(truth), 7, 7)
    rel = np.abs(fit.params / truth - 1).max(axis=1)
    ok = fit.status == K.FIT_OK
    fast = truth[:, 1] / (truth[:, 1] + truth[:, 4])
    print(f"\nnoise-free grid ({weights}): ok {ok.mean():.4f} of {len(truth)}, max rel error where ok "
          f"{rel[ok].max():.2e}, ok with fast fraction < 10 %: {ok[fast < 0.1].mean():.3f}")
    assert rel[ok].max() < 1e-6  # no wrong answer reported as ok, anywhere (hard corner included)
    assert ok[fast >= 0.2].mean() >= 0.99
    assert ok.mean() >= 0.95
    assert fit.supported[ok].all() and (fit.params[:, 2] <= fit.params[:, 5]).all()


def test_noise_free_random_curves():
    rng = np.random.default_rng(7)
    truth = _random_truth(rng, 400, frac=(0.02, 0.9))
    fit = K2.fit_kww2(K2.kww2_model(LAG, truth), LAG)
    rel = np.abs(fit.params / truth - 1).max(axis=1)
    ok = fit.status == K.FIT_OK
    assert rel[ok].max() < 1e-6 and ok.mean() >= 0.98


def test_noisy_components_within_their_errors():
    rng = np.random.default_rng(3)
    truth = _random_truth(rng, 500)
    n = len(truth)
    sigma = 0.003 * np.sqrt(T / PAIRS)[None, :] * np.ones((n, 1))
    g2 = K2.kww2_model(LAG, truth) + rng.normal(size=(n, LAG.size)) * sigma
    for kw in ({"sigma": sigma}, {"pairs": PAIRS}):
        fit = K2.fit_kww2(g2, LAG, **kw)
        ok = fit.status == K.FIT_OK
        pull = np.abs(fit.params - truth)[ok] / fit.errors[ok]
        within = (pull[:, 1:] < 3).mean(axis=0)
        print(f"\nnoisy two-term ({list(kw)[0]}): ok {ok.mean():.3f}, supported {fit.supported.mean():.3f}, "
              f"|pull| < 3: {np.round(within, 3)}, |pull| < 1: {np.round((pull[:, 1:] < 1).mean(axis=0), 3)}")
        assert ok.mean() > 0.5 and fit.supported.mean() > 0.55
        assert (within > 0.94).all()  # 0.997 for Gaussian errors; nonlinearity costs a little
        assert ((pull[:, 1:] < 1).mean(axis=0) > 0.55).all()


def test_single_kww_data_second_component_not_supported():
    rng = np.random.default_rng(2)
    n = 400
    p1 = np.column_stack([np.ones(n), rng.uniform(0.1, 0.3, n), 10 ** rng.uniform(0.3, 2.3, n),
                          rng.uniform(0.5, 1.5, n)])
    sigma = 0.003 * np.sqrt(T / PAIRS)[None, :] * np.ones((n, 1))
    g2 = K.kww_model(LAG, p1) + rng.normal(size=(n, LAG.size)) * sigma
    for kw in ({"sigma": sigma}, {"pairs": PAIRS}):
        fit = K2.fit_kww2(g2, LAG, **kw)
        print(f"\none-term data ({list(kw)[0]}): supported {fit.supported.mean():.3f}, "
              f"p < 0.01 {np.nanmean(fit.p_value < 0.01):.3f}")
        assert fit.supported.mean() <= 0.05
        assert (fit.status[~fit.supported] != K.FIT_OK).all()
        assert (fit.status[fit.single.status == K.FIT_OK] != K.FIT_OK).mean() >= 0.95
        # the one-term fit kept in the result is fit_kww itself
        np.testing.assert_array_equal(fit.single.params, K.fit_kww(g2, LAG, **kw).params)
    exact = K2.fit_kww2(K.kww_model(LAG, p1[:50]), LAG)
    assert not (exact.status == K.FIT_OK).any()


def test_f_test_closed_form():
    f, p = K2.f_test(np.array([12.0, 10.0, np.nan]), np.array([6.0, 10.0, 1.0]), np.array([67, 67, 67]), 4, 7)
    np.testing.assert_allclose(f[:2], [(6.0 / 3) / (6.0 / 60), 0.0])
    from scipy.stats import f as fdist

    np.testing.assert_allclose(p[:2], [fdist.sf(20.0, 3, 60), 1.0])
    assert np.isnan(f[2]) and np.isnan(p[2])


def test_matches_scipy_curve_fit_from_truth():
    rng = np.random.default_rng(5)
    truth = _random_truth(rng, 40)[:16]
    n = len(truth)
    sigma = 0.003 * np.sqrt(T / PAIRS)[None, :] * np.ones((n, 1))
    g2 = K2.kww2_model(LAG, truth) + rng.normal(size=(n, LAG.size)) * sigma
    fit = K2.fit_kww2(g2, LAG, sigma=sigma)
    b = K2.default_bounds2(LAG)
    lo = np.array([b[k][0] for k in K2.PARAMS2])
    hi = np.array([b[k][1] for k in K2.PARAMS2])
    cf = np.full((n, 7), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(n):
            cf[i] = curve_fit(_model, LAG, g2[i], p0=truth[i], sigma=sigma[i], absolute_sigma=True,
                              bounds=(lo, hi), method="trf", ftol=1e-14, xtol=1e-14, gtol=1e-14, max_nfev=5000)[0]
    swap = cf[:, 2] > cf[:, 5]
    cf[swap] = cf[swap][:, [0, 4, 5, 6, 1, 2, 3]]
    chi2_cf = (((g2 - K2.kww2_model(LAG, cf)) / sigma) ** 2).sum(axis=1)
    chi2_ours = fit.chi2_red * (LAG.size - 7)
    assert (chi2_ours <= chi2_cf * (1 + 1e-6)).all()  # never a worse minimum than scipy started from the truth
    ok = fit.status == K.FIT_OK
    assert ok.sum() >= 8  # the others: second component not significant at this noise
    np.testing.assert_allclose(fit.params[ok], cf[ok], rtol=1e-4)


def test_fixed_parameters():
    truth = np.array([[1.0, 0.1, 4.0, 1.0, 0.2, 120.0, 0.8], [1.0, 0.2, 10.0, 1.2, 0.05, 300.0, 1.0]])
    g2 = K2.kww2_model(LAG, truth)
    fit = K2.fit_kww2(g2, LAG, baseline="fixed", fixed={"beta1": truth[:, 3]})
    np.testing.assert_allclose(fit.params, truth, rtol=1e-6)
    assert (fit.errors[:, [0, 3]] == 0).all() and (fit.status == K.FIT_OK).all()
    fit = K2.fit_kww2(g2, LAG, fixed={"tau1": truth[:, 2], "tau2": truth[:, 5]})
    np.testing.assert_allclose(fit.params, truth, rtol=1e-6)
    np.testing.assert_array_equal(fit.params[:, [2, 5]], truth[:, [2, 5]])
    fit = K2.fit_kww2(g2, LAG, fixed={"tau1": [4.0, np.nan]})
    assert fit.status[1] == K.FIT_BAD_INPUT and np.isnan(fit.params[1]).all()
    fit = K2.fit_kww2(g2, LAG, p0=truth * 1.01)  # a given start is the only one
    np.testing.assert_allclose(fit.params, truth, rtol=1e-6)


def test_pathological_inputs():
    good = K2.kww2_model(LAG, [1.0, 0.1, 4.0, 1.0, 0.2, 120.0, 0.8])[0]
    three = np.full(LAG.size, np.nan)
    three[:3] = good[:3]
    g2 = np.vstack([np.ones(LAG.size), np.full(LAG.size, np.nan), three, good])
    fit = K2.fit_kww2(g2, LAG)
    assert list(fit.status) == [K.FIT_NO_DECAY, K.FIT_BAD_INPUT, K.FIT_TOO_FEW_POINTS, K.FIT_OK]
    assert np.isnan(fit.params[1:3]).all() and not fit.supported[:3].any()
    rising = 1.0 + 1e-3 * np.log(LAG)
    fit = K2.fit_kww2(np.vstack([rising, 1.0 + 1e-3 * np.random.default_rng(3).normal(size=LAG.size)]), LAG)
    assert (fit.status != K.FIT_OK).all()
    with pytest.raises(ValueError):
        K2.fit_kww2(g2, LAG, fixed={"tau": 1.0})
    with pytest.raises(ValueError, match="alpha"):
        K2.fit_kww2(g2, LAG, alpha=1.5)
