"""Outputs never touch inputs: an output may not be, contain or lie inside an input (after resolving links)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreError


def check_apart(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], *, what: str = "output") -> None:
    """Raise :class:`StoreError` if ``output`` is, contains or lies inside any of ``inputs``.

    Paths are compared after resolving symbolic links and ``..`` (they need not exist), so a link to the input
    or a path spelled differently is caught too.  Nothing is read or written.
    """
    out = Path(output).resolve()
    for item in inputs:
        inp = Path(item).resolve()
        if out == inp:
            how = "is"
        elif inp.is_relative_to(out):
            how = "contains"
        elif out.is_relative_to(inp):
            how = "lies inside"
        else:
            continue
        raise StoreError(f"{what} {output} {how} the input {item}; inputs are never modified: choose an {what} "
                         "outside every input")


def swap_in(new: str | os.PathLike, output: str | os.PathLike) -> None:
    """Rename the finished folder ``new`` to ``output``; an existing ``output`` stays whole until the new one is in
    place (moved aside to ``<output>.replaced``, removed after)."""
    import shutil

    new, output = Path(new), Path(output)
    if output.exists():
        old = output.with_name(output.name + ".replaced")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(output, old)
        os.replace(new, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, output)


@contextmanager
def replacing_folder(output: str | os.PathLike):
    """Yield a fresh temporary folder beside ``output`` to fill; on success it replaces ``output`` as a whole (one
    rename when ``output`` is new), on an error it is removed and ``output`` is left as it was.  A non-folder at
    ``output`` is refused before anything is written."""
    import shutil
    import tempfile

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} exists and is not a folder; choose another output")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result gets the usual permissions
        yield tmp
        swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
