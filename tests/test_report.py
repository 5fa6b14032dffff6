"""Figures (ecm_dask.plot) and the report of a results store (ecm-dask report)."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from matplotlib.colors import LogNorm, to_rgba

from ecm_dask import plot as P
from ecm_dask import schema as S
from ecm_dask.cli import main
from ecm_dask.errors import InputError, StoreError
from ecm_dask.kernels.kww import FIT_OK, PARAMS, kww_model
from ecm_dask.pipeline import report as R
from ecm_dask.pipeline.run import run_pipeline
from ecm_dask.synth import SynthParams, write_synthetic_series

PX = 0.33


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    series = write_synthetic_series(d / "s.zarr", SynthParams(ny=32, nx=48, n_frames=800, pixel_size_nm=PX, seed=3),
                                    tile=32, progress=False)
    results = run_pipeline(series, d / "results.zarr", progress=False)
    report = R.write_report(results, d / "report")
    tree = xr.open_datatree(results, engine="zarr")
    return {"dir": d, "series": series, "results": results, "report": report, "tree": tree,
            "maps": tree.to_dataset().load(), "g2": tree["g2"].to_dataset().load()}


def _gid(artists, gid):
    return [a for a in artists if a.get_gid() == gid]


# ------------------------------------------------------------------------------------------ pure helpers
def test_nice_length_is_the_longest_1_2_5_length_within_a_fifth():
    for span, expected in ((15.84, 2.0), (120.0, 20.0), (26.0, 5.0), (10.0, 2.0), (0.9, 0.1), (5000.0, 1000.0)):
        assert P.nice_length(span) == expected
    for span in np.geomspace(0.01, 1e4, 97):
        v = P.nice_length(span)
        mantissa = v / 10 ** np.floor(np.log10(v) + 1e-9)
        assert v <= 0.2 * span * (1 + 1e-12) and np.isclose(mantissa, [1, 2, 5]).any()
        assert 2.5 * v > 0.2 * span  # the next 1-2-5 step would be too long
    assert P.format_length(2.0) == "2 nm" and P.format_length(0.5) == "0.5 nm" and P.format_length(2000) == "2 µm"


def test_robust_limits_are_percentiles_of_the_finite_values():
    rng = np.random.default_rng(0)
    v = rng.lognormal(1.0, 1.5, 5000)
    v[:50] = np.nan
    v[50:60] = np.inf
    v[60:70] = -3.0  # ignored by the log limits only
    fin = v[np.isfinite(v)]
    np.testing.assert_allclose(P.robust_limits(v), np.percentile(fin, [1, 99]), rtol=1e-12)
    pos = fin[fin > 0]
    np.testing.assert_allclose(P.robust_limits(v, (5, 95), log=True), 10 ** np.percentile(np.log10(pos), [5, 95]),
                               rtol=1e-12)
    norm = P.color_norm(v, log=True)
    assert isinstance(norm, LogNorm)
    np.testing.assert_allclose((norm.vmin, norm.vmax), 10 ** np.percentile(np.log10(pos), [1, 99]), rtol=1e-12)
    assert P.color_norm(v, vmin=0.5, vmax=7).vmin == 0.5
    assert P.robust_limits(np.full(10, 4.0)) == pytest.approx((3.8, 4.2))
    assert P.robust_limits(np.full(10, 4.0), log=True) == pytest.approx((4 / 1.1, 4 * 1.1))
    assert P.robust_limits([np.nan, -1.0], log=True) == (1.0, 10.0)


# ------------------------------------------------------------------------------------------------ figures
def test_frame_scale_bar_length_matches_its_label_in_image_pixels():
    img = xr.DataArray(np.random.default_rng(1).random((32, 48)), dims=(S.Y, S.X),
                       coords={S.Y: np.arange(32) * PX, S.X: np.arange(48) * PX}, name="frame")
    for requested, label in ((None, "2 nm"), (5.0, "5 nm")):
        fig = P.plot_frame(img, scale_bar_nm=requested)
        ax = fig.axes[0]
        (bar,) = _gid(ax.patches, "scale_bar")
        (text,) = _gid(ax.texts, "scale_bar_label")
        assert text.get_text() == label
        value = float(label.split()[0])
        assert bar.get_width() == pytest.approx(value)
        fig.canvas.draw()  # on screen: the bar spans label / pixel size image pixels
        to_screen = ax.transData.transform
        bar_px = to_screen((bar.get_x() + bar.get_width(), 0))[0] - to_screen((bar.get_x(), 0))[0]
        pixel_px = to_screen((PX, 0))[0] - to_screen((0, 0))[0]
        assert bar_px / pixel_px == pytest.approx(value / PX, rel=1e-9)
    with pytest.raises(InputError, match="scale_bar_nm"):
        P.plot_frame(img, scale_bar_nm=100.0)
    with pytest.raises(InputError, match=r"dims \(y, x\)"):
        P.plot_frame(img.rename(y="row"))


def test_map_colours_log_for_tau_robust_limits_and_grey_nan(store):
    maps = store["maps"]
    tau = P.ok_only(maps, S.TAU)
    fig = P.plot_map(tau)
    im = fig.axes[0].images[0]
    v = tau.values[np.isfinite(tau.values) & (tau.values > 0)]
    assert isinstance(im.norm, LogNorm)
    np.testing.assert_allclose((im.norm.vmin, im.norm.vmax), 10 ** np.percentile(np.log10(v), [1, 99]), rtol=1e-6)
    data = im.get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(data), ~np.isfinite(tau.values))
    assert im.cmap.get_bad() == pytest.approx(to_rgba(P.NAN_COLOUR))
    assert fig.axes[1].get_ylabel() == "τ (s)"  # the colour bar, units from the attributes
    beta = maps[S.BETA]
    im = P.plot_map(beta).axes[0].images[0]
    assert not isinstance(im.norm, LogNorm)
    np.testing.assert_allclose((im.norm.vmin, im.norm.vmax), np.nanpercentile(beta.values, [1, 99]), rtol=1e-6)
    # plot_maps: tau (log) and beta side by side, pixels whose fit is not ok masked
    fig = P.plot_maps(maps)
    ok = maps[S.STATUS].values == FIT_OK
    for ax, name in zip(fig.axes[:2], (S.TAU, S.BETA)):
        shown = ~np.ma.getmaskarray(ax.images[0].get_array())
        np.testing.assert_array_equal(shown, ok & np.isfinite(maps[name].values))
    assert isinstance(fig.axes[0].images[0].norm, LogNorm)


def test_g2_fit_lines_are_the_kww_model_with_the_map_parameters(store):
    maps, g2 = store["maps"], store["g2"]
    pixels = R.choose_pixels(maps)
    assert len(pixels) == 4 and all(maps[S.STATUS].values[p] == FIT_OK for p in pixels)
    assert all(maps[S.QUALITY].values[p] == 0 for p in pixels), "unflagged pixels are preferred"
    nm = [(float(maps[S.Y][iy]) + 0.1, float(maps[S.X][ix]) - 0.1) for iy, ix in pixels]  # nearest pixel centre
    ax = P.plot_g2_fits(g2, maps, nm).axes[0]
    lag = g2[S.LAG].values
    for iy, ix in pixels:
        (line,) = _gid(ax.lines, f"fit:{iy},{ix}")
        params = [float(maps[p][iy, ix]) for p in PARAMS]
        t = line.get_xdata()
        assert t[0] == pytest.approx(lag[lag > 0][0]) and t[-1] == pytest.approx(lag[-1])
        np.testing.assert_allclose(line.get_ydata(), kww_model(t, params)[0], rtol=1e-12)
        (pts,) = _gid(ax.lines, f"g2:{iy},{ix}")
        np.testing.assert_array_equal(pts.get_xdata(), lag[lag > 0])
        np.testing.assert_allclose(pts.get_ydata(), g2[S.G2].values[iy, ix][lag > 0], rtol=1e-7)
    labels = ax.get_legend_handles_labels()[1]
    tau0 = float(maps[S.TAU][pixels[0]])
    assert f"τ={tau0:.3g} s" in labels[0]
    # error bars when the g2 dataset carries them
    err = g2.assign({S.G2_ERR: xr.full_like(g2[S.G2], 0.004)})
    ax = P.plot_g2_fits(err, maps, pixels[:1], units="pixel").axes[0]
    segments = ax.collections[0].get_segments()
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segments], 0.008, rtol=1e-6)
    with pytest.raises(InputError, match=r"pixel \(y=500 nm, x=1 nm\) is outside the map"):
        P.plot_g2_fits(g2, maps, [(500.0, 1.0)])


def test_histogram_counts_and_medians_of_the_ok_pixels(store):
    maps = store["maps"]
    region = xr.open_zarr(store["series"], group=S.TRUTH_GROUP)[S.TRUTH_REGION].load()
    fig = P.plot_histograms(maps, regions=region, bins=30)
    ok = maps[S.STATUS].values == FIT_OK
    for ax, values in zip(fig.axes, (np.log10(maps[S.TAU].values), maps[S.BETA].values)):
        v = values[ok & np.isfinite(values)]
        counts, edges = np.histogram(v, bins=30)
        bars = _gid(ax.patches, "hist")
        np.testing.assert_array_equal([b.get_height() for b in bars], counts)
        np.testing.assert_allclose([b.get_x() for b in bars], edges[:-1], rtol=1e-6, atol=1e-9)
        (med,) = _gid(ax.lines, "median")
        assert med.get_xdata()[0] == pytest.approx(np.median(v))
        bulk = values[ok & np.isfinite(values) & (region.values == S.REGION_BULK)]
        (outline,) = _gid(ax.patches, "hist:bulk")
        steps = outline.get_xy()[1:-1:2, 1]  # step outline: the height of each bin, twice
        np.testing.assert_array_equal(steps[: len(counts)], np.histogram(bulk, bins=edges)[0])
        (med,) = _gid(ax.lines, "median:bulk")
        assert med.get_xdata()[0] == pytest.approx(np.median(bulk))


# ------------------------------------------------------------------------------------------------- report
def test_report_files_and_summary_numbers_match_the_store(store):
    out = store["report"].parent
    assert store["report"] == out / "report.md"
    for name in (*R.FIGURES, *R.SUMMARIES):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    maps = store["maps"]
    summary = json.loads((out / "summary.json").read_text())
    status = maps[S.STATUS].values
    for row in summary["status"]:
        assert row["pixels"] == int((status == row["code"]).sum()) and row["name"] == S.RESULT_STATUS[row["code"]]
    assert sum(r["pixels"] for r in summary["status"]) == status.size
    ok = status == FIT_OK
    tau, beta = maps[S.TAU].values[ok], maps[S.BETA].values[ok]
    assert summary["tau_s"]["median"] == pytest.approx(float(np.median(tau)), rel=1e-6)
    q25, q75 = np.percentile(beta, [25, 75])
    assert summary["beta"]["iqr"] == pytest.approx(q75 - q25, rel=1e-6)
    quality = maps[S.QUALITY].values[ok]
    assert summary["quality_of_ok_pixels"]["any flag"] == pytest.approx(np.mean(quality != 0))
    shift = store["tree"]["drift"][S.SHIFT].values
    rms = np.sqrt(np.mean(shift ** 2, axis=0))
    assert summary["drift"]["rms_px"]["x"] == pytest.approx(rms[1])
    assert summary["drift"]["rms_nm"]["y"] == pytest.approx(rms[0] * PX)
    assert summary["n_frames"] == 800 and summary["frame_time_s"] == 0.5 and summary["pixel_size_nm"] == PX
    # the page shows the same numbers
    md = (out / "report.md").read_text()
    for code, name in S.RESULT_STATUS.items():
        assert f"| {code} | {name} | {int((status == code).sum())} |" in md
    assert re.search(rf"\| tau \(s\) \| {ok.sum()} \| {float(np.median(tau)):.4g} \|", md)
    assert "| frames | 800 |" in md and "| pixel size (nm) | 0.33 |" in md
    page = (out / "report.html").read_text()
    srcs = re.findall(r"<img src='([^']+)'", page)
    assert sorted(srcs) == sorted(R.FIGURES) and all((out / s).is_file() for s in srcs)


def test_report_shows_each_region_and_surface_vs_bulk_with_intervals(store):
    out = store["report"].parent
    summary = json.loads((out / "summary.json").read_text())
    tree, maps = store["tree"], store["maps"]
    region = tree["regions"][S.REGION].values
    ok = maps[S.STATUS].values == FIT_OK
    rows = {r["region"]: r for r in summary["regions"]}
    md = (out / "report.md").read_text()
    for code in (S.REGION_BULK, S.REGION_SURFACE):
        name = S.REGION_NAMES[code]
        tau = maps[S.TAU].values[ok & (region == code)]
        r = rows[name]
        assert r["pixels"] == int((region == code).sum()) and r["ok"] == tau.size
        assert r["tau_median_s"][0] == pytest.approx(10 ** np.median(np.log10(tau.astype(float))), rel=1e-5)
        assert r["tau_median_s"][1] <= r["tau_median_s"][0] <= r["tau_median_s"][2]
        assert sum(r["status"].values()) == r["pixels"]
        assert f"| {name} | {r['pixels']} | {r['ok']} | {r['tau_median_s'][0]:.3g} [" in md
    sb = summary["surface_bulk"]
    assert sb["tau_ratio"] == pytest.approx(rows["surface"]["tau_median_s"][0] / rows["bulk"]["tau_median_s"][0],
                                            rel=1e-5)
    assert sb["tau_ratio_ci"][0] <= sb["tau_ratio"] <= sb["tau_ratio_ci"][1]
    assert "| median τ surface / bulk |" in md
    # the region figure colours every pixel by its region and its status
    fig = P.plot_regions(tree["regions"].to_dataset(), maps[S.STATUS])
    images = {im.get_gid(): im for ax in fig.axes for im in ax.get_images()}
    np.testing.assert_array_equal(images["regions"].get_array(), region)
    drawn = np.asarray(images["status"].get_array())
    for k, (_, members, _) in enumerate(P.STATUS_CLASSES):
        assert np.all(drawn[np.isin(maps[S.STATUS].values, members)] == k)
    # the CLI line of the run
    text = R.region_summary(store["results"])
    assert f"surface/bulk median tau ratio {sb['tau_ratio']:.3f}" in text


def test_report_without_the_series_uses_the_g2_mean_intensity(store, tmp_path):
    import zarr

    results = tmp_path / "moved.zarr"
    shutil.copytree(store["results"], results)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        group = zarr.open_group(str(results), mode="r+")
        group.attrs["run_config"] = {**group.attrs["run_config"], "series": str(tmp_path / "gone.zarr")}
        zarr.consolidate_metadata(str(results))
    page = R.write_report(results, tmp_path / "rep", pixels=[(5.0, 10.0)])
    summary = json.loads((page.parent / "summary.json").read_text())
    assert "gone.zarr not found" in summary["series"] and "frame.png" in summary["figures"]
    assert "mean intensity from /g2" in page.read_text()
    assert summary["n_frames"] == 800 and summary["pixel_size_nm"] == pytest.approx(PX)
    with pytest.raises(InputError, match="nowhere.zarr does not exist"):
        R.write_report(results, tmp_path / "rep2", series_path=tmp_path / "nowhere.zarr")


def test_interrupted_report_leaves_nothing_half_written(store, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("killed while drawing")

    out = tmp_path / "rep"
    monkeypatch.setattr(P, "plot_histograms", boom)
    with pytest.raises(RuntimeError, match="killed"):
        R.write_report(store["results"], out, pixels=[(5.0, 10.0)])
    assert not out.exists() and list(tmp_path.iterdir()) == []
    shutil.copytree(store["report"].parent, out)  # an earlier report stays as it was
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RuntimeError, match="killed"):
        R.write_report(store["results"], out, pixels=[(5.0, 10.0)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_not_a_results_store_is_a_clear_error(store, tmp_path):
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "none.zarr")) + " does not exist"):
        R.write_report(tmp_path / "none.zarr", tmp_path / "r")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "folder")) + " is not a results store"):
        R.write_report(tmp_path / "folder", tmp_path / "r")
    with pytest.raises(InputError, match="it is a series store"):
        R.write_report(store["series"], tmp_path / "r")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(StoreError, match="is not a folder"):
        R.write_report(store["results"], tmp_path / "file.txt")
    assert not (tmp_path / "r").exists()


def test_report_command_line(store, tmp_path):
    runner = CliRunner()
    out = tmp_path / "figs"
    r = runner.invoke(main, ["report", str(store["results"]), "-o", str(out), "--pixel", "5,10", "--pixel",
                             "3.3,12.5", "--series", str(store["series"])])
    assert r.exit_code == 0, r.output
    assert f"wrote {out / 'report.md'}" in r.output
    assert all((out / name).is_file() for name in (*R.FIGURES, *R.SUMMARIES))
    shown = json.loads((out / "summary.json").read_text())["g2_pixels"]
    assert [(p["row"], p["column"]) for p in shown] == [(15, 30), (10, 38)]  # nearest centres, 0.33 nm pixels
    assert shown[0]["y_nm"] == pytest.approx(15 * PX) and shown[0]["tau_s"] == pytest.approx(
        float(store["maps"][S.TAU][15, 30]), nan_ok=True)
    assert "| 4.95 | 9.9 |" in (out / "report.md").read_text()
    r = runner.invoke(main, ["report", str(tmp_path / "nothing.zarr"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "nothing.zarr does not exist" in r.output
    r = runner.invoke(main, ["report", str(store["results"]), "-o", str(tmp_path / "x"), "--pixel", "5"])
    assert r.exit_code == 2 and "expected Y,X in nm" in r.output
