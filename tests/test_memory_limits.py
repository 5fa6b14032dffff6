"""Memory limits (issue 13, item 7): a per-worker limit too small for the g2 tasks of the block plan is refused up
front with the number to use, and the number given is enough for a real one-worker LocalCluster run."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import ecm_cli

from ecm_dask.errors import ParameterError
from ecm_dask.pipeline.config import RunConfig
from ecm_dask.pipeline.plan import PAUSE_FRACTION, Plan, check_memory, plan_run
from ecm_dask.store.series import open_series


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    from ecm_dask.synth import SynthParams, write_synthetic_series

    p = SynthParams(ny=64, nx=128, n_frames=1000, seed=3)
    return write_synthetic_series(tmp_path_factory.mktemp("mem") / "s.zarr", p, tile=64, progress=False)


def test_the_block_plan_follows_block_size_drift_and_tiles(series):
    ds = open_series(series)
    plan = plan_run(RunConfig.build(series), ds)  # drift in whole pixels: gathered from the stored uint16
    assert plan.block == (64, 128) and plan.block_bytes == 1000 * 64 * 128 * 2 and plan.n_blocks == 1
    blended = plan_run(RunConfig.build(series, g2_options={"shift_mode": "bilinear"}), ds)  # a float32 copy
    assert blended.block == (64, 128) and blended.block_bytes == 1000 * 64 * 128 * 4
    small = plan_run(RunConfig.build(series, drift=False, g2_options={"block_bytes": 1 << 20}), ds)
    assert small.block == (64, 64) and small.block_bytes == 1000 * 64 * 64 * 2 and small.n_blocks == 2
    assert small.smallest_block_bytes == small.block_bytes  # one store tile over all frames is the floor
    assert plan.min_limit(2) > plan.min_limit(1) > plan.task_bytes(1) / PAUSE_FRACTION


def test_too_small_limits_are_refused_with_the_limit_and_block_size_to_use():
    plan = Plan(n_frames=4000, block=(128, 128), block_bytes=4000 * 128 * 128 * 4, n_blocks=16,
                smallest_block_bytes=4000 * 64 * 64 * 4)
    need = plan.min_limit()
    check_memory(plan, need)  # enough
    check_memory(plan, None)  # no limit: nothing to check
    with pytest.raises(ParameterError) as err:
        check_memory(plan, need - 1)
    msg = str(err.value)
    assert "--memory-limit" in msg and f"{int(np.ceil(need / 2**20))}MiB" in msg and "128 x 128 pixels x 4000" in msg
    assert "--block-mb" in msg  # a smaller block would fit this limit
    with pytest.raises(ParameterError, match="even the smallest g2 block"):
        check_memory(plan, 400 << 20)  # below even one tile: only a larger limit helps
    with pytest.raises(ParameterError, match="x 2 threads"):
        check_memory(plan, need, threads=2)


@pytest.mark.slow
def test_a_small_limit_is_refused_before_the_cluster_and_the_suggested_one_runs(series, tmp_path):
    plan = plan_run(RunConfig.build(series), open_series(series))
    need_mib = int(np.ceil(plan.min_limit() / 2**20))
    out = tmp_path / "r.zarr"
    run = ("run", series, "-o", out, "--cluster", "local", "--workers", "1", "--no-report", "--quiet")
    t0 = time.perf_counter()
    r = _run(*run, "--memory-limit", "200MB")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--memory-limit {need_mib}MiB" in lines[0], r.stderr
    assert time.perf_counter() - t0 < 20 and "dask scheduler" not in r.stderr  # no cluster was started
    # the limit the message gives is enough: the run completes on one worker with that limit (no pause, no kill)
    r = _run(*run, "--memory-limit", f"{need_mib}MiB", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "paused" not in r.stderr.lower() and "killed" not in r.stderr.lower()


def test_a_connected_cluster_with_small_workers_is_refused_before_any_stage(series, tmp_path):
    from distributed import Client, LocalCluster

    from ecm_dask.pipeline.run import run_pipeline, stage_dir

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, memory_limit="300MB",
                      dashboard_address=None) as lc, Client(lc):
        with pytest.raises(ParameterError, match="too small"):
            run_pipeline(series, tmp_path / "r.zarr", progress=False)
    assert not stage_dir(tmp_path / "r.zarr").exists()


def _run(*args, timeout=300):
    return ecm_cli(*args, timeout=timeout, check=False)
