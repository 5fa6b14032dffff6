"""Progress in logs and the stage watchdog (issue 13, items 7 and 10): off a terminal one line at the start and
end of a stage and at most one per interval in between; a stage with no progress stops with a message."""

from __future__ import annotations

import io
import time

import dask
import pytest

from ecm_dask import compute
from ecm_dask.errors import ResourceError


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _sleepers(n, s):
    return [dask.delayed(time.sleep, pure=False)(s) for _ in range(n)]


def _lines(text):
    return [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()]


@pytest.mark.parametrize("where", ["threads", "distributed"])
def test_off_a_terminal_a_stage_writes_a_few_lines(where, monkeypatch):
    from distributed import Client

    monkeypatch.setattr(compute, "LOG_INTERVAL_S", 0.5)
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    tasks = _sleepers(24, 0.1)  # ~2.4 s of work on one thread: ~4 interval lines at most
    if where == "threads":
        with dask.config.set(scheduler="threads", num_workers=1):
            compute.run(tasks, label="g2 of (24,)")
    else:
        with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None):
            compute.run(tasks, label="g2 of (24,)")
    lines = _lines(log.getvalue())
    assert lines[0] == "g2 of (24,): 24 task(s)" and lines[-1].startswith("  done: g2 of (24,) in ")
    middle = lines[1:-1]
    assert 1 <= len(middle) <= 7 and all("tasks) after" in ln for ln in middle), lines
    assert "\r" not in log.getvalue() and "[#" not in log.getvalue()  # no bar frames in a log


@pytest.mark.parametrize("where", ["threads", "distributed"])
def test_a_short_stage_in_a_log_is_two_lines_and_a_failed_one_says_stopped(where, monkeypatch):
    from distributed import Client

    assert compute.LOG_INTERVAL_S == 60.0  # the default: one line a minute
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)

    def boom():
        raise RuntimeError("boom")

    def both():
        compute.run(_sleepers(6, 0.05), label="drift")
        with pytest.raises(RuntimeError, match="boom"):
            compute.run([dask.delayed(boom, pure=False)()], label="fit")

    if where == "threads":
        with dask.config.set(scheduler="threads", num_workers=2):
            both()
    else:
        with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
            both()
    lines = _lines(log.getvalue())
    assert len(lines) == 4, lines
    assert lines[0] == "drift: 6 task(s)" and lines[1].startswith("  done: drift in ") and lines[1].endswith(" s")
    assert lines[2] == "fit: 1 task(s)" and lines[3].startswith("  stopped: fit in "), lines


def test_a_long_stage_in_a_log_costs_one_line_per_interval(monkeypatch):
    """The old bars wrote a frame every 0.1-0.5 s (2.6 MB per stage-hour); now one line per minute."""
    log = io.StringIO()
    p = compute.Progress(1000, "fit", stream=log)
    clock = [0.0]
    monkeypatch.setattr(compute.time, "monotonic", lambda: clock[0])
    p.start = p.last = 0.0
    for i in range(3600 * 10):  # one simulated hour, an update every 0.1 s
        clock[0] = i * 0.1
        p.update(i * 1000 // 36000)
    p.close()
    lines = _lines(log.getvalue())
    assert 59 <= len(lines) - 2 <= 61 and len(log.getvalue()) < 4000


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    tty = _Tty()
    p = compute.Progress(10, "drift", stream=tty)
    for i in range(11):
        p.update(i)
        time.sleep(0.11)
    p.close()
    text = tty.getvalue()
    assert text.startswith("drift\n") and "\r[" in text and "100% 10/10" in text and "done:" not in text


def test_a_stage_without_progress_stops_with_a_message(monkeypatch):
    from distributed import Client

    monkeypatch.setenv(compute.STALL_ENV, "1.5")
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None):
        t0 = time.perf_counter()
        with pytest.raises(ResourceError, match=r"fit stage: no task finished for \d+ s .*ECM_DASK_STALL_TIMEOUT"):
            compute.run(_sleepers(2, 6.0), progress=False, label="fit stage")
        assert time.perf_counter() - t0 < 5


def test_workers_paused_at_their_memory_limit_stop_the_stage(monkeypatch):
    from distributed import Client

    monkeypatch.setattr(compute, "PAUSED_TIMEOUT_S", 1.0)
    monkeypatch.setattr(compute, "_paused_workers", lambda client: (1, 1))  # what a paused worker reports
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None):
        with pytest.raises(ResourceError, match="all 1 worker.s. are paused at their memory limit.*--memory-limit"):
            compute.run(_sleepers(2, 6.0), progress=False, label="g2")


def _die():
    import os

    os._exit(1)


@pytest.mark.slow
def test_a_worker_killed_again_and_again_is_one_clear_error():
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
                Client(lc):
            with pytest.raises(ResourceError, match="a worker died again and again.*--memory-limit"):
                compute.run([dask.delayed(_die, pure=False)()], progress=False, label="g2 of (4000, 512, 512)")


def test_the_stall_timeout_setting_is_checked(monkeypatch):
    monkeypatch.setenv(compute.STALL_ENV, "nan")
    with pytest.raises(ResourceError, match="ECM_DASK_STALL_TIMEOUT must be a positive number"):
        compute._stall_timeout()


def test_the_stall_timeout_is_a_run_option(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ecm_dask.cli import main

    monkeypatch.setenv(compute.STALL_ENV, "3600")  # restored (to unset) after the test, whatever the CLI sets
    r = CliRunner().invoke(main, ["run", str(tmp_path / "missing.zarr"), "-o", str(tmp_path / "r.zarr"),
                                  "--stall-timeout", "7", "--cluster", "threads", "--quiet"])
    assert r.exit_code == 2 and "no such store" in r.output  # refused, but the option took effect first
    assert compute._stall_timeout() == 7.0
    r = CliRunner().invoke(main, ["run", str(tmp_path / "missing.zarr"), "-o", str(tmp_path / "r.zarr"),
                                  "--stall-timeout", "0"])
    assert r.exit_code == 2 and "--stall-timeout" in r.output
