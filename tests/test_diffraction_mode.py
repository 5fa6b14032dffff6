"""Diffraction mode from the command line: raw patterns (.npy) -> `ingest --k-calibration` -> `run --mode
diffraction` -> tau(q), beta(q), I(q) against the synthetic truth and against the analysis API called directly;
the beam centre found from the mean pattern; options of the wrong mode and wrong inputs refused with one line."""

import json

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from ecm_dask import schema as S
from ecm_dask.analysis.stem import diffraction_g2, fit_rings
from ecm_dask.cli import main
from ecm_dask.kernels.rings import estimate_centre, ring_misfit
from ecm_dask.pipeline.diffraction import open_diffraction
from ecm_dask.synth.diffraction import DiffractionParams, mean_pattern, ring_truth, synthetic_diffraction

P = DiffractionParams(ny=48, nx=48, centre=(23.4, 24.3), calibration=0.2, n_frames=2000, seed=0)


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff")
    ds = synthetic_diffraction(P)
    np.save(tmp / "patterns.npy", ds[S.INTENSITY].values)
    r = cli("ingest", tmp / "patterns.npy", "-o", tmp / "series.zarr", "--frame-time", P.frame_time_s,
            "--k-calibration", P.calibration, "--quiet")
    assert r.exit_code == 0, r.output
    r = cli("run", tmp / "series.zarr", "-o", tmp / "r.zarr", "--mode", "diffraction", "--quiet")
    assert r.exit_code == 0, r.output
    return tmp, ds, r.output


@pytest.mark.parametrize("centre", [(23.4, 24.3), (10.2, 37.9), (40.6, 5.5)])
def test_beam_centre_found_from_the_mean_pattern(centre):
    p = DiffractionParams(ny=48, nx=48, centre=centre, calibration=0.2, n_frames=600, seed=3)
    q, mean, stop = mean_pattern(p)
    assert np.allclose(estimate_centre(mean, ~stop), centre, atol=0.05)  # noise-free pattern
    noisy = synthetic_diffraction(p)[S.INTENSITY].mean(S.TIME).values
    for mask in (~stop, None):  # the beam stop masked, or left in (dark pixels, symmetric about the centre too)
        assert np.hypot(*np.subtract(estimate_centre(noisy, mask), centre)) < 0.25
    # the misfit it minimises is smallest at the truth among nearby centres
    m = ~stop
    here = ring_misfit(mean, m, centre)
    assert all(ring_misfit(mean, m, (centre[0] + dy, centre[1] + dx)) > here
               for dy, dx in ((0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5)))


def test_tau_beta_and_intensity_of_q_match_the_truth(run):
    tmp, ds, out = run
    root, cam = open_diffraction(tmp / "r.zarr")
    assert root.attrs["beam_centre_from"] == "estimated from the mean pattern"
    assert np.allclose(root.attrs[S.ATTR_BEAM_CENTRE], P.centre, atol=0.1)
    assert (root[S.STATUS].values == 0).all() and (root[S.QUALITY].values == 0).all()  # 50 tau, 40 frames per tau
    tau_true, beta_true = ring_truth(P, cam["ring"].values, root.sizes[S.Q], root[S.LAG].values)
    big = root[S.N_PIXELS].values >= 60
    rel = root[S.TAU].values / tau_true - 1
    assert np.abs(rel[big]).max() < 0.12, rel  # 2000 frames, 50-150 tau per ring
    assert -0.08 < np.median(rel) < 0.02  # the finite-series estimator bias: a few % low
    pull_b = (root[S.BETA].values - beta_true) / root["beta_err"].values
    assert np.mean(np.abs(pull_b) < 3) >= 0.85 and abs(np.mean(pull_b)) < 1.0
    # the slowest ring is at the amorphous halo, where the truth peaks
    assert abs(float(root[S.Q_MEAN][int(np.nanargmax(root[S.TAU].values))]) - P.q0) <= 0.75
    # I(q): the ring mean of the expected counts, within its error bars
    q, mean, stop = mean_pattern(P)
    lab = cam["ring"].values
    truth_i = np.array([mean[lab == r].mean() for r in range(root.sizes[S.Q])])
    pull_i = (root[S.INTENSITY].values - truth_i) / root[S.INTENSITY_ERR].values
    assert np.mean(np.abs(pull_i) < 3) >= 0.9 and abs(np.mean(pull_i)) < 1.0, pull_i
    # the beam stop is never used; every used pixel is in a ring
    assert not cam["usable"].values[stop].any()
    assert ((lab >= 0) <= cam["usable"].values).all()
    assert "ok / ok" in out and "estimated from the mean pattern" in out


def test_same_as_the_analysis_api_called_directly(run):
    tmp, ds, _ = run
    root, cam = open_diffraction(tmp / "r.zarr")
    usable = cam["usable"].values
    centre = tuple(root.attrs[S.ATTR_BEAM_CENTRE])
    edges = list(root[S.Q_LO].values) + [float(root[S.Q_HI].values[-1])]
    direct = diffraction_g2(ds, centre=centre, calibration=P.calibration, q_bins=edges, mask=usable,
                            n_sectors=8).compute()
    np.testing.assert_allclose(root[S.G2].values, direct[S.G2].values, rtol=1e-6)
    np.testing.assert_array_equal(root[S.N_PIXELS].values, direct[S.N_PIXELS].values)
    fit = fit_rings(direct)
    np.testing.assert_allclose(root[S.TAU].values, fit[S.TAU].values, rtol=1e-5)
    np.testing.assert_allclose(root["tau_err"].values, fit["tau_err"].values, rtol=1e-4)
    # I(q): the plain ring mean of the time-mean pattern, by a direct loop
    mean = ds[S.INTENSITY].values.mean(axis=0)
    for r in (0, 7, 15):
        sel = cam["ring"].values == r
        assert root[S.INTENSITY].values[r] == pytest.approx(mean[sel].mean(), rel=1e-9)
        assert root[S.INTENSITY_ERR].values[r] == pytest.approx(mean[sel].std(ddof=1) / np.sqrt(sel.sum()), rel=1e-9)


def test_report_and_summary_hold_the_store_numbers(run):
    tmp, _, _ = run
    root, _ = open_diffraction(tmp / "r.zarr")
    rep = tmp / "r_report"
    for name in ("profiles.png", "g2_rings.png", "pattern.png", "report.md", "report.html"):
        assert (rep / name).stat().st_size > 1000, name
    summary = json.loads((rep / "summary.json").read_text())
    assert len(summary["rings"]) == root.sizes[S.Q]
    np.testing.assert_allclose([r["tau_s"] for r in summary["rings"]], root[S.TAU].values, rtol=1e-12)
    np.testing.assert_allclose([r["intensity"] for r in summary["rings"]], root[S.INTENSITY].values, rtol=1e-12)
    # the results open as a plain DataTree too
    tree = xr.open_datatree(tmp / "r.zarr", engine="zarr")
    assert tree.attrs[S.ATTR_SERIES_MODE] == S.MODE_DIFFRACTION and "camera" in tree.children


def test_given_centre_edges_and_reliability_flags(run, tmp_path):
    tmp, _, _ = run
    out = tmp_path / "r2.zarr"
    r = cli("run", tmp / "series.zarr", "-o", out, "--mode", "diffraction", "--beam-centre", "23.4,24.3",
            "--q-bins", "1,2,3,4,5,6", "--max-lag", "5", "--no-report", "--quiet")
    assert r.exit_code == 0, r.output
    root, cam = open_diffraction(out)
    assert root.attrs[S.ATTR_BEAM_CENTRE] == [23.4, 24.3] and root.attrs["beam_centre_from"] == "given"
    np.testing.assert_allclose(list(root[S.Q_LO].values) + [float(root[S.Q_HI][-1])], [1, 2, 3, 4, 5, 6])
    assert not (tmp_path / "r2_report").exists()
    # a series 20 s long (200 frames) holds < 40 mean tau of the slow rings: flagged, not passed as reliable
    short = tmp_path / "short.npy"
    np.save(short, synthetic_diffraction(P, n_frames=200)[S.INTENSITY].values)
    assert cli("ingest", short, "-o", tmp_path / "short.zarr", "--frame-time", 0.1, "--k-calibration", 0.2,
               "--quiet").exit_code == 0
    r = cli("run", tmp_path / "short.zarr", "-o", tmp_path / "rs.zarr", "--mode", "diffraction", "--q-bins", "6",
            "--no-report", "--quiet")
    assert r.exit_code == 0, r.output
    rs, _ = open_diffraction(tmp_path / "rs.zarr")
    fitted = rs[S.STATUS].values == 0
    assert fitted.any() and (rs[S.QUALITY].values[fitted] & 1).all()  # series_shorter_than_40_mean_tau


def test_wrong_mode_options_and_inputs_are_refused(run, tmp_path):
    tmp, _, _ = run
    series = tmp / "series.zarr"
    r = cli("run", series, "-o", tmp_path / "a.zarr", "--mode", "diffraction", "--reference-roi", "0:10,0:10")
    assert r.exit_code == 2 and "--reference-roi do(es) not apply to --mode diffraction" in r.output
    r = cli("run", series, "-o", tmp_path / "a.zarr", "--q-bins", "8")
    assert r.exit_code == 2 and "--q-bins do(es) not apply to --mode image" in r.output
    r = cli("run", series, "-o", tmp_path / "a.zarr")  # the image pipeline on a diffraction series
    assert r.exit_code == 2 and "is a diffraction series" in r.output and "--mode diffraction" in r.output
    np.save(tmp_path / "bad_mask.npy", np.ones((10, 10), bool))
    r = cli("run", series, "-o", tmp_path / "a.zarr", "--mode", "diffraction", "--mask", tmp_path / "bad_mask.npy")
    assert r.exit_code == 2 and "bad_mask.npy" in r.output and "(10, 10)" in r.output
    r = cli("run", series, "-o", tmp_path / "a.zarr", "--mode", "diffraction", "--beam-centre", "12")
    assert r.exit_code == 2 and "--beam-centre" in r.output
    r = cli("run", series, "-o", tmp_path / "a.zarr", "--mode", "diffraction", "--q-bins", "3,2,1")
    assert r.exit_code == 2 and "--q-bins" in r.output
    r = cli("ingest", tmp / "patterns.npy", "-o", tmp_path / "b.zarr", "--frame-time", 0.1, "--k-calibration", 0.2,
            "--pixel-size", 0.3)
    assert r.exit_code == 2 and "exclude each other" in r.output
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_report_and_info_commands_know_diffraction_results(run, tmp_path):
    tmp, _, _ = run
    r = cli("report", tmp / "r.zarr", "-o", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "profiles.png").is_file() and (tmp_path / "rep" / "summary.json").is_file()
    r = cli("info", tmp / "r.zarr")
    assert r.exit_code == 0 and "results of run --mode diffraction" in r.output and "beam centre" in r.output
    r = cli("report", tmp / "r.zarr", "-o", tmp_path / "rep2", "--counts-per-electron", "3")
    assert r.exit_code == 2 and "apply to image-mode results" in r.output


def test_nexus_export_of_the_rings(run, tmp_path):
    import h5py

    tmp, _, _ = run
    root, cam = open_diffraction(tmp / "r.zarr")
    r = cli("export", tmp / "r.zarr", "-o", tmp_path / "rings.h5")
    assert r.exit_code == 0, r.output
    keep = root[S.LAG].values > 0
    with h5py.File(tmp_path / "rings.h5", "r") as f:
        assert f["entry/definition"][()].decode() == "NXxpcs"
        g2 = f["entry/data/g2"][()]  # (lag, roi)
        np.testing.assert_allclose(g2.T, root[S.G2].values[:, keep], rtol=1e-6)
        np.testing.assert_allclose(f["entry/data/delay_time"][()], root[S.LAG].values[keep], rtol=1e-12)
        np.testing.assert_allclose(f["entry/data/q"][()], root[S.Q_MEAN].values, rtol=1e-12)
        rmap = f["entry/instrument/masks/dynamic_roi_map"][()]
        np.testing.assert_array_equal(rmap, cam["ring"].values + 1)  # NXxpcs: 1-based, 0 = no ring
        np.testing.assert_allclose(f["entry/process/kww_fit/tau"][()], root[S.TAU].values, rtol=1e-12)
        np.testing.assert_array_equal(f["xpcs/multitau/normalized_g2"][()], g2)


def test_a_file_calibrated_in_reciprocal_length_ingests_as_a_diffraction_series(tmp_path):
    import h5py

    from ecm_dask.store.series import open_series

    frames = synthetic_diffraction(P, n_frames=50)[S.INTENSITY].values
    with h5py.File(tmp_path / "dp.h5", "w") as f:
        ds = f.create_dataset("/data/frames", data=np.moveaxis(frames, 0, -1))  # stored (ky, kx, frame)
        for i, (name, units, step) in enumerate([("qy", "1/Å", 0.02), ("qx", "1/Å", 0.02), ("frame", None, 1.0)]):
            scale = f.create_dataset(f"/scales/{name}", data=np.arange(ds.shape[i]) * step)
            if units:
                scale.attrs["units"] = units
            scale.make_scale(name)
            ds.dims[i].attach_scale(scale)
    r = cli("ingest", tmp_path / "dp.h5", "-o", tmp_path / "dp.zarr", "--frame-time", 0.1, "--quiet")
    assert r.exit_code == 0, r.output
    assert "diffraction, " in r.output and "0.2 nm^-1/pixel" in r.output
    series = open_series(tmp_path / "dp.zarr")
    assert series.attrs[S.ATTR_SERIES_MODE] == S.MODE_DIFFRACTION
    assert series.attrs[S.ATTR_K_CALIBRATION] == pytest.approx(0.2)  # 0.02 1/Å = 0.2 1/nm
    np.testing.assert_array_equal(series[S.INTENSITY].values, frames)
    # --pixel-size wins: the same file as an image series
    r = cli("ingest", tmp_path / "dp.h5", "-o", tmp_path / "img.zarr", "--frame-time", 0.1, "--pixel-size", 0.3,
            "--quiet")
    assert r.exit_code == 0 and S.ATTR_SERIES_MODE not in open_series(tmp_path / "img.zarr").attrs
