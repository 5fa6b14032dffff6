"""The interactive explorer page (explore.html) in a real browser: Debian's Chromium driven by Playwright clicks
pixels of the map and the page must show that pixel's numbers (against the result store) and its g2 curve."""

import os
import shutil

import numpy as np
import pytest
import xarray as xr

from ecm_dask.pipeline.explore import page_data, write_explore
from ecm_dask.pipeline.run import run_pipeline
from ecm_dask.synth import SynthParams, write_synthetic_series

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI must install Debian's chromium (.ci/run) for the explorer tests")
playwright = pytest.importorskip("playwright.sync_api") if CHROMIUM else None
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explore")
    series = write_synthetic_series(tmp / "s.zarr", SynthParams(ny=40, nx=56, n_frames=300, seed=3), progress=False)
    return run_pipeline(series, tmp / "r.zarr", progress=False)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _page(browser, html, hash_=""):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.goto(html.as_uri() + hash_)
    return page


def _click(page, iy, ix, ny, nx):
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + (ix + 0.5) * box["width"] / nx, box["y"] + (iy + 0.5) * box["height"] / ny)


def test_click_a_pixel_shows_its_numbers_and_curve(results, browser, tmp_path):
    html = write_explore(results, tmp_path / "explore.html")
    tree = xr.open_datatree(results, engine="zarr")
    maps = tree.to_dataset()
    ny, nx = maps.sizes["y"], maps.sizes["x"]
    ok = np.argwhere(maps["status"].values == 0)
    page = _page(browser, html)
    for iy, ix in (ok[0], ok[len(ok) // 2], ok[-1]):
        _click(page, iy, ix, ny, nx)
        assert page.evaluate("document.body.dataset.selected") == f"{iy},{ix}"
        tau = float(maps["tau"].values[iy, ix])
        shown = page.inner_text("#v-tau")
        assert float(shown.split()[0]) == pytest.approx(tau, rel=1e-3)
        # the error to 2 significant digits: within 5 %
        assert float(shown.split()[2]) == pytest.approx(float(maps["tau_err"].values[iy, ix]), rel=0.05)
        assert float(page.inner_text("#v-beta").split()[0]) == pytest.approx(float(maps["beta"].values[iy, ix]),
                                                                             rel=1e-3)
        assert page.inner_text("#v-status").startswith("0 ok")
        region = int(tree["regions"]["region"].values[iy, ix])
        assert page.inner_text("#v-region") == {1: "bulk", 2: "surface", 3: "crystal", 0: "vacuum"}[region]
        # the g2 points drawn are the pixel's finite g2 values, and an ok pixel has its fitted curve
        g = tree["g2"]["g2"].values[iy, ix]
        assert int(page.evaluate("document.getElementById('plot').dataset.points")) == int(np.isfinite(g).sum())
        assert page.evaluate("document.getElementById('plot').dataset.fitted") == "1"
        assert page.locator("#fit").count() == 1
    # a vacuum pixel: its status name, no fitted curve
    bad = np.argwhere(maps["status"].values != 0)[0]
    _click(page, bad[0], bad[1], ny, nx)
    code = int(maps["status"].values[bad[0], bad[1]])
    assert page.inner_text("#v-status").startswith(str(code))
    assert page.locator("#fit").count() == 0
    page.close()


def test_map_choice_overlay_and_link_to_a_pixel(results, browser, tmp_path):
    html = write_explore(results, tmp_path / "explore.html")
    page = _page(browser, html, "#pixel=20,30")
    assert page.evaluate("document.body.dataset.selected") == "20,30"
    # the curve the page decodes is the store's g2 of that pixel (to float16 precision)
    got = page.evaluate("Array.from({length: D.lag_s.length}, (_, j) => half(G[(20 * D.g2_shape[1] + 30) * "
                        "D.lag_s.length + j]))")
    want = xr.open_datatree(results, engine="zarr")["g2"]["g2"].values[20, 30]
    np.testing.assert_allclose(np.array(got, dtype=float), want.astype(np.float16).astype(float), rtol=0,
                               equal_nan=True)

    def pixels():
        return page.evaluate("Array.from(document.getElementById('map').getContext('2d')"
                             ".getImageData(0, 0, 56, 40).data)")

    tau_img = np.array(pixels()).reshape(40, 56, 4)
    page.select_option("#which", "region")
    reg_img = np.array(pixels()).reshape(40, 56, 4)
    assert (tau_img != reg_img).any()
    page.check("#overlay")
    over = np.array(pixels()).reshape(40, 56, 4)
    white = (over[..., :3] == 255).all(axis=-1)
    assert 20 < white.sum() < 40 * 56 // 2  # region boundaries drawn, not everything
    page.close()


def test_large_maps_embed_a_decimated_set_of_curves(results, tmp_path, browser):
    tree = xr.open_datatree(results, engine="zarr")
    data = page_data(tree, max_mb=0.05)
    assert data["g2_stride"] > 1 and data["g2_shape"][0] == -(-40 // data["g2_stride"])
    html = write_explore(results, tmp_path / "small.html", max_mb=0.05)
    page = _page(browser, html, "#pixel=21,33")
    assert "every" in page.inner_text("#note")
    k = data["g2_stride"]
    nearest = [int(np.floor(v / k + 0.5)) * k for v in (21, 33)]  # half way rounds up, as in the page
    assert page.evaluate("document.getElementById('plot').dataset.curve") == f"{nearest[0]},{nearest[1]}"
    # that curve is the embedded (float16) g2 of the nearest pixel
    g = tree["g2"]["g2"].values[nearest[0], nearest[1]]
    assert int(page.evaluate("document.getElementById('plot').dataset.points")) == int(np.isfinite(g).sum())
    page.close()
