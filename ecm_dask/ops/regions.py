"""Region-level correlation on labelled data: ROI-averaged g2, two-time correlation, stationarity check."""

from __future__ import annotations

import numpy as np

from .. import schema as S
from ..errors import ParameterError
from ..kernels import regions as KR
from ..kernels import stationarity as KS
from ..kernels import twotime as KT
from .correlation import _as_intensity, _frame_mask

TIME1, TIME2 = "time1", "time2"


def roi_from_text(text: str, what: str = "reference ROI") -> tuple[float, float, float, float]:
    """``(y0, y1, x0, x1)`` from a ``"Y0:Y1,X0:X1"`` string (numbers, not yet checked against a frame), or a
    :class:`ParameterError` naming ``what``."""
    try:
        ys, xs = text.split(",")
        (y0, y1), (x0, x1) = (tuple(float(v) for v in part.split(":")) for part in (ys, xs))
    except ValueError:
        raise ParameterError(f"{what} {text!r} must look like 'Y0:Y1,X0:X1'") from None
    return y0, y1, x0, x1


def parse_roi(roi, intensity, units: str = "pixel") -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` in pixels from a tuple (pixels or nm), a ``"Y0:Y1,X0:X1"`` string or a dict of slices."""
    ny, nx = intensity.sizes[S.Y], intensity.sizes[S.X]
    if isinstance(roi, str):
        roi = roi_from_text(roi)
    if isinstance(roi, dict):
        ys, xs = roi.get(S.Y, slice(None)), roi.get(S.X, slice(None))
        yv, xv = intensity[S.Y].values, intensity[S.X].values
        iy = np.flatnonzero((yv >= (ys.start if ys.start is not None else -np.inf))
                            & (yv <= (ys.stop if ys.stop is not None else np.inf)))
        ix = np.flatnonzero((xv >= (xs.start if xs.start is not None else -np.inf))
                            & (xv <= (xs.stop if xs.stop is not None else np.inf)))
        if not iy.size or not ix.size:
            raise ParameterError(f"reference ROI {roi} selects no pixel")
        return int(iy[0]), int(iy[-1]) + 1, int(ix[0]), int(ix[-1]) + 1
    if len(roi) != 4:
        raise ParameterError(f"reference ROI must be (y0, y1, x0, x1), got {roi!r}")
    vals = [float(v) for v in roi]
    if units == "nm":
        px = float(intensity[S.X].values[1] - intensity[S.X].values[0]) if nx > 1 else 1.0
        vals = [v / px for v in vals]
    elif units != "pixel":
        raise ParameterError(f"ROI units must be 'pixel' or 'nm', got {units!r}")
    y0, y1, x0, x1 = (int(round(v)) for v in vals)
    if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
        raise ParameterError(f"reference ROI {y0}:{y1},{x0}:{x1} (pixels) is not inside the frame of {ny} x {nx} pixels")
    return y0, y1, x0, x1


def _mask_2d(mask, like):
    """A (y, x) boolean numpy mask from a DataArray, an array, or a dict of y/x slices in nm."""
    if isinstance(mask, dict):
        y0, y1, x0, x1 = parse_roi(mask, like)
        m = np.zeros((like.sizes[S.Y], like.sizes[S.X]), dtype=bool)
        m[y0:y1, x0:x1] = True
        return m
    m = np.asarray(getattr(mask, "values", mask))
    if m.shape != (like.sizes[S.Y], like.sizes[S.X]):
        raise ValueError(f"mask has shape {m.shape}, expected (y, x) = ({like.sizes[S.Y]}, {like.sizes[S.X]})")
    return m.astype(bool)


def roi_average(g2, mask):
    """Average per-pixel g2 curves over a region.

    Parameters
    ----------
    g2 : DataArray (y, x, lag), or the Dataset from :func:`ecm_dask.ops.correlate`
    mask : boolean (y, x) DataArray/array, or ``{"y": slice(nm0, nm1), "x": slice(...)}``

    Returns
    -------
    Dataset with ``g2 (lag)``, its standard error ``g2_sem (lag)`` across pixels and ``n_pixels (lag)``.
    """
    import xarray as xr

    g = g2["g2"] if isinstance(g2, xr.Dataset) else g2
    m = _mask_2d(mask, g)
    mean, sem, n = KR.roi_average(np.asarray(g.transpose(S.Y, S.X, S.LAG).values), m)
    coords = {k: v for k, v in g.coords.items() if set(v.dims) <= {S.LAG}}
    return xr.Dataset({"g2": ((S.LAG,), mean, {"long_name": "ROI-averaged g2"}),
                       "g2_sem": ((S.LAG,), sem, {"long_name": "standard error across pixels"}),
                       "n_pixels": ((S.LAG,), n)}, coords=coords, attrs={**g.attrs, "roi_pixels": int(m.sum())})


def two_time(series, mask, *, bad_frames=None, bin_frames: int = 1, tile: int = 1024, out=None):
    """Two-time correlation C(t1, t2) of a region (all its pixels' frames must fit in memory; C is tiled).

    Parameters
    ----------
    series : series Dataset or its ``intensity``
    mask : the region: boolean (y, x), or ``{"y": slice, "x": slice}`` in nm
    bad_frames : frame indices or boolean (time,) mask of frames to leave out (NaN rows/columns)
    bin_frames : average this many consecutive frames first
    tile, out : see :func:`ecm_dask.kernels.twotime.two_time` (``out`` may be a zarr array or memmap)

    Returns
    -------
    DataArray ``(time1, time2)`` in seconds (lazy-free: computed), or ``out`` filled when given.
    """
    import xarray as xr

    intensity, frame_time = _as_intensity(series)
    m = _mask_2d(mask, intensity)
    iy, ix = np.nonzero(m)
    y0, y1, x0, x1 = iy.min(), iy.max() + 1, ix.min(), ix.max() + 1
    block = np.asarray(intensity.isel({S.Y: slice(y0, y1), S.X: slice(x0, x1)}).values)
    pix = block[:, m[y0:y1, x0:x1]]
    fm = _frame_mask(bad_frames, intensity.sizes[S.TIME])
    c = KT.two_time(pix, frame_mask=fm, tile=tile, out=out, bin_frames=bin_frames)
    if out is not None:
        return out
    t = np.asarray(intensity[S.TIME].values)[: c.shape[0] * bin_frames: bin_frames]
    t = t + (bin_frames - 1) * frame_time / 2
    attrs = {"units": "s"}
    return xr.DataArray(c, dims=(TIME1, TIME2), coords={TIME1: (TIME1, t, attrs), TIME2: (TIME2, t, attrs)},
                        attrs={"long_name": "two-time correlation", "roi_pixels": int(m.sum()),
                               "bin_frames": int(bin_frames)})


def stationarity(series, mask, *, n_windows: int = 4, bad_frames=None, **g2_kwargs):
    """Compare the dynamics of consecutive windows of the series in a region (aging, crystallisation).

    Returns
    -------
    Dataset over ``window``: ROI g2 per window, model-free τ (s) with bootstrap errors; attrs hold the
    slope of log10 τ per 1000 s with its error, τ_last/τ_first with its error, and ``drifting``.
    """
    import xarray as xr

    intensity, frame_time = _as_intensity(series)
    m = _mask_2d(mask, intensity)
    iy, ix = np.nonzero(m)
    block = np.asarray(intensity.isel({S.Y: slice(iy.min(), iy.max() + 1),
                                       S.X: slice(ix.min(), ix.max() + 1)}).values)
    pm = m[iy.min():iy.max() + 1, ix.min():ix.max() + 1]
    fm = _frame_mask(bad_frames, intensity.sizes[S.TIME])
    r = KS.stationarity_check(block, n_windows, frame_time=frame_time, pixel_mask=pm, frame_mask=fm, **g2_kwargs)
    w = np.arange(n_windows)
    ds = xr.Dataset(
        {"g2": (("window", S.LAG), r["g2"]), "g2_sem": (("window", S.LAG), r["g2_sem"]),
         "tau": ("window", r["tau"], {"units": "s", "long_name": "model-free tau"}),
         "tau_err": ("window", r["tau_err"], {"units": "s"})},
        coords={"window": w, "window_mid_time": ("window", r["t_mid"], {"units": "s"}),
                S.LAG: (S.LAG, r["lag_time"], {"units": "s"})})
    ds.attrs.update({"slope_log10tau_per_1000s": float(r["slope"]), "slope_err": float(r["slope_err"]),
                     "tau_ratio_last_first": float(r["ratio"]), "tau_ratio_err": float(r["ratio_err"]),
                     "drifting": bool(r["drifting"]), "roi_pixels": int(m.sum())})
    return ds
