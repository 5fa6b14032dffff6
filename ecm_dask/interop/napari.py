"""napari reader for ecm_dask stores (npe2 contribution declared in ``ecm_dask/napari.yaml``).

A series store opens as one lazy image layer (time, y, x): frames are read from the store only when napari
displays them.  A results store opens as the maps of a run: ``log10 tau (s)``, ``beta`` and
``contrast`` (NaN where the pixel status is not ok: only trusted pixels are coloured), and the labels ``status``
(why a pixel is not ok; ok pixels are transparent) and ``regions`` (vacuum, bulk, surface, crystal); hovering a
label shows its name.  Every layer is calibrated: nm on y/x (nm^-1 on a diffraction camera) and s on time, placed at
its coordinates, so a results store opened over its series lines up with it.

Open a store with ``napari --plugin ecm_dask STORE.zarr`` or ``viewer.open(path, plugin="ecm_dask")``: napari's own
reader claims ``*.zarr`` too, so without a choice napari asks which reader to use.  :func:`get_reader` declines
anything that is not an ecm_dask store, so npe2 moves on to the next reader when it tries them in turn.

napari imports this module only when it opens a path; it does not import napari itself (a reader returns plain
napari "LayerData" tuples ``(data, layer keyword arguments, layer type)``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import StoreError

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]

#: what ``store_kind`` says of a store this reader opens (an interrupted ingest is opened to say how to resume it)
SERIES_KINDS = ("series", "interrupted")
RESULTS_KIND = "results"
#: frames read for the contrast limits of a series (first, middle, last), and at most this many pixels of each
CONTRAST_FRAMES = 3
CONTRAST_PIXELS = 1 << 20
#: most bytes of one dask chunk of the series layer.  napari turns dask's task fusion off and caches whole chunks,
#: so a displayed frame materialises its whole chunk: chunks of whole frames, as many as fit this budget and never
#: across a stored inner chunk (each stored chunk spans up to 256 frames of a 64 x 64 pixel tile, decoded whole)
CHUNK_BYTES = 64 << 20
#: percentiles of the contrast limits: of the sampled frames (series) and of the ok pixels (maps)
SERIES_PERCENTILES = (0.5, 99.5)
MAP_PERCENTILES = (1.0, 99.0)
#: layer names of the result maps
LOG10_TAU_LAYER = f"log10 {S.TAU} ({S.UNITS[S.TAU]})"
#: result maps shown as images: (variable, layer name, colormap, visible, log10)
MAP_LAYERS = ((S.TAU, LOG10_TAU_LAYER, "viridis", True, True),
              (S.BETA, S.BETA, "plasma", False, False),
              (S.CONTRAST, S.CONTRAST, "magma", False, False))
#: colours of the pixel status labels (ok: transparent, so the maps show through)
STATUS_COLORS = {S.STATUS_OK: "transparent", S.STATUS_NOT_CONVERGED: "#c51b7d", S.STATUS_AT_BOUND: "#de77ae",
                 S.STATUS_NO_DECAY: "#8e0152", S.STATUS_TOO_FAST: "#f1b6da", S.STATUS_TOO_FEW_POINTS: "#762a83",
                 S.STATUS_BAD_INPUT: "#d7191c", S.STATUS_DRIFT_EDGE: "#fdae61", S.STATUS_STATIC: "#4393c3",
                 S.STATUS_VACUUM: "#404040", None: "#ffffff"}
#: colours of the region labels: vacuum, the code 0, is napari's background (transparent), so that contour mode
#: (``layer.contour = 1``, which paints the inside of every region with the background) outlines regions over a map
REGION_COLORS = {S.REGION_EXCLUDED: "#000000", S.REGION_VACUUM: "transparent", S.REGION_BULK: "#1f77b4",
                 S.REGION_SURFACE: "#ff7f0e", S.REGION_CRYSTAL: "#2ca02c", None: "#ffffff"}
#: what to do about a damaged results store
RESULTS_HINT = ("write it again (ecm-dask run SERIES -o RESULTS --overwrite; its stage checkpoints are reused); "
                "ecm-dask verify RESULTS lists every damaged file")


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """The reader of ``path`` if it is an ecm_dask series or results store, else None (napari asks other plugins).

    Looks at the store's metadata only (``zarr.json``); nothing is read from the arrays."""
    from ..store.info import store_kind

    if not isinstance(path, (str, os.PathLike)):
        if len(path) != 1:  # a stack of stores: not one image
            return None
        path = path[0]
    try:
        kind = store_kind(path)
    except (OSError, ValueError):
        return None
    if kind in SERIES_KINDS:
        return read_series
    if kind == RESULTS_KIND:
        return read_results
    return None


def _one_path(path: str | Sequence[str]) -> Path:
    if isinstance(path, (str, os.PathLike)):
        return Path(path)
    if len(path) != 1:
        raise ValueError(f"the ecm_dask reader opens one store at a time, got {len(path)} paths")
    return Path(path[0])


def _limits(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """Contrast limits: the ``percentiles`` of the finite ``values`` (widened when they coincide)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = (float(q) for q in np.percentile(v, percentiles))
    if not hi > lo:
        pad = max(abs(lo) * 1e-3, 0.5)
        lo, hi = lo - pad, hi + pad
    return lo, hi


def frames_per_chunk(stored_frames: int, frame_bytes: int, budget: int = CHUNK_BYTES) -> int:
    """Frames of one dask chunk of the series layer: the largest divisor of the stored inner chunk's frame count
    whose frames fit ``budget`` bytes (at least one frame), so no dask chunk straddles two stored chunks."""
    fit = max(1, budget // max(1, frame_bytes))
    return max(d for d in range(1, stored_frames + 1) if stored_frames % d == 0 and d <= fit)


def _grid(coord: np.ndarray, step: float, where: str, dim: str) -> float:
    """The first coordinate of a regular axis ``coord`` of spacing ``step`` (napari places pixels on a grid)."""
    c = np.asarray(coord, dtype=np.float64)
    if c.size > 1 and not np.allclose(np.diff(c), step, rtol=1e-6, atol=0):
        raise StoreError(f"{where}: coordinate {dim!r} is not a regular grid of step {step:g} (steps "
                         f"{np.diff(c).min():g}..{np.diff(c).max():g}); napari shows images on regular grids only")
    return float(c[0]) if c.size else 0.0


# --------------------------------------------------------------------------------------------------- series

def read_series(path: str | Sequence[str]) -> list[LayerData]:
    """A series store as one lazy image layer ``intensity`` (time, y, x), calibrated in s and nm.

    The layer's data is the store's dask array (:func:`ecm_dask.store.series.open_series`) in chunks of whole
    frames (:func:`frames_per_chunk`): napari reads the chunks of the frames it shows, nothing else; a damaged
    chunk raises a StoreError naming its file.  Contrast limits come from a few frames (first, middle, last).
    """
    from ..store.series import open_series

    path = _one_path(path)
    ds = open_series(path)  # StoreError / ValidationError naming the store (interrupted, incomplete, invalid)
    stored = ds[S.INTENSITY]
    inner = stored.encoding.get("chunks") or tuple(c[0] for c in stored.data.chunks)
    n_time = frames_per_chunk(int(inner[0]), stored.dtype.itemsize * stored.sizes[S.Y] * stored.sizes[S.X])
    with warnings.catch_warnings():  # dask chunks of whole frames, fewer frames than a stored chunk: intended
        warnings.filterwarnings("ignore", message=".*separate the stored chunks.*")
        ds = open_series(path, validate=False, chunks={S.TIME: n_time, S.Y: -1, S.X: -1})
    intensity = ds[S.INTENSITY].transpose(*S.SERIES_DIMS)
    data = intensity.data
    attrs = ds.attrs
    mode = S.series_mode(attrs)
    step = float(attrs[S.ATTR_K_CALIBRATION] if mode == S.MODE_DIFFRACTION else attrs[S.ATTR_PIXEL_SIZE])
    frame_time = float(attrs[S.ATTR_FRAME_TIME])
    translate = (float(ds[S.TIME].values[0]), *(_grid(ds[d].values, step, str(path), d) for d in (S.Y, S.X)))
    units = tuple(S.series_units(d, mode) for d in S.SERIES_DIMS)

    n, ny, nx = data.shape
    frames = sorted({int(i) for i in np.linspace(0, n - 1, min(CONTRAST_FRAMES, n))})
    stride = max(1, int(np.ceil(np.sqrt(ny * nx / CONTRAST_PIXELS))))
    # one compute per frame: dask then reads each frame alone from its chunks (frames computed together that
    # share a chunk would read the whole chunk, up to 256 frames)
    sample = [np.asarray(data[i, ::stride, ::stride].compute()) for i in frames]
    limits = _limits(np.stack(sample), SERIES_PERCENTILES)

    meta = {"store": str(path.resolve()), "store_kind": "series", "series_mode": mode,
            "frame_time_s": frame_time, "pixel_size": step, "axis_units": dict(zip(S.SERIES_DIMS, units)),
            "value_units": intensity.attrs.get(S.ATTR_UNITS, S.UNITS[S.INTENSITY]),
            "contrast_frames": frames,
            **{k: attrs[k] for k in (S.ATTR_MATERIAL, S.ATTR_INSTRUMENT, S.ATTR_TEMPERATURE, S.ATTR_SOURCE)
               if k in attrs}}
    kwargs = {"name": S.INTENSITY, "scale": (frame_time, step, step), "translate": translate,
              "axis_labels": S.SERIES_DIMS, "units": units, "contrast_limits": limits, "colormap": "gray",
              "metadata": meta}
    return [(data, kwargs, "image")]


# -------------------------------------------------------------------------------------------------- results

def _values(tree, path: Path, name: str, group: str | None = None) -> np.ndarray:
    """Variable ``name`` of the results tree (of ``group``) on (y, x) as a NumPy array; damaged stored bytes become a
    StoreError naming the file and pixels."""
    from ..store.integrity import damaged, is_damage, read_checked

    node = tree[group] if group else tree
    ds = node.to_dataset()
    where = f"{path}" + (f"/{group}" if group else "")
    if name not in ds.data_vars:
        raise StoreError(f"{where}: no variable {name!r}; the results store is incomplete, {RESULTS_HINT}")
    var = ds[name]
    if set(var.dims) != {S.Y, S.X}:
        raise StoreError(f"{where}: {name!r} has dims {tuple(var.dims)}, expected {(S.Y, S.X)} (napari shows the "
                         "maps of an image run; a diffraction run's results are profiles on q)")
    try:
        return np.asarray(var.transpose(S.Y, S.X).values)
    except Exception as err:  # noqa: BLE001 - re-raised unless it is damage
        if not is_damage(err):
            raise
        import zarr

        store = path / group if group else path
        read_checked(zarr.open_array(store=str(store / name), mode="r"), (), store, name, RESULTS_HINT)
        raise damaged(err, str(store / name), RESULTS_HINT) from None


def _codes(values: np.ndarray, where: str, name: str) -> np.ndarray:
    """A code map for a Labels layer: integers, or a StoreError (a float map here means the store was altered)."""
    if not np.issubdtype(values.dtype, np.integer):
        raise StoreError(f"{where}: {name!r} holds {values.dtype} values, expected integer codes")
    return values


def _label_features(codes: dict[int, str], values: np.ndarray) -> dict[str, list]:
    """napari's feature table of a Labels layer: one row per code (``index``), its name and pixel count."""
    found = dict(zip(*np.unique(values, return_counts=True)))
    keys = sorted(set(codes) | {int(v) for v in found})
    return {"index": keys, "name": [codes.get(k, "unknown code") for k in keys],
            "pixels": [int(found.get(k, 0)) for k in keys]}


def read_results(path: str | Sequence[str]) -> list[LayerData]:
    """A results store as image layers ``log10 tau (s)``, ``beta``, ``contrast`` (NaN where the status is not ok)
    and labels layers ``status`` and ``regions``, on the y/x grid of the maps (nm).

    Raises
    ------
    StoreError
        A chunk file of a map is missing, truncated or damaged (named), or a map is not on (y, x).
    InputError
        ``path`` is not a results store at all (:func:`ecm_dask.open_results`).
    """
    from .. import open_results
    from ..store.integrity import check_complete

    path = _one_path(path)
    names = [v for v, *_ in MAP_LAYERS] + [S.STATUS]
    # a missing or truncated chunk file (or array: consolidated metadata may still list it) would read as the fill
    # value: refuse it first, naming the file (stores that record their integrity; stat only, nothing decoded)
    check_complete(path, [*names, f"{S.REGIONS_GROUP}/{S.REGION}"])
    tree = open_results(path)
    root = tree.to_dataset()
    if S.REGIONS_GROUP not in tree.children:
        raise StoreError(f"{path}: no group /{S.REGIONS_GROUP}; the results store is incomplete, {RESULTS_HINT}")

    attrs = root.attrs
    pixel = attrs.get(S.ATTR_PIXEL_SIZE)
    if pixel is None or not np.isfinite(float(pixel)) or float(pixel) <= 0:
        raise StoreError(f"{path}: attribute {S.ATTR_PIXEL_SIZE!r} = {pixel!r} is not a pixel size in nm")
    pixel = float(pixel)
    translate = tuple(_grid(root[d].values, pixel, str(path), d) for d in (S.Y, S.X))
    axis_units = tuple(root[d].attrs.get(S.ATTR_UNITS, S.UNITS[d]) for d in (S.Y, S.X))
    regions_ds = tree[S.REGIONS_GROUP].to_dataset()
    for d in (S.Y, S.X):
        if d not in regions_ds.coords or not np.array_equal(regions_ds[d].values, root[d].values):
            raise StoreError(f"{path}/{S.REGIONS_GROUP}: its {d!r} grid differs from the root maps'")

    status = _codes(_values(tree, path, S.STATUS), str(path), S.STATUS)
    ok = status == S.STATUS_OK
    store = str(path.resolve())
    common = {"scale": (pixel, pixel), "translate": translate, "axis_labels": (S.Y, S.X), "units": axis_units}
    run = {k: attrs[k] for k in (S.ATTR_FRAME_TIME, S.ATTR_PIXEL_SIZE, S.ATTR_TEMPERATURE, "series") if k in attrs}

    layers: list[LayerData] = []
    for name, layer_name, cmap, visible, log in MAP_LAYERS:
        raw = _values(tree, path, name).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            shown = np.log10(raw) if log else raw
        shown = np.where(ok & np.isfinite(shown), shown, np.nan).astype(np.float32)
        units = root[name].attrs.get(S.ATTR_UNITS, S.UNITS.get(name, "1"))
        meta = {"store": store, "store_kind": RESULTS_KIND, "variable": name,
                "value_units": f"log10({units})" if log else units, "axis_units": dict(zip((S.Y, S.X), axis_units)),
                "ok_pixels": int(np.count_nonzero(np.isfinite(shown))), **run}
        layers.append((shown, {**common, "name": layer_name, "colormap": cmap, "visible": visible,
                               "contrast_limits": _limits(shown[np.isfinite(shown)], MAP_PERCENTILES),
                               "metadata": meta}, "image"))

    status_names = S.flag_names(root[S.STATUS].attrs) or dict(S.RESULT_STATUS)
    layers.append((status, {**common, "name": S.STATUS, "colormap": STATUS_COLORS, "opacity": 0.5,
                            "features": _label_features(status_names, status),
                            "metadata": {"store": store, "store_kind": RESULTS_KIND, "variable": S.STATUS,
                                         "codes": status_names, **run}}, "labels"))
    region = _codes(_values(tree, path, S.REGION, S.REGIONS_GROUP), f"{path}/{S.REGIONS_GROUP}", S.REGION)
    region_names = S.flag_names(regions_ds[S.REGION].attrs) or dict(S.REGION_FLAGS)
    layers.append((region, {**common, "name": S.REGIONS_GROUP, "colormap": REGION_COLORS, "opacity": 0.5,
                            "visible": False, "features": _label_features(region_names, region),
                            "metadata": {"store": store, "store_kind": RESULTS_KIND,
                                         "variable": f"{S.REGIONS_GROUP}/{S.REGION}", "codes": region_names,
                                         **run}}, "labels"))
    return layers
