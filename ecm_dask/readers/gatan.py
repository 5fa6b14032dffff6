"""Gatan DigitalMicrograph image stacks (.dm3, .dm4), through rosettasciio's lazy (memory-mapped) reader."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._common import RsciioStackSource, _find_in_tree, _put
from .base import SourceMetadata


class DmSource(RsciioStackSource):
    """The first image stack (3-D image, not a spectrum image) in a DM3/DM4 file.

    The pixel size comes from the calibration of the image axes; the frame time from the stack axis
    when DigitalMicrograph calibrated it in a time unit (in-situ series), otherwise it is unknown.
    """

    format_name = "Gatan DigitalMicrograph"
    _kind, _prefix = "dm", "dm"

    def __init__(self, path: str | os.PathLike):
        signals, sig, extra, frame_time, pixel = self._open_stack(os.fspath(path))
        del signals
        general = (sig.get("metadata") or {}).get("General") or {}
        _put(extra, "dm_title", general.get("title"))
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
