"""Batched KWW fit kernel (ecm_dask.kernels.kww): accuracy, agreement with scipy, covariance, status codes."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from scipy.optimize import OptimizeWarning, curve_fit

from ecm_dask.kernels import kww as K
from ecm_dask.kernels.lags import multitau_lags
from ecm_dask.kernels.models import kww_guess_raw

T = 4000  # frames of the simulated series
LAG = multitau_lags(T, 8).lag.astype(np.float64)  # 8 points per octave, 1 .. 1920 frames (71 points)
PAIRS = T - LAG


def _model(t, b, a, tau, beta):
    return b + a * np.exp(-2.0 * (t / tau) ** beta)


def _noisy(rng, n, *, log_tau=(0.2, 3.3), beta=(0.4, 1.8), log_a=(-3.0, -0.5), noise=(1 / 20, 1 / 5)):
    """Curves with Gaussian noise sigma = A * U(noise) * sqrt(T / pairs) (relative noise grows with the lag)."""
    truth = np.column_stack([np.ones(n), 10 ** rng.uniform(*log_a, n), 10 ** rng.uniform(*log_tau, n),
                             rng.uniform(*beta, n)])
    sigma = (truth[:, 1] * rng.uniform(*noise, n))[:, None] * np.sqrt(T / PAIRS)
    return truth, sigma, K.kww_model(LAG, truth) + rng.normal(size=(n, LAG.size)) * sigma


def _default_box():
    b = K.default_bounds(LAG)
    return np.array([b[k][0] for k in K.PARAMS]), np.array([b[k][1] for k in K.PARAMS])


# ------------------------------------------------------------------------------------------ basics
def test_api_constants_and_model():
    assert K.PARAMS == ("baseline", "contrast", "tau", "beta")
    assert sorted(K.FIT_STATUS) == list(range(7))
    assert (K.FIT_OK, K.FIT_BAD_INPUT) == (0, 6)
    m = K.kww_model(LAG, [1.0, 0.3, 50.0, 1.0])
    assert m.shape == (1, LAG.size)
    np.testing.assert_allclose(m[0], 1.0 + 0.3 * np.exp(-2.0 * LAG / 50.0), rtol=1e-15)
    assert K.kww_model(LAG, np.ones((3, 4))).shape == (3, LAG.size)


def test_initial_guess_and_tau_crossing():
    truth = np.array([[1.0, 0.2, 20.0, 1.0], [1.02, 0.01, 150.0, 0.5], [1.0, 0.1, 1e6, 1.0]])
    g2 = K.kww_model(LAG, truth)
    p0 = K.initial_guess(g2, LAG)
    assert p0.shape == (3, 4)
    assert (np.abs(p0[:2, 0] - truth[:2, 0]) < 1e-2 * truth[:2, 1]).all()  # (nearly) decayed tail
    assert (p0[:, 1] > 0).all() and (p0[:, 3] == K.BETA_START).all()
    # KWW curves cross A/e^2 at t = tau exactly; A from the first 3 points is a bit low -> a bit later
    np.testing.assert_allclose(p0[:2, 2], truth[:2, 2], rtol=0.25)  # beta = 0.5: A is 15 % low
    tc = K.tau_crossing(g2, LAG, baseline=truth[:, 0])
    np.testing.assert_allclose(tc[:2], truth[:2, 2], rtol=0.25)
    np.testing.assert_allclose(tc[0], truth[0, 2], rtol=0.1)
    assert np.isnan(tc[2])  # never falls to A/e^2 inside the window
    fixed_b = K.initial_guess(g2, LAG, baseline_fixed=1.0)
    assert (fixed_b[:, 0] == 1.0).all()
    assert fixed_b[2, 2] == 2 * LAG[-1]  # no crossing (with the true baseline): 2x the last lag
    assert np.isnan(K.initial_guess(np.full((1, LAG.size), np.nan), LAG)).all()
    assert np.isnan(K.tau_crossing(np.ones((1, LAG.size)), LAG)).all()  # flat: no contrast, no crossing


def test_input_validation():
    g2 = K.kww_model(LAG, [1.0, 0.1, 30.0, 1.0])
    with pytest.raises(ValueError, match="one entry per g2 point"):
        K.fit_kww(g2, LAG[:-1])
    with pytest.raises(ValueError, match="increasing"):
        K.fit_kww(g2, LAG[::-1])
    with pytest.raises(ValueError, match="> 0"):
        K.fit_kww(g2, LAG - 1.0)
    with pytest.raises(ValueError, match="unknown parameter"):
        K.fit_kww(g2, LAG, bounds={"gamma": (0, 1)})
    with pytest.raises(ValueError, match="unknown parameter"):
        K.fit_kww(g2, LAG, fixed={"gamma": 1.0})
    with pytest.raises(ValueError, match="baseline"):
        K.fit_kww(g2, LAG, baseline="loose")
    with pytest.raises(ValueError, match="fixed twice"):
        K.fit_kww(g2, LAG, baseline="fixed", fixed={"baseline": 1.1})
    with pytest.raises(ValueError, match="sigma"):
        K.fit_kww(g2, LAG, sigma=np.ones(3))


# --------------------------------------------------------------------------------- noise-free data
@pytest.mark.parametrize("baseline", [1.0, 1.02])
def test_noise_free_grid_recovered(baseline):
    taus = np.geomspace(1.5, 1500.0, 7)  # 3 decades inside the 1 .. 1920 window
    betas = np.array([0.3, 0.5, 0.8, 1.0, 1.5, 2.0])
    amps = np.array([1e-4, 1e-2, 0.5])
    tt, bb, aa = (x.ravel() for x in np.meshgrid(taus, betas, amps, indexing="ij"))
    truth = np.column_stack([np.full(tt.size, baseline), aa, tt, bb])
    g2 = K.kww_model(LAG, truth)
    for kw in ({}, {"pairs": PAIRS}):
        fit = K.fit_kww(g2, LAG, **kw)
        assert (fit.status == K.FIT_OK).all(), np.bincount(fit.status)
        rel = np.abs(fit.params[:, 1:] / truth[:, 1:] - 1.0)  # contrast, tau, beta
        assert rel.max() < 1e-6, rel.max(axis=0)
        np.testing.assert_allclose(fit.params[:, 0], baseline, rtol=0, atol=1e-6 * aa.min())
        assert fit.n_iter.max() < 100
        assert np.isfinite(fit.errors).all() and np.isfinite(fit.chi2_red).all()
    # baseline fixed at the truth (1.0 case) / at the offset value
    fit = K.fit_kww(g2, LAG, baseline="fixed" if baseline == 1.0 else baseline)
    assert (fit.status == K.FIT_OK).all()
    assert (fit.params[:, 0] == baseline).all() and (fit.errors[:, 0] == 0).all()
    assert np.abs(fit.params[:, 1:] / truth[:, 1:] - 1.0).max() < 1e-6


def test_float32_input_and_single_curve():
    truth = np.array([1.0, 0.2, 40.0, 0.9])
    g64 = K.kww_model(LAG, truth)
    f32 = K.fit_kww(g64.astype(np.float32), LAG)
    assert f32.status[0] == K.FIT_OK
    np.testing.assert_allclose(f32.params[0], truth, rtol=1e-4)
    f1 = K.fit_kww(g64[0], LAG)  # a (L,) curve is one pixel
    assert f1.params.shape == (1, 4)
    np.testing.assert_allclose(f1.params[0], truth, rtol=1e-6)


# -------------------------------------------------------------------------------------- noisy data
def _curve_fit_all(g2, sigma, p0, lo, hi):
    """scipy reference, one curve at a time: params, errors, success (no exception, no warning)."""
    n = g2.shape[0]
    params, errors, ok = np.full((n, 4), np.nan), np.full((n, 4), np.nan), np.zeros(n, dtype=bool)
    for i in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                p, c = curve_fit(_model, LAG, g2[i], p0=p0[i], sigma=sigma[i], absolute_sigma=True,
                                 bounds=(lo, hi), method="trf")
            except (RuntimeError, ValueError, OptimizeWarning, RuntimeWarning):
                continue
        params[i], errors[i], ok[i] = p, np.sqrt(np.diag(c)), True
    return params, errors, ok


def test_noisy_matches_scipy_curve_fit():
    rng = np.random.default_rng(20240611)
    n = 300
    truth, sigma, g2 = _noisy(rng, n)
    fit = K.fit_kww(g2, LAG, sigma=sigma)
    lo, hi = _default_box()
    p0 = np.clip(K.initial_guess(g2, LAG), lo, hi)  # the starting values fit_kww uses
    cf_p, cf_e, cf_ok = _curve_fit_all(g2, sigma, p0, lo, hi)
    # classify scipy's results with the same rules; TRF keeps its iterates strictly inside the box, so a
    # parameter "on" a bound sits up to ~1e-3 (relative) inside it there
    flat = ~(K._guess_raw(np.ascontiguousarray(g2), LAG, None)[:, 1] > 0)
    cf_status = K._status(cf_p, cf_e, np.full(n, LAG.size), np.ones(4, dtype=bool), lo, hi, LAG[0], LAG[-1],
                          flat, cf_ok, bound_rtol=1e-3)
    ours_failed = np.mean(fit.status != K.FIT_OK)
    cf_failed = np.mean(cf_status != K.FIT_OK)
    err_ours = np.nanmedian(np.abs(np.log10(fit.params[:, 2] / truth[:, 2])))
    err_cf = np.nanmedian(np.abs(np.log10(cf_p[:, 2] / truth[:, 2])))
    print(f"\nfailed: ours {ours_failed:.3f}, curve_fit {cf_failed:.3f}; "
          f"median |log10 tau err|: ours {err_ours:.4f}, curve_fit {err_cf:.4f}")
    assert ours_failed <= cf_failed
    assert err_ours <= 1.1 * err_cf
    assert 0.5 < np.mean(fit.status == K.FIT_OK)  # the sample is not degenerate
    both = (fit.status == K.FIT_OK) & (cf_status == K.FIT_OK)
    assert both.sum() > 0.5 * n
    rel = np.abs(fit.params[both] / cf_p[both] - 1.0)[:, 1:]  # contrast, tau, beta
    assert np.mean(rel.max(axis=1) < 1e-3) >= 0.95
    assert np.abs(fit.params[both, 0] - cf_p[both, 0]).max() < 1e-3 * fit.params[both, 1].max()
    # the errors agree too (same Jacobian at the same minimum, absolute sigma)
    rel_e = np.abs(fit.errors[both] / cf_e[both] - 1.0)[:, 1:]
    assert np.median(rel_e) < 1e-2


@pytest.mark.parametrize("weights", ["sigma", "pairs"])
def test_covariance_matches_scatter(weights):
    rng = np.random.default_rng(7)
    m = 1500
    truth = np.array([1.0, 0.1, 60.0, 0.8])
    sigma = truth[1] / 20 * np.sqrt(T / PAIRS)
    g2 = K.kww_model(LAG, truth) + rng.normal(size=(m, LAG.size)) * sigma
    kw = {"sigma": sigma} if weights == "sigma" else {"pairs": PAIRS}
    fit = K.fit_kww(g2, LAG, **kw)
    assert (fit.status == K.FIT_OK).all()
    for j in (1, 2, 3):  # contrast, tau, beta
        spread = fit.params[:, j].std(ddof=1)
        reported = fit.errors[:, j].mean()
        assert abs(spread / reported - 1.0) < 0.2, (K.PARAMS[j], spread, reported)
    assert abs(np.median(fit.chi2_red) / (1.0 if weights == "sigma" else sigma[0] ** 2 * T) - 1.0) < 0.1
    np.testing.assert_allclose(np.sqrt(np.diagonal(fit.cov, axis1=1, axis2=2)), fit.errors)
    np.testing.assert_allclose(fit.cov, np.swapaxes(fit.cov, 1, 2), rtol=1e-12, atol=0)


def test_fixed_beta_and_baseline():
    rng = np.random.default_rng(11)
    truth, sigma, g2 = _noisy(rng, 200, log_tau=(0.7, 2.7), log_a=(-2.0, -0.5))
    clean = K.kww_model(LAG, truth)
    # noise-free, beta fixed at the (per-pixel) truth
    fit = K.fit_kww(clean, LAG, fixed={"beta": truth[:, 3]})
    assert (fit.status == K.FIT_OK).all()
    np.testing.assert_allclose(fit.params[:, 2], truth[:, 2], rtol=1e-6)
    assert (fit.params[:, 3] == truth[:, 3]).all()
    assert (fit.errors[:, 3] == 0).all() and (fit.cov[:, 3, :] == 0).all() and (fit.cov[:, :, 3] == 0).all()
    # noisy: fixing beta at the truth can only help tau
    free = K.fit_kww(g2, LAG, sigma=sigma)
    fixb = K.fit_kww(g2, LAG, sigma=sigma, fixed={"beta": truth[:, 3]})
    e_free = np.median(np.abs(np.log10(free.params[:, 2] / truth[:, 2])))
    e_fixb = np.median(np.abs(np.log10(fixb.params[:, 2] / truth[:, 2])))
    assert e_fixb < e_free
    assert np.mean(fixb.status == K.FIT_OK) >= np.mean(free.status == K.FIT_OK)
    assert np.median(fixb.errors[:, 2] / fixb.params[:, 2]) < np.median(free.errors[:, 2] / free.params[:, 2])
    # baseline fixed at 1.0 (the truth), alone and with beta
    for fit in (K.fit_kww(g2, LAG, sigma=sigma, baseline="fixed"),
                K.fit_kww(g2, LAG, sigma=sigma, fixed={"baseline": 1.0, "beta": truth[:, 3]})):
        assert (fit.params[:, 0] == 1.0).all() and (fit.errors[:, 0] == 0).all()
        ok = fit.status == K.FIT_OK
        assert ok.mean() > 0.8
        assert np.median(np.abs(np.log10(fit.params[ok, 2] / truth[ok, 2]))) < 0.05


def test_bounds_max_iter_and_p0():
    truth = np.array([[1.0, 0.2, 40.0, 1.0]])
    g2 = K.kww_model(LAG, truth)
    fit = K.fit_kww(g2, LAG, bounds={"beta": (0.5, 0.6)})
    assert fit.status[0] == K.FIT_AT_BOUND and fit.params[0, 3] == 0.6
    fit = K.fit_kww(g2, LAG, bounds={"tau": (60.0, None)})
    assert fit.status[0] == K.FIT_AT_BOUND and fit.params[0, 2] == 60.0
    fit = K.fit_kww(g2, LAG, max_iter=1)
    assert fit.status[0] == K.FIT_NOT_CONVERGED and fit.n_iter[0] == 1
    fit = K.fit_kww(g2, LAG, p0=[1.0, 0.2, 40.0, 1.0])  # starting at the solution
    assert fit.status[0] == K.FIT_OK and fit.n_iter[0] <= 1
    fit = K.fit_kww(g2, LAG, p0=[np.nan, np.nan, 5.0, 1.8])  # NaN entries fall back to initial_guess
    assert fit.status[0] == K.FIT_OK
    np.testing.assert_allclose(fit.params[0], truth[0], rtol=1e-6)


# ------------------------------------------------------------------------------------ pathologies
def test_pathological_curves_get_status_codes():
    n_lag = LAG.size
    idx = np.arange(n_lag)
    good = K.kww_model(LAG, [1.0, 0.1, 50.0, 0.8])[0]
    cases = {
        "flat": (np.ones(n_lag), K.FIT_NO_DECAY),
        "all_nan": (np.full(n_lag, np.nan), K.FIT_BAD_INPUT),
        "all_inf": (np.full(n_lag, np.inf), K.FIT_BAD_INPUT),
        "some_nan": (np.where(idx % 5 == 2, np.nan, good), K.FIT_OK),
        "one_inf": (np.where(idx == 10, np.inf, good), K.FIT_OK),
        "rising": (K.kww_model(LAG, [1.1, -0.1, 50.0, 1.0])[0], K.FIT_NO_DECAY),
        "one_point": (np.where(idx == 3, 1.05, np.nan), K.FIT_TOO_FEW_POINTS),
        "three_points": (np.where(idx < 3, good, np.nan), K.FIT_TOO_FEW_POINTS),
        "tau_1e5": (K.kww_model(LAG, [1.0, 0.1, 1e5, 1.0])[0], K.FIT_NO_DECAY),
        "tau_0.8": (K.kww_model(LAG, [1.0, 0.1, 0.8, 1.0])[0], K.FIT_TOO_FAST),
        # 2e-10 A left at the first lag: unresolved; too fast if the fit pins tau at the first lag, else
        # no (significant) decay
        "tau_0.1": (K.kww_model(LAG, [1.0, 0.1, 0.1, 1.0])[0], (K.FIT_TOO_FAST, K.FIT_NO_DECAY)),
    }
    g2 = np.array([c[0] for c in cases.values()])
    expected = [c[1] for c in cases.values()]
    for kw in ({}, {"pairs": PAIRS}, {"sigma": np.full(n_lag, 1e-3)}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fit = K.fit_kww(g2, LAG, **kw)
            K.tau_crossing(g2, LAG)
            K.initial_guess(g2, LAG)
        got = {name: K.FIT_STATUS[s] for name, s in zip(cases, fit.status)}
        assert all(np.isin(st, want) for st, want in zip(fit.status, expected)), got
        # not fitted: no usable curve, or flat / rising by the model-free rule (a fit could not change the status)
        no_fit = np.isin(fit.status, (K.FIT_BAD_INPUT, K.FIT_TOO_FEW_POINTS))
        no_fit[[list(cases).index("flat"), list(cases).index("rising")]] = True
        assert np.isnan(fit.params[no_fit]).all() and (fit.n_iter[no_fit] == 0).all()
        assert np.isnan(fit.errors[no_fit]).all() and np.isnan(fit.chi2_red[no_fit]).all()
        assert np.isfinite(fit.params[~no_fit]).all() and (fit.n_iter[~no_fit] > 0).all()
        for name in ("some_nan", "one_inf"):
            np.testing.assert_allclose(fit.params[list(cases).index(name)], [1.0, 0.1, 50.0, 0.8], rtol=1e-6)
    # too few for the free parameters: 5 points are enough with beta fixed, 4 never are
    few = np.where(idx < 5, good, np.nan)[None]
    assert K.fit_kww(few, LAG, fixed={"beta": 0.8}).status[0] != K.FIT_TOO_FEW_POINTS
    assert K.fit_kww(np.where(idx < 4, good, np.nan)[None], LAG, fixed={"beta": 0.8}).status[0] == \
        K.FIT_TOO_FEW_POINTS
    # no finite lag at all
    fit = K.fit_kww(g2[:2], np.full(n_lag, np.nan))
    assert (fit.status == K.FIT_BAD_INPUT).all()


def test_flat_curves_are_not_fitted_and_leave_the_others_bit_identical():
    """Noise around a flat line: the curves whose model-free contrast is <= 0 keep status no-decay without a fit
    (NaN parameters, 0 iterations); every other curve's fit is bit-identical to fitting it alone, and so is its
    status.  Their statuses are the ones a fit of them would give (rule 3 precedes every fit-based rule)."""
    rng = np.random.default_rng(11)
    truth, sigma, decaying = _noisy(rng, 200)
    noise = 1.0 + 1e-3 * rng.normal(size=(200, LAG.size)) * np.sqrt(T / PAIRS)
    g2 = np.concatenate([decaying, noise])
    flat = ~(kww_guess_raw(g2, LAG)[:, 1] > 0)  # the model-free contrast (not floored as initial_guess's is)
    assert flat[200:].sum() > 50 and (~flat).sum() > 150
    fit = K.fit_kww(g2, LAG, pairs=PAIRS)
    assert (fit.status[flat] == K.FIT_NO_DECAY).all() and (fit.n_iter[flat] == 0).all()
    assert np.isnan(fit.params[flat]).all() and np.isnan(fit.cov[flat]).all()
    alone = K.fit_kww(g2[~flat], LAG, pairs=PAIRS)
    for name in ("params", "errors", "cov", "chi2_red", "n_iter", "status"):
        np.testing.assert_array_equal(getattr(fit, name)[~flat], getattr(alone, name), err_msg=name)
    # with a parameter fixed too: not fitted, all NaN (as a curve of bad input)
    fixed = K.fit_kww(g2, LAG, pairs=PAIRS, fixed={"beta": 0.8})
    assert np.isnan(fixed.params[flat]).all() and (fixed.params[~flat & (fixed.n_iter > 0), 3] == 0.8).all()


def test_noise_only_pixels_are_not_ok():
    rng = np.random.default_rng(5)
    g2 = 1.0 + 1e-3 * rng.normal(size=(500, LAG.size)) * np.sqrt(T / PAIRS)
    fit = K.fit_kww(g2, LAG, pairs=PAIRS)
    assert np.mean(fit.status == K.FIT_OK) < 0.05


# ------------------------------------------------------------------------------------------- speed
def test_speed_report():
    """Not a timed assertion: prints fits/s of one thread for 100 000 noisy curves of 71 lags."""
    rng = np.random.default_rng(3)
    truth, sigma, g2 = _noisy(rng, 100_000)
    K.fit_kww(g2[:10], LAG, pairs=PAIRS)  # compiled already; make sure
    t0 = time.perf_counter()
    fit = K.fit_kww(g2, LAG, pairs=PAIRS)
    dt = time.perf_counter() - t0
    print(f"\nfit_kww: {g2.shape[0] / dt:,.0f} fits/s (one thread, {LAG.size} lags, "
          f"mean {fit.n_iter.mean():.1f} iterations, {np.mean(fit.status == K.FIT_OK):.0%} ok)")
    assert fit.params.shape == (100_000, 4)


def test_edge_arguments():
    truth = np.array([[1.0, 0.2, 40.0, 1.0], [1.0, 0.1, 80.0, 0.7]])
    g2 = K.kww_model(LAG, truth)
    empty = K.fit_kww(np.empty((0, LAG.size)), LAG)
    assert empty.params.shape == (0, 4) and empty.status.shape == (0,)
    # fixed tau is reported exactly; a NaN fixed value means that curve is not fitted
    fit = K.fit_kww(g2, LAG, fixed={"tau": [40.0, np.nan]})
    assert fit.status[0] == K.FIT_OK and fit.params[0, 2] == 40.0 and fit.errors[0, 2] == 0.0
    assert fit.status[1] == K.FIT_BAD_INPUT and np.isnan(fit.params[1]).all()
    # unusable p0 entries (NaN, tau <= 0) fall back to the initial guess
    fit = K.fit_kww(g2, LAG, p0=[1.0, 0.1, -5.0, np.nan])
    assert (fit.status == K.FIT_OK).all()
    np.testing.assert_allclose(fit.params, truth, rtol=1e-6)
    # zero / non-finite weights drop points
    sig = np.full(LAG.size, 1e-3)
    sig[::3] = 0.0
    fit = K.fit_kww(g2, LAG, sigma=sig)
    assert (fit.status == K.FIT_OK).all()
    assert (K.fit_kww(g2, LAG, pairs=np.zeros(LAG.size)).status == K.FIT_BAD_INPUT).all()
