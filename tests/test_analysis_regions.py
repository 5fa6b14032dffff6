"""Wire segmentation, crystal, surface distance and classification against the synthetic truth."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.analysis.regions import classify, otsu_threshold, segment_wire, surface_distance
from ecm_dask.errors import InputError
from ecm_dask.synth import SynthParams, truth_dataset

PX = 0.33


def noisy_mean_image(truth, seed, frames=20):
    """Mean of ``frames`` Poisson frames of the true expected counts (the wire at 200, vacuum at 5 counts)."""
    rng = np.random.default_rng(seed)
    img = rng.poisson(truth[S.TRUTH_MEAN].values * frames) / frames
    return xr.DataArray(img, dims=(S.Y, S.X), coords={S.Y: truth[S.Y], S.X: truth[S.X]})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classify_recovers_the_synthetic_regions(seed):
    p = SynthParams(ny=96, nx=128, n_frames=10, seed=seed, pixel_size_nm=PX)
    truth = truth_dataset(p)
    img = noisy_mean_image(truth, seed)
    regions = classify(img, surface_nm=p.surface_thickness_px * PX, contrast=truth[S.TRUTH_CONTRAST])
    got, want = regions.region.values, truth.region.values
    # wire vs vacuum
    assert np.mean((got != S.REGION_VACUUM) == (want != S.REGION_VACUUM)) > 0.99
    # surface distance (nm) within one pixel on (nearly) every wire pixel; most exact. The truth sees vacuum
    # beyond the frame edge, which the analysis cannot: a few border pixels may differ by more.
    both = (got != S.REGION_VACUUM) & (want != S.REGION_VACUUM)
    err = np.abs(regions.surface_distance.values - truth.surface_distance.values)[both]
    assert np.mean(err <= PX + 1e-9) > 0.99 and np.mean(err < 1e-9) > 0.95
    # crystal: intersection over union with the truth
    crystal_t = want == S.REGION_CRYSTAL
    crystal = regions.crystal.values
    assert (crystal & crystal_t).sum() / (crystal | crystal_t).sum() > 0.95
    # all four classes
    assert np.mean(got == want) > 0.98
    assert regions.surface_distance.attrs["units"] == "nm" and regions.attrs["surface_nm"] == pytest.approx(4 * PX)


def test_crystal_from_brightness_alone_and_without_crystal():
    p = SynthParams(ny=96, nx=128, n_frames=10, seed=3)
    truth = truth_dataset(p)
    regions = classify(noisy_mean_image(truth, 3), surface_nm=4 * PX)
    crystal_t = truth.region.values == S.REGION_CRYSTAL
    iou = (regions.crystal.values & crystal_t).sum() / (regions.crystal.values | crystal_t).sum()
    assert iou > 0.8  # texture makes some crystal pixels as dim as the wire: brightness alone misses them
    p0 = SynthParams(ny=64, nx=96, n_frames=10, seed=3, crystal_radius_px=0.0)
    t0 = truth_dataset(p0)
    r0 = classify(noisy_mean_image(t0, 4), surface_nm=4 * PX, contrast=t0[S.TRUTH_CONTRAST])
    assert not r0.crystal.values.any()
    assert np.mean((r0.region.values == S.REGION_SURFACE) == (t0.region.values == S.REGION_SURFACE)) > 0.98


def test_surface_distance_closed_form_and_user_mask():
    mask = np.zeros((20, 30), bool)
    mask[5:15, :] = True  # a horizontal band 10 px thick crossing the frame
    d = surface_distance(mask, pixel_size=0.5)
    # rows 5..14: distance to the vacuum row above/below minus half a pixel, in nm
    expect = (np.minimum(np.arange(5, 15) - 4, 15 - np.arange(5, 15)) - 0.5) * 0.5
    np.testing.assert_allclose(d[5:15, 17], expect)
    np.testing.assert_allclose(d[5:15, 0], expect)  # the frame border is not a surface
    assert np.isnan(d[0]).all()
    img = np.where(mask, 100.0, 1.0)
    r = classify(img, surface_nm=1.0, pixel_size=0.5)
    assert set(np.unique(r.region.values[mask])) == {S.REGION_SURFACE, S.REGION_BULK}
    assert (r.region.values[mask & (d < 1.0)] == S.REGION_SURFACE).all()
    user = np.zeros_like(mask)
    user[8:12] = True
    r = classify(img, surface_nm=1.0, pixel_size=0.5, user_mask=user)
    assert (r.wire.values == user).all() and r.attrs["wire_mask"] == "user"


def test_segmentation_threshold_and_errors():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 1000), rng.normal(10, 1, 1000)])
    assert 3 < otsu_threshold(values) < 7
    img = np.full((10, 10), 5.0)
    img[3:7, 3:7] = 200.0
    img[0, 0] = 400.0  # an isolated hot pixel is not part of the wire
    m = segment_wire(img)
    assert m.sum() == 16 and not m[0, 0]
    with pytest.raises(InputError, match="2-D"):
        segment_wire(np.ones(5))
    with pytest.raises(InputError, match="distinct"):
        segment_wire(np.ones((4, 4)))
    with pytest.raises(InputError, match="pixel_size"):
        classify(img)
