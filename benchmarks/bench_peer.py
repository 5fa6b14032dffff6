"""The multi-tau kernel side by side with boost_corr (the APS 8-ID XPCS engine, torch on the CPU), one thread each,
on identical float32 speckle data saved to disk, in CPU-seconds.

boost_corr needs torch, which does not install beside ecm_dask's Python here, so the peer runs in its own
interpreter (``--peer-python``, e.g. a Python 3.11 venv with ``pip install torch numpy scipy tqdm "setuptools<81"``;
boost_corr imports pkg_resources) from a source
checkout of https://github.com/AdvancedPhotonSource/boost_corr (``--peer-src``, the folder holding ``boost_corr/``):

    PYTHONPATH=. .venv/bin/python benchmarks/bench_peer.py --peer-python /path/venv/bin/python \\
        --peer-src /path/checkout [--frames 4096 16384] [--pixels 4096] [--repeat 3]

Both sides read the same ``.npy`` (T, P) float32; each reports the best of ``--repeat`` interleaved runs (each side's
best of two calls in a row per run, the peer's in a fresh process) of
``time.process_time()`` around the correlation only (ecm_dask: ``kernels.g2.g2(method="multitau")``, 8 points per
octave, numba on one thread; boost_corr: ``MultitauCorrelator(queue_size=128, auto_queue=False)`` fed in batches of 128 frames,
``torch.set_num_threads(1)``, ``max_count`` the data maximum so that it accumulates in float32, then
``post_process``).  Without ``--peer-python`` only ecm_dask is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np

PEER = r"""
import json, sys, time
import numpy as np
import torch
torch.set_num_threads(1)
from boost_corr.multitau import MultitauCorrelator
x = np.load(sys.argv[1])
n_t, n_p = x.shape
side = int(round(n_p ** 0.5))
best = None
for _ in range(int(sys.argv[2])):
    # max_count: the largest count, so boost_corr accumulates in float32 as the data needs (with its default
    # of 7 it would store counts in bfloat16, fast but 3 significant digits)
    # queue 128 as given: boost_corr's default auto_queue would raise it to fill its memory budget (8192 here),
    # which measured 4x slower on this machine
    xb = MultitauCorrelator(det_size=(side, n_p // side), frame_num=n_t, queue_size=128, auto_queue=False,
                            device="cpu", max_count=int(x.max()))
    t0 = time.process_time()
    for i in range(0, n_t, 128):
        xb.process(torch.from_numpy(x[i:i + 128]))
    xb.post_process()
    dt = time.process_time() - t0
    best = dt if best is None else min(best, dt)
print(json.dumps({"cpu_s": best, "torch": torch.__version__}))
"""


def speckle(n_t: int, n_p: int, seed: int = 0) -> np.ndarray:
    """Float32 speckle counts: exponentially correlated intensities (tau 20 frames), Poisson noise."""
    rng = np.random.default_rng(seed)
    a = np.exp(-1 / 20)
    s = rng.standard_normal(n_p)
    out = np.empty((n_t, n_p), np.float32)
    for t in range(n_t):
        s = a * s + np.sqrt(1 - a * a) * rng.standard_normal(n_p)
        out[t] = rng.poisson(20 * np.exp(0.3 * s))
    return out


def ours(x: np.ndarray) -> float:
    """CPU-seconds of ecm_dask's g2 of ``x``: the best of two calls in a row, as the peer is timed (its best of two
    in one process).  A single call after the peer's seconds-long run would pay for first touching its work
    buffers: on this VM memory a process has not used for ~2 s costs ~45 us per 4 KiB page (~0.09 s of the
    ~0.34 s a call takes at T = 16384)."""
    import numba
    from threadpoolctl import threadpool_limits

    from ecm_dask.kernels.g2 import g2

    numba.set_num_threads(1)
    best = np.inf
    with threadpool_limits(limits=1):  # as the peer runs (OMP_NUM_THREADS=1): process time is one core's
        for _ in range(2):
            t0 = time.process_time()
            g2(x, axis=0)
            best = min(best, time.process_time() - t0)
    return best


def peer(args, path: str) -> float:
    env = dict(os.environ, PYTHONPATH=args.peer_src or "", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    res = subprocess.run([args.peer_python, "-W", "ignore", "-c", PEER, path, "2"], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["cpu_s"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", help="interpreter with torch for boost_corr")
    ap.add_argument("--peer-src", help="folder holding the boost_corr package (a source checkout)")
    ap.add_argument("--frames", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--pixels", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{'frames':>7} {'pixels':>7} {'ecm_dask px-frames/CPU-s':>25} {'boost_corr':>12} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for n_t in args.frames:
            x = speckle(n_t, args.pixels)
            path = os.path.join(tmp, f"x{n_t}.npy")
            np.save(path, x)
            from ecm_dask.kernels.g2 import g2

            g2(x[:256], axis=0)  # compile / load the cached code
            t_ours, t_peer = [], []
            for _ in range(args.repeat):  # interleaved, best of each: this VM's noise comes in bursts
                t_ours.append(ours(x))
                if args.peer_python:
                    t_peer.append(peer(args, path))
            mine = x.size / min(t_ours)
            peer_txt, ratio = "n/a", ""
            if t_peer:
                theirs = x.size / min(t_peer)
                peer_txt, ratio = f"{theirs:.3g}", f"{mine / theirs:.2f}x"
            print(f"{n_t:7d} {args.pixels:7d} {mine:25.3g} {peer_txt:>12} {ratio:>6}", flush=True)


if __name__ == "__main__":
    main()
