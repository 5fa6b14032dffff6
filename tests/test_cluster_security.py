"""Network exposure (issue 13, item 8): a local cluster listens beyond loopback only with TLS or an explicit
--insecure-host; the dashboard stays on loopback unless asked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ecm_dask.cluster import check_host, connect, is_loopback
from ecm_dask.errors import InputError


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host):
    assert is_loopback(host)
    check_host(host)  # nothing to refuse


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.5", "myhost.example.org", "eth0", ""])
def test_other_addresses_need_tls_or_an_explicit_insecure_flag(host):
    assert not is_loopback(host)
    with pytest.raises(InputError, match="--tls.*--insecure-host"):
        check_host(host)
    check_host(host, tls=True)
    said = []
    check_host(host, insecure=True, log=said.append)
    assert len(said) == 1 and said[0].startswith("warning:") and "without TLS" in said[0]


def test_connect_refuses_before_starting_anything():
    with pytest.raises(InputError, match="--host 0.0.0.0"):
        with connect("local", workers=1, host="0.0.0.0", log=lambda line: None):
            pass
    with pytest.raises(InputError, match="--dashboard-host 0.0.0.0"):
        with connect("local", workers=1, dashboard_host="0.0.0.0", log=lambda line: None):
            pass


def test_the_dashboard_stays_on_loopback_when_the_cluster_is_open():
    from urllib.parse import urlparse

    import psutil

    lines = []
    with connect("local", workers=1, host="0.0.0.0", insecure_host=True, log=lines.append) as client:
        port = urlparse(client.dashboard_link).port
        bound = {c.laddr.ip for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert bound and all(is_loopback(ip) for ip in bound), (client.dashboard_link, bound)  # what it listens on
        scheduler_port = urlparse(client.scheduler.address).port
        opened = {c.laddr.ip for c in psutil.net_connections(kind="inet")
                  if c.status == psutil.CONN_LISTEN and c.laddr.port == scheduler_port}
        assert opened == {"0.0.0.0"}  # the scheduler is open, as asked
    assert lines[0].startswith("warning:")


def _run_cli(tmp_path, *extra, config=None):
    args = [sys.executable, "-m", "ecm_dask", "run", str(tmp_path / "nothing.zarr"), "-o", str(tmp_path / "r.zarr"),
            "--quiet"]
    if config is not None:
        args += ["--config", str(config)]
    return subprocess.run([*args, *extra], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how", ["flag", "config"])
def test_cli_refuses_an_open_host_in_one_line_before_anything(tmp_path, how):
    config = None
    if how == "config":
        config = tmp_path / "run.yaml"
        config.write_text("host: 0.0.0.0\n")
        r = _run_cli(tmp_path, config=config)
    else:
        r = _run_cli(tmp_path, "--host", "0.0.0.0")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --host 0.0.0.0"), r.stderr
    # refused before the series is even looked at (it does not exist) and before any cluster
    assert "no such store" not in r.stderr and "dask scheduler" not in r.stderr


def test_with_tls_a_plain_client_cannot_join_an_open_cluster():
    from distributed import Client

    with connect("local", workers=1, host="0.0.0.0", tls=True, log=lambda line: None) as client:
        address = client.scheduler.address
        assert address.startswith("tls://")
        plain = "tcp://" + address.removeprefix("tls://")
        with pytest.raises((OSError, TimeoutError)):
            Client(plain, timeout="3s")
