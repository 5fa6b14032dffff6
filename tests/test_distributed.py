"""Ingest and synthetic rendering on a real multi-process dask cluster give the same store as locally.

Worker processes import only the installed package and receive pickled readers and writers, so this
catches a reader that holds an open handle or a kernel that is not importable on a worker.
"""

from __future__ import annotations

import contextlib

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


def test_diffraction_and_scan_modes_on_a_process_cluster_equal_threaded(tmp_path, client):
    """Worker processes get the ring g2 tasks (and, for a scan, a picklable view of the HDF5 file); the result
    equals the threaded run.  Variables that are already NumPy pass through the cluster run unchanged."""
    import dask.array as da
    import h5py

    from ecm_dask.compute import run
    from ecm_dask.pipeline.diffraction import DiffractionConfig, open_diffraction, run_diffraction
    from ecm_dask.pipeline.scan import open_scan_results, run_scan
    from ecm_dask.synth.diffraction import DiffractionParams, synthetic_diffraction

    assert [np.asarray(v).tolist() for v in run([np.arange(3), da.ones(2, chunks=1)], progress=False)] == [
        [0, 1, 2], [1.0, 1.0]]
    p = DiffractionParams(ny=24, nx=24, centre=(11.3, 12.1), calibration=0.4, n_frames=300, seed=4)
    frames = synthetic_diffraction(p).intensity.values
    np.save(tmp_path / "dp.npy", frames)
    series = ingest(tmp_path / "dp.npy", tmp_path / "dp.zarr", frame_time_s=0.1, k_calibration=0.4, progress=False)
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["d"] = np.stack([frames, frames[::-1]])[:, None]  # (y=2, x=1, time, ky, kx)
    out = {}
    for where in ("cluster", "threads"):
        with contextlib.nullcontext() if where == "cluster" else _no_client():
            d = run_diffraction(series, tmp_path / f"d-{where}.zarr", q_bins=6, progress=False)
            cfg = DiffractionConfig.build(tmp_path / "scan.h5", k_calibration=0.4, q_bins=6, n_sectors=0,
                                          beam_centre=(11.3, 12.1))
            s = run_scan(tmp_path / "scan.h5", tmp_path / f"s-{where}.zarr", cfg, frame_time_s=0.1, scan_step_nm=1.0,
                         dataset="d", axes="y,x,time,ky,kx", progress=False)
        out[where] = (open_diffraction(d)[0], open_scan_results(s)[0])
    for a, b in zip(out["cluster"], out["threads"]):
        np.testing.assert_array_equal(a["g2"].values, b["g2"].values)
        np.testing.assert_array_equal(a["tau"].values, b["tau"].values)


@contextlib.contextmanager
def _no_client():
    """A context in which ecm_dask sees no active dask client and dask runs on local threads."""
    from unittest import mock

    import dask

    with mock.patch("ecm_dask.compute.active_client", return_value=None), dask.config.set(scheduler="threads"):
        yield
