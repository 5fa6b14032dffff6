"""Export ROI-averaged g2 curves to a NeXus ``NXxpcs`` file that the APS XPCS viewer (pyXpcsViewer) also opens.

Two functions:

* :func:`write_nxxpcs` -- the generic writer: ROI g2 curves ``(n_roi, n_lag)``, their errors, the lags, an optional
  pixel -> ROI map, q values and per-ROI KWW fits -> one HDF5 file;
* :func:`export_results` -- from an image-mode results store: one ROI per sample region (bulk, surface, crystal),
  its g2 the mean over the region's pixels whose status is ok, fitted with the project's KWW kernel.

Sources the layout was learned from (read, not copied)
------------------------------------------------------
* NeXus ``NXxpcs``: ``contributed_definitions/NXxpcs.nxdl.xml`` of ``nexusformat/definitions`` (commit cf669931,
  NXDL v2026.01; the same file ships with ``nexusformat`` 2.1, whose ``validate_application`` checks our output).
* The APS XPCS viewer: ``AdvancedPhotonSource/pyXpcsViewer`` at commit 952a0bf (2026-08-04), identical to the PyPI
  wheel ``xpcs-viewer`` 1.2.2 (import name ``pyxpcsviewer``): the key table ``core/file_io/aps_8idi.py`` ("nexus"
  keys), the readers ``core/xpcs_file.py`` (``XpcsFile.load_data``) and ``core/file_io/qmap_utils.py``
  (``QMap.load_dataset``), and ``gui/model/file_locator.py`` (the folder list shows ``*.hdf`` / ``*.h5`` only).
* The files the viewer reads are written by the APS engine boost_corr: ``AZjk/boost_corr`` (2026-01),
  ``src/boost_corr/xpcs_aps_8idi/xpcs_qpartitionmap.py`` (``normalized_g2`` is ``(n_delay, n_roi)``, ROI k of
  ``dynamic_roi_map`` is column k-1, 0 = unused pixel), ``multitau.py`` (``delay_list`` in frames,
  ``intensity_vs_time`` as ``(2, n_frames)``), ``aps_8idi.py`` and ``xpcs_result.py`` (write to ``<name>.temp``,
  then rename).

Layout written (``n_lag`` lags, ``n_roi`` ROIs, image ``ny x nx``)::

    /                                  NXroot  @default=entry
    /entry                             NXentry @default=data
        definition = "NXxpcs", entry_identifier, start_time, title, scan_number (0 unless given: deprecated by
        NXxpcs but still required by nexusformat's validator)
        data/                          NXdata  @signal=g2 @axes=[delay_time, roi_index]
            g2                 (n_lag, n_roi) float64   NXxpcs orientation (g2, q), @storage_mode=one_array
            g2_derr            (n_lag, n_roi) float64   standard errors; g2_errors is a hard link to it
            delay_difference   (n_lag,) int64 frames    (float64 only if a lag is not a whole number of frames)
            delay_time         (n_lag,) float64 s
            roi_index          (n_roi,) int32           1..n_roi, the values of dynamic_roi_map
            roi_name           (n_roi,) str
            q                  (n_roi,) float64         only with ``q``
            n_pixels           (n_roi,) int64           pixels averaged (with a ``roi_map``: ROI pixels in ``mask``)
        instrument/                    NXinstrument
            incident_beam/incident_energy   keV, NaN unless metadata["incident_energy_keV"]
            detector_1/                NXdetector: frame_time, count_time (NaN unless metadata["count_time_s"]),
                                       beam_center_x, beam_center_y (NaN: an ECM image has no beam centre)
            masks/                     NXnote (only with ``roi_map``)
                dynamic_roi_map (ny, nx) int32, 0 = no ROI, k = ROI k (g2 column k-1); static_roi_map -> same
                mask            (ny, nx) uint8, 1 = pixel that entered the averages
                dynamic_q_list, static_q_list (n_roi,)   only with ``q``
        roi_map/                       NXdata of dynamic_roi_map on y, x (nm when the pixel size is known)
        sample/                        NXsample: name (material), temperature (degC) when known
        process/                       NXprocess: program, version, date, notes; kww_fit/ NXdata of the fits
        ecm_dask/                      NXcollection: every metadata item as an attribute
    /xpcs                              plain groups, the layout pyXpcsViewer 1.2.2 reads ("nexus" keys)
        multitau/normalized_g2       -> /entry/data/g2               (hard links: one copy of the data)
        multitau/normalized_g2_err   -> /entry/data/g2_derr
        multitau/delay_list          -> /entry/data/delay_difference (frames; the viewer multiplies by frame_time)
        multitau/config/stride_frame = 1, avg_frame = 1
        qmap/  @hash                   dynamic_roi_map, static_roi_map, mask -> the masks fields;
                                       dynamic/static_v_list_dim0 -> q (or roi_index), *_v_list_dim1 = [0.0] (one
                                       azimuthal bin), *_index_mapping = 0..n_roi-1, *_num_pts = [n_roi, 1],
                                       map_names = [q|roi, phi], map_units, beam_center_x/y -> detector_1 ones,
                                       detector_distance = pixel_size = NaN (no scattering geometry)
        temporal_mean/scattering_2d  (1, ny, nx) mean image (NaN if unknown); scattering_1d (1, n_roi) its ROI
                                       means; scattering_1d_segments -> scattering_1d
        spatial_mean/intensity_vs_time (2, 0): no per-frame intensity in a results store
    /entry/instrument/detector_1/frame_time, count_time and /entry/start_time are read by the viewer as they are.

Without a ``roi_map`` the NXxpcs masks are left out and ``/xpcs/qmap`` gets a placeholder ``1 x n_roi`` map (pixel
i = ROI i, attribute ``placeholder``) so that the viewer still opens the file.  Quantities that an ECM image does
not have (beam energy, beam centre, detector distance) are written as NaN, never invented.  The viewer lists
only ``.hdf`` / ``.h5`` files in a folder: name the file so (the NeXus content does not depend on the suffix).

The file is written to a temporary file beside the target and moved into place when complete, so an interrupted
export leaves no partial file at the target.

Checked: ``nexusformat.nexus.validate.validate_application`` reports no error (one warning: the deprecated
``scan_number``); pyXpcsViewer 1.2.2's headless reader ``pyxpcsviewer.core.xpcs_file.XpcsFile`` loads the file and
returns the same g2 and lags (tests/test_nexus.py, when xpcs-viewer is installed), and its Qt GUI (offscreen
platform) listed an exported ``.hdf``, plotted the ROI g2 curves and the mean image.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import InputError, ParameterError, StoreError
from ..store.direct import new_file

#: the application definition written in /entry/definition
DEFINITION = "NXxpcs"
#: the pyXpcsViewer release whose reader the /xpcs layout was checked against
VIEWER_TARGET = "pyXpcsViewer (PyPI xpcs-viewer) 1.2.2, 'nexus' key table of core/file_io/aps_8idi.py"
#: keys of ``fit`` (each a (n_roi,) array); ``status`` (fit status codes) and ``chi2`` are optional extras
FIT_KEYS = ("tau", "tau_err", "beta", "beta_err", "contrast", "contrast_err", "baseline", "baseline_err")
FIT_EXTRA_KEYS = ("status", "chi2")
FIT_UNITS = {"tau": "s", "beta": "", "contrast": "", "baseline": ""}
#: metadata keys with a place in the NeXus tree (all metadata also goes to /entry/ecm_dask as attributes)
META_START_TIME = "start_time"
META_ENTRY_ID = "entry_identifier"
META_SCAN_NUMBER = "scan_number"
META_TITLE = "title"
META_COUNT_TIME = "count_time_s"
META_ENERGY = "incident_energy_keV"
META_AVERAGE = "roi_average"  # text: how the ROI g2 and its error were computed
ROI_NONE = -1  # roi_map value of a pixel in no ROI (``write_nxxpcs`` input; the file uses 0, NXxpcs' convention)
VIEWER_SUFFIXES = (".hdf", ".h5")


# ------------------------------------------------------------------------------------------- validation
def _as_float_array(value, name: str, shape: tuple[int, ...] | None = None, ndim: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be numeric, got {type(value).__name__}") from None
    if ndim is not None and arr.ndim != ndim:
        raise ParameterError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ParameterError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr


def _check_lags(lag_s, frame_time_s: float, n_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Lags in s (finite, > 0, strictly increasing) and in frames (int64 when every lag is whole frames)."""
    lag = _as_float_array(lag_s, "lag_s", shape=(n_lag,))
    if not np.all(np.isfinite(lag)):
        raise ParameterError("lag_s holds non-finite values")
    if n_lag and lag[0] <= 0:
        raise ParameterError(f"lag_s must be > 0 (got {lag[0]:g} s first): g2 at lag 0 carries shot noise and "
                             "NXxpcs defines g2 for t > 0; leave it out")
    if np.any(np.diff(lag) <= 0):
        raise ParameterError("lag_s must be strictly increasing")
    frames = lag / frame_time_s
    whole = np.rint(frames)
    if np.allclose(frames, whole, rtol=0, atol=1e-6 * np.maximum(1.0, whole)):
        return lag, whole.astype(np.int64)
    return lag, frames


def _check_roi_map(roi_map, n_roi: int) -> np.ndarray:
    arr = np.asarray(roi_map)
    if arr.ndim != 2 or arr.size == 0:
        raise ParameterError(f"roi_map must be a non-empty (ny, nx) array of ROI indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) or np.any(arr != np.rint(arr)):
            raise ParameterError(f"roi_map must hold integer ROI indices (-1 = no ROI), got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < ROI_NONE or hi >= n_roi:
        raise ParameterError(f"roi_map values must be ROI indices 0..{n_roi - 1} (rows of g2) or -1 for no ROI, "
                             f"got values in [{lo}, {hi}]")
    return arr


def _check_fit(fit: Mapping[str, Any] | None, n_roi: int) -> dict[str, np.ndarray] | None:
    if fit is None:
        return None
    if not isinstance(fit, Mapping):
        raise ParameterError(f"fit must be a dict of per-ROI arrays ({', '.join(FIT_KEYS)}), got "
                             f"{type(fit).__name__}")
    unknown = sorted(set(fit) - set(FIT_KEYS) - set(FIT_EXTRA_KEYS))
    if unknown:
        raise ParameterError(f"fit has unknown key(s) {unknown}; allowed: {', '.join(FIT_KEYS + FIT_EXTRA_KEYS)}")
    if "tau" not in fit:
        raise ParameterError("fit needs at least 'tau' (per-ROI relaxation time in s)")
    out = {}
    for key in FIT_KEYS + FIT_EXTRA_KEYS:
        if key in fit:
            out[key] = _as_float_array(fit[key], f"fit[{key!r}]", shape=(n_roi,))
        elif key in FIT_KEYS:
            out[key] = np.full(n_roi, np.nan)
    if "status" in out:
        st = out["status"]
        if not np.all(np.isfinite(st)) or np.any(st != np.rint(st)) or np.any(st < 0):
            raise ParameterError("fit['status'] must hold non-negative integer fit status codes")
        out["status"] = st.astype(np.int32)
    return out


def _first_known(*values):
    """The first value that says something (see :func:`_known`), else None."""
    return next((v for v in values if _known(v)), None)


def _iso_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _attr_value(value):
    """A metadata value as an HDF5 attribute: numbers and strings as they are, None as "null", the rest as JSON."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, float, np.integer, np.floating, str)):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def _known(value) -> bool:
    """A metadata value that says something (not None, NaN, '' or 'unknown')."""
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip() not in ("", S.UNKNOWN)
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


# ---------------------------------------------------------------------------------------- the writer
def _target(path, overwrite: bool) -> Path:
    out = Path(path)
    if out.exists() and not overwrite:
        raise StoreError(f"{out} already exists; pass overwrite=True (ecm-dask export --overwrite) to replace it")
    if out.exists() and not out.is_file():
        raise StoreError(f"{out} exists and is not a file (a folder?); choose another output path")
    if not out.parent.is_dir():
        raise StoreError(f"folder {out.parent} of the output {out.name} does not exist")
    return out


def write_nxxpcs(path, *, g2, g2_err, lag_s, frame_time_s, roi_names, roi_map=None, q=None, q_unit: str = "1/nm",
                 fit: Mapping[str, Any] | None = None, metadata: Mapping[str, Any] | None = None,
                 overwrite: bool = False, mask=None, mean_image=None, n_pixels=None) -> Path:
    """Write ROI g2 curves as a NeXus ``NXxpcs`` file that pyXpcsViewer also opens (layout: module docstring).

    Parameters
    ----------
    path : output file (conventionally ``.nxs``; pyXpcsViewer's folder list shows only ``.hdf``/``.h5`` names)
    g2, g2_err : (n_roi, n_lag) g2 of each ROI and its standard error (NaN = missing); written transposed,
        ``(n_lag, n_roi)``, the orientation of NXxpcs and of the viewer
    lag_s : (n_lag,) lags in s, > 0 and increasing (no lag 0)
    frame_time_s : time between frames in s; the lags in frames (``delay_difference``) are ``lag_s / frame_time_s``
    roi_names : n_roi names
    roi_map : optional (ny, nx) integer map of the image/detector pixels: the ROI index 0..n_roi-1 (row of ``g2``)
        of each pixel, **-1 for a pixel in no ROI**.  In the file it becomes NXxpcs' 1-based ``dynamic_roi_map``
        (0 = no ROI, k = ROI k = g2 column k-1).
    q : optional (n_roi,) q of each ROI (ring), in ``q_unit``
    fit : optional dict of (n_roi,) arrays ``tau`` (s), ``tau_err``, ``beta``, ``beta_err``, ``contrast``,
        ``contrast_err``, ``baseline``, ``baseline_err`` (missing ones NaN) and optionally ``status`` (fit status
        codes, :data:`ecm_dask.kernels.kww.FIT_STATUS`) and ``chi2`` (reduced)
    metadata : optional dict; known keys ``temperature_C``, ``material``, ``instrument``, ``pixel_size_nm``,
        ``description``, ``start_time`` (ISO 8601), ``entry_identifier``, ``title``, ``count_time_s``,
        ``incident_energy_keV``, ``roi_average`` (text: how the ROI g2 was averaged); every item is also stored as
        an attribute of ``/entry/ecm_dask``
    overwrite : replace an existing file (else :class:`~ecm_dask.errors.StoreError`)
    mask : optional (ny, nx) bool, the pixels that entered the averages (default: every pixel of a ROI)
    mean_image : optional (ny, nx) time-averaged intensity (the viewer's ``scattering_2d``)
    n_pixels : optional (n_roi,) pixels averaged per ROI (default: counted from ``roi_map`` and ``mask``)

    Returns
    -------
    Path of the file written.

    Raises
    ------
    ParameterError
        Inconsistent shapes or invalid values, naming the parameter.
    StoreError
        The file exists (without ``overwrite``) or its folder does not.
    """
    out = _target(path, overwrite)
    g2 = _as_float_array(g2, "g2", ndim=2)
    n_roi, n_lag = g2.shape
    if n_roi < 1 or n_lag < 1:
        raise ParameterError(f"g2 must be (n_roi, n_lag) with at least one ROI and one lag, got {g2.shape}")
    g2_err = _as_float_array(g2_err, "g2_err", shape=g2.shape)
    frame_time_s = S.check_frame_time(frame_time_s, "frame_time_s")
    lag, frames = _check_lags(lag_s, frame_time_s, n_lag)
    names = [str(n) for n in (roi_names if not isinstance(roi_names, str) else [roi_names])]
    if len(names) != n_roi:
        raise ParameterError(f"roi_names has {len(names)} name(s) for {n_roi} ROI(s) (rows of g2)")
    if q is not None:
        q = _as_float_array(q, "q", shape=(n_roi,))
        if not isinstance(q_unit, str) or not q_unit.strip():
            raise ParameterError(f"q_unit must be a unit string such as '1/nm', got {q_unit!r}")
    rmap = _check_roi_map(roi_map, n_roi) if roi_map is not None else None
    shape2d = rmap.shape if rmap is not None else None
    if mask is not None:
        if rmap is None:
            raise ParameterError("mask needs roi_map (it selects pixels of the ROI map)")
        mask = np.asarray(mask)
        if mask.shape != shape2d or mask.dtype != bool:
            raise ParameterError(f"mask must be a boolean {shape2d} array, got {mask.dtype} {mask.shape}")
    if mean_image is not None:
        if rmap is None:
            raise ParameterError("mean_image needs roi_map (the image grid)")
        mean_image = _as_float_array(mean_image, "mean_image", shape=shape2d)
    if n_pixels is not None:
        n_pixels = _as_float_array(n_pixels, "n_pixels", shape=(n_roi,))
        if np.any(n_pixels < 0) or np.any(n_pixels != np.rint(n_pixels)):
            raise ParameterError("n_pixels must hold non-negative whole numbers")
        n_pixels = n_pixels.astype(np.int64)
    elif rmap is not None:
        used = (rmap >= 0) if mask is None else (rmap >= 0) & mask
        n_pixels = np.bincount(rmap[used], minlength=n_roi).astype(np.int64)
    fit = _check_fit(fit, n_roi)
    meta = dict(metadata or {})

    spec = dict(g2=g2.T.copy(), g2_err=g2_err.T.copy(), lag=lag, frames=frames, frame_time=frame_time_s,
                names=names, q=q, q_unit=q_unit, rmap=rmap, mask=mask, mean_image=mean_image, n_pixels=n_pixels,
                fit=fit, meta=meta, out=out)
    with new_file(out, replace=overwrite, exists_hint="; pass overwrite=True (ecm-dask export --overwrite) to "
                                                      "replace it") as tmp:
        _write_nexus(tmp, spec)
        _write_viewer_layout(tmp, spec, out)
    return out


def _write_nexus(tmp: Path, spec: dict) -> None:
    """The NXxpcs tree, with nexusformat."""
    from nexusformat.nexus import (
        NXbeam,
        NXcollection,
        NXdata,
        NXdetector,
        NXentry,
        NXfield,
        NXinstrument,
        NXnote,
        NXprocess,
        NXroot,
        NXsample,
    )

    from .. import __version__

    meta = spec["meta"]
    n_lag, n_roi = spec["g2"].shape
    now = _iso_now()
    root = NXroot()
    root.attrs["default"] = "entry"
    entry = NXentry()
    root["entry"] = entry
    entry.attrs["default"] = "data"
    entry["definition"] = NXfield(DEFINITION)
    entry["entry_identifier"] = NXfield(str(meta.get(META_ENTRY_ID) or spec["out"].stem))
    # required by the validator although NXxpcs deprecates it for entry_identifier; no scan numbers in ECM
    scan = meta.get(META_SCAN_NUMBER)
    entry["scan_number"] = NXfield(int(scan) if _known(scan) else 0)
    if not _known(scan):
        entry["scan_number"].attrs["note"] = "no scan number recorded (0); deprecated NXxpcs field, see entry_identifier"
    if _known(meta.get(META_START_TIME)):
        entry["start_time"] = NXfield(str(meta[META_START_TIME]))
    else:
        entry["start_time"] = NXfield(now)
        entry["start_time"].attrs["note"] = "acquisition time not recorded: the time this file was written"
    title = meta.get(META_TITLE)
    if not _known(title):
        parts = ["ECM g2"] + [str(meta[k]) for k in (S.ATTR_MATERIAL,) if _known(meta.get(k))]
        if _known(meta.get(S.ATTR_TEMPERATURE)):
            parts.append(f"{float(meta[S.ATTR_TEMPERATURE]):g} degC")
        title = ", ".join(parts)
    entry["title"] = NXfield(str(title))

    # ---- data: g2 (n_lag, n_roi)
    average = str(meta.get(META_AVERAGE) or "as given to ecm_dask.interop.nexus.write_nxxpcs")
    data = NXdata()
    entry["data"] = data
    data["g2"] = NXfield(spec["g2"], units="", long_name="g2 (normalized intensity autocorrelation)",
                         storage_mode="one_array", roi_average=average)
    data["g2_derr"] = NXfield(spec["g2_err"], units="", long_name="standard error of g2", storage_mode="one_array")
    frames = spec["frames"]
    data["delay_difference"] = NXfield(frames, units="frames", storage_mode="one_array",
                                       long_name="lag in frames (delay_time / frame_time)")
    if not np.issubdtype(frames.dtype, np.integer):
        data["delay_difference"].attrs["note"] = "some lags are not whole frames: stored as float64"
    data["delay_time"] = NXfield(spec["lag"], units="s", long_name="lag time")
    data["roi_index"] = NXfield(np.arange(1, n_roi + 1, dtype=np.int32), long_name="ROI (value in dynamic_roi_map)")
    data["roi_name"] = NXfield(spec["names"], long_name="ROI name")
    if spec["q"] is not None:
        data["q"] = NXfield(spec["q"], units=spec["q_unit"], long_name="q of the ROI")
    if spec["n_pixels"] is not None:
        data["n_pixels"] = NXfield(spec["n_pixels"], long_name="pixels averaged into the ROI g2")
    data.attrs["signal"] = "g2"
    data.attrs["axes"] = ["delay_time", "roi_index"]
    data.attrs["delay_time_indices"] = 0
    data.attrs["delay_difference_indices"] = 0
    data.attrs["roi_index_indices"] = 1
    data.attrs["roi_name_indices"] = 1
    if spec["q"] is not None:
        data.attrs["q_indices"] = 1
    data.attrs["roi_average"] = average
    data.makelink(data["g2_derr"], name="g2_errors")  # the NXdata convention for uncertainties

    # ---- instrument
    inst = NXinstrument()
    entry["instrument"] = inst
    if _known(meta.get(S.ATTR_INSTRUMENT)):
        inst["name"] = NXfield(str(meta[S.ATTR_INSTRUMENT]))
    beam = NXbeam()
    inst["incident_beam"] = beam
    energy = float(meta[META_ENERGY]) if _known(meta.get(META_ENERGY)) else math.nan
    beam["incident_energy"] = NXfield(energy, units="keV")
    if math.isnan(energy):
        beam["incident_energy"].attrs["note"] = "unknown (not recorded with the image series)"
    det = NXdetector()
    inst["detector_1"] = det
    if _known(meta.get(S.ATTR_INSTRUMENT)):
        det["description"] = NXfield(str(meta[S.ATTR_INSTRUMENT]))
    det["frame_time"] = NXfield(spec["frame_time"], units="s", long_name="time between frame starts")
    count = float(meta[META_COUNT_TIME]) if _known(meta.get(META_COUNT_TIME)) else math.nan
    det["count_time"] = NXfield(count, units="s")
    if math.isnan(count):
        det["count_time"].attrs["note"] = "exposure time not recorded"
    for axis in ("x", "y"):
        det[f"beam_center_{axis}"] = NXfield(math.nan, units="pixel",
                                              note="not applicable: ECM images are real-space images")
    rmap = spec["rmap"]
    px = float(meta[S.ATTR_PIXEL_SIZE]) if _known(meta.get(S.ATTR_PIXEL_SIZE)) else None
    if rmap is not None:
        masks = NXnote()
        inst["masks"] = masks
        masks["dynamic_roi_map"] = NXfield((rmap + 1).astype(np.int32), units="au",
                                           long_name="ROI of each pixel: 0 = none, k = ROI k = g2 column k-1")
        masks.makelink(masks["dynamic_roi_map"], name="static_roi_map")
        used = (rmap >= 0) if spec["mask"] is None else (rmap >= 0) & spec["mask"]
        masks["mask"] = NXfield(used.astype(np.uint8), long_name="1 = pixel that entered the ROI averages")
        if spec["q"] is not None:
            masks["dynamic_q_list"] = NXfield(spec["q"], units=spec["q_unit"])
            masks.makelink(masks["dynamic_q_list"], name="static_q_list")
        roi_nxdata = NXdata()
        entry["roi_map"] = roi_nxdata
        roi_nxdata.makelink(masks["dynamic_roi_map"], name="dynamic_roi_map")
        ny, nx = rmap.shape
        unit, scale = ("nm", px) if px else ("pixel", 1.0)
        roi_nxdata["y"] = NXfield(np.arange(ny) * scale, units=unit)
        roi_nxdata["x"] = NXfield(np.arange(nx) * scale, units=unit)
        roi_nxdata.attrs["signal"] = "dynamic_roi_map"
        roi_nxdata.attrs["axes"] = ["y", "x"]

    # ---- sample
    sample = NXsample()
    entry["sample"] = sample
    if _known(meta.get(S.ATTR_MATERIAL)):
        sample["name"] = NXfield(str(meta[S.ATTR_MATERIAL]))
    if _known(meta.get(S.ATTR_TEMPERATURE)):
        sample["temperature"] = NXfield(float(meta[S.ATTR_TEMPERATURE]), units="degC")

    # ---- process (+ fits)
    proc = NXprocess()
    entry["process"] = proc
    proc["program"] = NXfield("ecm_dask")
    proc["version"] = NXfield(str(__version__))
    proc["date"] = NXfield(now)
    proc["sequence_index"] = NXfield(1)
    notes = NXnote()
    proc["notes"] = notes
    notes["type"] = NXfield("text/plain")
    notes["data"] = NXfield(f"ROI g2: {average}. Viewer layout: {VIEWER_TARGET}.")
    fit = spec["fit"]
    if fit is not None:
        kf = NXdata()
        proc["kww_fit"] = kf
        kf.attrs["model"] = "g2 = baseline + contrast * exp(-2 (t / tau)^beta)"
        for key in ("tau", "beta", "contrast", "baseline"):
            kf[key] = NXfield(fit[key], units=FIT_UNITS[key])
            kf[f"{key}_errors"] = NXfield(fit[f"{key}_err"], units=FIT_UNITS[key], long_name=f"standard error of {key}")
        if "status" in fit:
            from ..kernels.kww import FIT_STATUS

            kf["status"] = NXfield(fit["status"], long_name="fit status code",
                                   flag_values=np.array(list(FIT_STATUS), dtype=np.int32),
                                   flag_meanings=" ".join(v.replace(" ", "_") for v in FIT_STATUS.values()))
        if "chi2" in fit:
            kf["chi2_reduced"] = NXfield(fit["chi2"], units="")
        kf.makelink(data["roi_index"], name="roi_index")
        kf.attrs["signal"] = "tau"
        kf.attrs["axes"] = ["roi_index"]

    # ---- every metadata item
    coll = NXcollection()
    entry["ecm_dask"] = coll
    for key, value in meta.items():
        coll.attrs[str(key)] = _attr_value(value)
    coll.attrs["viewer_layout"] = VIEWER_TARGET
    root.save(str(tmp), mode="w")


def _link(f, path: str, target: str) -> None:
    """A hard link ``path`` -> ``target`` (NeXus convention: the original carries ``@target``)."""
    obj = f[target]
    f[path] = obj
    if "target" not in obj.attrs:
        obj.attrs["target"] = "/" + target.lstrip("/")


def _write_viewer_layout(tmp: Path, spec: dict, out: Path) -> None:
    """The /xpcs groups pyXpcsViewer reads (with h5py: plain groups, byte-string lists)."""
    import h5py

    n_lag, n_roi = spec["g2"].shape
    rmap = spec["rmap"]
    q = spec["q"]
    with h5py.File(tmp, "r+") as f:
        f.attrs["file_name"] = str(out.resolve())
        f.attrs["creator"] = "ecm_dask"
        mt = f.create_group("xpcs/multitau")
        _link(f, "xpcs/multitau/normalized_g2", "entry/data/g2")
        _link(f, "xpcs/multitau/normalized_g2_err", "entry/data/g2_derr")
        _link(f, "xpcs/multitau/delay_list", "entry/data/delay_difference")
        cfg = mt.create_group("config")
        cfg["stride_frame"] = np.int64(1)
        cfg["avg_frame"] = np.int64(1)

        qm = f.create_group("xpcs/qmap")
        if rmap is not None:
            for name in ("dynamic_roi_map", "static_roi_map", "mask"):
                _link(f, f"xpcs/qmap/{name}", f"entry/instrument/masks/{name}")
            labels = rmap + 1
            used = f["entry/instrument/masks/mask"][()].astype(bool)
        else:  # placeholder so that the viewer opens the file: pixel i of a 1 x n_roi strip is ROI i
            labels = np.arange(1, n_roi + 1, dtype=np.int32)[None, :]
            used = np.ones_like(labels, dtype=bool)
            qm["dynamic_roi_map"] = labels
            qm["dynamic_roi_map"].attrs["placeholder"] = "no pixel map was given: pixel i stands for ROI i"
            qm["static_roi_map"] = qm["dynamic_roi_map"]
            qm["mask"] = used.astype(np.uint8)
        if q is not None:
            src = "entry/instrument/masks/dynamic_q_list" if rmap is not None else "entry/data/q"
            _link(f, "xpcs/qmap/dynamic_v_list_dim0", src)
            names, units = [b"q", b"phi"], [spec["q_unit"].encode(), b"deg"]
        else:
            _link(f, "xpcs/qmap/dynamic_v_list_dim0", "entry/data/roi_index")
            names, units = [b"roi", b"phi"], [b"index", b"deg"]
        qm["static_v_list_dim0"] = qm["dynamic_v_list_dim0"]
        qm["dynamic_v_list_dim1"] = np.zeros(1)
        qm["dynamic_v_list_dim1"].attrs["note"] = "one azimuthal bin over all angles"
        qm["static_v_list_dim1"] = qm["dynamic_v_list_dim1"]
        qm["dynamic_index_mapping"] = np.arange(n_roi, dtype=np.int64)
        qm["static_index_mapping"] = qm["dynamic_index_mapping"]
        qm["dynamic_num_pts"] = np.array([n_roi, 1], dtype=np.int64)
        qm["static_num_pts"] = qm["dynamic_num_pts"]
        qm["map_names"] = np.array(names)
        qm["map_units"] = np.array(units)
        _link(f, "xpcs/qmap/beam_center_x", "entry/instrument/detector_1/beam_center_x")
        _link(f, "xpcs/qmap/beam_center_y", "entry/instrument/detector_1/beam_center_y")
        for name in ("detector_distance", "pixel_size"):
            qm[name] = np.float64(np.nan)
            qm[name].attrs["note"] = "not applicable: no scattering geometry for real-space ECM images"
        digest = hashlib.sha256()
        for arr in (labels.astype(np.int64), used.astype(np.uint8), qm["dynamic_v_list_dim0"][()],
                    np.array(names), np.array(units)):
            digest.update(np.ascontiguousarray(arr).tobytes())
        qm.attrs["hash"] = digest.hexdigest()  # the viewer caches q-maps by this key

        tm = f.create_group("xpcs/temporal_mean")
        img = spec["mean_image"] if spec["mean_image"] is not None else np.full(labels.shape, np.nan)
        tm["scattering_2d"] = img[None, :, :]
        roi_mean = np.full((1, n_roi), np.nan)
        if spec["mean_image"] is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for i in range(n_roi):
                    sel = (labels == i + 1) & used
                    roi_mean[0, i] = np.nanmean(img[sel]) if sel.any() else np.nan
        tm["scattering_1d"] = roi_mean
        tm["scattering_1d"].attrs["long_name"] = "mean intensity of each ROI (over the pixels in mask)"
        tm["scattering_1d_segments"] = tm["scattering_1d"]
        sm = f.create_group("xpcs/spatial_mean")
        sm["intensity_vs_time"] = np.zeros((2, 0))
        sm["intensity_vs_time"].attrs["note"] = "not available: ecm_dask results keep no per-frame intensity"


# ------------------------------------------------------------------------------- from a results store
def _series_attrs(path) -> dict[str, Any]:
    """Attributes of the series store a run recorded (empty if it cannot be read)."""
    if not path:
        return {}
    try:
        import zarr

        return dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # noqa: BLE001 - a moved or deleted series only costs the optional metadata
        return {}


def _roi_reductions(g2, masks: Sequence[np.ndarray]):
    """Mean, sample standard deviation and count over ``(y, x)`` of ``g2 (y, x, lag)`` inside each mask, in one
    pass over the stored chunks (dask); each region is read only within its bounding box."""
    import dask
    import xarray as xr

    g2 = g2.transpose(S.Y, S.X, S.LAG)
    if g2.chunks is None:
        pref = g2.encoding.get("preferred_chunks") or {}
        g2 = g2.chunk({d: pref.get(d, -1) for d in g2.dims})
    g2 = g2.astype(np.float64)
    lazy = []
    for m in masks:
        rows, cols = np.nonzero(m)
        if rows.size == 0:
            lazy.append(None)
            continue
        ys, xs = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
        sel = g2.isel({S.Y: ys, S.X: xs}).where(xr.DataArray(m[ys, xs], dims=(S.Y, S.X)))
        lazy.append((sel.sum((S.Y, S.X)).data, sel.count((S.Y, S.X)).data,
                     sel.std((S.Y, S.X), ddof=1).data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # std of a single pixel: NaN, as it should be
        done = dask.compute(*[x for x in lazy if x is not None])
    n_lag = g2.sizes[S.LAG]
    means, sems, counts = [], [], []
    it = iter(done)
    for item in lazy:
        if item is None:
            means.append(np.full(n_lag, np.nan))
            sems.append(np.full(n_lag, np.nan))
            counts.append(np.zeros(n_lag, dtype=np.int64))
            continue
        total, count, std = next(it)
        count = np.asarray(count, dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            sem = np.where(count > 1, std / np.sqrt(np.maximum(count, 1)), np.nan)
        means.append(mean)
        sems.append(sem)
        counts.append(count)
    return np.array(means), np.array(sems), np.array(counts)


def _fit_rois(g2: np.ndarray, g2_err: np.ndarray, lag: np.ndarray, pairs, n_pixels: np.ndarray,
              bounds: Mapping[str, Sequence[float]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """KWW fit of each ROI curve (lags > 0 only): absolute errors (the standard error of the mean) where the ROI
    has at least two pixels, else relative weights from the frame pairs (or uniform)."""
    from ..kernels.kww import fit_kww

    keep = lag > 0  # lag 0 (shot noise) is never fitted; the g2 stage keeps it apart already
    out = {k: np.full(len(g2), np.nan) for k in (*FIT_KEYS, "chi2")}
    out["status"] = np.zeros(len(g2))
    weights = []
    b = {k: (float(v[0]), float(v[1])) for k, v in bounds.items()}
    for i in range(len(g2)):
        sig = g2_err[i, keep]
        use_sigma = n_pixels[i] >= 2 and np.count_nonzero(np.isfinite(sig) & (sig > 0)) > 0
        kw = {"sigma": sig} if use_sigma else {"pairs": None if pairs is None else pairs[keep]}
        weights.append("sigma = standard error of the ROI mean" if use_sigma
                       else ("relative, frame pairs" if pairs is not None else "uniform"))
        r = fit_kww(g2[i, keep], lag[keep], bounds=b, **kw)
        for j, key in enumerate(("baseline", "contrast", "tau", "beta")):
            out[key][i] = r.params[0, j]
            out[f"{key}_err"][i] = r.errors[0, j]
        out["chi2"][i] = r.chi2_red[0]
        out["status"][i] = r.status[0]
    return out, weights


def export_results(results_path, out_path, *, rois: str = "regions", overwrite: bool = False) -> Path:
    """Export an image-mode results store as an ``NXxpcs`` file (also opened by pyXpcsViewer).

    One ROI per sample region of ``/regions/region`` (the names from its flag attributes, vacuum and excluded
    pixels left out; e.g. bulk, surface, crystal).  The ROI g2 is the mean of the per-pixel g2 of ``/g2`` over the
    region's pixels whose root ``status`` is ok, and its error the standard error of that mean (sample standard
    deviation / sqrt(pixels), per lag); a region without an ok pixel gets NaN curves, ``n_pixels`` 0 and a fit
    status ``bad input``.  Each ROI curve is fitted with the KWW model (:func:`ecm_dask.kernels.kww.fit_kww`, the
    run's tau/beta bounds, lag 0 never included).  Metadata: frame time, pixel size and temperature from the store,
    material, instrument and description from its series store when that can still be read.

    Parameters
    ----------
    results_path : a results store (``ecm-dask run ... -o RESULTS.zarr``)
    out_path : the file to write (``.nxs``, or ``.hdf`` to have pyXpcsViewer list it)
    rois : ``"regions"`` (the only kind for now)
    overwrite : replace an existing file

    Returns
    -------
    Path of the file written.
    """
    from ..pipeline.report import open_results
    from ..store.info import store_kind

    kind = store_kind(results_path)
    if kind == "diffraction":
        return export_rings(results_path, out_path, overwrite=overwrite)
    if kind == "scan":
        raise InputError(f"{results_path}: scan results hold a g2 per probe position and ring; NXxpcs export of "
                         "scans is not supported (export a diffraction or image-mode run)")
    if rois != "regions":
        raise ParameterError(f"rois={rois!r}: only 'regions' (one ROI per sample region) is supported")
    out = _target(out_path, overwrite)  # fail before any work
    tree = open_results(results_path)
    root = tree.to_dataset()
    for group in (S.G2_GROUP, S.REGIONS_GROUP):
        if group not in tree.children:
            raise InputError(f"{results_path}: no group /{group}; export needs an image-mode results store")
    g2ds = tree[S.G2_GROUP].to_dataset()
    if S.G2 not in g2ds or S.LAG not in g2ds[S.G2].dims:
        raise InputError(f"{results_path}: /{S.G2_GROUP} has no {S.G2!r} ({S.Y}, {S.X}, {S.LAG}) variable")
    if S.REGION not in tree[S.REGIONS_GROUP].to_dataset():
        raise InputError(f"{results_path}: /{S.REGIONS_GROUP} has no {S.REGION!r} map")
    region_da = tree[S.REGIONS_GROUP][S.REGION]
    flags = S.flag_names(region_da.attrs)
    if not flags:
        raise InputError(f"{results_path}: /{S.REGIONS_GROUP}/{S.REGION} lacks flag_values/flag_meanings, so its "
                         "region names are unknown")
    codes = [c for c in sorted(flags) if c not in (S.REGION_EXCLUDED, S.REGION_VACUUM)]
    if not codes:
        raise InputError(f"{results_path}: the region map names no sample region (only {sorted(flags.values())})")
    region = np.asarray(region_da.transpose(S.Y, S.X).values)
    status = np.asarray(root[S.STATUS].transpose(S.Y, S.X).values)
    if region.shape != status.shape or region.shape != (g2ds.sizes[S.Y], g2ds.sizes[S.X]):
        raise InputError(f"{results_path}: region map {region.shape}, status map {status.shape} and g2 "
                         f"({g2ds.sizes[S.Y]}, {g2ds.sizes[S.X]}) are not on one grid")
    ok = status == S.STATUS_OK
    masks = [(region == c) & ok for c in codes]
    g2, g2_err, counts = _roi_reductions(g2ds[S.G2], masks)
    n_pixels = np.array([int(m.sum()) for m in masks], dtype=np.int64)

    lag = np.asarray(g2ds[S.LAG].values, dtype=np.float64)
    frame_time = float(g2ds.attrs.get(S.ATTR_FRAME_TIME, root.attrs.get(S.ATTR_FRAME_TIME, math.nan)))
    frame_time = S.check_frame_time(frame_time, f"{results_path}: {S.ATTR_FRAME_TIME}")
    if "lag_frames" in g2ds.coords:
        lf = np.asarray(g2ds["lag_frames"].values, dtype=np.float64)
        if not np.allclose(lf * frame_time, lag, rtol=1e-6):
            raise InputError(f"{results_path}: /{S.G2_GROUP} lag (s) and lag_frames disagree with frame time "
                             f"{frame_time:g} s")
    keep = lag > 0
    if not keep.all():  # never export lag 0 (shot noise); the g2 stage stores it apart as g2_lag0
        g2, g2_err, counts, lag = g2[:, keep], g2_err[:, keep], counts[:, keep], lag[keep]
    pairs = np.asarray(g2ds[S.G2_PAIRS].values, dtype=np.float64)[keep] if S.G2_PAIRS in g2ds else None
    n_frames = int(g2ds.attrs.get("n_frames", round(2 * lag[-1] / frame_time)))
    bounds = root.attrs.get("bounds") or {"tau": (frame_time, 10.0 * n_frames * frame_time), "beta": (0.1, 2.5)}
    fit, weights = _fit_rois(g2, g2_err, lag, pairs, n_pixels, bounds)

    roi_map = np.full(region.shape, ROI_NONE, dtype=np.int64)
    for i, c in enumerate(codes):
        roi_map[region == c] = i
    mean_image = None
    if S.MEAN_INTENSITY in g2ds:
        mean_image = np.asarray(g2ds[S.MEAN_INTENSITY].transpose(S.Y, S.X).values, dtype=np.float64)

    series = _series_attrs(root.attrs.get("series") or g2ds.attrs.get("series"))
    prov = root.attrs.get(S.ATTR_PROVENANCE) or {}
    meta: dict[str, Any] = {
        S.ATTR_FRAME_TIME: frame_time,
        S.ATTR_PIXEL_SIZE: _first_known(root.attrs.get(S.ATTR_PIXEL_SIZE), series.get(S.ATTR_PIXEL_SIZE)),
        S.ATTR_TEMPERATURE: _first_known(root.attrs.get(S.ATTR_TEMPERATURE), series.get(S.ATTR_TEMPERATURE)),
        S.ATTR_MATERIAL: series.get(S.ATTR_MATERIAL, S.UNKNOWN),
        S.ATTR_INSTRUMENT: series.get(S.ATTR_INSTRUMENT, S.UNKNOWN),
        S.ATTR_DESCRIPTION: series.get(S.ATTR_DESCRIPTION, ""),
        META_ENTRY_ID: str(root.attrs.get(S.ATTR_RUN_FINGERPRINT) or Path(str(results_path)).name),
        META_AVERAGE: ("mean of the per-pixel g2 (/g2/g2 of the results store) over the region's pixels whose "
                       "status is ok; g2_derr = standard error of that mean (sample std, ddof=1, / sqrt(n)) per lag"),
        "results_store": str(Path(results_path).resolve()),
        "series_store": str(root.attrs.get("series") or ""),
        "series_attrs_read": bool(series),
        "results_created": prov.get("created") if isinstance(prov, Mapping) else None,
        "n_frames": n_frames,
        "roi_kind": "region",
        "roi_region_codes": [int(c) for c in codes],
        "roi_pixels_per_lag_min": [int(c.min()) if c.size else 0 for c in counts],
        "fit_weights": weights,
        "fit_bounds": {k: [float(v[0]), float(v[1])] for k, v in bounds.items()},
        "g2_estimator": g2ds.attrs.get("estimator"),
        "g2_normalization": g2ds.attrs.get("normalization"),
    }
    return write_nxxpcs(out, g2=g2, g2_err=g2_err, lag_s=lag, frame_time_s=frame_time,
                        roi_names=[flags[c] for c in codes], roi_map=roi_map, fit=fit, metadata=meta,
                        overwrite=overwrite, mask=ok & (roi_map >= 0), mean_image=mean_image, n_pixels=n_pixels)


def export_rings(results_path, out_path, *, overwrite: bool = False) -> Path:
    """Export diffraction-mode results (``run --mode diffraction``) as NXxpcs: one ROI per q ring, its ring-averaged
    g2 and standard error (lag 0 left out), ``q`` per ring (the mean q of its pixels, nm^-1), the ring map of the
    camera as the dynamic ROI map, the usable pixels as the mask, the mean pattern, and the ring fits (tau, beta,
    contrast, baseline with their errors, status, reduced chi-square) as computed by the run."""
    from ..pipeline.diffraction import open_diffraction

    out = _target(out_path, overwrite)
    root, cam = open_diffraction(results_path)
    lag = np.asarray(root[S.LAG].values, dtype=np.float64)
    keep = lag > 0
    q = np.asarray(root[S.Q_MEAN].values, dtype=np.float64)
    fit = {name: np.asarray(root[name].values, dtype=np.float64)
           for name in ("tau", "tau_err", "beta", "beta_err", "contrast", "contrast_err", "baseline", "baseline_err")}
    fit["status"] = np.asarray(root[S.STATUS].values)
    fit["chi2"] = np.asarray(root["chi2"].values, dtype=np.float64)
    a = root.attrs
    meta = {"temperature_C": a.get(S.ATTR_TEMPERATURE), "material": a.get(S.ATTR_MATERIAL),
            "description": f"ecm_dask diffraction mode, beam centre {a.get(S.ATTR_BEAM_CENTRE)} px "
                           f"({a.get('beam_centre_from')}), {a.get(S.ATTR_K_CALIBRATION)} nm^-1 per pixel",
            "roi_average": str(a.get("ring_average", "plain mean of the per-pixel g2 of the ring's usable pixels")),
            "title": f"ecm_dask diffraction results {Path(results_path).name}"}
    return write_nxxpcs(out, g2=np.asarray(root[S.G2].values)[:, keep], g2_err=np.asarray(root[S.G2_ERR].values)[:, keep],
                        lag_s=lag[keep], frame_time_s=float(a[S.ATTR_FRAME_TIME]),
                        roi_names=[f"q={v:.3f}" for v in q], roi_map=np.asarray(cam["ring"].values), q=q,
                        q_unit="1/nm", fit=fit, metadata={k: v for k, v in meta.items() if v is not None},
                        overwrite=overwrite, mask=np.asarray(cam["usable"].values, dtype=bool),
                        mean_image=np.asarray(cam["mean_pattern"].values, dtype=np.float64),
                        n_pixels=np.asarray(root[S.N_PIXELS].values))


def summary_lines(path) -> list[str]:
    """What an exported file holds, as lines for a terminal: ROIs and lags, then per ROI its pixels and fit."""
    import h5py

    from ..kernels.kww import FIT_STATUS

    path = Path(path)
    with h5py.File(path, "r") as f:
        data = f["entry/data"]
        n_lag, n_roi = data["g2"].shape
        lag = data["delay_time"][()]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in data["roi_name"][()]]
        n_pix = data["n_pixels"][()] if "n_pixels" in data else None
        kf = f.get("entry/process/kww_fit")
        lines = [f"{path}: NXxpcs, {n_roi} ROI(s) x {n_lag} lag(s) ({lag[0]:g} s .. {lag[-1]:g} s); "
                 f"pyXpcsViewer keys under /xpcs"]
        for i, name in enumerate(names):
            text = f"  {name}: " + (f"{int(n_pix[i])} pixel(s) averaged" if n_pix is not None else "")
            if n_pix is not None and n_pix[i] == 0:
                text += ", no pixel with status ok: g2 is NaN"
            elif kf is not None:
                st = int(kf["status"][i]) if "status" in kf else None
                text += (f", tau = {kf['tau'][i]:.4g} ± {kf['tau_errors'][i]:.2g} s, beta = {kf['beta'][i]:.3g}"
                         + (f" (fit {FIT_STATUS.get(st, st)})" if st is not None else ""))
            lines.append(text)
    if path.suffix.lower() not in VIEWER_SUFFIXES:
        lines.append(f"  note: pyXpcsViewer lists only {' / '.join(VIEWER_SUFFIXES)} files in a folder; copy or "
                     f"name it {path.stem}.hdf to open it there")
    return lines
