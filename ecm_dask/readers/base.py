"""The interface every instrument reader implements: a lazy, picklable stack of frames.

A :class:`FrameSource` knows the shape, dtype and calibration of a series without reading pixel data,
and reads any range of frames on demand.  It holds file paths, never open handles, so it can be
shipped to dask workers; each :meth:`FrameSource.read` opens, reads and closes.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

#: length units found in instrument files, in nanometres
LENGTH_UNITS_NM = {
    "m": 1e9, "mm": 1e6, "um": 1e3, "µm": 1e3, "μm": 1e3, "micron": 1e3, "microns": 1e3, "micrometer": 1e3,
    "nm": 1.0, "nanometer": 1.0, "å": 0.1, "Å": 0.1, "a": 0.1, "angstrom": 0.1, "pm": 1e-3, "picometer": 1e-3,
}
#: time units found in instrument files, in seconds
TIME_UNITS_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6,
                "μs": 1e-6, "ns": 1e-9, "min": 60.0}


def length_to_nm(value: float, unit: str | None) -> float | None:
    """Convert a length with a unit string from a file to nm; None if the unit is unknown or absent."""
    if unit is None or value is None:
        return None
    key = str(unit).strip()
    factor = LENGTH_UNITS_NM.get(key, LENGTH_UNITS_NM.get(key.lower()))
    if factor is None:
        return None
    v = float(value) * factor
    return v if math.isfinite(v) and v > 0 else None


def reciprocal_to_per_nm(value: float, unit: str | None) -> float | None:
    """Convert a reciprocal length (``1/nm``, ``1/Å``, ``nm^-1``, ``A-1``...) from a file to nm^-1; None if the
    unit is not one (the lengths of :data:`LENGTH_UNITS_NM` under ``1/`` or with ``^-1`` / ``-1``)."""
    if unit is None or value is None:
        return None
    key = str(unit).strip().replace(" ", "")
    if key.startswith("1/"):
        length = key[2:]
    elif key.endswith("^-1") or key.endswith("-1"):
        length = key[:-3] if key.endswith("^-1") else key[:-2]
    else:
        return None
    nm = length_to_nm(1.0, length)
    return None if nm is None else float(value) / nm


def time_to_s(value: float, unit: str | None) -> float | None:
    """Convert a time with a unit string from a file to seconds; None if the unit is unknown or absent."""
    if unit is None or value is None:
        return None
    key = str(unit).strip()
    factor = TIME_UNITS_S.get(key, TIME_UNITS_S.get(key.lower()))
    if factor is None:
        return None
    v = float(value) * factor
    return v if math.isfinite(v) and v > 0 else None


@dataclass
class SourceMetadata:
    """Calibration found in the file itself; ``None`` where the format or file does not carry it."""

    frame_time_s: float | None = None
    pixel_size_nm: float | None = None
    temperature_C: float | None = None
    instrument: str | None = None
    #: a few raw values worth keeping for provenance (must be JSON-serialisable)
    extra: dict[str, Any] = field(default_factory=dict)


class FrameSource(ABC):
    """A lazily-readable series of frames ``(time, y, x)``.

    Subclasses set :attr:`paths`, :attr:`shape`, :attr:`dtype` and :attr:`metadata` in ``__init__``
    after reading headers only, and implement :meth:`_read`.
    """

    #: human-readable name of the format, e.g. "multi-page TIFF"
    format_name: str = "?"
    paths: list[str]
    shape: tuple[int, int, int]
    dtype: np.dtype
    metadata: SourceMetadata

    @property
    def n_frames(self) -> int:
        return int(self.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.shape[1]), int(self.shape[2])

    @property
    def label(self) -> str:
        """The input named in messages: the file, or the folder of a multi-file series."""
        if len(self.paths) == 1:
            return self.paths[0]
        return f"{os.path.dirname(self.paths[0]) or '.'} ({len(self.paths)} files)"

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Return frames ``[start, stop)`` as an array of shape ``(stop - start, ny, nx)`` and :attr:`dtype`.

        ``out``: an array of that shape and dtype to fill (and return) instead of a new one; a source that can
        read straight into it does (raw formats: no second copy, no fresh pages when the caller reuses it).

        Raises
        ------
        InputError
            Naming the file and frame range if the data cannot be read (truncated or corrupt file).
        """
        if not 0 <= start <= stop <= self.n_frames:
            raise IndexError(f"frame range [{start}, {stop}) outside 0..{self.n_frames} of {self.label}")
        expected = (stop - start, *self.frame_shape)
        if out is not None and (out.shape != expected or out.dtype != self.dtype):
            raise ValueError(f"out must have shape {expected} and dtype {self.dtype}, got {out.shape} {out.dtype}")
        try:
            got = self._read_into(start, stop, out) if out is not None and out.flags.c_contiguous else None
            if got is None:
                got = self._read(start, stop)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - every low-level failure becomes one clear message
            raise InputError(f"{self.label}: cannot read frames {start}..{stop - 1}: {type(exc).__name__}: {exc}") from exc
        got = np.asarray(got)
        if got.shape != expected:
            raise InputError(f"{self.label}: frames {start}..{stop - 1} have shape {got.shape[1:]}, "
                             f"expected {self.frame_shape} (truncated or inconsistent file?)")
        if out is None:
            return got.astype(self.dtype, copy=False)
        if got is not out:
            out[...] = got
        return out

    def _read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray | None:
        """Read frames ``[start, stop)`` into ``out`` and return it, or None if this source cannot (then
        :meth:`_read` is used and copied)."""
        return None

    @abstractmethod
    def _read(self, start: int, stop: int) -> np.ndarray:
        """Read frames ``[start, stop)``; may raise anything, :meth:`read` turns it into InputError."""

    def fingerprint(self) -> dict[str, Any]:
        """Identify the input (paths, sizes, modification times, shape, dtype) to detect a changed input on resume."""
        files = []
        for p in self.paths:
            st = os.stat(p) if os.path.isfile(p) else None
            files.append({"path": os.path.abspath(p), "size": st.st_size if st else None,
                          "mtime_ns": st.st_mtime_ns if st else None})
        out = {"format": self.format_name, "shape": list(self.shape), "dtype": str(self.dtype), "files": files}
        order = getattr(self, "axis_order", None)
        if order is not None and tuple(order) != (0, 1, 2):  # a reordered read is other input (unchanged keys else)
            out["axis_order"] = list(order)
        return out

    def to_dask(self, frames_per_chunk: int | None = None):
        """The whole series as a lazy dask array, one task per ``frames_per_chunk`` frames."""
        import dask.array as da

        if frames_per_chunk is None:
            frame_bytes = max(1, int(np.prod(self.frame_shape)) * self.dtype.itemsize)
            frames_per_chunk = max(1, min(self.n_frames, (64 << 20) // frame_bytes))
        return da.from_array(_Sliceable(self), chunks=(frames_per_chunk, *self.frame_shape), asarray=True,
                             lock=False, fancy=False, meta=np.empty((0, 0, 0), dtype=self.dtype),
                             name=f"frames-{_token(self)}")

    def __repr__(self) -> str:
        m = self.metadata
        return (f"<{type(self).__name__} {self.label!r} {self.format_name} shape={self.shape} dtype={self.dtype} "
                f"frame_time_s={m.frame_time_s} pixel_size_nm={m.pixel_size_nm}>")


def _token(source: FrameSource) -> str:
    from dask.base import tokenize

    return tokenize(type(source).__name__, source.fingerprint())


class _Sliceable:
    """Adapter so that dask.array.from_array can slice a FrameSource."""

    def __init__(self, source: FrameSource):
        self.source = source
        self.shape = source.shape
        self.dtype = source.dtype
        self.ndim = 3

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        t = key[0]
        if isinstance(t, (int, np.integer)):
            return self.source.read(int(t), int(t) + 1)[0][key[1:]]
        start, stop, step = t.indices(self.shape[0])
        if step != 1:
            raise IndexError("FrameSource slices must have step 1")
        return self.source.read(start, stop)[(slice(None), *key[1:])]
