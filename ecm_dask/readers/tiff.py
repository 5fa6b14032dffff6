"""TIFF: one multi-page file (ImageJ hyperstack, tifffile "shaped", OME or plain), or a folder / list of
single-frame files in natural order of the numbers in their names."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import numpy as np

from ..errors import InputError
from ._common import (
    TIFF_EXTENSIONS,
    _calibrated_length,
    _calibrated_time,
    _check_file_size,
    _check_series_shape,
    _clean_unit,
    _native_dtype,
    _natural_key,
    _put,
    _read_raw_frames,
    _read_raw_into,
    _require_file,
    read_single_frame,
)
from .base import FrameSource, SourceMetadata

#: TIFF ResolutionUnit codes (2, 3 standard; 4, 5 tifffile extensions) -> unit; inches are ignored
#: because 72 dpi is what most software writes when it knows nothing
_RESOLUTION_UNITS = {3: "cm", 4: "mm", 5: "um"}
_CM_NM = 1e7


@contextmanager
def _tifffile_quiet():
    """tifffile logs its own warnings for corrupt files; the InputError we raise says it in one line."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _open_tiff(path: str):
    import tifffile

    try:
        with _tifffile_quiet():
            return tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path} is not a readable TIFF file ({type(exc).__name__}: {exc}); "
                         "the file may be corrupt, truncated or of another format") from None


def _first_series(path: str, tf):
    try:
        with _tifffile_quiet():
            series = tf.series[0]
            series.shape  # noqa: B018 - parse the series now
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path} is not a readable TIFF file ({type(exc).__name__}: {exc}); "
                         "the file may be corrupt") from None
    if "S" in series.axes:
        raise InputError(f"{path} holds colour/multi-sample images (axes {series.axes}, shape {series.shape}); "
                         "ECM needs grayscale frames: save the series as single-channel images")
    return series


def _check_declared_size(path: str, tf, series) -> None:
    """A tifffile 'shaped' or ImageJ file declares its size; fewer readable pages means truncation/corruption."""
    declared = None
    try:
        if tf.is_shaped and tf.shaped_metadata and "shape" in tf.shaped_metadata[0]:
            declared = tuple(int(n) for n in tf.shaped_metadata[0]["shape"])
            found = tuple(int(n) for n in series.shape)
            bad = int(np.prod(declared)) != int(np.prod(found))
        elif tf.is_imagej and (tf.imagej_metadata or {}).get("images"):
            declared = int(tf.imagej_metadata["images"])
            found = int(np.prod(series.shape[:-2])) if len(series.shape) > 2 else 1
            bad = declared != found
            declared, found = f"{declared} images", f"{found}"
        else:
            return
    except Exception:  # noqa: BLE001 - odd descriptions are not an error by themselves
        return
    if bad:
        raise InputError(f"{path} is truncated or corrupt: its description declares {declared} but only "
                         f"{found} can be read; copy the file again")


def tiff_metadata(tf, page, extra: dict) -> tuple[float | None, float | None, str | None]:
    """Frame time (s), pixel size (nm) and instrument from ImageJ metadata and resolution tags."""
    ij = tf.imagej_metadata or {}
    frame_time = None
    pixel = None
    if ij:
        _put(extra, "imagej_version", ij.get("ImageJ"))
        _put(extra, "imagej_finterval", ij.get("finterval"))
        _put(extra, "imagej_unit", ij.get("unit"))
        if ij.get("finterval") is not None:
            frame_time = _calibrated_time(ij.get("finterval"), ij.get("tunit") or "s", extra, "imagej_finterval_raw")
    tags = page.tags
    xres = tags.get("XResolution")
    yres = tags.get("YResolution")
    runit = tags.get("ResolutionUnit")
    runit = int(runit.value) if runit is not None else 2
    if xres is not None:
        num, den = (xres.value if isinstance(xres.value, tuple) else (xres.value, 1))
        _put(extra, "tiff_x_resolution", [int(num), int(den)])
        _put(extra, "tiff_resolution_unit", runit)
        per_pixel = float(den) / float(num) if num else None  # length of one pixel in the unit
        unit = _clean_unit(ij.get("unit")) if ij else None
        if unit and unit.lower() not in ("pixel", "pixels", "px"):
            pixel = _calibrated_length(per_pixel, unit, extra, "tiff_pixel_size_raw")
        elif runit in _RESOLUTION_UNITS and per_pixel is not None:
            if _RESOLUTION_UNITS[runit] == "cm":
                pixel = _calibrated_length(per_pixel * _CM_NM, "nm", extra, "tiff_pixel_size_raw")
            else:
                pixel = _calibrated_length(per_pixel, _RESOLUTION_UNITS[runit], extra, "tiff_pixel_size_raw")
        if pixel is not None and yres is not None and yres.value != xres.value:
            _put(extra, "tiff_y_resolution", list(yres.value) if isinstance(yres.value, tuple) else yres.value)
    make = tags.get("Make")
    model = tags.get("Model")
    words = [str(t.value).strip() for t in (make, model) if t is not None and str(t.value).strip()]
    instrument = " ".join(words) or None
    return frame_time, pixel, instrument


class TiffStackSource(FrameSource):
    """The first image series of a multi-page TIFF file, (time, y, x).

    Frame time comes from ImageJ's ``finterval``, pixel size from the X resolution tag with ImageJ's
    ``unit`` (or a metric TIFF resolution unit).  Uncompressed contiguous data (ImageJ and most
    camera software) is read through a memory map of just the requested frames; otherwise the
    requested pages are decoded by tifffile.
    """

    format_name = "multi-page TIFF"

    def __init__(self, path: str | os.PathLike):
        path = os.fspath(path)
        self.paths = [path]
        _require_file(path)
        with _open_tiff(path) as tf:
            series = _first_series(path, tf)
            shape = tuple(int(n) for n in series.shape)
            _check_declared_size(path, tf, series)
            self.dtype = _native_dtype(path, series.dtype)
            self.shape = _check_series_shape(path, shape)
            extra: dict = {"tiff_axes": series.axes}
            try:
                frame_time, pixel, instrument = tiff_metadata(tf, series.keyframe, extra)
                offset = series.dataoffset
                n_pages = len(series.pages)
            except Exception as exc:  # noqa: BLE001 - corrupt IFDs
                raise InputError(f"{path} is not a readable TIFF file ({type(exc).__name__}: {exc}); "
                                 "the file may be corrupt") from None
            self._file_dtype = np.dtype(series.dtype).newbyteorder(tf.byteorder)
            if offset is not None:
                self._mode = "contiguous"
                _check_file_size(path, path, offset, self.shape, self._file_dtype)
            elif n_pages == self.shape[0]:
                # remember where each page's IFD is, so a read decodes just its pages without walking the IFD chain
                self._mode = "pages"
                try:
                    self._ifd_offsets = np.array([p.offset for p in series.pages], dtype=np.int64)
                except Exception as exc:  # noqa: BLE001 - a broken IFD chain
                    raise InputError(f"{path} is not a readable TIFF file ({type(exc).__name__}: {exc}); "
                                     "the file may be corrupt or truncated") from None
            else:  # e.g. one compressed page holding a volume: decode the whole series to read frames
                self._mode = "series"
            self._offset = offset
        self.metadata = SourceMetadata(frame_time_s=frame_time, pixel_size_nm=pixel, instrument=instrument,
                                       extra=extra)

    def _read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray | None:
        return None if self._mode != "contiguous" else _read_raw_into(self, start, stop, out)

    def _read(self, start: int, stop: int) -> np.ndarray:
        path = self.paths[0]
        n = stop - start
        if n == 0:
            return np.empty((0, *self.frame_shape), dtype=self.dtype)
        if self._mode == "contiguous":
            return _read_raw_frames(path, self._file_dtype, self._offset, self.frame_shape, start, stop)
        import tifffile

        with _open_tiff(path) as tf:
            if self._mode == "series":
                return np.asarray(tf.series[0].asarray()[start:stop]).reshape(n, *self.frame_shape)
            out = np.empty((n, *self.frame_shape), dtype=self.dtype)
            for j, i in enumerate(range(start, stop)):
                tf.filehandle.seek(int(self._ifd_offsets[i]))
                page = tifffile.TiffPage(tf, index=i)
                out[j] = np.asarray(page.asarray()).reshape(self.frame_shape)
        return out


class TiffFolderSource(FrameSource):
    """A series of single-frame TIFF files, one frame per file, in the order given."""

    format_name = "TIFF folder"

    def __init__(self, paths: list[str], folder: str | None = None):
        self.paths = [os.fspath(p) for p in paths]
        where = folder or os.path.dirname(self.paths[0]) or "."
        first_shape = first_dtype = None
        for i, p in enumerate(self.paths):
            _require_file(p)
            with _open_tiff(p) as tf:
                series = _first_series(p, tf)
                shape = tuple(int(n) for n in series.shape)
                if len(shape) == 3 and shape[0] == 1:
                    shape = shape[1:]
                if len(shape) != 2:
                    raise InputError(f"{p} holds {len(shape)}-D data of shape {shape}, but every file in a folder "
                                     f"series ({where}) must hold one 2-D frame; give multi-page files one by one")
                if i == 0:
                    first_shape, first_dtype = shape, series.dtype
                    extra: dict = {"tiff_first_file": os.path.basename(p)}
                    frame_time, pixel, instrument = tiff_metadata(tf, series.keyframe, extra)
                elif shape != first_shape:
                    raise InputError(f"{p} has frame shape {shape} but the first file {self.paths[0]} has "
                                     f"{first_shape}; all frames in {where} must have the same shape")
                elif series.dtype != first_dtype:
                    raise InputError(f"{p} has dtype {series.dtype} but the first file {self.paths[0]} has "
                                     f"{first_dtype}; all frames in {where} must have the same dtype")
        self.dtype = _native_dtype(self.paths[0], first_dtype)
        self.shape = _check_series_shape(self.label, (len(self.paths), *first_shape))
        extra["tiff_n_files"] = len(self.paths)
        self.metadata = SourceMetadata(frame_time_s=frame_time, pixel_size_nm=pixel, instrument=instrument,
                                       extra=extra)

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.frame_shape), dtype=self.dtype)
        for i in range(start, stop):
            p = self.paths[i]
            frame = read_single_frame(p, f"frame {i} of {self.label}")
            if frame.shape != tuple(self.frame_shape):
                raise InputError(f"{p}: frame {i} has shape {frame.shape}, expected {self.frame_shape} "
                                 "(was the file changed?)")
            out[i - start] = frame
        return out


def open_tiff_series(paths: list[str]) -> FrameSource:
    """A folder of TIFF frames, a list of TIFF frame files, or (a folder holding) one multi-page TIFF."""
    if len(paths) == 1 and os.path.isdir(paths[0]):
        folder = paths[0]
        try:
            names = os.listdir(folder)
        except OSError as exc:
            raise InputError(f"{folder}: cannot list folder ({exc})") from None
        files = [os.path.join(folder, n) for n in names
                 if not n.startswith(".") and os.path.splitext(n)[1].lower() in TIFF_EXTENSIONS
                 and os.path.isfile(os.path.join(folder, n))]
        if not files:
            others = sorted(n for n in names if not n.startswith("."))
            hint = f" (it holds {len(others)} other entries, e.g. {others[0]!r})" if others else " (it is empty)"
            raise InputError(f"no TIFF files in folder {folder}{hint}; give a folder of .tif/.tiff frames")
        files.sort(key=_natural_key)
        if len(files) == 1:
            return TiffStackSource(files[0])
        return TiffFolderSource(files, folder=folder)
    for p in paths:
        if os.path.isdir(p):
            raise InputError(f"{p} is a folder; give either one folder or a list of TIFF files")
        if os.path.splitext(p)[1].lower() not in TIFF_EXTENSIONS:
            raise InputError(f"{p}: not a TIFF file; a list of inputs must be single-frame .tif/.tiff files")
    if len(paths) == 1:
        return TiffStackSource(paths[0])
    return TiffFolderSource(sorted(paths, key=_natural_key))
