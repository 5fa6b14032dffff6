"""Large store files written past the page cache (ecm_dask.store.direct): same bytes, atomic, safe fallbacks."""

import errno
import os

import numpy as np
import pytest

from ecm_dask.store import direct as D


@pytest.mark.parametrize("n", [0, 1, D.MIN_BYTES - 1, D.MIN_BYTES, D.MIN_BYTES + 1, D.BLOCK, D.BLOCK + 1,
                               2 * D.BLOCK + D.ALIGN - 1])
def test_write_file_round_trip(tmp_path, n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    path = tmp_path / "sub" / "f.bin"
    assert D.write_file(path, data) == n
    assert path.read_bytes() == data.tobytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]  # no temporary file left


def test_write_file_replaces_existing(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (5 * D.MIN_BYTES))
    new = bytes(range(256)) * (D.MIN_BYTES // 256 + 3)
    D.write_file(path, new)
    assert path.read_bytes() == new


def test_large_files_take_the_direct_path(tmp_path, monkeypatch):
    if not D.enabled():
        pytest.skip("no O_DIRECT on this platform")
    calls = []
    real = D._direct
    monkeypatch.setattr(D, "_direct", lambda tmp, view: (calls.append(view.nbytes), real(tmp, view)))
    D.write_file(tmp_path / "small", b"s" * 100)
    D.write_file(tmp_path / "large", b"l" * (D.MIN_BYTES + 10))
    assert calls == [D.MIN_BYTES + 10]


def test_switched_off_by_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(D.ENV, "0")
    monkeypatch.setattr(D, "_direct", lambda *a: pytest.fail("direct write although switched off"))
    data = b"z" * (3 * D.MIN_BYTES)
    D.write_file(tmp_path / "f", data)
    assert (tmp_path / "f").read_bytes() == data


def test_refusing_file_system_falls_back_and_is_remembered(tmp_path, monkeypatch):
    calls = []

    def refuse(tmp, view):
        calls.append(1)
        open(tmp, "wb").close()  # the temporary file exists when the write is refused
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(D, "_direct", refuse)
    monkeypatch.setattr(D, "_refused", set())
    monkeypatch.setattr(D, "enabled", lambda: True)
    data = os.urandom(2 * D.MIN_BYTES)
    for name in ("a", "b"):
        D.write_file(tmp_path / name, data)
        assert (tmp_path / name).read_bytes() == data
    assert calls == [1]  # the second file did not try again on the same device
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_other_errors_propagate_and_leave_nothing(tmp_path, monkeypatch):
    def full(tmp, view):
        open(tmp, "wb").close()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(D, "_direct", full)
    monkeypatch.setattr(D, "enabled", lambda: True)
    (tmp_path / "f").write_bytes(b"old")
    with pytest.raises(OSError, match="No space"):
        D.write_file(tmp_path / "f", b"n" * (2 * D.MIN_BYTES))
    assert (tmp_path / "f").read_bytes() == b"old"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_series_store_identical_with_and_without_direct_writes(tmp_path, monkeypatch):
    """The ingest writes byte-identical shard files either way (2 MiB shards of random counts)."""
    from ecm_dask.pipeline.ingest import ingest

    calls = []
    real = D._direct
    monkeypatch.setattr(D, "_direct", lambda tmp, view: (calls.append(view.nbytes), real(tmp, view)))
    counts = np.random.default_rng(1).integers(0, 60000, (56, 160, 192), dtype=np.uint16)  # 2 shards of 28 frames
    np.save(tmp_path / "frames.npy", counts)
    stores = {}
    for flag in ("1", "0"):
        monkeypatch.setenv(D.ENV, flag)
        stores[flag] = ingest(tmp_path / "frames.npy", tmp_path / f"s{flag}.zarr", frame_time_s=0.5,
                              pixel_size_nm=0.3, shard_mb=2, progress=False)
    shards = sorted((stores["1"] / "intensity" / "c").rglob("*"))
    files = [p for p in shards if p.is_file()]
    assert len(files) >= 2 and min(p.stat().st_size for p in files) >= D.MIN_BYTES
    if D.enabled():
        assert len(calls) == len(files)  # every shard went the direct way with the flag on, none with it off
    for p in files:
        twin = stores["0"] / p.relative_to(stores["1"])
        assert p.read_bytes() == twin.read_bytes()
    import xarray as xr
    back = xr.open_zarr(stores["1"], consolidated=True)["intensity"].values
    np.testing.assert_array_equal(back, counts)


def test_new_file_is_all_or_nothing_and_refuses_a_file_that_appeared_meanwhile(tmp_path):
    """store.direct.new_file, the one atomic writer of whole files (write_file, live state, NeXus export)."""
    from ecm_dask.errors import StoreError
    from ecm_dask.store.direct import new_file

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with new_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with new_file(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible until the block ends
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    fresh = tmp_path / "fresh.bin"
    with pytest.raises(StoreError, match=r"fresh\.bin already exists .*; use --force"):
        with new_file(fresh, replace=False, exists_hint="; use --force") as tmp:
            tmp.write_bytes(b"mine")
            fresh.write_bytes(b"theirs")  # another process got there first
    assert fresh.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["fresh.bin", "out.bin"]
    fresh.unlink()
    with new_file(fresh, replace=False) as tmp:
        tmp.write_bytes(b"mine")
    assert fresh.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == ["fresh.bin", "out.bin"]
