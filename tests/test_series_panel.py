"""The report's series panel against known truth: injected glitch frames are the suspect frames, a series whose
bulk slows down halfway is reported as drifting and a stationary one is not."""

import numpy as np
import pytest

import ecm_dask
from ecm_dask.live.camera import synthetic_frames
from ecm_dask.pipeline.ingest import resolve_metadata
from ecm_dask.pipeline.run import run_pipeline
from ecm_dask.pipeline.series_panel import plot_series_panel, series_panel, suspect_frames
from ecm_dask.readers.memory import ArraySource
from ecm_dask.store.series import open_series
from ecm_dask.store.writer import write_series


def test_suspect_frames_are_the_glitches():
    rng = np.random.default_rng(0)
    m = 50 + 5 * np.sin(np.arange(500) / 60) + rng.normal(0, 0.2, 500)  # slow beam drift: not suspect
    m[[37, 250, 251]] = [0.0, 80.0, 20.0]  # blanked, doubled, dimmed
    assert suspect_frames(m).tolist() == [37, 250, 251]
    assert suspect_frames(50 + rng.normal(0, 0.2, 500)).tolist() == []


def _store(tmp_path, frames, name):
    src = ArraySource(frames, frame_time_s=0.5, pixel_size_nm=0.33)
    return write_series(src, tmp_path / name, resolve_metadata(src), progress=False)


@pytest.mark.parametrize("tau_after, drifting", [(4.0, False), (16.0, True)])
def test_stationarity_per_region_and_the_glitch(tmp_path, tau_after, drifting):
    a, _ = synthetic_frames(400, 48, 48, seed=3, tau_bulk_s=4.0)
    b, _ = synthetic_frames(400, 48, 48, seed=3 if not drifting else 4, tau_bulk_s=tau_after)
    frames = np.concatenate([a, b])
    frames[555] = 0  # a blanked frame
    series = _store(tmp_path, frames, "s.zarr")
    res = run_pipeline(series, tmp_path / "r.zarr", drift=False, g2_options={"bad_frames": [555]}, progress=False)
    panel = series_panel(open_series(series), ecm_dask.open_results(res))
    assert panel["suspect_frames"] == [555]
    bulk = panel["stationarity"]["bulk"]
    assert bulk["drifting"] is drifting
    if drifting:
        assert bulk["ratio_last_first"] > 1.5
    else:
        assert 0.67 < bulk["ratio_last_first"] < 1.5
    fig = plot_series_panel(panel)
    gids = {ln.get_gid() for ax in fig.axes for ln in ax.get_lines()}
    assert {"mean", "suspect"} <= gids and "tau:bulk" in gids
