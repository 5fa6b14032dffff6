"""The .ecm accessor: a pixel's numbers are the result store's, its plot draws the store's g2 and the fit; explore()
embeds the explorer page."""

import numpy as np
import pytest
import xarray as xr

import ecm_dask
from ecm_dask.pipeline.run import run_pipeline
from ecm_dask.synth import SynthParams, write_synthetic_series


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acc")
    series = write_synthetic_series(tmp / "s.zarr", SynthParams(ny=32, nx=40, n_frames=240, seed=5), progress=False)
    return run_pipeline(series, tmp / "r.zarr", progress=False)


def test_pixel_in_nm_and_in_indices_is_the_store_pixel(results):
    tree = ecm_dask.open_results(results)
    maps = tree.to_dataset()
    iy, ix = np.argwhere(maps["status"].values == 0)[3]
    y, x = float(maps.y[iy]), float(maps.x[ix])
    a = tree.ecm.pixel(y + 0.1, x - 0.1)  # nearest pixel centre (pixels are 0.33 nm)
    b = tree.ecm.pixel(iy, ix, units="pixel")
    assert (a.iy, a.ix) == (b.iy, b.ix) == (iy, ix)
    assert a.tau == pytest.approx(float(maps.tau[iy, ix])) and a.tau_err == pytest.approx(float(maps.tau_err[iy, ix]))
    assert a.beta == pytest.approx(float(maps.beta[iy, ix])) and a.status_name == "ok" and a.ok
    assert a.region == {1: "bulk", 2: "surface", 3: "crystal"}[int(tree["regions"]["region"].values[iy, ix])]
    np.testing.assert_array_equal(a.g2, tree["g2"]["g2"].values[iy, ix].astype(float))
    np.testing.assert_allclose(a.model([a.tau]), a.baseline + a.contrast * np.exp(-2.0))
    # the maps alone (a Dataset) give the same parameters
    c = xr.open_zarr(results).ecm.pixel(y, x)
    assert c.tau == a.tau and c.g2 is None


def test_plot_draws_the_points_and_the_fit(results):
    import matplotlib

    matplotlib.use("Agg")
    tree = ecm_dask.open_results(results)
    maps = tree.to_dataset()
    iy, ix = np.argwhere(maps["status"].values == 0)[0]
    px = tree.ecm.pixel(iy, ix, units="pixel")
    ax = px.plot()
    lines = {ln.get_gid(): ln for ln in ax.get_lines()}
    pts = lines["g2"].get_ydata()
    np.testing.assert_allclose(pts, px.g2[np.isfinite(px.g2)])
    t, fit = lines["fit"].get_data()
    np.testing.assert_allclose(fit, px.model(t))
    bad = np.argwhere(maps["status"].values != 0)[0]
    ax2 = tree.ecm.pixel(bad[0], bad[1], units="pixel").plot()
    assert "fit" not in {ln.get_gid() for ln in ax2.get_lines()}


def test_errors_name_the_coordinate(results):
    tree = ecm_dask.open_results(results)
    with pytest.raises(IndexError, match="y = 500.0 nm is outside the map"):
        tree.ecm.pixel(500.0, 1.0)
    with pytest.raises(IndexError, match="x = 99"):
        tree.ecm.pixel(0, 99, units="pixel")


def test_explore_embeds_the_page(results):
    out = ecm_dask.open_results(results).ecm.explore(max_mb=4)
    html = getattr(out, "data", out)
    assert html.startswith("<iframe srcdoc=") and "ecm_dask explore" in html and "&lt;canvas id=&quot;map&quot;" in html
