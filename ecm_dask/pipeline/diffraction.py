"""Diffraction (STEM) mode of ``ecm-dask run``: a series of diffraction patterns at one probe position ->
``tau(q)``, ``beta(q)`` and ``I(q)`` with errors, the ring g2 curves and their fits, in one results store.

Steps (each one function of :mod:`ecm_dask.analysis` or :mod:`ecm_dask.kernels`):

1. the time-mean pattern (one pass over the series, dask);
2. the camera geometry: the k calibration (``--k-calibration`` or the series' ``k_calibration_nm-1_per_px``)
   and the beam centre (``--beam-centre``, the series attribute, or found from the mean pattern by
   :func:`ecm_dask.kernels.rings.estimate_centre`; the results say which);
3. usable pixels: the ``--mask`` file, pixels that never count (beam stop, dead pixels), pixels with
   ``q < --beam-stop-q``;
4. g2 of every camera pixel averaged over rings of constant q (:func:`ecm_dask.analysis.stem.diffraction_g2`,
   per-pixel g2 never gathered), KWW fit of every ring with jackknife errors over angular sectors
   (:func:`~ecm_dask.analysis.stem.fit_rings`) and the reliability flags of the image mode (series >= 40 mean
   tau, frames <= 0.1 tau apart, tau error < tau / 2: :func:`ecm_dask.ops.fit.quality_flags`);
5. ``I(q)`` on the same rings (:func:`ecm_dask.analysis.scattering.radial_profile`).

The results store (a DataTree, written atomically: an interrupted run leaves no store, and running again
starts over; a diffraction camera's series is small next to the image mode's) holds on ``q``: ``tau``,
``beta``, ``contrast``, ``baseline`` and their ``*_err``, ``chi2``, ``status`` (KWW fit codes), ``quality``
(reliability bits), ``intensity``/``intensity_err`` (I(q)), ``n_pixels``, ``g2``/``g2_err``/``g2_fit`` on
``(q, lag)``; group ``/camera``: ``mean_pattern``, ``ring`` (ring of every pixel, -1 unused), ``usable`` and
``pixel_status`` on the camera ``(ky, kx)``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import InputError, ParameterError, StoreError
from .config import G2Config, _choice, _finite, _whole

__all__ = ["DiffractionConfig", "run_diffraction", "write_diffraction_report", "CAMERA_GROUP"]

CAMERA_GROUP = "camera"
#: the ``run --mode`` value and the ``series_mode`` of the results
MODE = S.MODE_DIFFRACTION
ERRORS = ("auto", "jackknife", "sigma")
PROFILE_ERRORS = ("scatter", "poisson")
#: where the beam centre came from
CENTRE_GIVEN, CENTRE_SERIES, CENTRE_ESTIMATED = "given", "series attribute", "estimated from the mean pattern"


@dataclass(frozen=True)
class DiffractionConfig:
    """Every option of a diffraction run, validated (``build``) before any work starts."""

    series: str
    g2: G2Config = field(default_factory=G2Config)
    k_calibration: float | None = None
    beam_centre: tuple[float, float] | None = None
    q_bins: int | tuple[float, ...] | None = 24
    mask: str | None = None
    beam_stop_q: float | None = None
    n_sectors: int = 8
    errors: str = "auto"
    profile_error: str = "scatter"

    @classmethod
    def build(cls, series, *, g2_options: dict | None = None, k_calibration=None, beam_centre=None, q_bins=24,
              mask=None, beam_stop_q=None, n_sectors: int = 8, errors: str = "auto",
              profile_error: str = "scatter") -> DiffractionConfig:
        g2 = g2_options if isinstance(g2_options, G2Config) else G2Config.build(g2_options)
        if g2.pool != 1:
            raise ParameterError("--pool does not apply to diffraction mode (rings average the camera pixels)")
        centre = None
        if beam_centre is not None:
            parts = beam_centre.split(",") if isinstance(beam_centre, str) else list(beam_centre)
            try:
                centre = tuple(float(v) for v in parts)
            except (TypeError, ValueError):
                centre = ()
            if len(centre) != 2 or not all(math.isfinite(v) for v in centre):
                raise ParameterError(f"beam centre (--beam-centre) must be ROW,COLUMN in pixels, got {beam_centre!r}")
        return cls(series=os.path.abspath(series), g2=g2,
                   k_calibration=_finite(k_calibration, "k calibration (--k-calibration, nm^-1 per pixel)",
                                         positive=True, allow_none=True),
                   beam_centre=centre, q_bins=_q_bins(q_bins), mask=None if mask is None else os.path.abspath(mask),
                   beam_stop_q=_finite(beam_stop_q, "beam stop radius (--beam-stop-q, nm^-1)", positive=True,
                                       allow_none=True),
                   n_sectors=_whole(n_sectors, "--sectors", 0, 64), errors=_choice(errors, "errors", ERRORS),
                   profile_error=_choice(profile_error, "profile error", PROFILE_ERRORS))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["g2"] = self.g2.as_dict()
        return json.loads(json.dumps(d, default=str))


def _q_bins(value):
    """None (rings one pixel wide), a number of equal rings, or ring edges (nm^-1); strings from the CLI."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ParameterError(f"--q-bins must be a number of rings or comma-separated ring edges in nm^-1, "
                                 f"got {value!r}") from None
        value = int(nums[0]) if len(nums) == 1 and nums[0] == int(nums[0]) else nums
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return _whole(int(value), "--q-bins as a number of rings", 1, 10_000)
    edges = np.asarray(value, dtype=float).ravel()
    if edges.size < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0) or edges[0] < 0:
        raise ParameterError(f"--q-bins as ring edges must be >= 2 increasing non-negative numbers (nm^-1), "
                             f"got {value!r}")
    return tuple(float(e) for e in edges)


def load_mask(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """A usable-pixel mask (True = use) from ``.npy`` or a TIFF image (non-zero = use) of the camera's shape."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such mask file")
    try:
        if p.suffix.lower() == ".npy":
            m = np.load(p, allow_pickle=False)
        else:
            import tifffile

            m = tifffile.imread(p)
    except Exception as err:  # noqa: BLE001 - any reader failure is the file's fault
        raise InputError(f"{p}: cannot read the mask ({type(err).__name__}: {err}); give a .npy or .tif image") from None
    m = np.asarray(m)
    if m.shape != tuple(shape):
        raise InputError(f"{p}: the mask is {m.shape} but the camera is {tuple(shape)} pixels")
    if m.dtype != bool and not np.isin(m, (0, 1)).all():
        raise InputError(f"{p}: a mask holds 0/1 or True/False (True = use the pixel)")
    return m.astype(bool)


# ------------------------------------------------------------------------------------------------ the run
def camera_setup(mean: np.ndarray, usable: np.ndarray, config: DiffractionConfig, cal: float, stored_centre,
                 where) -> tuple[tuple[float, float], str, np.ndarray]:
    """``(beam centre, where it came from, usable pixels)`` from the mean pattern: pixels that never count (beam
    stop, dead pixels) and those below ``--beam-stop-q`` left out; the centre as given, else ``stored_centre``
    (the series'), else found from the mean pattern."""
    from ..kernels.rings import estimate_centre, pixel_q

    usable = usable & np.isfinite(mean) & (mean > 0)
    if config.beam_centre is not None:
        centre, how = config.beam_centre, CENTRE_GIVEN
    elif stored_centre is not None:
        centre, how = tuple(float(c) for c in stored_centre), CENTRE_SERIES
    else:
        centre, how = estimate_centre(mean, usable), CENTRE_ESTIMATED
    if config.beam_stop_q is not None:
        usable &= pixel_q(mean.shape, centre, cal) >= config.beam_stop_q
    if usable.sum() < 2:
        raise InputError(f"{where}: fewer than 2 usable camera pixels (mask, beam stop, dark pixels)")
    return centre, how, usable


def camera_coords(shape, centre, cal: float) -> dict:
    """``ky``, ``kx`` coordinates (nm^-1 from the beam centre) of a camera of ``shape``."""
    return {S.KY: xr_variable(S.KY, (np.arange(shape[0]) - centre[0]) * cal, "scattering vector, rows"),
            S.KX: xr_variable(S.KX, (np.arange(shape[1]) - centre[1]) * cal, "scattering vector, columns")}


def xr_variable(dim: str, values, long_name: str):
    import xarray as xr

    return xr.Variable(dim, values, S.coord_attrs(dim, long_name))


#: attributes of the ring g2 kept in the results
RING_G2_ATTRS = ("estimator", "normalization", "points_per_octave", "max_lag_frames", "n_bad_frames", "ring_average",
                 "probe_block")


def ring_results(fit, ring_g2, intensity, intensity_err, *, frame_time: float, n_frames: int, attrs: dict):
    """The root of a diffraction or scan results store: the ring fits (:func:`~ecm_dask.analysis.stem.fit_rings`)
    with the reliability flags of the image mode, the ring g2 (and sector curves) and I(q); ``attrs`` first, then
    the fit's and the ring g2's description."""
    from ..ops.fit import IMPRECISE_TAU_REL_ERR, QUALITY_FLAGS, quality_flags

    quality = quality_flags(fit[S.TAU].values, fit[S.BETA].values, fit[f"{S.TAU}_err"].values,
                            frame_time=frame_time, series_s=n_frames * frame_time, max_tau_rel_err=IMPRECISE_TAU_REL_ERR)
    root = fit.drop_vars([S.N_PIXELS], errors="ignore")
    root[S.QUALITY] = (fit[S.TAU].dims, quality, S.flag_attrs(QUALITY_FLAGS, "reliability flags (bits)")
                       | {"flag_masks": list(QUALITY_FLAGS)})
    for name in (S.G2, S.G2_ERR, S.N_PIXELS, "pairs", S.G2_SECTOR, "sector_pixels"):
        if name in ring_g2:
            root[name] = ring_g2[name]
    root[S.INTENSITY] = intensity
    root[S.INTENSITY_ERR] = intensity_err
    root.attrs = {**attrs, S.ATTR_FRAME_TIME: frame_time, "n_frames": int(n_frames),
                  **{k: v for k, v in fit.attrs.items() if k != S.ATTR_FRAME_TIME},
                  **{k: ring_g2.attrs[k] for k in RING_G2_ATTRS if k in ring_g2.attrs}}
    return root


def write_mode_results(output, root, camera: dict, coords: dict, *, overwrite: bool) -> Path:
    """Write ``root`` and the ``/camera`` group (``camera``: name -> (ky, kx) variable) atomically to ``output``."""
    import xarray as xr

    from ..store.blocks import atomic
    from ..store.integrity import checksummed

    cam = xr.Dataset(camera, coords=coords)
    tree = xr.DataTree.from_dict({"/": checksummed(root), f"/{CAMERA_GROUP}": checksummed(cam)})
    with atomic(output, overwrite=overwrite) as partial:
        tree.to_zarr(partial, mode="w", zarr_format=3, consolidated=False)
    return Path(output)


def camera_variables(mean: np.ndarray, usable: np.ndarray, ring) -> dict:
    """The ``/camera`` group's mean pattern, usable pixels and ring of every pixel."""
    return {"mean_pattern": ((S.KY, S.KX), mean.astype(np.float32), {S.ATTR_UNITS: "counts",
                                                                    S.ATTR_LONG_NAME: "mean counts per frame"}),
            "ring": ((S.KY, S.KX), np.asarray(ring), {S.ATTR_LONG_NAME: "q ring of each pixel (-1: not used)"}),
            "usable": ((S.KY, S.KX), usable, {S.ATTR_LONG_NAME: "pixel used (mask, not dark, outside the beam stop)"})}


def run_diffraction(series_path: str | os.PathLike, output: str | os.PathLike, config: DiffractionConfig | None = None,
                    *, overwrite: bool = False, progress: bool = True, **options: Any) -> Path:
    """Analyse a diffraction series store; write ``output`` (results store, see the module doc).

    ``config`` or its options as keywords (:meth:`DiffractionConfig.build`).  Returns the path written.
    """
    import xarray as xr

    from ..analysis.scattering import radial_profile
    from ..analysis.stem import diffraction_g2, fit_rings
    from ..compute import run
    from ..store.blocks import check_replaceable
    from ..store.paths import check_apart
    from ..store.series import open_series, store_key
    from ..store.writer import provenance
    from .lock import run_lock

    if config is None:
        config = DiffractionConfig.build(series_path, **options)
    elif options:
        raise TypeError(f"give a DiffractionConfig or options, not both (got {sorted(options)})")
    output = Path(output)
    check_apart(output, [series_path])
    check_replaceable(output, overwrite)
    ds = open_series(series_path)
    attrs = ds.attrs
    n_t, ny, nx = (int(n) for n in ds[S.INTENSITY].shape)
    frame_time = float(attrs[S.ATTR_FRAME_TIME])
    config.g2.check_series(n_t, ny, nx, frame_time)
    cal = config.k_calibration if config.k_calibration is not None else attrs.get(S.ATTR_K_CALIBRATION)
    if cal is None:
        raise ParameterError(f"{series_path} is an image series without a k calibration: give --k-calibration "
                             "(nm^-1 per camera pixel) to analyse its frames as diffraction patterns")
    cal = float(cal)
    usable = np.ones((ny, nx), dtype=bool) if config.mask is None else load_mask(config.mask, (ny, nx))

    with run_lock(output):
        intensity = ds[S.INTENSITY]
        (mean,) = run([intensity.data.mean(axis=0, dtype=np.float64)], progress=progress,
                      label=f"mean pattern of {series_path}")
        centre, how, usable = camera_setup(mean, usable, config, cal, attrs.get(S.ATTR_BEAM_CENTRE), series_path)
        camera = camera_coords((ny, nx), centre, cal)
        patterns = xr.DataArray(intensity.data, dims=(S.TIME, S.KY, S.KX), coords={S.TIME: ds[S.TIME], **camera},
                                attrs={S.ATTR_FRAME_TIME: frame_time})
        g = config.g2
        ring_g2 = diffraction_g2(patterns, centre=centre, calibration=cal, q_bins=_bins_arg(config.q_bins),
                                 mask=usable, n_sectors=config.n_sectors, method=g.method,
                                 points_per_octave=g.points_per_octave, max_lag=g.max_lag,
                                 normalization=g.normalization,
                                 bad_frames=g.bad_frames.mask(n_t) if g.bad_frames else None)
        values = run([ring_g2[name].data for name in ring_g2.data_vars], progress=progress,
                     label=f"ring g2 of {series_path}")
        ring_g2 = ring_g2.copy(data=dict(zip(ring_g2.data_vars, values)))
        fit = fit_rings(ring_g2, errors=config.errors)
        edges = list(ring_g2[S.Q_LO].values) + [float(ring_g2[S.Q_HI].values[-1])]
        profile = radial_profile(xr.DataArray(mean, dims=(S.KY, S.KX), coords=camera), centre=centre,
                                 calibration=cal, q_bins=edges, mask=usable, error=config.profile_error, n_frames=n_t)
        root = ring_results(fit, ring_g2, profile[S.INTENSITY], profile[S.INTENSITY_ERR], frame_time=frame_time,
                            n_frames=n_t, attrs={
                                S.ATTR_SERIES_MODE: MODE, S.ATTR_K_CALIBRATION: cal,
                                S.ATTR_BEAM_CENTRE: [float(centre[0]), float(centre[1])], "beam_centre_from": how,
                                S.ATTR_TEMPERATURE: attrs.get(S.ATTR_TEMPERATURE),
                                S.ATTR_MATERIAL: attrs.get(S.ATTR_MATERIAL, S.UNKNOWN),
                                "series": os.path.abspath(series_path), "series_key": store_key(series_path),
                                S.ATTR_RUN_CONFIG: config.as_dict(), S.ATTR_PROVENANCE: provenance(),
                                "profile_error": config.profile_error})
        cam = camera_variables(mean, usable, ring_g2["ring"].values)
        cam["pixel_status"] = ring_g2["pixel_status"].variable
        write_mode_results(output, root, cam, camera, overwrite=overwrite)
    return output


def _bins_arg(q_bins):
    return list(q_bins) if isinstance(q_bins, tuple) else q_bins


def open_mode_results(path: str | os.PathLike, mode: str = MODE):
    """``(root, camera)``: the two Datasets of the results of ``run --mode diffraction`` (or ``scan``), loaded
    (StoreError naming the store, or the damaged file, if it is something else or damaged)."""
    from ..store.integrity import open_checked

    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: no such results store (make one with 'ecm-dask run ... --mode {mode}')")
    hint = f"run the {mode} analysis again to rewrite {{store}}"
    root = open_checked(path, hint=hint)
    if root.attrs.get(S.ATTR_SERIES_MODE) != mode:
        raise StoreError(f"{path}: not the results of 'ecm-dask run --mode {mode}'")
    return root.load(), open_checked(path, hint=hint, group=CAMERA_GROUP).load()


def open_diffraction(path: str | os.PathLike):
    """``(rings, camera)`` of a diffraction results store (:func:`open_mode_results`)."""
    return open_mode_results(path, MODE)


# ------------------------------------------------------------------------------------------------ report
def summary_rows(root) -> list[dict[str, Any]]:
    """One row per ring: q range, tau, beta, contrast with errors, I(q), pixels, fit status and reliability."""
    from ..kernels.kww import FIT_STATUS
    from ..ops.fit import QUALITY_FLAGS

    rows = []
    for i in range(root.sizes[S.Q]):
        def v(name):
            x = float(root[name].values[i])
            return x if math.isfinite(x) else None
        quality = int(root[S.QUALITY].values[i])
        rows.append({"q_lo": v(S.Q_LO), "q_hi": v(S.Q_HI), "q_mean": v(S.Q_MEAN), "n_pixels": int(root[S.N_PIXELS][i]),
                     "tau_s": v(S.TAU), "tau_err_s": v(f"{S.TAU}_err"), "beta": v(S.BETA), "beta_err": v(f"{S.BETA}_err"),
                     "contrast": v(S.CONTRAST), "intensity": v(S.INTENSITY), "intensity_err": v(S.INTENSITY_ERR),
                     "status": FIT_STATUS.get(int(root[S.STATUS].values[i]), "?"),
                     "reliability": [n for b, n in QUALITY_FLAGS.items() if quality & b] or ["ok"]})
    return rows


def ring_summary(results_path) -> str:
    """A few lines for the terminal: geometry and tau, beta per ring."""
    root, _ = open_diffraction(results_path)
    a = root.attrs
    lines = [f"diffraction: {a.get('n_frames')} frames x {a.get(S.ATTR_FRAME_TIME)} s, beam centre "
             f"({a[S.ATTR_BEAM_CENTRE][0]:.2f}, {a[S.ATTR_BEAM_CENTRE][1]:.2f}) px ({a.get('beam_centre_from')}), "
             f"{a.get(S.ATTR_K_CALIBRATION)} nm^-1/px",
             "  q (nm^-1)  pixels   tau (s)             beta            fit / reliability"]
    for r in summary_rows(root):
        tau = "-" if r["tau_s"] is None else f"{r['tau_s']:.4g} +- {r['tau_err_s'] or float('nan'):.2g}"
        beta = "-" if r["beta"] is None else f"{r['beta']:.3f} +- {r['beta_err'] or float('nan'):.2g}"
        lines.append(f"  {r['q_mean'] if r['q_mean'] is not None else float('nan'):9.3f}  {r['n_pixels']:6d}   "
                     f"{tau:18s}  {beta:14s}  {r['status']} / {', '.join(r['reliability'])}")
    return "\n".join(lines)


def plot_profiles(root):
    """tau(q) (log), beta(q) and I(q) with error bars; rings whose fit is not ok or not reliable hollow."""
    from ..plot import _figure

    fig = _figure((6.4, 7.6))
    axes = fig.subplots(3, 1, sharex=True)
    q = root[S.Q_MEAN].values
    good = (root[S.STATUS].values == 0) & (root[S.QUALITY].values == 0)
    fitted = root[S.STATUS].values == 0
    for ax, name, label, log in ((axes[0], S.TAU, "τ (s)", True), (axes[1], S.BETA, "β", False)):
        y, e = root[name].values, root[f"{name}_err"].values
        for sel, style in ((good, dict(fmt="o", color="C0", label="ok")),
                           (fitted & ~good, dict(fmt="o", mfc="none", color="C1", label="fit ok, not reliable"))):
            if sel.any():
                ax.errorbar(q[sel], y[sel], yerr=e[sel], capsize=2, ms=4, **style)
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="best")
    ax = axes[2]
    ax.errorbar(q, root[S.INTENSITY].values, yerr=root[S.INTENSITY_ERR].values, fmt=".-", color="k", ms=3, capsize=2)
    ax.set_ylabel("I(q) (counts per pixel per frame)")
    ax.set_xlabel("q (nm⁻¹)")
    axes[0].set_title("diffraction mode: ring-averaged dynamics and scattering")
    return fig


def plot_ring_fits(root, n_curves: int = 8):
    """g2 of up to ``n_curves`` rings (spread over q, ok fits first) with their KWW fits."""
    from ..plot import _figure

    fig = _figure((6.4, 4.4))
    ax = fig.subplots()
    lag = root[S.LAG].values
    ok = np.flatnonzero(root[S.STATUS].values == 0)
    pick = ok[np.unique(np.linspace(0, ok.size - 1, min(n_curves, ok.size)).round().astype(int))] if ok.size else []
    for k, i in enumerate(pick):
        c = f"C{k % 10}"
        ax.errorbar(lag[1:], root[S.G2].values[i, 1:], yerr=root[S.G2_ERR].values[i, 1:], fmt="o", ms=2.5, color=c,
                    alpha=0.7, label=f"q = {float(root[S.Q_MEAN][i]):.2f} nm⁻¹, τ = {float(root[S.TAU][i]):.3g} s")
        ax.plot(lag[1:], root["g2_fit"].values[i, 1:], color=c, lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("lag (s)")
    ax.set_ylabel("g2 (ring average)")
    ax.legend(fontsize=6.5)
    return fig


def plot_pattern(root, camera):
    """The mean pattern (log colours) with the beam centre and the ring edges."""
    from matplotlib.colors import LogNorm

    from ..plot import _figure

    fig = _figure((5.6, 5.0))
    ax = fig.subplots()
    img = np.where(camera["usable"].values, camera["mean_pattern"].values, np.nan)
    pos = img[np.isfinite(img) & (img > 0)]
    norm = LogNorm(*np.percentile(pos, [1, 99.5])) if pos.size else None
    im = ax.imshow(img, cmap="magma", norm=norm, origin="upper")
    fig.colorbar(im, ax=ax, label="mean counts per frame")
    cy, cx = root.attrs[S.ATTR_BEAM_CENTRE]
    cal = float(root.attrs[S.ATTR_K_CALIBRATION])
    ax.plot([cx], [cy], "c+", ms=10)
    t = np.linspace(0, 2 * np.pi, 361)
    for e in list(root[S.Q_LO].values) + [float(root[S.Q_HI].values[-1])]:
        ax.plot(cx + e / cal * np.cos(t), cy + e / cal * np.sin(t), color="w", lw=0.4, alpha=0.6)
    ax.set_xlim(-0.5, img.shape[1] - 0.5)
    ax.set_ylim(img.shape[0] - 0.5, -0.5)
    ax.set_title(f"mean pattern\nbeam centre ({cy:.2f}, {cx:.2f}) px ({root.attrs.get('beam_centre_from')})",
                 fontsize=8)
    return fig


def write_diffraction_report(results_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``profiles.png`` (tau, beta, I vs q), ``g2_rings.png``, ``pattern.png``, ``summary.json``, ``report.md``
    and ``report.html`` of a diffraction results store, written into ``out_dir`` (replaced as a whole)."""
    from ..store.paths import check_apart, replacing_folder

    check_apart(out_dir, [results_path], what="report folder")
    root, camera = open_diffraction(results_path)
    with replacing_folder(out_dir) as tmp:
        figures = {"profiles.png": "τ(q), β(q) (hollow: fit ok but not reliable) and I(q) with standard errors",
                   "g2_rings.png": "ring-averaged g2 with their KWW fits",
                   "pattern.png": "mean diffraction pattern, beam centre and ring edges"}
        plot_profiles(root).savefig(tmp / "profiles.png", dpi=120)
        plot_ring_fits(root).savefig(tmp / "g2_rings.png", dpi=120)
        plot_pattern(root, camera).savefig(tmp / "pattern.png", dpi=110)
        a = root.attrs
        rows = summary_rows(root)
        summary = {"results": os.path.abspath(results_path), "mode": MODE, "series": a.get("series"),
                   "frames": a.get("n_frames"), "frame_time_s": a.get(S.ATTR_FRAME_TIME),
                   "k_calibration_nm-1_per_px": a.get(S.ATTR_K_CALIBRATION),
                   "beam_centre_px": a.get(S.ATTR_BEAM_CENTRE), "beam_centre_from": a.get("beam_centre_from"),
                   "errors": a.get("errors"), "rings": rows, "figures": figures}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        head = ["| q (nm⁻¹) | pixels | τ (s) | β | contrast | I(q) | fit | reliability |",
                "|---|---|---|---|---|---|---|---|"]
        fmt = (lambda x, e=None: "–" if x is None else (f"{x:.4g}" if e is None else f"{x:.4g} ± {e:.2g}"))
        body = [f"| {fmt(r['q_mean'])} | {r['n_pixels']} | {fmt(r['tau_s'], r['tau_err_s'] or 0)} | "
                f"{fmt(r['beta'], r['beta_err'] or 0)} | {fmt(r['contrast'])} | "
                f"{fmt(r['intensity'], r['intensity_err'] or 0)} | {r['status']} | {', '.join(r['reliability'])} |"
                for r in rows]
        md = [f"# Diffraction mode: {Path(results_path).name}", "",
              f"{a.get('n_frames')} frames of {a.get(S.ATTR_FRAME_TIME)} s; camera {a.get(S.ATTR_K_CALIBRATION)} "
              f"nm⁻¹/pixel; beam centre {a.get(S.ATTR_BEAM_CENTRE)} px ({a.get('beam_centre_from')}); "
              f"errors: {a.get('errors')}.", ""]
        md += [f"![{cap}]({name})\n\n*{cap}*\n" for name, cap in figures.items()] + head + body
        (tmp / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
        html = ["<!doctype html><meta charset='utf-8'><title>ecm_dask diffraction report</title>",
                "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td,th{padding:2px 8px;"
                "border-bottom:1px solid #ddd}</style>", f"<h1>Diffraction mode: {Path(results_path).name}</h1>",
                f"<p>{md[2]}</p>"]
        html += [f"<figure><img src='{n}' alt='{c}'><figcaption>{c}</figcaption></figure>" for n, c in figures.items()]
        html.append("<table><tr>" + "".join(f"<th>{h.strip()}</th>" for h in head[0].strip("|").split("|")) + "</tr>")
        html += ["<tr>" + "".join(f"<td>{c.strip()}</td>" for c in line.strip("|").split("|")) + "</tr>" for line in body]
        html.append("</table>")
        (tmp / "report.html").write_text("\n".join(html), encoding="utf-8")
    return Path(out_dir) / "report.md"
