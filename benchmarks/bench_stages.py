"""Where the time of a whole run goes: wall seconds per stage (from the ``stage_seconds`` attribute every results
store carries) and throughput, for synthetic series of growing size, in fresh processes (as a user runs them).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_stages.py [--sizes 1000x64x64 3000x96x128] [--cluster threads]

Each size: the series is generated once (not timed), then ``ecm-dask run`` is timed end to end (process start,
imports and writing results.zarr included), best of ``--repeat`` runs from scratch after one untimed run; the stage
columns are the pipeline's own measurements (of that run).  A last line times the floor no run can go below: a fresh
process that only imports the libraries every run needs (xarray, dask.array, zarr, numba), best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["200x64x64", "1000x64x64", "3000x96x128"],
                    help="frames x ny x nx of the synthetic series")
    ap.add_argument("--cluster", default="threads")
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per size (the best is shown)")
    args = ap.parse_args()

    import xarray as xr

    from ecm_dask.synth import SynthParams, write_synthetic_series

    print(f"{'series':>14} {'wall s':>7} {'drift':>6} {'g2':>6} {'screen':>6} {'fit':>6} {'rest':>6} "
          f"{'px-frames/s':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        for size in args.sizes:
            nt, ny, nx = (int(v) for v in size.split("x"))
            series = work / f"s{size}.zarr"
            if not series.exists():
                write_synthetic_series(series, SynthParams(ny=ny, nx=nx, n_frames=nt, seed=1), progress=False)
            out = work / f"r{size}.zarr"
            cmd = [sys.executable, "-m", "ecm_dask", "run", str(series), "-o", str(out), "--cluster", args.cluster,
                   "--quiet", "--no-report", "--overwrite"]
            # as a user runs it: Python writes and reuses bytecode (a sandbox may set PYTHONDONTWRITEBYTECODE);
            # one untimed run first (bytecode, numba's cache), then a timed run from scratch (no checkpoints)
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            walls = []
            for _ in range(1 + args.repeat):
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(f"{out}.stages", ignore_errors=True)
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env)
                walls.append((time.perf_counter() - t0, xr.open_zarr(out).attrs["stage_seconds"]))
            wall, took = min(walls[1:], key=lambda w: w[0])
            parts = [took.get(k) or 0.0 for k in ("drift", "g2", "screen", "fit")]
            print(f"{size:>14} {wall:7.2f} " + " ".join(f"{p:6.2f}" for p in parts)
                  + f" {wall - sum(parts):6.2f} {nt * ny * nx / wall:12.3g}", flush=True)
            print(json.dumps({"size": size, "wall_s": round(wall, 2), "stage_seconds": took}), file=sys.stderr)
    floor = import_floor(args.repeat)
    print(f"floor: a fresh process importing xarray, dask.array, zarr and numba only: {floor:.2f} s (best of "
          f"{args.repeat})", flush=True)


def import_floor(repeat: int) -> float:
    """Wall seconds of a fresh interpreter that imports only the libraries every run needs (best of ``repeat``,
    after one untimed start that writes their bytecode)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cmd = [sys.executable, "-c", "import xarray, dask.array, zarr, numba"]
    walls = []
    for _ in range(1 + repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        walls.append(time.perf_counter() - t0)
    return min(walls[1:])


if __name__ == "__main__":
    main()
