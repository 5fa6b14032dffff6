"""Drift estimation on labelled series: per-frame shifts from a stable reference ROI.

Only the ROI plus a margin is read (with the store layout that touches only the inner chunks under it).
Shifts follow the convention of :mod:`ecm_dask.kernels.shift`: frame ``t`` shows the sample displaced by
``+shift(t) = (dy, dx)`` pixels; :func:`ecm_dask.ops.correlate` undoes exactly these shifts.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import schema as S
from ..errors import ParameterError
from ..kernels import drift as KD
from ..store.series import read_pixels
from .correlation import _as_intensity
from .regions import parse_roi

#: the reference ROI must vary spatially by more than this many times the shot-noise variance of the
#: averaged reference frames (Poisson counts: variance = mean / frames averaged); below it is flat
MIN_EXCESS_VARIANCE = 2.0
N_REFERENCE_FRAMES = 10


def estimate_drift(series, roi, *, units: str = "pixel", margin: int | None = None, reference: str = "mean",
                   upsample: int = 20, window: str | None = "hann", max_shift: float | None = None,
                   smooth: int = 0):
    """Estimate per-frame drift by phase correlation of a stable reference region.

    Parameters
    ----------
    series : series Dataset or its ``intensity``
    roi : the reference region (e.g. a crystallised, non-fluctuating bright chunk): ``(y0, y1, x0, x1)`` in
        ``units``, ``"Y0:Y1,X0:X1"``, or ``{"y": slice(nm0, nm1), "x": slice(...)}``
    units : ``"pixel"`` (default) or ``"nm"`` for a tuple or string ROI
    margin : pixels read around the ROI (default: ``max_shift`` rounded up, else 8)
    reference : ``"first"``, ``"mean"`` (of the first frames; default) or ``"iterative"`` (see the kernel)
    upsample : sub-pixel refinement factor of the upsampled DFT
    window : ``"hann"`` (default), ``"tukey"`` or None
    max_shift : largest plausible shift in pixels; larger estimates are an error naming the frame
    smooth : frames of moving smoothing after outlier replacement (0 = none)

    Returns
    -------
    Dataset: ``shift (time, axis)`` in pixels and ``shift_nm``, ``peak (time)`` (correlation quality),
    ``outlier (time)`` (replaced by interpolation); attrs record the ROI and settings.
    """

    intensity, frame_time = _as_intensity(series)
    ny, nx = intensity.sizes[S.Y], intensity.sizes[S.X]
    y0, y1, x0, x1 = parse_roi(roi, intensity, units)
    if max_shift is not None:
        if max_shift <= 0:
            raise ParameterError(f"max_shift must be positive, got {max_shift}")
        if min(y1 - y0, x1 - x0) < 2 * max_shift:
            raise ParameterError(f"reference ROI {y0}:{y1},{x0}:{x1} is {y1 - y0} x {x1 - x0} pixels, smaller than twice "
                             f"the maximum shift ({max_shift:g} px); choose a larger region or a smaller max_shift")
    m = int(np.ceil(max_shift)) if margin is None and max_shift is not None else (8 if margin is None else int(margin))
    ya, yb, xa, xb = max(0, y0 - m), min(ny, y1 + m), max(0, x0 - m), min(nx, x1 + m)
    frames = read_pixels(intensity, slice(None), slice(ya, yb), slice(xa, xb))
    counts = frames.dtype.kind in "iub"  # integer counts are all finite: no NaN handling, no float copy here
    if not counts:
        frames = frames.astype(np.float64)
    # a pixel without data in most frames (dead or masked) would leave every frame out: in each frame it takes
    # the mean of the frame's other pixels in the window (a flat spot; the window's texture does the registering)
    dead = np.zeros(frames.shape[1:], dtype=bool) if counts else (~np.isfinite(frames)).mean(axis=0) > 0.5
    if dead.any() and not dead.all():
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a frame without data: stays NaN, left out below
            fill = np.nanmean(np.where(dead, np.nan, frames), axis=(1, 2))
        frames[:, dead] = fill[:, None]
    # frames with NaN/inf in the reference window (a dropped or blanked frame) cannot be registered: they are
    # left out, their shift interpolated and flagged as outliers, and named in the attributes
    finite = np.ones(frames.shape[0], dtype=bool) if counts else np.isfinite(frames).all(axis=(1, 2))
    if finite.sum() < 2:
        raise ParameterError(f"reference ROI {y0}:{y1},{x0}:{x1}: {int((~finite).sum())} of {finite.size} frames hold "
                             "NaN/inf there; choose another reference (--reference-roi) or run with --no-drift")
    nonfinite = np.flatnonzero(~finite)
    all_frames = frames
    if nonfinite.size:
        frames = frames[finite]
    n_ref = min(N_REFERENCE_FRAMES, frames.shape[0])
    ref = frames[:n_ref].mean(axis=0)[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    shot = max(float(ref.mean()), 1e-12) / n_ref
    excess = float(ref.var()) / shot
    if not np.isfinite(excess) or excess < MIN_EXCESS_VARIANCE:
        raise ParameterError(f"reference ROI {y0}:{y1},{x0}:{x1} has no contrast beyond shot noise (spatial variance "
                         f"{excess:.2g}x the Poisson level); nothing to register: choose a textured static region "
                         "such as a crystallised chunk (ecm_dask.kernels.drift.suggest_reference proposes one)")
    try:
        shifts, peaks = KD.estimate_shifts(frames, reference=reference, upsample=upsample, window=window,
                                           max_shift=max_shift)
    except ValueError as exc:  # an option or a region the kernel cannot work with: name the ROI
        raise ParameterError(f"drift with reference ROI {y0}:{y1},{x0}:{x1}: {exc}") from None
    if nonfinite.size:  # back onto every frame: the left-out ones interpolated between their neighbours
        t_all, t_ok = np.arange(all_frames.shape[0]), np.flatnonzero(finite)
        shifts = np.stack([np.interp(t_all, t_ok, shifts[:, k]) for k in range(2)], axis=1)
        full = np.zeros(t_all.size)
        full[t_ok] = peaks
        peaks = full  # a peak of 0: an outlier for clean_shifts, flagged as such
    cleaned, outliers = KD.clean_shifts(shifts, peaks, smooth=smooth)
    outliers = np.asarray(outliers, dtype=bool)
    outliers[nonfinite] = True
    if max_shift is not None:
        big = np.flatnonzero(np.abs(cleaned).max(axis=1) > max_shift)
        if big.size:
            t = int(big[0])
            raise ParameterError(f"frame {t}: estimated drift ({cleaned[t, 0]:+.2f}, {cleaned[t, 1]:+.2f}) px exceeds "
                             f"max_shift = {max_shift:g} px; raise max_shift if the sample really moved that far")
    px = float(intensity[S.X].values[1] - intensity[S.X].values[0]) if nx > 1 else 1.0
    return drift_dataset(cleaned, peaks, outliers, intensity[S.TIME], px, {
        "reference_roi_px": [y0, y1, x0, x1], "margin_px": m, "reference": reference, "upsample": int(upsample),
        "window": str(window), "max_shift_px": max_shift, "smooth_frames": int(smooth),
        "n_outliers": int(outliers.sum()), "nonfinite_frames": [int(t) for t in nonfinite[:1000]],
        "dead_pixels_in_window": int(dead.sum()) if not dead.all() else 0})


def drift_dataset(shifts, peaks, outliers, time, pixel_size_nm: float, attrs: dict):
    """The drift stage's dataset from per-frame ``shifts (time, 2)`` in pixels, ``peaks`` and ``outliers``: one
    description for every producer of a ``drift.zarr`` (this estimator and the live watch)."""
    import xarray as xr

    shifts = np.asarray(shifts, dtype=np.float64)
    convention = "frame t shows the sample displaced by +shift(t): observed[t, y, x] = sample[y - dy, x - dx]"
    ds = xr.Dataset(
        {S.SHIFT: ((S.TIME, S.AXIS), shifts, {**S.coord_attrs(S.SHIFT, "estimated drift"), "convention": convention}),
         S.SHIFT_NM: ((S.TIME, S.AXIS), shifts * pixel_size_nm, {"units": "nm", "long_name": "estimated drift"}),
         "peak": (S.TIME, np.asarray(peaks), {"long_name": "phase-correlation peak height (registration quality)"}),
         "outlier": (S.TIME, np.asarray(outliers, dtype=bool),
                     {"long_name": "frame replaced by interpolation (weak peak or jump)"})},
        coords={S.TIME: time, S.AXIS: [S.Y, S.X]})
    ds.attrs.update(attrs)
    return ds
