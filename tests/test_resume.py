"""Resume at the level of pixel blocks, the run lock, and a run killed with SIGKILL mid-stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import BLOCK_MB, assert_same_results, ecm_cli

from ecm_dask.errors import StoreError
from ecm_dask.pipeline.lock import lock_path, run_lock
from ecm_dask.pipeline.run import run_pipeline, stage_dir
from ecm_dask.store import blocks as B

# ------------------------------------------------------------------------------------------ write_blocks

calls: list[tuple[int, int]] = []
lock = threading.Lock()


def _block_values(block, block_info=None):
    loc = tuple(block_info[0]["chunk-location"][:2])
    with lock:
        calls.append(loc)
    (y0, _), (x0, _) = block_info[0]["array-location"][:2]
    yy, xx = np.indices(block.shape[:2])
    return block + (100 * (yy + y0) + (xx + x0))[..., None]


def _dataset():
    base = da.zeros((40, 50, 3), chunks=(10, 25, 3), dtype="float32")
    g = base.map_blocks(_block_values, dtype="float32")
    return xr.Dataset({"g2": (("y", "x", "lag"), g), "mean": (("y", "x"), g[..., 0] * 2),
                       "pairs": ("lag", np.array([5.0, 4.0, 3.0]))},
                      coords={"y": np.arange(40) * 0.5, "x": np.arange(50) * 0.5, "lag": [1.0, 2.0, 4.0]})


def _dying_writer(monkeypatch, after: int):
    """The block writer dies on its ``after + 1``-th call, as a killed worker would."""
    real, count = B._write_block, []

    def write(*args):
        count.append(1)
        if len(count) > after:
            raise RuntimeError("worker died while writing a block")
        return real(*args)

    monkeypatch.setattr(B, "_write_block", write)
    return lambda: monkeypatch.setattr(B, "_write_block", real)


def test_write_blocks_resumes_only_the_missing_blocks(tmp_path, monkeypatch):
    out = tmp_path / "g2.zarr"
    restore = _dying_writer(monkeypatch, after=3)
    with dask.config.set(scheduler="single-threaded"), pytest.raises(RuntimeError, match="worker died"):
        B.write_blocks(_dataset(), out, key="k1", progress=False)
    restore()
    assert not out.exists(), "an interrupted stage must not leave a store that looks complete"
    partial = tmp_path / "g2.zarr.partial"
    done = zarr.open_array(store=str(partial / B.DONE), mode="r")[...].astype(bool)
    assert done.shape == (4, 2) and 1 <= done.sum() <= 3
    n_done = int(done.sum())

    calls.clear()
    B.write_blocks(_dataset(), out, key="k1", progress=False)
    assert len(calls) == 8 - n_done and all(not done[c] for c in calls), "finished blocks were computed again"
    res = xr.open_zarr(out).load()
    expected = _dataset().compute()
    np.testing.assert_array_equal(res.g2.values, expected.g2.values)
    np.testing.assert_array_equal(res["mean"].values, expected["mean"].values)
    np.testing.assert_array_equal(res.pairs.values, [5, 4, 3])
    assert not partial.exists() and not (out / B.DONE).exists()
    assert res.attrs[B.KEY_ATTR] == "k1"

    # a leftover .partial of another computation is discarded, not mixed in
    restore = _dying_writer(monkeypatch, after=3)
    with dask.config.set(scheduler="single-threaded"), pytest.raises(RuntimeError):
        B.write_blocks(_dataset(), tmp_path / "other.zarr", key="old", progress=False)
    restore()
    calls.clear()
    B.write_blocks(_dataset(), tmp_path / "other.zarr", key="new", progress=False)
    assert len(calls) == 8
    with pytest.raises(StoreError, match="exists; use --overwrite"):
        B.write_blocks(_dataset(), out, key="k1", progress=False)


# ------------------------------------------------------------------------------------------------ lock

def test_a_second_run_into_the_same_output_refuses(blocked_series, tmp_path):
    out = tmp_path / "results.zarr"
    with run_lock(out):
        with pytest.raises(StoreError, match=rf"another ecm-dask run is writing .*process {os.getpid()}"):
            run_pipeline(blocked_series, out, progress=False)
        r = ecm_cli("run", blocked_series, "-o", out, "--cluster", "threads", check=False)
        assert r.returncode == 2 and "another ecm-dask run" in r.stderr and str(lock_path(out)) in r.stderr
    assert not lock_path(out).exists(), "the lock is released"


def test_a_stale_lock_of_a_dead_process_is_taken_over_but_not_one_from_another_host(tmp_path):
    out = tmp_path / "results.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import json
    import socket

    lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "then"}))
    with run_lock(out) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    lock_path(out).write_text(json.dumps({"host": "elsewhere-node-7", "pid": 1, "started": "then"}))
    with pytest.raises(StoreError, match="process 1 on elsewhere-node-7"):
        with run_lock(out):
            pass


# ---------------------------------------------------------------------------------- SIGKILL mid-stage

SLOW_RUN = """
import sys, time
import ecm_dask.store.blocks as B
_orig = B._write_block
def slow(*args):
    time.sleep(0.4)
    return _orig(*args)
B._write_block = slow
from ecm_dask.cli import main
main(sys.argv[1:])
"""


def _ticked(partial) -> int:
    chunks = partial / B.DONE / "c"
    return sum(1 for p in chunks.rglob("*") if p.is_file()) if chunks.exists() else 0


@pytest.mark.slow
def test_sigkill_mid_g2_then_rerun_resumes_and_equals_an_uninterrupted_run(blocked_series, blocked_reference,
                                                                           tmp_path):
    out = tmp_path / "results.zarr"
    args = ["run", str(blocked_series), "-o", str(out), "--cluster", "threads", "--block-mb", BLOCK_MB,
            "--no-report"]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    partial = stage_dir(out) / "g2.zarr.partial"
    deadline = time.time() + 120
    while _ticked(partial) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _ticked(partial)
    assert 2 <= killed_at < 12 and not out.exists() and lock_path(out).exists()

    r = ecm_cli(*args)  # takes over the dead run's lock, redoes only the missing blocks
    assert f"({12 - killed_at} of 12 blocks left)" in r.stderr
    assert not lock_path(out).exists() and not partial.exists()
    assert_same_results(out, blocked_reference)


_CLAIM = r"""
import json, os, sys, time
from ecm_dask.errors import StoreError
from ecm_dask.pipeline.lock import run_lock
out, log, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
try:
    with run_lock(out):
        t0 = time.time()
        time.sleep(0.3)
        t1 = time.time()
    with open(log, "a") as f:
        f.write(json.dumps([os.getpid(), t0, t1]) + "\n")
except StoreError:
    pass
"""


def test_many_runs_started_together_on_a_stale_lock_never_hold_it_at_the_same_time(tmp_path):
    """The takeover of a dead run's lock is atomic: with 16 claimants released at the same instant (repeated 3
    times, each on a fresh stale lock) the holding intervals never overlap, and at least one run gets the lock."""
    import json
    import socket

    out = tmp_path / "results.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for round_ in range(3):
        lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "then"}))
        log = tmp_path / f"held{round_}.jsonl"
        start = time.time() + 3.0  # every claimant has imported ecm_dask by then
        procs = [subprocess.Popen([sys.executable, "-c", _CLAIM, str(out), str(log), str(start)])
                 for _ in range(16)]
        for p in procs:
            assert p.wait(timeout=120) == 0
        held = sorted(json.loads(line)[1:] for line in log.read_text().splitlines())
        assert len(held) >= 1
        for (a0, a1), (b0, b1) in zip(held, held[1:]):
            assert b0 >= a1, f"two runs held the lock at once: {held}"
        assert not lock_path(out).exists()
