"""Fit stage: ``g2.zarr`` -> ``maps.zarr`` (KWW τ, β, contrast, baseline with errors, status, quality flags)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..ops.pooling import DEFAULT_RADIUS, DEFAULT_TOL, PASSES
from ..store.blocks import write_blocks

#: the adaptive pooling of `ecm-dask run` (docs/resolution.md)
DEFAULT_POOLING = {"radius": DEFAULT_RADIUS, "tol": DEFAULT_TOL, "passes": PASSES}


def pooling_labels(g2, screen_path) -> "xr.DataArray":  # noqa: F821
    """Labels for adaptive pooling from the screen stage: the region (bulk or surface) of every usable pixel;
    -1 (never pooled, never pooled into others) for vacuum, crystal, excluded, artefact and bad-input pixels."""
    from .screen import open_screen

    regions, artefacts = open_screen(screen_path)
    region = regions[S.REGION]
    usable = (artefacts[S.ARTEFACT] == 0) & (g2[S.STATUS].load() == 0) & region.isin([S.REGION_BULK,
                                                                                       S.REGION_SURFACE])
    return region.where(usable, -1).astype(np.int64)


def run_fit(g2_path: str | os.PathLike, output: str | os.PathLike, *, overwrite: bool = False,
            resume_key: str | None = None, progress: bool = True, screen_path: str | os.PathLike | None = None,
            pooling: dict | None = None, **options: Any) -> Path:
    """Fit every pixel of a g2 checkpoint and write the maps (see :func:`ecm_dask.ops.fit.fit_kww` for options,
    e.g. ``model="kww2"`` to add the two-term maps to the one-term ones); ``resume_key`` as in :func:`~ecm_dask.pipeline.correlate.run_g2`.

    With ``screen_path`` (the screen stage's ``screen.zarr``) every pixel is fitted from its adaptively pooled g2
    (:func:`ecm_dask.ops.pooling.adaptive_fit`; ``pooling`` = ``{"radius", "tol", "passes"}``, defaults
    :data:`~ecm_dask.ops.pooling.DEFAULT_RADIUS`, ...; radius 0 = plain per-pixel fits): same-region,
    τ-compatible neighbours only, never artefact or vacuum pixels.
    """
    import xarray as xr

    from ..ops.fit import fit_kww
    from ..ops.pooling import adaptive_fit
    from ..store.integrity import open_checked

    g2 = open_checked(g2_path)  # a damaged chunk: one StoreError naming the file
    one = {**options, "model": S.MODEL_KWW}
    if screen_path is not None:
        pooling = {"radius": DEFAULT_POOLING["radius"], "tol": DEFAULT_POOLING["tol"],
                   "passes": DEFAULT_POOLING["passes"], **(pooling or {})}
        maps, g2 = adaptive_fit(g2, pooling_labels(g2, screen_path), **pooling, **one)
    else:
        maps = fit_kww(g2, **one)
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
