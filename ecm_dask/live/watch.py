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
from .source import FolderFrames

STATE_FILE = "state.npz"
#: the reliability rules of the literature: a series >= 40 tau long, frames <= 0.1 tau apart
LONG_ENOUGH_TAUS = 40.0
FRAME_TAU = 0.1


def live_dir(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".live")


@dataclass
class LiveRun:
    """The state of one watch: where frames come from, the sums, and what the last update said."""

    source: FolderFrames
    output: Path
    frame_time_s: float
    pixel_size_nm: float
    points_per_octave: int = 8
    state: MultiTauState | None = None
    verdicts: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ state on disk
    def save(self) -> None:
        folder = live_dir(self.output)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{STATE_FILE}.{os.getpid()}.tmp"
        meta = {"folder": os.path.abspath(self.source.folder), "used": self.source.used,
                "frame_time_s": self.frame_time_s, "pixel_size_nm": self.pixel_size_nm,
                "points_per_octave": self.points_per_octave,
                "shape": list(self.source.shape or ()), "dtype": str(self.source.dtype)}
        arrays = self.state.to_dict() if self.state is not None else {}
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / STATE_FILE)  # the sums and the list of frames in them change together

    @classmethod
    def resume_or_start(cls, folder: str, output: str | os.PathLike, *, frame_time_s: float, pixel_size_nm: float,
                        points_per_octave: int = 8, gap_polls: int = 3) -> "LiveRun":
        output = Path(output)
        path = live_dir(output) / STATE_FILE
        src = FolderFrames(os.fspath(folder), gap_polls=gap_polls)
        run = cls(source=src, output=output, frame_time_s=frame_time_s, pixel_size_nm=pixel_size_nm,
                  points_per_octave=points_per_octave)
        if not path.is_file():
            return run
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arrays = {k: z[k] for k in z.files if k != "meta"}
        if meta["folder"] != os.path.abspath(folder):
            raise ParameterError(f"{output} holds a live run of {meta['folder']}, not of {folder}; choose another "
                                 f"output or delete {live_dir(output)}")
        for name, given in (("frame_time_s", frame_time_s), ("pixel_size_nm", pixel_size_nm),
                            ("points_per_octave", points_per_octave)):
            if not np.isclose(meta[name], given):
                raise ParameterError(f"{output}: the live run started with {name} = {meta[name]}, not {given}")
        src.used = list(meta["used"])
        if meta["shape"]:
            src.shape, src.dtype = tuple(meta["shape"]), np.dtype(meta["dtype"])
        if arrays:
            run.state = MultiTauState.from_dict(arrays)
        if run.state is not None and run.state.n_frames != len(src.used):
            raise InputError(f"{path}: holds {run.state.n_frames} frames of sums but {len(src.used)} frame names; "
                             f"delete {live_dir(output)} to start the live run again")
        return run

    # ------------------------------------------------------------------ frames in
    def add(self, frames: list[tuple[str, np.ndarray]]) -> int:
        if not frames:
            return 0
        stack = np.stack([f for _, f in frames])
        if self.state is None:
            ny, nx = stack.shape[1:]
            self.state = MultiTauState.empty(ny * nx, self.points_per_octave)
        self.state.push(stack.reshape(stack.shape[0], -1))
        return stack.shape[0]

    @property
    def n_frames(self) -> int:
        return 0 if self.state is None else self.state.n_frames

    # ------------------------------------------------------------------ g2 and maps
    def g2_dataset(self):
        """The sums so far as the g2 stage's dataset (same variables, coordinates and attributes)."""
        import xarray as xr

        from ..ops.correlation import label_g2
        from ..store.series import series_coords

        ny, nx = self.source.shape
        r = self.state.result()
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
            "pool_mode": "average", "shift_mode": "none", "saturation": float("nan") if sat is None else float(sat),
            "series": os.path.abspath(self.source.folder)})

    def update(self, *, progress: bool = False) -> Path:
        """Write g2, screen, fit and ``results.zarr`` for the frames so far (each store atomically)."""
        import dask

        from ..pipeline.config import RunConfig
        from ..pipeline.fit import run_fit
        from ..pipeline.results import assemble_results
        from ..pipeline.run import stage_dir
        from ..pipeline.screen import run_screen
        from ..store.blocks import write_blocks

        if self.n_frames < 4:
            raise InputError(f"{self.source.folder}: {self.n_frames} frame(s) so far; a live update needs at least 4")
        work = stage_dir(self.output)
        work.mkdir(parents=True, exist_ok=True)
        config = RunConfig(series=os.path.abspath(self.source.folder), drift=False)
        ds = self.g2_dataset()
        ds = ds.chunk({S.Y: 128, S.X: 128, S.LAG: -1})
        with dask.config.set(scheduler="threads"):
            write_blocks(ds, work / "g2.zarr", key=None, overwrite=True, progress=progress,
                         label=f"live g2 of {self.n_frames} frames")
            run_screen(work / "g2.zarr", work / "screen.zarr", surface_nm=config.surface_nm, overwrite=True)
            run_fit(work / "g2.zarr", work / "maps.zarr", overwrite=True, progress=progress,
                    screen_path=work / "screen.zarr", pooling=dict(config.pooling), **config.fit)
            self.verdicts = verdicts(work / "maps.zarr", work / "screen.zarr", self.n_frames, self.frame_time_s)
            out = assemble_results(self.output, work / "maps.zarr", work / "g2.zarr", None,
                                   screen=work / "screen.zarr", overwrite=True,
                                   attrs={S.ATTR_RUN_CONFIG: config.as_dict(), "live": json.dumps({
                                       "n_frames": self.n_frames, "frames_used": len(self.source.used),
                                       "last_frame": self.source.used[-1], "verdicts": self.verdicts})})
        self.save()
        return out


def verdicts(maps_path, screen_path, n_frames: int, frame_time_s: float) -> dict:
    """Per region (bulk, surface): how many ok pixels have a series >= 40 tau and frames <= 0.1 tau apart, and how
    long until the median pixel gets there at this frame time."""
    from ..pipeline.screen import open_screen
    from ..store.integrity import open_checked

    maps = open_checked(maps_path)
    regions, artefacts = open_screen(screen_path)
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


def watch(folder: str | os.PathLike, output: str | os.PathLike, *, frame_time_s: float, pixel_size_nm: float,
          points_per_octave: int = 8, update_every: float = 30.0, poll_s: float = 0.5, stop_after: int | None = None,
          idle_stop: float | None = None, gap_polls: int = 3, echo=print) -> LiveRun:
    """Watch ``folder`` until ``stop_after`` frames were used or no frame came for ``idle_stop`` seconds (or
    Ctrl-C), updating ``output`` every ``update_every`` seconds and at the end; returns the live run."""
    from ..schema import check_frame_time, check_pixel_size

    frame_time_s = check_frame_time(frame_time_s, "--frame-time")
    pixel_size_nm = check_pixel_size(pixel_size_nm, "--pixel-size")
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: not a folder; watch needs the folder the camera writes frames into")
    for name, v in (("--update-every", update_every), ("--poll", poll_s)):
        if not (np.isfinite(v) and v > 0):
            raise ParameterError(f"{name} must be a positive number of seconds, got {v}")
    run = LiveRun.resume_or_start(os.fspath(folder), output, frame_time_s=frame_time_s, pixel_size_nm=pixel_size_nm,
                                  points_per_octave=points_per_octave, gap_polls=gap_polls)
    if run.n_frames:
        echo(f"resuming: {run.n_frames} frames already in the sums (last {run.source.used[-1]})")
    last_update = time.monotonic()
    last_frame = time.monotonic()
    dirty = False
    n_reports = 0
    try:
        while True:
            new = run.source.poll()
            for text in run.source.reports[n_reports:]:
                echo(f"note: {text}")
            n_reports = len(run.source.reports)
            if stop_after is not None:
                new = new[:max(0, stop_after - run.n_frames)]
                del run.source.used[run.n_frames + len(new):]
            if new:
                run.add(new)
                dirty = True
                last_frame = time.monotonic()
            done = (stop_after is not None and run.n_frames >= stop_after) or (
                idle_stop is not None and time.monotonic() - last_frame > idle_stop)
            if dirty and run.n_frames >= 4 and (done or time.monotonic() - last_update >= update_every):
                t0 = time.perf_counter()
                run.update()
                dirty = False
                last_update = time.monotonic()
                echo(status_line(run, time.perf_counter() - t0))
            if done:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        if dirty and run.n_frames >= 4:
            run.update()
            echo(status_line(run, 0.0))
        raise
    return run


def status_line(run: LiveRun, took_s: float) -> str:
    v = run.verdicts
    parts = [f"{run.n_frames} frames ({v.get('series_s', 0):.0f} s)"]
    for name in ("bulk", "surface"):
        if name in v:
            parts.append(v[name]["verdict"])
    return " | ".join(parts) + f"  [update {took_s:.1f} s]"
