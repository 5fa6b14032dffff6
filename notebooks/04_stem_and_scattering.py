# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # STEM mode: dynamics per scattering vector, and scattering profiles
#
# With the probe held at one spot, the camera records diffraction patterns `I(t, ky, kx)`. Every camera pixel
# gets its g2 (the same estimator as image mode), the g2 curves are averaged over rings of constant
# `q = |k|`, and a KWW fit per ring gives τ(q) and β(q). The time-averaged patterns give scattering profiles
# I(q), which we compare between two temperatures and fit with an Ornstein-Zernike law.
# Open it in Jupyter with `jupytext --to notebook 04_stem_and_scattering.py`, or run it as a script.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from ecm_dask.analysis.scattering import compare_profiles, fit_ornstein_zernike, radial_profile
from ecm_dask.analysis.stem import diffraction_g2, fit_rings
from ecm_dask.synth.diffraction import DiffractionParams, ring_truth, synthetic_diffraction, write_diffraction_series

workdir = Path(os.environ.get("ECM_NOTEBOOK_DIR") or tempfile.mkdtemp(prefix="ecm_stem_"))
PLOTS = os.environ.get("ECM_NOTEBOOK_PLOTS", "1") == "1"
if PLOTS:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        PLOTS = False
        print("(install matplotlib to see the plots)")

# A 48x48 camera, 0.2 nm^-1 per pixel, 2000 frames of 0.1 s. Known truth: an amorphous halo at q0 = 4.5 nm^-1
# where the relaxation is slowest (tau = 4 s), falling to 1.2 s far from it (de Gennes narrowing); beta = 0.8;
# a beam stop below 1 nm^-1; Poisson counts.
params = DiffractionParams(ny=48, nx=48, calibration=0.2, centre=(23.4, 24.3), n_frames=2000, seed=3)
store = write_diffraction_series(workdir / "diffraction.zarr", params, overwrite=True)
ds = xr.open_zarr(store)
print(ds)

# %% [markdown]
# The mean pattern shows the halo and the beam stop. Calibration and beam centre travel as attributes, and
# `ky`, `kx` are in nm^-1 from the beam centre.

# %%
mean_pattern = ds.intensity.mean("time").compute()
print("calibration", ds.attrs["k_calibration_nm-1_per_px"], "nm^-1/px, centre", ds.attrs["beam_centre_px"], "px")
if PLOTS:
    mean_pattern.plot(cmap="magma")
    plt.close("all")

# %% [markdown]
# ## g2 per ring and τ(q)
#
# `diffraction_g2` correlates every camera pixel in dask blocks (all frames of a tile each) and averages over
# rings, leaving the beam stop out through `mask`. Angular sectors per ring give jackknife errors.

# %%
g2q = diffraction_g2(ds, mask=~ds.beam_stop, q_bins=np.arange(1.0, 6.01, 0.5), n_sectors=8).compute()
print(g2q.g2.sel(q=4.5, method="nearest").sel(lag=slice(0, 5)).round(4).values)
fit = fit_rings(g2q)
tau_true, beta_true = ring_truth(params, g2q.ring.values, g2q.sizes["q"], g2q.lag.values)
table = xr.Dataset({"tau": fit.tau, "tau_err": fit.tau_err, "tau_true": ("q", tau_true), "beta": fit.beta,
                    "beta_err": fit.beta_err, "n_pixels": fit.n_pixels})
print(table.to_dataframe()[["n_pixels", "tau", "tau_err", "tau_true", "beta", "beta_err"]].round(3))
pull = (fit.tau - tau_true) / fit.tau_err
print(f"tau pulls: mean {float(pull.mean()):+.2f}, max |pull| {float(abs(pull).max()):.2f}; "
      f"slowest ring at q = {float(fit.q[int(np.argmax(fit.tau.values))]):.2f} nm^-1 (halo at {params.q0})")
assert float(abs(fit.tau / tau_true - 1).max()) < 0.15

# %%
if PLOTS:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    ring = g2q.sel(q=4.5, method="nearest")
    a1.errorbar(ring.lag, ring.g2, ring.g2_err, fmt=".", label="ring g2")
    fit.g2_fit.sel(q=4.5, method="nearest").plot(ax=a1, xscale="log", label="KWW fit")
    a1.legend()
    qq = np.linspace(1, 6, 200)
    a2.plot(qq, params.tau_at(qq), "k-", label="truth")
    a2.errorbar(fit.q_mean, fit.tau, fit.tau_err, fmt="o", label="fit per ring")
    a2.set(xlabel="q (nm$^{-1}$)", ylabel="tau (s)")
    a2.legend()
    plt.close("all")

# %% [markdown]
# ## Scattering profiles at two temperatures
#
# Short series at a "hot" and a "cold" temperature: on cooling the halo sharpens and moves out slightly.
# `radial_profile` averages each pixel over time, then over rings (error: pixel scatter in the ring);
# `compare_profiles` gives the difference with its error and a z-score per ring.

# %%
hot = synthetic_diffraction(params, n_frames=40, seed=10)
cold = synthetic_diffraction(params, n_frames=40, seed=11, q0=4.6, halo_width=0.6, halo=34.0)
bins = np.arange(1.0, 6.01, 0.2)
p_hot = radial_profile(hot, mask=~hot.beam_stop, q_bins=bins)
p_cold = radial_profile(cold, mask=~cold.beam_stop, q_bins=bins)
diff = compare_profiles(p_cold, p_hot)
significant = diff.q.where(abs(diff.z) > 5, drop=True)
print(f"rings differing by > 5 sigma: {significant.values.round(2)} nm^-1")
print(f"z below 2.5 nm^-1 (no change there): mean {float(diff.z.sel(q=slice(1, 2.5)).mean()):+.2f}, "
      f"std {float(diff.z.sel(q=slice(1, 2.5)).std()):.2f}")
assert float(abs(diff.z).sel(q=slice(4.3, 5.0)).max()) > 5
if PLOTS:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for p, label in ((p_hot, "hot"), (p_cold, "cold")):
        a1.errorbar(p.q_mean, p.intensity, p.intensity_err, fmt=".", label=label)
    a1.legend()
    diff.z.plot(ax=a2)
    plt.close("all")

# %% [markdown]
# ## Ornstein-Zernike fit of the small-angle part
#
# The synthetic profile holds a small-angle term `small_angle / (1 + (q / q_small)^2)`, an Ornstein-Zernike law
# with correlation length ξ = 1 / q_small = 1 nm. A smaller beam stop (0.45 nm^-1) shows more of it; fit it
# below the halo (whose tail would otherwise look like a rising background), on rings one pixel wide.

# %%
small_angle = synthetic_diffraction(params, n_frames=200, seed=12, beam_stop_q=0.45, small_angle=40.0)
p_sa = radial_profile(small_angle, mask=~small_angle.beam_stop)
oz = fit_ornstein_zernike(p_sa, q_range=(0.4, 2.2))
print(f"xi = {float(oz.xi):.3f} +- {float(oz.xi_err):.3f} nm (truth {1 / params.q_small:.3f} nm), "
      f"background {float(oz.background):.2f} +- {float(oz.background_err):.2f}, chi2 {float(oz.chi2):.2f} "
      f"({int(oz.n_points)} rings)")
assert abs(float(oz.xi) - 1 / params.q_small) < 4 * float(oz.xi_err) + 0.05
if PLOTS:
    p_sa.intensity.plot(marker=".", linestyle="none")
    oz.fit.plot()
    plt.close("all")
