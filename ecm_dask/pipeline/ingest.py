"""Ingest stage: raw instrument files -> ``series.zarr`` (the one expensive transpose of the pipeline).

The input is read in time slabs of one shard each (the order in which it lies on disk) and written as
whole shards whose inner chunks are long in time and small in space.  Every later stage reads pixel
blocks over all time or a small ROI straight from those chunks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import schema as S
from ..errors import MetadataError, ParameterError
from ..readers.base import FrameSource
from ..store import layout as L
from ..store.writer import provenance, write_series
from .lock import run_lock

__all__ = ["ingest", "resolve_metadata", "write_series"]

#: the largest shard (one ingest task holds one uncompressed shard in memory)
MAX_SHARD_MB = 65536


def check_gain(value, name: str = "--counts-per-electron") -> float:
    """A camera gain (counts per detected electron) as a positive finite float, or a ParameterError."""
    from .config import _finite

    return _finite(value, f"{name} (camera counts per electron)", positive=True)


def file_k_calibration(extra: dict) -> float | None:
    """nm^-1 per pixel from a file whose pixel size is in reciprocal length (a diffraction pattern): the readers keep
    such a calibration raw, as ``"<value> <unit>"`` under a ``*pixel_size*raw`` key; None if there is none."""
    from ..readers.base import reciprocal_to_per_nm

    for key, raw in (extra or {}).items():
        if "pixel_size" in key and key.endswith("raw") and isinstance(raw, str):
            value, _, unit = raw.partition(" ")
            try:
                k = reciprocal_to_per_nm(float(value), unit)
            except ValueError:
                continue
            if k is not None and 0 < k < float("inf"):
                return k
    return None


def resolve_metadata(source: FrameSource, *, frame_time_s: float | None = None, pixel_size_nm: float | None = None,
                     temperature_C: float | None = None, material: str | None = None,
                     instrument: str | None = None, description: str | None = None,
                     k_calibration: float | None = None, counts_per_electron: float | None = None) -> dict[str, Any]:
    """Series attributes from the file's own metadata, overridden by the caller's (CLI flags).

    ``k_calibration`` (nm^-1 per camera pixel) makes the series a diffraction series (``series_mode``
    "diffraction", analysed with ``ecm-dask run --mode diffraction``); it then needs no real-space pixel size.  A
    file calibrated in reciprocal length (1/nm, 1/Å) without ``pixel_size_nm`` given is a diffraction series too.

    Raises
    ------
    MetadataError
        If the frame time or pixel size is neither in the file nor given, or is absurd; the message
        names the file and the flag to set.
    """
    m = source.metadata
    ft = frame_time_s if frame_time_s is not None else m.frame_time_s
    px = pixel_size_nm if pixel_size_nm is not None else m.pixel_size_nm
    if ft is None:
        raise MetadataError(f"{source.label}: the file does not record the frame time; give it with --frame-time SECONDS")
    if k_calibration is None and px is None:
        k_calibration = file_k_calibration(m.extra)  # calibrated in 1/nm: the file holds diffraction patterns
    if k_calibration is not None:
        if pixel_size_nm is not None:
            raise ParameterError("--pixel-size (image series) and --k-calibration (diffraction series) exclude "
                                 "each other: give the one that describes the camera")
        from .config import _finite

        k_calibration = _finite(k_calibration, "--k-calibration (nm^-1 per pixel)", positive=True)
        px = None
    elif px is None:
        raise MetadataError(f"{source.label}: the file does not record the pixel size; give it with --pixel-size NM")
    where_ft = "--frame-time" if frame_time_s is not None else f"{source.label}: frame time in file"
    where_px = "--pixel-size" if pixel_size_nm is not None else f"{source.label}: pixel size in file"
    camera = ({S.ATTR_SERIES_MODE: S.MODE_DIFFRACTION, S.ATTR_K_CALIBRATION: float(k_calibration)}
              if k_calibration is not None else {S.ATTR_PIXEL_SIZE: S.check_pixel_size(px, where_px)})
    meta = {
        S.ATTR_FRAME_TIME: S.check_frame_time(ft, where_ft),
        **camera,
        S.ATTR_TEMPERATURE: S.check_temperature(temperature_C if temperature_C is not None else m.temperature_C,
                                                "--temperature"),
        S.ATTR_MATERIAL: material or S.UNKNOWN,
        S.ATTR_INSTRUMENT: instrument or m.instrument or S.UNKNOWN,
        S.ATTR_SOURCE: [os.path.abspath(p) if os.path.exists(p) else p for p in source.paths],
    }
    attrs = S.series_attrs(meta)
    if description:
        attrs[S.ATTR_DESCRIPTION] = description
    if counts_per_electron is not None:
        attrs[S.ATTR_COUNTS_PER_ELECTRON] = check_gain(counts_per_electron)
    attrs[S.ATTR_PROVENANCE] = provenance({"input": source.fingerprint(), "file_metadata": m.extra,
                                           "reader": type(source).__name__})
    return attrs


def ingest(inputs: str | os.PathLike | Sequence[str | os.PathLike], output: str | os.PathLike, *,
           frame_time_s: float | None = None, pixel_size_nm: float | None = None,
           temperature_C: float | None = None, material: str | None = None, instrument: str | None = None,
           description: str | None = None, format: str | None = None, dataset: str | None = None,
           axes: str | None = None, overwrite: bool = False, tile: int = L.DEFAULT_TILE, shard_mb: float = L.DEFAULT_SHARD_BYTES / 2**20,
           progress: bool = True, k_calibration: float | None = None,
           counts_per_electron: float | None = None) -> Path:
    """Read instrument files and write a series store; see :func:`write_series` for resume rules.

    Parameters
    ----------
    inputs : a file, a folder of frames, or a list of frame files
    output : the ``series.zarr`` to write
    frame_time_s, pixel_size_nm : calibration; override what the file says (required if it says nothing)
    k_calibration : nm^-1 per camera pixel of a diffraction series (instead of ``pixel_size_nm``)
    counts_per_electron : camera gain; the report then gives the dose in electrons
    temperature_C, material, instrument, description : sample and instrument description
    format, dataset : force the reader, or name the dataset inside HDF5/Zarr containers
    axes : stored axis order of HDF5/EMD data (e.g. ``"yxt"``); default: from the file's axis labels
    overwrite : replace an existing store at ``output``
    tile, shard_mb : layout (inner chunk tile in pixels, shard size in MiB)
    progress : show progress

    Returns
    -------
    Path of the complete store.
    """
    from ..readers import open_source
    from ..store.paths import check_apart

    if isinstance(shard_mb, bool) or not isinstance(shard_mb, (int, float)) or not 0 < shard_mb <= MAX_SHARD_MB:
        raise ParameterError(f"--shard-mb must be a number of MiB in (0, {MAX_SHARD_MB}], got {shard_mb!r}")
    source = open_source(inputs, format=format, dataset=dataset, axes=axes)
    out = Path(output)
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    check_apart(out, [*given, *source.paths])  # the folder or pattern given and every file read from it
    attrs = resolve_metadata(source, frame_time_s=frame_time_s, pixel_size_nm=pixel_size_nm,
                             temperature_C=temperature_C, material=material, instrument=instrument,
                             description=description, k_calibration=k_calibration,
                             counts_per_electron=counts_per_electron)
    out.parent.mkdir(parents=True, exist_ok=True)
    with run_lock(out):  # one writer per output: a second ingest (or run) into it is refused, not interleaved
        return write_series(source, out, attrs, overwrite=overwrite, tile=tile, shard_bytes=int(shard_mb * 2**20),
                            progress=progress)
