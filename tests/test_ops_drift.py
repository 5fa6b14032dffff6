"""Drift estimation on a synthetic series with known drift, and g2/τ maps after correction."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.kernels import kww as KW
from ecm_dask.ops import correlate
from ecm_dask.ops.drift import estimate_drift
from ecm_dask.ops.fit import fit_kww
from ecm_dask.store.series import open_series
from ecm_dask.synth import SynthParams, write_synthetic_series


@pytest.fixture(scope="module")
def drifting(tmp_path_factory):
    p = SynthParams(ny=72, nx=96, n_frames=1600, seed=4, drift_px=(5.0, -9.0), drift_walk_px=1.0, contrast=0.3,
                    tau_bulk_s=6.0, tau_decades=0.5, frame_time_s=0.25, crystal_radius_px=12.0)
    path = write_synthetic_series(tmp_path_factory.mktemp("d") / "s.zarr", p, tile=32, progress=False)
    truth = xr.open_zarr(path, group=S.TRUTH_GROUP).load()
    ys, xs = np.nonzero((truth.region == S.REGION_CRYSTAL).values)
    roi = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    return p, open_series(path), truth, roi


def test_shifts_from_the_crystal_match_the_true_drift(drifting):
    p, ds, truth, roi = drifting
    est = estimate_drift(ds, roi, margin=12)
    err = est[S.SHIFT].values - truth[S.SHIFT].values
    rms = np.sqrt((err**2).mean(axis=0))
    assert (rms <= 0.1).all(), rms  # different drift in y and x: swapped axes would fail
    assert est[S.SHIFT].dims == (S.TIME, S.AXIS) and est[S.SHIFT].attrs["units"] == "pixel"
    np.testing.assert_allclose(est.shift_nm.values, est[S.SHIFT].values * p.pixel_size_nm)
    # the same ROI given in nm
    nm = tuple(v * p.pixel_size_nm for v in roi)
    est_nm = estimate_drift(ds, nm, units="nm", margin=12)
    np.testing.assert_allclose(est_nm[S.SHIFT].values, est[S.SHIFT].values, atol=1e-9)


def test_tau_maps_after_estimated_correction_match_those_with_the_true_shifts(drifting):
    p, ds, truth, roi = drifting
    est = estimate_drift(ds, roi, margin=12)
    maps_est = fit_kww(correlate(ds, shifts=est[S.SHIFT].values)).compute()
    maps_true = fit_kww(correlate(ds, shifts=truth[S.SHIFT].values)).compute()
    ok = ((maps_est.status == KW.FIT_OK) & (maps_true.status == KW.FIT_OK)
          & (truth.region == S.REGION_BULK)).values
    assert ok.sum() > 500
    diff = np.abs(np.log10(maps_est.tau.values[ok] / maps_true.tau.values[ok]))
    assert np.median(diff) <= 0.02


def test_bad_reference_regions_are_clear_errors(drifting):
    p, ds, truth, roi = drifting
    with pytest.raises(ValueError, match="not inside the frame"):
        estimate_drift(ds, (60, 90, 0, 20))
    with pytest.raises(ValueError, match="smaller than twice the maximum shift"):
        estimate_drift(ds, (roi[0], roi[0] + 10, roi[2], roi[2] + 10), max_shift=8)
    with pytest.raises(ValueError, match=r"frame \d+: estimated drift .* exceeds max_shift"):
        estimate_drift(ds, roi, max_shift=3, margin=12)
    box = (0, 8, 10, 40)  # vacuum above the wire band: Poisson noise only
    assert (truth.region.values[0:10, 8:42] == S.REGION_VACUUM).all()
    with pytest.raises(ValueError, match="no contrast"):
        estimate_drift(ds, box, margin=2)
    with pytest.raises(ValueError, match="Y0:Y1,X0:X1"):
        estimate_drift(ds, "10-20,30-40")
