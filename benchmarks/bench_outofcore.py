"""Out-of-core benchmark: the whole pipeline on series several times larger than the workers' total memory.

Run:  .venv/bin/python benchmarks/bench_outofcore.py [--sizes-gb 1 2 4 8.6] [--workdir /tmp/ecm_bench_outofcore]
                                                      [--workers 2 --memory-limit 1GB] [--frames 4000] [--keep]
Validate quickly:  ... --sizes-gb 0.2 0.4

For each size (decimal GB of uint16 counts; frames fixed, the frame as square as possible) a series store is
generated straight into Zarr: ``--source synth`` (default) the synthetic nanowire with ground truth
(``ecm_dask.synth.write_synthetic_series``, rendered on a LocalCluster of ``--workers`` workers
with ``--gen-memory-limit`` each, or in this process with ``--gen-cluster threads``), ``--source random`` random counts (``bench_g2._RandomCounts``, fast; no drift
stage, since noise has no static reference).  Generation time is reported apart.  Stores are reused by a rerun
with the same parameters (a marker is written when one is complete); without --keep they are deleted after a
successful run, after an error or Ctrl-C they are kept for the rerun (and a partial JSON is written).

Then, on ONE LocalCluster of ``--workers`` single-threaded processes with ``--memory-limit`` each
(``ecm_dask.cluster.connect("local", ...)``), the stages of ``ecm-dask run`` (drift -> g2 -> screen -> fit -> results,
same calls as ``run_pipeline``) run for every size in turn.  Per size: wall time per stage and in all,
pixel-frames per second, the peak RSS of each worker process (psutil every 0.2 s on the worker PIDs that
``client.run(os.getpid)`` returns) and of this process, and whether any worker restarted (worker addresses in
``scheduler_info()`` and their PIDs compared before and after: a worker killed by its nanny for exceeding the
memory limit comes back with a new PID, and usually a new address).

Prints a table and writes a JSON of all numbers (``--json``, default ``<workdir>/bench_outofcore.json``).
Timings on a busy machine are indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from _memory import MiB, RssSampler  # noqa: E402
from bench_realscale import run_stages, write_json  # noqa: E402

PIPELINE_STAGES = ("drift", "g2", "screen", "fit", "results")


def shape_for(size_gb: float, frames: int) -> tuple[int, int, int]:
    """(frames, ny, nx) of uint16 counts closest to ``size_gb`` decimal GB with a near-square frame."""
    n_px = max(64, int(round(size_gb * 1e9 / 2 / frames)))
    ny = max(8, int(np.sqrt(n_px)))
    nx = max(8, int(round(n_px / ny)))
    return frames, ny, nx


# ------------------------------------------------------------------------------------------ generation
def generate(shape, source: str, path: Path, seed: int, progress: bool) -> dict:
    """Write a series store at ``path`` (or reuse a complete one made with the same parameters)."""
    from ecm_dask.store import series as SS

    marker = path.with_name(path.name + ".complete.json")
    want = {"shape": list(shape), "source": source, "seed": seed}
    if marker.is_file() and SS.store_state(path) == SS.COMPLETE and json.loads(marker.read_text())["want"] == want:
        info = json.loads(marker.read_text())
        print(f"reusing {path} (generated in {info['seconds']:.0f} s)", flush=True)
        return {**info, "reused": True}
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    if source == "synth":
        from ecm_dask.synth import SynthParams, write_synthetic_series

        params = SynthParams(n_frames=shape[0], ny=shape[1], nx=shape[2], seed=seed)
        write_synthetic_series(path, params, overwrite=True, progress=progress)
    else:
        from bench_g2 import _RandomCounts

        from ecm_dask.pipeline.ingest import resolve_metadata
        from ecm_dask.store.writer import write_series

        src = _RandomCounts(tuple(shape), seed=seed)
        write_series(src, path, resolve_metadata(src), overwrite=True, progress=progress)
    info = {"want": want, "seconds": time.perf_counter() - t0,
            "store_bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file())}
    marker.write_text(json.dumps(info))
    return {**info, "reused": False}


# ------------------------------------------------------------------------------------------- pipeline
def worker_state(client) -> dict[str, int]:
    """{worker address: PID} as the scheduler knows them now."""
    return {addr: int(pid) for addr, pid in client.run(os.getpid).items()}


def run_size(client, series: Path, out: Path, *, drift: bool, progress: bool) -> dict:
    """The pipeline on one store; wall times, per-worker peak RSS, restarts."""
    client.run(lambda: __import__("gc").collect())
    before = worker_state(client)
    keys_before = sorted(client.scheduler_info()["workers"])
    stages: dict = {}
    error = None
    t0 = time.perf_counter()
    with RssSampler(extra_pids=before.values()) as sampler, sampler.window() as whole:
        try:
            run_stages(series, out, stages, sampler, drift=drift, progress=progress)
        except Exception as exc:  # noqa: BLE001 - a failed size is a result (e.g. KilledWorker); go on
            error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - t0
    try:
        client.wait_for_workers(len(before), timeout=60)
    except Exception:  # noqa: BLE001 - reported through the worker sets below
        pass
    after = worker_state(client)
    keys_after = sorted(client.scheduler_info()["workers"])
    me = os.getpid()
    per_worker = {addr: whole.per_pid.get(pid, 0) / MiB for addr, pid in before.items()}
    metrics = {a: w.get("metrics", {}) for a, w in client.scheduler_info()["workers"].items()}
    spilled = sum(m.get("spilled_bytes", {}).get("disk", 0) for m in metrics.values())
    return {"stages": stages, "wall_s": wall, "error": error, "pids_before": before, "pids_after": after,
            "restarted": before != after or keys_before != keys_after,
            "peak_worker_rss_mib": per_worker, "peak_main_rss_mib": whole.per_pid.get(me, 0) / MiB,
            "peak_tree_rss_mib": whole.total / MiB, "spilled_to_disk_mib_now": spilled / MiB}


def print_report(res: dict) -> None:
    cfg = res["config"]
    print(f"\n=== out-of-core pipeline ({'drift, ' if cfg['source'] == 'synth' else ''}g2, fit, results) on a "
          f"LocalCluster of {cfg['workers']} workers x 1 thread, memory limit {cfg['memory_limit']} each "
          f"(total {res['worker_memory_total'] / 1e9:.2f} GB); {cfg['source']} series ===")
    head = (f"{'GB':>6} {'frames x ny x nx':>18} {'x mem':>6} {'gen s':>7} | " + " ".join(f"{s + ' s':>9}" for s in
            PIPELINE_STAGES) + f" {'wall s':>8} {'px-frames/s':>11} {'peak worker MiB':>16} {'main MiB':>9} "
            f"{'restart':>7}")
    print(head)
    print("-" * len(head))
    for r in res["sizes"]:
        t, y, x = r["shape"]
        row = (f"{r['gb']:6.3g} {f'{t}x{y}x{x}':>18} {r['x_worker_memory']:6.2f} {r['generation']['seconds']:7.1f} | ")
        row += " ".join(f"{r['run']['stages'][s]['wall_s']:9.1f}" if s in r["run"]["stages"] else f"{'-':>9}"
                        for s in PIPELINE_STAGES)
        peaks = r["run"]["peak_worker_rss_mib"].values()
        row += (f" {r['run']['wall_s']:8.1f} {r['px_frames_per_s']:11.3g} "
                f"{' / '.join(f'{v:.0f}' for v in peaks):>16} {r['run']['peak_main_rss_mib']:9.0f} "
                f"{'YES' if r['run']['restarted'] else 'no':>7}")
        print(row)
        if r["run"]["error"]:
            print(f"       FAILED: {r['run']['error']}")
    print("x mem: series size over the total worker memory limit; gen s: generating the store (not in wall s; "
          "'reused' stores show their original time); peak worker MiB: RSS of each worker process")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--sizes-gb", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.6])
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--source", choices=["synth", "random"], default="synth")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="1GB", help="per worker (the out-of-core condition)")
    ap.add_argument("--gen-memory-limit", default="2GB", help="per worker while generating the stores")
    ap.add_argument("--gen-cluster", choices=["local", "threads"], default="local",
                    help="where the stores are generated (threads: in this process)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ecm_bench_outofcore"), help="scratch folder (large)")
    ap.add_argument("--keep", action="store_true", help="keep the series stores and results")
    ap.add_argument("--json", type=Path, help="results JSON (default <workdir>/bench_outofcore.json)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    from dask.utils import parse_bytes

    from ecm_dask.cluster import connect

    args = parse_args(argv)
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    need = sum(args.sizes_gb) * 1e9 * 0.6  # compressed stores (~1/2.8) + g2/results of the largest
    if shutil.disk_usage(workdir).free < need:
        raise SystemExit(f"{workdir}: {shutil.disk_usage(workdir).free / 1e9:.1f} GB free, about {need / 1e9:.1f} "
                         "GB needed; use --workdir")
    progress = not args.quiet
    res = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
           "worker_memory_total": args.workers * parse_bytes(args.memory_limit), "sizes": []}
    json_path = args.json or workdir / "bench_outofcore.json"
    quiet_log = (lambda line: None)
    plans = []
    for gb in args.sizes_gb:
        shape = shape_for(gb, args.frames)
        plans.append((gb, shape, workdir / f"series-{shape[0]}x{shape[1]}x{shape[2]}-{args.source}.zarr"))
    try:
        print(f"generating {len(plans)} store(s) on {args.workers} workers x {args.gen_memory_limit}", flush=True)
        gen = {}
        with connect(args.gen_cluster, workers=args.workers, memory_limit=args.gen_memory_limit, dashboard=False,
                     log=quiet_log):
            for gb, shape, path in plans:
                gen[path] = generate(shape, args.source, path, args.seed, progress)
        with connect("local", workers=args.workers, memory_limit=args.memory_limit, dashboard=False,
                     log=lambda line: print(line, flush=True)) as client:
            for gb, shape, path in plans:
                nbytes = int(np.prod(shape)) * 2
                print(f"\n== {gb} GB: {shape} ==", flush=True)
                out = workdir / f"run-{path.stem}"
                shutil.rmtree(out, ignore_errors=True)
                run = run_size(client, path, out, drift=args.source == "synth", progress=progress)
                res["sizes"].append({"gb": nbytes / 1e9, "shape": list(shape), "nbytes": nbytes,
                                     "x_worker_memory": nbytes / res["worker_memory_total"],
                                     "generation": gen[path], "run": run,
                                     "px_frames_per_s": int(np.prod(shape)) / run["wall_s"]})
                if not args.keep:
                    shutil.rmtree(out, ignore_errors=True)
    except BaseException:  # keep the generated stores: a rerun reuses them
        write_json(json_path, {**res, "incomplete": True})
        print(f"\nstopped; partial results in {json_path}; stores in {workdir} are reused by a rerun", file=sys.stderr)
        raise
    if not args.keep:
        for _, _, path in plans:
            shutil.rmtree(path, ignore_errors=True)
            path.with_name(path.name + ".complete.json").unlink(missing_ok=True)
    print_report(res)
    write_json(json_path, res)
    return res


if __name__ == "__main__":
    main()
