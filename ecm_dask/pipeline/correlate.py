"""g2 stage: series store -> ``g2.zarr`` checkpoint (per-pixel g2, lag 0, mean intensity, status, pairs).

The result is written to ``<output>.partial`` and renamed into place only when complete, so an
interrupted run never leaves a ``g2.zarr`` that looks finished; running again starts the stage over.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from ..errors import StoreError


def run_g2(series_path: str | os.PathLike, output: str | os.PathLike, *, shifts=None, overwrite: bool = False,
           progress: bool = True, **options: Any) -> Path:
    """Correlate every pixel of a series store and write the result as a Zarr checkpoint.

    Parameters
    ----------
    series_path : a complete series store
    output : the ``g2.zarr`` to write; refused if it exists unless ``overwrite``
    shifts : per-frame drift (time, 2) in pixels to undo (see :func:`ecm_dask.ops.correlate`)
    progress : show a progress bar
    **options : passed to :func:`ecm_dask.ops.correlate` (method, points_per_octave, max_lag, ...)

    Returns
    -------
    Path of the written store; ``xr.open_zarr(path)`` gives the dataset.
    """
    from ..ops import correlate
    from ..store.series import open_series

    ds = open_series(series_path)
    res = correlate(ds, shifts=shifts, **options)
    res.attrs["series"] = os.path.abspath(series_path)
    return write_checkpoint(res, output, overwrite=overwrite, progress=progress,
                            label=f"g2 of {ds.intensity.shape} -> {output}")


def write_checkpoint(ds, output: str | os.PathLike, *, overwrite: bool = False, progress: bool = True,
                     label: str = "") -> Path:
    """Compute a lazy dataset into ``output`` (Zarr v3, consolidated) via ``<output>.partial`` and a rename."""
    from ..compute import run

    output = Path(output)
    if output.exists():
        if not overwrite:
            raise StoreError(f"{output} exists; use --overwrite to replace it")
        if not (output / "zarr.json").is_file():
            raise StoreError(f"{output} exists and is not a Zarr store; refusing to delete it")
        shutil.rmtree(output)
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        delayed = ds.to_zarr(partial, mode="w", compute=False, zarr_format=3, consolidated=True)
        run([delayed], progress=progress, label=label)
    os.replace(partial, output)
    return output
