"""Ingest of a series larger than a memory cap runs in bounded memory (peak RSS of a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

CAP_MB = 300  # the cap: the series below is > 4x this size (measured peak 239 MiB, imports included)
FRAMES, NY, NX = 640, 1024, 1024  # uint16: 1280 MiB


def _write_npy(path):
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(FRAMES, NY, NX))
    block = np.random.default_rng(0).integers(0, 1024, (50, NY, NX), dtype=np.uint16)  # drawn once: cheap
    for t0 in range(0, FRAMES, 50):
        n = min(50, FRAMES - t0)
        out[t0:t0 + n] = (block[:n] + np.uint16(t0)) % np.uint16(1024)  # every block different
    out.flush()
    del out


SCRIPT = r"""
import json, sys
from ecm_dask.pipeline.ingest import ingest


def peak_rss_mb():
    # VmHWM belongs to this address space; ru_maxrss would include the parent's RSS from before execve
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
ingest(sys.argv[1], sys.argv[2], frame_time_s=0.5, pixel_size_nm=0.3, shard_mb=16, progress=False)
print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
"""


@pytest.mark.slow
def test_ingest_of_series_4x_larger_than_cap_has_bounded_peak_rss(tmp_path):
    src = tmp_path / "big.npy"
    _write_npy(src)
    series_mb = FRAMES * NY * NX * 2 / 2**20
    assert series_mb > 4 * CAP_MB
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(tmp_path / "big.zarr")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    print(f"series {series_mb:.0f} MiB, peak RSS {peak:.0f} MiB")
    assert peak < CAP_MB
    # and the data arrived intact (spot check against the input)
    import zarr

    arr = zarr.open_array(str(tmp_path / "big.zarr" / "intensity"), mode="r")
    ref = np.load(src, mmap_mode="r")
    for t in (0, 437, FRAMES - 1):
        np.testing.assert_array_equal(arr[t, 100:300, 500:700], ref[t, 100:300, 500:700])
