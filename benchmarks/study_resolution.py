"""Better per-pixel τ at full resolution: adaptive pooling of g2 curves, measured against the synthetic truth.

Sections (``--only``):

wire   the stored g2 of synthetic wires (``--workdir``, made by ``benchmarks/study_maps.py`` or generated here):
       regions and artefacts as the pipeline's screen stage finds them, then per variant (radius, tolerance,
       passes, shared beta) the KWW fit of every pixel; per truth region: median log10(tau/tau_true), median
       |log10 error|, Spearman rho, the fraction of ok wire pixels > 3x too slow, the surface/bulk ratio of median tau
       over the classified regions against the truth at the same pixels, and the time of pooling + fits.
step   two-domain phantom (tau 10 | 40 frames, straight boundary): the 10-90 % width of the column-median log tau
       profile, unpooled and pooled.
speed  the labelled adaptive fit (pooling + fits) on a 384 x 512 map tiled from a wire case, dask threads.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/study_resolution.py [--only wire step] [--workdir /tmp/ecm_maps]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

VARIANTS = [  # name, radius, tol (decades), passes, shared beta | "uniform" weights | "model-free" tau test
    ("unpooled", 0, 0.0, 1, False),
    ("r1 tol0.3", 1, 0.3, 1, False),
    ("r2 tol0.3", 2, 0.3, 1, False),
    ("r2 tol0.3 x2", 2, 0.3, 2, False),
    ("r2 tol0.5", 2, 0.5, 1, False),
    ("r2 no tol", 2, 10.0, 1, False),
    ("r3 tol0.3 x2", 3, 0.3, 2, False),
    ("r3 tol0.4 x2", 3, 0.4, 2, False),
    ("r3 tol0.4 x3", 3, 0.4, 3, False),
    ("r3 tol0.5 x2", 3, 0.5, 2, False),
    ("r4 tol0.4 x2", 4, 0.4, 2, False),
    ("r3 tol0.4 x2 beta", 3, 0.4, 2, True),
    ("r3 tol0.4 x2 uniform w", 3, 0.4, 2, "uniform"),
    ("mf r3 tol0.4 x2", 3, 0.4, 2, "model-free"),
    ("mf r3 tol0.3 x2", 3, 0.3, 2, "model-free"),
    ("mf r3 tol0.35 x2", 3, 0.35, 2, "model-free"),
    ("mf r4 tol0.3 x2", 4, 0.3, 2, "model-free"),
    ("mf r3 tol0.3 x3 (default)", 3, 0.3, 3, "model-free"),
]


LAST_TAU_ERR = {}


def fit_maps(g2, lag, pairs, fixed_beta=None):
    """(tau, beta, status) of every pixel: the pipeline's fit (kernels.kww, pair weights; ``pairs=None``: uniform).
    The tau errors of the last call are kept in ``LAST_TAU_ERR["tau_err"]``."""
    from ecm_dask.kernels.kww import fit_kww

    ny, nx, nl = g2.shape
    flat = g2.reshape(-1, nl)
    fixed = {"beta": fixed_beta.reshape(-1)} if fixed_beta is not None else None
    f = fit_kww(flat, lag, pairs=pairs, fixed=fixed)
    tau, beta = f.params[:, 2].reshape(ny, nx), f.params[:, 3].reshape(ny, nx)
    LAST_TAU_ERR["tau_err"] = f.errors[:, 2].reshape(ny, nx)
    return tau, beta, f.status.reshape(ny, nx)


def neighbourhood_median(values, labels, radius):
    """Median of finite ``values`` of same-label pixels within ``radius`` (itself included)."""
    out = np.full(values.shape, np.nan)
    ny, nx = values.shape
    for y in range(ny):
        for x in range(nx):
            if labels[y, x] < 0:
                continue
            y0, y1, x0, x1 = max(y - radius, 0), min(y + radius + 1, ny), max(x - radius, 0), min(x + radius + 1, nx)
            v = values[y0:y1, x0:x1][(labels[y0:y1, x0:x1] == labels[y, x]) & np.isfinite(values[y0:y1, x0:x1])]
            if v.size:
                out[y, x] = np.median(v)
    return out


def adaptive_fit(g2, lag, pairs, labels, radius, tol, passes, shared_beta=False):
    """Unpooled fit -> pool with its tau -> fit (-> pool with the pooled tau -> fit); returns tau, beta, status, s.
    ``shared_beta="model-free"``: the pipeline's method (``ecm_dask.ops.pooling.adaptive_fit``): compatibility from
    the 1/e^2 crossing of the previous pass's pooled curves, one fit at the end."""
    from ecm_dask.kernels.pooling import adaptive_pool

    t0 = time.perf_counter()
    if shared_beta == "uniform":  # uniform weights instead of frame pairs
        pairs, shared_beta = None, False
    if shared_beta == "model-free":  # compatibility from the model-free 1/e^2 crossing; one fit at the end
        from ecm_dask.kernels.kww import tau_crossing
        from ecm_dask.kernels.pooling import adaptive_pool

        pooled = g2
        for _ in range(passes):
            lt = np.log10(tau_crossing(pooled.reshape(-1, g2.shape[-1]), lag)).reshape(g2.shape[:2])
            pooled, _ = adaptive_pool(g2, lt, labels, radius=radius, tol=tol)
            pooled = np.where(np.isfinite(pooled), pooled, g2)
        tau, beta, status = fit_maps(pooled, lag, pairs)
        return tau, beta, status, time.perf_counter() - t0
    tau, beta, status = fit_maps(g2, lag, pairs)
    for _ in range(passes if radius > 0 else 0):
        log_tau = np.where(status == 0, np.log10(tau), np.nan)
        pooled, _ = adaptive_pool(g2, log_tau, labels, radius=radius, tol=tol)
        tau, beta, status = fit_maps(pooled, lag, pairs)
    if shared_beta:
        b = neighbourhood_median(np.where(status == 0, beta, np.nan), labels, radius)
        b = np.where(np.isfinite(b), b, 0.7)
        tau, beta, status = fit_maps(pooled, lag, pairs, fixed_beta=b)
    return tau, beta, status, time.perf_counter() - t0


def study_wire(workdir: Path, cases):
    import xarray as xr
    from scipy.stats import spearmanr

    from ecm_dask import schema as S
    from ecm_dask.pipeline.screen import screen

    print("== wire: per truth region (ok pixels, wire edge rows and crystal excluded by the screen)")
    for case in cases:
        base = workdir / case
        stages = base / "results.zarr.stages"
        g2ds = xr.open_zarr(stages / "g2.zarr").load()
        drift = xr.open_zarr(stages / "drift.zarr").load() if (stages / "drift.zarr").exists() else None
        truth = xr.open_zarr(base / "series.zarr", group=S.TRUTH_GROUP).load()
        regions, artefacts = screen(g2ds, drift, surface_nm=1.32)
        reg_c = regions[S.REGION].values
        usable = (artefacts[S.ARTEFACT].values == 0) & (g2ds[S.STATUS].values == 0)
        labels = np.where(usable & np.isin(reg_c, (S.REGION_BULK, S.REGION_SURFACE)), reg_c, -1).astype(np.int64)
        g2 = g2ds[S.G2].transpose(S.Y, S.X, S.LAG).values.astype(np.float64)
        lag, pairs = g2ds[S.LAG].values, g2ds[S.G2_PAIRS].values
        tau_t, reg_t = truth[S.TRUTH_TAU].values, truth[S.TRUTH_REGION].values
        print(f"-- {case}: {labels.size} px, {np.count_nonzero(labels >= 0)} pooled-eligible")
        print(f"  {'variant':24s} | bulk: bias  |err|  rho  cover | surface: bias |err|  rho | >3x % | ratio run/truth "
              f"| s")
        for name, radius, tol, passes, shared in VARIANTS:
            tau, beta, status, secs = adaptive_fit(g2, lag, pairs, labels, radius, tol, passes, shared)
            ok = (status == 0) & (labels >= 0)
            err = np.log10(tau / tau_t)
            row = []
            tau_err = LAST_TAU_ERR["tau_err"]
            for code in (S.REGION_BULK, S.REGION_SURFACE):
                m = ok & (reg_t == code)
                row += [np.median(err[m]), np.median(np.abs(err[m])), spearmanr(tau[m], tau_t[m])[0]]
                if code == S.REGION_BULK:  # do the reported errors cover the truth? (95 % nominal for +-2 sigma)
                    cover = np.mean(np.abs(tau[m] - tau_t[m]) <= 2 * tau_err[m])
            wire = np.isin(reg_t, (S.REGION_BULK, S.REGION_SURFACE))
            slow = 100 * np.count_nonzero(ok & wire & (tau > 3 * tau_t)) / wire.sum()
            cs, cb = ok & (reg_c == S.REGION_SURFACE), ok & (reg_c == S.REGION_BULK)
            ratio = np.median(tau[cs]) / np.median(tau[cb])
            ratio_t = np.nanmedian(tau_t[cs]) / np.nanmedian(tau_t[cb])
            print(f"  {name:24s} | {row[0]:+.3f} {row[1]:.3f} {row[2]:.3f} {cover:.2f} | {row[3]:+.3f} {row[4]:.3f} {row[5]:.3f} "
                  f"| {slow:5.2f} | {ratio:.3f}/{ratio_t:.3f} = {ratio / ratio_t:.2f} | {secs:.1f}")


def step_phantom(n_frames=2000, size=(24, 32), taus=(10.0, 40.0), beta=0.8, seed=3):
    """g2 of a two-domain phantom (columns < size[1]/2 have taus[0]) and the true log tau per column."""
    from ecm_dask.kernels.g2 import g2 as g2_kernel
    from ecm_dask.synth.kernels import gaussian_process, speckle_intensity

    rng = np.random.default_rng(seed)
    ny, nx = size
    tau = np.where(np.arange(nx) < nx // 2, taus[0], taus[1])
    tau_map = np.broadcast_to(tau, (ny, nx)).ravel()
    field = gaussian_process(tau_map, np.full(tau_map.size, beta), n_frames, rng)
    counts = rng.poisson(speckle_intensity(200.0, 0.05, np.abs(field) ** 2)).astype(np.float32)
    res = g2_kernel(counts.reshape(ny, nx, n_frames), axis=-1)
    return res.g2.astype(np.float64), res.lag.astype(np.float64), res.pairs, np.log10(tau)


def step_width(log_tau_map, truth_columns):
    """10-90 % width (pixels) of the column-median log tau profile across the step."""
    prof = np.nanmedian(log_tau_map, axis=0)
    lo, hi = truth_columns.min(), truth_columns.max()
    lo_m, hi_m = np.median(prof[:4]), np.median(prof[-4:])  # the plateaus as measured
    frac = (prof - lo_m) / (hi_m - lo_m)
    x = np.arange(prof.size, dtype=np.float64)
    a = np.interp(0.1, frac, x) if np.all(np.diff(frac) > -1) else np.nan
    b = np.interp(0.9, frac, x)
    return b - a, prof, (lo, hi)


def study_step():
    print("== step: two domains tau 10 | 40 frames, beta 0.8, 2000 frames, 24 x 32 px; 10-90 % width of the "
          "column-median log tau")
    g2, lag, pairs, truth_cols = step_phantom()
    labels = np.zeros(g2.shape[:2], dtype=np.int64)
    for name, radius, tol, passes, shared in VARIANTS:
        tau, _, status, _ = adaptive_fit(g2, lag, pairs, labels, radius, tol, passes, shared)
        lt = np.where(status == 0, np.log10(tau), np.nan)
        w, prof, _ = step_width(lt, truth_cols)
        print(f"  {name:24s} width {w:.2f} px; profile around the step {np.round(prof[12:20], 2)}")


def study_speed(workdir: Path, case: str = "drift_s0", tiles: int = 4):
    """Pooling + fits of the labelled layer (ops.pooling.adaptive_fit, default options) on a map tiled from a
    study case to (tiles x 96) x (tiles x 128) pixels, dask threads on every core."""
    import os

    import dask
    import xarray as xr

    from ecm_dask import schema as S
    from ecm_dask.ops.pooling import adaptive_fit
    from ecm_dask.pipeline.screen import screen

    stages = workdir / case / "results.zarr.stages"
    g2 = xr.open_zarr(stages / "g2.zarr").load()
    drift = xr.open_zarr(stages / "drift.zarr").load() if (stages / "drift.zarr").exists() else None
    regions, artefacts = screen(g2, drift)
    region = regions[S.REGION]
    usable = (artefacts[S.ARTEFACT] == 0) & (g2[S.STATUS] == 0) & region.isin([S.REGION_BULK, S.REGION_SURFACE])
    labels = region.where(usable, -1)
    tiled = np.tile(g2[S.G2].transpose(S.Y, S.X, S.LAG).values, (tiles, tiles, 1))
    big = xr.Dataset({S.G2: ((S.Y, S.X, S.LAG), tiled), S.G2_PAIRS: g2[S.G2_PAIRS]},
                     coords={S.Y: np.arange(tiled.shape[0]) * 0.33, S.X: np.arange(tiled.shape[1]) * 0.33,
                             S.LAG: g2[S.LAG]}, attrs=g2.attrs)
    lab = xr.DataArray(np.tile(labels.values, (tiles, tiles)), dims=(S.Y, S.X))
    big = big.chunk({S.Y: 128, S.X: 128})
    n = big.sizes[S.Y] * big.sizes[S.X]
    with dask.config.set(scheduler="threads", num_workers=os.cpu_count()):
        adaptive_fit(big.isel({S.Y: slice(0, 128), S.X: slice(0, 128)}), lab[:128, :128])[0].compute()  # compile
        for label, radius in (("plain fit", 0), ("adaptive pooling (defaults) + fit", 3)):
            t0 = time.perf_counter()
            maps, _ = adaptive_fit(big, lab, radius=radius)
            maps[[S.TAU, S.STATUS, S.N_POOLED]].compute()
            dt = time.perf_counter() - t0
            print(f"== speed: {label}, {big.sizes[S.Y]} x {big.sizes[S.X]} px, {os.cpu_count()} threads: {dt:.2f} s "
                  f"= {n / dt:.3g} px/s")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=["wire", "step", "speed"], default=["wire", "step", "speed"])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ecm_maps"))
    ap.add_argument("--cases", nargs="+", default=["drift_s0", "drift_s1", "nodrift_s0"])
    args = ap.parse_args(argv)
    if "step" in args.only:
        study_step()
    if "wire" in args.only:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from study_maps import run_case

        for case in args.cases:
            if not (args.workdir / case / "results.zarr.stages" / "g2.zarr").exists():
                run_case(case, args.workdir)
        study_wire(args.workdir, args.cases)
    if "speed" in args.only:
        study_speed(args.workdir)


if __name__ == "__main__":
    main()
