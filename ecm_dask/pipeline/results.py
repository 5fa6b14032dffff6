"""Assemble ``results.zarr``: the labelled result store other tools and notebooks rely on (DESIGN §4).

An xarray DataTree: the root holds the maps on the reference frame's pixel grid (``tau`` in s, ``beta``,
``contrast``, ``baseline``, their errors, ``chi2``, ``status``, quality flags, ...), ``/g2`` the per-pixel
g2 with its lags and pairs, ``/drift`` the shift trace with its reference ROI.  ``xr.open_zarr`` of the
store gives the maps; ``xr.open_datatree(..., engine="zarr")`` the whole tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StoreError
from .checkpoint import checkpoint

#: variables the root of every results store carries (the contract)
ROOT_MAPS = ("tau", "beta", "contrast", "baseline", "tau_err", "beta_err", "chi2", "status")


def assemble_results(output: str | os.PathLike, maps: str | os.PathLike, g2: str | os.PathLike,
                     drift: str | os.PathLike | None = None, *, overwrite: bool = False) -> Path:
    """Write the result DataTree from the stage checkpoints (maps.zarr, g2.zarr, drift.zarr)."""
    import xarray as xr

    from ..store.writer import provenance

    root = xr.open_zarr(maps)
    missing = [v for v in ROOT_MAPS if v not in root]
    if missing:
        raise StoreError(f"{maps} lacks the map(s) {missing}; run the fit stage again")
    root.attrs = {**root.attrs, "provenance": provenance(), "stages": {
        "maps": os.path.abspath(maps), "g2": os.path.abspath(g2),
        "drift": os.path.abspath(drift) if drift is not None else None}}
    groups = {"/": root, "/g2": xr.open_zarr(g2)}
    if drift is not None:
        groups["/drift"] = xr.open_zarr(drift)
    with checkpoint(output, overwrite=overwrite) as partial:
        xr.DataTree.from_dict(groups).to_zarr(partial, mode="w", zarr_format=3, consolidated=True)
    return Path(output)
