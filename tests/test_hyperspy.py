"""HyperSpy round trips: a series store as a lazy, calibrated Signal2D and back (in memory and through .hspy files
read by `ingest` without HyperSpy), result maps as calibrated signals."""

import numpy as np
import pytest
import xarray as xr

hs = pytest.importorskip("hyperspy.api")

from ecm_dask.interop import ingest_signal, maps_to_hyperspy, to_hyperspy  # noqa: E402
from ecm_dask.pipeline.ingest import ingest  # noqa: E402
from ecm_dask.synth import SynthParams, write_synthetic_series  # noqa: E402


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hs")
    return write_synthetic_series(tmp / "s.zarr", SynthParams(ny=24, nx=32, n_frames=60, seed=2,
                                                             frame_time_s=0.25, pixel_size_nm=0.4), progress=False)


def test_series_as_a_lazy_calibrated_signal(series):
    sig = to_hyperspy(series)
    assert sig._lazy and sig.data.shape == (60, 24, 32)
    nav, (sx, sy) = sig.axes_manager.navigation_axes[0], sig.axes_manager.signal_axes
    assert (nav.name, nav.units, nav.scale) == ("time", "s", pytest.approx(0.25))
    assert (sx.name, sx.units, sx.scale, sx.size) == ("x", "nm", pytest.approx(0.4), 32)
    assert (sy.name, sy.units, sy.scale, sy.size) == ("y", "nm", pytest.approx(0.4), 24)
    ref = xr.open_zarr(series)["intensity"]
    np.testing.assert_array_equal(np.asarray(sig.inav[7].data.compute()), ref[7].values)


def test_file_round_trip_through_ingest(series, tmp_path):
    sig = to_hyperspy(series)
    path = tmp_path / "s.hspy"
    sig.save(path)
    back = ingest(path, tmp_path / "back.zarr", progress=False)  # calibration from the file's axes
    a, b = xr.open_zarr(series), xr.open_zarr(back)
    np.testing.assert_array_equal(a["intensity"].values, b["intensity"].values)
    assert b.attrs["frame_time_s"] == pytest.approx(0.25) and b.attrs["pixel_size_nm"] == pytest.approx(0.4)


def test_ingest_a_signal_in_memory_and_lazy(series, tmp_path):
    ref = xr.open_zarr(series)["intensity"].values
    eager = hs.signals.Signal2D(ref.copy())
    eager.axes_manager.navigation_axes[0].scale, eager.axes_manager.navigation_axes[0].units = 0.25, "s"
    for ax in eager.axes_manager.signal_axes:
        ax.scale, ax.units = 0.4, "nm"
    for name, sig in (("eager", eager), ("lazy", to_hyperspy(series))):
        out = ingest_signal(sig, tmp_path / f"{name}.zarr")
        b = xr.open_zarr(out)
        np.testing.assert_array_equal(b["intensity"].values, ref)
        assert b.attrs["frame_time_s"] == pytest.approx(0.25) and b.attrs["pixel_size_nm"] == pytest.approx(0.4)
    with pytest.raises(Exception, match="one navigation axis"):
        ingest_signal(hs.signals.Signal2D(np.zeros((2, 3, 8, 8))), tmp_path / "bad.zarr")


def test_result_maps_as_calibrated_signals(series, tmp_path):
    from ecm_dask.pipeline.run import run_pipeline

    res = run_pipeline(series, tmp_path / "r.zarr", drift=False, progress=False)
    sigs = maps_to_hyperspy(res)
    maps = xr.open_zarr(res)
    ok = maps.status.values == 0
    tau = sigs["tau"]
    assert tau.data.shape == (24, 32) and tau.axes_manager.signal_axes[0].scale == pytest.approx(0.4)
    assert tau.axes_manager.signal_axes[0].units == "nm"
    np.testing.assert_array_equal(tau.data[ok], maps.tau.values[ok])
    assert np.isnan(tau.data[~ok]).all()
    assert "s" in tau.metadata.Signal.quantity
