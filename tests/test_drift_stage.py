"""Drift stage: automatic reference, drift.zarr checkpoint, and the figure of the trace."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.errors import StoreError
from ecm_dask.pipeline.drift import run_drift
from ecm_dask.plot import plot_drift
from ecm_dask.synth import SynthParams, write_synthetic_series


def test_drift_stage_with_automatic_reference_writes_trace_and_figure(tmp_path):
    p = SynthParams(ny=72, nx=96, n_frames=800, seed=6, drift_px=(-4.0, 7.0), drift_walk_px=0.8)
    series = write_synthetic_series(tmp_path / "s.zarr", p, tile=32, progress=False)
    out = run_drift(series, tmp_path / "drift.zarr", figure=tmp_path / "drift.png", margin=12, progress=False)
    drift = xr.open_zarr(out).load()
    truth = xr.open_zarr(series, group=S.TRUTH_GROUP).load()
    rms = np.sqrt(((drift[S.SHIFT].values - truth[S.SHIFT].values) ** 2).mean(axis=0))
    assert (rms <= 0.1).all(), rms
    assert drift.attrs["reference_roi_suggested"] is True
    y0, y1, x0, x1 = drift.attrs["reference_roi_px"]
    crystal = (truth.region.values[y0:y1, x0:x1] == S.REGION_CRYSTAL).mean()
    assert crystal > 0.3  # the suggestion found the static crystal
    png = (tmp_path / "drift.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    fig = plot_drift(drift)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), drift[S.SHIFT].values[:, 0])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), drift[S.SHIFT].values[:, 1])
    assert ax.get_ylabel() == "shift (pixel)" and ax.get_xlabel() == "time (s)"
    with pytest.raises(StoreError, match="--overwrite"):
        run_drift(series, out, progress=False)


def test_demo_writes_the_result_datatree_contract(tmp_path):
    from ecm_dask.pipeline.demo import run_demo
    from ecm_dask.pipeline.results import ROOT_MAPS

    p = SynthParams(ny=48, nx=64, n_frames=600, seed=2)
    summary = run_demo(tmp_path / "out", p, progress=False)
    res = tmp_path / "out" / "results.zarr"
    maps = xr.open_zarr(res)
    assert all(v in maps for v in ROOT_MAPS) and maps.tau.attrs["units"] == "s"
    assert maps.tau.dims == (S.Y, S.X) and maps.tau.shape == (48, 64)  # the input frames' pixel grid
    series = xr.open_zarr(tmp_path / "out" / "series.zarr")
    np.testing.assert_allclose(maps[S.X].values, series[S.X].values)
    assert maps.attrs["provenance"]["versions"]["ecm_dask"]
    tree = xr.open_datatree(res, engine="zarr")
    assert set(tree.groups) == {"/", "/g2", "/drift", "/fit", "/artefacts", "/regions", "/distributions"}
    S.validate_results(tree)
    assert tree["g2"]["g2"].dims == (S.Y, S.X, S.LAG) and tree["drift"][S.SHIFT].dims == (S.TIME, S.AXIS)
    assert "RMS error vs truth" in summary and "results:" in summary


def test_reference_statistics_and_direct_reads_equal_numpy(tmp_path):
    """The automatic reference's mean and variance (streamed shard by shard, exact float64 sums) equal NumPy's over
    the same sampled frames; read_pixels reads the store directly and equals xarray's reads, also of a subset."""
    from ecm_dask.pipeline.drift import _count_statistics
    from ecm_dask.store.series import open_series, read_pixels, store_backed

    p = SynthParams(ny=40, nx=56, n_frames=230, seed=2)
    ds = open_series(write_synthetic_series(tmp_path / "s.zarr", p, tile=16, shard_bytes=100_000, progress=False))
    da = ds[S.INTENSITY]
    assert max(da.chunks[0]) < 230  # several runs of stored frames
    mean, var = _count_statistics(da, 200, 3)
    head = da.values[0:200:3].astype(np.float64)
    np.testing.assert_allclose(mean, head.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(var, head.var(axis=0), rtol=1e-5, atol=1e-3)
    assert store_backed(da) is not None and store_backed(da[1:]) is None
    np.testing.assert_array_equal(read_pixels(da, slice(17, 151), slice(3, 39), slice(20, 56)),
                                  da.values[17:151, 3:39, 20:56])
    sub = da.isel(time=slice(5, None))  # not the store any more: read through dask
    np.testing.assert_array_equal(read_pixels(sub, slice(0, 10), slice(None), slice(0, 9)), da.values[5:15, :, :9])
