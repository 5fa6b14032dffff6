"""Faults while writing: a disk that fills up or refuses permission mid-stage gives one clear message, keeps
what was written before (earlier stages, finished blocks, an older result), and the same command resumes;
stale temporaries of a killed run are cleaned up."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import BLOCK_MB, assert_same_results, ecm_cli

from ecm_dask.errors import StoreError
from ecm_dask.pipeline.lock import lock_path
from ecm_dask.pipeline.run import default_report_dir, run_pipeline, stage_dir
from ecm_dask.store import blocks as B

G2_OPTIONS = {"block_bytes": int(float(BLOCK_MB) * 2**20)}


class FullDisk:
    """Patch zarr's LocalStore so that writes under ``inside`` fail with ``code`` after ``allow`` writes."""

    def __init__(self, monkeypatch, inside, allow: int, code=errno.ENOSPC):
        self.real = zarr.storage.LocalStore.set
        self.inside, self.allow, self.code, self.writes = str(inside), allow, code, 0
        disk = self

        async def set(store, key, value):
            if str(store.root).startswith(disk.inside):
                disk.writes += 1
                if disk.writes > disk.allow:
                    raise OSError(disk.code, os.strerror(disk.code), os.path.join(str(store.root), key))
            return await disk.real(store, key, value)

        monkeypatch.setattr(zarr.storage.LocalStore, "set", set)
        self.undo = lambda: monkeypatch.setattr(zarr.storage.LocalStore, "set", self.real)


def _run(series, out, **kw):
    import dask

    with dask.config.set(scheduler="threads"):
        return run_pipeline(series, out, g2_options=G2_OPTIONS, progress=False, **kw)


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EACCES, "Permission denied")])
def test_disk_full_mid_g2_keeps_earlier_work_and_resumes(blocked_series, blocked_reference, tmp_path, monkeypatch,
                                                         code, words):
    out = tmp_path / "results.zarr"
    g2_partial = stage_dir(out) / "g2.zarr.partial"
    disk = FullDisk(monkeypatch, g2_partial, allow=40, code=code)
    with pytest.raises(StoreError, match=rf"writing .*{words}.*run the same command again to resume"):
        _run(blocked_series, out)
    disk.undo()
    drift = stage_dir(out) / "drift.zarr"
    assert (drift / "zarr.json").is_file(), "the finished drift stage is kept"
    before = xr.open_zarr(drift).load()
    ticked = int(zarr.open_array(store=str(g2_partial / B.DONE), mode="r")[...].sum())
    assert 0 < ticked < 12, "the blocks finished before the disk filled are kept"
    assert not out.exists() and not lock_path(out).exists()

    _run(blocked_series, out)  # space again: resumes
    xr.testing.assert_identical(xr.open_zarr(drift).load(), before)
    assert_same_results(out, blocked_reference)


def test_a_failed_rerun_leaves_the_previous_result_intact(blocked_series, blocked_reference, tmp_path, monkeypatch):
    out = tmp_path / "results.zarr"
    _run(blocked_series, out)
    tau = xr.open_zarr(out).tau.values.copy()
    disk = FullDisk(monkeypatch, tmp_path, allow=25)
    with pytest.raises(StoreError, match="No space left on device"):
        _run(blocked_series, out, fit_options={"weights": "none"}, overwrite=True)
    disk.undo()
    np.testing.assert_array_equal(xr.open_zarr(out).tau.values, tau)


def test_disk_full_from_the_command_line_is_one_line(blocked_series, tmp_path):
    out = tmp_path / "results.zarr"
    code = """
import errno, os, sys, zarr
real = zarr.storage.LocalStore.set
async def full(store, key, value):
    if "g2.zarr.partial" in str(store.root) and key.startswith("g2/c/"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(str(store.root), key))
    return await real(store, key, value)
zarr.storage.LocalStore.set = full
from ecm_dask.cli import main
main(sys.argv[1:])
"""
    r = subprocess.run([sys.executable, "-c", code, "run", str(blocked_series), "-o", str(out), "--cluster",
                        "threads", "--block-mb", BLOCK_MB, "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: writing the pixel block y ")
    assert "No space left on device" in lines[0] and "g2.zarr.partial" in lines[0]


def test_stale_temporaries_of_a_killed_run_are_cleaned(blocked_series, blocked_reference, tmp_path):
    out = tmp_path / "results.zarr"
    # what a run killed at various moments leaves behind
    (tmp_path / "results.zarr.partial").mkdir()
    (tmp_path / "results.zarr.partial" / "half-written").write_bytes(b"\0" * 100)
    report = default_report_dir(out)
    stale_report = tmp_path / f".{report.name}.partial-x1y2"
    stale_report.mkdir()
    (stale_report / "maps.png").write_bytes(b"not a png")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "started": "earlier"}))

    ecm_cli("run", blocked_series, "-o", out, "--cluster", "threads", "--block-mb", BLOCK_MB, "--quiet")
    assert not (tmp_path / "results.zarr.partial").exists()
    assert not stale_report.exists() and (report / "report.md").is_file()
    assert not lock_path(out).exists()
    assert_same_results(out, blocked_reference)
