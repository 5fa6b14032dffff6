"""A FrameSource over an in-memory NumPy array (tests, notebooks, small generated data)."""

from __future__ import annotations

from hashlib import sha256

import numpy as np

from ..errors import InputError
from .base import FrameSource, SourceMetadata


class ArraySource(FrameSource):
    """Frames from a NumPy array ``(time, y, x)``; the fingerprint is a hash of the data."""

    format_name = "in-memory array"

    def __init__(self, array, *, name: str = "<array>", frame_time_s: float | None = None,
                 pixel_size_nm: float | None = None):
        array = np.asarray(array)
        if array.ndim != 3:
            raise InputError(f"{name}: expected an array (time, y, x), got {array.ndim}-D shape {array.shape}")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise InputError(f"{name}: array has dtype {array.dtype}; expected integer or float intensities")
        self.array = array
        self.paths = [name]
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = array.dtype
        self.metadata = SourceMetadata(frame_time_s=frame_time_s, pixel_size_nm=pixel_size_nm)

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]

    def fingerprint(self) -> dict:
        return {"format": self.format_name, "shape": list(self.shape), "dtype": str(self.dtype),
                "sha256": sha256(np.ascontiguousarray(self.array).tobytes()).hexdigest()}


class DaskArraySource(FrameSource):
    """Frames from a lazy (time, y, x) dask array, read one time slab at a time (e.g. to re-lay out a series)."""

    format_name = "dask array"

    def __init__(self, data, frame_time_s: float | None = None, pixel_size_nm: float | None = None,
                 name: str = "<dask array>"):
        if data.ndim != 3:
            raise InputError(f"{name}: expected an array (time, y, x), got {data.ndim}-D shape {data.shape}")
        self.data = data
        self.paths = [name]
        self.shape = tuple(int(s) for s in data.shape)
        self.dtype = np.dtype(data.dtype)
        self.metadata = SourceMetadata(frame_time_s=frame_time_s, pixel_size_nm=pixel_size_nm)

    def _read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.data[start:stop].compute(scheduler="synchronous"))

    def fingerprint(self) -> dict:
        from dask.base import tokenize

        return {"format": self.format_name, "shape": list(self.shape), "dtype": str(self.dtype),
                "token": tokenize(self.data)}
