"""Ingest benchmark: throughput, peak memory vs series size, and the cost of the two read patterns.

Run:  .venv/bin/python benchmarks/bench_ingest.py [--frames 400 800 1600] [--ny 631 --nx 861]
(or `make bench`).  Each ingest runs in a fresh subprocess so its peak RSS is its own.

Prints, per series size: input MiB, wall time, MB/s, peak RSS, compression ratio; then the time to read
one 64x64 pixel block and one 40x40 ROI over all frames from the store versus from a frame-chunked store
with the same codec (what a time-major layout costs: every frame decoded whole).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = r"""
import json, sys, time
from ecm_dask.pipeline.ingest import ingest


def peak_rss_mb():
    # VmHWM belongs to this address space; ru_maxrss would include the parent's RSS from before execve
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
ingest(sys.argv[1], sys.argv[2], frame_time_s=0.5, pixel_size_nm=0.33, shard_mb=float(sys.argv[3]), progress=False)
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_mb": peak_rss_mb()}))
"""


def make_input(path, frames, ny, nx, seed=0):
    """Poisson speckle-like counts (mean 40) written slab by slab, so the generator itself stays small."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(frames, ny, nx))
    rng = np.random.default_rng(seed)
    for t0 in range(0, frames, 32):
        n = min(32, frames - t0)
        out[t0:t0 + n] = rng.poisson(40.0, (n, ny, nx)).astype(np.uint16)
    out.flush()
    del out


def dir_size(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--ny", type=int, default=631)
    ap.add_argument("--nx", type=int, default=861)
    ap.add_argument("--shard-mb", type=float, default=64.0)
    args = ap.parse_args()
    import zarr

    print(f"ingest benchmark: {args.ny}x{args.nx} uint16 frames, shards of {args.shard_mb:g} MiB, "
          f"{os.cpu_count()} cores")
    print(f"{'frames':>7} {'input MiB':>10} {'wall s':>8} {'MB/s':>7} {'peak RSS MiB':>13} {'ratio':>6}")
    with tempfile.TemporaryDirectory(dir=os.environ.get("ECM_BENCH_TMP")) as tmp:
        for frames in args.frames:
            src = os.path.join(tmp, f"in{frames}.npy")
            out = os.path.join(tmp, f"s{frames}.zarr")
            make_input(src, frames, args.ny, args.nx)
            r = subprocess.run([sys.executable, "-c", CHILD, src, out, str(args.shard_mb)], capture_output=True,
                               text=True, check=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            mb = frames * args.ny * args.nx * 2 / 2**20
            print(f"{frames:7d} {mb:10.0f} {res['seconds']:8.1f} {mb * 1.048576 / res['seconds']:7.0f} "
                  f"{res['peak_rss_mb']:13.0f} {mb * 2**20 / dir_size(out):6.2f}")
        # read patterns on the largest series: our layout vs a frame-chunked store with the same codec
        from ecm_dask.store.series import compressor

        arr = zarr.open_array(os.path.join(out, "intensity"), mode="r")
        framewise = zarr.create_array(os.path.join(tmp, "framewise.zarr"), shape=arr.shape, dtype=arr.dtype,
                                      chunks=(8, args.ny, args.nx), compressors=[compressor()])
        ref = np.load(src, mmap_mode="r")
        for t0 in range(0, frames, 64):
            framewise[t0:t0 + 64] = ref[t0:t0 + 64]
        del ref
        print(f"read cost of {frames} frames x 631x861 after ingest (cold python, warm page cache):")
        for name, a in (("ecm_dask layout", arr), ("frame-chunked (8, ny, nx)", framewise)):
            t0 = time.perf_counter()
            block = a[:, 64:128, 128:192]
            t_block = time.perf_counter() - t0
            t0 = time.perf_counter()
            roi = a[:, 300:340, 400:440]
            t_roi = time.perf_counter() - t0
            print(f"  {name:28s} 64x64 pixel block over all frames {t_block:6.3f} s, "
                  f"40x40 ROI over all frames {t_roi:6.3f} s")
            assert block.shape == (frames, 64, 64) and roi.shape == (frames, 40, 40)
        os.remove(src)


if __name__ == "__main__":
    main()
