"""Ingest and synthetic rendering on a real multi-process dask cluster give the same store as locally.

Worker processes import only the installed package and receive pickled readers and writers, so this
catches a reader that holds an open handle or a kernel that is not importable on a worker.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import xarray as xr

from ecm_dask.pipeline.ingest import ingest
from ecm_dask.synth import SynthParams, write_synthetic_series


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       host="127.0.0.1")
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_tiff_ingest_on_a_process_cluster_equals_local(tmp_path, client):
    data = np.random.default_rng(5).integers(0, 5000, (24, 70, 90), dtype=np.uint16)
    tif = tmp_path / "stack.tif"
    tifffile.imwrite(tif, data, imagej=True, metadata={"finterval": 0.5, "unit": "nm"}, resolution=(1 / 0.33, 1 / 0.33))
    from distributed import get_task_stream

    with get_task_stream(client) as ts:
        remote = ingest(tif, tmp_path / "remote.zarr", frame_time_s=0.5, pixel_size_nm=0.33, shard_mb=0.05, tile=32,
                        progress=True)
    shard_tasks = [t for t in ts.data if t["key"].startswith("ingest-shard")]
    assert len(shard_tasks) == 12  # 24 frames in shards of 2
    assert len({t["worker"] for t in shard_tasks}) == 2  # both worker processes wrote shards
    ds = xr.open_zarr(remote)
    assert ds.intensity.encoding["shards"][0] < 24  # several shards, so both workers wrote some
    np.testing.assert_array_equal(ds.intensity.values, data)


def test_synthetic_render_on_a_process_cluster_equals_local(tmp_path, client):
    p = SynthParams(ny=40, nx=56, n_frames=64, seed=7)
    remote = write_synthetic_series(tmp_path / "remote.zarr", p, tile=16, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ecm_dask.compute.active_client", lambda: None)  # force the local threaded scheduler
        local = write_synthetic_series(tmp_path / "local.zarr", p, tile=16, progress=False)
    a = xr.open_zarr(remote).intensity.values
    b = xr.open_zarr(local).intensity.values
    np.testing.assert_array_equal(a, b)
    assert a.std() > 0


@pytest.mark.parametrize("method", ["multitau", "fft"])
def test_g2_on_a_process_cluster_equals_threaded(tmp_path, client, method):
    import dask

    from ecm_dask.ops import correlate
    from ecm_dask.store.series import open_series

    p = SynthParams(ny=40, nx=56, n_frames=300, seed=9, drift_px=(2.0, -3.0))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("ecm_dask.compute.active_client", lambda: None)
        path = write_synthetic_series(tmp_path / "s.zarr", p, tile=16, progress=False)
    ds = open_series(path)
    truth = xr.open_zarr(path, group="truth")
    res = correlate(ds, method=method, shifts=truth["shift"].values, block_bytes=300 * 16 * 16 * 4)
    remote = client.compute(res).result()
    with dask.config.set(scheduler="threads"):
        local = res.compute()
    np.testing.assert_allclose(remote.g2.values, local.g2.values, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(remote.status.values, local.status.values)
    assert np.isfinite(remote.g2.values).mean() > 0.5
