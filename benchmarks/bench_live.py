"""Live mode: can the streaming correlator keep pace with a camera?  Pushes frames of a 631 x 861 detector in
batches (as polls deliver them) into :class:`ecm_dask.kernels.streaming.MultiTauState` and times the pushes and a
g2 read-out (``result``), with the state's memory.

    .venv/bin/python benchmarks/bench_live.py [--ny 631 --nx 861 --frames 400 --batch 10]
"""

from __future__ import annotations

import argparse
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


if __name__ == "__main__":
    main()
