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


def _two_halves(tau_after: float, seed_after: int) -> np.ndarray:
    """800 frames of 48 x 48: the bulk relaxes with tau 4 s in the first half and ``tau_after`` in the second."""
    a, _ = synthetic_frames(400, 48, 48, seed=3, tau_bulk_s=4.0)
    b, _ = synthetic_frames(400, 48, 48, seed=seed_after, tau_bulk_s=tau_after)
    return np.concatenate([a, b])


def _store(tmp_path, frames, name):
    src = ArraySource(frames, frame_time_s=0.5, pixel_size_nm=0.33)
    return write_series(src, tmp_path / name, resolve_metadata(src), progress=False)


@pytest.mark.parametrize("tau_after, drifting", [(4.0, False), (16.0, True)])
def test_stationarity_per_region_and_the_glitch(tmp_path, tau_after, drifting):
    frames = _two_halves(tau_after, 3 if not drifting else 4)
    frames[555] = 0  # a blanked frame
    series = _store(tmp_path, frames, "s.zarr")
    res = run_pipeline(series, tmp_path / "r.zarr", drift=False, g2_options={"bad_frames": [555]}, progress=False)
    panel = series_panel(open_series(series), ecm_dask.open_results(res))
    assert panel["suspect_frames"] == [555]
    bulk = panel["stationarity"]["bulk"]
    assert bulk["drifting"] is drifting
    if drifting:
        assert bulk["ratio_last_first"] > 1.5
        # a byte budget for the sampled time series (a long series) samples fewer pixels, with the same verdict
        few = series_panel(open_series(series), ecm_dask.open_results(res), max_bytes=800 * 2 * 200)
        assert few["stationarity"]["bulk"]["pixels"] <= 200 < bulk["pixels"]
        assert few["stationarity"]["bulk"]["stride"] > bulk["stride"] and few["stationarity"]["bulk"]["drifting"]
    else:
        assert 0.67 < bulk["ratio_last_first"] < 1.5
    fig = plot_series_panel(panel)
    gids = {ln.get_gid() for ax in fig.axes for ln in ax.get_lines()}
    assert {"mean", "suspect"} <= gids and "tau:bulk" in gids


def test_a_pooled_run_samples_the_series_at_its_cells_and_still_sees_the_slowdown(tmp_path):
    """Maps of 2 x 2 pooled cells are on another grid than the frames: each sampled cell is read at the series pixel
    nearest its centre (the panel used to refuse such maps with a ValueError from the stationarity kernel)."""
    series = _store(tmp_path, _two_halves(16.0, 4), "s.zarr")
    res = run_pipeline(series, tmp_path / "r.zarr", drift=False, g2_options={"pool": 2}, progress=False)
    tree = ecm_dask.open_results(res)
    maps = tree.to_dataset()
    assert maps.sizes["y"] == 24
    bulk_ok = int(((maps["status"] == 0) & (tree["regions"].to_dataset()["region"] == 1)).sum())
    panel = series_panel(open_series(series), tree)
    bulk = panel["stationarity"]["bulk"]
    assert bulk["pixels"] == bulk_ok > 10 and bulk["stride"] == 1
    assert bulk["drifting"] is True and bulk["ratio_last_first"] > 1.5


def test_dose_in_electrons_from_the_camera_gain(tmp_path):
    frames, _ = synthetic_frames(120, 32, 32, seed=1, tau_bulk_s=2.0)
    src = ArraySource(frames, frame_time_s=0.5, pixel_size_nm=0.33)
    series = write_series(src, tmp_path / "s.zarr", resolve_metadata(src, counts_per_electron=8.0), progress=False)
    res = run_pipeline(series, tmp_path / "r.zarr", drift=False, progress=False)
    ds = open_series(series)
    panel = series_panel(ds, ecm_dask.open_results(res))
    counts = frames.astype(np.float64).mean()  # independent: the raw frames
    d = panel["dose"]
    assert d["electrons_per_pixel_per_frame"] == pytest.approx(counts / 8.0, rel=1e-9)
    assert d["dose_rate_e_per_A2_per_s"] == pytest.approx(counts / 8.0 / 3.3 ** 2 / 0.5, rel=1e-9)
    assert d["total_dose_e_per_A2"] == pytest.approx(counts / 8.0 * 120 / 3.3 ** 2, rel=1e-9)
    # an explicit gain wins over the series'; without any, the panel says the dose is unknown
    assert series_panel(ds, ecm_dask.open_results(res), counts_per_electron=2.0)["dose"][
        "electrons_per_pixel_per_frame"] == pytest.approx(counts / 2.0, rel=1e-9)
    from ecm_dask.pipeline.series_panel import panel_rows

    assert any("dose rate" in r[0] for r in panel_rows(panel))
    plain = _store(tmp_path, frames, "plain.zarr")
    p2 = series_panel(open_series(plain), ecm_dask.open_results(res))
    assert "dose" not in p2 and any("unknown: no camera gain" in r[1] for r in panel_rows(p2))
    fig = plot_series_panel(panel)
    assert any(getattr(ax, "get_ylabel", lambda: "")().startswith("e⁻/Å²") for ax in fig.axes[0].child_axes)
    with pytest.raises(ecm_dask.errors.ParameterError, match="--counts-per-electron"):
        resolve_metadata(src, counts_per_electron=-1.0)
