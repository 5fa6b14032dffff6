"""Temperature series: results of several runs on one ``temperature`` dim, Arrhenius and VFT fits of τ(T).

:func:`combine` gathers per-temperature summary statistics (always) and the maps (when every run has the
same pixel grid); :func:`tau_vs_temperature` extracts the τ(T) curve of one region; :func:`fit_arrhenius`
and :func:`fit_vft` fit ``log τ`` with :func:`scipy.optimize.curve_fit`.

Laws (T in kelvin, ``T = T_C + 273.15``; fits are done on ``ln τ`` so that relative errors of τ weigh
equally):

* Arrhenius: ``tau = tau0 * exp(Ea / (k_B T))``, ``Ea`` in eV.
* Vogel-Fulcher-Tammann: ``tau = tau0 * exp(B / (T - T0))`` with the fragility parameter ``D = B / T0``
  (``tau = tau0 * exp(D T0 / (T - T0))``); ``0 < T0 < min(T)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import curve_fit

from .. import schema as S
from ..errors import InputError

__all__ = ["LawFit", "arrhenius", "combine", "fit_arrhenius", "fit_vft", "tau_vs_temperature", "vft"]

K_B_EV = 8.617333262e-5  # Boltzmann constant, eV/K
ZERO_C = 273.15


# ------------------------------------------------------------------------------------------- laws
def arrhenius(T_C, tau0, Ea_eV):
    """Arrhenius ``tau0 exp(Ea / (k_B T))`` at ``T_C`` in °C."""
    T = np.asarray(T_C, dtype=np.float64) + ZERO_C
    return tau0 * np.exp(Ea_eV / (K_B_EV * T))


def vft(T_C, tau0, B_K, T0_K):
    """VFT ``tau0 exp(B / (T - T0))`` at ``T_C`` in °C (``B``, ``T0`` in K)."""
    T = np.asarray(T_C, dtype=np.float64) + ZERO_C
    return tau0 * np.exp(B_K / (T - T0_K))


@dataclass
class LawFit:
    """Result of a τ(T) fit.

    Attributes
    ----------
    law : "arrhenius" or "vft"
    params, errors : dict
        Best values and 1-sigma errors: ``tau0`` (s) and ``Ea_eV``; or ``tau0`` (s), ``B_K``, ``T0_K``, ``D``.
    cov : ndarray
        Covariance of the fitted parameters (``ln tau0, Ea`` or ``ln tau0, B, T0``).
    chi2, dof : float, int
        Chi-square of ``ln tau`` and degrees of freedom.  With ``tau_err`` the errors are absolute; without,
        they are scaled by the residual scatter (``chi2/dof``).
    """

    law: str
    params: dict
    errors: dict
    cov: np.ndarray
    chi2: float
    dof: int
    absolute_sigma: bool = True
    extra: dict = field(default_factory=dict)

    def __call__(self, T_C):
        """τ (s) of the fitted law at ``T_C`` (°C)."""
        p = self.params
        if self.law == "arrhenius":
            return arrhenius(T_C, p["tau0"], p["Ea_eV"])
        return vft(T_C, p["tau0"], p["B_K"], p["T0_K"])


def _prepare(T_C, tau, tau_err, n_par: int):
    T = np.asarray(T_C, dtype=np.float64).ravel()
    t = np.asarray(tau, dtype=np.float64).ravel()
    if T.shape != t.shape:
        raise InputError(f"T_C has {T.size} value(s), tau {t.size}: give one tau per temperature")
    ok = np.isfinite(T) & np.isfinite(t) & (t > 0)
    sig = None
    if tau_err is not None:
        e = np.broadcast_to(np.asarray(tau_err, dtype=np.float64), t.shape).ravel()
        ok &= np.isfinite(e) & (e > 0)
        sig = (e / t)[ok]  # error of ln tau
    T, t = T[ok] + ZERO_C, t[ok]
    need = n_par + (tau_err is None)  # without errors, the residuals must leave a degree of freedom
    if T.size < need:
        raise InputError(f"need at least {need} temperatures with finite tau > 0 "
                         f"(and tau_err > 0) for this fit, got {T.size}")
    if np.any(T <= 0):
        raise InputError("T_C must be above absolute zero (degrees Celsius expected)")
    return T, np.log(t), sig


def _chi2(resid, sig):
    return float(np.sum((resid / (1.0 if sig is None else sig)) ** 2))


def fit_arrhenius(T_C, tau, tau_err=None) -> LawFit:
    """Fit ``tau = tau0 exp(Ea / (k_B T))`` to τ(T).

    Parameters
    ----------
    T_C : array of temperatures in °C
    tau : array of relaxation times (s)
    tau_err : array of 1-sigma errors of tau (s), optional (then errors come from the residual scatter)

    Returns
    -------
    LawFit with params ``tau0`` (s), ``Ea_eV`` and their errors.
    """
    T, y, sig = _prepare(T_C, tau, tau_err, 2)

    def model(T, ln_tau0, Ea):
        return ln_tau0 + Ea / (K_B_EV * T)

    # linear in the parameters: weighted least squares gives the exact start
    w = np.ones_like(T) if sig is None else 1.0 / sig
    A = np.stack([np.ones_like(T), 1.0 / (K_B_EV * T)], axis=1)
    p0 = np.linalg.lstsq(A * w[:, None], y * w, rcond=None)[0]
    popt, pcov = curve_fit(model, T, y, p0=p0, sigma=sig, absolute_sigma=sig is not None,
                           xtol=1e-15, ftol=1e-15, gtol=1e-15)
    err = np.sqrt(np.diag(pcov))
    tau0 = math.exp(popt[0])
    return LawFit("arrhenius", {"tau0": tau0, "Ea_eV": float(popt[1])},
                  {"tau0": tau0 * float(err[0]), "Ea_eV": float(err[1])}, pcov,
                  _chi2(y - model(T, *popt), sig), int(T.size - 2), sig is not None)


def _vft_profile(T, y, sig, T0):
    """Best (ln tau0, B) at fixed T0 and its chi-square (linear least squares)."""
    w = np.ones_like(T) if sig is None else 1.0 / sig
    A = np.stack([np.ones_like(T), 1.0 / (T - T0)], axis=1) * w[:, None]
    coef, *_ = np.linalg.lstsq(A, y * w, rcond=None)
    return coef, float(np.sum((A @ coef - y * w) ** 2))


def fit_vft(T_C, tau, tau_err=None, *, T0_max_K: float | None = None) -> LawFit:
    """Fit ``tau = tau0 exp(B / (T - T0))`` (``D = B / T0``) to τ(T), in ``ln tau``.

    The start comes from the profile over T0 (for fixed T0 the model is linear in ``ln tau0`` and ``B``):
    a grid of T0 in ``(0, min T)`` refined by a bounded scalar minimisation, then a bounded ``curve_fit``
    (``0 < T0 < T0_max_K``, default ``min(T) - 1e-3 K``; ``B > 0``) gives the covariance.

    Returns
    -------
    LawFit with params ``tau0`` (s), ``B_K``, ``T0_K``, ``D`` and their errors (``D``'s by propagation of the
    covariance of B and T0).  ``extra["T0_at_bound"]`` is True when T0 ends on a bound (then the errors
    are not meaningful: the data do not constrain the curvature).
    """
    from scipy.optimize import minimize_scalar

    T, y, sig = _prepare(T_C, tau, tau_err, 3)
    t_min = float(T.min())
    hi = t_min - 1e-3 if T0_max_K is None else min(float(T0_max_K), t_min - 1e-3)
    if not hi > 0:
        raise InputError(f"T0_max_K must be positive and below min(T) = {t_min:g} K")
    grid = np.linspace(0.0, hi, 200)[:-1]
    chis = [(_vft_profile(T, y, sig, g)[1], g) for g in grid]
    k = int(np.argmin([c for c, _ in chis]))
    lo_g, hi_g = grid[max(k - 1, 0)], (grid[k + 1] if k + 1 < grid.size else hi)
    res = minimize_scalar(lambda g: _vft_profile(T, y, sig, g)[1], bounds=(lo_g, hi_g), method="bounded",
                          options={"xatol": 1e-10 * max(hi, 1.0)})
    T0 = float(res.x)
    (ln_tau0, B), _ = _vft_profile(T, y, sig, T0)

    def model(T, ln_tau0, B, T0):
        return ln_tau0 + B / (T - T0)

    p0 = [ln_tau0, max(B, 1e-6), min(max(T0, 1e-6), hi * (1 - 1e-9))]
    popt, pcov = curve_fit(model, T, y, p0=p0, sigma=sig, absolute_sigma=sig is not None,
                           bounds=([-np.inf, 0.0, 0.0], [np.inf, np.inf, hi]), method="trf",
                           xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10000)
    err = np.sqrt(np.abs(np.diag(pcov)))
    ln_tau0, B, T0 = (float(v) for v in popt)
    D = B / T0 if T0 > 0 else np.inf
    # D = B / T0: gradient (1/T0, -B/T0^2)
    g = np.array([0.0, 1.0 / T0, -B / T0**2]) if T0 > 0 else np.full(3, np.nan)
    D_err = float(np.sqrt(max(g @ pcov @ g, 0.0)))
    tau0 = math.exp(ln_tau0)
    at_bound = bool(T0 <= 1e-6 * hi or T0 >= hi * (1 - 1e-6))
    return LawFit("vft", {"tau0": tau0, "B_K": B, "T0_K": T0, "D": D},
                  {"tau0": tau0 * float(err[0]), "B_K": float(err[1]), "T0_K": float(err[2]), "D": D_err}, pcov,
                  _chi2(y - model(T, *popt), sig), int(T.size - 3), sig is not None, {"T0_at_bound": at_bound})


# ------------------------------------------------------------------------------------------ labelled
def _open(result):
    import xarray as xr

    if isinstance(result, (str, os.PathLike)):
        return xr.open_zarr(result)
    if isinstance(result, xr.DataTree):
        return result.to_dataset()
    return result


def _temperature_of(ds, i: int) -> float:
    """Temperature (°C) from the maps' attributes, or from the series the run read."""
    t = ds.attrs.get(S.ATTR_TEMPERATURE)
    if t is None:
        series = (ds.attrs.get("run_config") or {}).get("series")
        if series and os.path.exists(series):
            import xarray as xr

            t = xr.open_zarr(series).attrs.get(S.ATTR_TEMPERATURE)
    if t is None:
        raise InputError(f"result {i}: no temperature in its attributes or its series; pass temperatures=[...] (°C)")
    return float(S.check_temperature(t, where=f"temperature of result {i}"))


def combine(results, temperatures=None, *, regions=None, names=None, keep_maps="auto",
            map_vars=("tau", "beta", "status"), n_boot: int = 200, ci: float = 0.68, seed=0):
    """Gather the results of several runs along a ``temperature`` dim (°C, sorted ascending).

    Parameters
    ----------
    results : sequence of results stores (paths), Datasets (the maps) or DataTrees
    temperatures : sequence of float (°C), optional
        Default: the ``temperature_C`` attribute of each result, else of the series its run read.
    regions : sequence of region Datasets / DataArrays (one per result), optional
        E.g. :func:`~ecm_dask.analysis.regions.classify` of each run; without them, every usable pixel
        forms one region ``all``.
    names : sequence of str, optional
        Regions to summarise (see :func:`~ecm_dask.analysis.distributions.region_statistics`).
    keep_maps : True, False or "auto"
        Also stack the maps ``map_vars`` on ``(temperature, y, x)``, named ``<var>_map`` (``tau_map``, ...).  They need the same pixel grid in every
        run (same ``y`` and ``x`` coordinates); "auto" keeps them only then, True raises if they differ.
    n_boot, ci, seed
        Bootstrap of the summary statistics; ``ci=0.68`` gives ~1-sigma intervals for the τ(T) fits.

    Returns
    -------
    xarray.Dataset: the :func:`region_statistics` variables with a leading ``temperature`` dim, plus the
    maps when kept.  Per-temperature statistics are always there, whatever the grids.
    """
    import xarray as xr

    from .distributions import region_statistics

    results = list(results)
    if not results:
        raise InputError("combine needs at least one result")
    datasets = [_open(r) for r in results]
    if temperatures is None:
        temperatures = [_temperature_of(ds, i) for i, ds in enumerate(datasets)]
    temperatures = [float(t) for t in temperatures]
    if len(temperatures) != len(datasets):
        raise InputError(f"got {len(temperatures)} temperature(s) for {len(datasets)} result(s)")
    if len(set(temperatures)) != len(temperatures):
        raise InputError(f"temperatures must be distinct, got {temperatures}")
    if regions is not None and len(regions) != len(datasets):
        raise InputError(f"got {len(regions)} region map(s) for {len(datasets)} result(s)")
    stats = []
    for i, ds in enumerate(datasets):
        reg = None if regions is None else regions[i]
        stats.append(region_statistics(ds, reg, names=names, n_boot=n_boot, ci=ci, seed=seed))
    tcoord = xr.Variable(S.TEMPERATURE, temperatures, S.coord_attrs(S.TEMPERATURE, "sample temperature"))
    out = xr.concat(stats, dim=tcoord)
    same_grid = all(ds.sizes.get(S.Y) == datasets[0].sizes.get(S.Y) and ds.sizes.get(S.X) == datasets[0].sizes.get(S.X)
                    and np.allclose(ds[S.Y].values, datasets[0][S.Y].values)
                    and np.allclose(ds[S.X].values, datasets[0][S.X].values) for ds in datasets)
    if keep_maps is True and not same_grid:
        raise InputError("keep_maps=True but the runs have different pixel grids; use keep_maps='auto' or False")
    if keep_maps and same_grid:
        maps = xr.concat([ds[list(map_vars)].reset_coords(drop=True).load() for ds in datasets], dim=tcoord,
                         join="override")
        maps = maps.rename({v: f"{v}_map" for v in map_vars})
        out = out.merge(maps)
    out.attrs.update({"maps_kept": bool(keep_maps and same_grid), "n_results": len(datasets)})
    return out.sortby(S.TEMPERATURE)


def tau_vs_temperature(combined, region: str | None = None):
    """τ(T) of one region from :func:`combine`: median τ with its interval, widths, median β.

    Returns
    -------
    xarray.Dataset on ``temperature``: ``tau`` (median, s), ``tau_err`` (half-width of the interval in s,
    symmetric approximation), ``log10_tau``, ``log10_tau_err``, ``log10_tau_iqr``, ``log10_tau_std``,
    ``beta``, ``beta_iqr``, ``n``.
    """
    import xarray as xr

    regs = list(combined[S.REGION].values)
    if region is None:
        region = regs[0]
    if region not in regs:
        raise InputError(f"region {region!r} is not in the combined results (have {regs})")
    c = combined.sel({S.REGION: region}).reset_coords(drop=True)

    def pick(name, stat, est="value"):
        return c[name].sel({S.STATISTIC: stat, S.ESTIMATE: est}).reset_coords(drop=True)

    val = pick("log10_tau", "median")
    half = 0.5 * (pick("log10_tau", "median", "ci_high") - pick("log10_tau", "median", "ci_low"))
    tau = 10.0 ** val
    out = xr.Dataset({
        "tau": tau.assign_attrs(units="s", long_name=f"median tau ({region})"),
        "tau_err": (tau * np.log(10.0) * half).assign_attrs(units="s"),
        "log10_tau": val, "log10_tau_err": half,
        "log10_tau_iqr": pick("log10_tau", "iqr"), "log10_tau_std": pick("log10_tau", "std"),
        "beta": pick("beta", "median"), "beta_iqr": pick("beta", "iqr"), "n": c["n"]})
    return out.assign_attrs(
        region=str(region), ci=combined.attrs.get("ci"))
