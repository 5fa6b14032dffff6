"""HyperSpy files (.hspy) through rosettasciio (HyperSpy itself is not needed to read them).  (.zspy is not read:
rosettasciio's zspy code needs the zarr 2 API, and ecm_dask runs on zarr 3.)

The image stack is the Signal2D whose one navigation axis is time: frame time and pixel size come from the axes'
scales when their units say time and length (``ecm_dask.interop.to_hyperspy`` writes them so).
"""

from __future__ import annotations

import os

from ._common import RsciioStackSource, _put


class HyperspySource(RsciioStackSource):
    """The first image stack (one navigation axis, two signal axes) in a HyperSpy file."""

    format_name = "HyperSpy"
    _prefix = "hspy"

    def __init__(self, path: str | os.PathLike):
        path = os.fspath(path)
        self._kind = "hspy"
        signals, sig, extra, frame_time, pixel = self._open_stack(path)
        del signals
        general = (sig.get("metadata") or {}).get("General") or {}
        _put(extra, "hspy_title", general.get("title"))
        from .base import SourceMetadata

        self.metadata = SourceMetadata(frame_time_s=frame_time, pixel_size_nm=pixel, extra=extra)
