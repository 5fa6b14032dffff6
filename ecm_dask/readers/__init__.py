"""Instrument readers: open an image series ``I(time, y, x)`` from a vendor file lazily.

:func:`open_source` picks a reader from the file extension (or ``format=``) and returns a
:class:`~ecm_dask.readers.base.FrameSource`: shape, dtype and calibration are read from the headers
only, pixel data on demand with :meth:`FrameSource.read` or :meth:`FrameSource.to_dask`.

Every failure a user can cause (missing file, corrupt file, a 2-D image instead of a series, a
non-numeric dataset...) raises :class:`~ecm_dask.errors.InputError` with a one-line message naming
the file.

Reader modules are imported only when :func:`open_source` needs them, so importing the package is cheap;
their shared helpers live in :mod:`._common`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..errors import InputError
from ._common import TIFF_EXTENSIONS
from .base import FrameSource, SourceMetadata

__all__ = ["EXTENSIONS", "FORMATS", "TIFF_EXTENSIONS", "FrameSource", "SourceMetadata", "open_source"]

#: format name -> one-line description (for CLI help)
FORMATS: dict[str, str] = {
    "tiff": "multi-page TIFF (.tif, .tiff); ImageJ frame interval and pixel size are read",
    "tiff-folder": "a folder (or list) of single-frame TIFF files, in natural order of the numbers in their names",
    "dm": "Gatan DigitalMicrograph image stack (.dm3, .dm4)",
    "emd": "EMD (.emd): Thermo Fisher Velox or Berkeley (NCEM) EMD, detected from the file",
    "hdf5": "generic HDF5 (.h5, .hdf5, .hdf); --dataset names the 3-D dataset unless there is only one",
    "mrc": "MRC image stack (.mrc, .mrcs); pixel size from the voxel size",
    "npy": "NumPy array file (.npy) of shape (time, y, x); no calibration",
    "zarr": "Zarr v2/v3 array or group (folder); --dataset names the array inside a group",
    "hspy": "HyperSpy file (.hspy): a Signal2D with time as its navigation axis; axes calibrated",
}

#: file extension -> format name
EXTENSIONS: dict[str, str] = {
    ".tif": "tiff", ".tiff": "tiff", ".dm3": "dm", ".dm4": "dm", ".emd": "emd", ".h5": "hdf5", ".hdf5": "hdf5",
    ".hdf": "hdf5", ".mrc": "mrc", ".mrcs": "mrc", ".npy": "npy", ".zarr": "zarr", ".hspy": "hspy",
}
_FORMATS_WITH_DATASET = ("emd", "hdf5", "zarr")


def open_source(inputs: str | os.PathLike | Iterable[str | os.PathLike], *, format: str | None = None,
                dataset: str | None = None, axes: str | None = None) -> FrameSource:
    """Open an image series lazily, reading headers only.

    Parameters
    ----------
    inputs : path or list of paths
        One multi-frame file (TIFF, DM3/DM4, EMD, HDF5, MRC, NPY), a Zarr array or group folder, a
        folder of single-frame TIFF files, or a list of single-frame TIFF files.
    format : str, optional
        One of :data:`FORMATS`; overrides detection from the extension.
    dataset : str, optional
        For HDF5, EMD and Zarr: the path of the array inside the file (for Velox EMD also the
        signal title, e.g. ``"HAADF"``, or its index).
    axes : str, optional
        For HDF5 and Berkeley EMD: the stored axis order with the letters t, y, x (e.g. ``"yxt"``); by default
        it is read from the file's axis labels (:mod:`ecm_dask.readers.axes`).

    Returns
    -------
    FrameSource

    Raises
    ------
    InputError
        With a one-line message naming the file if it cannot be opened as a series of frames.
    """
    paths = _as_paths(inputs)
    for p in paths:
        if not os.path.exists(p):
            raise InputError(f"{p}: no such file or folder; check the path")
    if format is None:
        fmt = _detect_format(paths)
    else:
        fmt = str(format).strip().lower()
        if fmt not in FORMATS:
            raise InputError(f"unknown format {format!r} for {_describe(paths)}; use one of: {', '.join(FORMATS)}")
    if axes is not None:
        from .axes import parse_axes

        axes = parse_axes(axes)
        if fmt not in ("hdf5", "emd"):
            raise InputError(f"{_describe(paths)}: --axes applies to HDF5 and EMD inputs, not to {fmt} (whose frames "
                             "are stored one after another)")
    if dataset is not None and fmt not in _FORMATS_WITH_DATASET:
        raise InputError(f"{_describe(paths)}: a dataset ({dataset!r}) can only be chosen in "
                         f"{', '.join(_FORMATS_WITH_DATASET)} inputs, not in {fmt}")
    if fmt == "tiff-folder" or (fmt == "tiff" and (len(paths) > 1 or os.path.isdir(paths[0]))):
        from .tiff import open_tiff_series

        return open_tiff_series(paths)
    if len(paths) != 1:
        raise InputError(f"{_describe(paths)}: several inputs were given, but only single-frame TIFF files can be "
                         "combined into one series; give one file")
    path = paths[0]
    if fmt == "tiff":
        from .tiff import TiffStackSource

        return TiffStackSource(path)
    if fmt == "dm":
        from .gatan import DmSource

        return DmSource(path)
    if fmt == "emd":
        from .emd import open_emd

        return open_emd(path, dataset=dataset, axes=axes)
    if fmt == "hdf5":
        from .hdf5 import Hdf5Source

        return Hdf5Source(path, dataset=dataset, axes=axes)
    if fmt == "mrc":
        from .mrc import MrcSource

        return MrcSource(path)
    if fmt == "npy":
        from .npy import NpySource

        return NpySource(path)
    if fmt == "zarr":
        from .zarr_array import ZarrSource

        return ZarrSource(path, dataset=dataset)
    if fmt == "hspy":
        from .hyperspy import HyperspySource

        return HyperspySource(path)
    raise AssertionError(fmt)  # pragma: no cover - FORMATS and the dispatch above agree


def _as_paths(inputs) -> list[str]:
    if isinstance(inputs, (str, os.PathLike)):
        items = [inputs]
    else:
        try:
            items = list(inputs)
        except TypeError:
            raise InputError(f"input must be a path or a list of paths, got {type(inputs).__name__}") from None
    paths = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise InputError(f"input must be a path or a list of paths, got an item {item!r}")
        paths.append(os.fspath(item))
    if not paths:
        raise InputError("no input given: give a file, a folder of TIFF frames or a list of TIFF files")
    return paths


def _describe(paths: list[str]) -> str:
    if len(paths) == 1:
        return paths[0]
    return f"{paths[0]} (and {len(paths) - 1} more)"


def _supported_text() -> str:
    exts = ", ".join(sorted(set(EXTENSIONS) - {".zarr"}))
    return f"{exts}, a Zarr folder or a folder of TIFF frames (or pass --format: {', '.join(FORMATS)})"


def _is_zarr_dir(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, m)) for m in ("zarr.json", ".zarray", ".zgroup"))


def _detect_format(paths: list[str]) -> str:
    if len(paths) > 1:
        bad = [p for p in paths if os.path.isdir(p) or os.path.splitext(p)[1].lower() not in TIFF_EXTENSIONS]
        if bad:
            raise InputError(f"{bad[0]}: a list of inputs must be single-frame TIFF files ({', '.join(TIFF_EXTENSIONS)}); "
                             "give one file or folder otherwise")
        return "tiff-folder"
    path = paths[0]
    ext = os.path.splitext(path.rstrip("/\\"))[1].lower()
    if os.path.isdir(path):
        if ext == ".zarr" or _is_zarr_dir(path):
            return "zarr"
        return "tiff-folder"
    fmt = EXTENSIONS.get(ext)
    if fmt is None or fmt == "zarr":
        raise InputError(f"{path}: unsupported file type {ext or '(no extension)'!r}; supported: {_supported_text()}")
    return fmt


# ------------------------------------------------------------------------------------------------
# helpers shared by the reader modules
# ------------------------------------------------------------------------------------------------
