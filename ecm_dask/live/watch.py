"""``ecm-dask watch``: correlate every pixel while the camera records, and refit the maps as the series grows.

Each poll's new frames (:class:`~ecm_dask.live.source.FolderFrames`) go into the streaming multi-tau sums of every
pixel (:class:`~ecm_dask.kernels.streaming.MultiTauState`).  Every ``update_every`` seconds (and when the watch
ends) the sums become a ``g2.zarr`` exactly like the g2 stage's, and the run's own screen, fit and results stages
turn it into ``results.zarr`` (same contract as ``ecm-dask run --no-drift``), written atomically; the verdicts
(long enough? frames short enough?) go into its attributes and one terminal line.

Crash safety: the sums and the names of the frames in them are saved together, atomically (``state.npz`` in
``<output>.live``), at every update.  A watch started again on the same output loads them and continues with
the first frame file not in them: a frame is never lost (its file is still there) nor counted twice.

Not yet: drift correction while watching (frames are correlated as recorded; run the offline pipeline for
drift-corrected maps), Gatan per-frame DM4 trees and growing HDF5 files as sources, the live web page.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import InputError, ParameterError
from ..kernels.streaming import MultiTauState
from ..store.direct import new_file
from .source import FolderFrames, GrowingStack, open_live_source
from .windows import WindowTracker

STATE_FILE = "state.npz"
#: the reliability rules of the literature: a series >= 40 tau long, frames <= 0.1 tau apart
LONG_ENOUGH_TAUS = 40.0
FRAME_TAU = 0.1


def live_dir(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".live")


N_REFERENCE_FRAMES = 10


def _roi(roi) -> tuple[int, int, int, int]:
    """``"Y0:Y1,X0:X1"`` or a 4-tuple of whole pixels -> integers, checked (the frame size is not known yet: the
    frames' bounds are checked when the first frames arrive)."""
    from ..ops.regions import roi_from_text

    if isinstance(roi, str):
        roi = roi_from_text(roi, "--reference-roi (pixels)")
    try:
        vals = [float(v) for v in roi]
    except (TypeError, ValueError):
        vals = []
    if len(vals) != 4 or not all(np.isfinite(v) and v.is_integer() for v in vals):
        raise ParameterError(f"--reference-roi must be 4 whole pixel numbers Y0:Y1,X0:X1, got {roi!r}")
    y0, y1, x0, x1 = (int(v) for v in vals)
    if not (0 <= y0 < y1 and 0 <= x0 < x1) or min(y1 - y0, x1 - x0) < 8:
        raise ParameterError(f"--reference-roi {y0}:{y1},{x0}:{x1} must be a region of at least 8 x 8 pixels")
    return y0, y1, x0, x1


def _margin(max_shift) -> int:
    v = float(max_shift)
    if not (np.isfinite(v) and 0 < v <= 1000):
        raise ParameterError(f"--max-shift must be a positive number of pixels, got {max_shift}")
    return int(np.ceil(v))


@dataclass
class LiveDrift:
    """Drift while watching: each frame's shift against the mean of the first frames' reference window (the
    reference region plus ``margin`` pixels on every side), estimated as the frames arrive; whole-pixel shifts
    are undone before the frames enter the sums, as ``run`` undoes them (shift mode ``integer``)."""

    roi: tuple[int, int, int, int]
    margin: int
    ref: np.ndarray | None = None
    shift0: np.ndarray | None = None
    shifts: list = field(default_factory=list)  # (dy, dx) per frame in the sums
    peaks: list = field(default_factory=list)

    def window(self, stack: np.ndarray) -> np.ndarray:
        y0, y1, x0, x1 = self.roi
        m = self.margin
        return stack[:, y0 - m:y1 + m, x0 - m:x1 + m]

    def estimate(self, stack: np.ndarray) -> np.ndarray:
        from ..kernels.drift import shifts_against

        if self.ref is None:
            self.ref = self.window(stack[:N_REFERENCE_FRAMES]).mean(axis=0)
        raw, peaks = shifts_against(self.ref, self.window(stack), margin=(self.margin, self.margin),
                                    max_shift=float(self.margin))
        if self.shift0 is None:
            self.shift0 = raw[0].copy()
        out = raw - self.shift0
        if not self.shifts:
            out[0] = 0.0
        self.shifts.extend(out.tolist())
        self.peaks.extend(peaks.tolist())
        return out


def register_integer(stack: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Frames with whole-pixel drift undone: ``out[t, y, x] = stack[t, y + d_t, x + d_t']`` (d = shift rounded as
    the offline run rounds it); pixels whose source is outside the frame are 0 (and not covered, see
    :func:`ecm_dask.kernels.shift.coverage`)."""
    from ..kernels.shift import source_offsets

    d = source_offsets(shifts, "integer")[0]
    out = np.zeros_like(stack)
    _, ny, nx = stack.shape
    for t in range(stack.shape[0]):
        dy, dx = int(d[t, 0]), int(d[t, 1])
        ya, yb = max(0, -dy), min(ny, ny - dy)
        xa, xb = max(0, -dx), min(nx, nx - dx)
        if ya < yb and xa < xb:
            out[t, ya:yb, xa:xb] = stack[t, ya + dy:yb + dy, xa + dx:xb + dx]
    return out


@dataclass
class LiveRun:
    """The state of one watch: where frames come from, the sums, and what the last update said."""

    source: FolderFrames | GrowingStack
    output: Path
    frame_time_s: float
    pixel_size_nm: float
    points_per_octave: int = 8
    state: MultiTauState | None = None
    verdicts: dict = field(default_factory=dict)
    drift: LiveDrift | None = None
    window_frames: int = 200
    windows: WindowTracker | None = None
    timings: dict = field(default_factory=dict)
    published_frames: int = 0
    saved_frames: int = 0
    updates: int = 0
    pending: list = field(default_factory=list)  # frames used but not yet in the sums (drift reference not built)

    # ------------------------------------------------------------------ state on disk
    def save(self) -> None:
        folder = live_dir(self.output)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"folder": os.path.abspath(self.source.folder), "used": self.source.used[:self.n_frames],
                "drift": None if self.drift is None else {"roi": list(self.drift.roi), "margin": self.drift.margin},
                "frame_time_s": self.frame_time_s, "pixel_size_nm": self.pixel_size_nm,
                "points_per_octave": self.points_per_octave,
                "shape": list(self.source.shape or ()), "dtype": str(self.source.dtype)}
        arrays = self.state.to_dict() if self.state is not None else {}
        if self.windows is not None:
            meta["windows"] = {"frames": self.windows.frames, "stride": self.windows.stride,
                               "start": self.windows.start, "summary": self.windows.summary}
            if self.windows.state is not None:
                arrays.update({f"win_{k}": v for k, v in self.windows.state.to_dict().items()})
        if self.drift is not None and self.drift.ref is not None:
            arrays.update(drift_ref=self.drift.ref, drift_shift0=self.drift.shift0,
                          drift_shifts=np.asarray(self.drift.shifts).reshape(-1, 2),
                          drift_peaks=np.asarray(self.drift.peaks))
        # one file, replaced in one step: the sums and the list of frames in them change together
        with new_file(folder / STATE_FILE) as tmp, open(tmp, "wb") as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
            f.flush()
            os.fsync(f.fileno())
        self.saved_frames = self.n_frames

    @classmethod
    def resume_or_start(cls, folder: str, output: str | os.PathLike, *, frame_time_s: float, pixel_size_nm: float,
                        points_per_octave: int = 8, gap_polls: int = 3, reference_roi=None,
                        max_shift: float = 8.0, window_frames: int = 200, dataset: str | None = None) -> "LiveRun":
        output = Path(output)
        path = live_dir(output) / STATE_FILE
        src = open_live_source(folder, dataset=dataset, gap_polls=gap_polls)
        run = cls(source=src, output=output, frame_time_s=frame_time_s, pixel_size_nm=pixel_size_nm,
                  points_per_octave=points_per_octave, window_frames=int(window_frames))
        if reference_roi is not None:
            run.drift = LiveDrift(roi=_roi(reference_roi), margin=_margin(max_shift))
        if not path.is_file():
            return run
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arrays = {k: z[k] for k in z.files if k != "meta"}
        if meta["folder"] != src.folder:
            raise ParameterError(f"{output} holds a live run of {meta['folder']}, not of {folder}; choose another "
                                 f"output or delete {live_dir(output)}")
        for name, given in (("frame_time_s", frame_time_s), ("pixel_size_nm", pixel_size_nm),
                            ("points_per_octave", points_per_octave)):
            if not np.isclose(meta[name], given):
                raise ParameterError(f"{output}: the live run started with {name} = {meta[name]}, not {given}")
        saved = meta.get("drift")
        asked = None if run.drift is None else {"roi": list(run.drift.roi), "margin": run.drift.margin}
        if saved != asked:
            raise ParameterError(f"{output}: the live run started with drift {saved or 'off'}, not {asked or 'off'} "
                                 f"(--reference-roi, --max-shift)")
        if run.drift is not None and "drift_ref" in arrays:
            run.drift.ref = arrays.pop("drift_ref")
            run.drift.shift0 = arrays.pop("drift_shift0")
            run.drift.shifts = arrays.pop("drift_shifts").tolist()
            run.drift.peaks = arrays.pop("drift_peaks").tolist()
        src.used = list(meta["used"])
        if meta["shape"]:
            src.shape, src.dtype = tuple(meta["shape"]), np.dtype(meta["dtype"])
        if meta.get("windows") and src.shape:
            wm = meta["windows"]
            run.windows = WindowTracker(tuple(meta["shape"]), frames=int(wm["frames"]), stride=int(wm["stride"]),
                                        points_per_octave=points_per_octave, start=int(wm["start"]),
                                        summary=list(wm["summary"]))
            win = {k[4:]: arrays.pop(k) for k in list(arrays) if k.startswith("win_")}
            if win:
                run.windows.state = MultiTauState.from_dict(win)
        if arrays:
            run.state = MultiTauState.from_dict(arrays)
            run.saved_frames = run.state.n_frames
        if run.state is not None and run.state.n_frames != len(src.used):
            raise InputError(f"{path}: holds {run.state.n_frames} frames of sums but {len(src.used)} frame names; "
                             f"delete {live_dir(output)} to start the live run again")
        return run

    # ------------------------------------------------------------------ frames in
    def add(self, frames: list[tuple[str, np.ndarray]]) -> int:
        """Put new frames into the sums (with drift: once the reference frames are there); returns how many."""
        if not frames:
            return 0
        if self.drift is not None:
            self.pending.extend(frames)
            if self.drift.ref is None and len(self.pending) < N_REFERENCE_FRAMES:
                return 0
            frames, self.pending = self.pending, []
        stack = np.stack([f for _, f in frames])
        if self.state is None:
            ny, nx = stack.shape[1:]
            if self.drift is not None:
                y0, y1, x0, x1 = self.drift.roi
                m = self.drift.margin
                if y0 - m < 0 or x0 - m < 0 or y1 + m > ny or x1 + m > nx:
                    raise ParameterError(f"--reference-roi {y0}:{y1},{x0}:{x1} plus the {m}-pixel margin (--max-shift) "
                                         f"leaves the {ny} x {nx} frame; choose a region further inside")
            self.state = MultiTauState.empty(ny * nx, self.points_per_octave)
        if self.drift is not None:
            stack = register_integer(stack, self.drift.estimate(stack))
        if self.windows is None:
            self.windows = WindowTracker(stack.shape[1:], frames=self.window_frames,
                                         points_per_octave=self.points_per_octave)
        self.windows.add(stack, self.n_frames)
        self.state.push(stack.reshape(stack.shape[0], -1), threads=os.cpu_count() or 1)
        return stack.shape[0]

    @property
    def n_frames(self) -> int:
        return 0 if self.state is None else self.state.n_frames

    # ------------------------------------------------------------------ g2 and maps
    def g2_dataset(self):
        """The sums so far as the g2 stage's dataset (same variables, coordinates and attributes)."""
        import xarray as xr

        from ..kernels.g2 import PIXEL_OUTSIDE
        from ..kernels.shift import coverage
        from ..ops.correlation import label_g2
        from ..store.series import series_coords

        ny, nx = self.source.shape
        r = self.state.result()
        if self.drift is not None:  # pixels whose source left the frame in some frame: as the g2 stage marks them
            out = ~coverage((ny, nx), np.asarray(self.drift.shifts), "integer").reshape(-1)
            r.g2[out], r.g2_lag0[out], r.mean[out] = np.nan, np.nan, np.nan
            r.status[out] = PIXEL_OUTSIDE
        coords = series_coords(0, ny, nx, self.frame_time_s, self.pixel_size_nm)
        coords = {S.Y: coords[S.Y], S.X: coords[S.X]}
        ds = xr.Dataset({
            "g2": ((S.Y, S.X, S.LAG), r.g2.reshape(ny, nx, -1)),
            "g2_lag0": ((S.Y, S.X), r.g2_lag0.reshape(ny, nx)),
            "mean_intensity": ((S.Y, S.X), r.mean.reshape(ny, nx).astype(np.float32)),
            "status": ((S.Y, S.X), r.status.reshape(ny, nx)),
        }, coords=coords)
        n_t = self.n_frames
        sat = self.state.saturation
        return label_g2(ds, r.lag, r.pairs, self.frame_time_s, {
            "read_path": "live (streaming multi-tau)", "estimator": "multitau", "normalization": "symmetric",
            "points_per_octave": int(self.points_per_octave), "max_lag_frames": int(n_t // 2),
            "frame_time_s": float(self.frame_time_s), "n_frames": int(n_t), "n_bad_frames": 0, "pool": 1,
            "pool_mode": "average", "shift_mode": "none" if self.drift is None else "integer", "saturation": float("nan") if sat is None else float(sat),
            "series": os.path.abspath(self.source.folder)})

    def drift_dataset(self):
        """The shifts so far as the drift stage's dataset (``shift``, ``shift_nm``, ``peak``, ``outlier``)."""
        from ..ops.drift import drift_dataset

        sh = np.asarray(self.drift.shifts, dtype=np.float64).reshape(-1, 2)
        n = sh.shape[0]
        time = (S.TIME, np.arange(n) * self.frame_time_s, S.coord_attrs(S.TIME, "time"))
        return drift_dataset(sh, self.drift.peaks, np.zeros(n, bool), time, self.pixel_size_nm, {
            "reference_roi_px": list(self.drift.roi), "margin_px": self.drift.margin,
            "reference": f"mean of the first {N_REFERENCE_FRAMES} frames (live)", "upsample": 20, "window": "hann",
            "max_shift_px": float(self.drift.margin), "smooth_frames": 0, "n_outliers": 0, "nonfinite_frames": [],
            "dead_pixels_in_window": 0})

    def snapshot(self) -> dict:
        """Everything an update publishes, taken from the sums now (in the thread that adds frames): the g2 and
        drift datasets, the finished stationarity windows, the drift verdict and the frame count."""
        if self.n_frames < 4:
            raise InputError(f"{self.source.folder}: {self.n_frames} frame(s) so far; a live update needs at least 4")
        t0 = time.perf_counter()
        snap = {"g2": self.g2_dataset(), "n_frames": self.n_frames, "used": len(self.source.used),
                "last_frame": self.source.used[self.n_frames - 1], "windows": self.windows.take_done(),
                "drift": None if self.drift is None else self.drift_dataset(),
                "drift_verdict": None if self.drift is None else drift_verdict(self.drift, self.source.shape)}
        snap["g2_s"] = round(time.perf_counter() - t0, 2)
        return snap

    def publish(self, snap: dict, *, progress: bool = False) -> Path:
        """Write a snapshot's g2, screen, fit and ``results.zarr`` (each store atomically) and the live page; may
        run in a thread of its own while frames keep being added.  The seconds of each step go to ``timings``."""
        import dask

        from ..pipeline.config import RunConfig
        from ..pipeline.fit import run_fit
        from ..pipeline.results import assemble_results
        from ..pipeline.run import stage_dir
        from ..pipeline.screen import open_screen, run_screen
        from ..store.blocks import write_blocks, write_dataset
        from ..store.integrity import open_checked
        from .page import write_page

        work = stage_dir(self.output)
        work.mkdir(parents=True, exist_ok=True)
        config = RunConfig(series=os.path.abspath(self.source.folder), drift=self.drift is not None,
                           reference_roi=None if self.drift is None else list(self.drift.roi))
        timings: dict[str, float] = {"g2": snap["g2_s"]}
        clock = [time.perf_counter()]

        def lap(name: str) -> None:
            now = time.perf_counter()
            timings[name] = round(now - clock[0], 2)
            clock[0] = now

        ds = snap["g2"].chunk({S.Y: 128, S.X: 128, S.LAG: -1})
        with dask.config.set(scheduler="threads"):
            write_blocks(ds, work / "g2.zarr", key=None, overwrite=True, progress=progress,
                         label=f"live g2 of {snap['n_frames']} frames")
            drift_path = None
            if snap["drift"] is not None:
                drift_path = work / "drift.zarr"
                write_dataset(snap["drift"], drift_path, overwrite=True, progress=False, label="live drift")
            lap("write g2")
            run_screen(work / "g2.zarr", work / "screen.zarr", drift_path=drift_path, surface_nm=config.surface_nm,
                       overwrite=True)
            lap("screen")
            run_fit(work / "g2.zarr", work / "maps.zarr", overwrite=True, progress=progress,
                    screen_path=work / "screen.zarr", pooling=dict(config.pooling), **config.fit)
            lap("fit")
            regions, artefacts = open_screen(work / "screen.zarr")  # read once for the verdicts and the windows
            found = verdicts(open_checked(work / "maps.zarr"), regions, artefacts, snap["n_frames"], self.frame_time_s)
            if snap["drift_verdict"] is not None:
                found["drift"] = snap["drift_verdict"]
            self.windows.summarise(regions[S.REGION].values, self.frame_time_s,
                                   snap["windows"])
            found["stationarity"] = self.windows.verdict()
            self.verdicts = found
            lap("verdicts")
            out = assemble_results(self.output, work / "maps.zarr", work / "g2.zarr", drift_path,
                                   screen=work / "screen.zarr", overwrite=True,
                                   attrs={S.ATTR_RUN_CONFIG: config.as_dict(), "live": json.dumps({
                                       "n_frames": snap["n_frames"], "frames_used": snap["used"],
                                       "last_frame": snap["last_frame"], "verdicts": found})})
            lap("results")
        self.updates += 1
        self.published_frames = snap["n_frames"]
        write_page(live_dir(self.output) / "page", self, out, drift_path, update=self.updates)
        lap("page")
        self.timings = timings
        return out

    def update(self, *, progress: bool = False, checkpoint: bool = True) -> Path:
        """Snapshot and publish now, in this thread, then (``checkpoint``) save the state."""
        out = self.publish(self.snapshot(), progress=progress)
        if checkpoint:
            t0 = time.perf_counter()
            self.save()
            self.timings["checkpoint"] = round(time.perf_counter() - t0, 2)
        return out


class _Publisher:
    """One update at a time in a background thread; its outcome is read by the watch loop."""

    def __init__(self, run: LiveRun):
        self.run, self.thread, self.error, self.took = run, None, None, 0.0

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, snap: dict) -> None:
        import threading

        def work():
            t0 = time.perf_counter()
            try:
                self.run.publish(snap)
            except BaseException as err:  # noqa: BLE001 - handed to the watch loop
                self.error = err
            self.took = snap["g2_s"] + time.perf_counter() - t0

        self.error = None
        self.thread = threading.Thread(target=work, name="ecm-dask live update", daemon=True)
        self.thread.start()

    def finished(self) -> bool:
        """True once after an update ended (then ``error`` holds its exception, if any)."""
        if self.thread is not None and not self.thread.is_alive():
            self.thread.join()
            self.thread = None
            return True
        return False

    def wait(self) -> bool:
        if self.thread is None:
            return False
        self.thread.join()
        return self.finished()


def verdicts(maps, regions, artefacts, n_frames: int, frame_time_s: float) -> dict:
    """Per region (bulk, surface): how many ok pixels have a series >= 40 tau and frames <= 0.1 tau apart, and how
    long until the median pixel gets there at this frame time (``maps`` of the fit stage, ``regions`` and
    ``artefacts`` of the screen stage)."""
    tau = np.asarray(maps["tau"].values, dtype=np.float64)
    # fitted ok, and neither an artefact (static, drift-swept) nor outside the wire
    ok = (np.asarray(maps["status"].values) == 0) & (np.asarray(artefacts["artefact"].values) == 0)
    region = np.asarray(regions[S.REGION].values)
    length = n_frames * frame_time_s
    out: dict = {"series_s": round(length, 3)}
    for code in (S.REGION_BULK, S.REGION_SURFACE):
        name = S.REGION_NAMES[code]
        sel = ok & (region == code) & np.isfinite(tau)
        n = int(sel.sum())
        if not n:
            out[name] = {"ok_pixels": 0, "verdict": f"{name}: no pixel fitted yet"}
            continue
        t = tau[sel]
        med = float(np.median(t))
        long_frac = float(np.mean(length >= LONG_ENOUGH_TAUS * t))
        fine_frac = float(np.mean(frame_time_s <= FRAME_TAU * t))
        need = LONG_ENOUGH_TAUS * med
        left = max(0.0, need - length)
        words = (f"{name}: median tau {med:.3g} s; {100 * long_frac:.0f} % of {n} pixels have >= 40 tau"
                 + (f"; about {left:.0f} s more for the median pixel" if left > 0 else "; long enough")
                 + ("" if fine_frac >= 0.5 else f"; frames too slow for {100 * (1 - fine_frac):.0f} % (> 0.1 tau)"))
        out[name] = {"ok_pixels": n, "median_tau_s": med, "fraction_long_enough": long_frac,
                     "fraction_frame_time_ok": fine_frac, "seconds_to_go": left, "verdict": words}
    return out


def drift_verdict(drift: LiveDrift, frame_shape) -> dict:
    """How far the sample moved, how much of the frame is still in view in every frame, and how close the drift is
    to the margin it may use (``--max-shift``)."""
    from ..kernels.shift import coverage

    sh = np.asarray(drift.shifts).reshape(-1, 2)
    now = sh[-1]
    covered = float(coverage(tuple(frame_shape), sh, "integer").mean())
    used = float(np.abs(sh).max() / drift.margin)
    words = f"drift now ({now[0]:+.1f}, {now[1]:+.1f}) px, {100 * covered:.0f} % of the frame in view throughout"
    if used >= 0.8:
        words += f"; the drift is at {100 * used:.0f} % of --max-shift {drift.margin}: re-centre the sample"
    return {"shift_px": now.tolist(), "covered_fraction": covered, "max_shift_used": used, "verdict": words}


def watch(folder: str | os.PathLike, output: str | os.PathLike, *, frame_time_s: float, pixel_size_nm: float,
          points_per_octave: int = 8, update_every: float = 30.0, poll_s: float = 0.5, stop_after: int | None = None,
          idle_stop: float | None = None, gap_polls: int = 3, reference_roi=None, max_shift: float = 8.0,
          serve: int | None = None, window_frames: int = 200, checkpoint_every: float = 300.0,
          series: str | os.PathLike | None = None, dataset: str | None = None, echo=print) -> LiveRun:
    """Watch ``folder`` until ``stop_after`` frames were used or no frame came for ``idle_stop`` seconds (or
    Ctrl-C), updating ``output`` every ``update_every`` seconds and at the end; returns the live run.  The live
    page is written to ``<output>.live/page/index.html`` at every update; ``serve`` (a port, 0: any free one)
    also serves it on 127.0.0.1 while the watch runs.  Maps are made in a background thread from a snapshot of the
    sums while frames keep being added.  The state is saved every ``checkpoint_every`` seconds (between frames,
    before an update) and at the end; a watch stopped hard re-reads the frame files after the last save.
    ``series``: when the watch ends (not on Ctrl-C), the frames it used are ingested into that series store (the
    usual layout), so ``ecm-dask run`` can follow with the offline pipeline."""
    from ..schema import check_frame_time, check_pixel_size

    frame_time_s = check_frame_time(frame_time_s, "--frame-time")
    pixel_size_nm = check_pixel_size(pixel_size_nm, "--pixel-size")
    if not os.path.exists(folder) and not str(folder).lower().endswith((".tif", ".tiff", ".h5", ".hdf5", ".nxs")):
        raise InputError(f"{folder}: not a folder; watch needs the folder the camera writes frames into (or a growing "
                         "multi-page TIFF or HDF5 file)")
    if isinstance(window_frames, bool) or not isinstance(window_frames, (int, np.integer)) or window_frames < 16:
        raise ParameterError(f"--window must be a whole number of frames >= 16, got {window_frames!r}")
    for name, v in (("--update-every", update_every), ("--poll", poll_s), ("--checkpoint-every", checkpoint_every)):
        if not (np.isfinite(v) and v > 0):
            raise ParameterError(f"{name} must be a positive number of seconds, got {v}")
    run = LiveRun.resume_or_start(os.fspath(folder), output, frame_time_s=frame_time_s, pixel_size_nm=pixel_size_nm,
                                  points_per_octave=points_per_octave, gap_polls=gap_polls,
                                  reference_roi=reference_roi, max_shift=max_shift, window_frames=window_frames,
                                  dataset=dataset)
    if run.n_frames:
        echo(f"resuming: {run.n_frames} frames already in the sums (last {run.source.used[-1]})")
    server = None
    if serve is not None:
        from .page import serve as serve_page

        server = serve_page(live_dir(output) / "page", serve)
        echo(f"live page: http://127.0.0.1:{server.server_address[1]}/ (this machine only)")
    last_update = time.monotonic()
    last_frame = time.monotonic()
    last_save = time.monotonic()  # the first save after checkpoint_every: until then a restart re-reads the files
    n_reports = 0
    pub = _Publisher(run)

    def outcome(final: bool) -> None:
        if pub.error is None:
            echo(status_line(run, pub.took))
        elif isinstance(pub.error, InputError) and not final:  # e.g. nothing to map yet: keep correlating
            echo(f"{run.published_frames or run.n_frames} frames: no maps yet ({pub.error})")
        else:
            raise pub.error

    try:
        while True:
            before = len(run.source.used)
            new = run.source.poll()
            for text in run.source.reports[n_reports:]:
                echo(f"note: {text}")
            n_reports = len(run.source.reports)
            if stop_after is not None:
                new = new[:max(0, stop_after - before)]
                del run.source.used[before + len(new):]
            if new:
                run.add(new)
                last_frame = time.monotonic()
            if pub.finished():
                outcome(final=False)
            done = (stop_after is not None and len(run.source.used) >= stop_after) or (
                idle_stop is not None and time.monotonic() - last_frame > idle_stop)
            if done:
                break
            if (not pub.busy and run.n_frames > run.saved_frames
                    and time.monotonic() - last_save >= checkpoint_every):
                run.save()  # here, between frames: the sums and the frame names agree
                last_save = time.monotonic()
            if (not pub.busy and run.n_frames >= 4 and run.n_frames > run.published_frames
                    and time.monotonic() - last_update >= update_every):
                try:
                    pub.start(run.snapshot())  # maps made in the background while frames keep coming
                except InputError as err:
                    echo(f"{run.n_frames} frames: no maps yet ({err})")
                last_update = time.monotonic()
            time.sleep(poll_s)
        if pub.wait():
            outcome(final=False)
        if run.n_frames >= 4 and run.n_frames > run.published_frames:  # the last frames: published and saved
            t0 = time.perf_counter()
            run.update(checkpoint=True)
            echo(status_line(run, time.perf_counter() - t0))
        elif run.n_frames >= 4:
            run.save()
        if series is not None and run.n_frames and isinstance(run.source, GrowingStack):
            echo(f"series: not written (ingest {run.source.path} once it is complete: ecm-dask ingest)")
        elif series is not None and run.n_frames and any(
                "/" in n or not n.lower().endswith((".tif", ".tiff")) for n in run.source.used):
            echo("series: not written (frames in sub-folders or DM files: `ecm-dask ingest` takes TIFF folders)")
        elif series is not None and run.n_frames:
            from ..pipeline.ingest import ingest

            files = [os.path.join(os.fspath(folder), n) for n in run.source.used[:run.n_frames]]
            path = ingest(files, series, frame_time_s=frame_time_s, pixel_size_nm=pixel_size_nm,
                          overwrite=True, progress=False)
            echo(f"series: {run.n_frames} frames -> {path} (ecm-dask run {path} -o results.zarr for the offline maps)")
    except KeyboardInterrupt:
        pub.wait()
        if run.n_frames >= 4:
            if run.n_frames > run.published_frames:
                run.update()
                echo(status_line(run, 0.0))
            else:
                run.save()
        raise
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return run


def status_line(run: LiveRun, took_s: float) -> str:
    v = run.verdicts
    parts = [f"{run.published_frames} frames ({v.get('series_s', 0):.0f} s)"]
    for name in ("bulk", "surface", "drift", "stationarity"):
        if name in v:
            parts.append(v[name]["verdict"])
    steps = ", ".join(f"{k} {v:.1f}" for k, v in run.timings.items())
    return " | ".join(parts) + f"  [update {took_s:.1f} s" + (f": {steps}]" if steps else "]")
