"""A real single-node SLURM (munge + slurmctld + slurmd started by cluster/slurm/local-slurm.sh): dask-jobqueue
submits the workers with sbatch and the pipeline's result equals the single-process run.

Skipped where SLURM is not installed or we are not root, except under CI=true (.ci/run installs it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import BLOCK_MB, assert_same_results, ecm_cli

SCRIPT = Path(__file__).resolve().parents[1] / "cluster" / "slurm" / "local-slurm.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(b) is None]
    if missing or os.geteuid() != 0:
        why = f"SLURM not available ({', '.join(missing) or 'not root'})"
        if os.environ.get("CI"):
            pytest.fail(why + ": .ci/run installs slurmctld, slurmd, slurm-client and munge")
        pytest.skip(why)
    directory = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURMCTLD_PORT": str(_free_port()), "SLURMD_PORT": str(_free_port())}
    r = subprocess.run(["bash", str(SCRIPT), "start", str(directory)], env=env, capture_output=True, text=True,
                       timeout=120)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        yield {"SLURM_CONF": str(directory / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(directory)], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
def test_pipeline_on_slurm_workers_equals_the_single_process_run(slurm, blocked_series, blocked_reference, tmp_path):
    out = tmp_path / "results.zarr"
    r = ecm_cli("run", blocked_series, "-o", out, "--profile", "slurm-local", "--workers", "2", "--block-mb",
                BLOCK_MB, "--quiet", "--no-report", env=slurm, cwd=tmp_path, timeout=600)
    assert "#SBATCH -p debug" in r.stderr and "for 2 slurm worker(s)" in r.stderr
    logs = list((tmp_path / "ecm-dask-logs").glob("dask-worker-*.err"))
    # the run starts as soon as one worker job has joined (on a busy machine the second may come later)
    assert any("Registered to:" in log.read_text() for log in logs), "a SLURM job's worker joined the scheduler"
    assert_same_results(out, blocked_reference)
    squeue = subprocess.run(["squeue", "-h"], env={**os.environ, **slurm}, capture_output=True, text=True)
    assert squeue.stdout.strip() == "", "worker jobs are cancelled when the run ends"
