"""Labelled region operations: ROI-averaged g2, two-time correlation and stationarity on a series store."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.kernels import twotime as KT
from ecm_dask.ops import correlate
from ecm_dask.ops.regions import roi_average, stationarity, two_time
from ecm_dask.store.series import open_series
from ecm_dask.synth import SynthParams, write_synthetic_series


@pytest.fixture(scope="module")
def wire(tmp_path_factory):
    p = SynthParams(ny=40, nx=56, n_frames=2000, seed=3, drift_px=(0.0, 0.0), drift_walk_px=0.0, tau_bulk_s=8.0,
                    tau_decades=0.2, contrast=0.2, frame_time_s=0.5)
    path = write_synthetic_series(tmp_path_factory.mktemp("w") / "s.zarr", p, tile=16, progress=False)
    return open_series(path), xr.open_zarr(path, group=S.TRUTH_GROUP).load()


def test_roi_average_of_bulk_and_surface_recovers_their_dynamics(wire):
    ds, truth = wire
    res = correlate(ds).compute()
    bulk = truth.region == S.REGION_BULK
    roi = roi_average(res, bulk)
    g = res.g2.values[bulk.values]
    np.testing.assert_allclose(roi.g2.values, np.nanmean(g, axis=0), rtol=1e-5)
    np.testing.assert_allclose(roi.g2_sem.values, np.nanstd(g, axis=0, ddof=1) / np.sqrt(bulk.values.sum()),
                               rtol=1e-4)
    assert roi.attrs["roi_pixels"] == int(bulk.sum()) and roi[S.LAG].attrs["units"] == "s"
    # the surface decorrelates faster than the bulk: its g2 is lower at the bulk's median tau
    surf = roi_average(res, truth.region == S.REGION_SURFACE)
    at = int(np.argmin(np.abs(res[S.LAG].values - float(truth.tau.where(bulk).median()))))
    assert surf.g2[at] - 1 < 0.5 * (roi.g2[at] - 1)
    # a rectangle given in nm
    box = roi_average(res.g2, {"y": slice(3.0, 6.0), "x": slice(0.0, 3.0)})
    ny = int(((res.y >= 3.0) & (res.y <= 6.0)).sum())
    nx = int(((res.x >= 0.0) & (res.x <= 3.0)).sum())
    assert (ny, nx) == (9, 10) and box.attrs["roi_pixels"] == ny * nx


def test_two_time_of_a_region_equals_the_kernel(wire):
    ds, truth = wire
    mask = (truth.region == S.REGION_BULK).values
    c = two_time(ds, mask, bin_frames=4, bad_frames=[10])
    pix = ds.intensity.values[:, mask]
    fm = np.ones(2000, bool)
    fm[10] = False
    np.testing.assert_allclose(c.values, KT.two_time(pix, frame_mask=fm, bin_frames=4), rtol=1e-6, equal_nan=True)
    assert c.dims == ("time1", "time2") and c.shape == (500, 500)
    # stationary dynamics: C one step off the diagonal is the same early and late
    d1 = np.diagonal(c.values, 1)
    assert abs(np.nanmean(d1[:200]) - np.nanmean(d1[-200:])) < 0.02


def test_stationarity_of_a_stationary_series_is_not_drifting(wire):
    ds, truth = wire
    r = stationarity(ds, truth.region == S.REGION_BULK, n_windows=4)
    assert r.tau.dims == ("window",) and r.tau.attrs["units"] == "s"
    assert r.attrs["drifting"] is False
    assert abs(r.attrs["tau_ratio_last_first"] - 1) < 3 * r.attrs["tau_ratio_err"] + 0.05
    true_tau = float(np.exp(np.log(truth.tau.where(truth.region == S.REGION_BULK)).median()))
    assert np.all(np.abs(np.log(r.tau.values / true_tau)) < np.log(1.5))
