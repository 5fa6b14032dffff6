"""g2 benchmark: kernel speed against baselines, and end to end from a compressed store on a dask cluster.

Run:  .venv/bin/python benchmarks/bench_g2.py kernel      [--frames 4096 16384] [--pixels 64]
      .venv/bin/python benchmarks/bench_g2.py pipeline    [--sizes 1000x512 4000x512 4000x1024]
                                                          [--workers 2 --memory-limit 1GiB]
      .venv/bin/python benchmarks/bench_g2.py read        [--frames 4000 --side 640 --block 128]
      .venv/bin/python benchmarks/bench_g2.py stage SERIES DRIFT   (e.g. the real-scale benchmark's kept stores)
      PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/bench_g2.py parts [--frames 4096 16384] [--pixels 4096]
      .venv/bin/python benchmarks/bench_g2.py codec G2_STORE [--block 128]   (stage-output compressors)

kernel: one thread, 64x64 pixels of Poisson counts (uint16), log-binned g2 (8 points per octave, lags up
to T/2), side by side in one run: a per-pixel Python loop (as in published ECM code; run on a subset and
extrapolated), a vectorised scipy rfft g2 over all pixels, and ecm_dask's multi-tau and fft kernels.
Prints pixel-frames per CPU-second, ratios, and peak extra memory (tracemalloc) relative to the block.

read: one thread reads (time, block, block) pixel blocks of a series store (random counts written by ecm_dask's
writer) over all frames, as the g2 stage does: zarr's own selection against ecm_dask's shard reader (same bytes,
same checksums), without drift and with a drift-like halo (each shard of frames read 10 px further on one
side); prints seconds per block and GB/s of block, and checks both give the same array.

stage: the g2 stage (``run_g2``, threaded scheduler) on an existing series store, with the shifts of DRIFT
(a drift.zarr) undone and without drift; prints wall time and pixel-frames/s of each, and the ratio to the
kernel-limited time (the kernel's CPU seconds on the same blocks when the stage runs on one thread, divided by
the threads).

pipeline: writes a series store of random counts (fast generator, not the synthetic wire) and runs
correlate() -> to_zarr on a LocalCluster of N single-threaded workers with a memory limit; prints wall
time, pixel-frames/s and the peak RSS of any worker (sampled every 0.2 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.fft as sfft  # noqa: E402


# ------------------------------------------------------------------------------------- baselines
def naive_per_pixel(x, lags):
    """A Python loop over pixels and lags with NumPy sums (symmetric normalisation), x (T, P)."""
    n_t, n_p = x.shape
    out = np.empty((n_p, lags.size))
    for p in range(n_p):
        i = x[:, p].astype(np.float64)
        for j, k in enumerate(lags):
            out[p, j] = np.mean(i[:-k] * i[k:]) / (np.mean(i[:-k]) * np.mean(i[k:]))
    return out


def vectorised_rfft(x, edges):
    """All pixels at once: rfft autocorrelation, standard normalisation, then mean over log bins."""
    n_t = x.shape[0]
    f = sfft.rfft(x.astype(np.float64), n=2 * n_t, axis=0)
    ac = sfft.irfft(f * np.conj(f), n=2 * n_t, axis=0)[1:edges[-1]]
    ac /= (n_t - np.arange(1, edges[-1]))[:, None]
    ac /= x.mean(0, dtype=np.float64) ** 2
    return np.add.reduceat(ac, edges[:-1] - 1, axis=0) / np.diff(edges)[:, None]


def _time(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def _peak_extra(fn):
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def kernel(args):
    from ecm_dask.kernels.g2 import g2
    from ecm_dask.kernels.lags import log_lag_bins, multitau_lags

    print(f"g2 kernel, one thread, {args.pixels}x{args.pixels} pixels, uint16 Poisson counts, 8 points/octave, "
          "lags up to T/2 (pixel-frames per CPU-second)")
    print(f"{'T':>6} {'method':>26} {'px-frames/s':>12} {'vs loop':>8} {'vs rfft':>8} {'peak extra mem':>15}")
    for n_t in args.frames:
        rng = np.random.default_rng(0)
        x = rng.poisson(40.0, (n_t, args.pixels, args.pixels)).astype(np.uint16)
        flat = x.reshape(n_t, -1)
        size = flat.size
        g2(x[:, :2, :2], axis=0)  # compile
        g2(x[:, :2, :2], axis=0, method="fft")
        sub = 16
        t_loop, _ = _time(lambda: naive_per_pixel(flat[:, :sub], multitau_lags(n_t).lag), repeat=1)
        r_loop = n_t * sub / t_loop
        bins = log_lag_bins(n_t)
        t_rfft, _ = _time(lambda: vectorised_rfft(flat, bins.edges), repeat=2)
        r_rfft = size / t_rfft
        rows = [("per-pixel Python loop*", r_loop, None), ("vectorised scipy rfft", r_rfft,
                                                            _peak_extra(lambda: vectorised_rfft(flat, bins.edges)))]
        for method in ("multitau", "fft"):
            t, _ = _time(lambda: g2(x, axis=0, method=method))
            rows.append((f"ecm_dask {method}", size / t, _peak_extra(lambda: g2(x, axis=0, method=method))))
        for name, rate, peak in rows:
            mem = "" if peak is None else f"{peak / 2**20:7.1f} MiB ({peak / x.nbytes:.1f}x)"
            print(f"{n_t:6d} {name:>26} {rate:12.3g} {rate / r_loop:8.0f} {rate / r_rfft:8.2f} {mem:>15}")
    print("* the loop runs on 16 pixels and is extrapolated; memory is relative to the uint16 input block")


# -------------------------------------------------------------------------------------- pipeline
class _RandomCounts:
    """Deterministic random counts read slab by slab (a FrameSource without a file)."""

    def __new__(cls, shape, seed=0):
        from ecm_dask.readers.base import FrameSource, SourceMetadata

        class Src(FrameSource):
            format_name = "random counts"

            def __init__(self):
                self.paths = [f"<random {shape}>"]
                self.shape = shape
                self.dtype = np.dtype(np.uint16)
                self.metadata = SourceMetadata(frame_time_s=0.5, pixel_size_nm=0.33)

            def _read(self, start, stop):
                rng = np.random.default_rng([seed, start])
                return rng.integers(0, 80, (stop - start, *shape[1:]), dtype=np.uint16)

            def fingerprint(self):
                return {"format": self.format_name, "shape": list(shape), "seed": seed}

        return Src()


def _sample_peak(client, stop, peaks):
    import psutil

    def rss():
        return psutil.Process().memory_info().rss

    while not stop.is_set():
        try:
            for addr, v in client.run(rss).items():
                peaks[addr] = max(peaks.get(addr, 0), v)
        except Exception:  # noqa: BLE001 - a sample lost while workers are busy is fine
            pass
        time.sleep(0.2)


def pipeline(args):
    import xarray as xr
    from distributed import Client, LocalCluster

    from ecm_dask.ops import correlate
    from ecm_dask.pipeline.ingest import resolve_metadata
    from ecm_dask.store.series import open_series
    from ecm_dask.store.writer import write_series

    tmp = tempfile.mkdtemp(dir=os.environ.get("ECM_BENCH_TMP"))
    print(f"g2 end to end: store -> correlate -> results.zarr on {args.workers} worker(s) x 1 thread, "
          f"memory limit {args.memory_limit} each")
    print(f"{'frames':>7} {'pixels':>10} {'series GiB':>10} {'x total limit':>13} {'wall s':>7} "
          f"{'px-frames/s':>12} {'peak worker RSS MiB':>20}")
    try:
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit,
                          dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster) as client:
            limit = sum(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
            for spec in args.sizes:
                n_t, side = (int(v) for v in spec.lower().split("x"))
                shape = (n_t, side, side)
                src = _RandomCounts(shape)
                path = os.path.join(tmp, f"s{n_t}x{side}.zarr")
                write_series(src, path, resolve_metadata(src), progress=False)
                ds = open_series(path)
                res = correlate(ds)
                stop, peaks = threading.Event(), {}
                sampler = threading.Thread(target=_sample_peak, args=(client, stop, peaks), daemon=True)
                client.run(lambda: __import__("gc").collect())
                sampler.start()
                t0 = time.perf_counter()
                res.to_zarr(os.path.join(tmp, "g2.zarr"), mode="w", zarr_format=3, consolidated=False)
                wall = time.perf_counter() - t0
                stop.set()
                sampler.join()
                g = xr.open_zarr(os.path.join(tmp, "g2.zarr"), consolidated=False).g2
                assert g.shape[:2] == (side, side) and np.isfinite(g[0, 0].values).all()
                nbytes = n_t * side * side * 2
                print(f"{n_t:7d} {side:>5}x{side:<4} {nbytes / 2**30:10.2f} {nbytes / limit:13.2f} {wall:7.1f} "
                      f"{n_t * side * side / wall:12.3g} {max(peaks.values()) / 2**20:20.0f}")
                shutil.rmtree(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read(args):
    import zarr

    from ecm_dask.ops.g2plan import Read
    from ecm_dask.pipeline.ingest import resolve_metadata
    from ecm_dask.store.region import read_region
    from ecm_dask.store.writer import write_series

    tmp = tempfile.mkdtemp(dir=os.environ.get("ECM_BENCH_TMP"))
    try:
        shape = (args.frames, args.side, args.side)
        src = _RandomCounts(shape)
        path = os.path.join(tmp, "s.zarr")
        write_series(src, path, resolve_metadata(src), progress=False)
        arr = zarr.open_array(os.path.join(path, "intensity"), mode="r")
        b, n_t = args.block, args.frames
        print(f"read {n_t} x {b} x {b} uint16 blocks ({n_t * b * b * 2 / 2**20:.0f} MiB) of a {shape} store, inner "
              f"chunks {arr.shards and arr.chunks}, one thread")
        corners = [(y, x) for y in range(0, args.side - b - 10, b) for x in range(0, args.side - b - 10, b)][:6]
        for halo in (0, 10):
            t_zarr, t_fast = [], []
            for y0, x0 in corners:
                reads = [Read(0, n_t, y0, y0 + b + halo, x0, x0 + b + halo)]
                out = np.empty((n_t, b + halo, b + halo), np.uint16)
                t = time.perf_counter()
                ref = arr[:, y0:y0 + b + halo, x0:x0 + b + halo]
                t_zarr.append(time.perf_counter() - t)
                t = time.perf_counter()
                read_region(path, reads, out.shape, (y0, x0), out=out)
                t_fast.append(time.perf_counter() - t)
                assert np.array_equal(out, ref)
            gb = n_t * b * b * 2 / 1e9
            print(f"  {'no drift' if not halo else f'halo {halo} px':>10}: zarr {np.median(t_zarr):.3f} s/block "
                  f"({gb / np.median(t_zarr):.2f} GB/s), ecm_dask shard reader {np.median(t_fast):.3f} s/block "
                  f"({gb / np.median(t_fast):.2f} GB/s): {np.median(t_zarr) / np.median(t_fast):.1f}x "
                  f"(median of {len(corners)} blocks)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stage(args):
    """The g2 stage on 2 threads against its kernel-limited time: the multi-tau kernel's own CPU time on the same
    blocks when it runs alone (the stage once more on one thread, the kernel's thread CPU seconds summed), divided
    by the threads.  The ratio is what the read, the drift gather and the writes cost on top of the kernel.

    Every timed run is made in the same state: after one untimed run of the stage in this process (the first
    g2 stage of a process also pays for loading the compiled kernels and for first-touch page faults of its
    buffers, which can take seconds where the kernel compacts memory for transparent huge pages); that first run's
    wall time is printed on a line of its own.  Each configuration: best of ``--repeat``."""
    import dask
    import xarray as xr

    from ecm_dask.cluster import connect
    from ecm_dask.kernels import g2 as kernels_g2
    from ecm_dask.pipeline.correlate import run_g2

    shifts = xr.open_zarr(args.drift)["shift"].values
    n = int(np.prod(xr.open_zarr(args.series)["intensity"].shape))
    kernel_cpu = []
    original = kernels_g2.g2_region

    def timed(*a, **k):  # the kernel's CPU seconds in this thread (the pool's threads run one task each)
        t0 = time.thread_time()
        try:
            return original(*a, **k)
        finally:
            kernel_cpu.append(time.thread_time() - t0)

    tmp = tempfile.mkdtemp(dir=os.environ.get("ECM_BENCH_TMP"))
    out = os.path.join(tmp, "g2.zarr")

    def one_run(sh, threads):
        """(wall s, kernel CPU-s summed, blocks) of one run of the stage."""
        kernel_cpu.clear()
        with dask.config.set(num_workers=threads):
            t0 = time.perf_counter()
            run_g2(args.series, out, shifts=sh, progress=False, overwrite=True)
            return time.perf_counter() - t0, sum(kernel_cpu), len(kernel_cpu)

    kernels_g2.g2_region = timed
    try:
        with connect("threads"):
            first = one_run(shifts, args.threads)[0]
            for label, sh in (("with drift", shifts), ("without drift", None)):
                runs = {t: [one_run(sh, t) for _ in range(args.repeat)] for t in (args.threads, 1)}
                wall, in_stage, blocks = min(runs[args.threads])
                one_wall, alone, _ = min(runs[1])
                limit = alone / args.threads
                print(f"g2 stage {label:>13}: {wall:.3g} s on {args.threads} threads ({n / wall:.3g} px-frames/s); "
                      f"kernel alone {alone:.3g} CPU-s over {blocks} blocks -> kernel-limited {limit:.3g} s, "
                      f"stage / kernel-limited {wall / limit:.2f}x; kernel in the stage {in_stage:.3g} CPU-s "
                      f"({in_stage / alone:.2f}x alone); one thread: {one_wall:.3g} s (best of {args.repeat})",
                      flush=True)
            print(f"first g2 stage of the process (with drift, untimed above): {first:.3g} s", flush=True)
    finally:
        kernels_g2.g2_region = original
        shutil.rmtree(tmp, ignore_errors=True)


def parts(args):
    """The multi-tau kernel's two phases apart, one thread: the loader (time-major block -> pixel-major float64
    rows) and the driver (the level-by-level sums), px-frames per CPU-second, on the float32 (T, P) speckle of
    bench_peer.py.  Shows where time goes as T grows (a pixel's row is T x 8 bytes: 32 KiB at T = 4096 stays in
    L1, 128 KiB at 16384 does not)."""
    from bench_peer import speckle

    from ecm_dask.kernels._multitau import driver_for, load_plain
    from ecm_dask.kernels.g2 import PIXEL_CHUNK
    from ecm_dask.kernels.lags import multitau_lags

    print(f"multi-tau kernel phases, one thread, float32 (T, {args.pixels}) speckle, pixel chunks of {PIXEL_CHUNK} "
          f"(px-frames per CPU-second, best of {args.repeat})")
    print(f"{'T':>6} {'loader':>10} {'driver':>10} {'both':>10} {'levels':>7}")
    for n_t in args.frames:
        x = speckle(n_t, args.pixels)
        lags = multitau_lags(n_t, 8, None)
        m, n_levels = lags.m, max(lags.n_levels, 1)
        drive = driver_for(m)
        w = np.ones(n_t)
        pc = PIXEL_CHUNK
        buf = np.empty((pc, n_t))
        num = np.zeros((pc, n_levels, 2 * m))
        head, tail, total, mx = np.empty_like(num), np.empty_like(num), np.empty((pc, n_levels)), np.empty(pc)
        load_plain(x, 0, pc, w, buf)  # compile / load from numba's cache
        drive(buf, n_t, m, n_levels, num, head, tail, total, mx)
        best_l = best_d = np.inf
        for _ in range(args.repeat):
            t_l = t_d = 0.0
            for p0 in range(0, args.pixels - pc + 1, pc):
                t0 = time.process_time()
                load_plain(x, p0, p0 + pc, w, buf)
                t1 = time.process_time()
                num[:] = 0.0
                drive(buf, n_t, m, n_levels, num, head, tail, total, mx)
                t_l, t_d = t_l + t1 - t0, t_d + time.process_time() - t1
            best_l, best_d = min(best_l, t_l), min(best_d, t_d)
        n = n_t * (args.pixels // pc) * pc
        print(f"{n_t:6d} {n / best_l:10.3g} {n / best_d:10.3g} {n / (best_l + best_d):10.3g} {n_levels:7d}")


def codec(args):
    """Stage-output compressors on one g2 block of a written g2 store (``g2.zarr``, e.g. the real-scale
    benchmark's kept checkpoint): compression ratio and seconds to encode and decode, best of ``--repeat``."""
    import zarr
    from numcodecs import LZ4, Blosc, Zstd

    g = zarr.open_array(os.path.join(args.store, "g2"), mode="r")
    b = args.block
    data = np.ascontiguousarray(g[:b, :b, :]).tobytes()
    print(f"g2 block {b} x {b} x {g.shape[-1]} float32 from {args.store}")
    print(f"{'compressor':>22} {'ratio':>6} {'encode s':>9} {'decode s':>9}")
    candidates = {"zstd 3": Zstd(3), "zstd 1": Zstd(1), "lz4": LZ4(),
                  "blosc lz4 5 shuffle": Blosc("lz4", 5, Blosc.SHUFFLE, typesize=4),
                  "blosc lz4 5 bitshuffle": Blosc("lz4", 5, Blosc.BITSHUFFLE, typesize=4),
                  "blosc zstd 1 shuffle": Blosc("zstd", 1, Blosc.SHUFFLE, typesize=4)}
    for name, c in candidates.items():
        enc = dec = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            packed = c.encode(data)
            t1 = time.perf_counter()
            back = c.decode(packed)
            enc, dec = min(enc, t1 - t0), min(dec, time.perf_counter() - t1)
        assert bytes(back) == data
        print(f"{name:>22} {len(data) / len(packed):6.2f} {enc:9.4f} {dec:9.4f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    k = sub.add_parser("kernel")
    k.add_argument("--frames", type=int, nargs="+", default=[4096, 16384])
    k.add_argument("--pixels", type=int, default=64)
    p = sub.add_parser("pipeline")
    p.add_argument("--sizes", nargs="+", default=["1000x512", "4000x512", "4400x1024"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="1GiB")
    r = sub.add_parser("read")
    r.add_argument("--frames", type=int, default=4000)
    r.add_argument("--side", type=int, default=640)
    r.add_argument("--block", type=int, default=128)
    pa = sub.add_parser("parts")
    pa.add_argument("--frames", type=int, nargs="+", default=[4096, 16384])
    pa.add_argument("--pixels", type=int, default=4096)
    pa.add_argument("--repeat", type=int, default=3)
    co = sub.add_parser("codec")
    co.add_argument("store", help="a g2.zarr")
    co.add_argument("--block", type=int, default=128)
    co.add_argument("--repeat", type=int, default=3)
    st = sub.add_parser("stage")
    st.add_argument("series")
    st.add_argument("drift")
    st.add_argument("--threads", type=int, default=2)
    st.add_argument("--repeat", type=int, default=2, help="timed runs per configuration (the best is shown)")
    args = ap.parse_args(argv)
    {"kernel": kernel, "pipeline": pipeline, "read": read, "stage": stage, "parts": parts,
     "codec": codec}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
