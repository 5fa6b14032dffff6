"""MRC / MRCS image stacks: header parsed with mrcfile (read-only, permissive), frames read through a
short-lived memory map of just the requested frames."""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import InputError
from ._common import (
    _calibrated_length,
    _check_file_size,
    _check_series_shape,
    _native_dtype,
    _put,
    _read_raw_frames,
    _read_raw_into,
    _require_file,
)
from .base import FrameSource, SourceMetadata

#: size of the fixed MRC header in bytes
MRC_HEADER_BYTES = 1024


class MrcSource(FrameSource):
    """An MRC stack (nz, ny, nx); the pixel size comes from the voxel size in Å (0 means not calibrated)."""

    format_name = "MRC"

    def __init__(self, path: str | os.PathLike):
        import mrcfile
        import mrcfile.utils

        path = os.fspath(path)
        self.paths = [path]
        _require_file(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc:
                    header = mrc.header.copy()
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"{path} is not a readable MRC file ({type(exc).__name__}: {exc}); "
                                 "the file may be corrupt or truncated") from None
        if header is None:
            raise InputError(f"{path} is not a readable MRC file (no header); the file may be corrupt or truncated")
        mode = int(header.mode)
        if mode == 101:
            raise InputError(f"{path}: 4-bit packed MRC data (mode 101) is not supported; convert it to mode 0 or 6")
        try:
            file_dtype = np.dtype(mrcfile.utils.data_dtype_from_header(header))
        except Exception as exc:  # noqa: BLE001 - unknown mode: a corrupt header
            raise InputError(f"{path} is not a readable MRC file ({exc}); the file may be corrupt") from None
        nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
        if min(nx, ny, nz) < 0:
            raise InputError(f"{path} is not a readable MRC file: the header declares a negative size "
                             f"(nx, ny, nz) = ({nx}, {ny}, {nz}); the file may be corrupt")
        self.dtype = _native_dtype(path, file_dtype, what=f"MRC mode {mode} data")
        self.shape = _check_series_shape(path, (nz, ny, nx))
        offset = MRC_HEADER_BYTES + max(0, int(header.nsymbt))
        _check_file_size(path, path, offset, self.shape, file_dtype)
        self._file_dtype = file_dtype
        self._offset = offset

        extra: dict = {"mrc_mode": mode}
        mx, my = int(header.mx), int(header.my)
        vx = float(header.cella.x) / mx if mx > 0 else 0.0
        vy = float(header.cella.y) / my if my > 0 else 0.0
        extra["mrc_voxel_size_A"] = [vx, vy]
        _put(extra, "mrc_space_group", int(header.ispg))
        exttyp = bytes(header.exttyp).strip(b"\0 ")
        _put(extra, "mrc_exttyp", exttyp.decode("ascii", "replace") if exttyp else None)
        nlabl = max(0, min(10, int(header.nlabl)))
        labels = [bytes(header.label[i]).rstrip(b"\0 ").decode("ascii", "replace") for i in range(nlabl)]
        _put(extra, "mrc_label", labels[0] if labels else None)
        problems = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        if problems:  # what a strict reader would reject (wrong map ID, odd machine stamp...)
            _put(extra, "mrc_header_warnings", "; ".join(problems)[:300])
        # exactly 0 means no calibration was written; negative values are absurd (kept raw in extra)
        pixel = _calibrated_length(vx, "Å", extra, "mrc_voxel_size_raw") if vx != 0 else None
        if pixel is not None and vy > 0 and abs(vy - vx) > 1e-6 * vx:
            extra["mrc_non_square_pixels"] = True
        self.metadata = SourceMetadata(pixel_size_nm=pixel, extra=extra)

    def _read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray | None:
        return _read_raw_into(self, start, stop, out)

    def _read(self, start: int, stop: int) -> np.ndarray:
        return _read_raw_frames(self.paths[0], self._file_dtype, self._offset, self.frame_shape, start, stop)
