"""How far can a map be trusted?  The default `ecm-dask run` on synthetic nanowires, judged per region vs truth.

For each case (the demo wire with drift, seeds 0 and 1, and the same wire without drift) the script writes the
synthetic series (unless it exists in --workdir), runs the whole pipeline as `ecm-dask run` does (threads) and
prints, against the ground truth the pipeline never sees:

- artefacts: wire pixels reported ok with tau > 3x truth (% of all wire pixels; edge rows = wire pixels next to
  vacuum, counted separately), crystal pixels not ok (%), interior pixels lost to the artefact statuses (%);
- bulk and surface (truth regions, ok pixels): median log10(tau/tau_true), median |log10 error|, Spearman rho;
- the surface/bulk ratio of median tau as the run reports it (classified regions, /distributions, with its CI)
  and the truth ratio (a) at the same pixels, (b) over all truth pixels of the classified regions;
- the time of the fit stage (pooling + fit) in pixels/s.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/study_maps.py [--workdir /tmp/ecm_maps] [--cases drift_s0 ...]
[--json out.json]`` (about 40 s per case on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CASES = {
    "drift_s0": {"seed": 0},
    "drift_s1": {"seed": 1},
    "nodrift_s0": {"seed": 0, "drift_px": (0.0, 0.0), "drift_walk_px": 0.0},
}


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0]) if a.size > 2 else float("nan")


def evaluate(results: Path, series: Path) -> dict:
    """The numbers of one case (see the module docstring)."""
    import xarray as xr
    from scipy import ndimage

    from ecm_dask import schema as S

    tree = xr.open_datatree(results, engine="zarr")
    root = tree.to_dataset()
    truth = xr.open_zarr(series, group=S.TRUTH_GROUP).load()
    tau_t, reg = truth[S.TRUTH_TAU].values, truth[S.TRUTH_REGION].values
    tau, status = root[S.TAU].values.astype(np.float64), root[S.STATUS].values
    ok = status == S.STATUS_OK
    wire = (reg == S.REGION_BULK) | (reg == S.REGION_SURFACE)
    edge = wire & ndimage.binary_dilation(reg == S.REGION_VACUUM)
    interior = wire & ~ndimage.binary_dilation(reg != S.REGION_BULK, iterations=2) | (
        (reg == S.REGION_SURFACE) & ~edge)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.log10(tau / tau_t)
    slow = ok & wire & (tau > 3 * tau_t)
    out = {"wire_px": int(wire.sum()), "ok_wire_px": int((ok & wire).sum()),
           "slow_ok_pct_of_wire": 100.0 * slow.sum() / wire.sum(),
           "edge_px": int(edge.sum()), "edge_ok": int((ok & edge).sum()), "edge_slow_ok": int((slow & edge).sum()),
           "crystal_not_ok_pct": 100.0 * np.mean(~ok[reg == S.REGION_CRYSTAL]),
           "interior_artefact_pct": 100.0 * np.mean(np.isin(status[interior], (S.STATUS_DRIFT_EDGE, S.STATUS_STATIC,
                                                                                S.STATUS_VACUUM)))}
    for name, code in (("bulk", S.REGION_BULK), ("surface", S.REGION_SURFACE)):
        m = ok & (reg == code)
        e = err[m]
        out[name] = {"n_ok": int(m.sum()), "n": int((reg == code).sum()), "median_log10_err": float(np.median(e)),
                     "median_abs_log10_err": float(np.median(np.abs(e))), "spearman": spearman(tau[m], tau_t[m])}
    regions = tree[S.REGIONS_GROUP].to_dataset()[S.REGION].values
    dist = tree[S.DISTRIBUTIONS_GROUP].to_dataset()
    cs, cb = ok & (regions == S.REGION_SURFACE), ok & (regions == S.REGION_BULK)
    out["ratio_truth_at_pixels"] = float(np.nanmedian(tau_t[cs]) / np.nanmedian(tau_t[cb]))
    out["ratio_truth_regions"] = float(np.median(tau_t[reg == S.REGION_SURFACE]) / np.median(tau_t[reg == S.REGION_BULK]))
    if "surface_bulk_value" in dist:
        c = dist.sel({S.QUANTITY: "tau_ratio"})
        out["ratio_run"] = [float(c[f"surface_bulk_{k}"]) for k in ("value", "ci_low", "ci_high")]
    out["region_agreement_pct"] = 100.0 * float(np.mean(regions[wire | (reg == S.REGION_VACUUM)]
                                                        == reg[wire | (reg == S.REGION_VACUUM)]))
    return out


def run_case(name: str, workdir: Path) -> dict:
    from dataclasses import replace

    from ecm_dask.pipeline.run import run_pipeline, stage_dir
    from ecm_dask.synth import SynthParams, write_synthetic_series

    params = replace(SynthParams(), **CASES[name])
    case = workdir / name
    series = case / "series.zarr"
    if not (series / "zarr.json").is_file():
        write_synthetic_series(series, params, overwrite=True, progress=False)
    out = case / "results.zarr"
    t0 = time.perf_counter()
    run_pipeline(series, out, overwrite=True, progress=False, drift=params.drift_px != (0.0, 0.0))
    total = time.perf_counter() - t0
    # the fit stage again, alone, for its speed
    import shutil

    work = stage_dir(out)
    shutil.rmtree(work / "maps.zarr")
    t0 = time.perf_counter()
    run_pipeline(series, out, overwrite=False, progress=False, drift=params.drift_px != (0.0, 0.0))
    fit_s = time.perf_counter() - t0
    res = evaluate(out, series)
    res["pipeline_s"] = total
    res["fit_and_results_s"] = fit_s
    res["fit_px_per_s"] = params.ny * params.nx / fit_s
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ecm_maps"))
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    results = {}
    for name in args.cases:
        r = run_case(name, args.workdir)
        results[name] = r
        print(f"== {name}: pipeline {r['pipeline_s']:.1f} s; fit stage + results {r['fit_and_results_s']:.1f} s "
              f"({r['fit_px_per_s']:.3g} px/s incl. results)")
        print(f"  ok wire pixels with tau > 3x truth: {r['slow_ok_pct_of_wire']:.2f} % of {r['wire_px']} "
              f"(edge rows: {r['edge_slow_ok']} of {r['edge_px']}, {r['edge_ok']} ok); crystal not ok "
              f"{r['crystal_not_ok_pct']:.1f} %; interior pixels given an artefact status "
              f"{r['interior_artefact_pct']:.1f} %; classified regions agree with truth on "
              f"{r['region_agreement_pct']:.1f} %")
        for reg in ("bulk", "surface"):
            b = r[reg]
            print(f"  {reg:8s} ok {b['n_ok']:5d} of {b['n']:5d}: median log10 err {b['median_log10_err']:+.3f}, "
                  f"median |err| {b['median_abs_log10_err']:.3f}, Spearman {b['spearman']:.3f}")
        if "ratio_run" in r:
            v, lo, hi = r["ratio_run"]
            print(f"  surface/bulk ratio (run, classified regions) {v:.3f} [{lo:.3f}, {hi:.3f}]; truth at the same "
                  f"pixels {r['ratio_truth_at_pixels']:.3f} ({v / r['ratio_truth_at_pixels']:.2f}x), truth over the "
                  f"truth regions {r['ratio_truth_regions']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
