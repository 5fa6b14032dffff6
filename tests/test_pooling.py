"""Adaptive pooling of g2 curves on the full grid (kernels.pooling, ops.pooling) against a direct reference and
synthetic truth: labels and τ compatibility respected, per-pixel τ closer to the truth, a domain step kept sharp."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.kernels.pooling import adaptive_pool
from ecm_dask.ops.pooling import adaptive_fit, pool_g2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from study_resolution import adaptive_fit as study_fit  # noqa: E402
from study_resolution import step_phantom, step_width  # noqa: E402


def direct_pool(g2, log_tau, labels, radius, tol):
    """Slow reference: the definition, pixel by pixel."""
    ny, nx, nl = g2.shape
    out = np.full(g2.shape, np.nan)
    n_used = np.zeros((ny, nx), dtype=int)
    for y in range(ny):
        for x in range(nx):
            if labels[y, x] < 0 or not np.all(np.isfinite(g2[y, x])):
                continue
            ref = log_tau[y, x]
            near = [(y + dy, x + dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                    if dy * dy + dx * dx <= radius * radius + 0.5 and 0 <= y + dy < ny and 0 <= x + dx < nx]
            if not np.isfinite(ref):
                vals = [log_tau[q] for q in near if labels[q] == labels[y, x] and np.isfinite(log_tau[q])]
                ref = np.median(vals) if vals else np.nan
            use = [(y, x)] + [q for q in near if q != (y, x) and labels[q] == labels[y, x] and np.isfinite(ref)
                              and np.isfinite(log_tau[q]) and abs(log_tau[q] - ref) <= tol
                              and np.all(np.isfinite(g2[q]))]
            out[y, x] = np.mean([g2[q] for q in use], axis=0)
            n_used[y, x] = len(use)
    return out, n_used


def test_kernel_equals_the_direct_definition():
    rng = np.random.default_rng(1)
    g2 = 1 + rng.random((13, 17, 5))
    g2[2, 3, 1] = np.nan
    log_tau = rng.normal(1.0, 0.3, (13, 17))
    log_tau[5, 5] = np.nan
    log_tau[0, :4] = np.nan
    labels = rng.integers(-1, 3, (13, 17))
    for radius, tol in ((0, 0.3), (1, 0.2), (2, 0.3), (3, 10.0)):
        got, n = adaptive_pool(g2, log_tau, labels, radius=radius, tol=tol)
        ref, n_ref = direct_pool(g2, log_tau, labels, radius, tol)
        np.testing.assert_array_equal(n, n_ref)
        np.testing.assert_allclose(got, ref, rtol=1e-12, equal_nan=True)
    assert np.all(n[labels < 0] == 0) and np.all(np.isnan(got[labels < 0]))
    with pytest.raises(ValueError, match="radius"):
        adaptive_pool(g2, log_tau, labels, radius=-1)


def test_no_curve_crosses_a_label_or_a_tau_step():
    g2 = np.zeros((6, 8, 3))
    g2[:, :4] = 1.0  # label 1 on the left, label 2 on the right: no neighbour ever borrows the other's curve
    g2[:, 4:] = 2.0
    labels = np.where(np.arange(8) < 4, 1, 2)[None, :].repeat(6, axis=0)
    got, _ = adaptive_pool(g2, np.zeros((6, 8)), labels, radius=3, tol=10.0)
    np.testing.assert_array_equal(got[:, :4], 1.0)
    np.testing.assert_array_equal(got[:, 4:], 2.0)
    log_tau = np.where(np.arange(8) < 4, 0.0, 1.0)[None, :].repeat(6, axis=0)  # one label, a decade apart
    got, _ = adaptive_pool(g2, log_tau, np.ones((6, 8), dtype=int), radius=3, tol=0.4)
    np.testing.assert_array_equal(got[:, :4], 1.0)
    np.testing.assert_array_equal(got[:, 4:], 2.0)


def test_labelled_pooling_over_dask_blocks_equals_the_kernel_on_the_whole_map():
    rng = np.random.default_rng(2)
    ny, nx, nl = 40, 50, 6
    g2 = 1 + rng.random((ny, nx, nl)).astype(np.float32)
    log_tau = rng.normal(1.0, 0.3, (ny, nx))
    labels = rng.integers(-1, 3, (ny, nx))
    coords = {S.Y: np.arange(ny) * 0.3, S.X: np.arange(nx) * 0.3, S.LAG: np.arange(1, nl + 1) * 0.5}
    ds = xr.Dataset({S.G2: ((S.Y, S.X, S.LAG), g2)}, coords=coords).chunk({S.Y: 16, S.X: 16, S.LAG: 3})
    res = pool_g2(ds, xr.DataArray(log_tau, dims=(S.Y, S.X)), xr.DataArray(labels, dims=(S.Y, S.X)),
                  radius=3, tol=0.4).compute()
    ref, n = adaptive_pool(g2.astype(np.float64), log_tau, labels, radius=3, tol=0.4)
    ref[n == 0] = g2[n == 0]  # excluded pixels keep their own curve
    np.testing.assert_allclose(res[S.G2].values, ref.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(res[S.N_POOLED].values, n)


def test_a_domain_step_stays_sharp_and_pooled_tau_is_closer_to_the_truth():
    g2, lag, pairs, truth_cols = step_phantom()
    labels = np.zeros(g2.shape[:2], dtype=np.int64)
    truth = np.broadcast_to(truth_cols, g2.shape[:2])
    widths, errors = {}, {}
    for name, radius, tol in (("unpooled", 0, 0.0), ("pooled", 3, 0.3), ("no tolerance", 3, 10.0)):
        tau, _, status, _ = study_fit(g2, lag, pairs, labels, radius, tol, 3, "model-free")
        lt = np.where(status == 0, np.log10(tau), np.nan)
        widths[name] = step_width(lt, truth_cols)[0]
        errors[name] = np.nanmedian(np.abs(lt - truth))
    # the 10-90 % width of a perfect step sampled at pixel centres is 0.8 px
    assert widths["pooled"] <= widths["unpooled"] + 1.0 and widths["pooled"] <= 1.5
    assert widths["no tolerance"] > widths["pooled"] + 1.0  # the tau test is what keeps the step
    assert errors["pooled"] < 0.6 * errors["unpooled"]


def test_adaptive_fit_of_a_g2_dataset_matches_the_kernel_passes():
    g2, lag, pairs, _ = step_phantom(size=(12, 16))
    coords = {S.Y: np.arange(12) * 0.3, S.X: np.arange(16) * 0.3, S.LAG: lag * 0.5}
    ds = xr.Dataset({S.G2: ((S.Y, S.X, S.LAG), g2.astype(np.float32)), S.G2_PAIRS: (S.LAG, pairs)}, coords=coords,
                    attrs={"frame_time_s": 0.5, "n_frames": 2000})
    labels = xr.DataArray(np.zeros((12, 16), dtype=np.int64), dims=(S.Y, S.X))
    maps, pooled = adaptive_fit(ds.chunk({S.Y: 6, S.X: 8}), labels, radius=2, tol=0.3, passes=3)
    maps = maps.compute()
    tau, _, status, _ = study_fit(g2.astype(np.float32).astype(np.float64), lag * 0.5, pairs, labels.values, 2, 0.3,
                                  3, "model-free")
    ok = (status == 0) & (maps[S.STATUS].values == 0)
    assert ok.mean() > 0.9
    np.testing.assert_allclose(maps[S.TAU].values[ok], tau[ok], rtol=1e-3)
    assert int(maps[S.N_POOLED].max()) > 5 and maps.attrs["adaptive_pool_passes"] == 3
