"""NeXus NXxpcs export (ecm_dask.interop.nexus): read back independently with h5py and checked against the results
store, the NXxpcs application definition (nexusformat's validator) and the keys pyXpcsViewer 1.2.2 reads."""

import os
import warnings

import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from ecm_dask import schema as S
from ecm_dask.cli import main
from ecm_dask.errors import ParameterError, StoreError
from ecm_dask.interop import nexus as NX
from ecm_dask.pipeline.run import run_pipeline
from ecm_dask.synth import SynthParams, write_synthetic_series


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nexus")
    series = write_synthetic_series(tmp / "s.zarr", SynthParams(ny=32, nx=40, n_frames=240, seed=5), progress=False)
    results = run_pipeline(series, tmp / "r.zarr", progress=False)
    out = NX.export_results(results, tmp / "out.nxs")
    return tmp, results, out


@pytest.fixture(scope="module")
def store(exported):
    """The results store read with plain xarray/zarr (not through the exporter's code path)."""
    _, results, _ = exported
    root = xr.open_zarr(results)
    g2 = xr.open_zarr(results, group=S.G2_GROUP)
    regions = xr.open_zarr(results, group=S.REGIONS_GROUP)
    return {
        "g2": np.asarray(g2[S.G2].transpose(S.Y, S.X, S.LAG).values, dtype=np.float64),
        "lag": np.asarray(g2[S.LAG].values),
        "lag_frames": np.asarray(g2["lag_frames"].values),
        "frame_time": float(g2.attrs[S.ATTR_FRAME_TIME]),
        "status": np.asarray(root[S.STATUS].transpose(S.Y, S.X).values),
        "tau": np.asarray(root[S.TAU].transpose(S.Y, S.X).values, dtype=np.float64),
        "region": np.asarray(regions[S.REGION].transpose(S.Y, S.X).values),
        "codes": {name: code for code, name in S.flag_names(regions[S.REGION].attrs).items()},
    }


def _names(ds) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]


def test_file_is_nxxpcs_and_validates(exported):
    from nexusformat.nexus import validate

    _, _, out = exported
    with h5py.File(out, "r") as f:
        assert f["entry/definition"][()].decode() == "NXxpcs"
        assert f["entry"].attrs["NX_class"] == "NXentry"
        assert f["entry/data"].attrs["NX_class"] == "NXdata"
        assert f["entry/data"].attrs["signal"] == "g2"
        assert f["entry/instrument/masks"].attrs["NX_class"] == "NXnote"
        assert f["entry/process"].attrs["NX_class"] == "NXprocess"
    level = validate.logger.level
    validate.logger.setLevel("CRITICAL")
    try:
        warnings, errors = validate.validate_application(str(out))
    finally:
        validate.logger.setLevel(level)
    assert errors == 0
    assert warnings <= 1  # only: scan_number is deprecated (written because the validator still requires it)


def test_roi_g2_is_the_mean_over_ok_pixels(exported, store):
    _, _, out = exported
    ok = store["status"] == S.STATUS_OK
    with h5py.File(out, "r") as f:
        names = _names(f["entry/data/roi_name"])
        g2 = f["entry/data/g2"][()]
        err = f["entry/data/g2_derr"][()]
        n_pix = f["entry/data/n_pixels"][()]
        assert "ok" in f["entry/data"].attrs["roi_average"]
    assert names == ["bulk", "surface", "crystal"]
    assert g2.shape == (store["lag"].size, 3)  # NXxpcs orientation (g2, q)
    for i, name in enumerate(names):
        sel = (store["region"] == store["codes"][name]) & ok
        assert n_pix[i] == sel.sum()
        curves = store["g2"][sel]  # (n, lag)
        if sel.sum() == 0:  # the crystal: every pixel static, none ok -> NaN, never a made-up curve
            assert np.isnan(g2[:, i]).all() and np.isnan(err[:, i]).all()
            continue
        np.testing.assert_allclose(g2[:, i], np.nanmean(curves, axis=0), rtol=1e-6)
        n = np.count_nonzero(np.isfinite(curves), axis=0)
        np.testing.assert_allclose(err[:, i], np.nanstd(curves, axis=0, ddof=1) / np.sqrt(n), rtol=1e-6)
    assert n_pix[0] > 50 and n_pix[1] > 20


def test_lags_in_seconds_and_frames(exported, store):
    _, _, out = exported
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["entry/data/delay_time"][()], store["lag"], rtol=1e-12)
        frames = f["entry/data/delay_difference"][()]
        assert np.issubdtype(frames.dtype, np.integer)
        np.testing.assert_array_equal(frames, store["lag_frames"])
        assert f["entry/instrument/detector_1/frame_time"][()] == store["frame_time"]
        assert f["entry/instrument/detector_1/frame_time"].attrs["units"] == "s"
        assert f["entry/data/delay_time"].attrs["units"] == "s"
    assert store["lag"][0] > 0  # lag 0 is not exported


def test_roi_map_is_the_region_map(exported, store):
    _, _, out = exported
    ok = store["status"] == S.STATUS_OK
    with h5py.File(out, "r") as f:
        dmap = f["entry/instrument/masks/dynamic_roi_map"][()]
        mask = f["entry/instrument/masks/mask"][()].astype(bool)
        names = _names(f["entry/data/roi_name"])
        roi_index = f["entry/data/roi_index"][()]
    expected = np.zeros_like(dmap)
    for k, name in zip(roi_index, names):
        expected[store["region"] == store["codes"][name]] = k
    np.testing.assert_array_equal(dmap, expected)  # 0: vacuum and excluded pixels, in no ROI
    np.testing.assert_array_equal(mask, ok & (expected > 0))


def test_bulk_fit_is_near_the_store_median(exported, store):
    # The ROI fit describes the pixel-averaged curve, a superposition of KWW decays whose tau spreads over about a
    # decade in this synthetic sample: its effective tau leans towards the slower pixels (a mean, not a median) and
    # its beta is lower.  Factor 2 bounds that; a unit or lag-axis mistake (x frame time, frames vs s) would not fit.
    _, _, out = exported
    ok = store["status"] == S.STATUS_OK
    median = np.nanmedian(store["tau"][(store["region"] == store["codes"]["bulk"]) & ok])
    with h5py.File(out, "r") as f:
        kf = f["entry/process/kww_fit"]
        tau, status, beta = kf["tau"][0], kf["status"][0], kf["beta"][0]
        assert kf["tau"].attrs["units"] == "s"
        assert kf["status"][2] == 6  # crystal: no ok pixel -> bad input, NaN parameters
        assert np.isnan(kf["tau"][2])
    assert status == 0
    assert 0.5 < tau / median < 2.0, (tau, median)
    assert 0.3 < beta < 1.5


def test_viewer_layout(exported, store):
    """The keys pyXpcsViewer 1.2.2 reads ('nexus' table of core/file_io/aps_8idi.py), with its orientations."""
    _, _, out = exported
    ny, nx = store["region"].shape
    n_lag = store["lag"].size
    with h5py.File(out, "r") as f:
        g2 = f["/xpcs/multitau/normalized_g2"]
        assert g2.shape == (n_lag, 3)  # (delay, roi): the viewer indexes g2[:, qbin]
        assert g2 == f["/entry/data/g2"]  # a hard link: the same HDF5 object, not a copy
        assert f["/xpcs/multitau/normalized_g2_err"] == f["/entry/data/g2_derr"]
        assert f["/xpcs/multitau/delay_list"] == f["/entry/data/delay_difference"]  # frames; x frame_time = s
        assert f["/xpcs/qmap/dynamic_roi_map"] == f["/entry/instrument/masks/dynamic_roi_map"]
        assert f["/xpcs/multitau/config/stride_frame"][()] == 1 and f["/xpcs/multitau/config/avg_frame"][()] == 1
        assert f["/entry/instrument/detector_1/frame_time"][()] == store["frame_time"]
        assert "count_time" in f["/entry/instrument/detector_1"]
        assert isinstance(f["/entry/start_time"][()], bytes)
        assert "incident_energy" in f["/entry/instrument/incident_beam"]
        qm = f["/xpcs/qmap"]
        for key in ("mask", "dynamic_roi_map", "static_roi_map"):
            assert qm[key].shape == (ny, nx), key
        for key in ("dynamic_v_list_dim0", "static_v_list_dim0", "dynamic_index_mapping", "static_index_mapping"):
            assert qm[key].shape == (3,), key
        for key in ("dynamic_v_list_dim1", "static_v_list_dim1"):
            assert qm[key].shape == (1,), key
        np.testing.assert_array_equal(qm["dynamic_num_pts"][()], [3, 1])
        np.testing.assert_array_equal(qm["dynamic_index_mapping"][()], [0, 1, 2])
        assert [v.decode() for v in qm["map_names"][()]] == ["roi", "phi"]
        assert len(qm["map_units"][()]) == 2
        for key in ("beam_center_x", "beam_center_y", "detector_distance", "pixel_size"):
            assert qm[key].shape == ()
        assert len(qm.attrs["hash"]) == 64
        assert f["/xpcs/temporal_mean/scattering_2d"].shape == (1, ny, nx)
        assert f["/xpcs/temporal_mean/scattering_1d"].shape == (1, 3)
        assert f["/xpcs/temporal_mean/scattering_1d_segments"].shape == (1, 3)
        assert f["/xpcs/spatial_mean/intensity_vs_time"].shape[0] == 2


def test_pyxpcsviewer_reads_it(exported, tmp_path):
    """Opened with the viewer's own reader (headless: pyxpcsviewer.core imports no Qt)."""
    xpcs_file = pytest.importorskip("pyxpcsviewer.core.xpcs_file", reason="pip install --no-deps xpcs-viewer "
                                    "scikit-learn to run the viewer's reader on the export")
    _, _, out = exported
    with h5py.File(out, "r") as f:
        g2, err, lag = f["entry/data/g2"][()], f["entry/data/g2_derr"][()], f["entry/data/delay_time"][()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the viewer's nanmean over the crystal's all-NaN ROI
        xf = xpcs_file.XpcsFile(str(out))
    assert xf.atype == ("Multitau",)
    q, t_el, vg2, verr, labels = xf.get_g2_data()
    np.testing.assert_array_equal(vg2, g2)
    np.testing.assert_allclose(t_el, lag, rtol=1e-12)
    np.testing.assert_array_equal(verr[:, :2], err[:, :2])  # the viewer replaces all-NaN error columns
    assert len(labels) == 3 and xf.dqmap.shape == (32, 40)


def _closed_form(n_roi=2, n_lag=6):
    lag = 0.01 * 2.0 ** np.arange(n_lag)
    tau = np.array([0.05, 0.2])[:n_roi]
    g2 = 1.0 + 0.3 * np.exp(-2.0 * (lag[None, :] / tau[:, None]) ** 0.8)
    err = 0.001 * (1 + np.arange(n_roi * n_lag).reshape(n_roi, n_lag))
    roi_map = np.full((4, 5), -1)
    roi_map[:2, :] = 0
    roi_map[2:, 1:4] = 1
    return dict(g2=g2, g2_err=err, lag_s=lag, frame_time_s=0.01, roi_names=["inner", "outer"], roi_map=roi_map)


def test_write_nxxpcs_closed_form(tmp_path):
    arrays = _closed_form()
    q = np.array([1.5, 2.5])
    fit = {"tau": [0.05, 0.2], "tau_err": [0.001, 0.002], "beta": [0.8, 0.8], "status": [0, 0]}
    out = NX.write_nxxpcs(tmp_path / "c.nxs", **arrays, q=q, q_unit="1/nm", fit=fit,
                          metadata={S.ATTR_TEMPERATURE: 250.0, S.ATTR_MATERIAL: "PdSi", "start_time":
                                    "2024-05-01T10:00:00+00:00", "note": {"a": 1}})
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["entry/data/g2"][()], arrays["g2"].T)
        np.testing.assert_array_equal(f["entry/data/g2_derr"][()], arrays["g2_err"].T)
        np.testing.assert_array_equal(f["entry/data/g2_errors"][()], arrays["g2_err"].T)
        np.testing.assert_array_equal(f["entry/data/delay_time"][()], arrays["lag_s"])
        np.testing.assert_array_equal(f["entry/data/delay_difference"][()], [1, 2, 4, 8, 16, 32])
        np.testing.assert_array_equal(f["entry/instrument/masks/dynamic_roi_map"][()], arrays["roi_map"] + 1)
        np.testing.assert_array_equal(f["entry/instrument/masks/dynamic_q_list"][()], q)
        assert f["entry/instrument/masks/dynamic_q_list"].attrs["units"] == "1/nm"
        assert f["xpcs/qmap/dynamic_v_list_dim0"] == f["entry/instrument/masks/dynamic_q_list"]
        assert [v.decode() for v in f["xpcs/qmap/map_names"][()]] == ["q", "phi"]
        assert f["xpcs/qmap/map_units"][()][0] == b"1/nm"
        np.testing.assert_array_equal(f["entry/data/n_pixels"][()], [10, 6])
        assert _names(f["entry/data/roi_name"]) == ["inner", "outer"]
        assert f["entry/sample/temperature"][()] == 250.0 and f["entry/sample/temperature"].attrs["units"] == "degC"
        assert f["entry/sample/name"][()] == b"PdSi"
        assert f["entry/start_time"][()] == b"2024-05-01T10:00:00+00:00"
        kf = f["entry/process/kww_fit"]
        np.testing.assert_array_equal(kf["tau"][()], [0.05, 0.2])
        np.testing.assert_array_equal(kf["tau_errors"][()], [0.001, 0.002])
        assert np.isnan(kf["contrast"][()]).all()  # not given: NaN, not invented
        assert f["entry/ecm_dask"].attrs["note"] == '{"a": 1}'
        assert f.attrs["file_name"] == str(out.resolve())


def test_write_nxxpcs_without_roi_map(tmp_path):
    arrays = _closed_form()
    del arrays["roi_map"]
    out = NX.write_nxxpcs(tmp_path / "n.nxs", **arrays)
    with h5py.File(out, "r") as f:
        assert "masks" not in f["entry/instrument"]  # no invented pixel map in the NXxpcs part
        assert "placeholder" in f["xpcs/qmap/dynamic_roi_map"].attrs
        np.testing.assert_array_equal(f["xpcs/qmap/dynamic_roi_map"][()], [[1, 2]])
        assert [v.decode() for v in f["xpcs/qmap/map_names"][()]] == ["roi", "phi"]


@pytest.mark.parametrize("change, match", [
    (dict(g2_err=np.zeros((2, 5))), "g2_err has shape"),
    (dict(lag_s=np.array([0.0, 0.02, 0.04, 0.08, 0.16, 0.32])), "lag_s must be > 0"),
    (dict(lag_s=np.array([0.01, 0.02, 0.02, 0.08, 0.16, 0.32])), "strictly increasing"),
    (dict(roi_names=["only one"]), "roi_names has 1 name"),
    (dict(roi_map=np.full((4, 5), 2)), "roi_map values must be ROI indices 0..1"),
    (dict(q=[1.0]), "q has shape"),
    (dict(fit={"beta": [1, 1]}), "fit needs at least 'tau'"),
    (dict(fit={"tau": [1, 1], "tauu": [1, 1]}), "unknown key"),
])
def test_write_nxxpcs_rejects_bad_input(tmp_path, change, match):
    arrays = {**_closed_form(), **change}
    with pytest.raises(ParameterError, match=match):
        NX.write_nxxpcs(tmp_path / "bad.nxs", **arrays)
    assert os.listdir(tmp_path) == []


def test_refuses_to_overwrite(tmp_path):
    target = tmp_path / "x.nxs"
    target.write_bytes(b"keep me")
    with pytest.raises(StoreError, match=str(target)):
        NX.write_nxxpcs(target, **_closed_form())
    assert target.read_bytes() == b"keep me"
    NX.write_nxxpcs(target, **_closed_form(), overwrite=True)
    with h5py.File(target, "r") as f:
        assert f["entry/definition"][()] == b"NXxpcs"
    assert sorted(os.listdir(tmp_path)) == ["x.nxs"]


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk pulled out")

    monkeypatch.setattr(NX, "_write_viewer_layout", boom)  # the NeXus part is written, the rest fails
    with pytest.raises(RuntimeError, match="disk pulled out"):
        NX.write_nxxpcs(tmp_path / "t.nxs", **_closed_form())
    assert os.listdir(tmp_path) == []  # neither the target nor the temporary file
    old = tmp_path / "old.nxs"
    old.write_bytes(b"previous export")
    with pytest.raises(RuntimeError):
        NX.write_nxxpcs(old, **_closed_form(), overwrite=True)
    assert old.read_bytes() == b"previous export" and os.listdir(tmp_path) == ["old.nxs"]


def test_cli_export(exported):
    tmp, results, _ = exported
    out = tmp / "cli.hdf"
    runner = CliRunner()
    res = runner.invoke(main, ["export", str(results), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "3 ROI(s) x 39 lag(s)" in res.output and "bulk:" in res.output and f"wrote {out}" in res.output
    assert "no pixel with status ok" in res.output  # the crystal is reported, not hidden
    with h5py.File(out, "r") as f:
        assert f["entry/definition"][()] == b"NXxpcs"
    res = runner.invoke(main, ["export", str(results), "-o", str(out)])
    assert res.exit_code == 2 and "already exists" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["export", str(results), "-o", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["export", str(tmp / "missing.zarr"), "-o", str(tmp / "m.nxs")])
    assert res.exit_code == 2 and "does not exist" in res.output
