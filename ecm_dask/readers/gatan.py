"""Gatan DigitalMicrograph image stacks (.dm3, .dm4), through rosettasciio's lazy (memory-mapped) reader."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ._common import (
    _calibrated_length,
    _calibrated_time,
    _check_series_shape,
    _find_in_tree,
    _native_dtype,
    _put,
    _rsciio_axes,
    _rsciio_frames,
    _rsciio_open,
    _rsciio_pick_stack,
)
from .base import FrameSource, SourceMetadata


class DmSource(FrameSource):
    """The first image stack (3-D image, not a spectrum image) in a DM3/DM4 file.

    The pixel size comes from the calibration of the image axes; the frame time from the stack axis
    when DigitalMicrograph calibrated it in a time unit (in-situ series), otherwise it is unknown.
    """

    format_name = "Gatan DigitalMicrograph"

    def __init__(self, path: str | os.PathLike):
        path = os.fspath(path)
        self.paths = [path]
        if not os.path.isfile(path):
            raise InputError(f"{path}: no such file; check the path")
        signals = _rsciio_open("dm", path)
        index, sig = _rsciio_pick_stack(path, signals)
        order, t_axis, y_axis, x_axis = _rsciio_axes(path, sig)
        data = sig["data"]
        self.dtype = _native_dtype(path, data.dtype)
        self.shape = _check_series_shape(path, tuple(data.shape[i] for i in order))
        self._index = index
        self._order = order

        extra: dict = {"dm_signal_index": index}
        general = (sig.get("metadata") or {}).get("General") or {}
        _put(extra, "dm_title", general.get("title"))
        _put(extra, "dm_stack_axis", f"{t_axis.get('name')} scale={t_axis.get('scale')} units={t_axis.get('units')}")
        frame_time = _calibrated_time(t_axis.get("scale"), t_axis.get("units"), extra, "dm_stack_axis_raw")
        pixel = _calibrated_length(x_axis.get("scale"), x_axis.get("units"), extra, "dm_pixel_size_raw")
        if pixel is not None and y_axis.get("scale") != x_axis.get("scale"):
            _put(extra, "dm_pixel_size_y", f"{y_axis.get('scale')} {y_axis.get('units')}")
        tags = ((sig.get("original_metadata") or {}).get("ImageList") or {})
        instrument = None
        for info in _find_in_tree(tags, "Microscope Info"):
            if isinstance(info, Mapping):
                name = info.get("Name") or info.get("Microscope")
                if isinstance(name, str) and name.strip():
                    instrument = name.strip()
                    _put(extra, "dm_voltage_V", info.get("Voltage"))
                    _put(extra, "dm_illumination_mode", info.get("Illumination Mode"))
                    break
        for key, tag in (("dm_exposure_s", "Exposure (s)"), ("dm_acquisition_date", "Acquisition Date"),
                         ("dm_acquisition_time", "Acquisition Time")):
            values = [v for v in _find_in_tree(tags, tag) if not isinstance(v, Mapping)]
            if values:
                _put(extra, key, values[0])
        self.metadata = SourceMetadata(frame_time_s=frame_time, pixel_size_nm=pixel, instrument=instrument,
                                       extra=extra)

    def _read(self, start: int, stop: int) -> np.ndarray:
        return _rsciio_frames("dm", self.paths[0], self._index, self._order, start, stop)
