"""Axes (issue 13, item 6): an HDF5/EMD dataset stored as (y, x, time), or whose labels say axis 0 is a length or
an angle, is reordered from its labels or refused - never ingested with axis 0 as time; --axes says it explicitly."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from ecm_dask.errors import InputError
from ecm_dask.readers import open_source
from ecm_dask.readers.axes import classify, resolve_axes

RNG = np.random.default_rng(7)
TRUTH = RNG.integers(0, 1000, (12, 10, 14), dtype=np.uint16)  # (time, y, x), all sizes different


def _scaled(f, ds, i, name, units, n, step=1.0):
    scale = f.create_dataset(f"/scales/{name}", data=np.arange(n) * step)
    if units is not None:
        scale.attrs["units"] = units
    scale.make_scale(name)
    ds.dims[i].attach_scale(scale)
    ds.dims[i].label = name


def _h5(path, stored, labels):
    """Write TRUTH transposed to ``stored`` (a permutation of 'tyx') with (name, units) dimension scales."""
    perm = ["tyx".index(c) for c in stored]
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("/data/frames", data=np.transpose(TRUTH, perm))
        for i, lab in enumerate(labels):
            if lab is not None:
                _scaled(f, ds, i, lab[0], lab[1], ds.shape[i])
    return path


def test_labels_are_classified_from_units_then_names():
    assert classify("anything", "ms") == "time" and classify(None, "s") == "time"
    assert classify("y", "nm") == "length" and classify(None, "Å") == "length" and classify("x", None) == "length"
    assert classify("q", None) == "angle" and classify(None, "mrad") == "angle" and classify(None, "1/nm") == "angle"
    assert classify("frame", None) == "time" and classify(None, None) is None and classify("foo", "bar") is None


@pytest.mark.parametrize("stored", ["yxt", "txy", "xty", "tyx"])
def test_a_labelled_hdf5_dataset_is_read_as_time_y_x_frame_by_frame(tmp_path, stored):
    names = {"t": ("time", "s"), "y": ("y", "nm"), "x": ("x", "nm")}
    path = _h5(tmp_path / f"{stored}.h5", stored, [names[c] for c in stored])
    src = open_source(path)
    assert src.shape == TRUTH.shape
    for t in range(TRUTH.shape[0]):
        np.testing.assert_array_equal(src.read(t, t + 1)[0], TRUTH[t])
    np.testing.assert_array_equal(src.read(3, 9), TRUTH[3:9])
    assert src.metadata.frame_time_s == 1.0


@pytest.mark.parametrize("units, words", [("nm", "axis 0 is a length"), ("mrad", "axis 0 is an angle")])
def test_axis_zero_labelled_as_length_or_angle_is_refused(tmp_path, units, words):
    path = _h5(tmp_path / "a.h5", "yxt", [("y", units), ("x", units), None])
    with pytest.raises(InputError) as err:
        open_source(path)
    msg = str(err.value)
    assert words in msg and "a.h5:/data/frames" in msg and "--axes" in msg and f"[{units}]" in msg


def test_two_time_axes_are_refused(tmp_path):
    path = _h5(tmp_path / "b.h5", "tyx", [("time", "s"), ("t2", "ms"), None])
    with pytest.raises(InputError, match="2 time axes"):
        open_source(path)


def test_axes_option_on_unlabelled_data_and_against_labels(tmp_path, capsys):
    plain = _h5(tmp_path / "plain.h5", "yxt", [None, None, None])
    assert open_source(plain).shape == (10, 14, 12)  # unlabelled: axis 0 is time, as before
    src = open_source(plain, axes="yxt")
    np.testing.assert_array_equal(src.read(0, TRUTH.shape[0]), TRUTH)
    assert src.fingerprint()["axis_order"] == [2, 0, 1]  # a resume key of its own
    labelled = _h5(tmp_path / "lab.h5", "yxt", [("y", "nm"), ("x", "nm"), ("time", "s")])
    open_source(labelled, axes="tyx")  # explicit wins, but the disagreement is said
    assert "warning:" in capsys.readouterr().err
    with pytest.raises(InputError, match="letters t, y, x once each"):
        open_source(plain, axes="tyy")


def test_berkeley_emd_with_time_last_and_length_first(tmp_path):
    emd = _berkeley  # defined below

    good = emd(tmp_path / "good.emd", "yxt", [("y", "nm"), ("x", "nm"), ("time", "s")])
    src = open_source(good)
    np.testing.assert_array_equal(src.read(0, 12), TRUTH)
    assert src.metadata.frame_time_s == 0.5 and src.metadata.pixel_size_nm == 0.5
    bad = emd(tmp_path / "bad.emd", "yxt", [("y", "nm"), ("x", "nm"), ("z", "nm")])
    with pytest.raises(InputError, match="axis 0 is a length"):
        open_source(bad)
    np.testing.assert_array_equal(open_source(bad, axes="yxt").read(0, 12), TRUTH)


def test_resolve_axes_keeps_y_before_x_unless_names_say_otherwise():
    assert resolve_axes("f", [("x", "nm"), ("time", "s"), ("y", "nm")]) == (1, 2, 0)
    assert resolve_axes("f", [(None, None), (None, "s"), (None, None)]) == (1, 0, 2)
    assert resolve_axes("f", [(None, None), (None, None), (None, "s")], time_last_reverses=True) == (2, 1, 0)


def test_cli_ingest_with_axes_and_a_refused_file(tmp_path):
    import xarray as xr

    plain = _h5(tmp_path / "plain.h5", "yxt", [None, None, None])
    out = tmp_path / "s.zarr"
    r = subprocess.run([sys.executable, "-m", "ecm_dask", "ingest", str(plain), "-o", str(out), "--axes", "yxt",
                        "--frame-time", "0.5", "--pixel-size", "0.3", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(xr.open_zarr(out).intensity.values, TRUTH)
    bad = _h5(tmp_path / "bad.h5", "yxt", [("y", "nm"), ("x", "nm"), None])
    r = subprocess.run([sys.executable, "-m", "ecm_dask", "ingest", str(bad), "-o", str(tmp_path / "b.zarr"),
                        "--frame-time", "0.5", "--pixel-size", "0.3"], capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "axis 0 is a length" in lines[0] and "bad.h5" in lines[0]
    r = subprocess.run([sys.executable, "-m", "ecm_dask", "ingest", str(tmp_path / "x.npy"), "-o",
                        str(tmp_path / "c.zarr"), "--axes", "yxt"], capture_output=True, text=True)
    assert r.returncode == 2 and "error:" in r.stderr


# ------------------------------------------------------------------ ingest, messages, resume key, other label styles

def _one_line_input_error(call, *words):
    with pytest.raises(InputError) as err:
        call()
    msg = str(err.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def _berkeley(path, stored, dims):
    perm = ["tyx".index(c) for c in stored]
    with h5py.File(path, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        g = f.create_group("data/stack")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=np.transpose(TRUTH, perm))
        for i, (name, units) in enumerate(dims):
            d = g.create_dataset(f"dim{i + 1}", data=np.arange(g["data"].shape[i]) * 0.5)
            d.attrs["name"], d.attrs["units"] = name, units
    return path


def _ingested(src_path, out, **kw):
    import xarray as xr

    from ecm_dask.pipeline.ingest import ingest

    ingest(src_path, out, frame_time_s=kw.pop("frame_time_s", 0.5), pixel_size_nm=kw.pop("pixel_size_nm", 0.3),
           progress=False, **kw)
    return xr.open_zarr(out).intensity


@pytest.mark.parametrize("kind", ["hdf5", "emd"])
def test_a_labelled_y_x_t_file_is_ingested_as_the_truth_frame_by_frame(tmp_path, kind):
    if kind == "hdf5":
        path = _h5(tmp_path / "yxt.h5", "yxt", [("y", "nm"), ("x", "nm"), ("time", "ms")])
    else:
        path = _berkeley(tmp_path / "yxt.emd", "yxt", [("y", "nm"), ("x", "nm"), ("time", "s")])
    stored = h5py.File(path, "r")
    with stored:
        raw = stored["/data/frames" if kind == "hdf5" else "/data/stack/data"][()]
    assert raw.shape == (10, 14, 12)  # really stored as (y, x, t)
    da = _ingested(path, tmp_path / "s.zarr")
    assert da.shape == TRUTH.shape
    for t in range(TRUTH.shape[0]):
        np.testing.assert_array_equal(da[t].values, raw[:, :, t])
        np.testing.assert_array_equal(da[t].values, TRUTH[t])


def test_angle_axes_with_a_labelled_time_axis_are_a_diffraction_series(tmp_path):
    path = _h5(tmp_path / "q.h5", "yxt", [("qy", "mrad"), ("qx", "mrad"), ("frame", None)])
    src = open_source(path)
    assert src.axis_order == (2, 0, 1)
    np.testing.assert_array_equal(src.read(0, 12), TRUTH)


def test_every_refusal_is_one_line_naming_file_dataset_and_labels(tmp_path):
    nm = _h5(tmp_path / "nm.h5", "yxt", [("y", "nm"), None, None])
    _one_line_input_error(lambda: open_source(nm), "nm.h5:/data/frames", "axis 0: y [nm]", "--axes")
    mrad = _h5(tmp_path / "mrad.h5", "yxt", [("theta", "mrad"), ("x", "mrad"), None])
    _one_line_input_error(lambda: open_source(mrad), "mrad.h5:/data/frames", "an angle", "theta [mrad]", "--axes")
    two = _h5(tmp_path / "two.h5", "yxt", [("time", "s"), ("frame", None), None])
    _one_line_input_error(lambda: open_source(two), "two.h5:/data/frames", "2 time axes", "time [s]", "--axes")
    emd = _berkeley(tmp_path / "bad.emd", "yxt", [("y", "nm"), ("x", "nm"), ("z", "nm")])
    _one_line_input_error(lambda: open_source(emd), "bad.emd:/data/stack", "axis 2: z [nm]", "--axes")
    _one_line_input_error(lambda: open_source(nm, axes="ty"), "letters t, y, x once each")
    _one_line_input_error(lambda: open_source(nm, axes="tyxt"), "letters t, y, x once each")


def test_an_unlabelled_y_x_t_file_with_axes_yxt_ingests_the_right_frames(tmp_path):
    plain = _h5(tmp_path / "plain.h5", "yxt", [None, None, None])
    da = _ingested(plain, tmp_path / "s.zarr", axes="yxt")
    for t in range(TRUTH.shape[0]):
        np.testing.assert_array_equal(da[t].values, TRUTH[t])
    # without --axes: today's behaviour (axis 0 is time), so the frames are (x, t) slices
    assert open_source(plain).shape == (10, 14, 12)


def test_explicit_axes_win_over_labels_with_one_warning_line(tmp_path):
    path = _h5(tmp_path / "lab.h5", "tyx", [("time", "s"), ("x", "nm"), ("y", "nm")])
    np.testing.assert_array_equal(open_source(path).read(0, 12), TRUTH.transpose(0, 2, 1))  # labels: x before y
    said = []
    from ecm_dask.readers.axes import resolve_axes as resolve

    with h5py.File(path, "r") as f:
        from ecm_dask.readers.hdf5 import dimension_labels

        labels = dimension_labels(f["/data/frames"])
    assert resolve("lab.h5", labels, "tyx", warn=said.append) == (0, 1, 2)
    assert len(said) == 1 and "\n" not in said[0] and "--axes tyx" in said[0] and "x [nm]" in said[0]
    said.clear()
    assert resolve("lab.h5", labels, "txy", warn=said.append) == (0, 2, 1) and not said  # agrees: silent


def test_the_resume_key_holds_the_axis_order(tmp_path, monkeypatch):
    from ecm_dask.errors import StoreError
    from ecm_dask.readers.hdf5 import Hdf5Source

    square = tmp_path / "sq.h5"
    with h5py.File(square, "w") as f:
        f.create_dataset("d", data=TRUTH[:, :10, :10])
    a, b = open_source(square, axes="tyx"), open_source(square, axes="txy")
    assert a.shape == b.shape and a.fingerprint() != b.fingerprint()
    assert open_source(square).fingerprint() == a.fingerprint()  # the default order keeps its old key
    real = Hdf5Source._read

    def broken(self, start, stop):
        raise InputError("simulated read failure")

    monkeypatch.setattr(Hdf5Source, "_read", broken)
    out = tmp_path / "s.zarr"
    with pytest.raises(InputError, match="simulated"):
        _ingested(square, out, axes="txy")
    monkeypatch.setattr(Hdf5Source, "_read", real)
    with pytest.raises(StoreError, match="different input"):  # not mixed with frames read in another order
        _ingested(square, out, axes="tyx")
    np.testing.assert_array_equal(_ingested(square, out, axes="txy").values, TRUTH[:, :10, :10].transpose(0, 2, 1))


def test_nexus_axes_and_units_attributes_and_bare_dimension_labels(tmp_path):
    path = tmp_path / "nx.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("entry/data")
        g.attrs["NX_class"], g.attrs["signal"], g.attrs["axes"] = "NXdata", "frames", ["y", "x", "time"]
        g.create_dataset("frames", data=np.transpose(TRUTH, (1, 2, 0)))
        for name, units, n, step in (("y", "nm", 10, 0.2), ("x", "nm", 14, 0.2), ("time", "ms", 12, 5.0)):
            g.create_dataset(name, data=np.arange(n) * step).attrs["units"] = units
        bare = f.create_dataset("bare/frames", data=np.transpose(TRUTH, (1, 2, 0)))
        bare.dims[0].label, bare.dims[1].label, bare.dims[2].label = "y", "x", "t"
        bare.attrs["t_units"] = "s"
    src = open_source(path, dataset="entry/data/frames")
    np.testing.assert_array_equal(src.read(0, 12), TRUTH)
    assert src.metadata.frame_time_s == pytest.approx(5e-3) and src.metadata.pixel_size_nm == pytest.approx(0.2)
    src = open_source(path, dataset="bare/frames")
    np.testing.assert_array_equal(src.read(4, 7), TRUTH[4:7])


def test_velox_emd_stored_y_x_frame_is_read_frame_by_frame(tmp_path):
    from pathlib import Path

    velox = Path(__file__).resolve().parents[2] / "shared" / "data" / "vendor-files" / "fei_example_tem_stack.emd"
    if not velox.exists():
        pytest.skip(f"vendor test files not found in {velox.parent}")
    with h5py.File(velox, "r") as f:
        group = f["Data/Image"]
        raw = group[next(iter(group))]["Data"][()]
    assert raw.shape == (3, 3, 2)  # Velox stores (y, x, frame)
    src = open_source(velox)
    for t in range(2):
        np.testing.assert_array_equal(src.read(t, t + 1)[0], raw[:, :, t])
    np.testing.assert_array_equal(open_source(velox, axes="yxt").read(0, 2), src.read(0, 2))
    _one_line_input_error(lambda: open_source(velox, axes="tyx"), "fei_example_tem_stack.emd", "(y, x, frame)")


@pytest.mark.parametrize("bad", ["tyy", "ty", "tyxz", "abc"])
def test_cli_axes_is_validated_before_any_work(tmp_path, bad):
    from click.testing import CliRunner

    from ecm_dask.cli import main

    plain = _h5(tmp_path / "plain.h5", "yxt", [None, None, None])
    out = tmp_path / "s.zarr"
    r = CliRunner().invoke(main, ["ingest", str(plain), "-o", str(out), "--axes", bad, "--quiet"])
    assert r.exit_code == 2 and "letters t, y, x once each" in r.output and bad in r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()


def test_a_velox_file_forced_through_the_generic_hdf5_reader_is_still_y_x_frame():
    from pathlib import Path

    velox = Path(__file__).resolve().parents[2] / "shared" / "data" / "vendor-files" / "fei_example_tem_stack.emd"
    if not velox.exists():
        pytest.skip(f"vendor test files not found in {velox.parent}")
    src = open_source(velox, format="hdf5")
    assert src.format_name == "HDF5" and src.shape == (2, 3, 3)
    np.testing.assert_array_equal(src.read(0, 2), open_source(velox).read(0, 2))
