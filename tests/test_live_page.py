"""The live page in a real browser (Debian's Chromium, headless): after a watch, the served page shows the verdicts
and per-region numbers of the result store and its figures load."""

import json
import os
import re
import shutil
import subprocess
import urllib.request

import numpy as np
import pytest
import xarray as xr

from ecm_dask.live.camera import reference_box, simulate_camera, synthetic_frames
from ecm_dask.live.page import serve
from ecm_dask.live.watch import live_dir, watch

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI must install Debian's chromium (.ci/run) for the live page tests")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(tmp_path, *args):
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    frames, p = synthetic_frames(200, 48, 56, seed=7, drift_px=(1.5, -2.0), drift_walk_px=0.2)
    simulate_camera(tmp / "cam", frames, rate=1e4, pause_s=0)
    lines = []
    run = watch(tmp / "cam", tmp / "live.zarr", frame_time_s=p.frame_time_s, pixel_size_nm=p.pixel_size_nm,
                update_every=1e3, poll_s=0.02, stop_after=200, reference_roi=reference_box(p, 5), max_shift=5,
                serve=0, echo=lines.append)
    server = serve(live_dir(tmp / "live.zarr") / "page")
    yield {"run": run, "tmp": tmp, "lines": lines, "url": f"http://127.0.0.1:{server.server_address[1]}/"}
    server.shutdown()
    server.server_close()


def test_the_watch_announced_a_loopback_page_and_serves_its_status(watched):
    assert any(line.startswith("live page: http://127.0.0.1:") for line in watched["lines"])
    status = json.loads(urllib.request.urlopen(watched["url"] + "status.json", timeout=10).read())
    assert status["frames"] == 200 and status["update"] == watched["run"].updates
    assert set(status["figures"]) == {"tau.png", "histograms.png", "drift.png"}


def test_page_in_headless_chromium_shows_the_verdicts_numbers_and_figures(watched, tmp_path):
    res = _chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", watched["url"])
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    run = watched["run"]
    for name in ("bulk", "surface", "drift"):
        text = run.verdicts[name]["verdict"].replace(">", "&gt;")
        assert text in dom, name
    assert re.search(r'id="frames">200<', dom)
    # the figures were fetched and decoded by the browser
    for fig in ("tau", "histograms", "drift"):
        assert re.search(rf'id="fig-{fig}"[^>]*data-loaded="1"', dom), fig
    # the table's median tau per region is the median of the result store's ok, artefact-free pixels
    results = xr.open_datatree(watched["tmp"] / "live.zarr", engine="zarr")
    maps = results.to_dataset()
    region = results["regions"]["region"].values
    ok = (maps["status"].values == 0) & (results["artefacts"]["artefact"].values == 0)
    for code, name in ((1, "bulk"), (2, "surface")):
        med = float(np.median(maps["tau"].values[ok & (region == code)]))
        row = re.search(rf"<tr><td>{name}</td><td>(\d+)</td><td>([0-9.e+-]+)</td>", dom)
        assert row, name
        assert int(row.group(1)) == int((ok & (region == code)).sum())
        assert float(row.group(2)) == pytest.approx(med, rel=2e-3)


def test_screenshot_shows_the_tau_map(watched, tmp_path):
    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, "--window-size=1200,1000", f"--screenshot={shot}", watched["url"])
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    import matplotlib.image as mpimg

    img = (mpimg.imread(shot)[..., :3] * 255).astype(np.uint8)
    assert img.shape[:2] == (1000, 1200)
    # the tau map sits below the text on the left: many distinct colours of the viridis map (dark blue .. yellow)
    panel = img[250:800, 0:600].reshape(-1, 3)
    colours = np.unique(panel, axis=0)
    assert len(colours) > 300
    yellowish = (panel[:, 0] > 180) & (panel[:, 1] > 180) & (panel[:, 2] < 100)
    bluish = (panel[:, 2] > 100) & (panel[:, 0] < 90) & (panel[:, 1] < 90)
    assert yellowish.sum() > 50 and bluish.sum() > 50
