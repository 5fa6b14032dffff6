"""Run dask work with a progress bar on whatever scheduler is active.

``dask.diagnostics.ProgressBar`` is silent under a distributed client, so with a client we submit
futures and use :func:`distributed.progress` instead.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def active_client():
    """The current distributed client, or None when the local threaded scheduler is in use."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def run(tasks: Sequence[Any], *, progress: bool = True, label: str = "") -> list[Any]:
    """Compute dask collections (e.g. delayed tasks) and return their results in order."""
    import dask

    if not tasks:
        return []
    if label and progress:
        print(label, file=sys.stderr, flush=True)
    client = active_client()
    if client is not None:
        futures = client.compute(list(tasks))
        if progress:
            from distributed import progress as dprogress

            dprogress(futures, notebook=False)
            print(file=sys.stderr)
        return client.gather(futures)
    if progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr, dt=0.5):
            return list(dask.compute(*tasks))
    return list(dask.compute(*tasks))
