"""Zarr v2/v3 arrays, or an array inside a Zarr group (e.g. ``intensity`` of an ecm_dask series store)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from ..schema import (
    ATTR_FRAME_TIME,
    ATTR_INSTRUMENT,
    ATTR_PIXEL_SIZE,
    ATTR_TEMPERATURE,
    INTENSITY,
    UNKNOWN,
)
from ._common import (
    _calibrated_length,
    _calibrated_time,
    _check_series_shape,
    _native_dtype,
    _put,
)
from .base import FrameSource, SourceMetadata


def _open_node(path: str, array_path: str | None = None):
    import zarr

    try:
        if array_path:
            return zarr.open_array(store=path, path=array_path, mode="r")
        return zarr.open(store=path, mode="r")
    except Exception as exc:  # noqa: BLE001
        what = f"array {array_path!r} in " if array_path else ""
        raise InputError(f"cannot open {what}{path} as Zarr ({type(exc).__name__}: {exc}); "
                         "is it a Zarr array or group folder?") from None


class ZarrSource(FrameSource):
    """A 3-D Zarr array (time, y, x); calibration from attributes ``frame_time_s``/``pixel_size_nm`` of
    the array or its group."""

    format_name = "Zarr"

    def __init__(self, path: str | os.PathLike, dataset: str | None = None):
        import zarr

        path = os.fspath(path)
        self.paths = [path]
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file or folder; check the path")
        node = _open_node(path)
        group_attrs: dict = {}
        array_path = ""
        if isinstance(node, zarr.Group):
            group_attrs = dict(node.attrs)
            try:
                arrays = sorted((name, tuple(a.shape), str(a.dtype)) for name, a in node.members(max_depth=None)
                                if isinstance(a, zarr.Array))
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"{path}: cannot list the Zarr group ({type(exc).__name__}: {exc})") from None
            listing = ", ".join(f"{n} {s} {d}" for n, s, d in arrays) or "none"
            if dataset is not None:
                array_path = str(dataset).strip("/")
                if array_path not in {n for n, _, _ in arrays}:
                    raise InputError(f"{path}: no array {dataset!r} in the Zarr group; arrays: {listing}")
            elif INTENSITY in {n for n, _, _ in arrays}:
                array_path = INTENSITY
            else:
                cands = [n for n, s, _ in arrays if len(s) == 3]
                if len(cands) != 1:
                    what = "no 3-D array" if not cands else f"{len(cands)} 3-D arrays"
                    raise InputError(f"{path} holds {what}; choose one with --dataset (arrays: {listing})")
                array_path = cands[0]
            node = _open_node(path, array_path)
        elif dataset is not None:
            raise InputError(f"{path} is a single Zarr array; it has no dataset {dataset!r} inside")
        label = f"{path}:{array_path}" if array_path else path
        self._array_path = array_path
        self.dtype = _native_dtype(label, node.dtype)
        self.shape = _check_series_shape(label, node.shape)
        attrs = {**group_attrs, **dict(node.attrs)}
        extra: dict = {"zarr_format": int(node.metadata.zarr_format)}
        _put(extra, "zarr_array", array_path or None)
        _put(extra, "zarr_chunks", list(node.chunks))
        frame_time = _calibrated_time(_num(attrs.get(ATTR_FRAME_TIME)), "s", extra, "frame_time_s_raw")
        pixel = _calibrated_length(_num(attrs.get(ATTR_PIXEL_SIZE)), "nm", extra, "pixel_size_nm_raw")
        temperature = _num(attrs.get(ATTR_TEMPERATURE))
        temperature = temperature if temperature is not None and np.isfinite(temperature) else None
        instrument = attrs.get(ATTR_INSTRUMENT)
        instrument = instrument if isinstance(instrument, str) and instrument and instrument != UNKNOWN else None
        self.metadata = SourceMetadata(frame_time_s=frame_time, pixel_size_nm=pixel, temperature_C=temperature,
                                       instrument=instrument, extra=extra)

    def _read(self, start: int, stop: int) -> np.ndarray:
        import zarr

        node = _open_node(self.paths[0], self._array_path or None)
        if not isinstance(node, zarr.Array):  # pragma: no cover - replaced since opened
            raise InputError(f"{self.paths[0]}: no longer a Zarr array")
        return np.asarray(node[start:stop])


def _num(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
