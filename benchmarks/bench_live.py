"""Live mode: can the streaming correlator keep pace with a camera?  Pushes frames of a 631 x 861 detector in
batches (as polls deliver them) into :class:`ecm_dask.kernels.streaming.MultiTauState` and times the pushes and a
g2 read-out (``result``), with the state's memory.

    .venv/bin/python benchmarks/bench_live.py [--ny 631 --nx 861 --frames 400 --batch 10]
    .venv/bin/python benchmarks/bench_live.py pace [--frames 600 --rate 10 --update-every 30]

``pace``: a camera process writes 631 x 861 TIFF frames at 10 frames/s while ``watch`` (drift on) correlates them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ny", type=int, default=631)
    ap.add_argument("--nx", type=int, default=861)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--batch", type=int, default=10, help="frames per push (frames arriving between two polls)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rate", type=float, default=10.0, help="camera frames per second to compare with")
    args = ap.parse_args(argv)

    from ecm_dask.kernels.streaming import MultiTauState

    n_p = args.ny * args.nx
    rng = np.random.default_rng(0)
    frames = rng.poisson(20, (args.batch * 4, n_p)).astype(np.uint16)
    st = MultiTauState.empty(n_p)
    st.push(frames[:2])  # compile
    t0 = time.perf_counter()
    pushed = 0
    while pushed < args.frames:
        i = (pushed // args.batch) % 4
        st.push(frames[i * args.batch:(i + 1) * args.batch], threads=args.threads)
        pushed += args.batch
    push_s = time.perf_counter() - t0
    fps = pushed / push_s
    t0 = time.perf_counter()
    st.result()
    result_s = time.perf_counter() - t0
    print(f"{args.ny} x {args.nx} px, {pushed} frames in batches of {args.batch}, {args.threads} thread(s): {fps:.1f} frames/s "
          f"({pushed * n_p / push_s:.3g} px-frames/s) = {fps / args.rate:.2f}x a {args.rate:g} frames/s camera; "
          f"g2 read-out at {st.n_frames} frames {result_s:.1f} s; state {st.nbytes / 2**20:.0f} MiB "
          f"({st.nbytes / n_p:.0f} B/px, {st.count.size} levels)")




def _camera_process(folder: str, ny: int, nx: int, n_frames: int, rate: float) -> None:
    """A separate process writing frames like a camera: a textured static pattern with Poisson counts."""
    from ecm_dask.live.camera import simulate_camera

    rng = np.random.default_rng(1)
    base = 20 + 40 * (rng.random((ny, nx)) > 0.5)
    frames = _Frames(base, n_frames, rate)
    simulate_camera(folder, frames, rate=rate, pause_s=0.005)


class _Frames:
    """Frames made on demand (a whole real-scale series would not fit the benchmark's memory budget): a static
    texture whose pixels fluctuate with an exponential correlation (tau 5 s at the camera's rate), Poisson counts."""

    def __init__(self, base, n, rate: float = 10.0, tau_s: float = 5.0, contrast: float = 0.3):
        self.base, self.n = base, n
        self.rng = np.random.default_rng(2)
        self.a = float(np.exp(-1.0 / (rate * tau_s)))
        self.c = contrast
        self.s = self.rng.standard_normal(base.shape)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.s = self.a * self.s + np.sqrt(1 - self.a ** 2) * self.rng.standard_normal(self.s.shape)
        return self.rng.poisson(self.base * np.exp(self.c * self.s)).astype(np.uint16)


def pace(argv=None) -> None:
    """A camera process writing 631 x 861 TIFFs at 10 frames/s into a folder while ``watch`` (drift on) runs here:
    frames consumed, how far behind the camera the sums were, and how long updates took."""
    import multiprocessing as mp
    import tempfile
    import threading

    from ecm_dask.live.watch import watch

    ap = argparse.ArgumentParser()
    ap.add_argument("--ny", type=int, default=631)
    ap.add_argument("--nx", type=int, default=861)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--update-every", type=float, default=30.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=os.environ.get("ECM_BENCH_TMP")) as tmp:
        cam = os.path.join(tmp, "cam")
        os.makedirs(cam)
        proc = mp.get_context("spawn").Process(target=_camera_process,
                                               args=(cam, args.ny, args.nx, args.frames, args.rate))
        lines, behind = [], []
        t_start = time.monotonic()

        def echo(line):
            lines.append(f"{time.monotonic() - t_start:7.1f} s  {line}")
            print(lines[-1], flush=True)

        stop = threading.Event()

        def sample(run_ref):
            while not stop.is_set():
                run = run_ref.get("run")
                if run is not None:
                    written = len([n for n in os.listdir(cam) if n.endswith(".tif")])
                    behind.append(written - run.n_frames)
                time.sleep(0.5)

        proc.start()
        run_ref: dict = {}
        import importlib

        W = importlib.import_module("ecm_dask.live.watch")

        original = W.LiveRun.resume_or_start

        def capture(*a, **k):
            run_ref["run"] = original(*a, **k)
            return run_ref["run"]

        W.LiveRun.resume_or_start = capture
        sampler = threading.Thread(target=sample, args=(run_ref,), daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        run = watch(cam, os.path.join(tmp, "live.zarr"), frame_time_s=1 / args.rate, pixel_size_nm=0.3,
                    update_every=args.update_every, poll_s=0.2, stop_after=args.frames,
                    reference_roi=f"{args.ny // 2 - 24}:{args.ny // 2 + 24},{args.nx // 2 - 24}:{args.nx // 2 + 24}",
                    max_shift=8, echo=echo)
        wall = time.perf_counter() - t0
        stop.set()
        proc.join()
        W.LiveRun.resume_or_start = original
        camera_s = args.frames / args.rate
        print(f"camera {args.frames} frames at {args.rate:g}/s ({camera_s:.0f} s); watch used {run.n_frames} frames in "
              f"{wall:.1f} s (last update included), {wall - camera_s:+.1f} s after the camera's last frame; "
              f"frames waiting (written, not yet in the sums): median {np.median(behind):.0f}, max {max(behind)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "pace":
        pace(sys.argv[2:])
    else:
        main()
