"""Network exposure (issue 13, item 8): a local cluster listens beyond loopback only with TLS or an explicit
--insecure-host; the dashboard stays on loopback unless asked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ecm_dask.cluster import check_host, connect, is_loopback
from ecm_dask.errors import EcmError, ParameterError


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "127.255.255.254", "::1", "[::1]", "0:0:0:0:0:0:0:1",
                                  "::ffff:127.0.0.1", "localhost", "LOCALHOST"])
def test_loopback_addresses(host):
    assert is_loopback(host)
    check_host(host)  # nothing to refuse


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "192.168.1.20", "10.0.0.5", "128.0.0.1", "::ffff:10.0.0.5",
                                  "fe80::1", "myhost.example.org", "eth0", "127.0.0.1:8786", "tcp://0.0.0.0", ""])
def test_other_addresses_need_tls_or_an_explicit_insecure_flag(host):
    assert not is_loopback(host)
    with pytest.raises(ParameterError, match="--tls.*--insecure-host") as refused:
        check_host(host)
    message = str(refused.value)
    assert isinstance(refused.value, EcmError) and message.startswith(f"--host {host} ") and "\n" not in message
    check_host(host, tls=True)
    said = []
    check_host(host, insecure=True, log=said.append)
    assert len(said) == 1 and said[0].startswith("warning:") and "without TLS" in said[0]


def test_connect_refuses_before_starting_anything():
    with pytest.raises(ParameterError, match="--host 0.0.0.0"):
        with connect("local", workers=1, host="0.0.0.0", log=lambda line: None):
            pass
    with pytest.raises(ParameterError, match="--dashboard-host 0.0.0.0"):
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


@pytest.mark.parametrize("extra, refused", [
    (["--host", "0.0.0.0", "--tls"], None),  # allowed: the refusal that follows is the missing series
    (["--host", "0.0.0.0", "--insecure-host"], None),
    (["--host", "localhost"], None),
    (["--host", "192.168.1.20", "--cluster", "local"], "--host 192.168.1.20"),
    (["--workers", "1", "--dashboard-host", "0.0.0.0"], "--dashboard-host 0.0.0.0"),
    (["--host", "0.0.0.0", "--tls", "--dashboard-host", "0.0.0.0"], "--dashboard-host 0.0.0.0"),  # TLS: not its http
])
def test_cli_host_rules(tmp_path, extra, refused):
    r = _run_cli(tmp_path, *extra)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    if refused:
        assert lines[0].startswith(f"error: {refused} ") and "no such store" not in lines[0], r.stderr
    else:
        assert "--host" not in lines[0] and "--dashboard-host" not in lines[0], r.stderr


def test_with_tls_a_plain_client_cannot_join_an_open_cluster():
    from distributed import Client

    with connect("local", workers=1, host="0.0.0.0", tls=True, log=lambda line: None) as client:
        address = client.scheduler.address
        assert address.startswith("tls://")
        plain = "tcp://" + address.removeprefix("tls://")
        with pytest.raises((OSError, TimeoutError)):
            Client(plain, timeout="3s")
