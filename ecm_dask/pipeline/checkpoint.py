"""Stage checkpoints: write a result to ``<output>.partial`` and rename it into place only when complete,
so an interrupted stage never leaves a store that looks finished."""

from __future__ import annotations

import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreError


@contextmanager
def writing(what: str):
    """Turn a disk-full / permission / I/O error (OSError) raised in the block into one StoreError that
    names ``what`` was being written and says what to do; StoreErrors pass unchanged."""
    try:
        yield
    except StoreError:
        raise
    except OSError as err:
        why = err.strerror or str(err)
        where = f" ({err.filename})" if err.filename else ""
        raise StoreError(f"writing {what} failed: {why}{where}. What was written before is kept: free space or "
                         "fix the permissions, then run the same command again to resume") from None


def check_replaceable(output: Path, overwrite: bool) -> None:
    """Refuse an existing ``output`` unless ``overwrite``, and never one that is not a Zarr store."""
    if output.exists():
        if not overwrite:
            raise StoreError(f"{output} exists; use --overwrite to replace it")
        if not (output / "zarr.json").is_file():
            raise StoreError(f"{output} exists and is not a Zarr store; refusing to delete it")


@contextmanager
def checkpoint(output: str | os.PathLike, *, overwrite: bool = False):
    """Yield the ``.partial`` path to write; on success it replaces ``output`` (refused if it exists unless
    ``overwrite``; something that is not a Zarr store is never deleted)."""
    output = Path(output)
    check_replaceable(output, overwrite)
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with writing(str(output)):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            yield partial
        if output.exists():
            shutil.rmtree(output)
        os.replace(partial, output)


def write_checkpoint(ds, output: str | os.PathLike, *, overwrite: bool = False, progress: bool = True,
                     label: str = "") -> Path:
    """Compute a lazy dataset into ``output`` (Zarr v3, consolidated) through a checkpoint."""
    from ..compute import run

    with checkpoint(output, overwrite=overwrite) as partial:
        delayed = ds.to_zarr(partial, mode="w", compute=False, zarr_format=3, consolidated=True)
        run([delayed], progress=progress, label=label)
    return Path(output)
