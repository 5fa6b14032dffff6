"""HyperSpy interop: a series store as a lazy Signal2D (time as navigation, calibrated axes), result maps as
Signal2D, and a HyperSpy signal as an ingest source.  HyperSpy is imported only here (``pip install hyperspy``);
.hspy *files* are read by ``ecm-dask ingest`` without it (rosettasciio; .zspy needs the zarr 2 API there)."""

from __future__ import annotations

import os

import numpy as np

from .. import schema as S
from ..errors import InputError


def _hs():
    try:
        import hyperspy.api as hs
    except ImportError:
        raise InputError("HyperSpy is not installed: pip install hyperspy") from None
    return hs


def _calibrate(axis, name: str, scale: float, units: str, offset: float = 0.0) -> None:
    axis.name, axis.scale, axis.units, axis.offset = name, float(scale), units, float(offset)


def to_hyperspy(series):
    """A series (path of a series store, its Dataset, or the ``intensity`` DataArray) as a lazy HyperSpy Signal2D:
    navigation axis ``time`` (s), signal axes ``y``, ``x`` (nm); nothing is read until the signal is computed."""
    from ..store.series import open_series

    hs = _hs()
    if isinstance(series, (str, os.PathLike)):
        series = open_series(series)
    da = series[S.INTENSITY] if hasattr(series, "data_vars") else series
    data = da.data
    if not hasattr(data, "dask"):
        import dask.array as dsa

        data = dsa.from_array(np.asarray(data), chunks=(min(64, da.shape[0]), -1, -1))
    sig = hs.signals.Signal2D(data).as_lazy()
    t, y, x = (np.asarray(da[d].values, dtype=np.float64) for d in (S.TIME, S.Y, S.X))
    nav, sx, sy = sig.axes_manager.navigation_axes[0], *sig.axes_manager.signal_axes
    _calibrate(nav, "time", t[1] - t[0] if t.size > 1 else float(da.attrs.get(S.ATTR_FRAME_TIME, 1.0)), "s", t[0])
    # hyperspy orders signal axes (x, y)
    _calibrate(sx, "x", x[1] - x[0] if x.size > 1 else 1.0, "nm", x[0])
    _calibrate(sy, "y", y[1] - y[0] if y.size > 1 else 1.0, "nm", y[0])
    sig.metadata.General.title = str(da.attrs.get("long_name") or "ECM image series")
    return sig


def maps_to_hyperspy(results, names=("tau", "beta", "contrast")) -> dict:
    """Result maps (a results store path, its DataTree or root Dataset) as HyperSpy Signal2D, axes in nm, each
    with its units in ``metadata.Signal.quantity``; values where the fit is not ok are NaN."""
    from ..kernels.kww import FIT_OK

    hs = _hs()
    if isinstance(results, (str, os.PathLike)):
        from ..pipeline.report import open_results

        results = open_results(results)
    maps = results.to_dataset() if hasattr(results, "to_dataset") else results
    maps = maps.transpose(S.Y, S.X, ...)
    ok = np.asarray(maps[S.STATUS].values) == FIT_OK
    y, x = np.asarray(maps[S.Y].values), np.asarray(maps[S.X].values)
    out = {}
    for name in names:
        v = np.where(ok, np.asarray(maps[name].values, dtype=np.float64), np.nan)
        sig = hs.signals.Signal2D(v)
        sx, sy = sig.axes_manager.signal_axes
        _calibrate(sx, "x", x[1] - x[0] if x.size > 1 else 1.0, "nm", x[0])
        _calibrate(sy, "y", y[1] - y[0] if y.size > 1 else 1.0, "nm", y[0])
        sig.metadata.General.title = name
        sig.metadata.set_item("Signal.quantity", f"{name} ({maps[name].attrs.get(S.ATTR_UNITS, '1')})")
        out[name] = sig
    return out


def signal_source(signal):
    """A HyperSpy Signal2D with one navigation axis (time) as an ingest source: frames in navigation order, frame
    time and pixel size from the axes when their units are time and length."""
    from ..readers._common import _calibrated_length, _calibrated_time
    from ..readers.memory import ArraySource, DaskArraySource

    am = signal.axes_manager
    if len(am.navigation_axes) != 1 or len(am.signal_axes) != 2:
        raise InputError(f"a HyperSpy signal with one navigation axis (time) and two signal axes is needed, got "
                         f"navigation {am.navigation_shape} x signal {am.signal_shape}")
    nav, sx = am.navigation_axes[0], am.signal_axes[0]
    extra: dict = {}
    frame_time = _calibrated_time(nav.scale, nav.units, extra, "hspy_frame_time_raw")
    pixel = _calibrated_length(sx.scale, sx.units, extra, "hspy_pixel_size_raw")
    data = signal.data
    if hasattr(data, "dask"):
        return DaskArraySource(data, frame_time_s=frame_time, pixel_size_nm=pixel)
    return ArraySource(np.asarray(data), name=str(signal.metadata.General.title or "<hyperspy signal>"),
                       frame_time_s=frame_time, pixel_size_nm=pixel)


def ingest_signal(signal, output, *, frame_time_s: float | None = None, pixel_size_nm: float | None = None,
                  overwrite: bool = False, progress: bool = False):
    """Write a HyperSpy Signal2D (time as navigation) into a series store, as ``ecm-dask ingest`` does a file;
    ``frame_time_s`` / ``pixel_size_nm`` override the axes' calibration.  Returns the store path."""
    from ..pipeline.ingest import resolve_metadata
    from ..store.writer import write_series

    src = signal_source(signal)
    meta = resolve_metadata(src, frame_time_s=frame_time_s, pixel_size_nm=pixel_size_nm)
    return write_series(src, output, meta, overwrite=overwrite, progress=progress)
