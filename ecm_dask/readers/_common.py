"""Helpers shared by the reader modules: dtype and shape checks, calibration parsing, raw reads."""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from .base import FrameSource, length_to_nm, time_to_s

TIFF_EXTENSIONS = (".tif", ".tiff")

def _native_dtype(label: str, dtype, what: str = "dataset") -> np.dtype:
    """Check that ``dtype`` holds integer or float intensities; return it in native byte order."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"{label}: {what} has an unknown dtype {dtype!r}; expected integer or float intensities") from None
    if dt.fields is not None or dt.subdtype is not None or not (
            np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        raise InputError(f"{label}: {what} has dtype {dt}; expected integer or float intensities")
    return dt.newbyteorder("=")


def _check_series_shape(label: str, shape) -> tuple[int, int, int]:
    """Check that ``shape`` is a (time, y, x) series of at least 2 frames; return it as ints."""
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[0] == 1):
        frame = shape[-2:]
        raise InputError(f"{label} holds a single 2-D image {frame}; ECM needs a series of frames: "
                         "give a multi-frame file or a folder of frames")
    if len(shape) < 2:
        raise InputError(f"{label} holds {len(shape)}-D data of shape {shape}; ECM needs a (time, y, x) series of frames")
    if len(shape) > 3:
        raise InputError(f"{label} holds {len(shape)}-D data of shape {shape}; STEM 4-D data is not supported by "
                         "this reader yet: give a (time, y, x) series of frames")
    if min(shape) < 1:
        raise InputError(f"{label} holds an empty series of shape {shape}; ECM needs a (time, y, x) series of frames")
    return shape  # type: ignore[return-value]


def _json_value(value: Any) -> Any:
    """A JSON-serialisable version of a scalar metadata value (numpy scalars, bytes), or None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [_json_value(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
        if len(items) <= 16 and all(v is None or isinstance(v, (bool, int, float, str)) for v in items):
            return items
    return str(value)[:200]


def _put(extra: dict, key: str, value: Any) -> None:
    """Store a raw metadata value in ``extra`` if it is present."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return
    extra[key] = _json_value(value)


def _require_file(path: str) -> None:
    """InputError naming ``path`` if it is not an existing file."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file; check the path")


def _plausible(value: float | None, bounds: tuple[float, float]) -> float | None:
    if value is None or not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        return None
    return float(value)


def _calibrated(scale, unit, extra: dict, key: str, convert, bounds) -> float | None:
    """``convert(scale, unit)`` if it is plausible; else None, with the raw value kept in ``extra[key]``."""
    if scale is None:
        return None
    try:
        value = float(scale)
    except (TypeError, ValueError):
        _put(extra, key, str(scale))
        return None
    unit = _clean_unit(unit)
    out = _plausible(convert(value, unit), bounds) if unit else None
    if unit and out is None:
        _put(extra, key, f"{value:g} {unit}")
    return out


def _calibrated_length(scale, unit, extra: dict, key: str) -> float | None:
    """Pixel size in nm from a file's scale and unit; None (raw value kept in ``extra``) if absent or absurd."""
    from ..schema import PIXEL_SIZE_RANGE_NM

    return _calibrated(scale, unit, extra, key, length_to_nm, PIXEL_SIZE_RANGE_NM)


def _calibrated_time(scale, unit, extra: dict, key: str) -> float | None:
    """Frame time in s from a file's scale and unit; None (raw value kept in ``extra``) if absent or absurd."""
    from ..schema import FRAME_TIME_RANGE_S

    return _calibrated(scale, unit, extra, key, time_to_s, FRAME_TIME_RANGE_S)


def _scalar(value):
    """An attribute value as a plain Python scalar: 1-element arrays unwrapped, numpy scalars as Python, bytes
    decoded (utf-8)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value


def _clean_unit(unit) -> str | None:
    """Normalise a unit string from a file: bytes, ImageJ escapes (\\u00B5m), brackets ([n_m]) -> 'nm'."""
    if unit is None:
        return None
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    if isinstance(unit, (list, tuple, np.ndarray)):
        return None
    unit = str(unit).strip()
    unit = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), unit)
    m = re.fullmatch(r"\[(.*)\]", unit)
    if m:  # rosettasciio writes Berkeley EMD units as "[n_m]"
        unit = m.group(1).replace("_", "")
    return unit.replace("\u212b", "Å") or None


def _is_time_unit(unit) -> bool:
    return time_to_s(1.0, _clean_unit(unit)) is not None


def _natural_key(path: str):
    """Sort key: the numbers in a file name compare as numbers (frame_2 before frame_10)."""
    name = os.path.basename(path)
    parts = re.split(r"(\d+)", name.lower())
    return tuple((0, int(p), p) if i % 2 else (1, 0, p) for i, p in enumerate(parts)), name


def _file_key(path: str) -> tuple[str, int, int]:
    """Identify a file version in per-process caches: absolute path, size and modification time."""
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def _find_in_tree(tree: Any, key: str, depth: int = 0) -> list[Any]:
    """All values stored under ``key`` anywhere in a nested mapping (for vendor tag trees)."""
    found = []
    if depth > 12 or not isinstance(tree, Mapping):
        return found
    for k, v in tree.items():
        if k == key:
            found.append(v)
        if isinstance(v, Mapping):
            found.extend(_find_in_tree(v, key, depth + 1))
    return found


def _read_raw_frames(path: str, dtype: np.dtype, offset: int, frame_shape: tuple[int, int],
                     start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """Frames [start, stop) of a C-ordered raw block at ``offset``, read into ``out`` (C-contiguous; default a new
    array) in native byte order.  No memory map: reading into a reused ``out`` is ~10x faster than copying from a
    map on the 2-core VM of the README, where every freshly touched page is slow."""
    ny, nx = frame_shape
    n = stop - start
    dtype = np.dtype(dtype)
    native = dtype.newbyteorder("=")
    if out is None:
        out = np.empty((n, ny, nx), dtype=native)
    if n <= 0:
        return out
    frame_bytes = ny * nx * dtype.itemsize
    size = os.path.getsize(path)
    need = offset + stop * frame_bytes
    if size < need:
        raise InputError(f"{path}: file is truncated: frames {start}..{stop - 1} end at byte {need} but the file "
                         f"has {size} bytes; copy the file again")
    view = memoryview(out.reshape(-1).view(np.uint8))  # out is C-contiguous (FrameSource.read sees to it)
    done = 0
    with open(path, "rb", buffering=0) as f:  # unbuffered: each readinto is one read straight into ``out``
        f.seek(offset + start * frame_bytes)
        while done < view.nbytes:
            got = f.readinto(view[done:])
            if not got:
                raise InputError(f"{path}: file ended while reading frames {start}..{stop - 1}")
            done += got
    if not dtype.isnative and dtype.itemsize > 1:
        out.byteswap(inplace=True)
    return out


def _read_raw_into(source, start: int, stop: int, out: np.ndarray) -> np.ndarray | None:
    """``FrameSource._read_into`` of a source whose frames are one C-ordered raw block (``source._file_dtype`` at
    ``source._offset``): read straight into ``out``, or None when ``out`` is not of the file's dtype."""
    if out.dtype != source._file_dtype.newbyteorder("="):
        return None
    return _read_raw_frames(source.paths[0], source._file_dtype, source._offset, source.frame_shape, start, stop, out)


def _check_file_size(label: str, path: str, offset: int, shape, dtype: np.dtype) -> None:
    """Raise InputError if a raw data block declared by a header does not fit in the file."""
    need = int(offset) + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    size = os.path.getsize(path)
    if size < need:
        raise InputError(f"{label}: file is truncated or corrupt: the header declares {tuple(shape)} {np.dtype(dtype)} "
                         f"data ending at byte {need} but the file has {size} bytes; copy the file again")


def _rsciio_pick_stack(label: str, signals: list[dict], dataset: str | None = None) -> tuple[int, dict]:
    """Choose the signal holding an image stack among rosettasciio's results; return (index, signal)."""
    def title(sig):
        return str(((sig.get("metadata") or {}).get("General") or {}).get("title") or "")

    if not signals:
        raise InputError(f"{label}: the file holds no image data")
    if dataset is not None:
        for i, sig in enumerate(signals):
            if str(dataset) == str(i) or str(dataset).lower() == title(sig).lower():
                return i, sig
        names = ", ".join(f"{i}: {title(s) or '?'} {tuple(s['data'].shape)}" for i, s in enumerate(signals))
        raise InputError(f"{label}: no signal {dataset!r}; the file holds {names}")
    for i, sig in enumerate(signals):
        axes = sig.get("axes") or []
        if len(sig["data"].shape) == 3 and sum(not a.get("navigate", False) for a in axes) == 2:
            return i, sig
    shapes = [tuple(s["data"].shape) for s in signals]
    first = shapes[0]
    if len(first) == 3:
        raise InputError(f"{label} holds a 3-D dataset {first} that is not an image stack (a spectrum image?); "
                         "ECM needs a series of images")
    _check_series_shape(label, first)
    raise InputError(f"{label}: no image stack found (datasets: {shapes})")  # pragma: no cover


def _rsciio_axes(label: str, sig: dict) -> tuple[tuple[int, int, int], dict, dict, dict]:  # order, t, y, x
    """Order of the (time, y, x) axes in a rosettasciio signal and the three axis dicts."""
    axes = sorted(sig.get("axes") or [], key=lambda a: a.get("index_in_array", 0))
    if len(axes) != 3:
        axes = [{"name": n, "index_in_array": i, "navigate": i == 0} for i, n in enumerate("tyx")]
    nav = [a for a in axes if a.get("navigate", False)]
    sig_axes = [a for a in axes if not a.get("navigate", False)]
    if len(nav) != 1 or len(sig_axes) != 2:
        raise InputError(f"{label} holds a 3-D dataset that is not an image stack; ECM needs a series of images")
    t, y, x = nav[0], sig_axes[0], sig_axes[1]
    order = tuple(int(a.get("index_in_array", i)) for i, a in ((0, t), (1, y), (2, x)))
    if sorted(order) != [0, 1, 2]:
        order = (0, 1, 2)
    return order, t, y, x


# rosettasciio readers (DM, Velox EMD) are re-opened lazily in FrameSource._read; the lazy arrays they
# return are cached per process (never pickled with the source), keyed by file version and signal.
_RSCIIO_CACHE: dict[tuple, Any] = {}
_RSCIIO_CACHE_SIZE = 8
_RSCIIO_LOCK = threading.Lock()


def _rsciio_open(kind: str, path: str, **kwargs) -> list[dict]:
    """rosettasciio's lazy reader for ``kind`` ("dm", "emd", "hspy"); any failure becomes InputError."""
    try:
        if kind == "dm":
            from rsciio.digitalmicrograph import file_reader
        elif kind == "hspy":
            from rsciio.hspy import file_reader
        else:
            from rsciio.emd import file_reader
        return file_reader(path, lazy=True, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path} cannot be read by rosettasciio ({type(exc).__name__}: {exc}); "
                         "the file may be corrupt, truncated or of an unsupported variant") from None


def _rsciio_frames(kind: str, path: str, index: int, order: tuple[int, int, int], start: int, stop: int,
                   **kwargs) -> np.ndarray:
    """Frames [start, stop) of signal ``index`` of a rosettasciio-readable file, as (time, y, x)."""
    key = (kind, _file_key(path), index, tuple(sorted(kwargs.items())))
    with _RSCIIO_LOCK:
        data = _RSCIIO_CACHE.get(key)
        if data is None:
            signals = _rsciio_open(kind, path, **kwargs)
            data = signals[index]["data"]
            if tuple(order) != (0, 1, 2):
                data = data.transpose(order)
            while len(_RSCIIO_CACHE) >= _RSCIIO_CACHE_SIZE:
                _RSCIIO_CACHE.pop(next(iter(_RSCIIO_CACHE)))
            _RSCIIO_CACHE[key] = data
    out = data[start:stop]
    if hasattr(out, "compute"):
        out = out.compute(scheduler="sync")
    return np.asarray(out)


class RsciioStackSource(FrameSource):
    """An image stack read through rosettasciio's lazy reader (DM, Velox EMD): shared open and read logic.

    Subclasses set ``_kind`` (rosettasciio module), ``_kwargs`` (reader options) and ``_prefix`` (of the
    keys they put in ``extra``), and call :meth:`_open_stack` from ``__init__``.
    """

    _kind = ""
    _kwargs: dict = {}
    _prefix = ""

    def _open_stack(self, path: str, dataset=None):
        """Open ``path``, pick its image stack and set dtype, shape and axis order.

        Returns ``(signals, sig, extra, frame_time_s, pixel_size_nm)``; the caller drops ``signals``
        when done (they hold rosettasciio's open file).
        """
        self.paths = [path]
        _require_file(path)
        signals = _rsciio_open(self._kind, path, **self._kwargs)
        index, sig = _rsciio_pick_stack(path, signals, dataset)
        order, t_axis, y_axis, x_axis = _rsciio_axes(path, sig)
        self.dtype = _native_dtype(path, sig["data"].dtype)
        self.shape = _check_series_shape(path, tuple(sig["data"].shape[i] for i in order))
        self._index, self._order = index, order
        pre = self._prefix
        extra: dict = {f"{pre}_signal_index": index}
        frame_time = _calibrated_time(t_axis.get("scale"), t_axis.get("units"), extra, f"{pre}_frame_time_raw")
        pixel = _calibrated_length(x_axis.get("scale"), x_axis.get("units"), extra, f"{pre}_pixel_size_raw")
        if pixel is not None and y_axis.get("scale") != x_axis.get("scale"):
            _put(extra, f"{pre}_pixel_size_y", f"{y_axis.get('scale')} {y_axis.get('units')}")
        _put(extra, f"{pre}_stack_axis", f"{t_axis.get('name')} scale={t_axis.get('scale')} units={t_axis.get('units')}")
        return signals, sig, extra, frame_time, pixel

    def _read(self, start: int, stop: int) -> np.ndarray:
        return _rsciio_frames(self._kind, self.paths[0], self._index, self._order, start, stop, **self._kwargs)


def read_single_frame(path: str, what: str = "a frame") -> np.ndarray:
    """One 2-D frame from a single-frame TIFF or DM3/DM4 file (a leading axis of length 1 is dropped); an
    InputError naming the file and ``what`` was wanted of it if it does not read as one."""
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".dm3", ".dm4"):
            from rsciio.digitalmicrograph import file_reader

            images = [s["data"] for s in file_reader(path) if np.ndim(s["data"]) in (2, 3)]
            if not images:
                raise ValueError("no image in the file")
            a = np.asarray(images[0])
        else:
            import tifffile

            a = np.asarray(tifffile.imread(path))
    except Exception as exc:  # noqa: BLE001 - any reader complaint names the file
        raise InputError(f"{path}: cannot read {what} ({type(exc).__name__}: {exc})") from None
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise InputError(f"{path}: holds data of shape {a.shape}, not one 2-D frame ({what})")
    return a
