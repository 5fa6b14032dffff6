"""Drift stage: series store -> ``drift.zarr`` (shift per frame from a reference ROI) and its figure."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import ParameterError
from ..store.blocks import write_dataset

#: frames used to suggest a reference region automatically (little drift accumulates over them)
SUGGEST_FRAMES = 400
#: of which at most about this many, evenly spaced, enter the (float32) statistics
SUGGEST_SAMPLE = 100


def suggest_roi(series, size: tuple[int, int] = (24, 24)) -> tuple[int, int, int, int]:
    """A bright, static, textured region from the mean and variance of the first frames."""
    from ..kernels import drift as KD
    from ..kernels.drift import suggest_reference

    ny, nx = series.sizes[S.Y], series.sizes[S.X]
    if min(ny, nx) < KD.MIN_SIZE:
        raise ParameterError(f"frames of {ny} x {nx} pixels are too small to estimate drift (at least "
                             f"{KD.MIN_SIZE} x {KD.MIN_SIZE}); run without drift correction (--no-drift)")
    size = (min(size[0], ny), min(size[1], nx))  # small frames: the whole frame at most
    n = min(SUGGEST_FRAMES, series.sizes[S.TIME])
    step = max(1, n // SUGGEST_SAMPLE)  # the same stretch of time, every step-th frame: the statistics are cheap
    head = np.asarray(series[S.INTENSITY].isel({S.TIME: slice(0, n, step)}).values)
    with warnings.catch_warnings():  # an all-NaN pixel gives NaN statistics, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        if head.dtype.kind == "f":  # NaN frames are skipped
            head = head.astype(np.float32, copy=False)
            mean, var = np.nanmean(head, axis=0), np.nanvar(head, axis=0)
            # a pixel NaN/inf in a frame that has data elsewhere (a dead or masked pixel) would leave the frame
            # out of the registration: never in the reference (NaN marks it for suggest_reference)
            bad = ~np.isfinite(head)
            holes = bad[~bad.all(axis=(1, 2))].any(axis=0)
            mean[holes] = np.nan
        else:
            mean = head.mean(axis=0, dtype=np.float32)
            var = np.square(head - mean, dtype=np.float32).mean(axis=0, dtype=np.float32)
    if not np.isfinite(mean).any() or not (np.nan_to_num(mean) > 0).any():
        raise ParameterError(f"no drift reference can be found: the first {n} frames are "
                             f"{'all NaN' if not np.isfinite(mean).any() else 'dark (no positive counts)'}; give a "
                             "reference with --reference-roi Y0:Y1,X0:X1 or run without drift correction (--no-drift)")
    finite = mean[np.isfinite(mean)]
    if finite.size and finite.min() == finite.max():
        raise ParameterError(f"no drift reference can be found: the first {n} frames are uniform ({finite[0]:g} counts "
                             "in every pixel, nothing to register); give a reference with --reference-roi Y0:Y1,X0:X1 "
                             "or run without drift correction (--no-drift)")
    try:
        return suggest_reference(mean, var, size=size)
    except ValueError as err:
        raise ParameterError(f"no drift reference can be found in the first {n} frames ({err}); give one with "
                             "--reference-roi Y0:Y1,X0:X1 or run without drift correction (--no-drift)") from None


def run_drift(series_path: str | os.PathLike, output: str | os.PathLike, *, roi=None, figure=None,
              overwrite: bool = False, progress: bool = True, **options: Any) -> Path:
    """Estimate the drift of a series store and write it (and optionally a figure of the trace).

    Parameters
    ----------
    series_path : a complete series store
    output : the ``drift.zarr`` to write
    roi : reference region (see :func:`ecm_dask.ops.drift.estimate_drift`); None to suggest one automatically
    figure : path of a PNG/SVG/PDF of the trace, or None
    **options : passed to :func:`ecm_dask.ops.drift.estimate_drift` (units, margin, reference, max_shift, ...)
    """
    from ..ops.drift import estimate_drift
    from ..plot import plot_drift
    from ..store.series import open_series

    ds = open_series(series_path)
    suggested = roi is None
    if suggested:
        roi = suggest_roi(ds)
    try:
        drift = estimate_drift(ds, roi, **options)
    except ParameterError as err:  # the region was chosen here, not by the user: say so and what to do
        if not suggested:
            raise
        raise ParameterError(f"the drift reference suggested automatically cannot be used: {err} (give a reference "
                             "with --reference-roi Y0:Y1,X0:X1 or run without drift correction: --no-drift)") from None
    drift.attrs["reference_roi_suggested"] = suggested
    drift.attrs["series"] = os.path.abspath(series_path)
    path = write_dataset(drift, output, overwrite=overwrite, progress=progress, label=f"drift -> {output}")
    if figure is not None:
        plot_drift(drift, figure)
    return path
