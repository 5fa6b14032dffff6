"""Artefact screen of a g2 Dataset: drift-swept edges and static pixels (labelled layer of
:mod:`ecm_dask.kernels.artefacts`)."""

from __future__ import annotations

import numpy as np

from .. import schema as S
from ..kernels import artefacts as K
from ..kernels.artefacts import ARTEFACT_DRIFT_EDGE, ARTEFACT_NONE, ARTEFACT_STATIC, ARTEFACTS  # noqa: F401

__all__ = ["ARTEFACTS", "ARTEFACT_DRIFT_EDGE", "ARTEFACT_NONE", "ARTEFACT_STATIC", "screen_artefacts"]


def screen_artefacts(g2, drift=None, *, drift_fraction: float = K.DRIFT_FRACTION, static_z: float = K.STATIC_Z,
                     n_first: int = K.N_FIRST):
    """Artefact code of every pixel of a g2 Dataset.

    Parameters
    ----------
    g2 : xarray.Dataset
        As written by the g2 stage: ``g2 (y, x, lag)``, ``g2_lag0``, ``mean_intensity``, ``pairs``; attributes
        ``n_frames``, ``n_bad_frames``, ``shift_mode``, ``pool``.  Only the first ``n_first`` lag points are read.
    drift : xarray.Dataset, optional
        ``shift (time, axis)`` in pixels (the drift stage's output); None when drift was not corrected.
    drift_fraction, static_z, n_first
        Thresholds of :func:`ecm_dask.kernels.artefacts.classify_artefacts`.

    Returns
    -------
    xarray.Dataset on (y, x): ``artefact`` (codes with CF flag attributes), ``drift_fraction``, ``fluctuation``,
    ``fluctuation_z``, ``excess_variance``, ``excess_z``; attributes: the thresholds and the residual's RMS.
    """
    import xarray as xr

    for name in (S.G2, "g2_lag0", S.MEAN_INTENSITY, S.G2_PAIRS):
        if name not in g2:
            raise ValueError(f"screen_artefacts needs the g2 stage's Dataset (missing {name!r})")
    n = int(min(max(n_first, 1), g2.sizes[S.LAG]))
    first = g2[S.G2].isel({S.LAG: slice(0, n)}).transpose(S.Y, S.X, S.LAG).values
    mean = g2[S.MEAN_INTENSITY].transpose(S.Y, S.X).values
    lag0 = g2["g2_lag0"].transpose(S.Y, S.X).values
    n_frames = int(g2.attrs.get("n_frames", 0)) - int(g2.attrs.get("n_bad_frames", 0) or 0)
    if n_frames < 2:
        raise ValueError("screen_artefacts: the g2 Dataset does not say how many frames it used (attribute n_frames)")
    if drift is not None:
        residual = K.residual_shift(drift[S.SHIFT].values, g2.attrs.get("shift_mode", "integer"))
        residual = residual / float(g2.attrs.get("pool", 1) or 1)  # pooled pixels are k times larger
    else:
        residual = np.zeros((n_frames, 2))
    out = K.classify_artefacts(mean, first, lag0, g2[S.G2_PAIRS].values[:n], residual, n_frames=n_frames,
                               drift_fraction=drift_fraction, static_z=static_z, n_first=n)
    dims = (S.Y, S.X)
    coords = {d: (d, np.asarray(g2[d].values), S.coord_attrs(d, d)) for d in dims}
    unit = {S.ATTR_UNITS: "1"}
    ds = xr.Dataset(
        {S.ARTEFACT: (dims, out["artefact"], {**S.flag_attrs(ARTEFACTS, "artefact screen"),
                                             "description": "drift edge: the drift residual predicts >= "
                                             f"{drift_fraction:g} of the pixel's fluctuation; static: no "
                                             f"correlation at the first lags and no variance beyond Poisson "
                                             f"(both < {static_z:g} standard errors)"}),
         "drift_fraction": (dims, out["drift_fraction"].astype(np.float32),
                            {**unit, S.ATTR_LONG_NAME: "predicted drift-residual variance / measured fluctuation"}),
         "fluctuation": (dims, out["fluctuation"].astype(np.float32),
                         {**unit, S.ATTR_LONG_NAME: f"g2 - 1 over the first {n} lag points"}),
         "fluctuation_z": (dims, out["fluctuation_z"].astype(np.float32),
                           {**unit, S.ATTR_LONG_NAME: "fluctuation / its standard error for a static pixel"}),
         "excess_variance": (dims, out["excess_variance"].astype(np.float32),
                             {**unit, S.ATTR_LONG_NAME: "g2(0) - 1 - 1/<I>: relative variance beyond Poisson"}),
         "excess_z": (dims, out["excess_z"].astype(np.float32),
                      {**unit, S.ATTR_LONG_NAME: "excess variance / its standard error"})},
        coords=coords,
        attrs={"drift_fraction_threshold": float(drift_fraction), "static_z": float(static_z), "n_first": n,
               "residual_rms_px": [float(v) for v in np.sqrt(np.mean(residual ** 2, axis=0))],
               "shift_mode": g2.attrs.get("shift_mode", "integer") if drift is not None else None})
    return ds
