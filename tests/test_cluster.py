"""Where the work runs: LocalCluster bound to 127.0.0.1, TLS, scheduler addresses, jobqueue profiles, and a
real multi-process cluster started from the command line (dask scheduler + dask worker), with a worker
killed mid-stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import BLOCK_MB, assert_same_results, ecm_cli

from ecm_dask.cluster import connect, load_profile
from ecm_dask.errors import InputError

PROFILES = Path(__file__).resolve().parents[1] / "cluster" / "profiles.yaml"


def _inc(x):
    return x + 1


def test_local_cluster_listens_on_localhost_only_and_reports_its_dashboard():
    lines = []
    with connect("local", workers=2, memory_limit="600MB", log=lines.append) as client:
        info = client.scheduler_info()
        assert urlparse(info["address"]).hostname == "127.0.0.1"
        workers = info["workers"]
        assert len(workers) == 2
        assert all(urlparse(a).hostname == "127.0.0.1" for a in workers)
        assert all(w["memory_limit"] == 600_000_000 and w["nthreads"] == 1 for w in workers.values())
        assert urlparse(client.dashboard_link).hostname == "127.0.0.1"
        assert client.submit(_inc, 41).result() == 42
    assert len(lines) == 1 and "2 worker(s)" in lines[0] and client.dashboard_link in lines[0]


def test_tls_cluster_refuses_clients_without_its_credentials():
    from distributed import Client

    with connect("local", workers=1, tls=True, log=lambda _: None) as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(_inc, 1).result() == 2
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout="3s")
        from distributed.security import Security

        with pytest.raises((OSError, TimeoutError)):  # TLS with another certificate authority
            Client(address, security=Security.temporary(), timeout="3s")


def test_threads_means_no_client_and_bad_choices_are_named():
    with connect("threads") as client:
        assert client is None
    with pytest.raises(InputError, match="'kubernetes' is not one of threads, local"):
        with connect("kubernetes"):
            pass
    with pytest.raises(InputError, match="'2 potatoes' is not a size"):
        with connect("local", memory_limit="2 potatoes"):
            pass
    with pytest.raises(InputError, match="--workers must be at least 1"):
        with connect("local", workers=0):
            pass
    with pytest.raises(InputError, match="for slurm or pbs clusters, not --cluster local"):
        with connect("local", profile="slurm-local"):
            pass


def test_profiles_give_the_expected_batch_scripts(tmp_path):
    from dask_jobqueue import PBSCluster, SLURMCluster

    slurm = load_profile("slurm-example", PROFILES)
    assert slurm["kind"] == "slurm" and slurm["workers"] == 16
    options = {k: v for k, v in slurm.items() if k not in ("kind", "workers", "wait_timeout", "description")}
    options["log_directory"] = str(tmp_path)
    with SLURMCluster(**options) as jc:
        script = jc.job_script()
    assert "#SBATCH -p normal" in script and "#SBATCH --mem=30G" in script and "--nthreads 1" in script
    assert "--local-directory $TMPDIR" in script and "export OMP_NUM_THREADS=1" in script
    pbs = load_profile("pbs-example", PROFILES)
    options = {k: v for k, v in pbs.items() if k not in ("kind", "workers", "wait_timeout", "description")}
    options["log_directory"] = str(tmp_path)
    with PBSCluster(**options) as jc:
        assert "#PBS -l select=1:ncpus=8:mem=32GB" in jc.job_script()
    with pytest.raises(InputError, match="no cluster profile named 'nope'.*slurm-example"):
        load_profile("nope", PROFILES)
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  x:\n    kind: kubernetes\n")
    with pytest.raises(InputError, match="profile 'x' needs kind: slurm or pbs"):
        load_profile("x", bad)


def test_unreachable_scheduler_is_a_clear_error():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(InputError, match=f"cannot connect to the dask scheduler at tcp://127.0.0.1:{port}"):
            with connect(f"tcp://127.0.0.1:{port}"):
                pass


# ------------------------------------------------------------------ a cluster started from the command line

class CommandLineCluster:
    """``dask scheduler`` + ``dask worker`` processes on 127.0.0.1, each in its own process group."""

    def __init__(self, directory: Path, n_workers: int = 2):
        self.dir = directory
        self.file = directory / "scheduler.json"
        dask_cli = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        self.scheduler = self._start(dask_cli + ["--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                                                 "127.0.0.1:0", "--scheduler-file", str(self.file)], "scheduler")
        import json

        deadline, self.address = time.time() + 60, None
        while self.address is None and time.time() < deadline:  # the file appears before it is written
            try:
                self.address = json.loads(self.file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        assert self.address, f"dask scheduler did not start: {(directory / 'scheduler.log').read_text()}"
        self.workers = [self._start([sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                                     "--nthreads", "1", "--memory-limit", "1GB", "--host", "127.0.0.1",
                                     "--local-directory", str(directory / f"w{i}")], f"worker{i}")
                        for i in range(n_workers)]
        from distributed import Client

        with Client(self.address, timeout="30s") as c:
            c.wait_for_workers(n_workers, timeout=60)

    def _start(self, cmd, name):
        log = open(self.dir / f"{name}.log", "w")
        # a killed worker is normally noticed at once (its connections close); should that notice be lost on a
        # loaded machine, the scheduler drops a worker silent for 20 s instead of the default 5 minutes
        env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "20s"}
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def kill(self, proc):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def close(self):
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def cli_cluster(tmp_path):
    (tmp_path / "cluster").mkdir()
    cluster = CommandLineCluster(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.slow
def test_pipeline_on_a_command_line_cluster_equals_the_single_process_run(cli_cluster, blocked_series,
                                                                        blocked_reference, tmp_path):
    out = tmp_path / "results.zarr"
    r = ecm_cli("run", blocked_series, "-o", out, "--cluster", cli_cluster.address, "--block-mb", BLOCK_MB,
                "--no-report")
    assert f"dask scheduler {cli_cluster.address}: 2 worker(s)" in r.stderr
    assert_same_results(out, blocked_reference)


# run on the workers (a source string: they cannot import this test module): every block write takes 0.4 s
# longer, so the g2 stage lasts a few seconds
SLOW_BLOCKS = """
import time
import ecm_dask.store.blocks as blocks
if not hasattr(blocks, "_orig_write_block"):
    blocks._orig_write_block = blocks._write_block
    def slow(*args):
        time.sleep(0.4)
        return blocks._orig_write_block(*args)
    blocks._write_block = slow
"""


@pytest.mark.slow
def test_a_worker_killed_mid_g2_does_not_change_the_result(cli_cluster, blocked_series, blocked_reference, tmp_path):
    from distributed import Client

    from ecm_dask.pipeline.run import stage_dir
    from ecm_dask.store import blocks as B

    with Client(cli_cluster.address) as c:
        c.run(exec, SLOW_BLOCKS, {})
    out = tmp_path / "results.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "ecm_dask", "run", str(blocked_series), "-o", str(out),
                             "--cluster", cli_cluster.address, "--block-mb", BLOCK_MB, "--quiet",
                             "--no-report"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ticks = stage_dir(out) / "g2.zarr.partial" / B.DONE / "c"
    deadline = time.time() + 120
    while (not ticks.exists() or sum(1 for p in ticks.rglob("*") if p.is_file()) < 2) and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    cli_cluster.kill(cli_cluster.workers[0])  # worker and its nanny: gone for good
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_results(out, blocked_reference)


def test_default_local_memory_is_split_among_the_workers_asked_for():
    import psutil

    from ecm_dask.cluster import default_local_workers

    total = psutil.virtual_memory().total
    assert default_local_workers(workers=4) == (4, int(0.8 * total // 4))
    assert default_local_workers(123, workers=3) == (3, 123)
    n, memory = default_local_workers()
    assert 1 <= n <= (os.cpu_count() or 1) and memory == int(0.8 * total // n)


def test_a_threads_run_never_imports_distributed(blocked_series, tmp_path):
    """On one machine the default run uses dask's threaded scheduler; looking for a distributed client costs every
    run ~0.25 s of imports, so the scheduler is handed to dask as a function and distributed is never imported."""
    code = ("import sys; from ecm_dask.cli import entry; sys.argv = ['ecm-dask', 'run', sys.argv[1], '-o', sys.argv[2], "
            "'--quiet', '--no-report', '--block-mb', '0.01']\n"
            "try:\n    entry()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('distributed' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(blocked_series), str(tmp_path / "r.zarr")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "r.zarr" / "zarr.json").is_file()
