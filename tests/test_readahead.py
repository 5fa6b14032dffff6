"""The series read into the page cache ahead of the g2 stage (ecm_dask.store.readahead): every chunk file, in the
background, only where it fits in memory, stopped with its block; and the pipeline asks for it only where it helps."""

import ctypes
import mmap
import os
from contextlib import nullcontext

import numpy as np
import pytest

from ecm_dask.store import readahead as R

linux_only = pytest.mark.skipif(not hasattr(mmap, "MAP_POPULATE"), reason="MAP_POPULATE is Linux only")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A small series in several shard files (20 frames of 48 x 64 uint16 each)."""
    from ecm_dask.synth import SynthParams, write_synthetic_series

    return write_synthetic_series(tmp_path_factory.mktemp("readahead") / "series.zarr",
                                  SynthParams(ny=48, nx=64, n_frames=200, seed=3), tile=16,
                                  shard_bytes=20 * 48 * 64 * 2, progress=False)


def _resident_fraction(path) -> float:
    """Fraction of the file's pages in the page cache (mincore(2) on a mapping that touches none of them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = os.path.getsize(path)
    page = mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = ctypes.create_string_buffer(-(-size // page))
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
            return float(np.mean(np.frombuffer(vec.raw, np.uint8) & 1))
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def _evict(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages cannot be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@linux_only
def test_every_chunk_file_of_the_series_ends_up_in_the_page_cache(sharded):
    files = R.chunk_files(sharded)
    assert len(files) > 1 and set(files) == {p for p in (sharded / "intensity" / "c").rglob("*") if p.is_file()}
    for f in files:
        _evict(f)
    before = [_resident_fraction(f) for f in files]
    with R.warm(sharded) as w:
        assert w is not None and w.join(timeout=60)
    assert w.files == len(files) and w.bytes == sum(f.stat().st_size for f in files)
    assert [_resident_fraction(f) for f in files] == [1.0] * len(files)
    if max(before) < 1.0:  # this file system can drop pages: they were read by the warmer, not left from before
        assert np.mean(before) < 0.5


@linux_only
def test_nothing_is_read_where_the_series_would_not_fit_or_when_turned_off(sharded, monkeypatch):
    with R.warm(sharded, fraction=1e-12) as w:
        assert w is None  # the files take more than that fraction of the available memory
    monkeypatch.setenv(R.ENV, "0")
    with R.warm(sharded) as w:
        assert w is None
    monkeypatch.delenv(R.ENV)
    with R.warm(sharded / "missing.zarr") as w:
        assert w is None  # no chunk files: nothing to do (the stage reports the missing store)


@linux_only
def test_a_stopped_warmer_reads_no_further_and_its_thread_ends(sharded, tmp_path):
    files = R.chunk_files(sharded)
    w = R.Warmer([tmp_path / "gone.bin", *files])  # a file that cannot be opened is skipped
    w._stop.set()
    w.start()
    w.stop()
    assert w.files == 0 and w.bytes == 0 and w.join(timeout=0)
    w = R.Warmer([tmp_path / "gone.bin", *files]).start()
    assert w.join(timeout=60) and w.files == len(files)


def test_the_pipeline_warms_the_series_only_for_a_g2_stage_on_this_machine(sharded, monkeypatch):
    from ecm_dask.pipeline.run import series_readahead

    calls = []
    monkeypatch.setattr(R, "warm", lambda path, **kw: calls.append(path) or nullcontext("warming"))
    with series_readahead(sharded) as w:  # threaded scheduler, g2 still to compute
        assert w == "warming" and calls == [sharded]
    with series_readahead(sharded, needed=False) as w:  # its checkpoint is there: nothing reads the series
        assert w is None and calls == [sharded]
