"""g2 stage: series store -> ``g2.zarr`` checkpoint (per-pixel g2, lag 0, mean intensity, status, pairs).

Written through :func:`~ecm_dask.store.blocks.write_blocks`: an interrupted run never leaves a
``g2.zarr`` that looks finished; running again with the same ``resume_key`` computes only the pixel blocks
that were not written yet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..store.blocks import write_blocks


def run_g2(series_path: str | os.PathLike, output: str | os.PathLike, *, shifts=None, overwrite: bool = False,
           resume_key: str | None = None, progress: bool = True, **options: Any) -> Path:
    """Correlate every pixel of a series store and write the result as a Zarr checkpoint.

    Parameters
    ----------
    series_path : a complete series store
    output : the ``g2.zarr`` to write; refused if it exists unless ``overwrite``
    shifts : per-frame drift (time, 2) in pixels to undo (see :func:`ecm_dask.ops.correlate`)
    resume_key : identifies input + options; an interrupted run with the same key resumes its pixel blocks
    progress : show a progress bar
    **options : passed to :func:`ecm_dask.ops.correlate` (method, points_per_octave, max_lag, ...)

    Returns
    -------
    Path of the written store; ``xr.open_zarr(path)`` gives the dataset.
    """
    from ..ops import correlate
    from ..store.region import release_everywhere
    from ..store.series import open_series

    ds = open_series(series_path)
    res = correlate(ds, shifts=shifts, **options)
    res.attrs["series"] = os.path.abspath(series_path)
    try:
        return write_blocks(res, output, key=resume_key, overwrite=overwrite, progress=progress,
                            label=f"g2 of {ds.intensity.shape} -> {output}")
    finally:
        release_everywhere()


