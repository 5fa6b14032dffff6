"""Fit stage: ``g2.zarr`` -> ``maps.zarr`` (KWW τ, β, contrast, baseline with errors, status, quality flags)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .checkpoint import write_checkpoint


def run_fit(g2_path: str | os.PathLike, output: str | os.PathLike, *, overwrite: bool = False,
            progress: bool = True, **options: Any) -> Path:
    """Fit every pixel of a g2 checkpoint and write the maps (see :func:`ecm_dask.ops.fit.fit_kww` for options,
    e.g. ``model="kww2"`` for two KWW terms)."""
    import xarray as xr

    from ..ops.fit import fit_kww

    g2 = xr.open_zarr(g2_path)
    maps = fit_kww(g2, **options)
    maps.attrs["g2"] = os.path.abspath(g2_path)
    return write_checkpoint(maps, output, overwrite=overwrite, progress=progress,
                            label=f"{options.get('model', 'kww')} fit of {g2.sizes['y']}x{g2.sizes['x']} pixels -> {output}")
