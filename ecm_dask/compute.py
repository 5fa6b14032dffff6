"""Run dask work on whatever scheduler is active: progress that suits the terminal or a log, and a watchdog.

Progress: on a terminal a bar redrawn in place; off a terminal (batch logs, redirected stderr) one line when a
stage starts, one when it ends (with its duration) and at most one line every :data:`LOG_INTERVAL_S` seconds in
between, so an hour-long stage writes tens of lines, not megabytes.

Watchdog (distributed clusters): a stage in which no task finishes for :data:`PAUSED_TIMEOUT_S` while every worker
is paused at its memory limit, or for ``ECM_DASK_STALL_TIMEOUT`` seconds (default :data:`STALL_TIMEOUT_S`) whatever
the reason, stops with a :class:`~ecm_dask.errors.ResourceError` naming the cause, never waits forever.  A task
whose worker dies again and again (``KilledWorker``) ends in the same error class with what to change.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

from .errors import ResourceError

#: off a terminal, at most one progress line per this many seconds while a stage runs
LOG_INTERVAL_S = 60.0
#: on a terminal, redraw the bar this often
BAR_INTERVAL_S = 0.5
#: no task finished for this long and every worker paused (memory): stop
PAUSED_TIMEOUT_S = 120.0
#: no task finished for this long, whatever the reason: stop (override with $ECM_DASK_STALL_TIMEOUT, seconds)
STALL_TIMEOUT_S = 3600.0
STALL_ENV = "ECM_DASK_STALL_TIMEOUT"
#: how often the watchdog looks
POLL_S = 0.25


#: set by the SIGINT handler of :func:`interruptible`; the wait loops raise KeyboardInterrupt at their next look
_INTERRUPTED = threading.Event()


@contextmanager
def interruptible():
    """Make Ctrl-C stop the running stage reliably: Python delivers SIGINT as a KeyboardInterrupt to whatever runs
    in the main thread, and one raised inside a callback (distributed's garbage-collection hooks, for instance) is
    printed as "Exception ignored" and lost.  The handler also sets a flag that the wait loops check."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if not _INTERRUPTED.is_set():
            _INTERRUPTED.set()
            import logging

            for name in ("distributed", "asyncio", "tornado"):  # the shutdown that follows is expected: no noise
                logging.getLogger(name).setLevel(logging.CRITICAL)
        raise KeyboardInterrupt

    _INTERRUPTED.clear()
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        interrupted = _INTERRUPTED.is_set()
        _INTERRUPTED.clear()
        if interrupted:  # a KeyboardInterrupt swallowed somewhere still ends the command
            raise KeyboardInterrupt


def _check_interrupt() -> None:
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def active_client():
    """The current distributed client, or None when the local threaded scheduler is in use."""
    if "distributed" not in sys.modules:  # no client can exist; importing distributed costs ~0.3 s
        return None
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _stall_timeout() -> float:
    value = os.environ.get(STALL_ENV)
    if value is None:
        return STALL_TIMEOUT_S
    try:
        t = float(value)
    except ValueError:
        t = float("nan")
    if not t > 0 or t != t or t == float("inf"):
        raise ResourceError(f"${STALL_ENV} must be a positive number of seconds, got {value!r}")
    return t


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s} s" if s < 120 else (f"{s // 60} min {s % 60:02d} s" if s < 7200 else f"{s // 3600} h {s % 3600 // 60:02d} min")


class Progress:
    """Progress of ``total`` tasks to ``stream``: a bar on a terminal, sparse lines in a log."""

    def __init__(self, total: int, label: str = "", *, enabled: bool = True, stream=None):
        self.total, self.label, self.enabled = int(total), label, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = self.last = time.monotonic()
        self.done = -1
        if enabled:
            head = self.label or "computing"
            self._line(f"{head}: {self.total} task(s)" if not self.tty else head)

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if (done != self.done and now - self.last >= 0.1) or now - self.last >= BAR_INTERVAL_S:
                frac = done / max(1, self.total)
                bar = "#" * int(40 * frac)
                self.stream.write(f"\r[{bar:<40}] {frac:4.0%} {done}/{self.total} | {_duration(now - self.start)}")
                self.stream.flush()
                self.last = now
        elif now - self.last >= LOG_INTERVAL_S:
            self._line(f"  {done / max(1, self.total):.0%} ({done}/{self.total} tasks) after {_duration(now - self.start)}")
            self.last = now
        self.done = done

    def close(self, ok: bool = True) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.update(self.total if ok else max(self.done, 0))
            self.stream.write("\n")
            self.stream.flush()
        elapsed = _duration(time.monotonic() - self.start)
        if not self.tty or not ok:
            self._line(f"  {'done' if ok else 'stopped'}: {self.label or 'stage'} in {elapsed}")


def _paused_workers(client) -> tuple[int, int]:
    """(paused, all) workers of the cluster."""
    try:
        workers = client.scheduler_info().get("workers", {})
    except Exception:  # noqa: BLE001 - a scheduler that does not answer is not 'paused'
        return 0, 0
    paused = sum(1 for w in workers.values() if str(w.get("status", "")).endswith("paused"))
    return paused, len(workers)


def _killed_worker(err, label: str) -> ResourceError:
    return ResourceError(f"{label or 'a task'}: a worker died again and again running the same task (usually its "
                         f"memory limit: the operating system or dask killed it) - {err}. Give the workers more "
                         "memory (--memory-limit), fewer threads per worker (--threads), or smaller g2 blocks "
                         "(--block-mb); completed blocks are kept, run the same command again to resume")


def _run_distributed(client, tasks, progress: bool, label: str) -> list[Any]:
    from distributed import wait

    try:
        from distributed import KilledWorker
    except ImportError:  # pragma: no cover - older distributed
        from distributed.scheduler import KilledWorker

    futures = client.compute(list(tasks))
    bar = Progress(len(futures), label, enabled=progress)
    stall = _stall_timeout()
    last_done, last_change = 0, time.monotonic()
    ok = False
    try:
        while True:
            _check_interrupt()
            try:
                wait(futures, timeout=POLL_S)
                break
            except TimeoutError:
                pass
            if any(f.status == "error" for f in futures):
                break  # gather raises it
            done = sum(f.done() for f in futures)
            now = time.monotonic()
            if done != last_done:
                last_done, last_change = done, now
            idle = now - last_change
            if idle > PAUSED_TIMEOUT_S:
                paused, n = _paused_workers(client)
                if n and paused == n:
                    raise ResourceError(
                        f"{label or 'stage'}: no task finished for {_duration(idle)} and all {n} worker(s) are paused "
                        "at their memory limit; give the workers more memory (--memory-limit) or use smaller g2 "
                        "blocks (--block-mb). Completed blocks are kept: run the same command again to resume")
            if idle > stall:
                raise ResourceError(f"{label or 'stage'}: no task finished for {_duration(idle)} (${STALL_ENV} = "
                                    f"{stall:g} s); the cluster may have lost its workers. Completed blocks are kept: "
                                    "run the same command again to resume")
            bar.update(done)
        try:
            out = client.gather(futures)
        except KilledWorker as err:
            raise _killed_worker(err, label) from None
        ok = True
        return out
    finally:
        if not ok and not _INTERRUPTED.is_set():  # on Ctrl-C the cluster is shut down next: no cancel noise
            client.cancel(futures)
        bar.close(ok)


def _run_threads(tasks, progress: bool, label: str) -> list[Any]:
    import dask
    from dask.callbacks import Callback

    if not progress:
        return list(dask.compute(*tasks))

    class _Watch(Callback):
        def __init__(self):
            super().__init__()
            self.bar = None
            self.n = self.finished = 0

        def _start_state(self, dsk, state):
            self.n = len(state["ready"]) + len(state["waiting"]) + len(state["running"]) + len(state["finished"])
            self.bar = Progress(self.n, label)

        def _posttask(self, key, result, dsk, state, worker_id):
            _check_interrupt()
            self.finished = len(state["finished"])
            self.bar.update(self.finished)

    watch = _Watch()
    ok = False
    try:
        with watch:
            out = list(dask.compute(*tasks))
        ok = True
        return out
    finally:
        if watch.bar is not None:
            watch.bar.close(ok)


def run(tasks: Sequence[Any], *, progress: bool = True, label: str = "") -> list[Any]:
    """Compute dask collections (e.g. delayed tasks) and return their results in order.

    ``label`` names the stage in progress lines and errors; see the module doc for progress and the watchdog.
    Damaged stored bytes met by a task (checksum, truncated shard) end in one StoreError.
    """
    from .store.integrity import damaged, is_damage

    if not tasks:
        return []
    from dask import is_dask_collection

    lazy = [i for i, t in enumerate(tasks) if is_dask_collection(t)]
    if len(lazy) < len(tasks):  # values already computed (e.g. NumPy-backed variables) pass through
        out = list(tasks)
        for i, value in zip(lazy, run([tasks[i] for i in lazy], progress=progress, label=label)):
            out[i] = value
        return out
    client = active_client()
    try:
        if client is not None:
            return _run_distributed(client, tasks, progress, label)
        return _run_threads(tasks, progress, label)
    except Exception as err:
        if is_damage(err):
            raise damaged(err, label or "reading a store") from None
        raise
