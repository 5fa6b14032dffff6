"""Scan mode of ``ecm-dask run``: a STEM scan repeated in time, ``I(time, y, x, ky, kx)`` (a diffraction pattern
at every probe position of every frame) -> maps of ``tau``, ``beta``, contrast per q ring at every probe position,
and ``I(q)`` per position.

The input is a 5-D array in a Zarr store (an array, or ``--dataset`` inside a group), an HDF5 file
(``--dataset``) or a ``.npy`` file, read lazily; ``--axes`` names its stored axis order (default
``time,y,x,ky,kx``).  Frame time, k calibration and the scan step come from the command line.  Everything is
dask: one pass for the mean patterns, one for the ring g2 (:func:`ecm_dask.analysis.stem.stem_scan_g2`: a task
per block of probe positions holding all their frames, correlating one position after the other); the beam
centre (``--beam-centre``, else found from the mean pattern of the whole scan) and the usable pixels are shared
by all positions.  The fits, reliability flags and result store follow :mod:`ecm_dask.pipeline.diffraction`
with the probe position dims ``(y, x)`` in front; written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import InputError, ParameterError
from .diffraction import (
    DiffractionConfig,
    camera_coords,
    camera_setup,
    camera_variables,
    load_mask,
    ring_results,
    write_mode_results,
)

__all__ = ["open_scan", "run_scan", "SCAN_AXES"]

MODE = "scan"
SCAN_AXES = (S.TIME, S.Y, S.X, S.KY, S.KX)


class _H5Array:
    """A lazy, picklable view of an HDF5 dataset for ``dask.array.from_array``: opens the file per read (so a
    task on another worker process can read it)."""

    def __init__(self, path: str, name: str):
        import h5py

        self.path, self.name = path, name
        with h5py.File(path, "r") as f:
            d = f[name]
            self.shape, self.dtype = tuple(d.shape), d.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[self.name][key]


def _parse_axes(axes) -> tuple[str, ...]:
    if axes is None:
        return SCAN_AXES
    names = tuple(a.strip() for a in (axes.split(",") if isinstance(axes, str) else axes))
    if sorted(names) != sorted(SCAN_AXES):
        raise ParameterError(f"--axes must name {', '.join(SCAN_AXES)} once each in the stored order, got {axes!r}")
    return names


def open_scan(path: str | os.PathLike, *, dataset: str | None = None, axes=None):
    """The 5-D scan as a lazy dask array in the order ``(time, y, x, ky, kx)``."""
    import dask.array as da

    p = Path(path)
    order = _parse_axes(axes)
    if not p.exists():
        raise InputError(f"{p}: no such file or store")
    try:
        if p.suffix.lower() == ".npy":
            arr = da.from_array(np.load(p, mmap_mode="r", allow_pickle=False), chunks="auto")
        elif p.is_dir():
            import zarr

            node = zarr.open(str(p), mode="r")
            if dataset:
                node = node[dataset.strip("/")]
            if not hasattr(node, "shape"):
                raise InputError(f"{p} is a Zarr group: name the 5-D array inside it with --dataset")
            arr = da.from_zarr(node)
        else:
            if not dataset:
                raise InputError(f"{p}: name the 5-D dataset inside the HDF5 file with --dataset")
            src = _H5Array(str(p), dataset)
            arr = da.from_array(src, chunks="auto", meta=np.empty((0,) * src.ndim, dtype=src.dtype))
    except InputError:
        raise
    except KeyError:
        raise InputError(f"{p}: no dataset {dataset!r}") from None
    except Exception as err:  # noqa: BLE001 - any reader failure: one line naming the file
        raise InputError(f"{p}: cannot read it as a 5-D scan ({type(err).__name__}: {err})") from None
    if arr.ndim != 5:
        raise InputError(f"{p}{' ' + dataset if dataset else ''}: a scan series is 5-D ({', '.join(SCAN_AXES)}), "
                         f"this array has shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{p}: intensities must be integer or floating counts, got {arr.dtype}")
    arr = arr.transpose([order.index(a) for a in SCAN_AXES])
    if arr.shape[0] < 2:
        raise InputError(f"{p}: {arr.shape[0]} frame(s); a correlation needs at least 2")
    return arr


def _ring_means_block(block, *, labels, n_rings):
    """(py, px, ky, kx) mean patterns -> (py, px, n_rings, 3): ring mean, its standard error, pixel count."""
    from ..kernels.rings import ring_average

    out = np.empty(block.shape[:2] + (n_rings, 3))
    for i in range(block.shape[0]):
        for j in range(block.shape[1]):
            mean, sem, count = ring_average(block[i, j], labels, n_rings)
            out[i, j, :, 0], out[i, j, :, 1], out[i, j, :, 2] = mean, sem, count
    return out


def run_scan(input_path: str | os.PathLike, output: str | os.PathLike, config: DiffractionConfig, *,
             frame_time_s: float, scan_step_nm: float, dataset: str | None = None, axes=None,
             overwrite: bool = False, progress: bool = True) -> Path:
    """Analyse a 5-D scan series; write ``output`` (a DataTree: maps on ``(y, x, q)``, see the module doc)."""
    import xarray as xr

    from ..analysis.stem import fit_rings, stem_scan_g2
    from ..compute import run
    from ..store.blocks import check_replaceable
    from ..store.paths import check_apart
    from ..store.writer import provenance
    from .config import _finite
    from .lock import run_lock

    frame_time_s = _finite(frame_time_s, "frame time (--frame-time, s)", positive=True)
    scan_step_nm = _finite(scan_step_nm, "scan step (--scan-step, nm)", positive=True)
    if config.k_calibration is None:
        raise ParameterError("scan mode needs --k-calibration (nm^-1 per camera pixel)")
    cal = float(config.k_calibration)
    output = Path(output)
    check_apart(output, [input_path])
    check_replaceable(output, overwrite)
    arr = open_scan(input_path, dataset=dataset, axes=axes)
    n_t, ny, nx, nky, nkx = (int(n) for n in arr.shape)
    config.g2.check_series(n_t, nky, nkx, frame_time_s)
    usable = np.ones((nky, nkx), dtype=bool) if config.mask is None else load_mask(config.mask, (nky, nkx))
    with run_lock(output):
        per_position = arr.mean(axis=0, dtype=np.float64)  # (y, x, ky, kx), lazy
        (mean,) = run([per_position.mean(axis=(0, 1))], progress=progress, label=f"mean pattern of {input_path}")
        centre, how, usable = camera_setup(mean, usable, config, cal, None, input_path)
        coords = {S.TIME: np.arange(n_t) * frame_time_s, S.Y: np.arange(ny) * scan_step_nm,
                  S.X: np.arange(nx) * scan_step_nm}
        scan = xr.DataArray(arr, dims=SCAN_AXES, coords=coords,
                            attrs={S.ATTR_FRAME_TIME: frame_time_s, S.ATTR_K_CALIBRATION: cal,
                                   S.ATTR_BEAM_CENTRE: [float(centre[0]), float(centre[1])]})
        g = config.g2
        from .diffraction import _bins_arg

        ring_g2 = stem_scan_g2(scan, q_bins=_bins_arg(config.q_bins), mask=usable, n_sectors=config.n_sectors,
                               method=g.method, points_per_octave=g.points_per_octave, max_lag=g.max_lag,
                               normalization=g.normalization,
                               bad_frames=g.bad_frames.mask(n_t) if g.bad_frames else None)
        n_rings = ring_g2.sizes[S.Q]
        labels = ring_g2["ring"].values  # the rings stem_scan_g2 averaged over
        whole = per_position.rechunk({2: -1, 3: -1})
        prof = whole.map_blocks(_ring_means_block, dtype=np.float64, drop_axis=[2, 3], new_axis=[2, 3],
                                chunks=whole.chunks[:2] + ((n_rings,), (3,)), labels=labels, n_rings=n_rings)
        names = list(ring_g2.data_vars)
        values = run([ring_g2[n].data for n in names] + [prof], progress=progress,
                     label=f"ring g2 of {ny} x {nx} probe positions of {input_path}")
        ring_g2 = ring_g2.copy(data=dict(zip(names, values[:-1])))
        prof = values[-1]
        fit = fit_rings(ring_g2, errors=config.errors)  # "auto": jackknife with sectors, else the fit covariance
        dims = (S.Y, S.X, S.Q)
        root = ring_results(
            fit, ring_g2,
            xr.Variable(dims, prof[..., 0], {S.ATTR_LONG_NAME: "ring-averaged intensity at each position",
                                             S.ATTR_UNITS: "counts"}),
            xr.Variable(dims, prof[..., 1], {S.ATTR_LONG_NAME: "standard error of the ring mean (scatter)",
                                             S.ATTR_UNITS: "counts"}),
            frame_time=frame_time_s, n_frames=n_t, attrs={
                S.ATTR_SERIES_MODE: MODE, S.ATTR_K_CALIBRATION: cal,
                S.ATTR_BEAM_CENTRE: [float(centre[0]), float(centre[1])], "beam_centre_from": how,
                "scan_step_nm": scan_step_nm, S.ATTR_PIXEL_SIZE: scan_step_nm, "input": os.path.abspath(input_path),
                "dataset": dataset, "axes": ",".join(_parse_axes(axes)), S.ATTR_RUN_CONFIG: config.as_dict(),
                S.ATTR_PROVENANCE: provenance()})
        root = root.assign_coords({d: (d, coords[d], S.coord_attrs(d, d)) for d in (S.Y, S.X)})
        write_mode_results(output, root, camera_variables(mean, usable, labels),
                           camera_coords((nky, nkx), centre, cal), overwrite=overwrite)
    return output


def open_scan_results(path: str | os.PathLike):
    """``(maps, camera)`` of a scan results store, loaded (StoreError if it is something else or damaged)."""
    from .diffraction import open_mode_results

    return open_mode_results(path, MODE)


def scan_summary(path) -> str:
    """Terminal lines: geometry, and per ring the median tau and beta over the positions with reliable fits."""
    root, _ = open_scan_results(path)
    a = root.attrs
    good = (root[S.STATUS].values == 0) & (root[S.QUALITY].values == 0)
    lines = [f"scan: {root.sizes[S.Y]} x {root.sizes[S.X]} positions ({a['scan_step_nm']} nm apart), "
             f"{a['n_frames']} frames x {a[S.ATTR_FRAME_TIME]} s, beam centre ({a[S.ATTR_BEAM_CENTRE][0]:.2f}, "
             f"{a[S.ATTR_BEAM_CENTRE][1]:.2f}) px ({a['beam_centre_from']})",
             "  q (nm^-1)  reliable positions   median tau (s)   median beta"]
    for i in range(root.sizes[S.Q]):
        sel = good[:, :, i]
        tau = np.median(root[S.TAU].values[:, :, i][sel]) if sel.any() else float("nan")
        beta = np.median(root[S.BETA].values[:, :, i][sel]) if sel.any() else float("nan")
        lines.append(f"  {float(root[S.Q_MEAN][i]):9.3f}  {int(sel.sum()):7d} of {sel.size:<7d}  {tau:14.4g}   "
                     f"{beta:11.3f}")
    return "\n".join(lines)


def write_scan_report(results_path, out_dir) -> Path:
    """``tau_maps.png`` (tau at four rings, reliable fits only), ``profiles.png`` (median tau(q) and beta(q) over
    the positions with their quartiles, mean I(q)), ``summary.txt``; into ``out_dir`` (replaced as a whole)."""
    from matplotlib.colors import LogNorm

    from ..plot import _figure
    from ..store.paths import check_apart, replacing_folder

    check_apart(out_dir, [results_path], what="report folder")
    root, _ = open_scan_results(results_path)
    with replacing_folder(out_dir) as tmp:
        good = (root[S.STATUS].values == 0) & (root[S.QUALITY].values == 0)
        tau = np.where(good, root[S.TAU].values, np.nan)
        n_q = root.sizes[S.Q]
        pick = np.unique(np.linspace(0, n_q - 1, min(4, n_q)).round().astype(int))
        fig = _figure((3.2 * len(pick) + 1, 3.4))
        axes = np.atleast_1d(fig.subplots(1, len(pick)))
        fin = tau[np.isfinite(tau)]
        norm = LogNorm(*np.percentile(fin, [2, 98])) if fin.size > 1 and fin.min() > 0 else None
        h = 0.5 * float(root.attrs["scan_step_nm"])  # pixel edges, not centres
        ext = [float(root[S.X][0]) - h, float(root[S.X][-1]) + h, float(root[S.Y][-1]) + h, float(root[S.Y][0]) - h]
        for ax, i in zip(axes, pick):
            im = ax.imshow(tau[:, :, i], norm=norm, cmap="viridis", extent=ext)
            ax.set_title(f"τ at q = {float(root[S.Q_MEAN][i]):.2f} nm⁻¹\n(blank: no reliable fit)", fontsize=8)
            ax.set_xlabel("x (nm)")
        axes[0].set_ylabel("y (nm)")
        fig.colorbar(im, ax=list(axes), label="τ (s), reliable fits")
        fig.savefig(tmp / "tau_maps.png", dpi=110)
        fig = _figure((6.0, 6.0))
        a1, a2, a3 = fig.subplots(3, 1, sharex=True)
        q = root[S.Q_MEAN].values
        for ax, name, arr in ((a1, "τ (s)", tau), (a2, "β", np.where(good, root[S.BETA].values, np.nan))):
            flat = arr.reshape(-1, n_q)
            ok = np.isfinite(flat).any(axis=0)
            med = np.full(n_q, np.nan)
            lo, hi = med.copy(), med.copy()
            if ok.any():
                med[ok], lo[ok], hi[ok] = (np.nanpercentile(flat[:, ok], p, axis=0) for p in (50, 25, 75))
            ax.plot(q, med, "o-", ms=3)
            ax.fill_between(q, lo, hi, alpha=0.3, label="quartiles over positions")
            ax.set_ylabel(name)
        if np.isfinite(tau).any():
            a1.set_yscale("log")
            a1.legend(fontsize=7)
        else:
            a1.set_title("no reliable fit (see summary.txt: series too short or frames too far apart?)", fontsize=8)
        a3.plot(q, np.nanmean(root[S.INTENSITY].values.reshape(-1, n_q), axis=0), "k.-")
        a3.set_ylabel("mean I(q)")
        a3.set_xlabel("q (nm⁻¹)")
        fig.savefig(tmp / "profiles.png", dpi=110)
        (tmp / "summary.txt").write_text(scan_summary(results_path) + "\n")
    return Path(out_dir)
