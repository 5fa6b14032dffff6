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
    """The bytes-to-bytes codecs of every array ecm_dask writes: a compressor, then crc32c.

    Default compressor: Blosc LZ4 level 5 with byte shuffle (zarr sets the shuffle's item size from the dtype).
    On a 128 x 128 x 71 float32 block of real-scale g2 curves it compresses 1.71x in 0.004 s and decodes in 0.0015 s,
    where zstd level 3 (the default before) gives 1.55x in 0.04-0.06 s and 0.006-0.008 s
    (``benchmarks/bench_g2.py codec``): the shuffle puts the float exponents side by side, and stage outputs are
    written once per block and read once per stage.
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    if compressor is None:
        compressor = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    return [compressor, Crc32cCodec()]


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


#: what to do about a damaged series store (the default) and a damaged stage checkpoint (``{store}``: its path)
SERIES_HINT = ("restore the store from a copy or ingest the raw files again (ecm-dask verify STORE lists every "
               "damaged file)")
STAGE_HINT = "delete {store} and run again to compute that stage again"


def damaged(err: BaseException, where: str, hint: str = SERIES_HINT) -> StoreError:
    """The StoreError for a decoding error ``err`` raised while reading ``where`` (a file, frames...)."""
    return StoreError(f"{where}: the stored data is damaged ({str(err).splitlines()[0][:160]}); {hint}")


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


def _slices(sel, shape) -> tuple[slice, ...] | None:
    """``sel`` as one step-1 slice per axis (integers become length-1 slices), or None if it is anything else."""
    import numbers

    sel = sel if isinstance(sel, tuple) else (sel,)
    if any(s is Ellipsis for s in sel):
        k = sel.index(Ellipsis)
        sel = sel[:k] + (slice(None),) * (len(shape) - len(sel) + 1) + sel[k + 1:]
    sel = sel + (slice(None),) * (len(shape) - len(sel))
    out = []
    for s, n in zip(sel, shape):
        if isinstance(s, numbers.Integral):
            i = int(s) + n if s < 0 else int(s)
            s = slice(i, i + 1)
        if not isinstance(s, slice):
            return None
        start, stop, step = s.indices(n)
        if step != 1:
            return None
        out.append(slice(start, max(start, stop)))
    return tuple(out)


def _tiles(sel: tuple[slice, ...], step: tuple[int, ...]):
    """The pieces of ``sel`` cut at multiples of ``step`` (one per stored chunk or shard), with their grid index."""
    import itertools

    ranges = [[(t0 // c, slice(max(t0, s.start), min(s.stop, t0 + c))) for t0 in range(s.start - s.start % c, s.stop, c)]
              for s, c in zip(sel, step)]
    for combo in itertools.product(*ranges):
        yield tuple(i for i, _ in combo), tuple(p for _, p in combo)


def _span(meta: dict | None, piece: tuple[slice, ...], dims) -> str:
    """``frames 50..99, y 0..15, x 0..15`` for a block of an array."""
    dims = (meta or {}).get("dimension_names") or dims or [f"axis {i}" for i in range(len(piece))]
    return ", ".join(f"{'frames' if d == 'time' else d} {p.start}..{p.stop - 1}" for d, p in zip(dims, piece))


def locate_damage(arr, sel, array_dir: str | os.PathLike) -> tuple[str, BaseException] | None:
    """Where inside ``arr[sel]`` the stored bytes are damaged: ``("<file> (frames a..b, y c..d, x e..f)", error)``
    for the first damaged file, narrowed to the inner chunk unless the whole file is unreadable (a damaged shard
    index); None if nothing in the selection fails to decode.  Reads the selection file by file (only for an
    error message: a read already failed)."""
    array_dir = Path(array_dir)
    sel = _slices(sel, arr.shape)
    if sel is None:
        sel = tuple(slice(0, n) for n in arr.shape)
    meta = _array_meta(array_dir)
    shards = getattr(arr, "shards", None)
    files = tuple(int(c) for c in (shards or arr.chunks))
    for index, piece in _tiles(sel, files):
        try:
            arr[piece]
            continue
        except Exception as err:  # noqa: BLE001 - re-raised unless it is damage
            if not is_damage(err):
                raise
            whole = err
        f = _chunk_file(array_dir, meta, index) if meta else array_dir
        block = _stored(index, files, arr.shape)
        if shards:  # which inner chunks of the whole file decode? none: its index is damaged
            inner = tuple(int(c) for c in arr.chunks)
            tried, bad = 0, []
            for i, part in _tiles(block, inner):
                tried += 1
                try:
                    arr[part]
                except Exception as err:  # noqa: BLE001
                    if not is_damage(err):
                        raise
                    overlaps = all(p.start < q.stop and q.start < p.stop for p, q in zip(part, piece))
                    bad.append((not overlaps, i, err))  # the damaged chunks met by the read first
            if 0 < len(bad) < tried:
                _, i, whole = min(bad, key=lambda b: (b[0], b[1]))
                block = _stored(i, inner, arr.shape)
        return f"{f} ({_span(meta, block, None)})", whole
    return None


def _stored(index: tuple[int, ...], step: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The whole stored block (chunk or shard) with grid index ``index``."""
    return tuple(slice(i * c, min(n, (i + 1) * c)) for i, c, n in zip(index, step, shape))


def read_checked(arr, sel, store: str | os.PathLike, name: str = "intensity", hint: str = SERIES_HINT, out=None):
    """``arr[sel]`` of the array ``name`` of the store at ``store``; damaged bytes become a StoreError naming the
    file and the block (frames, pixels) that fail to decode (found by reading the selection again file by file
    and chunk by chunk, only once something failed).  With ``out`` (a NumPy array or view of the selection's
    shape and the array's dtype) the chunks are decoded straight into it (no new array) and ``out`` is returned."""
    try:
        if out is None:
            return arr[sel]
        from zarr.core.buffer import default_buffer_prototype

        arr.get_basic_selection(sel, out=default_buffer_prototype().nd_buffer.from_numpy_array(out))
        return out
    except Exception as err:  # noqa: BLE001 - re-raised unless it is damage
        if not is_damage(err):
            raise
        first = err
    found = locate_damage(arr, sel, Path(store) / name)
    if found is None:  # the error did not repeat: name the array and the selection
        sl = _slices(sel, arr.shape)
        where = f"{Path(store) / name}" + (f" ({_span(_array_meta(Path(store) / name), sl, None)})" if sl else "")
        raise damaged(first, where, hint) from None
    raise damaged(found[1], found[0], hint) from None


class CheckedArray:
    """A lazily opened, read-only zarr array whose reads name the damaged file and block (see
    :func:`read_checked`); what :func:`checked` gives dask in place of xarray's reader.  Picklable (holds paths)."""

    def __init__(self, store: str | os.PathLike, name: str, shape: tuple[int, ...], dtype, hint: str = SERIES_HINT):
        import numpy as np

        self.store, self.name, self.hint = str(store), name, hint
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._array = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    def __getitem__(self, key):
        import zarr

        if self._array is None:
            self._array = zarr.open_array(store=os.path.join(self.store, self.name), mode="r")
        return read_checked(self._array, key, self.store, self.name, self.hint)


def checked(ds, store: str | os.PathLike, group: str | None = None, names=None, hint: str = SERIES_HINT):
    """``ds`` (opened lazily with dask from the store at ``store``) with the dask reads of its numeric arrays
    (``names``, default all but index coordinates) going through :class:`CheckedArray`: a flipped byte, a
    truncated file... met by any computation becomes a StoreError naming the file, the block and the array instead
    of zarr's bare checksum error.  Arrays that xarray decodes (dtype changed, scaled) are left as they are."""
    import dask.array as da
    import numpy as np
    from dask.base import tokenize

    base = Path(store) / group if group else Path(store)
    out = {}
    for name, var in ds.variables.items():
        if (names is not None and name not in names) or name in ds.indexes or not isinstance(var.data, da.Array):
            continue
        meta = _array_meta(base / str(name))
        try:
            stored = np.dtype(meta["data_type"]) if meta else None
            mtime = (base / str(name) / "zarr.json").stat().st_mtime_ns
        except (KeyError, TypeError, OSError):
            continue
        if (stored != var.dtype or var.dtype.kind not in "biuf" or tuple(meta["shape"]) != var.shape
                or any(k in var.encoding for k in ("scale_factor", "add_offset"))):
            continue  # decoded by xarray (masked, scaled, times): its own reader stays
        token = tokenize(str(base.resolve()), name, var.shape, var.dtype.str, var.data.chunks, mtime)
        reader = CheckedArray(base, str(name), var.shape, var.dtype, hint)
        data = da.from_array(reader, chunks=var.data.chunks, name=f"open_dataset-{name}-checked-{token}",
                             inline_array=False, meta=np.empty((0,) * var.ndim, dtype=var.dtype))
        out[name] = var.copy(deep=False, data=data)
    if not out:
        return ds
    ds = ds.copy()
    for name, var in out.items():
        ds[name] = var  # keeps whether it is a coordinate, its attrs and encoding
    return ds


def open_checked(path: str | os.PathLike, hint: str = STAGE_HINT, **kwargs):
    """``xarray.open_zarr(path, **kwargs)`` of a stage checkpoint with :func:`checked` reads: damaged bytes become
    a StoreError naming the file and block, and ``hint`` (default: delete the checkpoint to compute it again);
    damage met while opening (index coordinates are read at once) names the store."""
    import xarray as xr

    hint = hint.format(store=path)
    try:
        ds = xr.open_zarr(path, **kwargs)
    except Exception as err:  # noqa: BLE001 - re-raised unless it is damage
        if not is_damage(err):
            raise
        where = f"{path}" + (f" (group {kwargs['group']})" if kwargs.get("group") else "")
        raise damaged(err, where, hint) from None
    return checked(ds, path, kwargs.get("group"), hint=hint)
