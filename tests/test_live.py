"""Live mode: the folder poller's rules, the watcher against the offline pipeline on the same frames, and a
SIGKILLed watcher restarted (no frame lost or doubled)."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import xarray as xr

from ecm_dask.live.camera import frame_bytes, simulate_camera, synthetic_frames
from ecm_dask.live.source import FolderFrames, frame_number
from ecm_dask.live.watch import LiveRun, live_dir, watch
from ecm_dask.pipeline.ingest import ingest
from ecm_dask.pipeline.run import run_pipeline, stage_dir


def _write(folder, i, frame, part=None):
    data = frame_bytes(frame)
    with open(os.path.join(folder, f"frame_{i:04d}.tif"), "wb") as f:
        f.write(data if part is None else data[:part])


def _poll_until_quiet(src, polls=6):
    got = []
    for _ in range(polls):
        got += [n for n, _ in src.poll()]
    return got


def test_frame_numbers_and_the_poller_rules(tmp_path):
    assert frame_number("frame_00012.tif") == 12 and frame_number("a.tif") is None
    rng = np.random.default_rng(0)
    fr = [rng.poisson(5, (8, 9)).astype(np.uint16) for _ in range(12)]
    d = str(tmp_path)
    src = FolderFrames(d, gap_polls=2)
    _write(d, 0, fr[0])
    _write(d, 1, fr[1], part=40)  # being written
    _write(d, 2, fr[2])
    assert _poll_until_quiet(src) == ["frame_0000.tif"]  # 2 is complete but waits for 1
    assert any("frame_0001.tif" in r for r in src.reports)  # stable but unreadable: reported
    _write(d, 1, fr[1])
    assert _poll_until_quiet(src) == ["frame_0001.tif", "frame_0002.tif"]
    _write(d, 4, fr[4])  # 3 never comes: skipped after gap_polls polls
    assert _poll_until_quiet(src) == ["frame_0004.tif"]
    assert any("3 missing" in r for r in src.reports)
    _write(d, 3, fr[3])  # arrives late: ignored
    with open(os.path.join(d, "frame_4.tif"), "wb") as f:  # same number, another name: ignored
        f.write(frame_bytes(fr[5]))
    _write(d, 5, np.zeros((3, 3), np.uint16))  # another shape: not a frame of this series
    assert _poll_until_quiet(src) == []
    assert any("arrived after later frames" in r for r in src.reports)
    assert any("repeats frame number 4" in r for r in src.reports)
    assert any("shape (3, 3)" in r for r in src.reports)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A simulated camera filling a folder while a watcher correlates it, then the offline run of that folder."""
    tmp = tmp_path_factory.mktemp("live")
    frames, p = synthetic_frames(300, 40, 48, seed=3)
    cam = tmp / "cam"
    th = threading.Thread(target=simulate_camera, args=(cam, frames), kwargs={"rate": 400.0, "pause_s": 0.002})
    th.start()
    while not cam.is_dir():
        time.sleep(0.01)
    lines = []
    run = watch(cam, tmp / "live.zarr", frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm,
                update_every=0.3, poll_s=0.02, stop_after=300, echo=lines.append)
    th.join()
    series = ingest(str(cam), tmp / "series.zarr", frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm,
                    progress=False)
    offline = run_pipeline(series, tmp / "offline.zarr", drift=False, progress=False)
    return {"run": run, "lines": lines, "tmp": tmp, "offline": offline, "frames": frames, "p": p}


def test_watch_uses_every_frame_once_and_reports_each_update(recorded):
    run = recorded["run"]
    assert run.n_frames == 300 and run.source.used == [f"frame_{i:06d}.tif" for i in range(300)]
    assert run.source.reports == []
    assert len(recorded["lines"]) >= 2 and recorded["lines"][-1].startswith("300 frames (150 s)")
    assert "bulk: median tau" in recorded["lines"][-1]


def test_live_g2_and_maps_equal_the_offline_run_of_the_same_frames(recorded):
    tmp = recorded["tmp"]
    live_g2 = xr.open_zarr(stage_dir(tmp / "live.zarr") / "g2.zarr")
    off_g2 = xr.open_zarr(stage_dir(recorded["offline"]) / "g2.zarr")
    np.testing.assert_array_equal(live_g2.status.values, off_g2.status.values)
    np.testing.assert_array_equal(live_g2.lag.values, off_g2.lag.values)
    np.testing.assert_allclose(live_g2.g2.values, off_g2.g2.values, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(live_g2.mean_intensity.values, off_g2.mean_intensity.values, rtol=1e-6)
    live, off = xr.open_zarr(tmp / "live.zarr"), xr.open_zarr(recorded["offline"])
    np.testing.assert_array_equal(live.status.values, off.status.values)
    assert (live.status.values == 0).sum() > 500
    for v in ("tau", "beta", "contrast"):
        np.testing.assert_allclose(live[v].values, off[v].values, rtol=1e-4, equal_nan=True)


def test_verdicts_against_the_truth(recorded):
    """The verdict's median tau per region is the map's, and the map is near the synthetic truth."""
    v = recorded["run"].verdicts
    p = recorded["p"]
    assert v["series_s"] == pytest.approx(300 * p.frame_time_s)
    bulk, surf = v["bulk"], v["surface"]
    assert surf["median_tau_s"] < bulk["median_tau_s"]
    # 150 s of series: bulk tau ~ 10 s is not yet 40 tau long for most pixels; the verdict says how long to go
    assert bulk["fraction_long_enough"] < 0.5 and bulk["seconds_to_go"] == pytest.approx(
        40 * bulk["median_tau_s"] - 150, rel=1e-6)
    live = xr.open_zarr(recorded["tmp"] / "live.zarr")
    assert "verdicts" in live.attrs["live"]


def test_sigkill_and_restart_neither_lose_nor_double_a_frame(tmp_path):
    frames, p = synthetic_frames(160, 24, 24, seed=4)
    cam = tmp_path / "cam"
    simulate_camera(cam, frames[:100], rate=1e4, pause_s=0)
    out = tmp_path / "live.zarr"
    cmd = [sys.executable, "-m", "ecm_dask", "watch", str(cam), "-o", str(out), "--frame-time",
           str(p.frame_time_s), "--pixel-size", str(p.pixel_size_nm), "--update-every", "0.2s", "--poll", "0.05s"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state = live_dir(out) / "state.npz"
    deadline = time.monotonic() + 120
    while not state.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.is_file(), proc.communicate(timeout=5)[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mid = LiveRun.resume_or_start(str(cam), out, frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm)
    assert 4 <= mid.n_frames <= 100 and len(mid.source.used) == mid.n_frames
    simulate_camera(cam, frames, start=100, rate=1e4, pause_s=0)
    res = subprocess.run(cmd + ["--frames", "160"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming:" in res.stdout
    end = LiveRun.resume_or_start(str(cam), out, frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm)
    assert end.source.used == [f"frame_{i:06d}.tif" for i in range(160)]
    # the sums are those of the 160 frames, each once: the same g2 as the block correlator of the frames
    from ecm_dask.kernels import g2 as K

    ref = K.g2(frames.reshape(160, -1), axis=0)
    got = end.state.result()
    np.testing.assert_allclose(got.g2, ref.g2, rtol=1e-6, equal_nan=True)


def test_watch_refuses_bad_input_naming_it(tmp_path):
    from ecm_dask.errors import EcmError

    with pytest.raises(EcmError, match="not a folder"):
        watch(tmp_path / "nope", tmp_path / "o.zarr", frame_time_s=0.5, pixel_size_nm=0.3)
    with pytest.raises(EcmError, match="--frame-time"):
        watch(tmp_path, tmp_path / "o.zarr", frame_time_s=-1, pixel_size_nm=0.3)
