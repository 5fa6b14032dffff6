"""Checksums and completeness (issue 13, item 2; truncated/empty shards of item 9): damaged or missing stored
bytes end in one error naming the file and frames, never in a plausible map."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import zarr
from conftest import ecm_cli

from ecm_dask import schema as S
from ecm_dask.errors import StoreError
from ecm_dask.pipeline.ingest import resolve_metadata
from ecm_dask.readers.memory import ArraySource
from ecm_dask.store import integrity as I
from ecm_dask.store import series as SS
from ecm_dask.store.writer import write_series

FPS = 50  # frames per shard


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.poisson(20, (200, 24, 32)).astype("uint16")
    data[100:150] = 0  # a whole shard of zeros (beam blanked): equal to the fill value, must still be written
    src = ArraySource(data, name="raw.npy", frame_time_s=0.5, pixel_size_nm=0.3)
    path = write_series(src, tmp_path / "s.zarr", resolve_metadata(src), frames_per_shard=FPS, tile=16,
                        progress=False)
    return path, data


def _shard(path, i):
    return path / S.INTENSITY / "c" / str(i) / "0" / "0"


def test_every_chunk_is_checksummed_and_every_shard_file_written(store):
    path, data = store
    meta = json.loads((path / S.INTENSITY / "zarr.json").read_text())
    inner = meta["codecs"][0]["configuration"]["codecs"]
    assert [c["name"] for c in inner][-1] == "crc32c"  # after the compressor: checks the stored bytes
    assert all(_shard(path, i).is_file() for i in range(4))  # the all-zero shard too
    np.testing.assert_array_equal(SS.open_series(path)[S.INTENSITY].values, data)
    assert I.verify(path) == []


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated"])
def test_a_missing_empty_or_truncated_shard_is_named_with_its_frames_at_open(store, damage):
    path, _ = store
    f = _shard(path, 2)
    if damage == "missing":
        f.unlink()
    elif damage == "empty":
        f.write_bytes(b"")
    else:
        f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(StoreError) as err:
        SS.open_series(path)
    msg = str(err.value)
    assert str(f) in msg and "frames 100..149" in msg, msg
    problems = I.verify(path)
    assert len(problems) == 1 and str(f) in problems[0]


def test_flipped_bytes_inside_a_chunk_are_caught_on_read_naming_the_shard(store):
    from ecm_dask.ops.g2plan import Read
    from ecm_dask.store.region import read_region

    def _read_region(path, y0, y1, x0, x1, out=None):  # the g2 stage's read of a pixel block (decoded in place)
        shape = (data.shape[0], y1 - y0, x1 - x0)
        return read_region(path, [Read(0, shape[0], y0, y1, x0, x1)], shape, (y0, x0),
                           out=np.empty(shape, data.dtype) if out is None else out)

    path, data = store
    f = _shard(path, 1)
    raw = bytearray(f.read_bytes())
    raw[200] ^= 0x01  # one bit inside the first inner chunk's compressed bytes
    f.write_bytes(bytes(raw))
    SS.open_series(path)  # the files are all there: open is cheap and says nothing
    with pytest.raises(StoreError) as err:
        _read_region(str(path), 0, 16, 0, 16)
    assert str(f) in str(err.value) and "frames 50..99" in str(err.value) and "damaged" in str(err.value)
    np.testing.assert_array_equal(_read_region(str(path), 0, 24, 16, 32), data[:, :, 16:])  # intact tiles
    problems = I.verify(path)
    assert len(problems) == 1 and str(f) in problems[0] and "checksum" in problems[0]


def _flip(f, at):
    raw = bytearray(f.read_bytes())
    raw[at] ^= 0xFF
    f.write_bytes(bytes(raw))


def test_flipped_bytes_read_through_xarray_and_dask_name_the_file_frames_and_pixels(store):
    """Any computation on open_series' lazy intensity (drift, screening, user code), not only the g2 stage's
    direct read: zarr's bare 'checksum do not match' becomes a StoreError naming file, frames and pixel block."""
    path, data = store
    f = _shard(path, 1)
    _flip(f, 200)  # inside the first inner chunk (y 0..15, x 0..15) of frames 50..99
    ds = SS.open_series(path)
    for read in (lambda: ds[S.INTENSITY].values, lambda: ds[S.INTENSITY].isel(time=slice(0, 200, 7)).values,
                 lambda: ds[S.INTENSITY][60, 3:5, 2:9].values):
        with pytest.raises(StoreError) as err:
            read()
        msg = str(err.value)
        assert f"{f} (frames 50..99, y 0..15, x 0..15)" in msg and "damaged" in msg, msg
    np.testing.assert_array_equal(ds[S.INTENSITY][:, 16:].values, data[:, 16:])  # intact pixels still read
    np.testing.assert_array_equal(ds[S.INTENSITY][150:].values, data[150:])
    from ecm_dask.ops.correlation import store_backed

    assert store_backed(ds[S.INTENSITY]) == os.path.abspath(path)  # the g2 stage still reads the store directly


def test_a_whole_unreadable_shard_is_named_without_a_pixel_block(store):
    path, _ = store
    f = _shard(path, 3)
    f.write_bytes(f.read_bytes()[:-3])  # the shard index (at the end) is cut: no inner chunk can be found
    with pytest.raises(StoreError) as err:
        SS.open_series(path)[S.INTENSITY][150:160, 20:22].values
    assert f"{f} (frames 150..199, y 0..23, x 0..31)" in str(err.value), str(err.value)


def test_the_default_run_with_drift_on_a_flipped_byte_is_a_one_line_error(store, tmp_path):
    path, _ = store
    f = _shard(path, 0)  # the drift stage reads the first frames for its reference
    _flip(f, 300)
    r = _run("run", path, "-o", tmp_path / "r.zarr", "--cluster", "threads", "--quiet", "--no-report")
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert str(f) in lines[0] and "frames 0..49" in lines[0] and "damaged" in lines[0], lines[0]


def test_a_partial_copy_does_not_pass_as_complete(store, tmp_path):
    path, _ = store
    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy, ignore=lambda d, names: [n for n in names if d.endswith(os.path.join("c", "3", "0"))])
    with pytest.raises(StoreError, match=r"missing \(frames 150..199"):
        SS.open_series(copy)


def test_a_store_of_an_older_version_without_checksums_still_reads(store, tmp_path):
    """Older stores: no crc32c, no record that every chunk was written: they open and read as before."""
    path, data = store
    old = tmp_path / "old.zarr"
    arr = zarr.open_array(store=str(path / S.INTENSITY), mode="r")
    shutil.copytree(path, old)
    shutil.rmtree(old / S.INTENSITY)
    new = zarr.create_array(store=str(old / S.INTENSITY), shape=arr.shape, chunks=arr.chunks, shards=arr.shards,
                            dtype=arr.dtype, fill_value=0, compressors=[SS.compressor()],
                            dimension_names=list(S.SERIES_DIMS), attributes=dict(arr.attrs))
    new[...] = data
    g = zarr.open_group(str(old), mode="r+")
    del g.attrs[I.ATTR_INTEGRITY]
    zarr.consolidate_metadata(str(old))
    np.testing.assert_array_equal(SS.open_series(old)[S.INTENSITY].values, data)


@pytest.mark.parametrize("damage", ["missing", "flipped", "truncated"])
def test_run_and_verify_on_a_damaged_store_are_one_line_errors(store, tmp_path, damage):
    path, _ = store
    f = _shard(path, 1)
    if damage == "missing":
        f.unlink()
    elif damage == "truncated":
        f.write_bytes(f.read_bytes()[:-100])
    else:
        raw = bytearray(f.read_bytes())
        raw[300] ^= 0xFF
        f.write_bytes(bytes(raw))
    r = _run("run", path, "-o", tmp_path / "r.zarr", "--cluster", "threads", "--no-drift", "--quiet", "--no-report")
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert str(f) in lines[0] or "damaged" in lines[0], lines[0]
    assert not (tmp_path / "r.zarr").exists()
    v = _run("verify", path)
    assert v.returncode == 1 and str(f) in v.stdout and "1 damaged or missing file(s)" in v.stdout


def test_stage_and_result_stores_are_checksummed_too(tmp_path):
    import dask.array as da
    import xarray as xr

    from ecm_dask.store.blocks import write_blocks, write_dataset

    ds = xr.Dataset({"a": (("y", "x"), da.zeros((8, 8), dtype="float32", chunks=4))})
    out = write_blocks(ds, tmp_path / "g2.zarr", key="k", progress=False)
    meta = json.loads((out / "a" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]][-1] == "crc32c"
    assert len([p for p in (out / "a" / "c").rglob("*") if p.is_file()]) == 4
    I.check_complete(out)  # all four chunks written although all zero
    next(p for p in (out / "a" / "c").rglob("*") if p.is_file()).unlink()
    with pytest.raises(StoreError, match="is missing"):
        I.check_complete(out)
    small = write_dataset(xr.Dataset({"b": ("t", np.arange(5.0))}), tmp_path / "drift.zarr", progress=False)
    assert json.loads((small / "b" / "zarr.json").read_text())["codecs"][-1]["name"] == "crc32c"


def test_a_damaged_stage_checkpoint_is_computed_again(tmp_path, capsys):
    from ecm_dask.pipeline.run import run_pipeline, stage_dir
    from ecm_dask.synth import SynthParams, write_synthetic_series

    series = write_synthetic_series(tmp_path / "s.zarr", SynthParams(ny=32, nx=48, n_frames=300, seed=2), tile=16,
                                    progress=False)
    out = run_pipeline(series, tmp_path / "r.zarr", drift=False, progress=False)
    import xarray as xr

    tau = xr.open_zarr(out).tau.values
    g2_chunk = next(p for p in (stage_dir(out) / "g2.zarr" / "g2" / "c").rglob("*") if p.is_file())
    g2_chunk.unlink()  # a stage checkpoint that lost a file (e.g. a partial copy of the stage folder)
    shutil.rmtree(out)
    (stage_dir(out) / "maps.zarr").rename(tmp_path / "maps-away")  # the fit must read the g2 again
    out = run_pipeline(series, out, drift=False, progress=False)
    assert "g2.zarr" in capsys.readouterr().err
    np.testing.assert_array_equal(xr.open_zarr(out).tau.values, tau)  # the same maps, from a recomputed g2


def _run(*args, timeout=300):
    return ecm_cli(*args, timeout=timeout, check=False)


@pytest.mark.parametrize("stage", ["g2", "drift"])
def test_a_flipped_byte_in_a_stage_checkpoint_is_a_one_line_error_saying_what_to_delete(tmp_path, stage):
    import xarray as xr

    from ecm_dask.pipeline.run import run_pipeline, stage_dir
    from ecm_dask.synth import SynthParams, write_synthetic_series

    series = write_synthetic_series(tmp_path / "s.zarr", SynthParams(ny=32, nx=48, n_frames=300, seed=2), tile=16,
                                    progress=False)
    out = run_pipeline(series, tmp_path / "r.zarr", progress=False)
    tau = xr.open_zarr(out).tau.values
    work = stage_dir(out)
    var = {"g2": "g2", "drift": "shift"}[stage]
    f = next(p for p in (work / f"{stage}.zarr" / var / "c").rglob("*") if p.is_file())
    _flip(f, f.stat().st_size // 2)
    shutil.rmtree(out)
    for later in ("screen.zarr", "maps.zarr"):  # the stages that read the damaged checkpoint run again
        shutil.rmtree(work / later)
    r = _run("run", series, "-o", out, "--cluster", "threads", "--quiet", "--no-report")
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert str(f) in lines[0] and "damaged" in lines[0] and f"delete {work / f'{stage}.zarr'}" in lines[0], lines[0]
    shutil.rmtree(work / f"{stage}.zarr")  # what the message says to do
    out = run_pipeline(series, out, progress=False)
    np.testing.assert_array_equal(xr.open_zarr(out).tau.values, tau)


def test_a_damaged_frame_time_coordinate_is_named_at_open(store):
    """The coordinates are read when the store is opened: checksummed too, and a damaged one is one StoreError."""
    path, _ = store
    meta = json.loads((path / S.TIME / "zarr.json").read_text())
    assert meta["codecs"][-1]["name"] == "crc32c"
    _flip(path / S.TIME / "c" / "0", 30)
    with pytest.raises(StoreError, match=r"s\.zarr \(its coordinates time, y, x\): the stored data is damaged"):
        SS.open_series(path)
