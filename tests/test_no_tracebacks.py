"""No tracebacks (issue 13, item 9): each case used to end in a Python traceback; now one line naming the file,
frame or option (or a correct result), and Ctrl-C on a local cluster is one message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ecm_cli, one_line_error

from ecm_dask.errors import ParameterError
from ecm_dask.pipeline.ingest import resolve_metadata
from ecm_dask.readers.memory import ArraySource
from ecm_dask.store.writer import write_series


def _store(path, data, **kw):
    src = ArraySource(data, name=path.stem + ".npy", frame_time_s=1.0, pixel_size_nm=0.3)
    return write_series(src, path, resolve_metadata(src), progress=False, **kw)


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    """A synthetic wire as float32 with frame 40 all NaN and a NaN patch in frame 41."""
    from ecm_dask.store.series import open_series
    from ecm_dask.synth import SynthParams, write_synthetic_series

    d = tmp_path_factory.mktemp("nan")
    syn = write_synthetic_series(d / "syn.zarr", SynthParams(ny=48, nx=64, n_frames=400, seed=1), progress=False)
    data = open_series(syn).intensity.values.astype("float32")
    data[40] = np.nan
    data[41, 30:34, 40:44] = np.nan
    return _store(d / "nan.zarr", data)


def test_an_all_zero_series_is_one_line_with_and_without_drift(tmp_path):
    series = _store(tmp_path / "zeros.zarr", np.zeros((100, 32, 32), "uint16"))
    run = ("run", series, "--cluster", "threads", "--quiet", "--no-report")
    line = one_line_error(_run(*run, "-o", tmp_path / "a.zarr"))
    assert "no drift reference" in line and "dark" in line and "--reference-roi" in line and "--no-drift" in line
    line = one_line_error(_run(*run, "-o", tmp_path / "b.zarr", "--no-drift"))
    assert "no pixel has usable data (1024 no intensity)" in line and str(series) in line


def test_a_nan_frame_with_an_automatic_reference(textured, tmp_path):
    import xarray as xr

    run = ("run", textured, "--cluster", "threads", "--quiet", "--no-report")
    line = one_line_error(_run(*run, "-o", tmp_path / "a.zarr"))  # every pixel sees the NaN frame: nothing usable
    assert "--bad-frames" in line and "frame(s) 40, 41" in line  # the frames to leave out, named
    r = _run(*run, "-o", tmp_path / "b.zarr", "--bad-frames", "40-41")  # and with them left out: a map
    assert r.returncode == 0, r.stderr
    tree = xr.open_datatree(tmp_path / "b.zarr", engine="zarr")
    drift = tree["drift"].to_dataset()
    assert drift.attrs["nonfinite_frames"] == [40, 41] and bool(drift.outlier.values[[40, 41]].all())
    assert np.isfinite(drift["shift"].values).all()
    assert int((tree.to_dataset().status.values == 0).sum()) > 500


def test_a_uniform_series_is_one_line_naming_it(tmp_path):
    series = _store(tmp_path / "flat.zarr", np.full((100, 32, 32), 100, "uint16"))
    line = one_line_error(_run("run", series, "-o", tmp_path / "a.zarr", "--cluster", "threads", "--quiet",
                               "--no-report"))
    assert "no drift reference" in line and "uniform (100 counts in every pixel" in line
    assert "--reference-roi" in line and "--no-drift" in line


def test_a_dead_pixel_does_not_stop_the_automatic_reference(textured, tmp_path):
    """A pixel NaN in every frame (dead, masked) where the reference would be suggested: another region is
    suggested, the dead pixel in its margin is filled, the frames are registered (not all left out)."""
    import xarray as xr

    from ecm_dask.kernels.drift import suggest_reference
    from ecm_dask.pipeline.drift import suggest_roi
    from ecm_dask.store.series import open_series

    y0, y1, x0, x1 = suggest_roi(open_series(textured))
    yd, xd = (y0 + y1) // 2, (x0 + x1) // 2
    data = open_series(textured).intensity.values
    data[:, yd, xd] = np.nan
    dead = _store(tmp_path / "dead.zarr", data)
    r = _run("run", dead, "-o", tmp_path / "r.zarr", "--cluster", "threads", "--quiet", "--no-report",
             "--bad-frames", "40-41")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    drift = xr.open_datatree(tmp_path / "r.zarr", engine="zarr")["drift"].to_dataset()
    a0, a1, b0, b1 = drift.attrs["reference_roi_px"]
    assert not (a0 <= yd < a1 and b0 <= xd < b1)
    assert drift.attrs["nonfinite_frames"] == [40, 41] and int(drift.outlier.sum()) < 10
    assert np.isfinite(drift["shift"].values).all()
    mean = np.ones((20, 20))
    mean[5:15, 5:15] = 2.0
    mean[10, 10] = np.nan
    ry0, ry1, rx0, rx1 = suggest_reference(mean, mean, size=(8, 8))
    assert not (ry0 <= 10 < ry1 and rx0 <= 10 < rx1)


def test_info_on_an_interrupted_ingest_and_on_results(textured, tmp_path):
    import dask

    data = np.random.default_rng(1).poisson(5, (40, 16, 16)).astype("uint16")

    class Killed(ArraySource):
        reads = 0

        def _read(self, a, b):
            Killed.reads += 1
            if Killed.reads == 3:
                raise KeyboardInterrupt
            return super()._read(a, b)

    src = Killed(data, name="x.npy", frame_time_s=1.0, pixel_size_nm=1.0)
    with dask.config.set(scheduler="synchronous"), pytest.raises(KeyboardInterrupt):
        write_series(src, tmp_path / "int.zarr", resolve_metadata(src), frames_per_shard=8, progress=False)
    for target in ("int.zarr", "int.zarr.partial"):
        r = _run("info", tmp_path / target)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "INCOMPLETE" in r.stdout and "2 of 5 shards written" in r.stdout and "(time: 40, y: 16, x: 16)" in r.stdout
    out = tmp_path / "r.zarr"
    assert _run("run", textured, "-o", out, "--cluster", "threads", "--quiet", "--no-report", "--no-drift",
                "--bad-frames", "40-41").returncode == 0
    r = _run("info", out)
    assert r.returncode == 0 and "results of ecm-dask run" in r.stdout and "bad frames 40-41" in r.stdout, r.stderr
    assert "bulk" in r.stdout and "median tau" in r.stdout
    r = _run("info", f"{out}.stages/g2.zarr")
    assert r.returncode == 0 and "g2 " in r.stdout and "(y: 48, x: 64, lag:" in r.stdout


def test_info_on_a_series_store_whose_writing_stopped_early(tmp_path):
    """An ingest killed while creating its .partial (no progress ticks yet) and a store made with create_series
    and never finished: both INCOMPLETE, with the shards written out of the shards in all, and how to resume."""
    import zarr

    from ecm_dask import schema as S
    from ecm_dask.store.layout import plan_layout
    from ecm_dask.store.series import create_series

    layout = plan_layout((40, 16, 16), 2, frames_per_shard=8)
    attrs = {S.ATTR_FRAME_TIME: 1.0, S.ATTR_PIXEL_SIZE: 1.0}
    create_series(tmp_path / "a.zarr.partial", layout, "uint16", attrs, "key")
    for target in ("a.zarr", "a.zarr.partial"):
        r = _run("info", tmp_path / target)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "INCOMPLETE" in r.stdout and "0 of 5 shards written" in r.stdout and "again to resume" in r.stdout
    create_series(tmp_path / "b.zarr", layout, "uint16", attrs, "key")
    zarr.open_array(tmp_path / "b.zarr" / S.INTENSITY, mode="r+", config={"write_empty_chunks": True})[8:24] = 1
    r = _run("info", tmp_path / "b.zarr")
    assert r.returncode == 0 and "INCOMPLETE: 2 of 5 shards written" in r.stdout and "again to resume" in r.stdout


def test_a_pool_too_large_for_the_frame_is_refused_before_any_work(tmp_path):
    """--pool larger than the frame, or leaving one pooled pixel: one line naming --pool and the frame, nothing
    written; the largest pool that leaves a 2 x 2 map runs (adaptive pooling's halo is wider than that map)."""
    from ecm_dask.ops.correlation import correlate
    from ecm_dask.store.series import open_series

    data = np.random.default_rng(3).poisson(20, (200, 12, 12)).astype("uint16")
    series = _store(tmp_path / "small.zarr", data)
    run = ("run", series, "--cluster", "threads", "--quiet", "--no-report", "--no-drift")
    for pool, words in ((16, "--pool 16 is larger than the frame of 12 x 12 pixels"),
                        (7, "--pool 7 leaves a 1 x 1 map of the frame of 12 x 12 pixels; at most --pool 6")):
        line = one_line_error(_run(*run, "-o", tmp_path / f"p{pool}.zarr", "--pool", pool))
        assert words in line, line
        assert not (tmp_path / f"p{pool}.zarr.stages").exists()
    with pytest.raises(ParameterError, match="--pool 13 is larger than the frame of 12 x 12"):
        correlate(open_series(series), pool=13)
    r = _run(*run, "-o", tmp_path / "p6.zarr", "--pool", 6)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def _interrupt(series, out, after_s: float, wait_for: str):
    env = dict(os.environ)
    p = subprocess.Popen([sys.executable, "-m", "ecm_dask", "run", str(series), "-o", str(out), "--cluster", "local",
                          "--workers", "1", "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, env=env, start_new_session=True)
    seen, t0 = [], time.time()
    while time.time() - t0 < 120:
        line = p.stderr.readline()
        if not line:
            break
        seen.append(line)
        if wait_for in line:
            break
    time.sleep(after_s)
    os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole process group
    _, err = p.communicate(timeout=120)
    return p.returncode, "".join(seen) + err


@pytest.mark.slow
@pytest.mark.parametrize("wait_for, after_s", [("dask scheduler", 0.3), ("g2 of", 0.5)])
def test_ctrl_c_on_a_local_cluster_run_is_one_message(tmp_path, wait_for, after_s):
    from ecm_dask.synth import SynthParams, write_synthetic_series

    series = write_synthetic_series(tmp_path / "s.zarr", SynthParams(ny=96, nx=128, n_frames=3000, seed=1),
                                    progress=False)
    rc, err = _interrupt(series, tmp_path / "r.zarr", after_s, wait_for)
    assert rc == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err and "WARNING" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted: run the same command again to resume"
    assert not (tmp_path / "r.zarr").exists()


def _run(*args, timeout=300):
    return ecm_cli(*args, timeout=timeout, check=False)
