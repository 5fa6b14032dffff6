"""The ecm-dask command line, run as a user would (subprocesses of the installed entry point)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr


def ecm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ecm_dask", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture
def npy(tmp_path):
    data = np.random.default_rng(1).integers(0, 3000, (30, 40, 50), dtype=np.uint16)
    path = tmp_path / "frames.npy"
    np.save(path, data)
    return path, data


def test_ingest_then_info(tmp_path, npy):
    path, data = npy
    out = tmp_path / "series.zarr"
    r = ecm("ingest", path, "-o", out, "--frame-time", 0.5, "--pixel-size", 0.33, "--temperature", 266,
            "--material", "Pt57.5Cu14.7Ni5.3P22.5", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "intensity  (time: 30, y: 40, x: 50)  uint16" in r.stdout
    ds = xr.open_zarr(out)
    np.testing.assert_array_equal(ds.intensity.values, data)
    assert ds.attrs["material"] == "Pt57.5Cu14.7Ni5.3P22.5" and ds.attrs["temperature_C"] == 266.0
    r = ecm("info", out)
    assert r.returncode == 0 and "duration   15 s = 30 frames x 0.5 s" in r.stdout


def _one_line_error(r):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr  # one line, no traceback, no library log noise
    return lines[0]


def test_errors_are_one_line_and_name_the_culprit(tmp_path, npy):
    path, _ = npy
    out = tmp_path / "series.zarr"
    msg = _one_line_error(ecm("ingest", path, "-o", out, "--pixel-size", 0.33, "--quiet"))
    assert "frames.npy" in msg and "--frame-time" in msg
    msg = _one_line_error(ecm("ingest", path, "-o", out, "--frame-time", -1, "--pixel-size", 0.33))
    assert "--frame-time" in msg
    msg = _one_line_error(ecm("ingest", tmp_path / "nope.tif", "-o", out, "--frame-time", 1, "--pixel-size", 1))
    assert "nope.tif" in msg
    assert ecm("ingest", path, "-o", out, "--frame-time", 1, "--pixel-size", 1, "--quiet").returncode == 0
    msg = _one_line_error(ecm("ingest", path, "-o", out, "--frame-time", 1, "--pixel-size", 1, "--quiet"))
    assert "--overwrite" in msg and str(out) in msg
    assert ecm("ingest", path, "-o", out, "--frame-time", 1, "--pixel-size", 1, "--overwrite",
               "--quiet").returncode == 0
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00garbage" * 10)
    msg = _one_line_error(ecm("ingest", garbage, "-o", out, "--frame-time", 1, "--pixel-size", 1))
    assert "garbage.tif" in msg and "corrupt" in msg
    msg = _one_line_error(ecm("info", tmp_path))
    assert "not an ecm_dask store" in msg


def test_demo_writes_a_series_with_ground_truth(tmp_path):
    r = ecm("demo", "-o", tmp_path / "demo", "--size", "32x48", "--frames", 200, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "demo output:" in r.stdout and "ground truth" in r.stdout
    ds = xr.open_zarr(tmp_path / "demo" / "series.zarr")
    truth = xr.open_zarr(tmp_path / "demo" / "series.zarr", group="truth")
    assert ds.intensity.shape == (200, 32, 48) and truth.tau.shape == (32, 48)
    assert truth["shift"].shape == (200, 2)  # item access: .shift is the Dataset method
    assert not (tmp_path / "demo" / "series.zarr.render.partial").exists()
