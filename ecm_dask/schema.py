"""The ecm_dask data model: the one place where names of dims, variables, attributes and units live.

Every other module imports names from here instead of spelling strings, so a store written by one
version can be checked by :func:`validate_series` and read by the next.

Series store (``series.zarr``)
------------------------------
root dataset
    ``intensity (time, y, x)``   detector counts, the input dtype kept (integers stay integers)
    coords ``time`` (s, from frame 0), ``y``, ``x`` (nm, pixel centres from the first pixel)
    attrs  see :data:`SERIES_REQUIRED_ATTRS` and :data:`SERIES_OPTIONAL_ATTRS`
group ``truth`` (synthetic series only)
    ground-truth maps on the sample grid and the true drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------------------------- dims
TIME = "time"
Y = "y"
X = "x"
LAG = "lag"
PARAM = "param"
KY = "ky"
KX = "kx"
Q = "q"
TEMPERATURE = "temperature"
AXIS = "axis"  # (y, x) component of a shift vector
SECTOR = "sector"  # angular sector of a q ring (angle modulo pi: Friedel pairs share a sector)
SERIES_DIMS = (TIME, Y, X)

# ---------------------------------------------------------------------------------------- variables
INTENSITY = "intensity"
SHIFT = "shift"  # drift, (time, axis) in pixels
SHIFT_NM = "shift_nm"  # drift, (time, axis) in nm
OUTLIER = "outlier"  # drift: frame replaced by interpolation

# results store (results.zarr, an xarray DataTree): maps at the root, groups /g2 and /drift
G2_GROUP = "g2"
DRIFT_GROUP = "drift"
G2 = "g2"  # (y, x, lag)
G2_ERR = "g2_err"  # (y, x, lag) standard error of g2, when a stage provides it
G2_PAIRS = "pairs"  # (lag,) frame pairs per lag point
MEAN_INTENSITY = "mean_intensity"  # (y, x) counts
STATUS = "status"  # fit status codes at the root (kernels.kww.FIT_*), pixel status in /g2
QUALITY = "quality"  # reliability bit flags of the fit
TAU = "tau"
BETA = "beta"
CONTRAST = "contrast"
BASELINE = "baseline"
ATTR_RUN_CONFIG = "run_config"
#: wall seconds of each stage of the run that wrote a results store (None: the stage's checkpoint was reused)
ATTR_STAGE_SECONDS = "stage_seconds"
ATTR_REFERENCE_ROI_PX = "reference_roi_px"

# diffraction (STEM) mode and scattering profiles (G2, G2_ERR above: for rings, G2_ERR is the pixel scatter)
G2_SECTOR = "g2_sector"  # ring g2 averaged over each angular sector (for jackknife errors)
N_PIXELS = "n_pixels"  # detector pixels behind a ring average
INTENSITY_ERR = "intensity_err"
Q_LO, Q_HI, Q_MEAN = "q_lo", "q_hi", "q_mean"  # ring edges and pixel-mean q of a ring

# truth group of a synthetic series
TRUTH_GROUP = "truth"
TRUTH_TAU = "tau"
TRUTH_BETA = "beta"
TRUTH_CONTRAST = "contrast"
TRUTH_MEAN = "mean_counts"
TRUTH_REGION = "region"
TRUTH_SURFACE_DISTANCE = "surface_distance"
TRUTH_SHIFT = SHIFT

# region codes in the truth ``region`` map
REGION_VACUUM = 0
REGION_BULK = 1
REGION_SURFACE = 2
REGION_CRYSTAL = 3
REGION_NAMES = {REGION_VACUUM: "vacuum", REGION_BULK: "bulk", REGION_SURFACE: "surface", REGION_CRYSTAL: "crystal"}

# fit maps of the two-term KWW model (ecm_dask.ops.fit.fit_kww(model="kww2"))
MODEL_KWW = "kww"
MODEL_KWW2 = "kww2"
FIT_BASELINE = "baseline"
FIT_CONTRAST1 = "contrast1"
FIT_TAU1 = "tau1"
FIT_BETA1 = "beta1"
FIT_CONTRAST2 = "contrast2"
FIT_TAU2 = "tau2"
FIT_BETA2 = "beta2"
FIT_F_STAT = "f_statistic"  # F statistic of two KWW terms against one
FIT_F_PVALUE = "f_pvalue"  # its p-value
FIT_SUPPORTED = "second_supported"  # bool: the second component is supported

# ------------------------------------------------------------------ result store (results.zarr, DESIGN §4)
#: groups of a results DataTree (the root holds the maps)
FIT_GROUP = "fit"  # the raw fit of every pixel, whatever its status (experts)
ARTEFACTS_GROUP = "artefacts"  # per-pixel artefact screen (drift-swept edges, static pixels) and its diagnostics
REGIONS_GROUP = "regions"  # region (y, x), surface_distance
DISTRIBUTIONS_GROUP = "distributions"  # per-region statistics of log10 tau and beta, surface vs bulk
RESULT_GROUPS = (G2_GROUP, FIT_GROUP, ARTEFACTS_GROUP, REGIONS_GROUP, DISTRIBUTIONS_GROUP, DRIFT_GROUP)
#: groups every results store has (/drift only when the run estimated drift)
RESULT_REQUIRED_GROUPS = (G2_GROUP, FIT_GROUP, ARTEFACTS_GROUP, REGIONS_GROUP, DISTRIBUTIONS_GROUP)
TAU_ERR = "tau_err"
BETA_ERR = "beta_err"
CONTRAST_ERR = "contrast_err"
BASELINE_ERR = "baseline_err"
CHI2 = "chi2"
N_POOLED = "n_pooled"  # (y, x) g2 curves averaged into a pixel's fitted curve
TAU_MODEL_FREE = "tau_model_free"
COVARIANCE = "covariance"
#: root maps: a value only where ``status`` is ok (NaN elsewhere); the raw fit of every pixel is in /fit
ROOT_VALUE_MAPS = (TAU, BETA, CONTRAST, BASELINE, TAU_ERR, BETA_ERR, CONTRAST_ERR, BASELINE_ERR, CHI2)
ROOT_MAPS = (*ROOT_VALUE_MAPS, STATUS, QUALITY)
ARTEFACT = "artefact"  # (y, x) artefact code in /artefacts
ATTR_RUN_FINGERPRINT = "run_fingerprint"
ATTR_FLAG_VALUES = "flag_values"
ATTR_FLAG_MEANINGS = "flag_meanings"
ATTR_FLAG_MASKS = "flag_masks"

# pixel status of the result maps (root ``status``).  0-6 are the fit's own codes (ecm_dask.kernels.kww.FIT_*,
# the same numbers); the screen codes say why a pixel that may well fit is not reported as dynamics.
STATUS_OK = 0
STATUS_NOT_CONVERGED = 1
STATUS_AT_BOUND = 2
STATUS_NO_DECAY = 3
STATUS_TOO_FAST = 4
STATUS_TOO_FEW_POINTS = 5
STATUS_BAD_INPUT = 6  # the g2 of the pixel is unusable: dead, saturated, dark, not in view (see /g2 status)
STATUS_DRIFT_EDGE = 8  # intensity changes explained by the drift (an edge swept in and out of the pixel)
STATUS_STATIC = 9  # no dynamic contrast (static sample, e.g. a crystal, or fluctuation explained by registration)
STATUS_VACUUM = 10  # outside the sample (region vacuum)
RESULT_STATUS = {
    STATUS_OK: "ok",
    STATUS_NOT_CONVERGED: "not converged",
    STATUS_AT_BOUND: "parameter at bound",
    STATUS_NO_DECAY: "no decay in lag window",
    STATUS_TOO_FAST: "decay faster than first lag",
    STATUS_TOO_FEW_POINTS: "too few points",
    STATUS_BAD_INPUT: "bad input",
    STATUS_DRIFT_EDGE: "drift edge",
    STATUS_STATIC: "static",
    STATUS_VACUUM: "vacuum",
}


def flag_attrs(codes: Mapping[int, str], long_name: str) -> dict[str, Any]:
    """CF attributes of a code map: ``flag_values``, ``flag_meanings`` (words joined by ``_``), ``long_name``."""
    return {ATTR_LONG_NAME: long_name, ATTR_FLAG_VALUES: [int(c) for c in codes],
            ATTR_FLAG_MEANINGS: " ".join(str(v).replace(" ", "_") for v in codes.values())}


def flag_names(attrs: Mapping[str, Any], values_key: str = ATTR_FLAG_VALUES) -> dict[int, str]:
    """The inverse of :func:`flag_attrs`: code -> words from a code map's CF attributes (``values_key``
    ``flag_masks`` for bit flags); empty if the attributes are missing or do not pair up."""
    vals = attrs.get(values_key)
    meanings = str(attrs.get(ATTR_FLAG_MEANINGS, "")).split()
    if vals is not None and len(vals) == len(meanings):
        return {int(v): m.replace("_", " ") for v, m in zip(vals, meanings)}
    return {}


# ------------------------------------------------------------------------- analysis (ecm_dask.analysis)
REGION_EXCLUDED = -1  # pixels outside a user mask, or not in view for the whole series, in a classified region map
#: the codes of a classified region map (``/regions`` of a result)
REGION_FLAGS = {REGION_EXCLUDED: "excluded", **REGION_NAMES}
REGION = "region"  # dim of per-region statistics (labels: REGION_NAMES values)
STATISTIC = "statistic"  # dim: median, iqr, std, ...
ESTIMATE = "estimate"  # dim: value, ci_low, ci_high
QUANTITY = "quantity"  # dim of region comparisons
LOG10_TAU = "log10_tau"
LOG10_TAU_BIN = "log10_tau_bin"
BETA_BIN = "beta_bin"
SURFACE_DISTANCE = TRUTH_SURFACE_DISTANCE
RADIUS = "r"  # dim of ring-averaged spatial correlations, nm

# -------------------------------------------------------------------------------------------- units
UNITS = {
    TIME: "s",
    Y: "nm",
    X: "nm",
    LAG: "s",
    INTENSITY: "counts",
    SHIFT: "pixel",
    TRUTH_TAU: "s",
    TRUTH_BETA: "1",
    TRUTH_CONTRAST: "1",
    TRUTH_MEAN: "counts",
    TRUTH_SURFACE_DISTANCE: "nm",
    TEMPERATURE: "degC",
    TAU_ERR: "s",
    TAU_MODEL_FREE: "s",
    BETA_ERR: "1",
    CONTRAST_ERR: "1",
    BASELINE: "1",
    BASELINE_ERR: "1",
    CHI2: "1",
    RADIUS: "nm",
    KY: "nm^-1",
    KX: "nm^-1",
    Q: "nm^-1",
    Q_LO: "nm^-1",
    Q_HI: "nm^-1",
    Q_MEAN: "nm^-1",
}

# -------------------------------------------------------------------------------------- attributes
ATTR_FRAME_TIME = "frame_time_s"
ATTR_PIXEL_SIZE = "pixel_size_nm"
ATTR_TEMPERATURE = "temperature_C"
ATTR_MATERIAL = "material"
ATTR_INSTRUMENT = "instrument"
ATTR_SOURCE = "source"  # list of input file paths (or "synthetic")
ATTR_PROVENANCE = "provenance"  # dict: package versions, created time, command, input fingerprint
ATTR_SCHEMA_VERSION = "ecm_dask_schema_version"
ATTR_COMPLETE = "ecm_dask_complete"  # True only once every shard is written
ATTR_DESCRIPTION = "description"
ATTR_UNITS = "units"
ATTR_LONG_NAME = "long_name"
ATTR_K_CALIBRATION = "k_calibration_nm-1_per_px"  # reciprocal-space pixel size of a diffraction camera
ATTR_BEAM_CENTRE = "beam_centre_px"  # (row, column) of the undiffracted beam on the camera, in pixels
#: camera counts per electron (the gain): with it the report gives the dose in electrons
ATTR_COUNTS_PER_ELECTRON = "counts_per_electron"
#: what the frames of a series are: "image" (real space, the default when absent) or "diffraction" (camera in
#: reciprocal space: ``k_calibration_nm-1_per_px`` instead of ``pixel_size_nm``, y/x coordinates in nm^-1)
ATTR_SERIES_MODE = "series_mode"
MODE_IMAGE = "image"
MODE_DIFFRACTION = "diffraction"
SERIES_MODES = (MODE_IMAGE, MODE_DIFFRACTION)

UNKNOWN = "unknown"


@dataclass(frozen=True)
class AttrSpec:
    """What a series attribute must hold."""

    name: str
    kind: type | tuple[type, ...]
    description: str
    positive: bool = False
    finite: bool = False


SERIES_REQUIRED_ATTRS: tuple[AttrSpec, ...] = (
    AttrSpec(ATTR_FRAME_TIME, (int, float), "time between frames in seconds", positive=True, finite=True),
    AttrSpec(ATTR_PIXEL_SIZE, (int, float), "pixel size in nanometres", positive=True, finite=True),
    AttrSpec(ATTR_TEMPERATURE, (int, float, type(None)), "sample temperature in degrees Celsius (null if unknown)"),
    AttrSpec(ATTR_MATERIAL, str, "sample material, e.g. Pt57.5Cu14.7Ni5.3P22.5 ('unknown' allowed)"),
    AttrSpec(ATTR_INSTRUMENT, str, "instrument or source, e.g. 'FEI Titan, tilted dark field' ('unknown' allowed)"),
    AttrSpec(ATTR_SOURCE, (str, list), "input file path(s), or 'synthetic'"),
    AttrSpec(ATTR_PROVENANCE, dict, "how the store was made: package versions, time, command, input fingerprint"),
    AttrSpec(ATTR_SCHEMA_VERSION, int, "version of this data model"),
)

SERIES_OPTIONAL_ATTRS: tuple[AttrSpec, ...] = (
    AttrSpec(ATTR_DESCRIPTION, str, "free text"),
    AttrSpec(ATTR_COMPLETE, bool, "True once every shard of the store is written"),
    AttrSpec(ATTR_COUNTS_PER_ELECTRON, (int, float), "camera counts per detected electron (gain)", positive=True,
             finite=True),
)

# Plausibility bounds: values outside are almost certainly a unit mistake.
FRAME_TIME_RANGE_S = (1e-6, 3600.0)
PIXEL_SIZE_RANGE_NM = (1e-4, 1e4)
TEMPERATURE_RANGE_C = (-273.15, 3000.0)


def _is_number(value: Any) -> bool:
    """True for ints and floats (NaN included), False for bools, strings and everything else."""
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def check_frame_time(value: Any, where: str = "frame time") -> float:
    """Return ``value`` as a float number of seconds, or raise :class:`MetadataError` saying why not."""
    from .errors import MetadataError

    return _check_range(value, where, "s", FRAME_TIME_RANGE_S, "--frame-time", MetadataError)


def check_pixel_size(value: Any, where: str = "pixel size") -> float:
    """Return ``value`` as a float number of nanometres, or raise :class:`MetadataError` saying why not."""
    from .errors import MetadataError

    return _check_range(value, where, "nm", PIXEL_SIZE_RANGE_NM, "--pixel-size", MetadataError)


def check_temperature(value: Any, where: str = "temperature") -> float | None:
    """Return ``value`` as degrees Celsius (``None`` = unknown), or raise :class:`MetadataError`."""
    from .errors import MetadataError

    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise MetadataError(f"{where} must be a number in degrees Celsius, got {value!r} (set --temperature)") from None
    if math.isnan(v):
        return None
    lo, hi = TEMPERATURE_RANGE_C
    if not lo <= v <= hi:
        raise MetadataError(f"{where} = {v} degC is outside [{lo}, {hi}] degC; give --temperature in degrees Celsius")
    return v


def _check_range(value, where, unit, bounds, flag, exc):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise exc(f"{where} must be a number in {unit}, got {value!r} (set {flag})") from None
    if not math.isfinite(v) or v <= 0:
        raise exc(f"{where} must be a positive number of {unit}, got {value!r} (set {flag})")
    lo, hi = bounds
    if not lo <= v <= hi:
        raise exc(f"{where} = {v:g} {unit} is outside the plausible range [{lo:g}, {hi:g}] {unit}; "
                  f"check the unit (set {flag})")
    return v


def validate_series(ds, *, require_complete: bool = False) -> None:
    """Check that ``ds`` is a valid ecm_dask image series; raise :class:`ValidationError` listing every problem.

    Parameters
    ----------
    ds : xarray.Dataset
        Typically ``xr.open_zarr("series.zarr")``.
    require_complete : bool
        Also require the store's completion flag (set only after every shard was written).

    Raises
    ------
    ValidationError
        With one line per problem: which variable, coordinate or attribute, what was found and
        what was expected.
    """
    import numpy as np

    problems: list[str] = []
    if INTENSITY not in ds.data_vars:
        problems.append(f"no data variable {INTENSITY!r} (found: {sorted(map(str, ds.data_vars)) or 'none'})")
    else:
        da = ds[INTENSITY]
        if tuple(da.dims) != SERIES_DIMS:
            problems.append(f"{INTENSITY!r} has dims {tuple(da.dims)}, expected {SERIES_DIMS}")
        if not (np.issubdtype(da.dtype, np.integer) or np.issubdtype(da.dtype, np.floating)):
            problems.append(f"{INTENSITY!r} has dtype {da.dtype}, expected integer or floating counts")
        else:
            for dim, n in zip(da.dims, da.shape):
                if dim == TIME and n < 2:
                    problems.append(f"{INTENSITY!r} has {n} frame(s) along {TIME!r}; a correlation needs at least 2")
                elif n < 1:
                    problems.append(f"{INTENSITY!r} is empty along {dim!r}")
        for dim in SERIES_DIMS:
            if dim not in ds.coords:
                problems.append(f"no coordinate {dim!r}")
                continue
            c = ds.coords[dim]
            want = series_units(dim, series_mode(ds.attrs))
            if c.attrs.get(ATTR_UNITS) != want:
                problems.append(f"coordinate {dim!r} has units {c.attrs.get(ATTR_UNITS)!r}, expected {want!r}")
            vals = np.asarray(c.values)
            if vals.size and not np.issubdtype(vals.dtype, np.number):
                problems.append(f"coordinate {dim!r} is not numeric ({vals.dtype})")
            elif vals.size > 1 and not np.all(np.diff(vals) > 0):
                problems.append(f"coordinate {dim!r} is not strictly increasing")
    attrs = ds.attrs
    mode = series_mode(attrs)
    for spec in SERIES_REQUIRED_ATTRS:
        if spec.name == ATTR_PIXEL_SIZE and mode == MODE_DIFFRACTION:
            continue  # a diffraction camera has a k calibration instead (checked below)
        if spec.name not in attrs:
            problems.append(f"missing attribute {spec.name!r} ({spec.description})")
            continue
        value = attrs[spec.name]
        if spec.name == ATTR_TEMPERATURE and value is None:
            continue
        numeric = spec.kind in ((int, float), (int, float, type(None)))
        if numeric and not _is_number(value):
            problems.append(f"attribute {spec.name!r} = {value!r} is not a number ({spec.description})")
        elif not numeric and not isinstance(value, spec.kind):
            problems.append(f"attribute {spec.name!r} = {value!r} has type {type(value).__name__}, "
                            f"expected {spec.kind if isinstance(spec.kind, type) else spec.kind}")
    if mode not in SERIES_MODES:
        problems.append(f"attribute {ATTR_SERIES_MODE!r} = {mode!r}, expected one of {SERIES_MODES}")
    elif mode == MODE_DIFFRACTION:
        k = attrs.get(ATTR_K_CALIBRATION)
        if not _is_number(k) or not 0 < float(k) < float("inf"):
            problems.append(f"attribute {ATTR_K_CALIBRATION!r} = {k!r}: a diffraction series needs its camera "
                            "calibration as a positive number of nm^-1 per pixel")
    for name, checker in ((ATTR_FRAME_TIME, check_frame_time), (ATTR_PIXEL_SIZE, check_pixel_size),
                          (ATTR_TEMPERATURE, check_temperature)):
        if name in attrs and _is_number(attrs[name]):
            try:
                checker(attrs[name], where=f"attribute {name!r}")
            except Exception as exc:  # MetadataError
                problems.append(str(exc))
    if ATTR_SCHEMA_VERSION in attrs and attrs[ATTR_SCHEMA_VERSION] != SCHEMA_VERSION:
        problems.append(f"attribute {ATTR_SCHEMA_VERSION!r} = {attrs[ATTR_SCHEMA_VERSION]!r}, "
                        f"this ecm_dask reads version {SCHEMA_VERSION}")
    if require_complete and attrs.get(ATTR_COMPLETE) is not True:
        problems.append(f"the store is incomplete ({ATTR_COMPLETE!r} is not true): an ingest was interrupted; "
                        "run the same ingest command again to resume")
    # coordinates agree with the calibration
    if not problems and INTENSITY in ds:
        ft = float(attrs[ATTR_FRAME_TIME])
        px = float(attrs[ATTR_K_CALIBRATION] if mode == MODE_DIFFRACTION else attrs[ATTR_PIXEL_SIZE])
        unit = "nm^-1" if mode == MODE_DIFFRACTION else "nm"
        step = ATTR_K_CALIBRATION if mode == MODE_DIFFRACTION else ATTR_PIXEL_SIZE
        t = np.asarray(ds[TIME].values, dtype=float)
        if t.size > 1 and not np.allclose(np.median(np.diff(t)), ft, rtol=1e-3):
            problems.append(f"coordinate {TIME!r} steps by {np.median(np.diff(t)):g} s but "
                            f"{ATTR_FRAME_TIME!r} = {ft:g} s")
        for dim in (Y, X):
            c = np.asarray(ds[dim].values, dtype=float)
            if c.size > 1 and not np.allclose(np.diff(c), px, rtol=1e-6):
                problems.append(f"coordinate {dim!r} steps by {np.diff(c)[0]:g} {unit} but {step!r} = {px:g} {unit}")
    if problems:
        raise ValidationError(problems)


def series_mode(attrs: Mapping[str, Any]) -> str:
    """``"image"`` or ``"diffraction"`` (:data:`ATTR_SERIES_MODE`; absent means image)."""
    return attrs.get(ATTR_SERIES_MODE, MODE_IMAGE)


def series_units(dim: str, mode: str = MODE_IMAGE) -> str:
    """Units of a series coordinate: as :data:`UNITS`, except the camera axes of a diffraction series (nm^-1)."""
    if mode == MODE_DIFFRACTION and dim in (Y, X):
        return UNITS[KY]
    return UNITS[dim]


def coord_attrs(name: str, long_name: str | None = None) -> dict[str, str]:
    """Attributes for a coordinate or variable: its units and a readable name."""
    out = {ATTR_UNITS: UNITS[name]}
    if long_name:
        out[ATTR_LONG_NAME] = long_name
    return out


def series_attrs(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Return the attributes of a series from a metadata mapping, with defaults for the optional text ones."""
    diffraction = meta.get(ATTR_SERIES_MODE) == MODE_DIFFRACTION
    out = {
        ATTR_FRAME_TIME: float(meta[ATTR_FRAME_TIME]),
        **({ATTR_SERIES_MODE: MODE_DIFFRACTION, ATTR_K_CALIBRATION: float(meta[ATTR_K_CALIBRATION])} if diffraction
           else {ATTR_PIXEL_SIZE: float(meta[ATTR_PIXEL_SIZE])}),
        ATTR_TEMPERATURE: check_temperature(meta.get(ATTR_TEMPERATURE)),
        ATTR_MATERIAL: str(meta.get(ATTR_MATERIAL) or UNKNOWN),
        ATTR_INSTRUMENT: str(meta.get(ATTR_INSTRUMENT) or UNKNOWN),
        ATTR_SOURCE: meta.get(ATTR_SOURCE, UNKNOWN),
        ATTR_PROVENANCE: dict(meta.get(ATTR_PROVENANCE, {})),
        ATTR_SCHEMA_VERSION: SCHEMA_VERSION,
    }
    return out


def _group(tree, name: str):
    """The Dataset of group ``name`` of a DataTree (None if absent)."""
    try:
        return tree[name].to_dataset() if name in tree.children else None
    except KeyError:
        return None


def _check_units(ds, where: str, problems: list[str]) -> None:
    """Every coordinate and variable whose name has a unit in :data:`UNITS` carries it."""
    for name in list(ds.coords) + list(ds.data_vars):
        if name in UNITS and ds[name].attrs.get(ATTR_UNITS) != UNITS[name]:
            kind = "coordinate" if name in ds.coords else "variable"
            problems.append(f"{where}: {kind} {name!r} has units {ds[name].attrs.get(ATTR_UNITS)!r}, "
                            f"expected {UNITS[name]!r}")


def _check_flags(da, where: str, codes: Mapping[int, str] | None, problems: list[str]) -> None:
    values, meanings = da.attrs.get(ATTR_FLAG_VALUES), da.attrs.get(ATTR_FLAG_MEANINGS)
    if values is None or meanings is None:
        problems.append(f"{where}: {da.name!r} lacks {ATTR_FLAG_VALUES}/{ATTR_FLAG_MEANINGS}")
        return
    if len(list(values)) != len(str(meanings).split()):
        problems.append(f"{where}: {da.name!r} has {len(list(values))} flag values but "
                        f"{len(str(meanings).split())} meanings")
    if codes is not None and [int(v) for v in values] != [int(c) for c in codes]:
        problems.append(f"{where}: {da.name!r} flag values {list(values)}, expected {list(codes)}")


def validate_results(tree) -> None:
    """Check a results DataTree (``xr.open_datatree("results.zarr", engine="zarr")``) against the contract.

    Checked: the root maps :data:`ROOT_MAPS` on ``(y, x)`` with their units, ``status`` codes with CF flag
    attributes, values only where the status is ok (NaN elsewhere) and a positive finite ``tau`` where it is;
    the groups :data:`RESULT_REQUIRED_GROUPS` with their main variables; the same ``y``/``x`` grid in every
    group; units on every coordinate and variable named in :data:`UNITS`; calibration and provenance attributes.

    Raises
    ------
    ValidationError
        One line per problem.
    """
    import numpy as np

    problems: list[str] = []
    root = tree.to_dataset()
    for name in ROOT_MAPS:
        if name not in root.data_vars:
            problems.append(f"/: no map {name!r}")
        elif tuple(root[name].dims) != (Y, X):
            problems.append(f"/: {name!r} has dims {tuple(root[name].dims)}, expected {(Y, X)}")
    for dim in (Y, X):
        if dim not in root.coords:
            problems.append(f"/: no coordinate {dim!r}")
    _check_units(root, "/", problems)
    for name in (ATTR_FRAME_TIME, ATTR_PIXEL_SIZE, ATTR_PROVENANCE):
        if name not in root.attrs:
            problems.append(f"/: missing attribute {name!r}")
    if not problems:
        status = np.asarray(root[STATUS].values)
        _check_flags(root[STATUS], "/", RESULT_STATUS, problems)
        unknown = sorted(set(np.unique(status).tolist()) - set(RESULT_STATUS))
        if unknown:
            problems.append(f"/: status holds unknown code(s) {unknown}")
        ok = status == STATUS_OK
        for name in ROOT_VALUE_MAPS:
            v = np.asarray(root[name].values, dtype=np.float64)
            n_bad = int(np.count_nonzero(~ok & ~np.isnan(v)))
            if n_bad:
                problems.append(f"/: {name!r} holds values at {n_bad} pixel(s) whose status is not ok "
                                "(must be NaN there; raw fits belong in /fit)")
        tau = np.asarray(root[TAU].values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            n_bad = int(np.count_nonzero(ok & ~(np.isfinite(tau) & (tau > 0))))
        if n_bad:
            problems.append(f"/: {n_bad} pixel(s) with status ok have no positive finite tau")
    required = {G2_GROUP: (G2,), FIT_GROUP: (TAU, BETA, STATUS), ARTEFACTS_GROUP: (ARTEFACT,),
                REGIONS_GROUP: (REGION, SURFACE_DISTANCE), DISTRIBUTIONS_GROUP: (LOG10_TAU, BETA, "tau_median")}
    for group in RESULT_REQUIRED_GROUPS:
        ds = _group(tree, group)
        if ds is None:
            problems.append(f"no group /{group}")
            continue
        for name in required[group]:
            if name not in ds.data_vars:
                problems.append(f"/{group}: no variable {name!r}")
        _check_units(ds, f"/{group}", problems)
        if group == DISTRIBUTIONS_GROUP or Y not in root.coords or X not in root.coords:
            continue
        for dim in (Y, X):
            if dim not in ds.coords or ds.sizes.get(dim) != root.sizes[dim] or not np.array_equal(
                    np.asarray(ds[dim].values), np.asarray(root[dim].values)):
                problems.append(f"/{group}: its {dim!r} grid differs from the root maps'")
    regions = _group(tree, REGIONS_GROUP)
    if regions is not None and REGION in regions:
        _check_flags(regions[REGION], f"/{REGIONS_GROUP}", REGION_FLAGS, problems)
    if problems:
        raise ValidationError(problems, "results tree", "result store")


def with_units(ds):
    """``ds`` with the units of :data:`UNITS` on every coordinate and variable named there (in place; returned)."""
    for name in list(ds.coords) + list(ds.data_vars):
        if name in UNITS:
            ds[name].attrs[ATTR_UNITS] = UNITS[name]
    return ds
