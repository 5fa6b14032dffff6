"""The fast shard reader equals zarr on the layout ecm_dask writes, declines other layouts, and never decides what
damage means (it hands the selection back to zarr, whose error names the file)."""

import os

import numpy as np
import pytest
import zarr

from ecm_dask.store.shards import ShardReader, Unreadable


def _array(path, data, shards, chunks, checksum=True, compressor=True):
    from zarr.codecs import BloscCodec, Crc32cCodec

    comp = [BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")] if compressor else []
    arr = zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=chunks, shards=shards,
                            compressors=comp + ([Crc32cCodec()] if checksum else []), zarr_format=3)
    arr[...] = data
    return str(path)


@pytest.fixture
def stored(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.poisson(50, (45, 37, 53)).astype(np.uint16)  # partial shards and inner chunks at every edge
    return _array(tmp_path / "a", data, (10, 40, 64), (10, 8, 16)), data


def test_random_selections_equal_zarr(stored):
    path, data = stored
    reader = ShardReader.open(path)
    assert reader is not None and reader.shard == (10, 40, 64) and reader.inner == (10, 8, 16)
    rng = np.random.default_rng(1)
    scratch = np.empty(reader.chunk_bytes, np.uint8)
    for _ in range(60):
        lo = [int(rng.integers(0, n)) for n in data.shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, data.shape)]
        sel = tuple(slice(a, b) for a, b in zip(lo, hi))
        out = np.full(tuple(b - a for a, b in zip(lo, hi)), 7, np.uint16)
        reader.read(sel, out, scratch if rng.random() < 0.5 else None)
        np.testing.assert_array_equal(out, data[sel])
    # into a strided view of a larger array (the g2 stage's region)
    big = np.zeros((45, 50, 60), np.uint16)
    reader.read((slice(0, 45), slice(3, 30), slice(10, 53)), big[:, 5:32, 2:45])
    np.testing.assert_array_equal(big[:, 5:32, 2:45], data[:, 3:30, 10:53])
    assert not big[:, :5].any() and not big[:, 32:].any()


def test_other_layouts_are_left_to_zarr(tmp_path):
    data = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    assert ShardReader.open(_array(tmp_path / "no_crc", data, (2, 8, 8), (1, 4, 4), checksum=False)) is None
    assert ShardReader.open(_array(tmp_path / "raw", data, (2, 8, 8), (1, 4, 4), compressor=False)) is None
    plain = zarr.create_array(str(tmp_path / "plain"), shape=data.shape, dtype=data.dtype, chunks=(1, 4, 4))
    plain[...] = data
    assert ShardReader.open(str(tmp_path / "plain")) is None
    assert ShardReader.open(str(tmp_path / "nothing")) is None


def test_damage_and_odd_requests_are_unreadable_not_guessed(stored):
    path, data = stored
    reader = ShardReader.open(path)
    out = np.empty((10, 8, 16), np.uint16)
    with pytest.raises(Unreadable):
        reader.read((slice(0, 10), slice(0, 8), slice(0, 16)), np.empty((10, 8, 16), np.float32))  # wrong dtype
    with pytest.raises(Unreadable):
        reader.read((slice(0, 10), slice(0, 8), slice(0, 100)), out)  # outside the array
    shard = os.path.join(path, "c", "1", "0", "0")
    raw = bytearray(open(shard, "rb").read())
    raw[40] ^= 0x10  # inside the first inner chunk
    open(shard, "wb").write(bytes(raw))
    with pytest.raises(Unreadable, match="checksum"):
        reader.read((slice(10, 20), slice(0, 8), slice(0, 16)), out)
    reader.read((slice(0, 10), slice(0, 8), slice(0, 16)), out)  # other shards still read
    np.testing.assert_array_equal(out, data[:10, :8, :16])
    os.remove(shard)
    with pytest.raises(Unreadable):
        reader.read((slice(10, 20), slice(0, 8), slice(0, 16)), out)
    raw = bytearray(open(os.path.join(path, "c", "2", "0", "0"), "rb").read())
    raw[-10] ^= 0x01  # the shard index
    open(os.path.join(path, "c", "2", "0", "0"), "wb").write(bytes(raw))
    with pytest.raises(Unreadable, match="index"):
        reader.read((slice(20, 30), slice(0, 8), slice(0, 16)), out)


def test_scratch_buffers_are_reused_per_thread_and_released():
    import threading

    from ecm_dask.store.region import release_scratch, scratch

    release_scratch()
    a = scratch((10, 20), np.uint16)
    b = scratch((5, 4), np.float64)  # smaller: the same memory
    assert np.shares_memory(a, b) and b.shape == (5, 4) and b.dtype == np.float64
    other = {}
    t = threading.Thread(target=lambda: other.setdefault("x", scratch((10, 20), np.uint16)))
    t.start()
    t.join()
    assert not np.shares_memory(a, other["x"])  # each thread has its own
    big = scratch((100, 20), np.uint16)  # larger: a new buffer
    assert big.shape == (100, 20) and not np.shares_memory(big, a)
    assert release_scratch() == 100 * 20 * 2 + 10 * 20 * 2  # every thread's buffers
    assert release_scratch() == 0


@pytest.mark.parametrize("shape, shard, inner, dtype, fill", [
    ((100, 70, 90), (40, 128, 128), (40, 64, 64), np.uint16, 0),      # edge shards and edge inner chunks
    ((30, 33, 20), (16, 33, 20), (8, 11, 10), np.float32, np.nan),    # float with NaN fill, odd tiles
    ((10, 64, 64), (10, 64, 64), (10, 64, 64), np.int32, 7),          # one chunk, non-zero fill
])
def test_encoder_writes_what_zarr_writes(tmp_path, shape, shard, inner, dtype, fill):
    """ShardEncoder: every inner chunk's stored bytes (compressed + crc32c) equal zarr's, the index checksum holds,
    and zarr and the fast reader read the data back exactly."""
    import google_crc32c

    from ecm_dask.store.integrity import codecs
    from ecm_dask.store.series import compressor
    from ecm_dask.store.shards import ShardEncoder

    data = np.random.default_rng(3).poisson(50, shape).astype(dtype)
    for name in ("zarr", "mine"):
        zarr.create_array(store=str(tmp_path / name), shape=shape, chunks=inner, shards=shard, dtype=dtype,
                          compressors=codecs(compressor()), fill_value=fill, config={"write_empty_chunks": True})
    zarr.open_array(str(tmp_path / "zarr"), mode="r+")[:] = data
    enc = ShardEncoder.open(tmp_path / "mine")
    assert enc is not None
    grid = [-(-n // s) for n, s in zip(shape, shard)]
    enc.write_region((0,) * len(shape), data)  # every shard of the array, edge shards clipped
    with pytest.raises(ValueError, match="not on the shard grid"):
        enc.write_region((1,) + (0,) * (len(shape) - 1), data[1:])
    per_shard = [s // i for s, i in zip(shard, inner)]
    n_index = int(np.prod(per_shard)) * 16
    for key in np.ndindex(*grid):
        files = [(tmp_path / name / "c" / "/".join(map(str, key))).read_bytes() for name in ("zarr", "mine")]
        assert len(files[0]) == len(files[1])
        idx = []
        for raw in files:
            tail = raw[-n_index - 4:]
            assert google_crc32c.value(tail[:-4]) == int.from_bytes(tail[-4:], "little")
            idx.append(np.frombuffer(tail[:-4], "<u8").reshape(-1, 2))
        for (o0, n0), (o1, n1) in zip(*idx):
            assert n0 == n1 and files[0][o0:o0 + n0] == files[1][o1:o1 + n1]
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "mine"))[:], data)
    reader = ShardReader.open(tmp_path / "mine")
    out = np.empty(shape, np.dtype(dtype).newbyteorder("<"))
    np.testing.assert_array_equal(reader.read(tuple(slice(0, n) for n in shape), out), data)


def test_encoder_refuses_other_layouts(tmp_path):
    from ecm_dask.store.shards import ShardEncoder

    zarr.create_array(store=str(tmp_path / "plain"), shape=(10, 8, 8), chunks=(10, 8, 8), dtype=np.uint16)
    assert ShardEncoder.open(tmp_path / "plain") is None
    assert ShardEncoder.open(tmp_path / "absent") is None


def test_neighbouring_chunks_are_read_in_one_request():
    from ecm_dask.store.shards import SPAN_GAP, SPAN_MAX, _spans

    # out of order, adjacent, a small gap, a large gap, and a span that would grow past SPAN_MAX
    wanted = [(300, 100, "c"), (0, 100, "a"), (100, 100, "b"), (400 + SPAN_GAP + 1, 50, "far"),
              (10**9, SPAN_MAX - 10, "big"), (10**9 + SPAN_MAX - 10, 20, "next")]
    spans = _spans(wanted)
    assert [(o, n, [k for *_, k in m]) for o, n, m in spans] == [
        (0, 400, ["a", "b", "c"]), (400 + SPAN_GAP + 1, 50, ["far"]), (10**9, SPAN_MAX - 10, ["big"]),
        (10**9 + SPAN_MAX - 10, 20, ["next"])]


def test_a_block_read_issues_one_request_for_nearby_chunks(tmp_path, monkeypatch):
    """A 2 x 3-chunk selection of a shard written in C order (rows of chunks a few KiB apart) is read with one pread
    (plus the index), not 6."""
    from ecm_dask.store.integrity import codecs
    from ecm_dask.store.series import compressor
    from ecm_dask.store.shards import ShardEncoder

    data = np.random.default_rng(0).integers(0, 500, (6, 64, 64)).astype(np.uint16)
    zarr.create_array(store=str(tmp_path / "a"), shape=data.shape, chunks=(6, 8, 8), shards=(6, 64, 64),
                      dtype=np.uint16, compressors=codecs(compressor()), config={"write_empty_chunks": True})
    ShardEncoder.open(tmp_path / "a").write((0, 0, 0), data)
    reader = ShardReader.open(tmp_path / "a")
    calls = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: (calls.append(n), real(fd, n, off))[1])
    sel = (slice(0, 6), slice(10, 24), slice(4, 20))  # chunk rows 1-2, chunk columns 0-2
    out = np.empty((6, 14, 16), np.uint16)
    np.testing.assert_array_equal(reader.read(sel, out), data[sel])
    assert len(calls) == 1 + 1
