"""Temperature series: combine runs along `temperature`; Arrhenius and VFT fits against known laws."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.analysis.temperature import arrhenius, combine, fit_arrhenius, fit_vft, tau_vs_temperature, vft
from ecm_dask.errors import InputError
from ecm_dask.synth import SynthParams, truth_dataset

T_C = np.linspace(240.0, 275.0, 8)
VFT_TRUE = {"tau0": 1e-12, "B_K": 3000.0, "T0_K": 400.0}  # D = 7.5
ARR_TRUE = {"tau0": 1e-30, "Ea_eV": 3.0}


def test_noise_free_laws_are_recovered_exactly():
    tau = vft(T_C, **VFT_TRUE)
    for err in (None, 0.05 * tau):
        f = fit_vft(T_C, tau, err)
        assert f.params["B_K"] == pytest.approx(3000.0, rel=1e-6)
        assert f.params["T0_K"] == pytest.approx(400.0, rel=1e-6)
        assert f.params["tau0"] == pytest.approx(1e-12, rel=1e-6)
        assert f.params["D"] == pytest.approx(7.5, rel=1e-6)
        np.testing.assert_allclose(f(T_C), tau, rtol=1e-6)
    tau = arrhenius(T_C, **ARR_TRUE)
    f = fit_arrhenius(T_C, tau, 0.05 * tau)
    assert f.params["Ea_eV"] == pytest.approx(3.0, rel=1e-9) and f.params["tau0"] == pytest.approx(1e-30, rel=1e-6)


def test_noisy_fits_have_calibrated_errors():
    """Over 150 noisy data sets: pulls (estimate - truth) / error have mean ~0 and width ~1."""
    s = 0.03  # relative error of tau
    pulls_v, pulls_a = [], []
    tau_v, tau_a = vft(T_C, **VFT_TRUE), arrhenius(T_C, **ARR_TRUE)
    for r in range(150):
        rng = np.random.default_rng(r)
        noisy = tau_v * np.exp(rng.normal(0.0, s, T_C.size))
        f = fit_vft(T_C, noisy, s * noisy)
        pulls_v.append([(f.params[k] - v) / f.errors[k] for k, v in (("B_K", 3000.0), ("T0_K", 400.0), ("D", 7.5))])
        noisy = tau_a * np.exp(rng.normal(0.0, s, T_C.size))
        f = fit_arrhenius(T_C, noisy, s * noisy)
        pulls_a.append([(f.params["Ea_eV"] - 3.0) / f.errors["Ea_eV"],
                        np.log(f.params["tau0"] / 1e-30) / (f.errors["tau0"] / f.params["tau0"])])
    for pulls in (np.array(pulls_v), np.array(pulls_a)):
        assert np.all(np.abs(pulls.mean(axis=0)) < 0.3), pulls.mean(axis=0)
        assert np.all((pulls.std(axis=0) > 0.8) & (pulls.std(axis=0) < 1.25)), pulls.std(axis=0)
        assert np.all(np.mean(np.abs(pulls) < 3, axis=0) > 0.97)


def test_fit_without_errors_and_bad_input():
    rng = np.random.default_rng(1)
    tau = vft(T_C, **VFT_TRUE) * np.exp(rng.normal(0, 0.02, T_C.size))
    f = fit_vft(T_C, tau)
    assert not f.absolute_sigma and abs(f.params["T0_K"] - 400.0) < 4 * f.errors["T0_K"]
    assert f.params["T0_K"] < T_C.min() + 273.15
    with pytest.raises(InputError, match="at least 4"):
        fit_vft(T_C[:3], tau[:3])
    with pytest.raises(InputError, match="one tau per temperature"):
        fit_arrhenius(T_C, tau[:4])


def _maps(temperature, tau_bulk, ny=48):
    p = SynthParams(ny=ny, nx=64, n_frames=10, seed=4, tau_bulk_s=float(tau_bulk), temperature_C=float(temperature))
    t = truth_dataset(p)
    maps = t[["tau", "beta"]].assign(status=(t.tau.dims, np.zeros(t.tau.shape, np.uint8)))
    maps.attrs[S.ATTR_TEMPERATURE] = float(temperature)
    return maps, t


def test_combine_and_vft_of_the_medians():
    temps = [250.0, 245.0, 260.0, 255.0, 265.0]  # unsorted on purpose
    law = {"tau0": 1e-10, "B_K": 2000.0, "T0_K": 420.0}
    runs = [_maps(T, vft(T, **law)) for T in temps]
    c = combine([m for m, _ in runs], regions=[t for _, t in runs], n_boot=50)
    assert list(c[S.TEMPERATURE].values) == sorted(temps) and c.attrs["maps_kept"]
    assert c.tau_map.dims == (S.TEMPERATURE, S.Y, S.X) and c[S.TEMPERATURE].attrs["units"] == "degC"
    curve = tau_vs_temperature(c, "bulk")
    for T, (m, t) in zip(temps, runs):
        direct = np.median(m.tau.values[t.region.values == S.REGION_BULK])
        assert float(curve.tau.sel(temperature=T)) == pytest.approx(direct, rel=1e-5)  # median of log10: even n
    # same seed at every T: the bulk median is the same fraction of tau_bulk_s, so B and T0 are exact
    f = fit_vft(curve.temperature.values, curve.tau.values)
    assert f.params["B_K"] == pytest.approx(2000.0, rel=1e-5) and f.params["T0_K"] == pytest.approx(420.0, rel=1e-5)
    # temperatures from the attributes match, explicit ones override
    c2 = combine([m for m, _ in runs], [T + 1 for T in temps], n_boot=20, keep_maps=False)
    assert list(c2.temperature.values) == sorted(T + 1 for T in temps) and "tau_map" not in c2
    assert list(c2.region.values) == ["all"]
    np.testing.assert_array_equal(c.tau_map.sel(temperature=255.0).values, runs[3][0].tau.values)


def test_combine_different_grids_keeps_statistics_only():
    a, _ = _maps(250.0, 10.0)
    b, _ = _maps(260.0, 3.0, ny=40)
    c = combine([a, b], n_boot=20)
    assert not c.attrs["maps_kept"] and "tau_map" not in c and c.sizes[S.TEMPERATURE] == 2
    assert float(tau_vs_temperature(c).tau.sel(temperature=260.0)) < float(tau_vs_temperature(c).tau.sel(
        temperature=250.0))
    with pytest.raises(InputError, match="different pixel grids"):
        combine([a, b], keep_maps=True)
    with pytest.raises(InputError, match="distinct"):
        combine([a, a])
    a.attrs.pop(S.ATTR_TEMPERATURE)
    with pytest.raises(InputError, match="temperatures="):
        combine([a, b])
    with pytest.raises(InputError, match="region 'nope'"):
        tau_vs_temperature(c, "nope")
    assert isinstance(c, xr.Dataset)
