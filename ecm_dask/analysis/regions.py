"""Regions of a nanowire image: wire vs vacuum, static crystal, distance from the surface, surface/bulk.

The numerics are plain NumPy/SciPy functions on arrays (:func:`otsu_threshold`, :func:`segment_wire`,
:func:`crystal_mask`, :func:`surface_distance`); :func:`classify` takes and returns labelled
xarray objects.

Conventions (the same as the synthetic truth, :func:`ecm_dask.synth.truth_maps`):

* the surface distance of a wire pixel is the Euclidean distance from its centre to the nearest
  non-wire pixel centre minus half a pixel (the surface lies between the two centres), in nm; NaN
  outside the wire.  The frame border is *not* a surface: a wire cut by the field of view keeps the
  distance to its visible edges.
* region codes are ``schema.REGION_*``; the crystal is wire material, so it counts as wire for the
  surface distance and its code overrides bulk/surface.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .. import schema as S
from ..errors import InputError

__all__ = ["classify", "crystal_mask", "otsu_threshold", "segment_wire", "surface_distance"]


# ------------------------------------------------------------------------------------------ numerics
def otsu_threshold(values, nbins: int = 256) -> float:
    """Otsu's threshold of the finite ``values``: the cut maximising the between-class variance.

    Returns the upper edge of the last histogram bin of the lower class.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2 or v.min() == v.max():
        raise InputError("otsu_threshold: need at least two distinct finite values to separate two classes")
    counts, edges = np.histogram(v, bins=int(nbins))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts)[:-1].astype(np.float64)
    w1 = v.size - w0
    s0 = np.cumsum(counts * centres)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = (np.sum(counts * centres) - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[1:-1][np.argmax(between)])


def _image(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D (y, x) image, got shape {arr.shape}")
    if not np.isfinite(arr).any():
        raise InputError(f"{name} has no finite value")
    return arr


def _keep_large_components(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """Keep the connected components holding at least ``min_fraction`` of the largest one's pixels."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    return np.isin(lab, keep)


def segment_wire(mean_image, *, log: bool = True, threshold: float | None = None,
                 min_fraction: float = 0.2, smooth_px: float = 0.0) -> np.ndarray:
    """Boolean mask of the sample (wire) in a mean image: bright against dark vacuum.

    Parameters
    ----------
    mean_image : array_like (y, x)
        Time-averaged intensity (e.g. ``results["g2"].mean_intensity``); NaN pixels count as vacuum.
    log : bool
        Threshold ``log(intensity)`` (default): vacuum, wire and a bright crystal span decades, and the
        cut between the vacuum and wire modes is then robust to the bright tail.
    threshold : float, optional
        Use this intensity (not its log) instead of Otsu's threshold.
    min_fraction : float
        Keep connected components with at least this fraction of the largest component's pixels.
    smooth_px : float
        Gaussian smoothing (pixels) of the image before thresholding; 0 = none.

    Returns
    -------
    ndarray of bool (y, x): True on the wire; holes filled, small specks removed.
    """
    img = _image(mean_image, "mean_image")
    if smooth_px > 0:
        img = ndimage.gaussian_filter(np.where(np.isfinite(img), img, np.nanmin(img)), smooth_px)
    if threshold is None:
        if log:
            pos = img[np.isfinite(img) & (img > 0)]
            if pos.size < 2:
                raise InputError("mean_image needs positive intensities to segment on a log scale (or pass log=False)")
            floor = max(float(pos.min()), 1e-12)
            values = np.log(np.clip(img, floor, None))
            values[~np.isfinite(img)] = np.nan
            cut = float(np.exp(otsu_threshold(values)))
        else:
            cut = otsu_threshold(img)
    else:
        cut = float(threshold)
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(img) & (img > cut)
    if not mask.any():
        raise InputError(f"segment_wire: no pixel above the threshold {cut:g}")
    mask = ndimage.binary_fill_holes(mask)
    return _keep_large_components(mask, min_fraction)


def crystal_mask(mean_image, contrast=None, *, wire=None, bright: float = 1.5, static: float = 0.3,
                 min_size_px: int = 4) -> np.ndarray:
    """Static bright pixels (a crystallised chunk): bright against the wire and not fluctuating.

    Parameters
    ----------
    mean_image : array_like (y, x)
        Mean intensity.
    contrast : array_like (y, x), optional
        A speckle-contrast map: the fitted ``contrast``, or the model-free ``g2_lag0 - 1 - 1/mean``.  NaN
        (no fit) counts as static.  Without it the crystal is found from brightness alone.
    wire : array_like of bool, optional
        Wire mask (default :func:`segment_wire` of ``mean_image``).
    bright : float
        Seed pixels are brighter than ``bright`` x the median wire intensity.
    static : float
        Static pixels have a contrast below ``static`` x the median contrast of the wire.
    min_size_px : int
        Crystals smaller than this are dropped.

    Returns
    -------
    ndarray of bool (y, x).  With ``contrast``: the connected regions of bright or static wire pixels that
    contain a bright seed and whose median contrast is below ``2 static`` x the wire's (a bright but
    fluctuating region is not a crystal); without: the bright regions, closed and hole-filled.
    """
    img = _image(mean_image, "mean_image")
    wire = segment_wire(img) if wire is None else np.asarray(wire, dtype=bool)
    if wire.shape != img.shape:
        raise InputError(f"wire mask has shape {wire.shape}, mean_image {img.shape}")
    if not wire.any():
        return np.zeros_like(wire)
    level = float(np.nanmedian(img[wire]))
    with np.errstate(invalid="ignore"):
        seeds = wire & (img > bright * level)
    if contrast is None:
        cand = ndimage.binary_closing(seeds, iterations=1) & wire
    else:
        c = np.asarray(contrast, dtype=np.float64)
        if c.shape != img.shape:
            raise InputError(f"contrast has shape {c.shape}, mean_image {img.shape}")
        ref = c[wire & np.isfinite(c)]
        if ref.size == 0 or not np.median(ref) > 0:
            raise InputError("crystal_mask: the contrast map has no positive finite value on the wire")
        level_c = float(np.median(ref))
        with np.errstate(invalid="ignore"):
            quiet = wire & ~(c >= static * level_c)
        cand = seeds | quiet
    lab, n = ndimage.label(cand)
    if n == 0:
        return np.zeros_like(wire)
    keep = np.unique(lab[seeds & (lab > 0)])
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = keep[sizes[keep] >= int(min_size_px)]
    if contrast is not None and keep.size:
        # a bright region is a crystal only if it is static as a whole: median contrast well below the wire's
        static_enough = [np.nanmedian(np.where(np.isfinite(c), c, 0.0)[lab == k]) < 2 * static * level_c
                         for k in keep]
        keep = keep[np.asarray(static_enough, dtype=bool)]
    out = np.isin(lab, keep)
    return ndimage.binary_fill_holes(out) & wire


def surface_distance(mask, pixel_size=1.0) -> np.ndarray:
    """Distance of each pixel inside ``mask`` from its edge: EDT to the nearest outside centre minus 1/2 px.

    Parameters
    ----------
    mask : array_like of bool (y, x)
        True inside the sample.
    pixel_size : float or (float, float)
        Pixel size (nm), one value or ``(dy, dx)``.

    Returns
    -------
    float64 (y, x): distance in the units of ``pixel_size``; NaN outside the mask, +inf everywhere if the
    mask has no outside pixel.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise InputError(f"mask must be 2-D (y, x), got shape {m.shape}")
    sampling = np.broadcast_to(np.asarray(pixel_size, dtype=np.float64), (2,))
    if not np.all(sampling > 0):
        raise InputError(f"pixel_size must be positive, got {pixel_size!r}")
    if m.all():
        return np.full(m.shape, np.inf)
    edt = ndimage.distance_transform_edt(m, sampling=sampling)
    # half a pixel along the direction of the nearest outside centre; on a square grid that is half the
    # pixel size (exact for an axis-aligned edge, the convention of the synthetic truth)
    half = 0.5 * float(np.min(sampling))
    return np.where(m, edt - half, np.nan)


# ------------------------------------------------------------------------------------------ labelled
def _pixel_size(da, pixel_size) -> float:
    if pixel_size is not None:
        return float(pixel_size)
    for dim in (S.X, S.Y):
        if hasattr(da, "coords") and dim in da.coords and da.sizes[dim] > 1:
            return float(np.median(np.diff(np.asarray(da[dim].values, dtype=np.float64))))
    if hasattr(da, "attrs") and S.ATTR_PIXEL_SIZE in da.attrs:
        return float(da.attrs[S.ATTR_PIXEL_SIZE])
    raise InputError("pixel_size is needed: pass pixel_size=... (nm) or an image with y/x coordinates in nm")


def classify(mean_image, *, surface_nm: float = 1.0, contrast=None, user_mask=None, pixel_size: float | None = None,
             bright: float = 1.5, static: float = 0.3, unknown=None):
    """Classify every pixel as vacuum, bulk, surface or crystal.

    Parameters
    ----------
    mean_image : xarray.DataArray (y, x) or array
        Mean intensity, e.g. ``xr.open_datatree("results.zarr")["g2"].mean_intensity``.
    surface_nm : float
        Wire pixels closer than this to the surface (see :func:`surface_distance`) are ``surface``.
    contrast : DataArray or array (y, x), optional
        Speckle contrast map for the crystal test (see :func:`crystal_mask`); e.g. ``results.contrast``.
    user_mask : DataArray or array of bool (y, x), optional
        The wire mask given by hand; replaces the automatic :func:`segment_wire`.
    pixel_size : float, optional
        nm; default from the ``y``/``x`` coordinates.
    bright, static : float
        Passed to :func:`crystal_mask`.
    unknown : array of bool (y, x), optional
        Pixels whose content is unknown (e.g. not in the field of view for the whole series): labelled
        ``schema.REGION_EXCLUDED`` and, for the surface distance, not taken as vacuum (the wire does not end
        where the field of view does).

    Returns
    -------
    xarray.Dataset on (y, x): ``region`` (int8, ``schema.REGION_*`` codes, flag attributes as in the synthetic
    truth), ``surface_distance`` (nm, NaN outside the wire), ``wire`` and ``crystal`` (bool).  Use e.g.
    ``maps.tau.where(regions.region == REGION_SURFACE)``.
    """
    import xarray as xr

    img = _image(mean_image, "mean_image")
    px = _pixel_size(mean_image, pixel_size)
    if not surface_nm >= 0:
        raise InputError(f"surface_nm must be >= 0, got {surface_nm!r}")
    if user_mask is None:
        wire = segment_wire(img)
    else:
        wire = np.asarray(user_mask, dtype=bool)
        if wire.shape != img.shape:
            raise InputError(f"user_mask has shape {wire.shape}, mean_image {img.shape}")
    crystal = crystal_mask(img, None if contrast is None else np.asarray(contrast), wire=wire,
                           bright=bright, static=static)
    unknown = np.zeros(img.shape, dtype=bool) if unknown is None else np.asarray(unknown, dtype=bool)
    if unknown.shape != img.shape:
        raise InputError(f"unknown has shape {unknown.shape}, mean_image {img.shape}")
    wire &= ~unknown
    dist = np.where(wire, surface_distance(wire | unknown, px), np.nan)
    region = np.full(img.shape, S.REGION_VACUUM, dtype=np.int8)
    region[wire] = S.REGION_BULK
    with np.errstate(invalid="ignore"):
        region[wire & (dist < surface_nm)] = S.REGION_SURFACE
    region[crystal & ~unknown] = S.REGION_CRYSTAL
    region[unknown] = S.REGION_EXCLUDED
    dims = (S.Y, S.X)
    coords = {}
    if isinstance(mean_image, xr.DataArray):
        coords = {d: mean_image[d] for d in dims if d in mean_image.coords}
    names = S.REGION_FLAGS if unknown.any() else S.REGION_NAMES
    ds = xr.Dataset(
        {S.TRUTH_REGION: (dims, region, S.flag_attrs(names, "region")),
         S.SURFACE_DISTANCE: (dims, dist, S.coord_attrs(S.TRUTH_SURFACE_DISTANCE, "distance from the wire surface")),
         "wire": (dims, wire, {"long_name": "wire mask"}),
         "crystal": (dims, crystal, {"long_name": "static crystal mask"})},
        coords=coords,
        attrs={"surface_nm": float(surface_nm), "pixel_size_nm": px, "wire_mask": "user" if user_mask is not None
               else "segment_wire (Otsu on log intensity)", "crystal_test": "brightness" if contrast is None
               else "brightness seeds grown over low-contrast pixels"})
    return ds
