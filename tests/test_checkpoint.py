"""Stage checkpoints: an interrupted stage leaves nothing that looks finished and keeps an older result."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from ecm_dask.errors import StoreError
from ecm_dask.store.blocks import write_dataset as write_checkpoint


def _boom(block):
    raise RuntimeError("worker died")


def test_interrupted_stage_leaves_no_result_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "g2.zarr"
    good = xr.Dataset({"a": (("y",), da.arange(10, chunks=5))})
    write_checkpoint(good, out, progress=False)
    bad = xr.Dataset({"a": (("y",), da.arange(10, chunks=5).map_blocks(_boom, dtype=np.int64))})
    with pytest.raises(RuntimeError, match="worker died"):
        write_checkpoint(bad, out, overwrite=True, progress=False)
    np.testing.assert_array_equal(xr.open_zarr(out).a.values, np.arange(10))  # the old result survived
    with pytest.raises(RuntimeError):
        write_checkpoint(bad, tmp_path / "new.zarr", progress=False)
    assert not (tmp_path / "new.zarr").exists()  # never a half-written store under the final name
    with pytest.raises(StoreError, match="--overwrite"):
        write_checkpoint(good, out, progress=False)
    (tmp_path / "notes").mkdir()
    with pytest.raises(StoreError, match="not a Zarr store"):
        write_checkpoint(good, tmp_path / "notes", overwrite=True, progress=False)
