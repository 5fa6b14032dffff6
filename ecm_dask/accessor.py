"""The ``.ecm`` accessor on results: point at a pixel, see its curve; explore the maps in a notebook.

Registered when this module is imported (``import ecm_dask.accessor``, or :func:`ecm_dask.open_results`)::

    tree = ecm_dask.open_results("results.zarr")     # an xarray DataTree
    px = tree.ecm.pixel(y=13.2, x=19.8)              # nm (units="pixel" for indices)
    px.tau, px.tau_err, px.status_name, px.region
    px.plot()                                        # g2 points and the KWW fit (matplotlib)
    tree.ecm.explore()                               # the interactive explorer, inline in Jupyter

On the maps alone (``xr.open_zarr("results.zarr")``, a Dataset) ``maps.ecm.pixel(y, x)`` gives the parameters and
``.plot()`` the fitted curve (the g2 points live in the ``/g2`` group of the tree).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from . import schema as S

PARAMS = ("tau", "beta", "contrast", "baseline")


@dataclass
class Pixel:
    """One pixel of a results store: position, status, region, fit parameters with errors and (from a tree) g2."""

    iy: int
    ix: int
    y_nm: float
    x_nm: float
    status: int
    status_name: str
    region: str | None
    params: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    n_pooled: float | None = None
    lag_s: np.ndarray | None = None
    g2: np.ndarray | None = None

    def __getattr__(self, name):
        params = self.__dict__.get("params", {})
        errors = self.__dict__.get("errors", {})
        if name in params:
            return params[name]
        if name.endswith("_err") and name[:-4] in errors:
            return errors[name[:-4]]
        raise AttributeError(name)

    @property
    def ok(self) -> bool:
        return self.status == 0

    def model(self, lag_s) -> np.ndarray:
        """The fitted KWW curve ``baseline + contrast exp(-2 (t/tau)^beta)`` at ``lag_s``."""
        p = self.params
        t = np.asarray(lag_s, dtype=np.float64)
        return p["baseline"] + p["contrast"] * np.exp(-2.0 * (t / p["tau"]) ** p["beta"])

    def plot(self, ax=None):
        """g2 points (if known) and the fitted curve (if the fit is ok) on a log lag axis; returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.4))
        lag = self.lag_s
        if self.g2 is not None and lag is not None:
            ok = np.isfinite(self.g2)
            ax.plot(lag[ok], self.g2[ok], "o", ms=3, label="g2", gid="g2")
        if self.ok and all(np.isfinite(self.params.get(k, np.nan)) for k in PARAMS):
            span = lag if lag is not None else self.params["tau"] * np.array([1e-2, 1e2])
            t = np.geomspace(np.nanmin(span), np.nanmax(span), 200)
            pooled = f", pooled over {self.n_pooled:.0f} px" if self.n_pooled and self.n_pooled > 1 else ""
            ax.plot(t, self.model(t), "-", label=f"KWW fit: tau {self.params['tau']:.3g} s, beta "
                    f"{self.params['beta']:.2f}{pooled}", gid="fit")
        ax.set_xscale("log")
        ax.set_xlabel("lag (s)")
        ax.set_ylabel("g2")
        ax.set_title(f"pixel ({self.y_nm:.2f}, {self.x_nm:.2f}) nm: {self.status_name}"
                     + (f", {self.region}" if self.region else ""))
        ax.legend(fontsize=8)
        return ax


def _index(coord, value: float, units: str, name: str) -> int:
    n = coord.size
    if units == "pixel":
        i = int(value)
        if not (0 <= i < n and i == value):
            raise IndexError(f"{name} = {value}: a pixel index in 0..{n - 1}")
        return i
    if units != "nm":
        raise ValueError(f"units must be 'nm' or 'pixel', got {units!r}")
    c = np.asarray(coord, dtype=np.float64)
    step = abs(float(c[1] - c[0])) if n > 1 else 1.0
    i = int(np.argmin(np.abs(c - value)))
    if abs(c[i] - value) > step / 2 + 1e-9:
        raise IndexError(f"{name} = {value} nm is outside the map ({c.min():.3g} .. {c.max():.3g} nm)")
    return i


def _pixel(maps, y, x, units, regions=None, g2=None) -> Pixel:
    maps = maps.transpose(S.Y, S.X, ...)
    iy, ix = _index(maps[S.Y].values, y, units, "y"), _index(maps[S.X].values, x, units, "x")
    code = int(maps[S.STATUS].values[iy, ix])
    names = S.flag_names(maps[S.STATUS].attrs)
    params = {k: float(maps[k].values[iy, ix]) for k in PARAMS if k in maps}
    errors = {k: float(maps[f"{k}_err"].values[iy, ix]) for k in PARAMS if f"{k}_err" in maps}
    region = None
    if regions is not None:
        region = S.REGION_NAMES.get(int(regions.transpose(S.Y, S.X).values[iy, ix]))
    lag = curve = None
    if g2 is not None:
        lag = np.asarray(g2[S.LAG].values, dtype=np.float64)
        curve = np.asarray(g2["g2"].transpose(S.Y, S.X, S.LAG).values[iy, ix], dtype=np.float64)
    elif "g2" in maps:
        lag = np.asarray(maps[S.LAG].values, dtype=np.float64)
        curve = np.asarray(maps["g2"].values[iy, ix], dtype=np.float64)
    return Pixel(iy=iy, ix=ix, y_nm=float(maps[S.Y].values[iy]), x_nm=float(maps[S.X].values[ix]), status=code,
                 status_name=names.get(code, str(code)), region=region, params=params,
                 errors=errors, n_pooled=float(maps["n_pooled"].values[iy, ix]) if "n_pooled" in maps else None,
                 lag_s=lag, g2=curve)


@xr.register_dataset_accessor("ecm")
class EcmMaps:
    """``maps.ecm``: the root maps of a results store (a Dataset)."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def pixel(self, y: float, x: float, units: str = "nm") -> Pixel:
        """The pixel at ``(y, x)`` (nm, nearest pixel centre; ``units="pixel"`` for indices)."""
        return _pixel(self._ds, y, x, units)


@xr.register_datatree_accessor("ecm")
class EcmTree:
    """``tree.ecm``: a whole results store (a DataTree with the maps at its root and ``/g2``, ``/regions``)."""

    def __init__(self, tree):
        self._tree = tree

    def pixel(self, y: float, x: float, units: str = "nm") -> Pixel:
        """The pixel at ``(y, x)`` with its g2 curve and region."""
        t = self._tree
        regions = t[S.REGIONS_GROUP].to_dataset()[S.REGION] if S.REGIONS_GROUP in t.children else None
        g2 = t[S.G2_GROUP].to_dataset() if S.G2_GROUP in t.children else None
        return _pixel(t.to_dataset(), y, x, units, regions=regions, g2=g2)

    def explore(self, *, max_mb: float = 16.0, height: int = 760):
        """The interactive explorer (click a pixel: its g2 and fit) inline in a notebook: an IPython HTML object
        holding the self-contained page in an iframe (the HTML string if IPython is not installed)."""
        import html

        from .pipeline.explore import explore_html

        page = explore_html(self._tree, title=self._tree.name or "results", max_mb=max_mb)
        frame = (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{int(height)}px;'
                 'border:0"></iframe>')
        try:
            from IPython.display import HTML
        except ImportError:
            return frame
        return HTML(frame)
