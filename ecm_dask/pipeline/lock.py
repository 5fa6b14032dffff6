"""One run at a time per output: a lock file (``<results>.lock``) created atomically with O_EXCL.

The file records host, process id and start time.  A second run into the same output refuses with a message
naming them.  A lock left by a killed run on this host (its process is gone) is taken over; one from another
host is never guessed stale: the message says which file to delete once that run is known to be gone.
"""

from __future__ import annotations

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


def check_unlocked(output: str | os.PathLike) -> None:
    """Raise StoreError if a live run holds the lock of ``output`` (a quick check before starting work)."""
    path = lock_path(output)
    other = _holder(path, {"host": socket.gethostname()})
    if other is not None:
        raise _refuse(output, path, other)


@contextmanager
def run_lock(output: str | os.PathLike):
    """Hold the lock of ``output`` for the duration of the block, or raise StoreError naming its holder."""
    path = lock_path(output)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            other = _holder(path, me)
            if attempt == 0 and other is None:  # left by a killed run on this host
                path.unlink(missing_ok=True)
                continue
            raise _refuse(output, path, other or {}) from None
    with os.fdopen(fd, "w") as f:
        json.dump(me, f)
    try:
        yield path
    finally:
        if _read(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
