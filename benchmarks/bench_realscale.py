"""Real-scale benchmark: the whole pipeline on a series the size of a published tilted-dark-field ECM dataset.

Run:  .venv/bin/python benchmarks/bench_realscale.py [--frames 4000 --ny 631 --nx 861] [--cluster local threads]
                                                      [--workdir /tmp/ecm_bench_realscale] [--keep] [--subset 64]
Validate quickly:  ... --frames 800 --ny 160 --nx 200

Default size 631 x 861 pixels x 4000 frames uint16 (4.35 GB), as the published dataset whose authors'
pure-Python g2 step took 5461 s.  Target (issue 8): whole pipeline < 5 min, peak memory < 4 GB, on 2 cores.

Steps (times and memory of (1) are reported apart and not counted in the pipeline):
1. raw input as it comes from a microscope: one uncompressed multi-page BigTIFF of frames (the cheapest honest
   path: a single file read through a memory map, like camera software writes).  Its frames are the synthetic
   nanowire (ground truth known): rendered pixel-major into a temporary Zarr array by
   ``ecm_dask.synth.writer.render_to_temp`` on a LocalCluster of 2 workers (both cores), then exported frame
   by frame with tifffile.  Reused on a rerun with the same parameters (a marker file is written last).
2. for each ``--cluster`` mode (``local``: LocalCluster of ``--workers`` single-threaded processes with
   ``--memory-limit`` each; ``threads``: dask's threaded scheduler in this process) the stages of ``ecm-dask
   ingest`` + ``ecm-dask run`` called through their Python API with a timer around each: cluster start,
   ingest (TIFF -> series.zarr), drift (reference ROI suggested automatically unless --reference-roi),
   g2 (multi-tau, 8 points/octave), fit (KWW), results (results.zarr DataTree); then, apart from the total, the
   report ``ecm-dask run`` ends with (``--no-report``: not timed).  Per stage: wall time, peak
   RSS of the whole process tree (this process + LocalCluster nannies/workers; psutil every 0.2 s, summed),
   and this process's own VmHWM (reset before each stage).  The tau map is checked against the ground truth.
3. the per-pixel-loop approach of published code on ``--subset`` pixels of the series (one core): for each
   pixel, for each lag, mean(I[t] I[t+lag]) / mean(I)^2 (the same log-spaced lags as ecm_dask, and every lag
   1..T/2 on up to 8 pixels as published code does), then scipy ``curve_fit`` of the KWW model per pixel;
   CPU time extrapolated to the full frame and compared with the wall time of the g2 and fit stages.

Prints a table and writes a JSON of all numbers (``--json``, default ``<workdir>/bench_realscale.json``).
Without --keep the data in the workdir is deleted after a successful run (the JSON stays); after an error or
Ctrl-C it is kept (and a partial JSON written) so a rerun reuses the raw input.  Each ``--cluster`` run starts
from a fresh ingest, so a rerun never times a half-resumed stage.  Timings on a busy machine are indicative.
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
from _memory import MiB, RssSampler, stage  # noqa: E402

PUBLISHED = {"ny": 631, "nx": 861, "frames": 4000, "g2_seconds": 5461.0}
STAGES = ("cluster", "ingest", "drift", "g2", "screen", "fit", "results")


# ------------------------------------------------------------------------------------------ raw input
def _params(args):
    from ecm_dask.synth import SynthParams

    return SynthParams(ny=args.ny, nx=args.nx, n_frames=args.frames, seed=args.seed)


def generate_raw(args, params, workdir: Path) -> tuple[Path, dict]:
    """Write the raw multi-page TIFF (or reuse a complete one with the same parameters)."""
    from ecm_dask.cluster import connect
    from ecm_dask.store import layout as L
    from ecm_dask.synth.writer import RenderedSource, params_dict, render_to_temp

    raw = workdir / "raw" / "frames.tif"
    marker = raw.with_suffix(".complete.json")
    want = params_dict(params)
    if marker.is_file() and raw.is_file() and json.loads(marker.read_text()).get("params") == want:
        info = json.loads(marker.read_text())
        print(f"reusing raw input {raw} ({raw.stat().st_size / 1e9:.2f} GB, generated in "
              f"{info['render_s'] + info['export_s']:.0f} s)", flush=True)
        return raw, {**info, "reused": True}
    marker.unlink(missing_ok=True)
    raw.parent.mkdir(parents=True, exist_ok=True)
    layout = L.plan_layout((params.n_frames, params.ny, params.nx), 2)
    tmp = workdir / "raw" / "render-tmp.zarr"
    print(f"generating raw input {raw}: synthetic nanowire {params.n_frames} x {params.ny} x {params.nx} uint16 "
          f"({params.n_frames * params.ny * params.nx * 2 / 1e9:.2f} GB)", flush=True)
    t0 = time.perf_counter()
    with connect(args.gen_cluster, workers=args.workers, memory_limit=args.gen_memory_limit, dashboard=False,
                 log=lambda line: None):
        tmp = render_to_temp(params, tmp, layout, progress=not args.quiet)  # resumes tiles of an interrupted run
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    import tifffile

    src = RenderedSource(str(tmp), params)
    step = layout.shard[0]
    part = raw.with_suffix(".partial.tif")
    with tifffile.TiffWriter(part, bigtiff=True) as tw:
        for start in range(0, params.n_frames, step):
            for frame in src.read(start, min(start + step, params.n_frames)):
                tw.write(frame, contiguous=True)
    os.replace(part, raw)
    t_export = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    info = {"params": want, "render_s": t_render, "export_s": t_export, "bytes": raw.stat().st_size,
            "format": "uncompressed multi-page BigTIFF, one page per frame"}
    marker.write_text(json.dumps(info, indent=2))
    return raw, {**info, "reused": False}


# ------------------------------------------------------------------------------------- pipeline
def run_mode(mode: str, args, params, raw: Path, workdir: Path, sampler: RssSampler) -> dict:
    """ingest + drift + g2 + fit + results under one scheduler; per-stage wall time and memory."""
    from ecm_dask.cluster import connect
    from ecm_dask.pipeline.ingest import ingest

    out = workdir / f"run-{mode}"
    shutil.rmtree(out, ignore_errors=True)  # a rerun starts this mode afresh (timings of a resumed run mean little)
    out.mkdir(parents=True)
    series, work = out / "series.zarr", out / "stages"
    stages: dict = {}
    progress = not args.quiet
    print(f"\n== {mode}: ingest + run ==", flush=True)
    t_all = time.perf_counter()
    with stage(stages, "cluster", sampler):
        ctx = connect(mode, workers=args.workers, memory_limit=args.memory_limit, dashboard=False,
                      log=lambda line: print(line, flush=True))
        client = ctx.__enter__()
    try:
        with stage(stages, "ingest", sampler):
            ingest(raw, series, frame_time_s=params.frame_time_s, pixel_size_nm=params.pixel_size_nm,
                   temperature_C=params.temperature_C, progress=progress)
        run_stages(series, out, stages, sampler, reference_roi=args.reference_roi, progress=progress)
        total = time.perf_counter() - t_all
        report: dict = {}
        if not args.no_report:  # the default end of `ecm-dask run`, timed apart from the pipeline
            from ecm_dask.pipeline.report import write_report

            with stage(report, "report", sampler):
                write_report(out / "results.zarr", out / "report", series_path=series)
        workers = client.scheduler_info()["workers"] if client is not None else {}
    finally:
        ctx.__exit__(None, None, None)
    record = {"stages": stages, "total_s": total, "peak_tree_rss_mib": max(s["peak_tree_rss_mib"] for s in
                                                                          stages.values()),
              "report": report.get("report"),
              "workers": len(workers), "series_store_bytes": _du(series), "results_bytes": _du(out / "results.zarr"),
              "accuracy": accuracy(out / "results.zarr", params, work / "drift.zarr")}
    return record


def run_stages(series: Path, out: Path, stages: dict, sampler: RssSampler | None, *, reference_roi=None,
               drift: bool = True, progress: bool = False) -> Path:
    """drift -> g2 -> screen -> fit -> results of ``ecm-dask run`` (same calls and defaults as
    :func:`ecm_dask.pipeline.run.run_pipeline`), each timed into ``stages``; checkpoints in ``out/stages``."""
    import xarray as xr

    from ecm_dask.pipeline.correlate import run_g2
    from ecm_dask.pipeline.drift import run_drift
    from ecm_dask.pipeline.fit import run_fit
    from ecm_dask.pipeline.results import assemble_results
    from ecm_dask.pipeline.run import series_readahead
    from ecm_dask.pipeline.screen import run_screen

    work = out / "stages"
    shifts = None
    with series_readahead(series):  # as run_pipeline: the series read into the page cache during drift
        if drift:
            with stage(stages, "drift", sampler):
                run_drift(series, work / "drift.zarr", roi=reference_roi, margin=16, figure=work / "drift.png",
                          progress=progress)
                shifts = xr.open_zarr(work / "drift.zarr")["shift"].values
        with stage(stages, "g2", sampler):
            run_g2(series, work / "g2.zarr", shifts=shifts, progress=progress)
    with stage(stages, "screen", sampler):
        run_screen(work / "g2.zarr", work / "screen.zarr", drift_path=work / "drift.zarr" if drift else None)
    with stage(stages, "fit", sampler):
        run_fit(work / "g2.zarr", work / "maps.zarr", progress=progress)
    with stage(stages, "results", sampler):
        assemble_results(out / "results.zarr", work / "maps.zarr", work / "g2.zarr",
                         work / "drift.zarr" if drift else None, screen=work / "screen.zarr")
    return out / "results.zarr"


def accuracy(results: Path, params, drift: Path) -> dict:
    """τ map against the synthetic ground truth (pixels fitted ok and inside the wire)."""
    import xarray as xr

    from ecm_dask import schema as S
    from ecm_dask.synth.model import drift_trace, truth_maps

    maps = xr.open_zarr(results)
    truth = truth_maps(params)
    tau_true = np.asarray(truth[S.TRUTH_TAU])
    ok = (maps[S.STATUS].values == 0) & np.isfinite(tau_true)
    wire = np.isfinite(tau_true)
    err = np.abs(np.log10(maps[S.TAU].values[ok] / tau_true[ok]))
    est = xr.open_zarr(drift)["shift"].values
    true_shift = drift_trace(params)
    rms = float(np.sqrt(np.mean(((est - est[0]) - (true_shift - true_shift[0])) ** 2)))
    return {"wire_pixels": int(wire.sum()), "fit_ok_in_wire": int(ok.sum()),
            "median_abs_log10_tau_error": float(np.median(err)) if err.size else None,
            "drift_rms_error_px": rms}


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).exists() else 0


# ------------------------------------------------------------------------------- per-pixel loop
def loop_g2(trace: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Published-style g2 of one pixel: for each lag, mean(I[t] I[t+lag]) / mean(I)^2 (standard normalisation)."""
    i = trace.astype(np.float64)
    norm = np.mean(i) ** 2
    return np.array([np.mean(i[:-k] * i[k:]) / norm for k in lags])


def kww(t, baseline, contrast, tau, beta):
    return baseline + contrast * np.exp(-2.0 * (t / tau) ** beta)


def loop_fit(t: np.ndarray, g: np.ndarray, frame_time: float, duration: float):
    """scipy curve_fit of the KWW model for one pixel (bounded 'trf', as in published per-pixel code)."""
    from scipy.optimize import curve_fit

    base = float(np.mean(g[-5:]))
    amp = max(float(g[0] - base), 1e-4)
    below = np.nonzero(g - base < amp * np.exp(-2.0))[0]
    tau0 = float(t[below[0]]) if below.size else float(t[-1])
    p0 = (base, amp, min(max(tau0, frame_time * 1.01), duration * 9.9), 0.7)
    bounds = ([0.0, 0.0, frame_time, 0.1], [np.inf, 1.0, 10 * duration, 2.5])
    try:
        popt, _ = curve_fit(kww, t, g, p0=p0, bounds=bounds, method="trf", maxfev=2000)
        return popt
    except (RuntimeError, ValueError):
        return None


def per_pixel_loop(series: Path, n_pixels: int, stage_seconds: dict) -> dict:
    """Time the loop approach on a square patch of ~n_pixels pixels at the frame centre (the wire)."""
    from ecm_dask.kernels.lags import multitau_lags
    from ecm_dask.store.series import open_series

    ds = open_series(series)
    n_t, ny, nx = ds.intensity.shape
    side = max(1, int(round(np.sqrt(n_pixels))))
    y0, x0 = max(0, ny // 2 - side // 2), max(0, nx // 2 - side // 2)
    block = ds.intensity[:, y0:y0 + side, x0:x0 + side].values.reshape(n_t, -1)
    frame_time = float(ds.attrs["frame_time_s"])
    lags = multitau_lags(n_t).lag
    t = lags * frame_time
    t0 = time.process_time()
    curves = [loop_g2(block[:, p], lags) for p in range(block.shape[1])]
    t_g2 = time.process_time() - t0
    # published per-pixel code evaluates the curve at every lag; time that on a few pixels
    all_lags = np.arange(1, n_t // 2 + 1)
    n_all = min(block.shape[1], 8)
    t0 = time.process_time()
    for p in range(n_all):
        loop_g2(block[:, p], all_lags)
    t_all = time.process_time() - t0
    t0 = time.process_time()
    fits = [loop_fit(t, g, frame_time, n_t * frame_time) for g in curves]
    t_fit = time.process_time() - t0
    n = block.shape[1]
    full = ny * nx
    est = {"g2": t_g2 / n * full, "g2_all_lags": t_all / n_all * full, "fit": t_fit / n * full}

    def ratio(key, stage_key):
        return {m: est[key] / s[stage_key] for m, s in stage_seconds.items()}

    return {"pixels": n, "patch": [y0, y0 + side, x0, x0 + side], "lags": int(lags.size), "g2_cpu_s": t_g2,
            "all_lags": int(all_lags.size), "all_lags_pixels": n_all, "g2_all_lags_cpu_s": t_all,
            "fit_cpu_s": t_fit, "fit_failed": sum(f is None for f in fits),
            "extrapolated_g2_s": est["g2"], "extrapolated_g2_all_lags_s": est["g2_all_lags"],
            "extrapolated_fit_s": est["fit"], "speedup_g2": ratio("g2", "g2"),
            "speedup_g2_all_lags": ratio("g2_all_lags", "g2"), "speedup_fit": ratio("fit", "fit"),
            "speedup_g2_fit": {m: (est["g2"] + est["fit"]) / (s["g2"] + s["fit"]) for m, s in stage_seconds.items()}}


# ------------------------------------------------------------------------------------------ report
def print_report(res: dict) -> None:
    cfg = res["config"]
    gb = cfg["frames"] * cfg["ny"] * cfg["nx"] * 2 / 1e9
    print(f"\n=== real-scale ECM pipeline: {cfg['frames']} frames x {cfg['ny']} x {cfg['nx']} px uint16 "
          f"({gb:.2f} GB), {os.cpu_count()} cores ===")
    gen = res["generation"]
    print(f"raw input ({gen['format']}, {gen['bytes'] / 1e9:.2f} GB): render {gen['render_s']:.1f} s + TIFF export "
          f"{gen['export_s']:.1f} s{' (reused from an earlier run)' if gen.get('reused') else ''}; not counted below")
    modes = list(res["runs"])
    head = f"{'stage':>9}" + "".join(f" | {m + ' wall s':>13} {'tree MiB':>9} {'main HWM':>9}" for m in modes)
    print(head)
    print("-" * len(head))
    for name in STAGES:
        row = f"{name:>9}"
        for m in modes:
            s = res["runs"][m]["stages"][name]
            hwm = s["main_vmhwm_mib"]
            row += f" | {s['wall_s']:13.1f} {s['peak_tree_rss_mib']:9.0f} {hwm if hwm is not None else float('nan'):9.0f}"
        print(row)
    row = f"{'total':>9}"
    for m in modes:
        r = res["runs"][m]
        row += f" | {r['total_s']:13.1f} {r['peak_tree_rss_mib']:9.0f} {'':>9}"
    print(row)
    for m in modes:
        rep = res["runs"][m].get("report")
        if rep:
            print(f"{m}: report (figures, summary, explorer page; the default end of `ecm-dask run`, not in the total): "
                  f"{rep['wall_s']:.1f} s, tree {rep['peak_tree_rss_mib']:.0f} MiB")
    target = res["target"]
    for m in modes:
        r = res["runs"][m]
        a = r["accuracy"]
        ok = r["total_s"] < target["wall_s"] and r["peak_tree_rss_mib"] * MiB < target["peak_bytes"]
        mtau = a["median_abs_log10_tau_error"]
        print(f"{m}: total {r['total_s']:.0f} s, peak {r['peak_tree_rss_mib'] / 1024:.2f} GiB -> target "
              f"(< {target['wall_s']:.0f} s, < {target['peak_bytes'] / 1e9:.0f} GB) {'MET' if ok else 'NOT MET'}; "
              f"median |log10 tau err| {mtau if mtau is None else f'{mtau:.3f}'} on {a['fit_ok_in_wire']}/"
              f"{a['wire_pixels']} wire px fitted ok; drift RMS error {a['drift_rms_error_px']:.3f} px")
    lp = res.get("loop")
    if lp:
        print(f"\nper-pixel loop (Python over pixels and {lp['lags']} lags + scipy curve_fit per pixel, one core) on "
              f"{lp['pixels']} px, extrapolated to {cfg['ny'] * cfg['nx']} px:")
        print(f"  g2  {lp['g2_cpu_s'] / lp['pixels'] * 1e3:8.2f} ms/px -> {lp['extrapolated_g2_s']:9.0f} s   "
              + "  ".join(f"{m}: {v:.3g}x faster" for m, v in lp["speedup_g2"].items()))
        print(f"  g2 at all {lp['all_lags']} lags ({lp['all_lags_pixels']} px) "
              f"{lp['g2_all_lags_cpu_s'] / lp['all_lags_pixels'] * 1e3:8.2f} ms/px -> "
              f"{lp['extrapolated_g2_all_lags_s']:9.0f} s   "
              + "  ".join(f"{m}: {v:.3g}x faster" for m, v in lp["speedup_g2_all_lags"].items()))
        print(f"  fit {lp['fit_cpu_s'] / lp['pixels'] * 1e3:8.2f} ms/px -> {lp['extrapolated_fit_s']:9.0f} s   "
              + "  ".join(f"{m}: {v:.3g}x faster" for m, v in lp["speedup_fit"].items())
              + f"   ({lp['fit_failed']}/{lp['pixels']} curve_fit failures)")
        print("  g2+fit " + "  ".join(f"{m}: {v:.3g}x faster" for m, v in lp["speedup_g2_fit"].items())
              + f"; published pure-Python g2 step at {PUBLISHED['ny']}x{PUBLISHED['nx']}x{PUBLISHED['frames']}: "
              f"{PUBLISHED['g2_seconds']:.0f} s")
    print("tree MiB: peak of the summed RSS of this process and its children (shared pages counted per process); "
          "main HWM: this process's VmHWM during the stage (MiB)")


# -------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--frames", type=int, default=PUBLISHED["frames"])
    ap.add_argument("--ny", type=int, default=PUBLISHED["ny"])
    ap.add_argument("--nx", type=int, default=PUBLISHED["nx"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="scratch folder, large (default /tmp/ecm_bench_realscale_TxYxX)")
    ap.add_argument("--keep", action="store_true", help="keep the raw TIFF and all stores in the workdir")
    ap.add_argument("--subset", type=int, default=64, help="pixels for the per-pixel loop (0: skip it)")
    ap.add_argument("--cluster", nargs="+", default=["local", "threads"], choices=["local", "threads"],
                    help="schedulers to run the pipeline under, one full run each")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (1 thread each)")
    ap.add_argument("--memory-limit", default="2GB", help="per LocalCluster worker")
    ap.add_argument("--gen-memory-limit", default="3GB", help="per worker while rendering the raw input")
    ap.add_argument("--gen-cluster", choices=["local", "threads"], default="local",
                    help="where the raw input is rendered (threads: in this process)")
    ap.add_argument("--reference-roi", help="drift reference Y0:Y1,X0:X1 (default: suggested automatically)")
    ap.add_argument("--target-s", type=float, default=300.0, help="wall-time target of the whole pipeline")
    ap.add_argument("--target-gb", type=float, default=4.0, help="peak-memory target (GB)")
    ap.add_argument("--json", type=Path, help="results JSON (default <workdir>/bench_realscale.json)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--no-report", action="store_true", help="do not time the report after the pipeline")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    workdir = args.workdir or Path(f"/tmp/ecm_bench_realscale_{args.frames}x{args.ny}x{args.nx}")
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    need = args.frames * args.ny * args.nx * 2 * 1.9  # raw TIFF + temp render (compressed) + series + g2
    if free < need:
        raise SystemExit(f"{workdir}: {free / 1e9:.1f} GB free, about {need / 1e9:.1f} GB needed; use --workdir")
    params = _params(args)
    res = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
           "target": {"wall_s": args.target_s, "peak_bytes": args.target_gb * 1e9}, "runs": {}}
    json_path = args.json or workdir / "bench_realscale.json"
    try:
        raw, res["generation"] = generate_raw(args, params, workdir)
        with RssSampler() as sampler:
            for mode in args.cluster:
                res["runs"][mode] = run_mode(mode, args, params, raw, workdir, sampler)
        if args.subset:
            stage_s = {m: {k: r["stages"][k]["wall_s"] for k in ("g2", "fit")} for m, r in res["runs"].items()}
            print(f"\nper-pixel loop on {args.subset} pixels ...", flush=True)
            res["loop"] = per_pixel_loop(workdir / f"run-{args.cluster[-1]}" / "series.zarr", args.subset, stage_s)
    except BaseException:  # keep what was generated: a rerun reuses the raw input
        write_json(json_path, {**res, "incomplete": True})
        print(f"\nstopped; partial results in {json_path}; the raw input in {workdir} is reused by a rerun",
              file=sys.stderr)
        raise
    if not args.keep:
        for p in [workdir / "raw", *(workdir / f"run-{m}" for m in args.cluster)]:
            shutil.rmtree(p, ignore_errors=True)
    print_report(res)
    write_json(json_path, res)
    return res


def write_json(path: Path, res: dict) -> None:
    """Write a benchmark's results (numpy scalars as floats) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
