"""Figures of ecm_dask results (matplotlib, Agg backend: works on headless cluster nodes)."""

from __future__ import annotations

import os

import numpy as np

from . import schema as S


def _figure(figsize):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def plot_drift(drift, path: str | os.PathLike | None = None, *, title: str | None = None):
    """Drift trace: dy and dx (pixels, with nm on the right axis) against time, outlier frames marked.

    Parameters
    ----------
    drift : the Dataset from :func:`ecm_dask.ops.drift.estimate_drift` (``shift (time, axis)``, ``outlier``)
    path : save the figure there (PNG, SVG or PDF by extension); None to only return it
    title : figure title (default: the reference ROI)

    Returns
    -------
    matplotlib Figure (lines 0 and 1 of its first axes are dy and dx)
    """
    fig = _figure((7, 3.2))
    ax = fig.add_subplot()
    t = np.asarray(drift[S.TIME].values, dtype=float)
    shift = np.asarray(drift[S.SHIFT].values, dtype=float)
    for i, (name, colour) in enumerate(((S.Y, "tab:blue"), (S.X, "tab:orange"))):
        ax.plot(t, shift[:, i], color=colour, lw=1.2, label=f"d{name}")
    if "outlier" in drift and bool(drift["outlier"].any()):
        bad = np.asarray(drift["outlier"].values, dtype=bool)
        ax.plot(np.repeat(t[bad], 2), shift[bad].ravel(), "x", color="tab:red", label="replaced frames")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("shift (pixel)")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.legend(loc="best", frameon=False)
    if "shift_nm" in drift and shift.size and np.any(shift):
        scale = float(np.nanmax(np.abs(drift["shift_nm"].values)) / np.nanmax(np.abs(shift)))
        sec = ax.secondary_yaxis("right", functions=(lambda v: v * scale, lambda v: v / scale))
        sec.set_ylabel("shift (nm)")
    roi = drift.attrs.get("reference_roi_px")
    ax.set_title(title or (f"drift from reference ROI y {roi[0]}:{roi[1]}, x {roi[2]}:{roi[3]} (pixels)"
                           if roi else "drift"), fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
