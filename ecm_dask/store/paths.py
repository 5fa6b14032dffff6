"""Outputs never touch inputs: an output may not be, contain or lie inside an input (after resolving links)."""

from __future__ import annotations

import os
from collections.abc import Iterable
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
