"""Artefact screen (ecm_dask.kernels.artefacts, ops.artefacts, the pipeline's statuses) against known truth:
closed-form residuals and drift variances, static vs faintly dynamic speckle, and the synthetic wire with and
without drift (edge rows, crystal, interior)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from ecm_dask import schema as S
from ecm_dask.kernels import artefacts as K
from ecm_dask.kernels.g2 import g2 as g2_kernel
from ecm_dask.pipeline.run import run_pipeline
from ecm_dask.synth import SynthParams, write_synthetic_series
from ecm_dask.synth.kernels import gaussian_process, speckle_intensity


def test_residual_is_what_whole_pixel_registration_leaves():
    s = np.array([[0.0, 0.0], [0.4, -0.4], [0.5, -0.5], [2.7, -3.2], [-1.49, 7.51]])
    r = K.residual_shift(s)
    np.testing.assert_allclose(r, [[0, 0], [0.4, -0.4], [-0.5, -0.5], [-0.3, -0.2], [-0.49, -0.49]], atol=1e-12)
    assert np.all((r >= -0.5) & (r < 0.5))
    np.testing.assert_array_equal(K.residual_shift(s, "bilinear"), 0.0)
    with pytest.raises(ValueError, match="mode"):
        K.residual_shift(s, "nearest")


def test_drift_variance_of_a_step_edge_in_closed_form():
    m = np.tile(np.array([5.0, 5.0, 205.0, 205.0, 205.0]), (4, 1))  # a step along x between columns 1 and 2
    r = np.zeros((1000, 2))
    r[:, 1] = np.linspace(-0.5, 0.5, 1000, endpoint=False)
    v = K.drift_variance(m, r)
    var_x = np.var(r[:, 1])
    # the two pixels of the step see the 200-count difference on one side only; the others see none
    np.testing.assert_allclose(v[:, 1], 200.0 ** 2 * var_x / 2)
    np.testing.assert_allclose(v[:, 2], 200.0 ** 2 * var_x / 2)
    np.testing.assert_allclose(v[:, [3]], 0.0)
    # a neighbour the residual reaches but whose mean is unknown (outside the image, outside the field of view):
    # the contamination cannot be predicted -> NaN (the screen calls such a pixel a drift edge)
    assert np.all(np.isnan(v[:, [0, 4]]))
    m[0, 3] = np.nan
    v2 = K.drift_variance(m, r)
    assert np.isnan(v2[0, 2]) and np.isnan(v2[0, 4]) and v2[1, 3] == 0.0
    r[:, 1] = 0.0  # no residual along x: unknown x neighbours do not matter
    assert np.all(K.drift_variance(m, r) == 0.0)


def _pixels(contrast, counts, n_pix, n_frames, tau, rng):
    if contrast == 0:
        lam = np.full((n_pix, n_frames), float(counts))
    else:
        field = gaussian_process(np.full(n_pix, float(tau)), np.full(n_pix, 1.0), n_frames, rng)
        lam = speckle_intensity(counts, contrast, np.abs(field) ** 2)
    return rng.poisson(lam).astype(np.float32)


@pytest.mark.parametrize("counts", [0.2, 5.0, 500.0])
def test_static_noise_estimates_match_the_spread_of_poisson_pixels(counts):
    # the null standard errors of the static test: the z scores of pure Poisson pixels must have unit spread
    # (an estimate 30x too large at 500 counts called A = 1e-4 speckle static)
    rng = np.random.default_rng(11)
    n_frames = 3000
    x = rng.poisson(counts, size=(1500, n_frames)).astype(np.float32)
    res = g2_kernel(x, axis=-1)
    c1, sigma = K.fluctuation(res.g2, res.g2_lag0, res.pairs)
    e0, sigma0 = K.excess_variance(res.mean, res.g2_lag0, n_frames)
    assert 0.9 <= np.std(c1 / sigma) <= 1.1
    assert 0.9 <= np.std(e0 / sigma0) <= 1.1
    assert abs(np.mean(c1 / sigma)) < 0.15 and abs(np.mean(e0 / sigma0)) < 0.15


@pytest.mark.parametrize("contrast,counts,n_frames,tau", [(1e-3, 500.0, 8000, 40.0), (1e-4, 1e4, 20000, 40.0),
                                                           (1e-4, 500.0, 8000, 40.0), (0.05, 200.0, 4000, 0.7)])
def test_faint_or_fast_dynamics_is_not_static_and_poisson_noise_is(contrast, counts, n_frames, tau):
    rng = np.random.default_rng(7)
    n_pix = 64
    dyn = _pixels(contrast, counts, n_pix, n_frames, tau, rng)
    static = _pixels(0.0, counts, n_pix, n_frames, tau, rng)
    block = np.concatenate([dyn, static])[:, None, :]  # (pixels, 1, time)
    res = g2_kernel(block, axis=-1)
    mean = res.mean[:, 0]
    out = K.classify_artefacts(mean[:, None], res.g2[:, :, :K.N_FIRST], res.g2_lag0, res.pairs[:K.N_FIRST],
                               np.zeros((n_frames, 2)), n_frames=n_frames)
    code = out["artefact"][:, 0]
    assert np.mean(code[:n_pix] == K.ARTEFACT_STATIC) <= 0.02  # dynamics, even A = 1e-4 or tau < 1 frame
    assert np.mean(code[n_pix:] == K.ARTEFACT_STATIC) >= 0.95  # Poisson only
    assert not np.any(code == K.ARTEFACT_DRIFT_EDGE)  # no drift: nothing is explained by it


@pytest.fixture(scope="module")
def wires(tmp_path_factory):
    d = tmp_path_factory.mktemp("artefacts")
    out = {}
    for name, extra in (("drift", {"drift_px": (4.0, -6.0)}),
                        ("still", {"drift_px": (0.0, 0.0), "drift_walk_px": 0.0})):
        p = SynthParams(ny=40, nx=64, n_frames=1500, seed=5, crystal_radius_px=7.0, **extra)
        series = write_synthetic_series(d / name / "series.zarr", p, tile=32, progress=False)
        results = run_pipeline(series, d / name / "results.zarr", progress=False, drift=name == "drift",
                               surface_nm=4 * p.pixel_size_nm)
        tree = xr.open_datatree(results, engine="zarr").load()
        truth = xr.open_zarr(series, group=S.TRUTH_GROUP).load()
        out[name] = (tree, truth)
    return out


def _masks(tree, truth):
    reg = truth[S.TRUTH_REGION].values
    usable = tree["g2"][S.STATUS].values == 0
    wire = (reg == S.REGION_BULK) | (reg == S.REGION_SURFACE)
    edge = wire & ndimage.binary_dilation(reg == S.REGION_VACUUM) & usable
    interior = wire & ~ndimage.binary_dilation(~wire, iterations=2) & usable
    return reg, wire, edge, interior


def test_drift_swept_edges_and_the_crystal_are_never_reported_as_dynamics(wires):
    tree, truth = wires["drift"]
    reg, wire, edge, interior = _masks(tree, truth)
    status = tree.to_dataset()[S.STATUS].values
    fit = tree["fit"].to_dataset()
    assert edge.sum() > 50
    # without the screen most edge pixels would be fitted ok (slow and wrong); with it, none is ok
    assert np.mean(fit[S.STATUS].values[edge] == 0) > 0.5
    assert np.mean(status[edge] == S.STATUS_OK) <= 0.02
    assert np.mean(status[edge] == S.STATUS_DRIFT_EDGE) >= 0.9
    crystal = (reg == S.REGION_CRYSTAL) & (tree["g2"][S.STATUS].values == 0)
    assert crystal.sum() > 50 and np.mean(status[crystal] != S.STATUS_OK) >= 0.95
    art = tree["artefacts"][S.ARTEFACT].values
    assert np.mean(art[interior] != K.ARTEFACT_NONE) <= 0.03  # the science pixels are kept
    tau, tau_t = tree.to_dataset()[S.TAU].values, truth[S.TRUTH_TAU].values
    slow = (status == S.STATUS_OK) & wire & (tau > 3 * tau_t)
    assert slow.sum() <= 0.02 * wire.sum()


def test_without_drift_nothing_is_called_a_drift_edge_and_the_crystal_is_static(wires):
    tree, truth = wires["still"]
    reg, wire, edge, interior = _masks(tree, truth)
    art = tree["artefacts"][S.ARTEFACT].values
    status = tree.to_dataset()[S.STATUS].values
    assert not np.any(art == K.ARTEFACT_DRIFT_EDGE)
    assert np.mean(status[edge] == S.STATUS_OK) >= 0.8  # a still edge is measured like any other pixel
    crystal = reg == S.REGION_CRYSTAL
    assert np.mean(art[crystal] == K.ARTEFACT_STATIC) >= 0.95
    assert np.mean(art[interior] == K.ARTEFACT_STATIC) <= 0.01
