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
                update_every=0.3, poll_s=0.02, stop_after=300, series=tmp / "series.zarr", echo=lines.append)
    th.join()
    series = tmp / "series.zarr"  # written by the watch from the frames it used
    assert lines[-1].startswith(f"series: 300 frames -> {series}")
    lines.pop()
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
    series = xr.open_zarr(tmp / "series.zarr")  # the watch's own series store holds exactly the camera's frames
    np.testing.assert_array_equal(series["intensity"].values, recorded["frames"])
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
           str(p.frame_time_s), "--pixel-size", str(p.pixel_size_nm), "--update-every", "0.2s", "--poll", "0.05s", "--checkpoint-every", "0.5s"]
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


def test_drift_while_watching_against_the_truth_and_the_offline_g2_stage(tmp_path):
    """A drifting series: the live shifts follow the synthetic drift, and the live g2 is the g2 stage's g2 of the same
    frames with the same shifts (bit for bit here), pixels that drift out of view marked the same way."""
    from ecm_dask.live.camera import reference_box
    from ecm_dask.ops.drift import estimate_drift
    from ecm_dask.pipeline.correlate import run_g2
    from ecm_dask.store.series import open_series
    from ecm_dask.synth.model import drift_trace

    frames, p = synthetic_frames(240, 64, 64, seed=2, drift_px=(2.0, -3.0), drift_walk_px=0.3)
    roi = reference_box(p, 6)
    cam = tmp_path / "cam"
    simulate_camera(cam, frames, rate=1e4, pause_s=0)
    lines = []
    run = watch(cam, tmp_path / "live.zarr", frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm,
                update_every=1e3, poll_s=0.02, stop_after=240, reference_roi=roi, max_shift=6, echo=lines.append)
    live = np.asarray(run.drift.shifts)
    truth = drift_trace(p) - drift_trace(p)[0]
    assert live.shape == (240, 2)
    assert np.sqrt(((live - truth) ** 2).mean()) < 0.1  # measured 0.05 px
    assert "drift now" in lines[-1] and "in view throughout" in lines[-1]
    series = ingest(str(cam), tmp_path / "series.zarr", frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm,
                    progress=False)
    # the offline estimator on the whole series (same region and margin) agrees to a tenth of a pixel
    off = estimate_drift(open_series(series), roi, margin=6, max_shift=6)["shift"].values
    assert np.abs(off - live).max() < 0.15
    g_off = xr.open_zarr(run_g2(series, tmp_path / "g2.zarr", shifts=live, progress=False))
    g_live = xr.open_zarr(stage_dir(tmp_path / "live.zarr") / "g2.zarr")
    np.testing.assert_array_equal(g_live.status.values, g_off.status.values)
    assert (g_live.status.values == 4).sum() > 100  # the edges the drift sweeps are out of view
    np.testing.assert_allclose(g_live.g2.values, g_off.g2.values, rtol=1e-6, equal_nan=True)
    res = xr.open_datatree(tmp_path / "live.zarr", engine="zarr")
    np.testing.assert_allclose(res["drift"]["shift"].values, live)
    # the artefact screen sees the drift: edge pixels flagged, as in an offline run with drift
    assert int((res["artefacts"]["artefact"].values > 0).sum()) > 0


def test_reference_region_must_fit_the_frame(tmp_path):
    from ecm_dask.errors import EcmError

    frames, p = synthetic_frames(20, 32, 32, seed=1)
    simulate_camera(tmp_path / "cam", frames, rate=1e4, pause_s=0)
    with pytest.raises(EcmError, match="leaves the 32 x 32 frame"):
        watch(tmp_path / "cam", tmp_path / "o.zarr", frame_time_s=0.5, pixel_size_nm=0.33, stop_after=20,
              reference_roi="0:16,0:16", max_shift=4, poll_s=0.01)
    with pytest.raises(EcmError, match="Y0:Y1,X0:X1"):
        watch(tmp_path / "cam", tmp_path / "o2.zarr", frame_time_s=0.5, pixel_size_nm=0.33, reference_roi="a:b")


@pytest.mark.parametrize("tau_after, changed", [(4.0, False), (16.0, True)])
def test_stationarity_windows_flag_dynamics_that_slow_down(tmp_path, tau_after, changed):
    """300 frames with bulk tau 4 s, then 300 with tau_after: four windows of 150 frames; a 4x slower bulk in the
    second half is reported (ratio last/first window ~1.8), an unchanged one is not (~0.8)."""
    a, p = synthetic_frames(300, 48, 48, seed=3, tau_bulk_s=4.0)
    b, _ = synthetic_frames(300, 48, 48, seed=4, tau_bulk_s=tau_after)
    simulate_camera(tmp_path / "cam", np.concatenate([a, b]), rate=1e4, pause_s=0)
    run = watch(tmp_path / "cam", tmp_path / "live.zarr", frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm,
                update_every=1e3, poll_s=0.02, stop_after=600, window_frames=150, echo=lambda line: None)
    st = run.verdicts["stationarity"]
    assert [w["frames"] for w in st["windows"]] == [[0, 150], [150, 300], [300, 450], [450, 600]]
    assert st["bulk"]["changed"] is changed
    if changed:
        assert st["bulk"]["ratio"] > 1.5 and "not stationary" in st["verdict"]
    else:
        assert 1 / 1.5 < st["bulk"]["ratio"] < 1.5 and "bulk tau steady over 4 windows" in st["verdict"]
    with pytest.raises(Exception, match="--window"):
        watch(tmp_path / "cam", tmp_path / "o.zarr", frame_time_s=0.5, pixel_size_nm=0.33, window_frames=3)


def _block_g2(frames):
    from ecm_dask.kernels import g2 as K

    return K.g2(frames.reshape(frames.shape[0], -1), axis=0)


def test_growing_multipage_tiff(tmp_path):
    """A camera appending pages to one TIFF: every page used once, in order, the last only once it is complete."""
    import tifffile

    frames, p = synthetic_frames(120, 24, 28, seed=5)
    path = tmp_path / "stack.tif"

    def camera():
        for f in frames:
            tifffile.imwrite(path, f, append=True, photometric="minisblack")
            time.sleep(0.003)

    th = threading.Thread(target=camera)
    th.start()
    run = watch(path, tmp_path / "live.zarr", frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm,
                update_every=1e3, poll_s=0.01, stop_after=120, echo=lambda line: None)
    th.join()
    assert run.source.used == [f"#{i}" for i in range(120)]
    np.testing.assert_allclose(run.state.result().g2, _block_g2(frames).g2, rtol=1e-6, equal_nan=True)


_H5_WRITER = """
import sys, time
import h5py, numpy as np
path, n = sys.argv[1], int(sys.argv[2])
frames = np.load(sys.argv[3])
with h5py.File(path, "w", libver="latest") as f:
    d = f.create_dataset("entry/data/data", shape=(0,) + frames.shape[1:], maxshape=(None,) + frames.shape[1:],
                         chunks=(1,) + frames.shape[1:], dtype=frames.dtype)
    f.swmr_mode = True
    for i in range(n):
        d.resize(i + 1, axis=0)
        d[i] = frames[i]
        d.flush()
        time.sleep(0.005)
"""


def test_growing_hdf5_dataset_written_in_swmr_mode(tmp_path):
    frames, p = synthetic_frames(100, 20, 24, seed=6)
    np.save(tmp_path / "frames.npy", frames)
    path = tmp_path / "series.h5"
    writer = subprocess.Popen([sys.executable, "-c", _H5_WRITER, str(path), "100", str(tmp_path / "frames.npy")])
    try:
        run = watch(path, tmp_path / "live.zarr", frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm,
                    dataset="entry/data/data", update_every=1e3, poll_s=0.01, stop_after=100,
                    echo=lambda line: None)
    finally:
        assert writer.wait(timeout=120) == 0
    assert run.source.used == [f"#{i}" for i in range(100)]
    np.testing.assert_allclose(run.state.result().g2, _block_g2(frames).g2, rtol=1e-6, equal_nan=True)
    with pytest.raises(Exception, match="--dataset"):
        watch(path, tmp_path / "o.zarr", frame_time_s=0.5, pixel_size_nm=0.33)


def test_gatan_style_folder_tree_in_time_order(tmp_path):
    """Frames in Hour_xx/Minute_xx/Second_xx sub-folders (Gatan's in-situ layout; TIFF frames here) are used in
    time order across folders, though their names restart in every second."""
    frames, p = synthetic_frames(80, 32, 40, seed=8)
    paths = []
    for i, f in enumerate(frames):
        sec, k = divmod(i, 7)  # 7 frames per second, numbered from 0 in each folder
        d = tmp_path / "cam" / "Hour_00" / f"Minute_{sec // 60:02d}" / f"Second_{sec % 60}"
        d.mkdir(parents=True, exist_ok=True)
        paths.append(d / f"frame_{k}.tif")
    for path, f in zip(paths, frames):
        path.write_bytes(frame_bytes(f))
    run = watch(tmp_path / "cam", tmp_path / "live.zarr", frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm,
                update_every=1e3, poll_s=0.01, stop_after=80, series=tmp_path / "s.zarr", echo=lambda line: None)
    assert run.source.used == [str(q.relative_to(tmp_path / "cam")) for q in paths]
    assert run.source.reports == []  # per-second numbering is not a gap or a duplicate
    np.testing.assert_allclose(run.state.result().g2, _block_g2(frames).g2, rtol=1e-6, equal_nan=True)
    assert not (tmp_path / "s.zarr").exists()  # said so instead of ingesting in another order


def test_a_dm_file_that_is_not_one_frame_is_reported_by_name(tmp_path):
    """DM3/DM4 frames are read through rosettasciio; the vendor sample file holds a 2-frame stack, not a frame."""
    from pathlib import Path

    from ecm_dask.errors import InputError
    from ecm_dask.live.source import read_frame

    src = Path(__file__).resolve().parents[2] / "shared" / "data" / "vendor-files" / "test-1.dm4"
    if not src.is_file():
        pytest.skip("shared vendor files absent")
    with pytest.raises(InputError, match=r"test-1\.dm4: holds data of shape \(2, 2, 2\), not one 2-D frame"):
        read_frame(str(src))


@pytest.mark.parametrize("roi, message", [("a:b", "Y0:Y1,X0:X1"), ("0:1.5,0:16", "whole pixel"),
                                          ("inf:1,0:3", "whole pixel"), ((1, 2, 3), "whole pixel"),
                                          (5, "whole pixel"), ("0:4,0:4", "at least 8 x 8")])
def test_reference_roi_of_watch_is_checked_before_any_frame(roi, message):
    """The same text syntax as `run --reference-roi` (ops.regions.roi_from_text), whole pixels only: a clear error
    naming the option, never a traceback from int() or float()."""
    from ecm_dask.errors import ParameterError
    from ecm_dask.live.watch import _roi

    with pytest.raises(ParameterError, match=message):
        _roi(roi)
    assert _roi("0:16,2:20") == (0, 16, 2, 20) and _roi((0, 16, 0, 16)) == (0, 16, 0, 16)
