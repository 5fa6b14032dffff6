"""Generic HDF5: one 3-D dataset (time, y, x), named by ``dataset`` or found automatically."""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

from ..errors import InputError
from ._common import (
    _calibrated_length,
    _calibrated_time,
    _check_series_shape,
    _native_dtype,
    _put,
    _require_file,
)
from .axes import resolve_axes
from .base import FrameSource, SourceMetadata


@contextmanager
def open_h5(path: str):
    """Open an HDF5 file read-only; InputError if it is not HDF5.

    Uses HDF5's default file locking (as rosettasciio does: one process must not mix locking modes on
    a file) and retries without locking where the file system refuses locks (some network/read-only mounts).
    """
    import h5py

    try:
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            if "lock" not in str(exc).lower():
                raise
            f = h5py.File(path, "r", locking=False)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path} is not a readable HDF5 file ({type(exc).__name__}: {exc}); "
                         "the file may be corrupt, truncated or of another format") from None
    try:
        yield f
    finally:
        f.close()


def list_datasets(f) -> list[tuple[str, tuple[int, ...], str]]:
    """(path, shape, dtype) of every dataset in an open HDF5 file, in file order."""
    import h5py

    out = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out.append(("/" + name, tuple(obj.shape or ()), str(obj.dtype)))

    f.visititems(visit)
    return out


def describe_candidates(items) -> str:
    return ", ".join(f"{p} {shape} {dtype}" for p, shape, dtype in items) or "none"


def _text(value) -> str | None:
    """A string attribute value (bytes, numpy scalar or 1-element array) as str; None if absent or empty."""
    from ._common import _scalar

    value = _scalar(value)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _units_of(obj) -> str | None:
    from ._common import _clean_unit

    for key in ("units", "unit", "Units"):
        if key in obj.attrs:
            return _clean_unit(_text(obj.attrs[key]))
    return None


def _step_of(vec) -> float | None:
    """The step of a 1-D numeric axis vector of 2+ values; None otherwise."""
    import h5py

    try:
        if isinstance(vec, h5py.Dataset) and vec.ndim == 1 and vec.shape[0] >= 2 and np.issubdtype(vec.dtype, np.number):
            v = vec[:2]
            return float(v[1] - v[0])
    except Exception:  # noqa: BLE001 - an odd axis vector only loses the calibration
        return None
    return None


def _nexus_axes(ds) -> list[str | None] | None:
    """The axis names of a NeXus NXdata signal (group attribute ``axes``, ``"."`` for none), or None."""
    try:
        group = ds.parent
        signal = _text(group.attrs.get("signal"))
        is_signal = signal == ds.name.rsplit("/", 1)[-1] or _text(ds.attrs.get("signal")) == "1" or \
            ds.attrs.get("signal") == 1
        raw = group.attrs.get("axes") if is_signal else None
        if raw is None:
            return None
        if isinstance(raw, (bytes, str)):
            names = [n for n in str(_text(raw) or "").replace(":", ",").split(",")]
        else:
            names = [_text(v) or "." for v in np.asarray(raw).reshape(-1)]
        names = [n.strip() for n in names]
        if len(names) != ds.ndim:
            return None
        return [None if n in ("", ".") else n for n in names]
    except Exception:  # noqa: BLE001 - malformed NeXus attributes only lose the labels
        return None


def axis_info(ds) -> list[tuple[str | None, str | None, float | None]]:
    """``(name, units, step)`` of each axis of an h5py dataset, from (first found):

    * its dimension labels and attached dimension scales (``units``/``unit`` and ``long_name``/``name``
      attributes of the scale, else the scale's own name; step from the scale's values);
    * NeXus NXdata: the parent group's ``axes`` attribute naming the axis datasets (units, step from those);
    * units as dataset attributes ``<name>_units``/``<name>_unit`` for a labelled axis.
    """
    nexus = None
    out = []
    for i in range(ds.ndim):
        dim = ds.dims[i]
        name = _text(dim.label)
        units = step = None
        try:
            scales = list(dim.values())
        except Exception:  # noqa: BLE001 - an unreadable scale only loses its label
            scales = []
        if scales:
            scale = scales[0]
            units = _units_of(scale)
            step = _step_of(scale)
            if name is None:
                for key in ("long_name", "name", "NAME"):
                    v = _text(scale.attrs.get(key))
                    if v is not None and not v.startswith("This is a netCDF dimension"):
                        name = v
                        break
                if name is None:
                    name = scale.name.rsplit("/", 1)[-1]
        elif name is None:
            if nexus is None:
                nexus = _nexus_axes(ds) or [None] * ds.ndim
            name = nexus[i]
            if name is not None:
                vec = ds.parent.get(name)
                if vec is not None and hasattr(vec, "attrs"):
                    units = _units_of(vec)
                    step = _step_of(vec)
        if units is None and name is not None:
            for key in (f"{name}_units", f"{name}_unit"):
                if key in ds.attrs:
                    from ._common import _clean_unit

                    units = _clean_unit(_text(ds.attrs[key]))
                    break
        out.append((name, units, step))
    return out


def dimension_labels(ds) -> list[tuple[str | None, str | None]]:
    """``(name, units)`` of each axis of an h5py dataset (see :func:`axis_info`)."""
    return [(n, u) for n, u, _ in axis_info(ds)]


def dimension_steps(ds) -> list[float | None]:
    """The step of each axis' scale (None without a numeric scale of 2+ values; see :func:`axis_info`)."""
    return [s for _, _, s in axis_info(ds)]


class Hdf5Source(FrameSource):
    """A 3-D dataset in an HDF5 file, read as ``(time, y, x)``.

    The stored order comes from the dataset's dimension labels/scales (:mod:`ecm_dask.readers.axes`) or ``axes``
    (``"yxt"``: stored as y, x, time); unlabelled data is ``(time, y, x)``, except the image stack of a Velox EMD file
    read as plain HDF5 (stored as (y, x, frame)).  Calibration is taken from attributes
    ``frame_time_s`` and ``pixel_size_nm`` on the dataset, its parent groups or the file, when present.
    """

    format_name = "HDF5"

    def __init__(self, path: str | os.PathLike, dataset: str | None = None, axes: str | None = None):
        import h5py

        path = os.fspath(path)
        self.paths = [path]
        _require_file(path)
        with open_h5(path) as f:
            if dataset is None:
                items = list_datasets(f)
                cands = [it for it in items if len(it[1]) == 3]
                if len(cands) != 1:
                    what = "no 3-D dataset" if not cands else f"{len(cands)} 3-D datasets"
                    raise InputError(f"{path} holds {what}; choose one with --dataset (datasets: "
                                     f"{describe_candidates(cands or items)})")
                name = cands[0][0]
            else:
                name = "/" + str(dataset).strip("/")
                obj = f.get(name)
                if not isinstance(obj, h5py.Dataset):
                    items = list_datasets(f)
                    kind = "is a group, not a dataset" if obj is not None else "does not exist"
                    raise InputError(f"{path}: {name} {kind}; datasets in the file: {describe_candidates(items)}")
            ds = f[name]
            label = f"{path}:{name}"
            self.dtype = _native_dtype(label, ds.dtype)
            _check_series_shape(label, ds.shape)
            info = axis_info(ds)
            if not any(n or u for n, u, _ in info) and _velox_image(f, name):
                # a Velox image stack read as plain HDF5 (--format hdf5): its layout is the label
                info = [("y", None, None), ("x", None, None), ("frame", None, None)]
            labels = [(n, u) for n, u, _ in info]
            self.axis_order = resolve_axes(label, labels, axes)
            self.shape = _check_series_shape(label, tuple(int(ds.shape[i]) for i in self.axis_order))
            self._dataset = name
            extra: dict = {"hdf5_dataset": name, "axis_order": list(self.axis_order)}
            if any(n or u for n, u in labels):
                extra["hdf5_axis_labels"] = [f"{n or '?'} [{u or ''}]" for n, u in labels]
            _put(extra, "hdf5_chunks", list(ds.chunks) if ds.chunks else None)
            _put(extra, "hdf5_compression", ds.compression)
            attrs = _inherited_attrs(f, ds)
            frame_time = _calibrated_time(attrs.get("frame_time_s"), "s", extra, "frame_time_s_raw")
            pixel = _calibrated_length(attrs.get("pixel_size_nm"), "nm", extra, "pixel_size_nm_raw")
            steps = [st for _, _, st in info]  # else from the dimension scales of the time and x axes
            t_axis, _, x_axis = self.axis_order
            if frame_time is None and steps[t_axis] is not None and labels[t_axis][1]:
                frame_time = _calibrated_time(steps[t_axis], labels[t_axis][1], extra, "frame_time_scale_raw")
            if pixel is None and steps[x_axis] is not None and labels[x_axis][1]:
                pixel = _calibrated_length(steps[x_axis], labels[x_axis][1], extra, "pixel_size_scale_raw")
            instrument = attrs.get("instrument")
            if isinstance(instrument, bytes):
                instrument = instrument.decode("utf-8", "replace")
        self.metadata = SourceMetadata(frame_time_s=frame_time, pixel_size_nm=pixel,
                                       instrument=str(instrument) if isinstance(instrument, str) else None,
                                       extra=extra)

    def _read(self, start: int, stop: int) -> np.ndarray:
        t = self.axis_order[0]
        key = [slice(None)] * 3
        key[t] = slice(start, stop)
        with open_h5(self.paths[0]) as f:
            block = f[self._dataset][tuple(key)]
        if self.axis_order == (0, 1, 2):
            return block
        return np.ascontiguousarray(np.transpose(block, self.axis_order))


def _velox_image(f, name: str) -> bool:
    """Whether ``name`` is the pixel data of an image of a Velox EMD file (stored as (y, x, frame))."""
    import re

    if not re.fullmatch(r"/Data/Image/[^/]+/Data", name):
        return False
    from .emd import emd_variant

    return emd_variant(f) == "velox"


def _inherited_attrs(f, ds) -> dict:
    """Attributes of the file root, then each group down to the dataset (nearest wins)."""
    chain = [f]
    parts = [p for p in ds.name.split("/") if p]
    for i in range(1, len(parts)):
        chain.append(f["/" + "/".join(parts[:i])])
    chain.append(ds)
    out: dict = {}
    for obj in chain:
        for k, v in obj.attrs.items():
            if isinstance(v, np.ndarray) and v.size == 1:
                v = v.reshape(())[()]
            out[k] = v.item() if isinstance(v, np.generic) else v
    return out
