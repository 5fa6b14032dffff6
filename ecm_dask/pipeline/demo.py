"""The demo job: synthetic nanowire -> series store -> the whole `ecm-dask run` -> regions vs the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def truth_comparison(results, series) -> list[str]:
    """Lines comparing a run's per-region answers with the synthetic truth (which the run never used).

    The truth median is given twice: over every pixel of the truth region, and over the pixels the run used
    (classified in that region and status ok), so that like is compared with like.
    """
    import xarray as xr

    from .. import schema as S

    tree = xr.open_datatree(results, engine="zarr")
    root = tree.to_dataset()
    truth = xr.open_zarr(series, group=S.TRUTH_GROUP).load()
    region = tree[S.REGIONS_GROUP].to_dataset()[S.REGION].values
    ok = root[S.STATUS].values == S.STATUS_OK
    tau, tau_t, reg_t = root[S.TAU].values, truth[S.TRUTH_TAU].values, truth[S.TRUTH_REGION].values
    lines = ["run vs ground truth (median tau; truth over the run's pixels | over all pixels of the truth region):"]
    medians = {}
    for code in (S.REGION_BULK, S.REGION_SURFACE):
        used = ok & (region == code)
        med = float(np.median(tau[used])) if used.any() else float("nan")
        at = float(np.nanmedian(np.where(reg_t > 0, tau_t, np.nan)[used])) if used.any() else float("nan")
        every = float(np.median(tau_t[reg_t == code]))
        medians[code] = (med, at, every)
        lines.append(f"  {S.REGION_NAMES[code]:8s} run {med:7.3g} s   truth {at:7.3g} s | {every:7.3g} s")
    (mb, ab, eb), (ms, as_, es) = medians[S.REGION_BULK], medians[S.REGION_SURFACE]
    dist = tree[S.DISTRIBUTIONS_GROUP].to_dataset()
    ci = ""
    if "surface_bulk_value" in dist:
        c = dist.sel({S.QUANTITY: "tau_ratio"})
        ci = f" [{float(c.surface_bulk_ci_low):.3f}, {float(c.surface_bulk_ci_high):.3f}]"
    lines.append(f"  surface/bulk ratio of median tau: run {ms / mb:.3f}{ci}   truth {as_ / ab:.3f} | {es / eb:.3f}")
    crystal = reg_t == S.REGION_CRYSTAL
    if crystal.any():
        lines.append(f"  static crystal (truth): {100 * np.mean(~ok[crystal]):.1f} % of its {int(crystal.sum())} "
                     "pixels not reported as dynamics")
    return lines


def run_demo(output: str | Path, params, *, overwrite: bool = False, progress: bool = True) -> str:
    """Write the synthetic series, run the whole pipeline on it as `ecm-dask run` does, write the report and
    return a printable summary next to the ground truth."""
    import xarray as xr

    from .. import schema as S
    from ..store.info import describe, truth_summary
    from ..synth import write_synthetic_series
    from .report import region_summary, write_report
    from .run import run_pipeline, stage_dir

    output = Path(output)
    series = write_synthetic_series(output / "series.zarr", params, overwrite=overwrite, progress=progress)
    results = output / "results.zarr"
    # the surface band as wide as the synthetic surface layer; everything else as `ecm-dask run` defaults
    surface_nm = params.surface_thickness_px * params.pixel_size_nm
    run_pipeline(series, results, overwrite=overwrite, progress=progress, surface_nm=surface_nm)
    truth = xr.open_zarr(series, group=S.TRUTH_GROUP).load()
    drift = xr.open_zarr(stage_dir(results) / "drift.zarr").load()
    roi = drift.attrs["reference_roi_px"]
    drift_rms = np.sqrt(((drift[S.SHIFT].values - truth[S.SHIFT].values) ** 2).mean(axis=0))
    lines = [describe(series), truth_summary(series),
             f"drift: reference ROI {roi[0]}:{roi[1]},{roi[2]}:{roi[3]} (suggested automatically), "
             f"{int(drift.outlier.sum())} outlier frame(s); RMS error vs truth (dy, dx) = "
             f"({drift_rms[0]:.3f}, {drift_rms[1]:.3f}) px",
             region_summary(results), *truth_comparison(results, series),
             f"results: {results}  (xr.open_datatree(..., engine='zarr'): maps at the root, /fit, /regions, "
             "/distributions, /artefacts, /g2, /drift)",
             f"report: {write_report(results, output / 'report')} (figures and summary)",
             f"demo output: {output.resolve()}"]
    return "\n".join(lines)
