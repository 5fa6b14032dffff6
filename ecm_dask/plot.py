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


# ------------------------------------------------------------------------------------------ maps and images
#: colour of NaN pixels in maps (neutral grey) and in grey-scale frames (muted red, to stand out from grey)
NAN_COLOUR = "0.72"
NAN_COLOUR_FRAME = "#c47f7f"
#: percentiles of the finite values that set the colour limits by default
ROBUST_PERCENTILES = (1.0, 99.0)
_SYMBOLS = {S.TAU: "τ", S.BETA: "β"}


def nice_length(span: float, fraction: float = 0.2) -> float:
    """The longest length of the form 1, 2 or 5 x 10^k that is at most ``fraction * span``.

    Parameters
    ----------
    span : width of the image (any unit, > 0)
    fraction : largest fraction of ``span`` the length may take

    Returns
    -------
    float (e.g. ``nice_length(15.8) == 2.0``, ``nice_length(120) == 20.0``)
    """
    target = float(span) * float(fraction)
    if not np.isfinite(target) or target <= 0:
        raise ValueError(f"span and fraction must be positive, got span={span!r}, fraction={fraction!r}")
    k = int(np.floor(np.log10(target)))
    for m in (5, 2, 1, 0.5):  # 0.5 guards against log10 rounding just above a power of ten
        value = float(f"{m}e{k}")
        if value <= target * (1 + 1e-12):
            return value
    return float(f"1e{k - 1}")  # pragma: no cover - unreachable


def format_length(nm: float) -> str:
    """Label of a scale bar: ``"5 nm"``, ``"0.5 nm"``, ``"2 µm"`` (from 1000 nm)."""
    return f"{nm / 1000:g} µm" if nm >= 1000 else f"{nm:g} nm"


def robust_limits(values, percentiles=ROBUST_PERCENTILES, *, log: bool = False) -> tuple[float, float]:
    """Colour limits that ignore outliers: the given percentiles of the finite values.

    Parameters
    ----------
    values : array of any shape; NaN/inf (and, with ``log``, values <= 0) are ignored
    percentiles : (low, high) in percent
    log : take the percentiles of log10(values) and return 10**them (limits of a logarithmic scale)

    Returns
    -------
    (low, high) with low < high; a constant field is widened by 5 % (a factor 1.1 on a log scale);
    no usable value gives (0, 1), or (1, 10) with ``log``.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if log:
        v = np.log10(v[v > 0])
    if v.size == 0:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = (float(p) for p in np.percentile(v, percentiles))
    if hi <= lo:
        if log:
            lo, hi = lo - np.log10(1.1), hi + np.log10(1.1)
        else:
            d = 0.05 * abs(lo) or 0.5
            lo, hi = lo - d, hi + d
    return (float(10.0 ** lo), float(10.0 ** hi)) if log else (lo, hi)


def color_norm(values, *, log: bool = False, percentiles=ROBUST_PERCENTILES, vmin=None, vmax=None):
    """A matplotlib ``Normalize`` (or ``LogNorm``) with :func:`robust_limits`; ``vmin``/``vmax`` override them."""
    from matplotlib.colors import LogNorm, Normalize

    lo, hi = robust_limits(values, percentiles, log=log)
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    return (LogNorm if log else Normalize)(vmin=lo, vmax=hi, clip=False)


def _step(coord) -> float:
    c = np.asarray(coord, dtype=np.float64)
    return float(np.median(np.diff(c))) if c.size > 1 else 1.0


def image_extent(image) -> tuple[float, float, float, float]:
    """``imshow`` extent (left, right, bottom, top) in the units of the x/y coordinates, pixel edges included,
    y growing downwards (row 0 at the top, as the detector shows it)."""
    y, x = (np.asarray(image[d].values, dtype=np.float64) for d in (S.Y, S.X))
    dy, dx = _step(y), _step(x)
    return (x[0] - dx / 2, x[-1] + dx / 2, y[-1] + dy / 2, y[0] - dy / 2)


def _check_image(image, what: str):
    import xarray as xr

    from .errors import InputError

    if not isinstance(image, xr.DataArray) or set(image.dims) != {S.Y, S.X}:
        dims = getattr(image, "dims", None)
        raise InputError(f"{what} needs a DataArray on dims ({S.Y}, {S.X}) with coordinates in nm, got dims {dims}")
    for d in (S.Y, S.X):
        if d not in image.coords:
            raise InputError(f"{what}: {image.name or 'image'} has no coordinate {d!r} (nm)")
    return image.transpose(S.Y, S.X)


def _label(da) -> str:
    name = str(da.name) if da.name is not None else "value"
    text = _SYMBOLS.get(name) or da.attrs.get(S.ATTR_LONG_NAME) or name
    units = da.attrs.get(S.ATTR_UNITS)
    return f"{text} ({units})" if units and units != "1" else text


def add_scale_bar(ax, length_nm: float, extent, *, colour: str = "white"):
    """Draw a scale bar of ``length_nm`` (data units of an image plotted in nm) in the lower right corner.

    The bar is a Rectangle with gid ``"scale_bar"``, its label a Text with gid ``"scale_bar_label"``.
    """
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    left, right, bottom, top = extent
    width, height = right - left, bottom - top  # y grows downwards: bottom > top
    bar_h = 0.025 * height
    x0 = right - 0.05 * width - length_nm
    y0 = bottom - 0.06 * height - bar_h
    outline = [patheffects.withStroke(linewidth=2, foreground="black")]
    bar = Rectangle((x0, y0), length_nm, bar_h, facecolor=colour, edgecolor="black", lw=0.6, gid="scale_bar")
    ax.add_patch(bar)
    ax.text(x0 + length_nm / 2, y0 - 0.5 * bar_h, format_length(length_nm), color=colour, ha="center", va="bottom",
            fontsize=9, gid="scale_bar_label", path_effects=outline)
    return bar


def _draw_image(fig, ax, image, *, cmap, norm, nan_colour, scale_bar_nm, title, colorbar: bool):
    import matplotlib
    from matplotlib.colors import LogNorm

    from .errors import InputError

    extent = image_extent(image)
    cm = matplotlib.colormaps[cmap].with_extremes(bad=nan_colour)
    data = np.ma.masked_invalid(np.asarray(image.values, dtype=np.float64))
    im = ax.imshow(data, cmap=cm, norm=norm, extent=extent, origin="upper", interpolation="nearest")
    ax.set_xlabel(f"{S.X} (nm)")
    ax.set_ylabel(f"{S.Y} (nm)")
    if scale_bar_nm is None:
        scale_bar_nm = nice_length(extent[1] - extent[0])
    if scale_bar_nm:
        if not 0 < scale_bar_nm < extent[1] - extent[0]:
            raise InputError(f"scale_bar_nm = {scale_bar_nm!r} must be positive and shorter than the image width "
                             f"({extent[1] - extent[0]:g} nm)")
        add_scale_bar(ax, float(scale_bar_nm), extent)
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        cbar = fig.colorbar(im, ax=ax, label=_label(image), shrink=0.9)
        if isinstance(norm, LogNorm):  # 20, 50, 0.5 rather than 2x10^1, 5x10^1, 5x10^-1
            from matplotlib.ticker import LogFormatter

            cbar.ax.yaxis.set_major_formatter(LogFormatter())
            cbar.ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    return im


def _image_figsize(image, n_panels: int = 1) -> tuple[float, float]:
    ny, nx = image.sizes[S.Y], image.sizes[S.X]
    width = 5.0 * n_panels
    return (width + 1.0 * n_panels, max(2.5, 5.0 * ny / nx + 0.9))


def plot_frame(image, path: str | os.PathLike | None = None, *, scale_bar_nm: float | None = None,
               title: str | None = None, percentiles=(0.5, 99.5)):
    """A grey-scale frame (one frame, a mean image, ...) with a scale bar.

    Parameters
    ----------
    image : DataArray on (y, x) with coordinates in nm
    path : save the figure there (PNG, SVG or PDF by extension); None to only return it
    scale_bar_nm : length of the scale bar in nm (default: 1, 2 or 5 x 10^k, at most 1/5 of the width); 0: none
    title : axes title (default: the image's long_name or name)
    percentiles : grey-scale limits as percentiles of the finite pixels

    Returns
    -------
    matplotlib Figure (its first axes holds the image; the bar has gid ``"scale_bar"``)
    """
    image = _check_image(image, "plot_frame")
    fig = _figure(_image_figsize(image))
    ax = fig.add_subplot()
    norm = color_norm(image.values, percentiles=percentiles)
    _draw_image(fig, ax, image, cmap="gray", norm=norm, nan_colour=NAN_COLOUR_FRAME, scale_bar_nm=scale_bar_nm,
                title=title or image.attrs.get(S.ATTR_LONG_NAME) or image.name, colorbar=True)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_map(data, path: str | os.PathLike | None = None, *, log: bool | None = None, cmap: str = "viridis",
             percentiles=ROBUST_PERCENTILES, vmin: float | None = None, vmax: float | None = None,
             scale_bar_nm: float | None = None, title: str | None = None):
    """A map on (y, x) in nm: colour bar with the units from the attributes, NaN in neutral grey.

    Parameters
    ----------
    data : DataArray on (y, x), e.g. ``results.tau``
    path : save the figure there; None to only return it
    log : logarithmic colours (default: True for tau maps, i.e. names starting with ``"tau"``)
    cmap : matplotlib colour map name
    percentiles : colour limits from these percentiles of the finite values (:func:`robust_limits`)
    vmin, vmax : fixed colour limits instead
    scale_bar_nm : as in :func:`plot_frame`
    title : axes title (default: the long_name)

    Returns
    -------
    matplotlib Figure (``fig.axes[0].images[0].norm`` holds the colour limits)
    """
    data = _check_image(data, "plot_map")
    fig = _figure(_image_figsize(data))
    ax = fig.add_subplot()
    _draw_map(fig, ax, data, log=log, cmap=cmap, percentiles=percentiles, vmin=vmin, vmax=vmax,
              scale_bar_nm=scale_bar_nm, title=title)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _draw_map(fig, ax, data, *, log, cmap, percentiles, vmin, vmax, scale_bar_nm, title):
    if log is None:
        log = str(data.name or "").startswith(S.TAU)
    norm = color_norm(data.values, log=log, percentiles=percentiles, vmin=vmin, vmax=vmax)
    return _draw_image(fig, ax, data, cmap=cmap, norm=norm, nan_colour=NAN_COLOUR, scale_bar_nm=scale_bar_nm,
                       title=title or data.attrs.get(S.ATTR_LONG_NAME) or data.name, colorbar=True)


def ok_only(results, name: str):
    """``results[name]`` where the fit status is ok, NaN elsewhere (attributes kept)."""
    from .kernels.kww import FIT_OK

    da = results[name]
    return da.where(results[S.STATUS] == FIT_OK).assign_attrs(da.attrs)


def plot_maps(results, path: str | os.PathLike | None = None, *, only_ok: bool = True,
              percentiles=ROBUST_PERCENTILES, scale_bar_nm: float | None = None):
    """τ (logarithmic colours) and β maps side by side.

    Parameters
    ----------
    results : the maps Dataset (root of ``results.zarr``: ``tau``, ``beta``, ``status``)
    path : save the figure there; None to only return it
    only_ok : show only pixels whose fit status is ok (the others are NaN, in grey)
    percentiles, scale_bar_nm : as in :func:`plot_map`

    Returns
    -------
    matplotlib Figure with the τ map in ``axes[0]`` and the β map in ``axes[1]`` (colour bars follow)
    """
    from .kernels.kww import FIT_STATUS

    tau, beta = ((ok_only(results, n) if only_ok else results[n]).transpose(S.Y, S.X) for n in (S.TAU, S.BETA))
    fig = _figure(_image_figsize(tau, 2))
    ax_tau, ax_beta = fig.subplots(1, 2)
    which = f" (status {FIT_STATUS[0]})" if only_ok else ""
    _draw_map(fig, ax_tau, tau, log=True, cmap="viridis", percentiles=percentiles, vmin=None, vmax=None,
              scale_bar_nm=scale_bar_nm, title=f"τ{which}")
    _draw_map(fig, ax_beta, beta, log=False, cmap="plasma", percentiles=percentiles, vmin=None, vmax=None,
              scale_bar_nm=scale_bar_nm, title=f"β{which}")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# ------------------------------------------------------------------------------------------------ g2 curves
def pixel_index(ds, y: float, x: float, units: str = "nm") -> tuple[int, int]:
    """Row and column of a pixel given in nm (nearest pixel centre) or as indices (``units="pixel"``).

    Raises :class:`~ecm_dask.errors.InputError` naming the pixel when it lies outside the map.
    """
    from .errors import InputError

    ny, nx = ds.sizes[S.Y], ds.sizes[S.X]
    if units == "pixel":
        iy, ix = int(y), int(x)
        if iy != y or ix != x or not (0 <= iy < ny and 0 <= ix < nx):
            raise InputError(f"pixel (y={y}, x={x}) is not a pixel index of the {ny} x {nx} map")
        return iy, ix
    if units != "nm":
        raise InputError(f"units must be 'nm' or 'pixel', got {units!r}")
    out = []
    for value, dim in ((y, S.Y), (x, S.X)):
        c = np.asarray(ds[dim].values, dtype=np.float64)
        i = int(np.argmin(np.abs(c - float(value))))
        if abs(c[i] - float(value)) > 0.5 * abs(_step(c)) * (1 + 1e-9):
            raise InputError(f"pixel (y={y:g} nm, x={x:g} nm) is outside the map: {dim} runs from {c[0]:g} to "
                             f"{c[-1]:g} nm")
        out.append(i)
    return out[0], out[1]


def plot_g2_fits(g2, maps, pixels, path: str | os.PathLike | None = None, *, units: str = "nm",
                 title: str | None = None, n_curve: int = 200):
    """g2 of a few pixels with their fitted KWW curves on a logarithmic lag axis (lag 0 excluded).

    Parameters
    ----------
    g2 : the g2 Dataset (``/g2`` of the results: ``g2 (y, x, lag)``, lag in s; error bars from ``g2_err`` if
        present, markers otherwise)
    maps : the maps Dataset on the same (y, x) grid (``baseline``, ``contrast``, ``tau``, ``beta``, ``status``)
    pixels : (y, x) pairs, in nm (nearest pixel) or indices with ``units="pixel"``
    path : save the figure there; None to only return it
    units : ``"nm"`` or ``"pixel"``
    title : axes title
    n_curve : points of each fitted curve (log-spaced between the first and the last lag)

    Returns
    -------
    matplotlib Figure; the fitted curve of pixel (iy, ix) is the line with gid ``"fit:iy,ix"``, its data
    points the artist with gid ``"g2:iy,ix"``.
    """
    from .errors import InputError
    from .kernels.kww import FIT_OK, PARAMS, kww_model

    if (g2.sizes[S.Y], g2.sizes[S.X]) != (maps.sizes[S.Y], maps.sizes[S.X]):
        raise InputError(f"g2 ({g2.sizes[S.Y]} x {g2.sizes[S.X]}) and maps ({maps.sizes[S.Y]} x "
                         f"{maps.sizes[S.X]}) are not on the same pixel grid")
    lag = np.asarray(g2[S.LAG].values, dtype=np.float64)
    keep = lag > 0
    t = lag[keep]
    fig = _figure((7, 4.2))
    ax = fig.add_subplot()
    for i, (a, b) in enumerate(pixels):
        iy, ix = pixel_index(g2, a, b, units)
        colour = f"C{i % 10}"
        curve = np.asarray(g2[S.G2].isel({S.Y: iy, S.X: ix}).transpose(S.LAG).values, dtype=np.float64)[keep]
        params = np.array([float(maps[p].isel({S.Y: iy, S.X: ix})) for p in PARAMS])
        status = int(maps[S.STATUS].isel({S.Y: iy, S.X: ix})) if S.STATUS in maps else FIT_OK
        yc, xc = float(g2[S.Y][iy]), float(g2[S.X][ix])
        if np.all(np.isfinite(params)):
            tau, beta = params[PARAMS.index(S.TAU)], params[PARAMS.index(S.BETA)]
            label = f"y={yc:.3g}, x={xc:.3g} nm: τ={tau:.3g} s, β={beta:.2f}"
        else:
            label = f"y={yc:.3g}, x={xc:.3g} nm: no fit"
        if status != FIT_OK:
            label += f" [{S.RESULT_STATUS.get(status, status)}]"
        if S.G2_ERR in g2:
            err = np.asarray(g2[S.G2_ERR].isel({S.Y: iy, S.X: ix}).transpose(S.LAG).values, dtype=np.float64)[keep]
            pts = ax.errorbar(t, curve, yerr=err, fmt="o", ms=3, color=colour, elinewidth=0.8, capsize=0,
                              label=label)
            pts[0].set_gid(f"g2:{iy},{ix}")
        else:
            ax.plot(t, curve, "o", ms=3, color=colour, label=label, gid=f"g2:{iy},{ix}")
        if np.all(np.isfinite(params)) and t.size:
            tt = np.geomspace(t[0], t[-1], n_curve)
            ax.plot(tt, kww_model(tt, params)[0], "-", color=colour, lw=1.4, gid=f"fit:{iy},{ix}")
    ax.set_xscale("log")
    ax.set_xlabel(f"{S.LAG} (s)")
    ax.set_ylabel("g2")
    ax.set_title(title or "g2 and KWW fits  baseline + A exp(-2 (t/τ)^β)", fontsize=10)
    ax.legend(loc="best", fontsize=8, frameon=False)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# --------------------------------------------------------------------------------------------------- regions
#: colours of the region codes (vacuum, bulk, surface, crystal) and of the status classes in plot_regions
REGION_COLOURS = {S.REGION_EXCLUDED: "#8c8c8c", S.REGION_VACUUM: "#202020", S.REGION_BULK: "#4c72b0", S.REGION_SURFACE: "#dd8452",
                  S.REGION_CRYSTAL: "#55a868"}
STATUS_CLASSES = (("ok", (S.STATUS_OK,), "#4c72b0"), ("drift edge", (S.STATUS_DRIFT_EDGE,), "#c44e52"),
                  ("static", (S.STATUS_STATIC,), "#55a868"), ("vacuum", (S.STATUS_VACUUM,), "#202020"),
                  ("bad input", (S.STATUS_BAD_INPUT,), "#8c8c8c"),
                  ("fit rejected", tuple(c for c in S.RESULT_STATUS if 0 < c < S.STATUS_BAD_INPUT), "#dddd55"))


def plot_regions(regions, status=None, path: str | os.PathLike | None = None, *, scale_bar_nm: float | None = None):
    """The region map (vacuum, bulk, surface, crystal) and, if given, the pixel status map, side by side.

    Parameters
    ----------
    regions : Dataset with ``region`` (y, x) (``/regions`` of the results) or the region DataArray
    status : DataArray (y, x) of result status codes (root ``status``), optional
    path : save the figure there; None to only return it
    scale_bar_nm : length of the scale bar (default: a round ~20 % of the width)

    Returns
    -------
    matplotlib Figure; the region image has gid ``"regions"``, the status image ``"status"``.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    region = regions[S.REGION] if hasattr(regions, "data_vars") else regions
    region = region.transpose(S.Y, S.X)
    extent = image_extent(region)
    panels = [("regions", np.asarray(region.values, dtype=np.int64),
               [(S.REGION_FLAGS[c], c, REGION_COLOURS[c]) for c in sorted(S.REGION_FLAGS)])]
    if status is not None:
        codes = np.asarray(status.transpose(S.Y, S.X).values, dtype=np.int64)
        cls = np.full(codes.shape, len(STATUS_CLASSES) - 1)
        for k, (_, members, _) in enumerate(STATUS_CLASSES):
            cls[np.isin(codes, members)] = k
        panels.append(("status", cls, [(n, k, c) for k, (n, _, c) in enumerate(STATUS_CLASSES)]))
    fig = _figure(_image_figsize(region, len(panels)))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    span = extent[1] - extent[0]
    for ax, (name, image, legend) in zip(axes, panels):
        values = [v for _, v, _ in legend]
        cmap = ListedColormap([c for _, _, c in legend])
        norm = BoundaryNorm(np.arange(min(values) - 0.5, max(values) + 1.0), cmap.N)
        ax.imshow(image, origin="upper", extent=extent, cmap=cmap, norm=norm, interpolation="nearest", gid=name)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x (nm)")
        ax.set_ylabel("y (nm)")
        counts = {v: int(np.count_nonzero(image == v)) for v in values}
        ax.legend(handles=[Patch(color=c, label=f"{n} ({counts[v]})") for n, v, c in legend if counts[v]],
                  loc="upper right", fontsize=7, framealpha=0.8)
        add_scale_bar(ax, scale_bar_nm or nice_length(span), extent)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# ------------------------------------------------------------------------------------------------ histograms
def _region_masks(regions, shape) -> dict[str, np.ndarray]:
    from .errors import InputError

    if regions is None:
        return {}
    if hasattr(regions, "dims") and not isinstance(regions, dict):  # integer label map
        labels = np.asarray(regions.transpose(S.Y, S.X).values)
        if labels.shape != shape:
            raise InputError(f"regions has shape {labels.shape}, the maps {shape}")
        return {S.REGION_NAMES.get(int(k), f"region {int(k)}"): labels == k for k in np.unique(labels)}
    out = {}
    for name, mask in regions.items():
        m = np.asarray(mask.transpose(S.Y, S.X).values if hasattr(mask, "dims") else mask, dtype=bool)
        if m.shape != shape:
            raise InputError(f"region {name!r} has shape {m.shape}, the maps {shape}")
        out[str(name)] = m
    return out


def plot_histograms(maps, path: str | os.PathLike | None = None, *, regions=None, bins: int = 30):
    """Histograms of log10 τ and β over the pixels whose fit status is ok, medians marked.

    Parameters
    ----------
    maps : the maps Dataset (``tau``, ``beta``, ``status``)
    path : save the figure there; None to only return it
    regions : optional: a mapping name -> boolean mask on (y, x), or an integer label map on (y, x)
        (names from :data:`ecm_dask.schema.REGION_NAMES`); each region is drawn as an outline with its median
    bins : number of bins between the smallest and largest value (as ``np.histogram(values, bins)``)

    Returns
    -------
    matplotlib Figure: ``axes[0]`` log10 τ, ``axes[1]`` β; bars of all ok pixels have gid ``"hist"``, the
    median line gid ``"median"`` (region outlines/medians: ``"hist:<name>"`` / ``"median:<name>"``).
    """
    from .kernels.kww import FIT_OK

    status = np.asarray(maps[S.STATUS].transpose(S.Y, S.X).values)
    ok = status == FIT_OK
    masks = _region_masks(regions, ok.shape)
    tau = np.asarray(maps[S.TAU].transpose(S.Y, S.X).values, dtype=np.float64)
    beta = np.asarray(maps[S.BETA].transpose(S.Y, S.X).values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_tau = np.where(tau > 0, np.log10(tau), np.nan)
    fig = _figure((9, 3.6))
    axes = fig.subplots(1, 2)
    for ax, values, xlabel in ((axes[0], log_tau, "log10 τ (τ in s)"), (axes[1], beta, "β")):
        use = ok & np.isfinite(values)
        v = values[use]
        ax.set_xlabel(xlabel)
        ax.set_ylabel("pixels")
        if v.size == 0:
            ax.text(0.5, 0.5, "no pixel with status ok", ha="center", va="center", transform=ax.transAxes)
            continue
        _, edges, bars = ax.hist(v, bins=bins, color="0.7", label=f"all ({v.size} px)")
        for bar in bars:
            bar.set_gid("hist")
        med = float(np.median(v))
        ax.axvline(med, color="black", ls="--", lw=1.2, gid="median", label=f"median {med:.3g}")
        for j, (name, m) in enumerate(masks.items()):
            rv = values[use & m]
            if rv.size == 0:
                continue
            colour = f"C{j % 10}"
            _, _, outline = ax.hist(rv, bins=edges, histtype="step", color=colour, lw=1.3,
                                    label=f"{name} ({rv.size} px)")
            for p in outline:
                p.set_gid(f"hist:{name}")
            ax.axvline(float(np.median(rv)), color=colour, ls=":", lw=1.2, gid=f"median:{name}")
        ax.legend(loc="best", fontsize=8, frameon=False)
    fig.suptitle(f"fits with status ok: {int(ok.sum())} of {ok.size} pixels", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
