"""The demo job: synthetic nanowire -> series store -> g2 -> region summary against the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run_demo(output: str | Path, params, *, overwrite: bool = False, progress: bool = True) -> str:
    """Run everything the pipeline has so far on a synthetic series; return a printable summary."""
    import xarray as xr

    from .. import schema as S
    from ..kernels.kww import FIT_OK
    from ..kernels.stationarity import tau_model_free
    from ..ops.regions import roi_average
    from ..store.info import describe, truth_summary
    from ..synth import write_synthetic_series
    from .correlate import run_g2
    from .drift import run_drift
    from .fit import run_fit
    from .results import assemble_results

    output = Path(output)
    series = write_synthetic_series(output / "series.zarr", params, overwrite=overwrite, progress=progress)
    truth = xr.open_zarr(series, group=S.TRUTH_GROUP).load()
    # drift: a bright, static, textured reference found automatically (no ground truth used), then phase
    # correlation of that region only
    drift_path = run_drift(series, output / "drift.zarr", figure=output / "drift.png", margin=16,  # <= 16 px drift
                           overwrite=overwrite, progress=progress)
    drift = xr.open_zarr(drift_path).load()
    roi = drift.attrs["reference_roi_px"]
    drift_rms = np.sqrt(((drift[S.SHIFT].values - truth[S.SHIFT].values) ** 2).mean(axis=0))
    g2_path = run_g2(series, output / "g2.zarr", shifts=drift[S.SHIFT].values, overwrite=overwrite,
                     progress=progress)
    res = xr.open_zarr(g2_path).load()
    maps_path = run_fit(g2_path, output / "maps.zarr", overwrite=overwrite, progress=progress)
    results = assemble_results(output / "results.zarr", maps_path, g2_path, drift_path, overwrite=overwrite)
    maps = xr.open_zarr(results).load()
    lines = [describe(series), truth_summary(series),
             f"drift: reference ROI {roi[0]}:{roi[1]},{roi[2]}:{roi[3]} (suggested automatically), "
             f"{int(drift.outlier.sum())} outlier frame(s); RMS error vs truth (dy, dx) = "
             f"({drift_rms[0]:.3f}, {drift_rms[1]:.3f}) px; trace in {output / 'drift.zarr'}, figure "
             f"{output / 'drift.png'}",
             f"g2: {g2_path}  {dict(res.g2.sizes)}, "
             f"{res.attrs['estimator']} / {res.attrs['normalization']}, estimated drift undone in whole pixels",
             f"maps: {output / 'maps.zarr'}  KWW fit per pixel, {int((maps.status == FIT_OK).sum())} of "
             f"{maps.status.size} pixels fitted ok",
             "per region: median of the per-pixel fits, and the model-free tau of the region-averaged g2, vs truth:"]
    for code in (S.REGION_BULK, S.REGION_SURFACE):
        mask = (truth[S.TRUTH_REGION] == code) & (res.status == 0)
        roi = roi_average(res, mask)
        tau = tau_model_free(roi.g2.values, roi[S.LAG].values)
        true = float(np.exp(np.log(truth[S.TRUTH_TAU].where(mask)).median()))
        true_beta = float(truth[S.TRUTH_BETA].where(mask).median())
        fitted = mask & (maps.status == FIT_OK)
        lines.append(f"  {S.REGION_NAMES[code]:8s} {int(mask.sum()):5d} px: fitted tau {float(maps.tau.where(fitted).median()):7.2f} s"
                     f", beta {float(maps.beta.where(fitted).median()):.2f}; region g2 tau {tau:7.2f} s   "
                     f"(truth: tau {true:7.2f} s, beta {true_beta:.2f})")
    lines.append(f"results: {results}  (xr.open_zarr: the maps; xr.open_datatree(..., engine='zarr'): "
                 "maps, /g2, /drift)")
    from .report import write_report

    lines.append(f"report: {write_report(results, output / 'report')} (figures and summary)")
    lines.append(f"demo output: {output.resolve()}")
    return "\n".join(lines)
