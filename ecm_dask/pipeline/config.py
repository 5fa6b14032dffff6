"""The run configuration: one typed object, validated once, before any allocation or cluster start.

:class:`RunConfig` replaces the option dicts that used to travel from the command line through
:func:`~ecm_dask.pipeline.run.run_pipeline` to the stages.  It is built by :meth:`RunConfig.build` (from
keyword options, a config file or the CLI) which checks every value on its own (types, finiteness, ranges),
and :meth:`RunConfig.check_series` checks the values that depend on the series (frame count, frame size, frame
time) against the series' metadata only.  Nothing is expanded to check it: frame ranges such as
``--bad-frames 0-999999999999`` are kept as ranges (:class:`FrameRanges`) and compared arithmetically, so a
hostile value costs nothing before it is refused.

The configuration's JSON form (:meth:`RunConfig.as_dict`) is what the run fingerprints and stores in
``results.zarr`` (attribute ``run_config``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ParameterError

#: limits of the options (anything beyond is refused with the option's name)
MAX_POINTS_PER_OCTAVE = 64
MAX_POOL = 16
MIN_BLOCK_BYTES = 1 << 12
MAX_BLOCK_BYTES = 1 << 40
MAX_FRAME_RANGES = 100_000
METHODS = ("multitau", "fft")
NORMALIZATIONS = ("symmetric", "standard")
POOL_MODES = ("average", "sum")
SHIFT_MODES = ("integer", "bilinear")
ROI_UNITS = ("pixel", "nm")


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def _finite(value, name: str, *, positive: bool = False, low: float | None = None, high: float | None = None,
            allow_none: bool = False) -> float | None:
    """``value`` as a finite float in range, or a ParameterError naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ParameterError(f"{name} must be a number, got {value!r}") from None
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ParameterError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if positive and not value > 0:
        raise ParameterError(f"{name} must be > 0, got {value!r}")
    if low is not None and value < low:
        raise ParameterError(f"{name} must be >= {low:g}, got {value!r}")
    if high is not None and value > high:
        raise ParameterError(f"{name} must be <= {high:g}, got {value!r}")
    return value


def _whole(value, name: str, low: int, high: int) -> int:
    """``value`` as an int in [low, high] (a float such as 3.0 is accepted, 3.5 is not)."""
    if _is_number(value) and math.isfinite(float(value)) and float(value) == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParameterError(f"{name} must be a whole number in [{low}, {high}], got {value!r}")
    return value


def _choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


@dataclass(frozen=True)
class FrameRanges:
    """A set of frame numbers as sorted, merged, inclusive ranges ``((a, b), ...)``; never expanded to check it.

    Built from ``"3,7,10-12"``, a list of frame numbers, a list of ``(a, b)`` pairs or a boolean mask.
    """

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, value, name: str = "--bad-frames") -> FrameRanges:
        if value is None:
            return cls(())
        if isinstance(value, FrameRanges):
            return value
        pairs: list[tuple[int, int]] = []
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if len(parts) > MAX_FRAME_RANGES:
                raise ParameterError(f"{name}: more than {MAX_FRAME_RANGES} ranges; give frame ranges like 10-500")
            for part in parts:
                a, dash, b = part.partition("-")
                try:
                    lo = int(a)
                    hi = int(b) if dash else lo
                except ValueError:
                    raise ParameterError(f"{name}: expected frame numbers like 3,7,10-12, got {part!r}") from None
                pairs.append((lo, hi))
        else:
            arr = np.asarray(getattr(value, "values", value))
            if arr.dtype == bool:
                if arr.ndim != 1:
                    raise ParameterError(f"{name} as a boolean mask must be 1-D (one entry per frame), got {arr.shape}")
                idx = np.flatnonzero(arr)
                pairs = [(int(i), int(i)) for i in idx]
            elif arr.ndim == 2 and arr.shape[1:] == (2,):
                pairs = [(int(a), int(b)) for a, b in arr]
            elif arr.ndim <= 1 and (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
                pairs = [(int(i), int(i)) for i in arr.ravel()]
            else:
                raise ParameterError(f"{name} must be frame numbers, '3,7,10-12' or (first, last) pairs; got {value!r}")
            if len(pairs) > 10 * MAX_FRAME_RANGES:
                raise ParameterError(f"{name}: too many entries ({len(pairs)}); give frame ranges")
        for lo, hi in pairs:
            if lo < 0 or hi < 0:
                raise ParameterError(f"{name}: frame numbers start at 0, got {lo}-{hi}")
            if hi < lo:
                raise ParameterError(f"{name}: the range {lo}-{hi} is empty (its end comes before its start); "
                                     f"did you mean {hi}-{lo}?")
        merged: list[list[int]] = []
        for lo, hi in sorted(pairs):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        return cls(tuple((a, b) for a, b in merged))

    def __bool__(self) -> bool:
        return bool(self.ranges)

    @property
    def count(self) -> int:
        return sum(b - a + 1 for a, b in self.ranges)

    @property
    def last(self) -> int | None:
        return self.ranges[-1][1] if self.ranges else None

    def check(self, n_frames: int, name: str = "--bad-frames") -> None:
        """Refuse frames beyond the series or a set that leaves fewer than 2 frames (arithmetic only)."""
        if self.ranges and self.last >= n_frames:
            a, b = self.ranges[-1]
            raise ParameterError(f"{name}: frame(s) {a}-{b} outside the series of {n_frames} frames (0..{n_frames - 1})")
        if n_frames - self.count < 2:
            raise ParameterError(f"{name} leaves {n_frames - self.count} of {n_frames} frames; a correlation needs at "
                                 "least 2")

    def mask(self, n_frames: int) -> np.ndarray:
        """Boolean ``(n_frames,)`` array, True for a listed frame (after :meth:`check`)."""
        self.check(n_frames)
        out = np.zeros(n_frames, dtype=bool)
        for a, b in self.ranges:
            out[a:b + 1] = True
        return out

    def __str__(self) -> str:
        return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.ranges)


@dataclass(frozen=True)
class G2Config:
    """Options of the g2 stage (see :func:`ecm_dask.ops.correlate`)."""

    method: str = "multitau"
    points_per_octave: int = 8
    max_lag: float | None = None
    normalization: str = "symmetric"
    bad_frames: FrameRanges = field(default_factory=FrameRanges)
    pool: int = 1
    pool_mode: str = "average"
    block_bytes: int = 160 << 20
    shift_mode: str = "integer"

    @classmethod
    def build(cls, options: dict[str, Any] | None) -> G2Config:
        options = dict(options or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ParameterError(f"unknown g2 option(s) {unknown}; known: {sorted(known)}")
        d = cls()
        block = options.get("block_bytes", d.block_bytes)
        block = _finite(block, "block size (--block-mb)", low=MIN_BLOCK_BYTES, high=MAX_BLOCK_BYTES)
        return cls(
            method=_choice(options.get("method", d.method), "method (--method)", METHODS),
            points_per_octave=_whole(options.get("points_per_octave", d.points_per_octave),
                                     "points_per_octave (--points-per-octave)", 1, MAX_POINTS_PER_OCTAVE),
            max_lag=_finite(options.get("max_lag"), "max_lag (--max-lag, seconds)", positive=True, allow_none=True),
            normalization=_choice(options.get("normalization", d.normalization), "normalization (--normalization)",
                                  NORMALIZATIONS),
            bad_frames=FrameRanges.parse(options.get("bad_frames")),
            pool=_whole(options.get("pool", d.pool), "pool (--pool)", 1, MAX_POOL),
            pool_mode=_choice(options.get("pool_mode", d.pool_mode), "pool_mode (--pool-mode)", POOL_MODES),
            block_bytes=int(block),
            shift_mode=_choice(options.get("shift_mode", d.shift_mode), "shift_mode", SHIFT_MODES),
        )

    def check_series(self, n_frames: int, ny: int, nx: int, frame_time: float) -> None:
        self.bad_frames.check(n_frames)
        if self.max_lag is not None:
            frames = math.floor(self.max_lag / frame_time + 1e-9)
            if not 1 <= frames <= n_frames - 1:
                raise ParameterError(f"--max-lag {self.max_lag:g} s is {frames} frames of {frame_time:g} s; it must be "
                                     f"between 1 and {n_frames - 1} frames ({frame_time:g} to "
                                     f"{(n_frames - 1) * frame_time:g} s)")
        from ..ops.correlation import check_pool

        check_pool(self.pool, ny, nx)  # not larger than the frame, at least a 2 x 2 map

    def kwargs(self, n_frames: int) -> dict[str, Any]:
        """Keyword arguments of :func:`ecm_dask.ops.correlate` (bad frames as a boolean mask)."""
        return {"method": self.method, "points_per_octave": self.points_per_octave, "max_lag": self.max_lag,
                "normalization": self.normalization,
                "bad_frames": self.bad_frames.mask(n_frames) if self.bad_frames else None, "pool": self.pool,
                "pool_mode": self.pool_mode, "block_bytes": self.block_bytes, "shift_mode": self.shift_mode}

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "points_per_octave": self.points_per_octave, "max_lag": self.max_lag,
                "normalization": self.normalization, "bad_frames": str(self.bad_frames) or None, "pool": self.pool,
                "pool_mode": self.pool_mode, "block_bytes": self.block_bytes, "shift_mode": self.shift_mode}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run of :func:`~ecm_dask.pipeline.run.run_pipeline` (and its fingerprint).

    Build it with :meth:`build` (validates every value); :meth:`check_series` validates it against a series.
    """

    series: str
    drift: bool = True
    reference_roi: Any = None
    roi_units: str = "pixel"
    max_shift: float | None = None
    margin: int = 16
    g2: G2Config = field(default_factory=G2Config)
    fit: dict[str, Any] = field(default_factory=dict)
    surface_nm: float = 1.0
    pooling: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, series, *, reference_roi=None, roi_units: str = "pixel", drift: bool = True, max_shift=None,
              margin: int = 16, g2_options: dict | G2Config | None = None, fit_options: dict | None = None,
              surface_nm: float | None = None, pooling: dict | None = None) -> RunConfig:
        """Check every option on its own and return the configuration (raises ParameterError naming the option)."""
        from ..ops.fit import check_fit_options
        from .run import check_pooling
        from .screen import SURFACE_NM

        if not isinstance(drift, (bool, np.bool_)):
            raise ParameterError(f"drift must be true or false, got {drift!r}")
        if reference_roi is not None and not isinstance(reference_roi, (str, tuple, list, dict)):
            raise ParameterError(f"reference ROI (--reference-roi) must be 'Y0:Y1,X0:X1', got {reference_roi!r}")
        if isinstance(reference_roi, (tuple, list)):
            if len(reference_roi) != 4:
                raise ParameterError(f"reference ROI must be (y0, y1, x0, x1), got {reference_roi!r}")
            reference_roi = tuple(_finite(v, "reference ROI (--reference-roi)") for v in reference_roi)
        if isinstance(reference_roi, str):
            try:
                parts = [float(v) for v in reference_roi.replace(",", ":").split(":")]
            except ValueError:
                parts = []
            if len(parts) != 4 or not all(math.isfinite(v) for v in parts):
                raise ParameterError(f"reference ROI (--reference-roi) {reference_roi!r} must look like 'Y0:Y1,X0:X1' "
                                     "with finite numbers")
        fit_options = dict(fit_options or {})
        check_fit_options(fit_options)
        g2 = g2_options if isinstance(g2_options, G2Config) else G2Config.build(g2_options)
        return cls(series=os.path.abspath(series), drift=bool(drift), reference_roi=reference_roi,
                   roi_units=_choice(roi_units, "ROI units (--roi-units)", ROI_UNITS),
                   max_shift=_finite(max_shift, "max_shift (--max-shift, pixels)", positive=True, allow_none=True),
                   margin=_whole(margin, "margin", 0, 4096), g2=g2, fit=fit_options,
                   surface_nm=_finite(SURFACE_NM if surface_nm is None else surface_nm, "surface_nm (--surface-nm)",
                                      low=0.0, high=1e4 - 1e-9),
                   pooling=check_pooling(pooling))

    def check_series(self, ds) -> None:
        """Check the options that depend on the series (frames, frame size, ROI) from its metadata only."""
        from .. import schema as S
        from ..ops.regions import parse_roi

        intensity = ds[S.INTENSITY]
        if S.series_mode(ds.attrs) == S.MODE_DIFFRACTION:
            raise ParameterError(f"{self.series} is a diffraction series (ingested with --k-calibration): the image "
                                 "pipeline would make maps of camera pixels; analyse it with "
                                 "'ecm-dask run --mode diffraction'")
        n_t, ny, nx = (int(s) for s in intensity.shape)
        self.g2.check_series(n_t, ny, nx, float(ds.attrs[S.ATTR_FRAME_TIME]))
        if self.drift and self.reference_roi is not None:
            try:
                parse_roi(self.reference_roi, intensity, self.roi_units)
            except (ValueError, TypeError, OverflowError) as err:
                raise ParameterError(f"reference ROI (--reference-roi) {self.reference_roi!r}: {err}") from None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: fingerprinted and stored as the ``run_config`` attribute of the results."""
        from .run import _jsonable

        return {"series": self.series, "reference_roi": _jsonable(self.reference_roi), "roi_units": self.roi_units,
                "drift": self.drift, "max_shift": self.max_shift, "margin": self.margin, "g2": self.g2.as_dict(),
                "fit": _jsonable(self.fit), "surface_nm": self.surface_nm, "pooling": dict(self.pooling)}


# --- config files --------------------------------------------------------------------------------------------

#: a run configuration file is a few hundred bytes; refuse anything far larger (and alias bombs, below)
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_ALIASES = 100
MAX_CONFIG_NODES = 100_000


def load_config_file(path) -> dict[str, Any]:
    """A YAML mapping from ``path``, refusing huge files, many aliases and structures that expand to more than
    :data:`MAX_CONFIG_NODES` values (the "billion laughs" alias bomb), with a one-line ParameterError."""
    import yaml

    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_CONFIG_BYTES:
            raise ParameterError(f"{path} is {size} bytes; a configuration file must be below {MAX_CONFIG_BYTES} bytes")
        with open(path, "rb") as fh:
            text = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ParameterError(f"cannot read the configuration file {path}: {err.strerror or err}") from None

    class Loader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                Loader.aliases += 1
                if Loader.aliases > MAX_CONFIG_ALIASES:
                    raise ParameterError(f"{path}: more than {MAX_CONFIG_ALIASES} YAML aliases; write the values out")
            return super().compose_node(parent, index)

    try:
        content = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ParameterError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    _count_nodes(content, path)
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ParameterError(f"{path} must hold a mapping of option names to values")
    return content


def _count_nodes(obj, path) -> None:
    """Walk ``obj`` as the JSON dump would (aliases expanded), stopping at :data:`MAX_CONFIG_NODES`."""
    stack, n = [obj], 0
    while stack:
        item = stack.pop()
        n += 1
        if n > MAX_CONFIG_NODES:
            raise ParameterError(f"{path}: the configuration expands to more than {MAX_CONFIG_NODES} values "
                                 "(nested YAML aliases?); write the values out")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
