"""Tests of the instrument readers (ecm_dask.readers): round trips through each format's own library,
real vendor files checked against rosettasciio / mrcfile, and every bad-input path."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import pytest
import tifffile
import zarr

import ecm_dask.readers._common  # noqa: F401  (cache cleared in the pickling tests)
from ecm_dask import readers
from ecm_dask.errors import InputError
from ecm_dask.readers import FORMATS, FrameSource, SourceMetadata, open_source
from ecm_dask.readers._common import _natural_key

VENDOR = Path(__file__).resolve().parents[2] / "shared" / "data" / "vendor-files"

DTYPES = [np.uint16, np.float32]


# --------------------------------------------------------------------------------------------- helpers

def make_series(dtype, shape=(7, 5, 6), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    return rng.normal(100.0, 15.0, size=shape).astype(dtype)


def snapshot(*paths) -> dict:
    """sha256 and mtime of every file under ``paths`` (to prove readers never modify inputs)."""
    out = {}
    for p in paths:
        p = Path(p)
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            out[str(q)] = (hashlib.sha256(q.read_bytes()).hexdigest(), q.stat().st_mtime_ns)
    return out


def check_source(src: FrameSource, truth: np.ndarray, a: int = 1, b: int = 4) -> None:
    """Shape, dtype, partial reads, pickling and to_dask against the known array."""
    assert isinstance(src, FrameSource)
    assert src.shape == truth.shape
    assert src.dtype == truth.dtype.newbyteorder("=")
    assert src.dtype.isnative
    assert src.n_frames == truth.shape[0] and src.frame_shape == truth.shape[1:]
    got = src.read(a, b)
    assert got.shape == (b - a, *truth.shape[1:])
    assert got.dtype == src.dtype
    np.testing.assert_array_equal(got, truth[a:b])
    np.testing.assert_array_equal(src.read(0, 1), truth[:1])
    np.testing.assert_array_equal(src.read(truth.shape[0] - 1, truth.shape[0]), truth[-1:])
    assert src.read(2, 2).shape == (0, *truth.shape[1:])
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone.read(0, 2), truth[:2])
    lazy = src.to_dask(frames_per_chunk=3)
    assert lazy.shape == truth.shape and lazy.dtype == src.dtype
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), truth)
    np.testing.assert_array_equal(lazy[::-1].compute(scheduler="threads"), truth[::-1])
    assert isinstance(src.metadata, SourceMetadata)
    import json

    json.dumps(src.metadata.extra)  # extra must be JSON-serialisable


def assert_input_error(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------------ API

def test_formats_and_exports():
    assert set(FORMATS) == {"tiff", "tiff-folder", "dm", "emd", "hdf5", "mrc", "npy", "zarr", "hspy"}
    assert all(isinstance(v, str) and v and "\n" not in v for v in FORMATS.values())


def test_natural_sort_key():
    names = ["frame_10.tif", "frame_2.tif", "frame_1.tif", "Frame_11.tif", "frame_100.tif", "frame_9.tif"]
    assert sorted(names, key=_natural_key) == ["frame_1.tif", "frame_2.tif", "frame_9.tif", "frame_10.tif",
                                               "Frame_11.tif", "frame_100.tif"]


# -------------------------------------------------------------------------------------------- TIFF

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("unit, per_unit_nm", [("nm", 1.0), ("micron", 1000.0), ("\\u00B5m", 1000.0)])
def test_tiff_imagej_round_trip(tmp_path, dtype, unit, per_unit_nm):
    data = make_series(dtype)
    pixel_in_unit = 0.25 if unit == "nm" else 0.0025
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / pixel_in_unit, 1 / pixel_in_unit),
                     metadata={"axes": "TYX", "finterval": 0.05, "unit": unit})
    before = snapshot(path)
    src = open_source(path)
    check_source(src, data)
    assert src.metadata.frame_time_s == pytest.approx(0.05)
    assert src.metadata.pixel_size_nm == pytest.approx(pixel_in_unit * per_unit_nm, rel=1e-6)
    assert src.format_name == "multi-page TIFF"
    assert snapshot(path) == before


def test_tiff_without_calibration_and_big_endian(tmp_path):
    data = make_series(np.uint16).astype(">u2")
    path = tmp_path / "plain.tiff"
    tifffile.imwrite(path, data, photometric="minisblack", byteorder=">")
    src = open_source(str(path))
    check_source(src, data)
    assert src.metadata.frame_time_s is None and src.metadata.pixel_size_nm is None


def test_tiff_compressed_pages(tmp_path):
    data = make_series(np.float32, shape=(9, 8, 5))
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(path, data, photometric="minisblack", compression="zlib")
    check_source(open_source(path, format="tiff"), data, 3, 8)


def test_tiff_rgb_is_rejected(tmp_path):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.zeros((4, 5, 6, 3), dtype=np.uint8), photometric="rgb")
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "rgb.tif", "grayscale")


def test_tiff_absurd_frame_time_is_unknown(tmp_path):
    data = make_series(np.uint16)
    path = tmp_path / "zero.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TYX", "finterval": 0.0,
                                                                                  "unit": "nm"})
    src = open_source(path)
    assert src.metadata.frame_time_s is None
    assert src.metadata.pixel_size_nm == pytest.approx(0.5)
    assert src.metadata.extra["imagej_finterval"] == 0.0


def write_frames(folder: Path, data: np.ndarray, names) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    order = list(range(len(data)))
    random.Random(1).shuffle(order)  # write in random order: file times must not decide the order
    for i in order:
        p = folder / names[i]
        tifffile.imwrite(p, data[i], imagej=True, resolution=(1 / 0.3, 1 / 0.3),
                         metadata={"unit": "nm", "finterval": 0.2})
        paths.append(p)
    return paths


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiff_folder_natural_order(tmp_path, dtype):
    data = make_series(dtype, shape=(12, 4, 3))
    data[:, 0, 0] = np.arange(12)  # frame index in the first pixel
    folder = tmp_path / "frames"
    files = write_frames(folder, data, [f"frame_{i + 1}.tif" for i in range(12)])
    (folder / "notes.txt").write_text("not a frame")
    before = snapshot(folder)
    src = open_source(folder)
    assert [Path(p).name for p in src.paths] == [f"frame_{i + 1}.tif" for i in range(12)]
    check_source(src, data, 2, 11)
    assert src.metadata.pixel_size_nm == pytest.approx(0.3, rel=1e-6)
    assert src.metadata.frame_time_s == pytest.approx(0.2)
    assert src.format_name == "TIFF folder"
    # the same frames given as a shuffled list of files
    listed = open_source([str(p) for p in files])
    np.testing.assert_array_equal(listed.read(0, 12), data)
    assert snapshot(folder) == before


def test_tiff_folder_frame_changed_or_damaged_after_opening_names_file_and_frame(tmp_path):
    data = make_series(np.uint16, shape=(5, 4, 3))
    write_frames(tmp_path / "frames", data, [f"frame_{i}.tif" for i in range(5)])
    src = open_source(tmp_path / "frames")
    tifffile.imwrite(tmp_path / "frames" / "frame_2.tif", data[2].T.copy())  # same size, other shape (3 x 4): not silently reshaped
    with pytest.raises(InputError, match=r"frame_2\.tif: frame 2 has shape \(3, 4\), expected \(4, 3\)"):
        src.read(0, 5)
    (tmp_path / "frames" / "frame_3.tif").write_bytes(b"II*\x00 not a tiff any more")
    with pytest.raises(InputError, match=r"frame_3\.tif: .*frame 3 of .*frames \(5 files\)"):
        src.read(3, 5)
    np.testing.assert_array_equal(src.read(0, 2), data[:2])


def test_tiff_folder_of_one_multipage_file(tmp_path):
    data = make_series(np.uint16)
    (tmp_path / "f").mkdir()
    tifffile.imwrite(tmp_path / "f" / "movie.tif", data, photometric="minisblack")
    check_source(open_source(tmp_path / "f"), data)


# -------------------------------------------------------------------------------------------- HDF5

@pytest.mark.parametrize("dtype", DTYPES)
def test_hdf5_round_trip(tmp_path, dtype):
    data = make_series(dtype)
    path = tmp_path / "series.h5"
    with h5py.File(path, "w") as f:
        f["meta/time"] = np.arange(7.0)
        f["meta/dark"] = np.zeros((5, 6))
        ds = f.create_dataset("exp/frames", data=data, chunks=(2, 5, 6), compression="gzip")
        ds.attrs["frame_time_s"] = 0.02
        f["exp"].attrs["pixel_size_nm"] = 0.7
        f.attrs["instrument"] = "TEAM 0.5"
    before = snapshot(path)
    auto = open_source(path)  # the only 3-D dataset
    check_source(auto, data)
    assert auto.metadata.frame_time_s == pytest.approx(0.02)
    assert auto.metadata.pixel_size_nm == pytest.approx(0.7)
    assert auto.metadata.instrument == "TEAM 0.5"
    named = open_source(path, dataset="exp/frames")
    np.testing.assert_array_equal(named.read(0, 7), data)
    assert snapshot(path) == before


def test_hdf5_ambiguous_and_missing_dataset(tmp_path):
    path = tmp_path / "two.hdf5"
    with h5py.File(path, "w") as f:
        f["a"] = make_series(np.uint16)
        f["b/c"] = make_series(np.uint16, seed=1)
        f["flat"] = np.zeros((4, 4))
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, str(path), "/a", "/b/c", "--dataset")
    with pytest.raises(InputError) as e:
        open_source(path, dataset="nope")
    assert_input_error(e, str(path), "nope", "/a")
    with pytest.raises(InputError) as e:
        open_source(path, dataset="flat")
    assert_input_error(e, str(path), "single 2-D image")
    np.testing.assert_array_equal(open_source(path, dataset="/b/c").read(0, 7), make_series(np.uint16, seed=1))


def test_hdf5_absurd_calibration_is_unknown(tmp_path):
    path = tmp_path / "neg.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", data=make_series(np.uint16))
        ds.attrs["pixel_size_nm"] = -1.0
        ds.attrs["frame_time_s"] = 0.0
    src = open_source(path)
    assert src.metadata.pixel_size_nm is None and src.metadata.frame_time_s is None
    assert "pixel_size_nm_raw" in src.metadata.extra


# --------------------------------------------------------------------------------------------- EMD

def write_berkeley_emd(path, data, frame_time_s, pixel_nm):
    nt, ny, nx = data.shape
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        grp = f.create_group("data/movie")
        grp.attrs["emd_group_type"] = 1
        grp.create_dataset("data", data=data, chunks=(1, ny, nx))
        for i, (name, units, step, n) in enumerate([("time", "s", frame_time_s, nt), ("y", "nm", pixel_nm, ny),
                                                    ("x", "nm", pixel_nm, nx)]):
            dim = grp.create_dataset(f"dim{i + 1}", data=np.arange(n) * step)
            dim.attrs["name"] = np.bytes_(name)
            dim.attrs["units"] = np.bytes_(units)
        f.create_group("microscope").attrs["name"] = "TEAM I"


@pytest.mark.parametrize("dtype", DTYPES)
def test_berkeley_emd_round_trip(tmp_path, dtype):
    data = make_series(dtype)
    path = tmp_path / "movie.emd"
    write_berkeley_emd(path, data, 0.0125, 0.42)
    before = snapshot(path)
    src = open_source(path)
    assert src.format_name == "Berkeley EMD"
    check_source(src, data)
    assert src.metadata.frame_time_s == pytest.approx(0.0125)
    assert src.metadata.pixel_size_nm == pytest.approx(0.42)
    assert src.metadata.instrument == "TEAM I"
    assert snapshot(path) == before


def test_berkeley_emd_written_by_rosettasciio(tmp_path):
    """rosettasciio stores the transposed array (x, y, time); reading must agree with rosettasciio's own reader."""
    import rsciio.emd

    data = make_series(np.int16, shape=(4, 3, 5))
    axes = [{"name": "time", "size": 4, "scale": 0.5, "offset": 0.0, "units": "s", "navigate": True},
            {"name": "y", "size": 3, "scale": 2.0, "offset": 0.0, "units": "nm", "navigate": False},
            {"name": "x", "size": 5, "scale": 2.0, "offset": 0.0, "units": "nm", "navigate": False}]
    signal = {"data": data, "axes": axes, "metadata": {"General": {"title": "movie"}, "Signal": {}},
              "original_metadata": {}}
    path = tmp_path / "rsciio.emd"
    rsciio.emd.file_writer(str(path), signal)
    reference = rsciio.emd.file_reader(str(path))[0]["data"]
    np.testing.assert_array_equal(reference, data)
    src = open_source(path)
    check_source(src, np.asarray(reference), 0, 3)
    assert src.metadata.frame_time_s == pytest.approx(0.5)
    assert src.metadata.pixel_size_nm == pytest.approx(2.0)


def test_berkeley_emd_ambiguous_groups(tmp_path):
    path = tmp_path / "two.emd"
    write_berkeley_emd(path, make_series(np.uint16), 1.0, 1.0)
    with h5py.File(path, "a") as f:
        g = f.create_group("data/other")
        g.attrs["emd_group_type"] = 1
        g["data"] = make_series(np.uint16, seed=3)
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, str(path), "/data/movie", "/data/other")
    np.testing.assert_array_equal(open_source(path, dataset="/data/other").read(0, 7), make_series(np.uint16, seed=3))


# --------------------------------------------------------------------------------------------- MRC

@pytest.mark.parametrize("dtype", DTYPES)
def test_mrc_round_trip(tmp_path, dtype):
    data = make_series(dtype)
    path = tmp_path / "stack.mrc"
    with mrcfile.new(path) as m:
        m.set_data(data)
        m.voxel_size = 2.5  # Å
    before = snapshot(path)
    src = open_source(path)
    check_source(src, data)
    assert src.metadata.pixel_size_nm == pytest.approx(0.25)
    assert src.metadata.frame_time_s is None
    assert snapshot(path) == before


def test_mrc_without_voxel_size_is_uncalibrated(tmp_path):
    data = make_series(np.uint16)
    path = tmp_path / "raw.mrcs"
    with mrcfile.new(path) as m:
        m.set_data(data)
    src = open_source(path)
    assert src.metadata.pixel_size_nm is None
    check_source(src, data)


# --------------------------------------------------------------------------------------------- NPY

@pytest.mark.parametrize("dtype", DTYPES)
def test_npy_round_trip(tmp_path, dtype):
    data = make_series(dtype)
    path = tmp_path / "a.npy"
    np.save(path, data)
    before = snapshot(path)
    src = open_source(path)
    check_source(src, data)
    assert src.metadata.frame_time_s is None and src.metadata.pixel_size_nm is None
    assert snapshot(path) == before


def test_npy_fortran_and_big_endian(tmp_path):
    data = make_series(np.uint16)
    np.save(tmp_path / "f.npy", np.asfortranarray(data))
    check_source(open_source(tmp_path / "f.npy"), data)
    np.save(tmp_path / "b.npy", data.astype(">u2"))
    check_source(open_source(tmp_path / "b.npy"), data)


def test_npy_reads_do_not_grow_memory(tmp_path):
    psutil = pytest.importorskip("psutil")
    data = np.ones((160, 256, 256), dtype=np.uint16)  # 20 MiB
    path = tmp_path / "big.npy"
    np.save(path, data)
    del data
    src = open_source(path)
    proc = psutil.Process()
    src.read(0, 8)
    base = proc.memory_info().rss
    peak = base
    for start in range(0, 160, 8):
        block = src.read(start, start + 8)
        assert block[0, 0, 0] == 1
        del block
        peak = max(peak, proc.memory_info().rss)
    assert peak - base < 8 << 20  # far below the 20 MiB of the file: maps are dropped after each read


# -------------------------------------------------------------------------------------------- Zarr

@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_zarr_array_round_trip(tmp_path, dtype, zarr_format):
    data = make_series(dtype)
    path = tmp_path / "a.zarr"
    arr = zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=(2, 5, 6), zarr_format=zarr_format)
    arr[:] = data
    arr.attrs.update({"frame_time_s": 0.1, "pixel_size_nm": 0.35})
    before = snapshot(path)
    src = open_source(path)
    check_source(src, data)
    assert src.metadata.frame_time_s == pytest.approx(0.1)
    assert src.metadata.pixel_size_nm == pytest.approx(0.35)
    assert snapshot(path) == before


def test_zarr_group(tmp_path):
    data = make_series(np.uint16)
    path = tmp_path / "series.store"  # no .zarr extension: detected from zarr.json
    g = zarr.open_group(str(path), mode="w")
    g.attrs.update({"frame_time_s": 0.5, "pixel_size_nm": 0.2, "instrument": "FEI Titan"})
    g.create_array("intensity", shape=data.shape, dtype=data.dtype, chunks=(3, 5, 6))[:] = data
    g.create_array("time", shape=(7,), dtype="f8")[:] = np.arange(7.0)
    g.create_array("raw/other", shape=data.shape, dtype=data.dtype)[:] = data[::-1]
    src = open_source(path)
    check_source(src, data)
    assert (src.metadata.frame_time_s, src.metadata.pixel_size_nm, src.metadata.instrument) == (0.5, 0.2, "FEI Titan")
    np.testing.assert_array_equal(open_source(path, dataset="raw/other").read(0, 7), data[::-1])
    with pytest.raises(InputError) as e:
        open_source(path, dataset="missing")
    assert_input_error(e, str(path), "missing", "intensity")


def test_zarr_group_ambiguous(tmp_path):
    path = tmp_path / "g.zarr"
    g = zarr.open_group(str(path), mode="w")
    g.create_array("a", shape=(3, 2, 2), dtype="u2")
    g.create_array("b", shape=(3, 2, 2), dtype="u2")
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, str(path), "a (3, 2, 2)", "b (3, 2, 2)", "--dataset")


def test_sources_hold_no_open_files(tmp_path):
    psutil = pytest.importorskip("psutil")
    data = make_series(np.uint16)
    paths = [tmp_path / "a.npy", tmp_path / "a.tif", tmp_path / "a.h5", tmp_path / "a.mrc", tmp_path / "a.emd"]
    np.save(paths[0], data)
    tifffile.imwrite(paths[1], data, photometric="minisblack", compression="zlib")
    with h5py.File(paths[2], "w") as f:
        f["x"] = data
    with mrcfile.new(paths[3]) as m:
        m.set_data(data)
    write_berkeley_emd(paths[4], data, 1.0, 1.0)
    sources = [open_source(p) for p in paths]
    for src in sources:
        src.read(1, 3)
    open_now = {os.path.realpath(f.path) for f in psutil.Process().open_files()}
    assert not open_now & {os.path.realpath(p) for p in paths}


# ------------------------------------------------------------------------------------ vendor files

@pytest.fixture(scope="module")
def vendor():
    if not VENDOR.is_dir():
        pytest.skip(f"vendor test files not found in {VENDOR}")
    return VENDOR


def test_vendor_dm3_stack(vendor):
    import rsciio.digitalmicrograph as dm

    path = vendor / "test_stackbuilder_imagestack.dm3"
    before = snapshot(path)
    src = open_source(path)
    assert src.shape == (3, 2, 16) and src.dtype == np.uint32
    assert src.metadata.pixel_size_nm == pytest.approx(59.98, abs=0.01)
    assert src.metadata.frame_time_s is None
    assert src.metadata.instrument == "JEOL COM"
    reference = np.asarray(dm.file_reader(str(path))[0]["data"])
    check_source(src, reference, 1, 3)
    readers._common._RSCIIO_CACHE.clear()  # as in a fresh dask worker: the unpickled source re-opens the file
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(src)).read(1, 3), reference[1:3])
    assert snapshot(path) == before


def test_vendor_dm4_uncalibrated(vendor):
    import rsciio.digitalmicrograph as dm

    path = vendor / "test-1.dm4"
    before = snapshot(path)
    src = open_source(path)
    assert src.shape == (2, 2, 2) and src.dtype == np.int16
    assert src.metadata.pixel_size_nm is None and src.metadata.frame_time_s is None
    reference = np.asarray(dm.file_reader(str(path))[0]["data"])
    check_source(src, reference, 0, 2)
    assert snapshot(path) == before


def test_vendor_velox_emd(vendor):
    import rsciio.emd

    path = vendor / "fei_example_tem_stack.emd"
    before = snapshot(path)
    src = open_source(path)
    assert src.format_name == "Velox EMD"
    assert src.shape == (2, 3, 3) and src.dtype == np.int16
    assert src.metadata.frame_time_s == pytest.approx(0.8)
    assert src.metadata.pixel_size_nm == pytest.approx(0.0081729, rel=1e-4)
    assert src.metadata.instrument and "Titan" in src.metadata.instrument
    reference = np.asarray(rsciio.emd.file_reader(str(path))[0]["data"])
    check_source(src, reference, 1, 2)
    readers._common._RSCIIO_CACHE.clear()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(src)).read(1, 2), reference[1:2])
    np.testing.assert_array_equal(open_source(path, dataset="Ceta").read(0, 2), reference)
    assert snapshot(path) == before


@pytest.mark.filterwarnings("ignore:Setting the dtype:DeprecationWarning")  # inside mrcfile with numpy >= 2.5
def test_vendor_mrc_movie(vendor):
    path = vendor / "Custom_movie.mrc"
    before = snapshot(path)
    src = open_source(path)
    assert src.shape == (30, 16, 16) and src.dtype == np.uint16
    with mrcfile.open(path, mode="r", permissive=True) as m:
        reference = np.array(m.data)
    check_source(src, reference, 10, 25)
    # this file declares a negative cell (voxel size -10 Å): absurd, so unknown, raw value kept
    assert src.metadata.pixel_size_nm is None
    assert src.metadata.extra["mrc_voxel_size_A"][0] == pytest.approx(-10.0)
    assert snapshot(path) == before


# -------------------------------------------------------------------------------------- bad inputs

def test_missing_path(tmp_path):
    path = tmp_path / "nowhere.tif"
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "nowhere.tif", "no such file")


def test_unknown_extension(tmp_path):
    path = tmp_path / "movie.avi"
    path.write_bytes(b"RIFF....")
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "movie.avi", ".avi", ".tif", ".dm4", ".emd", ".npy")


def test_unknown_format_and_misplaced_dataset(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, make_series(np.uint16))
    with pytest.raises(InputError) as e:
        open_source(path, format="avi")
    assert_input_error(e, "a.npy", "avi")
    with pytest.raises(InputError) as e:
        open_source(path, dataset="x")
    assert_input_error(e, "a.npy", "dataset")


def test_truncated_npy(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, make_series(np.uint16))
    os.truncate(path, path.stat().st_size - 10)
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "cut.npy", "truncated")


def test_truncated_after_open_fails_at_read(tmp_path):
    path = tmp_path / "later.npy"
    np.save(path, make_series(np.uint16))
    src = open_source(path)
    os.truncate(path, path.stat().st_size - 100)
    np.testing.assert_array_equal(src.read(0, 2), make_series(np.uint16)[:2])
    with pytest.raises(InputError) as e:
        src.read(5, 7)
    assert_input_error(e, "later.npy", "5..6")


def test_truncated_mrc(tmp_path):
    path = tmp_path / "cut.mrc"
    with mrcfile.new(path) as m:
        m.set_data(make_series(np.float32))
    os.truncate(path, path.stat().st_size - 50)
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "cut.mrc", "truncated")


def test_mrc_header_only_garbage(tmp_path):
    path = tmp_path / "junk.mrc"
    path.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "junk.mrc")


def test_garbage_tiff(tmp_path):
    path = tmp_path / "junk.tif"
    path.write_bytes(os.urandom(64) + b"not a tiff at all")
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "junk.tif", "not a readable TIFF")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff(tmp_path, compression):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, make_series(np.uint16), photometric="minisblack", compression=compression)
    os.truncate(path, 400)  # tifffile writes pixel data first (from byte 256), then the IFDs: cut the data
    with pytest.raises(InputError) as e:
        open_source(path).read(0, 7)  # detected at open when cheap, else when the frames are read
    msg = assert_input_error(e, "cut.tif")
    assert "truncated" in msg or "corrupt" in msg


def test_not_hdf5(tmp_path):
    for name in ("fake.h5", "fake.emd"):
        path = tmp_path / name
        path.write_bytes(b"this is not HDF5" * 20)
        with pytest.raises(InputError) as e:
            open_source(path)
        assert_input_error(e, name, "HDF5")


def test_garbage_dm(tmp_path):
    path = tmp_path / "junk.dm4"
    path.write_bytes(b"\x00\x00\x00\x04" + os.urandom(200))
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "junk.dm4")


@pytest.mark.parametrize("suffix", ["npy", "tif", "h5", "zarr", "mrc"])
def test_single_2d_image(tmp_path, suffix):
    image = make_series(np.uint16, shape=(1, 5, 6))[0]
    path = tmp_path / f"image.{suffix}"
    if suffix == "npy":
        np.save(path, image)
    elif suffix == "tif":
        tifffile.imwrite(path, image)
    elif suffix == "h5":
        with h5py.File(path, "w") as f:
            f["img"] = image
        with pytest.raises(InputError) as e:
            open_source(path, dataset="img")
        assert_input_error(e, "image.h5", "single 2-D image (5, 6)", "series of frames")
        return
    elif suffix == "zarr":
        zarr.create_array(str(path), shape=image.shape, dtype=image.dtype)[:] = image
    else:
        with mrcfile.new(path) as m:
            m.set_data(image)
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, f"image.{suffix}", "single 2-D image (5, 6)", "series of frames")


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, "U3", [("a", "u2"), ("b", "f4")]])
def test_non_numeric_npy(tmp_path, dtype):
    path = tmp_path / "odd.npy"
    np.save(path, np.zeros((3, 4, 5), dtype=dtype))
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "odd.npy", "dtype", "expected integer or float")


def test_object_npy(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.empty((3, 4, 5), dtype=object), allow_pickle=True)
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "obj.npy", "dtype object")


def test_complex_hdf5(tmp_path):
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        f["c"] = np.zeros((3, 4, 5), dtype=np.complex64)
    with pytest.raises(InputError) as e:
        open_source(path)
    assert_input_error(e, "c.h5", "complex64", "expected integer or float")


def test_1d_and_4d_data(tmp_path):
    np.save(tmp_path / "line.npy", np.arange(10))
    with pytest.raises(InputError) as e:
        open_source(tmp_path / "line.npy")
    assert_input_error(e, "line.npy", "1-D")
    np.save(tmp_path / "stem.npy", np.zeros((2, 3, 4, 5), dtype=np.uint16))
    with pytest.raises(InputError) as e:
        open_source(tmp_path / "stem.npy")
    assert_input_error(e, "stem.npy", "STEM 4-D data is not supported by this reader yet")


def test_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(InputError) as e:
        open_source(folder)
    assert_input_error(e, f"no TIFF files in folder {folder}")


def test_folder_with_odd_frame_shape(tmp_path):
    data = make_series(np.uint16, shape=(4, 5, 6))
    folder = tmp_path / "frames"
    write_frames(folder, data, [f"img{i}.tif" for i in range(4)])
    tifffile.imwrite(folder / "img2.tif", np.zeros((5, 7), dtype=np.uint16))
    with pytest.raises(InputError) as e:
        open_source(folder)
    assert_input_error(e, "img2.tif", "(5, 7)", "(5, 6)", "img0.tif")


def test_folder_with_garbage_frame(tmp_path):
    data = make_series(np.uint16, shape=(3, 5, 6))
    folder = tmp_path / "frames"
    write_frames(folder, data, [f"img{i}.tif" for i in range(3)])
    (folder / "img1.tif").write_bytes(b"garbage")
    with pytest.raises(InputError) as e:
        open_source(folder)
    assert_input_error(e, "img1.tif")


def test_list_of_non_tiffs(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, make_series(np.uint16))
    np.save(b, make_series(np.uint16))
    with pytest.raises(InputError) as e:
        open_source([a, b])
    assert_input_error(e, "a.npy", "TIFF")


def test_read_into_out_equals_read(tmp_path):
    """FrameSource.read(..., out=): raw formats read straight into the caller's buffer, others are copied into it;
    the frames equal a plain read (native and big-endian files), and a wrong buffer is refused."""
    import tifffile

    from ecm_dask.readers import open_source

    frames = np.random.default_rng(5).integers(0, 4000, (9, 12, 10)).astype(np.uint16)
    np.save(tmp_path / "le.npy", frames)
    np.save(tmp_path / "be.npy", frames.astype(">u2"))
    tifffile.imwrite(tmp_path / "stack.tif", frames)
    (tmp_path / "folder").mkdir()
    for i, f in enumerate(frames):
        tifffile.imwrite(tmp_path / "folder" / f"f{i:02d}.tif", f)
    for name in ("le.npy", "be.npy", "stack.tif", "folder"):
        src = open_source(tmp_path / name)
        buf = np.full((4, 12, 10), 65535, src.dtype)
        got = src.read(3, 7, out=buf)
        assert got is buf, name
        np.testing.assert_array_equal(buf, frames[3:7], err_msg=name)
        np.testing.assert_array_equal(src.read(3, 7), frames[3:7], err_msg=name)
        with pytest.raises(ValueError, match="out must have shape"):
            src.read(3, 7, out=np.empty((3, 12, 10), src.dtype))
        strided = np.zeros((4, 12, 20), src.dtype)[:, :, ::2]  # not contiguous: filled by a copy, not lost
        assert src.read(3, 7, out=strided) is strided
        np.testing.assert_array_equal(strided, frames[3:7], err_msg=name)
