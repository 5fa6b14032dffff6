"""EMD files (.emd): Thermo Fisher Velox (through rosettasciio) and Berkeley/NCEM EMD (read directly with h5py).

Both are HDF5; :func:`open_emd` tells them apart from the file's content.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import InputError
from ._common import (
    RsciioStackSource,
    _calibrated_length,
    _calibrated_time,
    _check_series_shape,
    _clean_unit,
    _native_dtype,
    _put,
    _require_file,
    _scalar,
)
from .axes import resolve_axes
from .base import FrameSource, SourceMetadata
from .hdf5 import Hdf5Source, describe_candidates, open_h5

_VELOX_KWARGS = {"select_type": "images"}
#: how Velox stores an image stack (``Data/Image/<id>/Data``); rosettasciio brings it to (frame, y, x)
VELOX_STORED_AXES = "yxt"


def emd_variant(f) -> str | None:
    """'velox', 'berkeley' or None for an open h5py file."""
    version = f.get("Version")
    if version is not None:
        try:
            raw = version[0]
            info = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
            if info.get("format") in ("Velox", "DevelopersKit"):
                return "velox"
        except Exception:  # noqa: BLE001, S110 - not a Velox version record: try Berkeley below
            pass
    if "version_major" in f.attrs or berkeley_groups(f):
        return "berkeley"
    return None


def _is_emd_group(obj) -> bool:
    value = obj.attrs.get("emd_group_type")
    if value is None:
        return False
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    try:
        return int(value) == 1
    except (TypeError, ValueError):
        return False


def berkeley_groups(f) -> list[str]:
    """Paths of the Berkeley EMD data groups (attribute emd_group_type = 1 and a ``data`` dataset)."""
    import h5py

    out = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and _is_emd_group(obj) and isinstance(obj.get("data"), h5py.Dataset):
            out.append("/" + name)

    f.visititems(visit)
    return out


def open_emd(path: str | os.PathLike, dataset: str | None = None, axes: str | None = None) -> FrameSource:
    """Open a Velox or Berkeley EMD file; an HDF5 file of neither kind is read as generic HDF5.  ``axes``
    (``--axes``) gives the stored axis order of Berkeley EMD and HDF5 data; Velox stacks, stored (y, x, frame),
    are ordered by rosettasciio (``--axes yxt`` is accepted for them, any other order refused)."""
    path = os.fspath(path)
    _require_file(path)
    with open_h5(path) as f:
        variant = emd_variant(f)
    if variant == "velox":
        if axes is not None and axes != VELOX_STORED_AXES:
            raise InputError(f"{path}: --axes {axes} does not apply to this Velox EMD file: Velox stores each stack "
                             f"as (y, x, frame) (--axes {VELOX_STORED_AXES}) and its axes are read from the file; "
                             "leave --axes out")
        return VeloxEmdSource(path, dataset=dataset)
    if variant == "berkeley":
        return BerkeleyEmdSource(path, dataset=dataset, axes=axes)
    return Hdf5Source(path, dataset=dataset, axes=axes)


class VeloxEmdSource(RsciioStackSource):
    """The first image stack of a Thermo Fisher Velox EMD file (or the signal named by ``dataset``:
    its title such as ``"HAADF"``, or its index among the images)."""

    format_name = "Velox EMD"
    _kind, _kwargs, _prefix = "emd", _VELOX_KWARGS, "velox"

    def __init__(self, path: str | os.PathLike, dataset: str | None = None):
        signals, sig, extra, frame_time, pixel = self._open_stack(os.fspath(path), dataset)
        try:
            general = (sig.get("metadata") or {}).get("General") or {}
            _put(extra, "velox_detector", general.get("title"))
            others = [str(((s.get("metadata") or {}).get("General") or {}).get("title")) for s in signals]
            if len(others) > 1:
                _put(extra, "velox_signals", others)
            _put(extra, "velox_acquisition", f"{general.get('date', '')} {general.get('time', '')}".strip())
            om = sig.get("original_metadata") or {}
            inst = om.get("Instrument") or {}
            words = [str(inst.get(k)).strip() for k in ("Manufacturer", "InstrumentModel") if inst.get(k)]
            instrument = " ".join(words) or None
            if frame_time is not None:  # rosettasciio's time step: the scan frame time, else the camera exposure
                scan = om.get("Scan") or {}
                extra["velox_frame_time_from"] = "Scan.FrameTime" if "FrameTime" in scan else "detector ExposureTime"
            _put(extra, "velox_instrument_id", inst.get("InstrumentId"))
            _put(extra, "velox_control_software", inst.get("ControlSoftwareVersion"))
        finally:
            del signals  # drop rosettasciio's lazy arrays (and with them its open HDF5 handle)
        self.metadata = SourceMetadata(frame_time_s=frame_time, pixel_size_nm=pixel, instrument=instrument,
                                       extra=extra)


class BerkeleyEmdSource(FrameSource):
    """A 3-D data group of a Berkeley (NCEM) EMD file, read directly with h5py.

    Each data group (attribute ``emd_group_type = 1``) holds ``data`` and one vector ``dimN`` per axis
    (``dim1`` for the first array axis) with attributes ``name`` and ``units``.  The time axis is the
    one whose units are a time (or whose name says time/frame), else the first axis; the other two
    are (y, x) in file order -- reversed when time is the last axis, as in files written by
    rosettasciio/HyperSpy, which store the transposed array.
    """

    format_name = "Berkeley EMD"

    def __init__(self, path: str | os.PathLike, dataset: str | None = None, axes: str | None = None):
        path = os.fspath(path)
        self.paths = [path]
        _require_file(path)
        with open_h5(path) as f:
            groups = berkeley_groups(f)
            shapes = [(g, tuple(f[g]["data"].shape), str(f[g]["data"].dtype)) for g in groups]
            if dataset is not None:
                want = "/" + str(dataset).strip("/")
                want = want.removesuffix("/data")
                if want not in groups:
                    raise InputError(f"{path}: no EMD data group {dataset!r}; data groups: {describe_candidates(shapes)}")
                group = want
            else:
                cands = [s for s in shapes if len(s[1]) == 3]
                if len(cands) > 1:
                    raise InputError(f"{path} holds {len(cands)} 3-D EMD data groups; choose one with --dataset "
                                     f"({describe_candidates(cands)})")
                if not cands:
                    if not shapes:
                        raise InputError(f"{path} holds no EMD data group (emd_group_type=1 with a 'data' dataset)")
                    _check_series_shape(f"{path}:{shapes[0][0]}", shapes[0][1])
                group = (cands or shapes)[0][0]
            grp = f[group]
            ds = grp["data"]
            label = f"{path}:{group}"
            self.dtype = _native_dtype(label, ds.dtype)
            disk_shape = tuple(int(n) for n in ds.shape)
            if len(disk_shape) != 3:
                _check_series_shape(label, disk_shape)
            base = 0 if "dim0" in grp else 1
            dims = []
            for i in range(3):
                dim = grp.get(f"dim{i + base}")
                dims.append(_parse_dim(dim))
            order = resolve_axes(label, [(name, units) for name, units, _ in dims], axes, time_last_reverses=True)
            self.shape = _check_series_shape(label, tuple(disk_shape[i] for i in order))
            self._group = group
            self._order = self.axis_order = order
            extra: dict = {"emd_group": group, "emd_axis_order": list(order)}
            version = [f.attrs.get("version_major"), f.attrs.get("version_minor")]
            if version[0] is not None:
                _put(extra, "emd_version", ".".join(str(_scalar(v)) for v in version if v is not None))
            for key, i in (("emd_time_axis", order[0]), ("emd_y_axis", order[1]), ("emd_x_axis", order[2])):
                name, units, scale = dims[i]
                _put(extra, key, f"{name or '?'} scale={scale} units={units or ''}")
            _, tunits, tscale = dims[order[0]]
            frame_time = _calibrated_time(tscale, tunits, extra, "emd_frame_time_raw") if tunits else None
            _, xunits, xscale = dims[order[2]]
            pixel = _calibrated_length(xscale, xunits, extra, "emd_pixel_size_raw") if xunits else None
            instrument = None
            mic = f.get("microscope")
            if mic is not None:
                for key in ("name", "microscope", "instrument", "Name"):
                    if key in mic.attrs:
                        instrument = str(_scalar(mic.attrs[key])).strip() or None
                        break
        self.metadata = SourceMetadata(frame_time_s=frame_time, pixel_size_nm=pixel, instrument=instrument,
                                       extra=extra)

    def _read(self, start: int, stop: int) -> np.ndarray:
        t = self._order[0]
        key = [slice(None)] * 3
        key[t] = slice(start, stop)
        with open_h5(self.paths[0]) as f:
            block = f[self._group]["data"][tuple(key)]
        # block axes are still in file order; bring them to (time, y, x)
        return np.ascontiguousarray(np.transpose(block, self._order))


def _parse_dim(dim) -> tuple[str | None, str | None, float | None]:
    """(name, units, step) of a Berkeley EMD dim vector; None where absent."""
    if dim is None:
        return None, None, None
    name = _scalar(dim.attrs.get("name"))
    units = _clean_unit(_scalar(dim.attrs.get("units")))
    scale = None
    try:
        if dim.ndim == 1 and dim.shape[0] >= 2 and np.issubdtype(dim.dtype, np.number):
            v = dim[:2]
            scale = float(v[1] - v[0])
    except Exception:  # noqa: BLE001 - an odd dim vector only loses the calibration
        scale = None
    return (str(name) if name is not None else None), units, scale
