"""Measured XPCS data (not generated here): the labelled KWW fit on the SiO2 g2 of four beam attenuations, and
the stationarity test on a measured two-time map of an ageing sample (data: ../shared/data/real-xpcs/README.md).

What the data show (numbers from these fits, errors = the files' errors as absolute sigma):

* CSV layout: row 0 = lags (s), multiples of 127 us on a multi-tau grid; then 7 pairs of rows, g2 and its
  error per q bin.  The last column is padding (g2 NaN or 0, error inf or 1).  The errors are conservative:
  reduced chi2 of the fits 0.01-0.8 on the three good files (scatter smaller than the errors), and the
  error rows are nearly constant along the lag.
* tau falls with q in every good file (about 10, 6, 4.3, 1.4, 0.7, 0.25 ms), the same within errors across
  attenuations (largest pull 2.3, bin 5 of Abs vs Abs8); the q values are not in the files, so the q^-2
  exponent of diffusion is not checked.  The noisiest file (Abs16) decays nowhere significantly: every bin has
  status "no decay" and tau errors of 1000 x tau or undefined: the quality bit ``tau_error_above_half_tau``.
* The two-time map: tau (KWW, beta fixed at the all-ages 0.64) grows from ~16 to ~73 frames over 7 windows of
  age, OLS trend t = 3.0, p = 0.03; with 5-10 windows the slope is positive every time (p 0.014-0.27, the map
  holds only ~5-20 relaxation times, so the window-to-window scatter is large).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.kernels.kww import FIT_NO_DECAY, FIT_OK
from ecm_dask.kernels.stationarity import twotime_stationarity
from ecm_dask.kernels.twotime import two_time
from ecm_dask.ops.fit import IMPRECISE_TAU_REL_ERR, QUALITY_IMPRECISE, fit_kww

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-xpcs"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"measured data not present ({DATA})")

GOOD = ("m011_SiO2_Abs.csv", "m013_SiO2_Abs4.csv", "m015_SiO2_Abs8.csv")
NOISY = "m017_SiO2_Abs16.csv"


def load_xpcs_csv(path):
    """(lag (L,) s, g2 (n_q, L), err (n_q, L)) of a CSV: row 0 lags, then g2 and error rows per q bin.

    Points with a non-finite or non-positive g2 or error are NaN (the padding column of the files).
    """
    a = np.loadtxt(path, delimiter=",")
    if a.ndim != 2 or a.shape[0] < 3 or a.shape[0] % 2 != 1:
        raise ValueError(f"{path}: expected 1 lag row and pairs of g2/error rows, got shape {a.shape}")
    lag, g2, err = a[0], a[1::2].copy(), a[2::2].copy()
    if not (np.all(np.isfinite(lag)) and np.all(lag > 0) and np.all(np.diff(lag) > 0)):
        raise ValueError(f"{path}: row 0 is not a strictly increasing list of positive lags")
    bad = ~(np.isfinite(g2) & (g2 > 0) & np.isfinite(err) & (err > 0))
    g2[bad] = np.nan
    err[bad] = np.nan
    return lag, g2, err


def _dataset(path):
    lag, g2, err = load_xpcs_csv(path)
    q = np.arange(g2.shape[0])
    return xr.Dataset({S.G2: (("q", S.LAG), g2), S.G2_ERR: (("q", S.LAG), err)},
                      coords={"q": q, S.LAG: lag}, attrs={"frame_time_s": float(lag[0])})


@pytest.fixture(scope="module")
def fits():
    return {name: fit_kww(_dataset(DATA / name), weights="sigma").compute() for name in (*GOOD, NOISY)}


def test_csv_layout_read_from_the_values():
    for name in (*GOOD, NOISY):
        lag, g2, err = load_xpcs_csv(DATA / name)
        assert g2.shape == err.shape == (7, lag.size)
        # lags: integer multiples of the first (127 us), a multi-tau grid up to ~0.11 s
        steps = lag / lag[0]
        np.testing.assert_allclose(steps, np.round(steps), rtol=1e-5)
        assert lag[0] == pytest.approx(127e-6, rel=1e-3) and 0.1 < lag[-1] < 0.12
        # the padding column is dropped; errors are small positive numbers, g2 rows are near 1
        assert np.isnan(g2[:, -1]).all() and np.isfinite(g2[:, :-1]).all()
        assert (err[:, :-1] > 0).all() and (err[:, :-1] < 0.1).all()
        assert ((g2[:, :-1] > 0.5) & (g2[:, :-1] < 1.2)).all()  # near 1 (Abs16 scatters down to 0.62)
    for name in GOOD:  # the good files' g2 decay: start above their tail in every q bin
        lag, g2, err = load_xpcs_csv(DATA / name)
        assert (np.nanmean(g2[:, :3], axis=1) > np.nanmean(g2[:, -10:], axis=1)).all()
        assert np.nanmin(g2) > 0.99 and np.nanmax(err) < 0.01


def test_sio2_tau_agrees_across_attenuations_and_falls_with_q(fits):
    good_ok = {}
    for name in GOOD:
        m = fits[name]
        ok = (m.status.values == FIT_OK) & ((m.quality.values & QUALITY_IMPRECISE) == 0)
        good_ok[name] = ok
        assert ok[:5].all(), name  # the five lowest q bins fit well at every good attenuation
        tau = m.tau.values[ok]
        assert (np.diff(tau) < 0).all(), (name, tau)  # tau falls with q (diffusion: tau ~ 1/(D q^2))
        assert 8e-3 < m.tau.values[0] < 12e-3 and 0.6e-3 < m.tau.values[4] < 0.8e-3
    pulls = []
    for i, a in enumerate(GOOD):
        for b in GOOD[i + 1:]:
            both = good_ok[a] & good_ok[b]
            ta, tb = fits[a].tau.values[both].astype(float), fits[b].tau.values[both].astype(float)
            ea, eb = fits[a].tau_err.values[both].astype(float), fits[b].tau_err.values[both].astype(float)
            pulls.extend(np.abs(ta - tb) / np.hypot(ea, eb))
    pulls = np.asarray(pulls)
    assert pulls.size >= 15
    assert pulls.max() < 3.0  # |tau_a - tau_b| / sqrt(err_a^2 + err_b^2), same sample at every attenuation


def test_noisiest_file_rises_and_is_not_reported(fits):
    m = fits[NOISY]
    # its g2 rises: in every q bin the first 3 points lie 0.08-0.19 below the tail (independent of the fit code), so
    # every bin is "no decay" by the model-free rule and is not fitted: no tau, no error, no quality bit to report
    lag, g2, err = load_xpcs_csv(DATA / NOISY)
    assert (np.nanmean(g2[:, :3], axis=1) < np.nanmean(g2[:, -10:], axis=1) - 0.05).all()
    assert (m.status.values == FIT_NO_DECAY).all() and (m.n_iter.values == 0).all()
    assert np.isnan(m.tau.values).all() and np.isnan(m.tau_err.values).all() and (m.quality.values == 0).all()
    for name in GOOD:  # where the good files fit ok, their tau errors are far below the threshold
        g = fits[name]
        ok = g.status.values == FIT_OK
        assert ((g.quality.values[ok] & QUALITY_IMPRECISE) == 0).all()
        assert np.all(g.tau_err.values[ok] / g.tau.values[ok] < 0.4)
    assert m.quality.attrs["max_tau_rel_err"] == IMPRECISE_TAU_REL_ERR


def _speckle_two_time(n_t, tau_frames, seed, n_pix=40, n_modes=10):
    """Two-time map of speckle whose field decorrelates with time constant ``tau_frames`` (scalar or per frame):
    g2 - 1 = exp(-2 k / tau) / n_modes, i.e. the KWW tau = tau_frames, beta = 1."""
    rng = np.random.default_rng(seed)
    tau = np.broadcast_to(np.asarray(tau_frames, dtype=float), (n_t,))

    def noise():
        return (rng.normal(size=(n_pix, n_modes)) + 1j * rng.normal(size=(n_pix, n_modes))) / np.sqrt(2)

    e = noise()
    frames = np.empty((n_t, n_pix))
    for t in range(n_t):
        if t:
            r = np.exp(-1.0 / tau[t])
            e = r * e + np.sqrt(1 - r * r) * noise()
        frames[t] = (np.abs(e) ** 2).sum(axis=1)
    return np.asarray(two_time(frames), dtype=np.float64)


def test_measured_two_time_map_is_not_stationary():
    c = np.load(DATA / "nsls2_two_time_350.npy")
    r = twotime_stationarity(c)
    assert r["non_stationary"] and r["slope"] > 0 and r["p_value"] < 0.05
    assert r["tau"][-1] > 2 * r["tau"][0]  # ~16 -> ~73 frames
    # the sign of the trend does not depend on the windowing
    for n_windows in range(5, 11):
        assert twotime_stationarity(c, n_windows=n_windows)["slope"] > 0, n_windows


def test_closed_form_two_time_maps_give_their_tau_per_age():
    # C = 1 + 0.1 exp(-2 |t1 - t2| / tau(age)) + white noise: stationary (tau 40) and ageing (tau = 20 -> 80)
    rng = np.random.default_rng(0)
    n_t = 600
    t1, t2 = np.meshgrid(np.arange(n_t), np.arange(n_t), indexing="ij")
    noise = rng.normal(size=(n_t, n_t)) * 0.03
    noise = (noise + noise.T) / np.sqrt(2)
    for tau_of_age, flagged in ((lambda a: np.full_like(a, 40.0), False), (lambda a: 20.0 + 60.0 * a / n_t, True)):
        c = 1.0 + 0.1 * np.exp(-2.0 * np.abs(t1 - t2) / tau_of_age(0.5 * (t1 + t2))) + noise
        r = twotime_stationarity(c, frame_time=0.5)
        assert r["non_stationary"] is flagged
        assert r["beta"] == pytest.approx(1.0, abs=0.1) and r["baseline"] == pytest.approx(1.0, abs=2e-3)
        truth = 0.5 * tau_of_age(r["age"] / 0.5)  # s
        ok = np.isfinite(r["tau"])
        assert ok.sum() >= 6
        np.testing.assert_allclose(r["tau"][ok], truth[ok], rtol=0.2)


def test_stationary_and_ageing_synthetic_two_time_maps():
    flagged = []
    for seed in range(6):  # stationary: tau 30 frames everywhere
        r = twotime_stationarity(_speckle_two_time(350, 30.0, seed))
        flagged.append(r["non_stationary"])
        # a map of ~12 relaxation times: over 20 seeds the median window tau spread 24-39 frames, the
        # all-ages beta 0.70-1.28 (true 30 and 1)
        assert abs(np.log(np.nanmedian(r["tau"]) / 30.0)) < np.log(1.35), r["tau"]
        assert r["beta"] == pytest.approx(1.0, abs=0.4)
    assert sum(flagged) <= 1  # a 5 % test (measured 3 of 40 maps flagged)
    ages = np.geomspace(15.0, 90.0, 350)  # ageing: tau from 15 to 90 frames
    detected = [twotime_stationarity(_speckle_two_time(350, ages, 200 + seed)) for seed in range(3)]
    assert sum(r["non_stationary"] and r["slope"] > 0 for r in detected) >= 2  # measured: 9 of 10 seeds
    with pytest.raises(ValueError, match="square"):
        twotime_stationarity(np.ones((5, 6)))
    with pytest.raises(ValueError, match="n_windows"):
        twotime_stationarity(np.ones((50, 50)), n_windows=2)
