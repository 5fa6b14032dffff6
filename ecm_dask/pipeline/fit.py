"""Fit stage: ``g2.zarr`` -> ``maps.zarr`` (KWW τ, β, contrast, baseline with errors, status, quality flags)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import schema as S
from .blocks import write_blocks


def run_fit(g2_path: str | os.PathLike, output: str | os.PathLike, *, overwrite: bool = False,
            resume_key: str | None = None, progress: bool = True, **options: Any) -> Path:
    """Fit every pixel of a g2 checkpoint and write the maps (see :func:`ecm_dask.ops.fit.fit_kww` for options,
    e.g. ``model="kww2"`` to add the two-term maps to the one-term ones); ``resume_key`` as in :func:`~ecm_dask.pipeline.correlate.run_g2`."""
    import xarray as xr

    from ..ops.fit import fit_kww

    g2 = xr.open_zarr(g2_path)
    maps = fit_kww(g2, **{**options, "model": S.MODEL_KWW})
    if options.get("model", S.MODEL_KWW) == S.MODEL_KWW2:
        # the one-term maps stay the result's contract (tau, beta, ...); the two-term maps join them, names
        # that both models use (baseline, chi2, status, ...) with the suffix _kww2.  The two-term fit starts
        # from the one-term maps (same g2, weights, bounds) instead of fitting one term a second time; both
        # are computed in the same block tasks.
        two = fit_kww(g2, **options, start1=maps)
        maps = xr.merge([maps, two.rename({v: f"{v}_kww2" for v in two.data_vars if v in maps})],
                        combine_attrs="override")
    maps.attrs["g2"] = os.path.abspath(g2_path)
    label = f"{options.get('model', 'kww')} fit of {g2.sizes['y']}x{g2.sizes['x']} pixels -> {output}"
    return write_blocks(maps, output, key=resume_key, overwrite=overwrite, progress=progress, label=label)
