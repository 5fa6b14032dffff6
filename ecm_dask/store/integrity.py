"""Integrity of stored data: checksums on every chunk, completeness of the chunk files, and errors that name them.

* Every array ecm_dask writes carries a ``crc32c`` checksum after its compressor (:func:`codecs`), so a flipped
  byte inside a chunk fails to decode instead of becoming a plausible number; the sharding index is checksummed by
  zarr itself.  Stores written before (no ``crc32c``) still read.
* Every chunk (shard) file is written, even one equal to the fill value (``write_empty_chunks``), and the store
  records it (attribute ``ecm_dask_integrity``).  A missing file would otherwise read as the fill value (zeros):
  :func:`check_complete` stats the files a complete array must have (no decoding) and names a missing, empty or
  truncated one with the frames (or pixels) it holds.
* :func:`verify` decodes everything and lists every damaged file; ``ecm-dask verify STORE`` runs it.
* :func:`damaged` turns a decoding error raised while reading into a :class:`~ecm_dask.errors.StoreError`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..errors import StoreError

ATTR_INTEGRITY = "ecm_dask_integrity"
INTEGRITY = {"checksum": "crc32c", "all_chunks_written": True}
#: bytes of one inner chunk's entry in a shard index (offset + length, uint64 each), and the index checksum
_INDEX_ENTRY, _INDEX_CRC = 16, 4
#: messages of zarr/numcodecs decoding errors that mean damaged stored bytes
DAMAGE_WORDS = ("checksum do not match", "shard is too short", "truncated or corrupt", "Error during decompression",
                "decompression error", "corrupt")


def codecs(compressor=None) -> list:
    """The bytes-to-bytes codecs of every array ecm_dask writes: a compressor (default zstd), then crc32c."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return [compressor if compressor is not None else ZstdCodec(), Crc32cCodec()]


def checksummed(ds):
    """``ds`` with every variable encoded with :func:`codecs` and all chunks written (for ``to_zarr``)."""
    ds = ds.copy()
    for name, var in ds.variables.items():
        enc = {k: v for k, v in var.encoding.items() if k not in ("compressors", "compressor", "filters",
                                                                  "serializer", "preferred_chunks")}
        if var.dtype.kind in "OUS":  # variable-length strings: leave their codecs to zarr
            var.encoding = enc
            continue
        enc["compressors"] = codecs()
        var.encoding = enc
    ds.attrs[ATTR_INTEGRITY] = dict(INTEGRITY)
    return ds


def is_damage(err: BaseException) -> bool:
    """True if ``err`` is what zarr raises when stored bytes are damaged (checksum, truncation, decompression)."""
    from ..errors import EcmError

    if isinstance(err, EcmError):  # already explained
        return False
    return isinstance(err, (ValueError, RuntimeError, OSError)) and any(w in str(err) for w in DAMAGE_WORDS)


def damaged(err: BaseException, where: str) -> StoreError:
    """The StoreError for a decoding error ``err`` raised while reading ``where`` (a file, frames...)."""
    return StoreError(f"{where}: the stored data is damaged ({str(err).splitlines()[0][:160]}); restore the store from "
                      "a copy or ingest the raw files again (ecm-dask verify STORE lists every damaged file)")


def _array_meta(array_dir: Path) -> dict | None:
    try:
        meta = json.loads((array_dir / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("node_type") == "array" else None


def _grid(meta: dict) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(file grid shape, file chunk shape, bytes a file must have at least) of a v3 array's metadata."""
    shape = tuple(meta["shape"])
    chunk = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    min_bytes = 1
    for codec in meta.get("codecs", []):
        if codec.get("name") == "sharding_indexed":
            inner = codec["configuration"]["chunk_shape"]
            n_inner = math.prod(math.ceil(c / i) for c, i in zip(chunk, inner))
            index_crc = any(c.get("name") == "crc32c" for c in codec["configuration"].get("index_codecs", []))
            min_bytes = n_inner * _INDEX_ENTRY + (_INDEX_CRC if index_crc else 0)
    grid = tuple(math.ceil(s / c) for s, c in zip(shape, chunk))
    return grid, chunk, min_bytes


def _chunk_file(array_dir: Path, meta: dict, index: tuple[int, ...]) -> Path:
    enc = meta.get("chunk_key_encoding", {"name": "default"})
    sep = enc.get("configuration", {}).get("separator", "/")
    if enc.get("name") == "v2":
        key = sep.join(map(str, index)) if index else "0"
    else:
        key = sep.join(["c", *map(str, index)])
    return array_dir.joinpath(*key.split("/"))


def _describe(meta: dict, index: tuple[int, ...], chunk: tuple[int, ...]) -> str:
    dims = meta.get("dimension_names") or [f"axis {i}" for i in range(len(index))]
    parts = []
    for d, i, c, s in zip(dims, index, chunk, meta["shape"]):
        lo, hi = i * c, min(s, (i + 1) * c) - 1
        parts.append(f"{'frames' if d == 'time' else str(d)} {lo}..{hi}")
    return ", ".join(parts)


def check_array(array_dir: str | os.PathLike) -> None:
    """Refuse an array whose chunk files are not all there and of a plausible size (stat only)."""
    import numpy as np

    array_dir = Path(array_dir)
    meta = _array_meta(array_dir)
    if meta is None:
        raise StoreError(f"{array_dir}: the array's metadata (zarr.json) is missing or unreadable")
    grid, chunk, min_bytes = _grid(meta)
    for index in np.ndindex(*grid):
        f = _chunk_file(array_dir, meta, index)
        try:
            size = f.stat().st_size
        except FileNotFoundError:
            raise StoreError(f"{f} is missing ({_describe(meta, index, chunk)} of {array_dir.name}): the store is "
                             "incomplete (a partial copy?); copy it again or ingest the raw files again") from None
        if size < min_bytes:
            raise StoreError(f"{f} is truncated ({size} bytes; {_describe(meta, index, chunk)} of {array_dir.name}): "
                             "copy the store again or ingest the raw files again")


def arrays(path: str | os.PathLike) -> list[Path]:
    """Every array directory of the Zarr v3 hierarchy at ``path``."""
    out = []
    for meta in sorted(Path(path).rglob("zarr.json")):
        if _array_meta(meta.parent) is not None:
            out.append(meta.parent)
    return out


def records_integrity(path: str | os.PathLike) -> bool:
    """True if the store says all its chunk files were written (so a missing one means damage)."""
    try:
        attrs = json.loads((Path(path) / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return bool((attrs.get(ATTR_INTEGRITY) or {}).get("all_chunks_written"))


def check_complete(path: str | os.PathLike, names=None) -> None:
    """:func:`check_array` on the arrays ``names`` (default: all) of a store that records its integrity; stores
    written by older versions (chunks equal to the fill value were not written) are not checked."""
    path = Path(path)
    if not records_integrity(path):
        return
    targets = [path / n for n in names] if names is not None else arrays(path)
    for a in targets:
        check_array(a)


def verify(path: str | os.PathLike) -> list[str]:
    """Decode every chunk file of the store at ``path``; one line per damaged or missing file (empty: all good)."""
    import numpy as np
    import zarr

    path = Path(path)
    problems = []
    complete = records_integrity(path)
    for a in arrays(path):
        meta = _array_meta(a)
        grid, chunk, _ = _grid(meta)
        arr = zarr.open_array(store=str(a), mode="r")
        for index in np.ndindex(*grid):
            f = _chunk_file(a, meta, index)
            what = f"{f} ({_describe(meta, index, chunk)})"
            if not f.exists():
                if complete:
                    problems.append(f"{what}: missing")
                continue
            sel = tuple(slice(i * c, min(s, (i + 1) * c)) for i, c, s in zip(index, chunk, meta["shape"]))
            try:
                arr[sel]
            except Exception as err:  # noqa: BLE001 - every decoding failure is a finding, named
                problems.append(f"{what}: {str(err).splitlines()[0][:120]}")
    return problems


def read_checked(arr, sel: tuple, store: str | os.PathLike):
    """``arr[sel]`` of a series ``intensity`` array; damaged bytes become a StoreError naming the shard file and
    its frames (found by reading the selection shard by shard, only once something failed)."""
    try:
        return arr[sel]
    except Exception as err:  # noqa: BLE001 - re-raised unless it is damage
        if not is_damage(err):
            raise
        first = err
    step = int(arr.shards[0] if getattr(arr, "shards", None) else arr.chunks[0])
    t = sel[0] if isinstance(sel[0], slice) else slice(None)
    start, stop, _ = t.indices(arr.shape[0])
    meta = _array_meta(Path(store) / "intensity")
    for t0 in range(start - start % step, stop, step):
        try:
            arr[(slice(max(t0, start), min(stop, t0 + step)), *sel[1:])]
        except Exception as err:  # noqa: BLE001
            if not is_damage(err):
                raise
            index = (t0 // step,) + (0,) * (arr.ndim - 1)
            f = _chunk_file(Path(store) / "intensity", meta, index) if meta else Path(store)
            raise damaged(err, f"{f} (frames {t0}..{min(arr.shape[0], t0 + step) - 1})") from None
    raise damaged(first, str(store))
