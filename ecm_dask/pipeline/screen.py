"""Screen stage: ``g2.zarr`` (+ drift) -> ``screen.zarr``: regions and per-pixel artefacts, before the fit.

Everything here is small (maps on ``(y, x)``) and computed from what the g2 stage stored: the registered mean
image, the model-free lag-0 contrast and the first lags of every pixel's g2, and the drift trace.

- **regions** (:func:`ecm_dask.analysis.regions.classify`): vacuum / bulk / surface / crystal from the mean image
  (Otsu on log intensity), the surface band within ``surface_nm`` of the wire edge, the crystal as bright pixels
  grown over pixels without speckle contrast (model-free ``g2_lag0 - 1 - 1/<I>``: it does not depend on τ);
- **artefacts** (:func:`ecm_dask.ops.artefacts.screen_artefacts`): pixels whose intensity change is explained by
  the residual drift (``drift edge``) and pixels without dynamic contrast (``static``).

The fit stage pools g2 curves only within one region and never from artefact pixels; the results stage turns
region and artefact codes into the pixel ``status`` of the maps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import schema as S

#: default width of the surface band (nm): wire pixels closer than this to the wire edge are ``surface``
SURFACE_NM = 1.0


def lag0_contrast(g2):
    """Model-free speckle contrast of every pixel: ``g2_lag0 - 1 - 1/<I>`` (the Poisson part removed)."""
    mean = g2[S.MEAN_INTENSITY].astype(np.float64)
    return (g2["g2_lag0"] - 1.0 - 1.0 / mean.where(mean > 0)).rename("lag0_contrast")


def screen(g2, drift=None, *, surface_nm: float = SURFACE_NM):
    """Regions and artefacts of every pixel of a g2 Dataset (as stored by the g2 stage).

    Parameters
    ----------
    g2 : xarray.Dataset
        ``g2 (y, x, lag)``, ``g2_lag0``, ``mean_intensity``, ``status``, ``pairs``.
    drift : xarray.Dataset, optional
        ``shift (time, axis)`` in pixels as stored by the drift stage; None when drift was not corrected.
    surface_nm : float
        Width of the surface band (nm).

    Returns
    -------
    (regions, artefacts) : two Datasets on (y, x): ``region`` (CF flags, :data:`ecm_dask.schema.REGION_NAMES`),
    ``surface_distance`` (nm), ``wire``, ``crystal``; and ``artefact`` with its diagnostics.
    """
    from ..analysis.regions import classify
    from ..ops.artefacts import screen_artefacts

    mean = g2[S.MEAN_INTENSITY].load()
    status = g2[S.STATUS].load()
    usable = status == 0
    if not bool(usable.any()):  # nothing to map: say why instead of failing inside the region map
        from ..errors import InputError
        from ..kernels.g2 import PIXEL_STATUS

        codes, counts = np.unique(status.values, return_counts=True)
        why = ", ".join(f"{n} {PIXEL_STATUS.get(int(c), f'status {int(c)}')}" for c, n in zip(codes, counts))
        hint = ""
        if (status.values == 1).any():
            frames = list((drift.attrs.get("nonfinite_frames") or []) if drift is not None else [])
            hint = ("; frames holding NaN/inf make pixels non-finite: list them with --bad-frames"
                    + (f" (the drift reference saw NaN/inf in frame(s) {', '.join(map(str, frames[:10]))})"
                       if frames else ""))
        raise InputError(f"{g2.attrs.get('series', 'the series')}: no pixel has usable data ({why}); nothing to "
                         f"correlate or fit - check the input (an all-zero, all-NaN or saturated series?){hint}")
    contrast = lag0_contrast(g2).load().where(usable)
    regions = classify(mean.where(usable), surface_nm=surface_nm, contrast=contrast, unknown=~usable.values)
    regions[S.REGION].attrs.update(S.flag_attrs(S.REGION_FLAGS, "region"))
    regions["lag0_contrast"] = contrast.astype(np.float32)
    regions["lag0_contrast"].attrs.update({S.ATTR_UNITS: "1", S.ATTR_LONG_NAME: "model-free speckle contrast "
                                           "g2(0) - 1 - 1/<I> (used for the crystal test)"})
    artefacts = screen_artefacts(g2, drift).load()
    return regions, artefacts


def run_screen(g2_path: str | os.PathLike, output: str | os.PathLike, *, drift_path=None,
               surface_nm: float = SURFACE_NM, overwrite: bool = False) -> Path:
    """Write ``screen.zarr``: the ``regions`` and ``artefacts`` Datasets of :func:`screen` as two groups."""
    import xarray as xr

    from ..store.blocks import atomic
    from ..store.integrity import checksummed, open_checked

    g2 = open_checked(g2_path)  # a damaged chunk: one StoreError naming the file
    drift = open_checked(drift_path) if drift_path is not None else None
    regions, artefacts = screen(g2, drift, surface_nm=surface_nm)
    regions.attrs["surface_nm"] = float(surface_nm)
    with atomic(output, overwrite=overwrite, consolidated=True) as partial:
        groups = {"/": xr.Dataset(attrs={"g2": os.path.abspath(g2_path)}), f"/{S.REGIONS_GROUP}": regions,
                  f"/{S.ARTEFACTS_GROUP}": artefacts}
        tree = xr.DataTree.from_dict({k: checksummed(v) for k, v in groups.items()})
        tree.to_zarr(partial, mode="w", zarr_format=3, consolidated=True, write_empty_chunks=True)
    return Path(output)


def open_screen(path: str | os.PathLike):
    """``(regions, artefacts)`` Datasets of a ``screen.zarr``."""
    from ..store.integrity import open_checked

    return (open_checked(path, group=S.REGIONS_GROUP).load(), open_checked(path, group=S.ARTEFACTS_GROUP).load())
