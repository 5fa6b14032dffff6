"""Which spatial pooling recovers τ better at low contrast: summing k×k pixels before correlating, or
averaging the k×k per-pixel g2 curves?

Run:  .venv/bin/python benchmarks/bench_pooling.py [--contrast 0.05 0.01] [--pool 2 3] [--frames 4000]

Synthetic nanowire (ground truth τ per pixel), g2 by the default estimator, then per pooled cell a bounded
KWW fit (scipy curve_fit 'trf': baseline fixed at 1, A, τ, β free) of the wire's bulk cells; τ error is
|log10(τ_fit / τ_true)| with τ_true the geometric mean of the cell's true τ.  Prints the median error and
the fraction of failed fits (no convergence, or τ at a bound) per mode.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

import numpy as np
import xarray as xr
from scipy.optimize import OptimizeWarning, curve_fit


def kww(t, a, log_tau, beta):
    return 1.0 + a * np.exp(-2.0 * (t / np.exp(log_tau)) ** beta)


def fit_tau(curve, lag, frame_time, t_max):
    ok = np.isfinite(curve)
    if ok.sum() < 5:
        return np.nan
    c0 = max(curve[ok][:3].mean() - 1, 1e-4)
    lo = [0.0, np.log(frame_time), 0.1]
    hi = [1.0, np.log(10 * t_max), 2.5]
    guess = [min(c0, 0.99), np.log(np.clip(lag[ok][np.argmin(np.abs(curve[ok] - 1 - c0 / np.e**2))], frame_time * 1.01,
                                           t_max)), 0.7]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            p, _ = curve_fit(kww, lag[ok], curve[ok], p0=guess, bounds=(lo, hi), method="trf", maxfev=2000)
    except (RuntimeError, ValueError):
        return np.nan
    if np.isclose(p[1], lo[1], atol=1e-3) or np.isclose(p[1], hi[1], atol=1e-3):
        return np.nan  # at a bound: not a measurement
    return float(np.exp(p[1]))


def study(contrast, pool, frames, size, seed, tmp):
    from ecm_dask.ops import correlate
    from ecm_dask.store.series import open_series
    from ecm_dask.synth import SynthParams, write_synthetic_series

    p = SynthParams(ny=size[0], nx=size[1], n_frames=frames, seed=seed, contrast=contrast, drift_px=(0.0, 0.0),
                    drift_walk_px=0.0, tau_bulk_s=20.0)
    path = write_synthetic_series(os.path.join(tmp, f"c{contrast}.zarr"), p, overwrite=True, progress=False)
    ds = open_series(path)
    truth = xr.open_zarr(path, group="truth").load()
    k = pool
    ny, nx = (size[0] // k) * k, (size[1] // k) * k
    region = truth.region.values[:ny, :nx].reshape(ny // k, k, nx // k, k)
    bulk = (region == 1).all(axis=(1, 3))
    log_tau = np.log(truth.tau.values[:ny, :nx]).reshape(ny // k, k, nx // k, k)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # vacuum cells have no tau; only bulk cells are used
        tau_true = np.exp(np.nanmean(log_tau, axis=(1, 3)))
    out = {}
    for mode in ("average", "sum"):
        res = correlate(ds, pool=k, pool_mode=mode).compute()
        lag = res.lag.values
        errs, fails = [], 0
        cells = np.argwhere(bulk)
        for iy, ix in cells:
            tau = fit_tau(res.g2.values[iy, ix], lag, p.frame_time_s, frames * p.frame_time_s)
            if not np.isfinite(tau):
                fails += 1
                continue
            errs.append(abs(np.log10(tau / tau_true[iy, ix])))
        out[mode] = (float(np.median(errs)) if errs else np.nan, fails / max(len(cells), 1), len(cells))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contrast", type=float, nargs="+", default=[0.05, 0.01])
    ap.add_argument("--pool", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--size", default="64x96")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    print(f"pooling study: synthetic wire {size[0]}x{size[1]}, {args.frames} frames, bulk cells only")
    print(f"{'contrast':>8} {'k':>3} {'mode':>8} {'median |log10 tau err|':>23} {'failed':>7} {'cells':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for c in args.contrast:
            for k in args.pool:
                for mode, (err, fail, n) in study(c, k, args.frames, size, args.seed, tmp).items():
                    print(f"{c:8g} {k:3d} {mode:>8} {err:23.3f} {fail:7.1%} {n:6d}")


if __name__ == "__main__":
    main()
