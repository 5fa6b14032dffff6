"""Fixtures shared by the pipeline, resume and cluster tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecm_dask.synth import SynthParams, write_synthetic_series

#: a small synthetic series cut into 3 x 4 g2 blocks (16 x 16 pixel tiles, --block-mb small)
BLOCKED_PARAMS = SynthParams(ny=48, nx=64, n_frames=600, seed=21)
BLOCK_MB = "0.01"


@pytest.fixture(scope="session")
def blocked_series(tmp_path_factory) -> Path:
    return write_synthetic_series(tmp_path_factory.mktemp("blocked") / "series.zarr", BLOCKED_PARAMS, tile=16,
                                  progress=False)


def ecm_cli(*args, env=None, timeout=300, check=True, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m ecm_dask ARGS`` and return the finished process (stderr in the assertion message)."""
    full_env = {**os.environ, **(env or {})}
    r = subprocess.run([sys.executable, "-m", "ecm_dask", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=full_env, **kwargs)
    if check:
        assert r.returncode == 0, f"ecm-dask {' '.join(map(str, args))} failed:\n{r.stderr}"
    return r


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The one ``error: ...`` line of a refused command (exit 2, nothing else on stderr, no traceback)."""
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, r.stderr)
    return lines[0]


@pytest.fixture(scope="session")
def blocked_reference(blocked_series, tmp_path_factory) -> Path:
    """results.zarr of an uninterrupted single-process run (threads) of ``blocked_series``."""
    out = tmp_path_factory.mktemp("reference") / "results.zarr"
    ecm_cli("run", blocked_series, "-o", out, "--cluster", "threads", "--block-mb", BLOCK_MB, "--quiet",
            "--no-report")
    return out


def assert_same_results(a: Path, b: Path) -> None:
    """Every map and the g2 of two result stores are identical (NaN where NaN); the drift group equal to
    1e-12 (its upsampled DFT uses BLAS, whose last bit depends on the thread count of the process)."""
    import numpy as np
    import xarray as xr

    ta, tb = xr.open_datatree(a, engine="zarr"), xr.open_datatree(b, engine="zarr")
    for group in ("/", "/g2", "/drift", "/fit", "/artefacts", "/regions", "/distributions"):
        da_, db_ = ta[group].to_dataset(), tb[group].to_dataset()
        assert sorted(da_.data_vars) == sorted(db_.data_vars), group
        for name in da_.data_vars:
            x, y = da_[name].values, db_[name].values
            if group == "/drift" and x.dtype.kind == "f":
                np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12, err_msg=f"{group}/{name}")
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"{group}/{name}")
