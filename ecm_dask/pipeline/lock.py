"""One run at a time per output: a lock file (``<results>.lock``) held with ``flock`` for the whole run.

The file records host, process id and start time.  A second run into the same output refuses with a message
naming them.  The kernel releases the flock when its process dies, so a lock left by a killed run on this host
is taken over, and atomically: of many runs started together on a stale lock exactly one gets it (the winner
checks, under the lock, that the path still names the file it locked).  A lock file that names another host is
never guessed stale: the message says which file to delete once that run is known to be gone.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreError


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of a run writing ``output``."""
    output = Path(output)
    return output.with_name(output.name + ".lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _holder(path: Path, me: dict) -> dict | None:
    """The live holder of the lock file at ``path`` (None if free or left by a dead process on this host)."""
    if not path.exists():
        return None
    other = _read(path)
    stale = other.get("host") == me["host"] and isinstance(other.get("pid"), int) and not _alive(other["pid"])
    return None if stale else other


def _refuse(output, path: Path, other: dict):
    who = (f"process {other.get('pid')} on {other.get('host')}, started {other.get('started')}"
           if other else "an unknown process")
    return StoreError(f"another ecm-dask run is writing {output} ({who}); wait for it to finish or choose "
                      f"another output. If that run is gone, delete {path}")


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def check_unlocked(output: str | os.PathLike) -> None:
    """Raise StoreError if a live run holds the lock of ``output`` (a quick check before starting work)."""
    path = lock_path(output)
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        held = not _try_flock(fd)
        if not held:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    other = _read(path)
    if held or (other and _holder(path, me) is not None and other.get("pid") != me["pid"]):
        raise _refuse(output, path, other)


@contextmanager
def run_lock(output: str | os.PathLike):
    """Hold the lock of ``output`` for the duration of the block, or raise StoreError naming its holder."""
    path = lock_path(output)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(100):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        if not _try_flock(fd):  # a live run of this host (or one whose filesystem passes locks on) holds it
            os.close(fd)
            raise _refuse(output, path, _read(path))
        try:  # the holder before us may have removed the file after we opened it: lock the file the path names
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise StoreError(f"could not take the lock {path}: it keeps being replaced")
    other = _read(path)
    if other and _holder(path, me) is not None:  # another host's run, or a live process without the flock
        os.close(fd)
        raise _refuse(output, path, other)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(me).encode())
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # still holding the flock: a waiting opener sees the inode change and retries
        os.close(fd)
