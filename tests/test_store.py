"""Series store: layout planning, exact round trips, partial reads, validation, interrupt and resume."""

from __future__ import annotations

import os
import warnings

import dask
import numpy as np
import pytest
import xarray as xr
import zarr

from ecm_dask import schema as S
from ecm_dask.errors import InputError, MetadataError, StoreError, ValidationError
from ecm_dask.pipeline.ingest import resolve_metadata
from ecm_dask.readers.memory import ArraySource
from ecm_dask.store import series as SS
from ecm_dask.store.layout import plan_layout
from ecm_dask.store.writer import write_series


def _source(shape=(40, 70, 90), dtype="uint16", seed=0, **kw):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        data = rng.gamma(2.0, 50.0, shape).astype(dtype)
    else:
        data = rng.integers(0, min(np.iinfo(dtype).max, 60000), shape, dtype=dtype)
    return ArraySource(data, frame_time_s=kw.pop("frame_time_s", 0.25), pixel_size_nm=kw.pop("pixel_size_nm", 0.33))


def _write(src, path, **kw):
    attrs = resolve_metadata(src, temperature_C=kw.pop("temperature_C", 266.0), material="PtCuNiP")
    return write_series(src, path, attrs, progress=False, **kw)


# ----------------------------------------------------------------------------------------- layout
def test_layout_shard_length_follows_byte_budget_and_tiles_pad_the_frame():
    lay = plan_layout((4000, 631, 861), 2, tile=64, shard_bytes=64 << 20)
    assert lay.shard[1:] == (640, 896)  # padded up to whole tiles
    assert lay.shard[0] == (64 << 20) // (640 * 896 * 2) == 58
    assert lay.chunk == (58, 64, 64)
    assert lay.n_shards == 69 and lay.shard_frames(68) == (68 * 58, 4000)


def test_layout_long_shards_get_inner_chunks_that_divide_them():
    lay = plan_layout((100000, 32, 32), 2, tile=64, shard_bytes=64 << 20)
    assert lay.chunk[1:] == (32, 32)  # tile clipped to the frame
    assert lay.shard[0] % lay.chunk[0] == 0 and lay.chunk[0] <= 256
    lay2 = plan_layout((50, 10, 10), 4, frames_per_shard=1000)
    assert lay2.shard[0] == 50  # never longer than the series


def test_layout_rejects_empty_series():
    with pytest.raises(ValueError, match="empty"):
        plan_layout((0, 10, 10), 2)


# ------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32"])
def test_round_trip_is_exact_and_keeps_dtype_units_and_attrs(tmp_path, dtype):
    src = _source(dtype=dtype)
    path = _write(src, tmp_path / "s.zarr", frames_per_shard=16, tile=32)
    ds = SS.open_series(path)
    np.testing.assert_array_equal(ds[S.INTENSITY].values, src.array)
    assert ds[S.INTENSITY].dtype == np.dtype(dtype)
    assert ds[S.INTENSITY].dims == S.SERIES_DIMS
    assert ds[S.TIME].attrs["units"] == "s" and ds[S.Y].attrs["units"] == "nm"
    np.testing.assert_allclose(ds[S.TIME].values, np.arange(40) * 0.25)
    np.testing.assert_allclose(ds[S.X].values, np.arange(90) * 0.33)
    assert ds.attrs[S.ATTR_FRAME_TIME] == 0.25 and ds.attrs[S.ATTR_TEMPERATURE] == 266.0
    assert ds.attrs[S.ATTR_COMPLETE] is True
    assert ds.attrs[S.ATTR_PROVENANCE]["versions"]["zarr"] == zarr.__version__
    # dask chunks are the inner chunks: a pixel block over all time is a concatenation of them
    assert ds[S.INTENSITY].data.chunksize == (16, 32, 32)
    # plain xarray opens it too (consolidated, no progress variable left behind)
    plain = xr.open_zarr(path)
    assert list(plain.data_vars) == [S.INTENSITY]


def test_one_shard_file_per_time_slab_with_the_configured_codecs(tmp_path):
    src = _source(shape=(40, 70, 90))
    path = _write(src, tmp_path / "s.zarr", frames_per_shard=16, tile=32)
    arr = zarr.open_array(os.path.join(path, S.INTENSITY), mode="r")
    assert arr.shards == (16, 96, 96) and arr.chunks == (16, 32, 32)
    files = sorted(os.listdir(os.path.join(path, S.INTENSITY, "c")))
    assert files == ["0", "1", "2"]  # ceil(40 / 16) shards, each one file covering the whole frame
    blosc = arr.metadata.codecs[0].codecs[1]
    assert (str(getattr(blosc.cname, "value", blosc.cname)), str(getattr(blosc.shuffle, "value", blosc.shuffle))) == (
        "lz4", "bitshuffle")


class _CountingStore(zarr.storage.WrapperStore):
    """Counts the bytes fetched from the wrapped store."""

    def __init__(self, store):
        super().__init__(store)
        self.bytes_read = 0

    async def get(self, key, prototype, byte_range=None):
        buf = await self._store.get(key, prototype, byte_range)
        if buf is not None and not key.endswith("zarr.json"):
            self.bytes_read += len(buf)
        return buf


def test_small_roi_and_pixel_block_read_only_their_inner_chunks(tmp_path):
    src = _source(shape=(64, 128, 256))
    path = _write(src, tmp_path / "s.zarr", frames_per_shard=32, tile=32)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(path, S.INTENSITY, "c"))
                for f in fs)
    store = _CountingStore(zarr.storage.LocalStore(path, read_only=True))
    arr = zarr.open_array(store, path=S.INTENSITY, mode="r")
    block = arr[:, 32:64, 64:96]  # one tile over all time
    np.testing.assert_array_equal(block, src.array[:, 32:64, 64:96])
    # 1 of 32 tiles per shard (+ the shard indexes): far less than whole frames
    assert store.bytes_read < total / 16


# -------------------------------------------------------------------------------------- validation
def test_validate_series_lists_every_problem(tmp_path):
    src = _source()
    ds = SS.open_series(_write(src, tmp_path / "s.zarr"))
    bad = ds.copy()
    bad.attrs = dict(ds.attrs)
    del bad.attrs[S.ATTR_FRAME_TIME]
    bad.attrs[S.ATTR_PIXEL_SIZE] = -0.3
    bad[S.X].attrs["units"] = "m"
    with pytest.raises(ValidationError) as err:
        S.validate_series(bad)
    msg = str(err.value)
    assert "missing attribute 'frame_time_s'" in msg
    assert "'pixel_size_nm'" in msg and "positive" in msg
    assert "coordinate 'x' has units 'm', expected 'nm'" in msg
    assert len(err.value.problems) == 3


def test_validate_series_rejects_wrong_dims_and_single_frame():
    ds = xr.Dataset({S.INTENSITY: (("y", "x", "time"), np.zeros((4, 5, 1)))})
    with pytest.raises(ValidationError) as err:
        S.validate_series(ds)
    msg = str(err.value)
    assert "has dims ('y', 'x', 'time'), expected ('time', 'y', 'x')" in msg
    assert "no coordinate 'time'" in msg


def test_resolve_metadata_asks_for_the_flag_and_rejects_absurd_values():
    src = ArraySource(np.zeros((4, 8, 8), "uint16"), name="frames.npy")
    with pytest.raises(MetadataError, match=r"frames\.npy.*--frame-time"):
        resolve_metadata(src, pixel_size_nm=0.3)
    with pytest.raises(MetadataError, match="--pixel-size"):
        resolve_metadata(src, frame_time_s=0.5)
    with pytest.raises(MetadataError, match="--frame-time"):
        resolve_metadata(src, frame_time_s=0.0, pixel_size_nm=0.3)
    with pytest.raises(MetadataError, match="plausible range"):
        resolve_metadata(src, frame_time_s=0.5, pixel_size_nm=3e6)
    with pytest.raises(MetadataError, match="--temperature"):
        resolve_metadata(src, frame_time_s=0.5, pixel_size_nm=0.3, temperature_C=-500)


# ------------------------------------------------------------------------------- interrupt / resume
class _FlakySource(ArraySource):
    """Fails once, on the ``fail_on``-th read (simulates a crash mid-ingest); logs the frames it read."""

    def __init__(self, array, fail_on, log):
        super().__init__(array, name="flaky.npy", frame_time_s=0.5, pixel_size_nm=0.3)
        self.fail_on, self.log = fail_on, log

    def _read(self, start, stop):
        self.log.append(start)
        if len(self.log) == self.fail_on:
            raise OSError("simulated read failure")
        return super()._read(start, stop)


def test_interrupted_ingest_is_never_complete_and_resumes_to_identical_store(tmp_path):
    data = np.random.default_rng(3).integers(0, 4000, (48, 40, 40), dtype="uint16")
    log = []
    src = _FlakySource(data, fail_on=3, log=log)
    out = tmp_path / "s.zarr"
    attrs = resolve_metadata(src)
    with dask.config.set(scheduler="synchronous"):  # one shard after another: exactly 2 finish, the 3rd fails
        with pytest.raises(InputError, match=r"flaky\.npy: cannot read frames \d+\.\.\d+: OSError"):
            write_series(src, out, attrs, frames_per_shard=8, progress=False)
    finished = {log[0] // 8, log[1] // 8}
    assert SS.store_state(out) == SS.ABSENT  # nothing under the final name until the store is complete
    assert SS.interrupted(out) == (2, 6)
    assert SS.pending_shards(out) == sorted(set(range(6)) - finished)
    with pytest.raises(StoreError, match=r"interrupted \(2 of 6 shards written"):
        SS.open_series(out)
    shard_file = os.path.join(f"{out}.partial", S.INTENSITY, "c", str(min(finished)), "0", "0")
    mtime = os.stat(shard_file).st_mtime_ns
    # another input into the same output is refused, not mixed in and not thrown away
    other = ArraySource(data[::-1].copy(), name="other.npy", frame_time_s=0.5, pixel_size_nm=0.3)
    with pytest.raises(StoreError, match="interrupted ingest into .* of a different input"):
        write_series(other, out, resolve_metadata(other), frames_per_shard=8, progress=False)
    ino = os.stat(shard_file).st_ino
    write_series(src, out, resolve_metadata(src), frames_per_shard=8, progress=False)  # resume
    assert sorted(s // 8 for s in log[3:]) == sorted(set(range(6)) - finished)  # only missing shards were read
    final_file = os.path.join(out, S.INTENSITY, "c", str(min(finished)), "0", "0")
    assert os.stat(final_file).st_mtime_ns == mtime and os.stat(final_file).st_ino == ino  # not rewritten
    ds = SS.open_series(out)
    np.testing.assert_array_equal(ds[S.INTENSITY].values, data)
    assert not os.path.exists(f"{out}.partial") and ds.attrs[S.ATTR_COMPLETE] is True


def test_an_ingest_killed_while_creating_the_store_resumes(tmp_path, monkeypatch):
    """A kill after the metadata but before the key (the creation itself) used to leave a folder every rerun refused."""
    data = np.random.default_rng(4).integers(0, 4000, (16, 24, 24), dtype="uint16")
    src = ArraySource(data, name="a.npy", frame_time_s=0.5, pixel_size_nm=0.3)
    out = tmp_path / "s.zarr"
    real = SS.create_series

    def killed(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt  # dies right after the metadata is written, before the ticks and the key

    monkeypatch.setattr(SS, "create_series", killed)
    with pytest.raises(KeyboardInterrupt):
        write_series(src, out, resolve_metadata(src), frames_per_shard=4, progress=False)
    monkeypatch.undo()
    assert (tmp_path / "s.zarr.partial" / "zarr.json").is_file() and SS.store_state(out) == SS.ABSENT
    write_series(src, out, resolve_metadata(src), frames_per_shard=4, progress=False)
    np.testing.assert_array_equal(SS.open_series(out)[S.INTENSITY].values, data)


def test_a_second_ingest_into_the_same_output_is_refused_while_the_first_runs(tmp_path):
    from ecm_dask.pipeline.ingest import ingest
    from ecm_dask.pipeline.lock import run_lock

    path = tmp_path / "a.npy"
    np.save(path, np.random.default_rng(5).integers(0, 100, (8, 16, 16), dtype="uint16"))
    out = tmp_path / "s.zarr"
    with run_lock(out):  # what a running ingest (or run) into s.zarr holds
        with pytest.raises(StoreError, match="another ecm-dask run is writing"):
            ingest(path, out, frame_time_s=1.0, pixel_size_nm=1.0, progress=False)
    assert not out.exists() and not (tmp_path / "s.zarr.partial").exists()
    ingest(path, out, frame_time_s=1.0, pixel_size_nm=1.0, progress=False)
    assert SS.open_series(out)[S.INTENSITY].shape == (8, 16, 16)


def test_existing_outputs_are_refused_unless_overwrite(tmp_path):
    src = _source(shape=(8, 16, 16))
    out = _write(src, tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="--overwrite"):
        _write(src, out)
    other = _source(shape=(8, 16, 16), seed=1)
    _write(other, out, overwrite=True)
    np.testing.assert_array_equal(SS.open_series(out)[S.INTENSITY].values, other.array)
    # an interrupted in-place store of an older ecm_dask is not silently mixed
    zarr.open_group(str(out), mode="r+").attrs[S.ATTR_COMPLETE] = False
    with pytest.raises(StoreError, match="older ecm_dask"):
        _write(src, out)
    # something that is not an ecm_dask store is never deleted, even with overwrite
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not an ecm_dask store"):
        _write(src, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------- one pass over the frames
@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32"])
def test_scan_frames_gives_every_frame_mean_and_the_pixel_series_as_numpy_does(tmp_path, dtype):
    src = _source(shape=(45, 70, 90), dtype=dtype, seed=5)
    data = src.array.copy()
    if dtype == "float32":  # NaN pixels are left out of a frame's mean; a frame of NaN only has none
        data[3, 10:20, 5] = np.nan
        data[7] = np.nan
        src = ArraySource(data, frame_time_s=0.25, pixel_size_nm=0.33)
    path = _write(src, tmp_path / "s.zarr", frames_per_shard=16, tile=32)  # three shards, the last one short
    intensity = SS.open_series(path)[S.INTENSITY]
    assert SS.store_backed(intensity) is not None
    rng = np.random.default_rng(1)
    sets = [(rng.integers(0, 70, 200), rng.integers(0, 90, 200)), (np.array([0, 69]), np.array([89, 0]))]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of an all-NaN frame
        expected = np.nanmean(data.astype(np.float64), axis=(1, 2))
    for label, arr in (("store", intensity), ("dask", intensity + 0)):  # + 0: not the opened store, read by dask
        mean_t, series = SS.scan_frames(arr, sets)
        np.testing.assert_allclose(mean_t, expected, rtol=1e-12, equal_nan=True, err_msg=label)
        assert np.isnan(mean_t[7]) == (dtype == "float32") and np.isfinite(np.delete(mean_t, 7)).all()
        for (iy, ix), got in zip(sets, series):
            assert got.shape == (45, iy.size)
            np.testing.assert_array_equal(got, data[:, iy, ix].astype(got.dtype), err_msg=label)
    if dtype != "float32":  # integers: the exact sum, so the same float64 as numpy's mean of them
        assert np.array_equal(SS.scan_frames(intensity)[0], data.astype(np.float64).mean(axis=(1, 2)))
