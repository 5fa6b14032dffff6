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
    intensity = series[S.INTENSITY]
    if intensity.dtype.kind in "iub":
        mean, var = _count_statistics(intensity, n, step)
    else:
        head = np.asarray(intensity.isel({S.TIME: slice(0, n, step)}).values).astype(np.float32, copy=False)
        with warnings.catch_warnings():  # an all-NaN pixel gives NaN statistics, handled below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, var = np.nanmean(head, axis=0), np.nanvar(head, axis=0)  # NaN frames are skipped
        # a pixel NaN/inf in a frame that has data elsewhere (a dead or masked pixel) would leave the frame
        # out of the registration: never in the reference (NaN marks it for suggest_reference)
        bad = ~np.isfinite(head)
        holes = bad[~bad.all(axis=(1, 2))].any(axis=0)
        mean[holes] = np.nan
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


def _count_statistics(intensity, n: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance (float32) of integer counts over frames ``0, step, 2 step, ... < n``, read one stored run of
    frames at a time (straight from the store when it is one) and summed exactly in float64: no stack of frames
    and no float temporaries of the whole sample."""
    from ..store.series import read_pixels, store_backed

    frames = np.arange(0, n, step)
    chunks = getattr(intensity, "chunks", None)
    run = int(max(chunks[0])) if chunks else n  # in memory (no chunks): views, nothing is copied
    ny, nx = intensity.shape[1:]
    s1, s2 = np.zeros((ny, nx)), np.zeros((ny, nx))
    buf = np.empty((min(run, n), ny, nx), dtype=intensity.dtype) if store_backed(intensity) else None
    f = np.empty((ny, nx))
    for t0 in range(0, int(frames[-1]) + 1, run):
        t1 = min(n, t0 + run)
        block = read_pixels(intensity, slice(t0, t1), slice(None), slice(None),
                            out=None if buf is None else buf[:t1 - t0])
        for t in frames[(frames >= t0) & (frames < t1)]:
            np.copyto(f, block[t - t0], casting="unsafe")
            s1 += f
            f *= f
            s2 += f
    mean = s1 / frames.size
    var = np.maximum(s2 / frames.size - mean * mean, 0.0)
    return mean.astype(np.float32), var.astype(np.float32)


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
