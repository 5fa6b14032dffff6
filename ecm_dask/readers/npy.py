"""NumPy ``.npy`` files of shape (time, y, x): header parsed by hand, frames read through a short-lived memory map."""

from __future__ import annotations

import ast
import os
import struct

import numpy as np

from ..errors import InputError
from ._common import (
    _check_file_size,
    _check_series_shape,
    _native_dtype,
    _read_raw_frames,
    _read_raw_into,
    _require_file,
)
from .base import FrameSource, SourceMetadata


def _read_npy_header(path: str) -> tuple[tuple[int, ...], bool, np.dtype, int, tuple[int, int]]:
    """shape, fortran_order, dtype, data offset and format version of a .npy file (header only)."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:  # version 3.0: as 2.0 with a utf-8 header; numpy has no public reader for it
            (hlen,) = struct.unpack("<I", f.read(4))
            header = ast.literal_eval(f.read(hlen).decode("utf-8"))
            shape, fortran, dtype = header["shape"], header["fortran_order"], fmt.descr_to_dtype(header["descr"])
        offset = f.tell()
    return tuple(shape), bool(fortran), np.dtype(dtype), offset, tuple(version)


class NpySource(FrameSource):
    """A ``.npy`` array of shape (time, y, x); the file carries no calibration."""

    format_name = "NumPy .npy"

    def __init__(self, path: str | os.PathLike):
        path = os.fspath(path)
        self.paths = [path]
        _require_file(path)
        try:
            shape, fortran, dtype, offset, version = _read_npy_header(path)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{path} is not a readable .npy file ({type(exc).__name__}: {exc}); "
                             "the file may be corrupt") from None
        if dtype.hasobject:
            raise InputError(f"{path}: dataset has dtype object; expected integer or float intensities")
        self._file_dtype = dtype
        self.dtype = _native_dtype(path, dtype)
        self.shape = _check_series_shape(path, shape)
        _check_file_size(path, path, offset, shape, dtype)
        self._offset = offset
        self._fortran = fortran
        self.metadata = SourceMetadata(extra={"npy_version": f"{version[0]}.{version[1]}",
                                              "npy_fortran_order": fortran})

    def _read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray | None:
        return None if self._fortran else _read_raw_into(self, start, stop, out)

    def _read(self, start: int, stop: int) -> np.ndarray:
        path = self.paths[0]
        if not self._fortran:
            return _read_raw_frames(path, self._file_dtype, self._offset, self.frame_shape, start, stop)
        # Fortran order: frames are strided through the whole file; map it all, copy the slice, unmap
        mm = np.memmap(path, dtype=self._file_dtype, mode="r", offset=self._offset, shape=self.shape, order="F")
        out = np.array(mm[start:stop], dtype=self.dtype, order="C", copy=True)
        del mm
        return out
