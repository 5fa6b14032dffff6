"""``ecm-dask compare``: results of runs at several temperatures -> per-region τ(T), Arrhenius and VFT fits, a
figure and a combined store.

Each result's own region map (``/regions``) defines its bulk and surface; the per-region medians of τ with their
bootstrap intervals (:func:`ecm_dask.analysis.temperature.combine`, 68 % intervals ~ 1 σ) are fitted with the
Arrhenius law (two or more temperatures) and the VFT law (four or more: three parameters need a degree of freedom).
Written atomically into the output folder: ``tau_vs_T.png``, ``compare.json`` and ``combined.zarr``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import InputError
from ..store.paths import replacing_folder

REGIONS = ("bulk", "surface")


def compare_results(results, output, *, temperatures=None, n_boot: int = 200) -> dict:
    """Compare results stores; returns the summary written to ``compare.json``."""
    import matplotlib

    matplotlib.use("Agg")
    from ..analysis.temperature import combine, fit_arrhenius, fit_vft, tau_vs_temperature
    from .report import open_results

    results = [Path(r) for r in results]
    if len(results) < 2:
        raise InputError("compare needs the results of at least two runs (at different temperatures)")
    trees = [open_results(r) for r in results]
    regions = []
    for r, t in zip(results, trees):
        if S.REGIONS_GROUP not in t.children:
            raise InputError(f"{r}: no /regions group (a results store from `ecm-dask run` has one)")
        regions.append(t[S.REGIONS_GROUP].to_dataset())
    combined = combine([t.to_dataset() for t in trees], temperatures, regions=regions, names=REGIONS,
                       keep_maps=False, n_boot=n_boot, ci=0.68)
    summary: dict = {"results": [str(r) for r in results],
                     "temperature_C": [float(v) for v in combined[S.TEMPERATURE].values], "regions": {}}
    curves = {}
    for name in REGIONS:
        c = tau_vs_temperature(combined, name)
        tau, err = c["tau"].values, c["tau_err"].values
        ok = np.isfinite(tau) & (tau > 0)
        row: dict = {"tau_s": [None if not np.isfinite(v) else float(v) for v in tau],
                     "tau_err_s": [None if not np.isfinite(v) else float(v) for v in err],
                     "beta": [None if not np.isfinite(v) else float(v) for v in c["beta"].values],
                     "pixels": [int(v) for v in c["n"].values]}
        T = combined[S.TEMPERATURE].values
        errs = np.where(np.isfinite(err) & (err > 0), err, np.nan)
        use_err = errs[ok] if np.isfinite(errs[ok]).all() else None
        for law, fit, need in (("arrhenius", fit_arrhenius, 2), ("vft", fit_vft, 4)):
            if ok.sum() < need:
                row[law] = f"not fitted: {int(ok.sum())} temperature(s) with a tau, {need} needed"
                continue
            try:
                f = fit(T[ok], tau[ok], use_err)
            except (InputError, RuntimeError, ValueError) as exc:
                row[law] = f"not fitted: {exc}"
                continue
            row[law] = {"params": {k: float(v) for k, v in f.params.items()},
                        "errors": {k: float(v) for k, v in f.errors.items()}, "chi2": float(f.chi2), "dof": int(f.dof)}
            curves[(name, law)] = f
        summary["regions"][name] = row
    with replacing_folder(output) as tmp:
        _figure(combined, summary, curves).savefig(tmp / "tau_vs_T.png", dpi=110)
        (tmp / "compare.json").write_text(json.dumps(summary, indent=2))
        combined.to_zarr(tmp / "combined.zarr", mode="w", zarr_format=3, consolidated=False)
    return summary


def _figure(combined, summary, curves):
    from matplotlib.figure import Figure

    from ..analysis.temperature import ZERO_C

    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.subplots()
    T = np.asarray(combined[S.TEMPERATURE].values, dtype=np.float64)
    x = 1000.0 / (T + ZERO_C)
    for name, colour in zip(REGIONS, ("tab:green", "tab:red")):
        row = summary["regions"][name]
        tau = np.array([np.nan if v is None else v for v in row["tau_s"]])
        err = np.array([np.nan if v is None else v for v in row["tau_err_s"]])
        bars = ax.errorbar(x, tau, yerr=err, fmt="o", color=colour, capsize=3, label=f"{name} median τ")
        bars.lines[0].set_gid(f"tau:{name}")
        grid = np.linspace(T.min() - 2, T.max() + 2, 100)
        for law, style in (("arrhenius", "-"), ("vft", "--")):
            f = curves.get((name, law))
            if f is not None:
                label = (f"{name} Arrhenius Ea {f.params['Ea_eV']:.2f} eV" if law == "arrhenius"
                         else f"{name} VFT T0 {f.params['T0_K']:.0f} K")
                ax.plot(1000.0 / (grid + ZERO_C), f(grid), style, color=colour, label=label, gid=f"{law}:{name}")
    ax.set_yscale("log")
    ax.set_xlabel("1000 / T (1/K)")
    ax.set_ylabel("τ (s)")
    ax.set_title("relaxation time against temperature, per region")
    ax.legend(fontsize=8)
    return fig


def summary_lines(summary: dict) -> list[str]:
    lines = []
    for name, row in summary["regions"].items():
        taus = ", ".join(f"{t:g} °C: {'n/a' if v is None else f'{v:.3g} s'}"
                         for t, v in zip(summary["temperature_C"], row["tau_s"]))
        lines.append(f"{name:8s} median tau  {taus}")
        a = row.get("arrhenius")
        if isinstance(a, dict):
            lines.append(f"{'':8s} Arrhenius  Ea = {a['params']['Ea_eV']:.3g} ± {a['errors']['Ea_eV']:.2g} eV")
        elif a:
            lines.append(f"{'':8s} Arrhenius  {a}")
        v = row.get("vft")
        if isinstance(v, dict) and v["params"]["T0_K"] < 1.0:
            lines.append(f"{'':8s} VFT        T0 -> 0 K: the data need no VFT curvature (they follow Arrhenius)")
        elif isinstance(v, dict):
            lines.append(f"{'':8s} VFT        T0 = {v['params']['T0_K']:.4g} ± {v['errors']['T0_K']:.2g} K, "
                         f"D = {v['params']['D']:.3g}")
        elif v:
            lines.append(f"{'':8s} VFT        {v}")
    return lines
