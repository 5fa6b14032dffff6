"""Peak memory of one dask worker running the whole pipeline, against the g2 block size: the calibration of the
task-memory model in ``ecm_dask/pipeline/plan.py`` (WORKER_BASE + BLOCK_FACTOR x block).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_task_memory.py [--shape 2000x256x256] [--blocks 80,300,1000]

One single-threaded worker process (LocalCluster, 8 GB limit so that nothing pauses), distributed's MemorySampler
at 0.1 s; prints per block size the planned block (pixels, bytes), the measured peak and the model's prediction.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="2000x256x256", help="frames x ny x nx of the synthetic series")
    ap.add_argument("--blocks", default="80,300,1000", help="--block-mb values to measure")
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()

    from distributed import Client, LocalCluster
    from distributed.diagnostics import MemorySampler

    from ecm_dask.pipeline.config import RunConfig
    from ecm_dask.pipeline.plan import plan_run
    from ecm_dask.pipeline.run import run_pipeline
    from ecm_dask.store.series import open_series
    from ecm_dask.synth import SynthParams, write_synthetic_series

    nt, ny, nx = (int(v) for v in args.shape.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        series = work / f"s{nt}x{ny}x{nx}.zarr"
        if not series.exists():
            write_synthetic_series(series, SynthParams(ny=ny, nx=nx, n_frames=nt, seed=1), progress=False)
        rows = []
        for mb in (float(b) for b in args.blocks.split(",")):
            g2 = {"block_bytes": int(mb * 2**20)}
            plan = plan_run(RunConfig.build(series, g2_options=g2), open_series(series))
            with LocalCluster(n_workers=1, threads_per_worker=1, memory_limit="8GB", processes=True,
                              dashboard_address=None) as lc, Client(lc):
                ms = MemorySampler()
                t0 = time.perf_counter()
                with ms.sample("run", interval=0.1):
                    run_pipeline(series, work / f"r{mb:g}.zarr", overwrite=True, progress=False, g2_options=g2)
                peak = float(ms.to_pandas().max().iloc[0])
            rows.append({"block_mb": mb, "block_px": list(plan.block), "block_mib": round(plan.block_bytes / 2**20, 1),
                         "peak_mib": round(peak / 2**20), "model_mib": round(plan.task_bytes() / 2**20),
                         "min_limit_mib": round(plan.min_limit() / 2**20), "s": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
