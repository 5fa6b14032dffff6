"""Write a synthetic nanowire series of any size into a series store, chunk by chunk.

The speckle process of a pixel can only be generated for all frames at once (spectral synthesis), so
rendering is pixel-major: one task renders all frames of one tile of pixels into a temporary array
whose chunks are ``(frames_per_shard, tile, tile)``.  The ordinary ingest writer then reads that
array in time slabs (each slab touches only its own chunks) and writes the whole-frame shards of the
series store.  Memory per task: one tile over all frames, or one shard; never the whole series.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import StoreError
from ..readers.base import FrameSource, SourceMetadata
from ..store import blocks as B
from ..store import layout as L
from ..store import series as SS
from ..store.writer import provenance, write_series
from .kernels import render_block
from .model import SynthParams, drift_trace, truth_maps

INSTRUMENT = "ecm_dask.synth: simulated tilted-dark-field ECM"
_FRAMES = "frames"


def params_dict(params: SynthParams) -> dict[str, Any]:
    """The parameters as plain JSON-serialisable values."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()}


def truth_dataset(params: SynthParams):
    """Ground truth as a labelled dataset: maps on (y, x) in nm, the drift as ``shift (time, axis)``."""
    import xarray as xr

    maps = truth_maps(params)
    px = params.pixel_size_nm
    coords = SS.series_coords(params.n_frames, params.ny, params.nx, params.frame_time_s, px)
    names = {S.TRUTH_TAU: "relaxation time", S.TRUTH_BETA: "stretching exponent", S.TRUTH_CONTRAST: "speckle contrast",
             S.TRUTH_MEAN: "mean counts per frame", S.TRUTH_SURFACE_DISTANCE: "distance from the wire surface"}
    data = {}
    for name, long_name in names.items():
        values = np.asarray(maps[name], dtype=np.float64)
        if name == S.TRUTH_SURFACE_DISTANCE:
            values = values * px
        data[name] = xr.Variable((S.Y, S.X), values, S.coord_attrs(name, long_name))
    region = np.asarray(maps[S.TRUTH_REGION], dtype=np.int8)
    data[S.TRUTH_REGION] = xr.Variable((S.Y, S.X), region, {
        "long_name": "region", "flag_values": list(S.REGION_NAMES), "flag_meanings": " ".join(S.REGION_NAMES.values())})
    data[S.TRUTH_SHIFT] = xr.Variable((S.TIME, S.AXIS), drift_trace(params), {
        **S.coord_attrs(S.SHIFT, "true drift"),
        "convention": "frame t shows the sample displaced by +shift(t): observed[t, y, x] = sample[y - dy, x - dx]"})
    return xr.Dataset(data, coords={**coords, S.AXIS: [S.Y, S.X]},
                      attrs={"description": "ground truth of the synthetic series", "params": params_dict(params)})


class RenderedSource(FrameSource):
    """The temporary pixel-major rendering, read back as frames (time slabs)."""

    format_name = "synthetic"

    def __init__(self, path: str, params: SynthParams):
        import zarr

        arr = zarr.open_array(os.path.join(path, _FRAMES), mode="r")
        self.path = path
        self.params = params
        self.paths = [path]
        self.shape = tuple(int(s) for s in arr.shape)
        self.dtype = arr.dtype
        self.metadata = SourceMetadata(frame_time_s=params.frame_time_s, pixel_size_nm=params.pixel_size_nm,
                                       temperature_C=params.temperature_C, instrument=INSTRUMENT)

    def _read(self, start: int, stop: int) -> np.ndarray:
        import zarr

        return zarr.open_array(os.path.join(self.path, _FRAMES), mode="r")[start:stop]

    def fingerprint(self) -> dict[str, Any]:
        return {"format": self.format_name, "params": params_dict(self.params)}


def _render_tile(params: SynthParams, path: str, index: int, y0: int, y1: int, x0: int, x1: int) -> int:
    import zarr

    block = render_block(params, y0, y1, x0, x1, noise=np.isfinite(params.counts_wire))
    zarr.open_array(os.path.join(path, _FRAMES), mode="r+")[:, y0:y1, x0:x1] = block
    B.mark(path, index)
    return index


def render_path(path: str | os.PathLike) -> Path:
    """The scratch store a synthetic series is rendered into (pixel-major) before it is written as a series."""
    return B.partial_path(Path(path).with_name(Path(path).name + ".render"))


def render_to_temp(params: SynthParams, path: str | os.PathLike, layout: L.SeriesLayout, *,
                   progress: bool = True) -> str:
    """Render all tiles into the scratch store of ``path`` (:func:`render_path`) through the block writer (one
    tick per tile, so an interrupted rendering resumes its missing tiles).  Returns the scratch path."""
    import dask
    import zarr

    from ..compute import run

    key = SS.fingerprint({"params": params_dict(params), "layout": layout.as_dict()})
    noise = np.isfinite(params.counts_wire)
    _, ty, tx = layout.chunk
    tiles = [(y0, min(y0 + ty, params.ny), x0, min(x0 + tx, params.nx))
             for y0 in range(0, params.ny, ty) for x0 in range(0, params.nx, tx)]

    def create(partial):
        group = zarr.open_group(str(partial), mode="w", zarr_format=3)
        group.create_array(_FRAMES, shape=layout.shape, chunks=layout.chunk, dtype="uint16" if noise else "float32",
                           compressors=[SS.compressor()], fill_value=0)

    scratch = render_path(path)
    scratch, done, _ = B.prepare(scratch.with_name(scratch.name.removesuffix(B.PARTIAL)), key, len(tiles), create,
                                 what="synthetic rendering")
    tasks = [dask.delayed(_render_tile, pure=False)(params, str(scratch), i, *t)
             for i, t in enumerate(tiles) if not done[i]]
    run(tasks, progress=progress, label=f"render synthetic nanowire {layout.shape} in {len(tiles)} tile(s)")
    ticks = B.progress(scratch)
    if ticks is None or ticks[0] != ticks[1]:
        raise StoreError(f"{scratch}: {len(tiles) - (ticks or (0,))[0]} tile(s) were not rendered; run again")
    return str(scratch)


def write_synthetic_series(path: str | os.PathLike, params: SynthParams | None = None, *, overwrite: bool = False,
                           tile: int = L.DEFAULT_TILE, shard_bytes: int = L.DEFAULT_SHARD_BYTES,
                           progress: bool = True) -> Path:
    """Generate a synthetic nanowire series with ground truth straight into a series store.

    Parameters
    ----------
    path : the ``series.zarr`` to write
    params : the model (:class:`SynthParams`); defaults to the demo wire
    overwrite : replace an existing store
    tile, shard_bytes : store layout (see :func:`~ecm_dask.store.layout.plan_layout`)
    progress : show progress bars

    Returns
    -------
    Path of the complete store; its group ``truth`` holds τ, β, contrast, regions and the true drift.
    """
    params = params or SynthParams()
    path = Path(path)
    state = SS.store_state(path)
    if state == SS.COMPLETE and not overwrite:
        raise StoreError(f"{path} already holds a complete series; use --overwrite to replace it")
    if state == SS.FOREIGN:
        raise StoreError(f"{path} exists and is not an ecm_dask store; choose another output path")
    itemsize = 2 if np.isfinite(params.counts_wire) else 4
    layout = L.plan_layout((params.n_frames, params.ny, params.nx), itemsize, tile=tile, shard_bytes=shard_bytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = render_to_temp(params, path, layout, progress=progress)  # skips tiles an interrupted run already rendered
    source = RenderedSource(tmp, params)
    attrs = S.series_attrs({
        S.ATTR_FRAME_TIME: params.frame_time_s, S.ATTR_PIXEL_SIZE: params.pixel_size_nm,
        S.ATTR_TEMPERATURE: params.temperature_C, S.ATTR_MATERIAL: params.material, S.ATTR_INSTRUMENT: INSTRUMENT,
        S.ATTR_SOURCE: "synthetic"})

    attrs[S.ATTR_PROVENANCE] = provenance({"synthetic": params_dict(params)})
    attrs[S.ATTR_DESCRIPTION] = "synthetic supercooled-liquid nanowire with ground truth in group 'truth'"
    out = write_series(source, path, attrs, overwrite=overwrite, layout=layout, key_extra=params_dict(params),
                       extra_groups={S.TRUTH_GROUP: truth_dataset(params)}, progress=progress)
    shutil.rmtree(tmp, ignore_errors=True)
    return out
