"""Scan mode from the command line: a 5-D (time, y, x, ky, kx) array file -> `run --mode scan` -> tau, beta per q ring
at every probe position, equal to the analysis API called directly, following the truth's order of the positions;
the stored axis order from --axes, HDF5 via --dataset; missing calibrations and wrong shapes refused."""

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from ecm_dask import schema as S
from ecm_dask.analysis.stem import fit_rings, stem_scan_g2
from ecm_dask.cli import main
from ecm_dask.pipeline.scan import open_scan_results
from ecm_dask.synth.diffraction import DiffractionParams, synthetic_diffraction

CENTRE, CAL, FT = (7.5, 8.8), 0.55, 0.1
TAU_PEAK = [0.5 + 0.25 * k for k in range(6)]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scan")
    pos = [synthetic_diffraction(DiffractionParams(ny=16, nx=18, n_frames=1200, calibration=CAL, centre=CENTRE,
                                                   seed=20 + k, tau_peak_s=t)).intensity.values
           for k, t in enumerate(TAU_PEAK)]
    data = np.stack(pos).reshape(2, 3, 1200, 16, 18)  # (y, x, time, ky, kx)
    np.save(tmp / "scan.npy", np.moveaxis(data, 2, 0))  # (time, y, x, ky, kx)
    with h5py.File(tmp / "scan.h5", "w") as f:
        f["entry/data"] = data
    r = cli("run", tmp / "scan.npy", "-o", tmp / "r.zarr", "--mode", "scan", "--frame-time", FT, "--scan-step", 2.0,
            "--k-calibration", CAL, "--beam-centre", f"{CENTRE[0]},{CENTRE[1]}", "--q-bins", "4", "--quiet")
    assert r.exit_code == 0, r.output
    return tmp, np.moveaxis(data, 2, 0), r.output


def test_scan_maps_equal_the_analysis_api_and_follow_the_truth(scan):
    import xarray as xr

    tmp, data, out = scan
    root, cam = open_scan_results(tmp / "r.zarr")
    assert root[S.TAU].dims == (S.Y, S.X, S.Q) and root.sizes[S.Y] == 2 and root.sizes[S.X] == 3
    np.testing.assert_allclose(root[S.Y].values, [0, 2]) and np.testing.assert_allclose(root[S.X].values, [0, 2, 4])
    arr = xr.DataArray(data, dims=("time", "y", "x", "ky", "kx"),
                       attrs={"frame_time_s": FT, "k_calibration_nm-1_per_px": CAL, "beam_centre_px": list(CENTRE)})
    edges = list(root[S.Q_LO].values) + [float(root[S.Q_HI][-1])]
    direct = stem_scan_g2(arr, q_bins=edges, mask=cam["usable"].values, n_sectors=0).compute()
    np.testing.assert_allclose(root[S.G2].values, direct[S.G2].values, rtol=1e-6)
    fit = fit_rings(direct, errors="sigma")
    np.testing.assert_allclose(root[S.TAU].values, fit[S.TAU].values, rtol=1e-5)
    # the halo ring's tau grows with the positions' true tau_peak (0.5 .. 1.75 s), within 25 % of it
    halo = int(np.argmin(np.abs(root[S.Q_MEAN].values - 4.5)))
    tau = root[S.TAU].values[:, :, halo].ravel()
    assert (root[S.STATUS].values[:, :, halo] == 0).all()
    # frames 0.1 s apart sample a tau under 1 s too coarsely (rule: frame time <= 0.1 tau): flagged, not hidden
    quality = root[S.QUALITY].values[:, :, halo].ravel()
    np.testing.assert_array_equal(quality, np.where(FT > 0.1 * tau, 2, 0))
    assert 0 < (quality == 2).sum() < 6
    assert np.all(np.diff(tau) > 0), tau
    np.testing.assert_allclose(tau, TAU_PEAK, rtol=0.25)
    # I(q) per position: the ring mean of that position's time-mean pattern
    mean = data[:, 1, 2].astype(np.float64).mean(axis=0)
    sel = cam["ring"].values == halo
    assert root[S.INTENSITY].values[1, 2, halo] == pytest.approx(mean[sel].mean(), rel=1e-9)
    assert "reliable positions" in out
    assert (tmp / "r_report" / "tau_maps.png").is_file() and (tmp / "r_report" / "profiles.png").is_file()


def test_hdf5_with_another_axis_order_gives_the_same_maps(scan, tmp_path):
    tmp, _, _ = scan
    r = cli("run", tmp / "scan.h5", "-o", tmp_path / "h.zarr", "--mode", "scan", "--frame-time", FT, "--scan-step",
            2.0, "--k-calibration", CAL, "--beam-centre", f"{CENTRE[0]},{CENTRE[1]}", "--q-bins", "4",
            "--dataset", "/entry/data", "--axes", "y,x,time,ky,kx", "--no-report", "--quiet")
    assert r.exit_code == 0, r.output
    a, _ = open_scan_results(tmp / "r.zarr")
    b, _ = open_scan_results(tmp_path / "h.zarr")
    np.testing.assert_array_equal(a[S.G2].values, b[S.G2].values)
    np.testing.assert_array_equal(a[S.TAU].values, b[S.TAU].values)


def test_scan_inputs_and_options_refused_with_one_line(scan, tmp_path):
    tmp, _, _ = scan
    base = ["run", tmp / "scan.npy", "-o", tmp_path / "x.zarr", "--mode", "scan"]
    r = cli(*base, "--scan-step", 2, "--k-calibration", CAL)
    assert r.exit_code == 2 and "needs --frame-time" in r.output
    r = cli(*base, "--frame-time", FT, "--scan-step", 2, "--k-calibration", CAL, "--axes", "time,y,x,ky")
    assert r.exit_code == 2 and "--axes" in r.output
    r = cli(*base, "--frame-time", FT, "--scan-step", 2, "--k-calibration", CAL, "--surface-nm", 2)
    assert r.exit_code == 2 and "--surface-nm do(es) not apply to --mode scan" in r.output
    np.save(tmp_path / "three.npy", np.zeros((10, 4, 4), np.uint16))
    r = cli("run", tmp_path / "three.npy", "-o", tmp_path / "x.zarr", "--mode", "scan", "--frame-time", FT,
            "--scan-step", 2, "--k-calibration", CAL)
    assert r.exit_code == 2 and "three.npy" in r.output and "5-D" in r.output
    r = cli("run", tmp / "scan.h5", "-o", tmp_path / "x.zarr", "--mode", "scan", "--frame-time", FT,
            "--scan-step", 2, "--k-calibration", CAL)
    assert r.exit_code == 2 and "--dataset" in r.output
    r = cli("run", tmp / "scan.npy", "-o", tmp_path / "x.zarr", "--frame-time", FT)  # image mode
    assert r.exit_code == 2 and "--frame-time do(es) not apply to --mode image" in r.output
    assert not (tmp_path / "x.zarr").exists()


def test_info_report_and_export_know_scan_results(scan, tmp_path):
    tmp, _, _ = scan
    r = cli("info", tmp / "r.zarr")
    assert r.exit_code == 0 and "results of run --mode scan" in r.output and "2 x 3 positions" in r.output
    r = cli("report", tmp / "r.zarr", "-o", tmp_path / "rep")
    assert r.exit_code == 0 and (tmp_path / "rep" / "tau_maps.png").is_file()
    r = cli("export", tmp / "r.zarr", "-o", tmp_path / "x.h5")
    assert r.exit_code == 2 and "not supported" in r.output and not (tmp_path / "x.h5").exists()
