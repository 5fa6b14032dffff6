"""Is the dynamics changing while the camera records?  g2 of consecutive windows of frames, per region.

The live correlator's sums cover the whole series so far; ageing, crystallisation or beam damage show as a
relaxation time that drifts from window to window.  :class:`WindowTracker` runs a second streaming correlator on a
sub-grid of pixels (every ``stride``-th row and column, at most ~50 000 pixels) that starts afresh every
``frames`` frames; each finished window's g2 is averaged over the pixels of a region (the latest region map of the
live maps) and read with the model-free relaxation time of the offline stationarity check
(:func:`ecm_dask.kernels.stationarity.tau_model_free`).  The verdict compares the last window with the first: a
change by more than a factor :data:`CHANGE_FACTOR` is reported as non-stationary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import schema as S
from ..kernels.streaming import MultiTauState

#: a region's window tau changing by more than this factor from the first window: not stationary
CHANGE_FACTOR = 1.5
MAX_PIXELS = 50_000


@dataclass
class WindowTracker:
    frame_shape: tuple[int, int]
    frames: int = 200
    points_per_octave: int = 8
    stride: int = 0
    state: MultiTauState | None = None
    start: int = 0  # first frame of the current window
    done: list = field(default_factory=list)  # finished windows: {"frames": [a, b], "g2", "status", "lag"}
    summary: list = field(default_factory=list)  # per finished window: {"frames": [a, b], "bulk": tau, ...}

    def __post_init__(self):
        ny, nx = self.frame_shape
        if not self.stride:
            self.stride = max(1, math.ceil(math.sqrt(ny * nx / MAX_PIXELS)))
        if self.frames < 16:
            raise ValueError(f"a stationarity window needs at least 16 frames, got {self.frames}")

    def _sub(self, stack: np.ndarray) -> np.ndarray:
        s = self.stride
        sub = stack[:, ::s, ::s]
        return sub.reshape(sub.shape[0], -1)

    def add(self, stack: np.ndarray, first_frame: int) -> None:
        """Frames ``stack (Tb, ny, nx)`` (registered, as they enter the main sums), the first being ``first_frame``."""
        i = 0
        while i < stack.shape[0]:
            if self.state is None:
                self.start = first_frame + i
                n_sub = self._sub(stack[:1]).shape[1]
                self.state = MultiTauState.empty(n_sub, self.points_per_octave)
            take = min(stack.shape[0] - i, self.frames - self.state.n_frames)
            self.state.push(self._sub(stack[i:i + take]))
            i += take
            if self.state.n_frames == self.frames:
                r = self.state.result()
                self.done.append({"frames": [self.start, self.start + self.frames], "g2": r.g2,
                                  "status": r.status, "lag": r.lag})
                self.state = None

    def take_done(self) -> list:
        """The finished windows not summarised yet (handed over, e.g. to an update running in another thread)."""
        done, self.done = self.done, []
        return done

    def summarise(self, region: np.ndarray, frame_time_s: float, done: list | None = None) -> None:
        """Turn finished windows (``done``, default: those not taken yet) into per-region model-free tau with the
        region map ``region (ny, nx)``."""
        from ..kernels.g2 import PIXEL_OK
        from ..kernels.regions import roi_average
        from ..kernels.stationarity import tau_model_free

        sub = np.asarray(region)[::self.stride, ::self.stride].reshape(-1)
        for w in (self.take_done() if done is None else done):
            row = {"frames": w["frames"]}
            ok = w["status"] == PIXEL_OK
            for code in (S.REGION_BULK, S.REGION_SURFACE):
                mask = ok & (sub == code)
                tau = float("nan")
                if mask.sum() >= 10:
                    curve = roi_average(w["g2"], mask)[0]
                    with np.errstate(all="ignore"):
                        tau = tau_model_free(curve, w["lag"] * frame_time_s)
                row[S.REGION_NAMES[code]] = tau if np.isfinite(tau) else None
            self.summary.append(row)

    def verdict(self) -> dict:
        out: dict = {"windows": self.summary, "window_frames": self.frames, "stride": self.stride}
        words = []
        for name in ("bulk", "surface"):
            taus = [(w["frames"], w[name]) for w in self.summary if w.get(name) is not None]
            if len(taus) < 2:
                continue
            (f0, t0), (f1, t1) = taus[0], taus[-1]
            ratio = t1 / t0
            changed = ratio > CHANGE_FACTOR or ratio < 1 / CHANGE_FACTOR
            out[name] = {"first_tau_s": t0, "last_tau_s": t1, "ratio": ratio, "changed": bool(changed)}
            if changed:
                words.append(f"{name} tau changed from {t0:.3g} s (frames {f0[0]}-{f0[1]}) to {t1:.3g} s (frames "
                             f"{f1[0]}-{f1[1]}): not stationary (ageing, crystallisation, beam damage?)")
            else:
                words.append(f"{name} tau steady over {len(taus)} windows ({t0:.3g} -> {t1:.3g} s)")
        out["verdict"] = "; ".join(words) if words else (
            f"stationarity: {len(self.summary)} window(s) of {self.frames} frames so far, 2 needed")
        return out
