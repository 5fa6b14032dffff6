"""A camera simulator for live mode: writes the frames of a series (by default the synthetic nanowire) into a
folder, one TIFF per frame, at a given rate, the way camera software does - each file written in place in two
pieces, so a watcher sees partly written files (``ecm-dask simulate-camera``)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np

from ..errors import ParameterError


def frame_bytes(frame: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, frame, photometric="minisblack")
    return buf.getvalue()


def synthetic_frames(n_frames: int = 400, ny: int = 64, nx: int = 64, seed: int = 0,
                     drift_px: tuple[float, float] = (0.0, 0.0), drift_walk_px: float = 0.0, **params):
    """Frames (T, ny, nx) uint16 of the synthetic nanowire and its parameters (ground truth); no drift unless
    ``drift_px`` (total linear drift) or ``drift_walk_px`` (random walk) are given; other
    :class:`~ecm_dask.synth.SynthParams` fields (e.g. ``tau_bulk_s``) by keyword."""
    from ..synth import SynthParams
    from ..synth.kernels import render_block

    p = SynthParams(ny=ny, nx=nx, n_frames=n_frames, seed=seed, drift_px=tuple(drift_px), drift_walk_px=drift_walk_px,
                    **params)
    return render_block(p, 0, ny, 0, nx), p


def reference_box(params, margin: int) -> tuple[int, int, int, int] | None:
    """The largest box inside the synthetic wire's static crystal that leaves ``margin`` pixels to the frame's
    edges (a reference ROI for ``watch --reference-roi``), or None."""
    from ..schema import REGION_CRYSTAL
    from ..synth.model import truth_maps

    crystal = truth_maps(params)["region"] == REGION_CRYSTAL
    ys, xs = np.nonzero(crystal)
    if not ys.size:
        return None
    ny, nx = crystal.shape
    y0, y1 = max(int(ys.min()), margin), min(int(ys.max()) + 1, ny - margin)
    x0, x1 = max(int(xs.min()), margin), min(int(xs.max()) + 1, nx - margin)
    return (y0, y1, x0, x1) if y1 - y0 >= 8 and x1 - x0 >= 8 else None


def simulate_camera(out: str | os.PathLike, frames, *, rate: float = 4.0, start: int = 0, pause_s: float | None = None,
                    name: str = "frame_{:06d}.tif", echo=None) -> int:
    """Write ``frames[start:]`` into ``out`` at ``rate`` frames per second; returns the number written.

    Each file is written in place in two pieces with ``pause_s`` between them (default: a quarter of a frame
    period), as a camera writing a file while the watcher polls.
    """
    if not (np.isfinite(rate) and rate > 0):
        raise ParameterError(f"--rate must be a positive number of frames per second, got {rate}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    period = 1.0 / rate
    pause = period / 4 if pause_s is None else float(pause_s)
    t_next = time.monotonic()
    n = 0
    for i in range(start, len(frames)):
        data = frame_bytes(np.asarray(frames[i]))
        half = len(data) // 2
        path = out / name.format(i)
        with open(path, "wb") as f:
            f.write(data[:half])
            f.flush()
            if pause > 0:
                time.sleep(pause)
            f.write(data[half:])
        n += 1
        if echo is not None and (n % 50 == 0):
            echo(f"camera: {n} frames written")
        t_next += period
        time.sleep(max(0.0, t_next - time.monotonic()))
    return n
