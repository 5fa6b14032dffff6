"""Where does the bias of fitted tau come from?  Controlled study against known truth (docs/bias.md).

Sections (``--only`` picks some; all by default):

binning   exact expectation of each multi-tau channel (triangle-weighted g2 over the frame pairs of two binned
          frames) fitted at the nominal channel lags: the multi-tau lag assignment alone
kernel    independent KWW speckle pixels (ecm_dask.synth.kernels.gaussian_process, Poisson counts), g2 by
          ecm_dask.kernels.g2, per-pixel fits by ecm_dask.kernels.kww.fit_kww (pairs weights, tau >= 1 frame):
          median fitted/true tau of the ok pixels, of all pixels, ok fraction, and the fit of the mean curve
          over all pixels (the estimator's own bias, without the per-pixel nonlinearity), over tau (frames),
          beta and series length
pipeline  notebook 02's synthetic wire through run_pipeline, as it is and without drift: per-pixel
          fitted/true tau on the truth regions, and the fitted contrast

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/study_tau_bias.py [--only kernel] [--pixels 400]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ecm_dask.kernels.g2 import g2 as g2_kernel
from ecm_dask.kernels.kww import FIT_OK, fit_kww, mean_tau
from ecm_dask.kernels.lags import multitau_lags
from ecm_dask.synth.kernels import gaussian_process, speckle_intensity


def expected_multitau(tau, beta, n_frames, contrast=0.05, points_per_octave=8):
    """Expectation of every multi-tau channel and its nominal lag (frames)."""
    grid = multitau_lags(n_frames, points_per_octave)
    out = []
    for level, k in zip(grid.level, grid.k):
        h = 1 << int(level)
        d = np.arange(-(h - 1), h)
        w = (h - np.abs(d)) / float(h * h)
        out.append(1.0 + contrast * np.sum(w * np.exp(-2.0 * ((k * h + d) / tau) ** beta)))
    return np.array(out), grid.lag.astype(np.float64)


def study_binning():
    print("== binning: exact multi-tau expectation fitted at the nominal lags (fitted/true tau, beta)")
    for ppo in (4, 8):
        for beta in (1.0, 0.65, 0.4):
            row = []
            for tau in (1.5, 2.0, 5.0, 20.0, 100.0, 500.0):
                y, lag = expected_multitau(tau, beta, 4000, points_per_octave=ppo)
                f = fit_kww(y, lag)
                row.append(f"tau {tau:g}: {f.params[0, 2] / tau:.4f}/{f.params[0, 3] / beta:.4f}")
            print(f"ppo {ppo} beta {beta}: " + "  ".join(row))


def pixels(tau, beta, n_frames, n_pix, rng, contrast=0.05, counts=200.0):
    field = gaussian_process(np.full(n_pix, float(tau)), np.full(n_pix, float(beta)), n_frames, rng)
    return rng.poisson(speckle_intensity(counts, contrast, np.abs(field) ** 2)).astype(np.float32)


def measure(tau, beta, n_frames, n_pix, rng, method="multitau", **kw):
    r = g2_kernel(pixels(tau, beta, n_frames, n_pix, rng, **kw), axis=-1, method=method)
    bounds = {"tau": (1.0, 10.0 * n_frames)}
    f = fit_kww(r.g2, r.lag, pairs=r.pairs, bounds=bounds)
    ok = f.status == FIT_OK
    mean_curve = fit_kww(np.nanmean(r.g2, axis=0), r.lag, pairs=r.pairs, bounds=bounds)
    t = f.params[:, 2]
    return {"ok": np.median(t[ok]) / tau if ok.any() else np.nan, "all": np.nanmedian(t) / tau,
            "frac": ok.mean(), "mean": mean_curve.params[0, 2] / tau, "beta": np.median(f.params[ok, 3])}


def study_kernel(n_pix, seed=0):
    rng = np.random.default_rng(seed)
    fmt = "{ok:.2f} (all {all:.2f}, ok {frac:.2f}, mean curve {mean:.3f})"
    print(f"== kernel, fast decays: series of 4000 frames, A = 0.05, 200 counts, {n_pix} px: "
          "median fitted/true tau of ok px (all px, ok fraction, fit of the mean curve)")
    for beta in (1.0, 0.65, 0.4):
        for tau in (1, 2, 3, 5, 10):
            print(f"  beta {beta} tau {tau:3d} frames: " + fmt.format(**measure(tau, beta, 4000, n_pix, rng)))
    print(f"== kernel, series length: tau = 20 frames, {n_pix} px (T/<tau> with <tau> = tau Gamma(1/beta)/beta)")
    for beta in (1.0, 0.65, 0.4):
        mt = float(mean_tau(20.0, beta))
        for ratio in (25, 50, 100, 200, 400):
            m = measure(20.0, beta, int(ratio * 20), n_pix, rng)
            print(f"  beta {beta} T/tau {ratio:3d} (T/<tau> {ratio * 20 / mt:5.1f}): " + fmt.format(**m)
                  + f" beta fit {m['beta']:.2f}")
    print("== kernel, estimator: T = 1000, tau = 40, beta = 0.65; multitau vs fft")
    for method in ("multitau", "fft"):
        print(f"  {method}: " + fmt.format(**measure(40.0, 0.65, 1000, n_pix, rng, method=method)))


def study_pipeline():
    import xarray as xr

    from ecm_dask import schema as S
    from ecm_dask.pipeline.run import run_pipeline
    from ecm_dask.synth import SynthParams, write_synthetic_series

    base = SynthParams(ny=48, nx=64, n_frames=1200, frame_time_s=0.5, tau_bulk_s=20.0, tau_decades=0.6,
                       drift_px=(2.0, -3.0), seed=3)
    cases = [("notebook 02 as is", base, True),
             ("no drift", replace(base, drift_px=(0.0, 0.0), drift_walk_px=0.0), False),
             ("no drift, 4x longer", replace(base, drift_px=(0.0, 0.0), drift_walk_px=0.0, n_frames=4800), False)]
    print("== pipeline (notebook 02's wire): per-pixel fitted/true tau on the truth regions, fit-ok pixels in view")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, p, drift) in enumerate(cases):
            t0 = time.perf_counter()
            s = write_synthetic_series(Path(tmp) / f"s{i}.zarr", p, progress=False)
            out = run_pipeline(s, Path(tmp) / f"r{i}.zarr", drift=drift, progress=False)
            tree = xr.open_datatree(out, engine="zarr")
            maps = tree.to_dataset().load()
            truth = xr.open_zarr(s, group="truth").load()
            seen = np.isfinite(tree["g2"]["mean_intensity"].values)
            med = {}
            for name, code in (("bulk", S.REGION_BULK), ("surface", S.REGION_SURFACE)):
                region = (truth.region.values == code) & seen
                ok = region & (maps.status.values == FIT_OK)
                tau, tt = maps.tau.values[ok], truth.tau.values[ok]
                med[name] = (np.median(tau), np.median(truth.tau.values[region]))
                print(f"  {label:22s} {name:8s} fitted/true {np.median(tau / tt):.2f}, ok {ok.sum() / region.sum():.2f},"
                      f" contrast {np.median(maps.contrast.values[ok]):.4f} (truth {p.contrast}), truth tau "
                      f"{np.median(tt) / p.frame_time_s:.1f} frames, flagged {np.mean(maps.quality.values[ok] > 0):.2f}")
            print(f"  {label:22s} surface/bulk medians: fitted {med['surface'][0] / med['bulk'][0]:.3f}, truth "
                  f"{med['surface'][1] / med['bulk'][1]:.3f}  [{time.perf_counter() - t0:.0f} s]")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=("binning", "kernel", "pipeline"))
    ap.add_argument("--pixels", type=int, default=400, help="pixels per kernel case")
    args = ap.parse_args()
    only = set(args.only or ("binning", "kernel", "pipeline"))
    if "binning" in only:
        study_binning()
    if "kernel" in only:
        study_kernel(args.pixels)
    if "pipeline" in only:
        study_pipeline()


if __name__ == "__main__":
    main()
