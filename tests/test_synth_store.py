"""The synthetic series in a store: equal to direct rendering, truth with units, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.store import series as SS
from ecm_dask.synth import SynthParams, drift_trace, render_block, truth_maps, write_synthetic_series
from ecm_dask.synth import writer as W

P = SynthParams(ny=40, nx=52, n_frames=96, seed=11)


def test_store_equals_direct_render_and_truth_is_labelled(tmp_path):
    path = write_synthetic_series(tmp_path / "s.zarr", P, tile=16, shard_bytes=40 * 64 * 2 * 30, progress=False)
    ds = SS.open_series(path)
    np.testing.assert_array_equal(ds.intensity.values, render_block(P, 0, P.ny, 0, P.nx))
    assert ds.intensity.encoding["shards"][0] < P.n_frames  # several time shards were stitched
    assert ds.attrs[S.ATTR_SOURCE] == "synthetic" and ds.attrs[S.ATTR_MATERIAL] == P.material
    truth = xr.open_zarr(path, group=S.TRUTH_GROUP).load()
    maps = truth_maps(P)
    np.testing.assert_allclose(truth.tau.values, maps[S.TRUTH_TAU], equal_nan=True)
    np.testing.assert_allclose(truth.surface_distance.values, maps[S.TRUTH_SURFACE_DISTANCE] * P.pixel_size_nm,
                               equal_nan=True)
    assert truth.surface_distance.attrs["units"] == "nm" and truth.tau.attrs["units"] == "s"
    np.testing.assert_array_equal(truth["shift"].values, drift_trace(P))
    assert list(truth[S.AXIS].values) == ["y", "x"]
    np.testing.assert_allclose(truth.x.values, ds.x.values)  # same pixel grid as the frames


def test_interrupted_render_resumes_without_redoing_tiles(tmp_path, monkeypatch):
    import dask

    real = W._render_tile
    calls = []

    def flaky(params, path, index, *box):
        calls.append(index)
        if len(calls) == 4:  # the 4th tile rendered crashes, once
            raise RuntimeError("simulated crash")
        return real(params, path, index, *box)

    monkeypatch.setattr(W, "_render_tile", flaky)
    monkeypatch.setattr("ecm_dask.compute.active_client", lambda: None)
    out = tmp_path / "s.zarr"
    with dask.config.set(scheduler="synchronous"):  # tasks one after another: exactly 3 tiles finish
        with pytest.raises(RuntimeError, match="simulated crash"):
            write_synthetic_series(out, P, tile=16, progress=False)
        assert SS.store_state(out) == SS.ABSENT  # nothing that looks like a series yet
        finished, crashed = set(calls[:3]), calls[3]
        write_synthetic_series(out, P, tile=16, progress=False)
    n_tiles = 3 * 4
    redone = calls[4:]
    assert crashed in redone and not finished & set(redone)  # finished tiles were not rendered again
    assert sorted(redone) == sorted(set(range(n_tiles)) - finished)
    np.testing.assert_array_equal(SS.open_series(out).intensity.values, render_block(P, 0, P.ny, 0, P.nx))
    assert not (tmp_path / "s.zarr.render.partial").exists()
    with pytest.raises(Exception, match="--overwrite"):
        write_synthetic_series(out, P, tile=16, progress=False)
