"""Synthetic-series rendering speed: output pixel-frames per second on one core.

Run:  .venv/bin/python benchmarks/bench_synth.py [--frames 4000] [--block 32 64]
Times one call of render_block per block size (model maps cached beforehand), with and without noise.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from ecm_dask.synth import SynthParams, render_block  # noqa: E402
from ecm_dask.synth.model import canvas  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--block", type=int, nargs="+", default=[32, 64])
    args = ap.parse_args()
    p = SynthParams(ny=96, nx=128, n_frames=args.frames)
    canvas(p)  # build and cache the maps once, as a long-running worker would
    print(f"render_block, {args.frames} frames, single thread")
    print(f"{'block':>7} {'noise':>6} {'seconds':>8} {'pixel-frames/s':>15}")
    for b in args.block:
        for noise in (True, False):
            t0 = time.perf_counter()
            out = render_block(p, 16, 16 + b, 16, 16 + b, noise=noise)
            dt = time.perf_counter() - t0
            print(f"{b:4d}x{b:<2d} {str(noise):>6} {dt:8.2f} {out.size / dt:15.3g}")


if __name__ == "__main__":
    main()
