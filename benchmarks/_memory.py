"""Memory and timing helpers shared by the benchmarks: RSS sampling of process trees, VmHWM, stage timers.

Import from a benchmark script (``benchmarks/`` is on ``sys.path`` when a script there runs)::

    from _memory import RssSampler, vm_hwm, reset_hwm
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import psutil

MiB = 2**20


def vm_hwm(pid: int | str = "self") -> int | None:
    """Peak resident set size (VmHWM, bytes) of a process from /proc, or None where /proc has no such field."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_hwm() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs`` 5); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Window:
    """Peaks seen while a measurement window was open: ``total`` (sum over the processes of one sample) and
    ``per_pid`` (peak of each process); ``pids_seen`` names every process sampled."""

    def __init__(self):
        self.total = 0
        self.per_pid: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.samples = 0


class RssSampler:
    """Samples, every ``interval`` s in a background thread, the RSS of the process ``root`` and all its
    children (recursively: LocalCluster nannies and workers) plus any ``extra_pids``.

    The sum over processes counts pages shared between them (libraries) once per process: it is an upper
    bound of the memory the tree holds, which is what matters against a machine's RAM.  Use as::

        with RssSampler() as s:
            with s.window() as w:
                work()
            print(w.total, w.per_pid)
    """

    def __init__(self, root: int | None = None, extra_pids=(), interval: float = 0.2):
        self.root = psutil.Process(root if root is not None else os.getpid())
        self.extra = {int(p) for p in extra_pids}
        self.interval = interval
        self._windows: list[Window] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _procs(self):
        procs = [self.root]
        try:
            procs += self.root.children(recursive=True)
        except psutil.Error:
            pass
        seen = {p.pid for p in procs}
        for pid in self.extra - seen:
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                pass
        return procs

    def sample(self) -> None:
        rss = {}
        names = {}
        for p in self._procs():
            try:
                rss[p.pid] = p.memory_info().rss
                names[p.pid] = p.name()
            except psutil.Error:  # exited between listing and reading
                pass
        total = sum(rss.values())
        with self._lock:
            for w in self._windows:
                w.total = max(w.total, total)
                for pid, v in rss.items():
                    w.per_pid[pid] = max(w.per_pid.get(pid, 0), v)
                w.names.update(names)
                w.samples += 1

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @contextmanager
    def window(self):
        """Collect peaks while the block runs (one sample at its start and end as well)."""
        w = Window()
        with self._lock:
            self._windows.append(w)
        self.sample()
        try:
            yield w
        finally:
            self.sample()
            with self._lock:
                self._windows.remove(w)


@contextmanager
def stage(record: dict, name: str, sampler: RssSampler | None = None):
    """Time a block (wall s) and, with a sampler, its peak RSS; stores ``record[name] = {...}``.

    The main process's VmHWM is reset at the start (where permitted) so ``main_vmhwm_mib`` is the block's own.
    """
    reset = reset_hwm()
    entry: dict = {}
    t0 = time.perf_counter()
    if sampler is None:
        yield entry
    else:
        with sampler.window() as w:
            yield entry
        entry["peak_tree_rss_mib"] = w.total / MiB
        entry["peak_rss_by_process_mib"] = {f"{w.names.get(p, '?')}:{p}": v / MiB for p, v in w.per_pid.items()}
        entry["rss_samples"] = w.samples
    entry["wall_s"] = time.perf_counter() - t0
    hwm = vm_hwm()
    entry["main_vmhwm_mib"] = hwm / MiB if hwm is not None else None
    entry["main_vmhwm_reset"] = reset
    record[name] = entry
