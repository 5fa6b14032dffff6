"""A fast reader and writer for the one array layout ecm_dask writes: sharded, Blosc-compressed inner chunks with
crc32c (:class:`ShardReader`, :class:`ShardEncoder`; both check the array's metadata and leave anything else to zarr).

zarr decodes a selection through its asynchronous codec pipeline, one byte-range request per inner chunk; for the
g2 stage's reads (a pixel block over all frames: hundreds of small inner chunks from dozens of shard files) that
machinery costs about as much as the decompression itself: a 4000 x 128 x 128 uint16 block of random counts takes
0.20 s through zarr and 0.097 s through this reader on one core of the 2-core test machine, 0.36 s against 0.19 s
with a 10-pixel halo (``.venv/bin/python benchmarks/bench_g2.py read``).  :class:`ShardReader` reads exactly the same bytes
zarr would - the shard index at the end of each shard file (crc32c checked), then each inner chunk (crc32c
checked) - decompresses each with Blosc straight into a reused buffer and copies the selected part into the
caller's array.

It accepts only arrays whose metadata say exactly this layout (otherwise :meth:`ShardReader.open` gives ``None``
and zarr reads).  Anything unexpected while reading - a missing file or chunk, a checksum that does not match, a
size that is not right - raises :class:`Unreadable`, and the caller reads that selection through zarr again,
whose error is then turned into a message naming the file and the frames
(:func:`ecm_dask.store.integrity.read_checked`): this reader never decides what a damaged store means.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

_MISSING = 2**64 - 1


class Unreadable(Exception):
    """Something the fast path does not handle: read this selection through zarr instead."""


def _codec(c, name):
    return isinstance(c, dict) and c.get("name") == name


def _little(c) -> bool:
    return _codec(c, "bytes") and (c.get("configuration") or {}).get("endian", "little") == "little"


def _known_layout(path: str | os.PathLike):
    """``(shape, dtype, shard, inner, blosc configuration, fill value)`` of the array at ``path`` if its metadata say
    exactly the layout of the module docstring, else None."""
    try:
        meta = json.loads((Path(path) / "zarr.json").read_text())
        dtype = np.dtype(meta["data_type"])
        grid = meta["chunk_grid"]
        keys = meta.get("chunk_key_encoding") or {}
        codecs = meta["codecs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (meta.get("zarr_format") != 3 or meta.get("node_type") != "array" or dtype.kind not in "iuf"
            or not _codec(grid, "regular") or keys.get("name") != "default"
            or (keys.get("configuration") or {}).get("separator", "/") != "/"
            or len(codecs) != 1 or not _codec(codecs[0], "sharding_indexed")):
        return None
    cfg = codecs[0].get("configuration") or {}
    inner_codecs, index_codecs = cfg.get("codecs") or [], cfg.get("index_codecs") or []
    if (cfg.get("index_location", "end") != "end" or len(inner_codecs) != 3 or not _little(inner_codecs[0])
            or not _codec(inner_codecs[1], "blosc") or not _codec(inner_codecs[2], "crc32c")
            or len(index_codecs) != 2 or not _little(index_codecs[0]) or not _codec(index_codecs[1], "crc32c")):
        return None
    try:
        shape = tuple(int(v) for v in meta["shape"])
        shard = tuple(int(v) for v in grid["configuration"]["chunk_shape"])
        inner = tuple(int(v) for v in cfg["chunk_shape"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (len(shape) == len(shard) == len(inner)) or any(s % i for s, i in zip(shard, inner)):
        return None
    return shape, dtype.newbyteorder("<"), shard, inner, inner_codecs[1].get("configuration") or {}, \
        meta.get("fill_value", 0)


#: chunks whose stored bytes are at most this far apart are read in one request (the gap is read and dropped)
SPAN_GAP = 256 << 10
#: the longest single read
SPAN_MAX = 32 << 20


def _spans(wanted):
    """Group ``(offset, nbytes, key)`` chunk entries into ``(span offset, span bytes, members)`` reads: entries sorted
    by offset, neighbours merged while the gap between them is at most SPAN_GAP and the span at most SPAN_MAX."""
    out = []
    for off, nbytes, key in sorted(wanted, key=lambda e: e[0]):
        if out:
            s_off, s_len, members = out[-1]
            end = s_off + s_len
            if off >= s_off and off - end <= SPAN_GAP and max(end, off + nbytes) - s_off <= SPAN_MAX:
                out[-1] = (s_off, max(end, off + nbytes) - s_off, members + [(off, nbytes, key)])
                continue
        out.append((off, nbytes, [(off, nbytes, key)]))
    return out


class ShardReader:
    """Reads selections of one sharded array (see the module docstring).  Cheap to create; not shared between
    threads (each call opens its own files)."""

    def __init__(self, path: Path, shape, dtype, shard, inner):
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.shard, self.inner = tuple(shard), tuple(inner)
        self.per_shard = tuple(s // i for s, i in zip(self.shard, self.inner))
        self.n_index = int(np.prod(self.per_shard))
        self.chunk_bytes = int(np.prod(self.inner)) * self.dtype.itemsize

    @classmethod
    def open(cls, path: str | os.PathLike) -> ShardReader | None:
        """A reader for the array at ``path`` (the folder holding its ``zarr.json``), or None if its layout is not
        the one this reader knows (or the platform has no ``os.pread``)."""
        if not hasattr(os, "pread"):
            return None
        known = _known_layout(path)
        return None if known is None else cls(path, *known[:4])

    def read(self, sel: tuple[slice, ...], out: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
        """Fill ``out`` (the selection's shape, this array's dtype) with ``self[sel]``; ``sel`` are slices with
        step 1 inside the array.  Raises :class:`Unreadable` on anything unexpected."""
        import google_crc32c
        from numcodecs import blosc

        lo = [s.start for s in sel]
        hi = [s.stop for s in sel]
        if (len(sel) != len(self.shape) or any(s.step not in (None, 1) for s in sel)
                or any(not 0 <= a < b <= n for a, b, n in zip(lo, hi, self.shape))
                or out.shape != tuple(b - a for a, b in zip(lo, hi)) or out.dtype != self.dtype):
            raise Unreadable("selection or output not handled")
        buf = scratch if scratch is not None and scratch.nbytes >= self.chunk_bytes else \
            np.empty(self.chunk_bytes, np.uint8)
        buf = buf.reshape(-1).view(np.uint8)[:self.chunk_bytes]
        chunk = buf.view(self.dtype).reshape(self.inner)
        ranges = [range(a // s, (b - 1) // s + 1) for a, b, s in zip(lo, hi, self.shard)]
        for key in np.ndindex(*(len(r) for r in ranges)):
            sk = tuple(r[k] for r, k in zip(ranges, key))
            fn = self.path / "c" / "/".join(str(v) for v in sk)
            try:
                fd = os.open(fn, os.O_RDONLY)
            except OSError as err:
                raise Unreadable(str(err)) from None
            try:
                self._read_shard(fd, sk, lo, hi, out, chunk, buf, google_crc32c, blosc)
            finally:
                os.close(fd)
        return out

    def _read_shard(self, fd, sk, lo, hi, out, chunk, buf, crc, blosc):
        size = os.fstat(fd).st_size
        n = self.n_index * 16 + 4
        if size < n:
            raise Unreadable("shard shorter than its index")
        raw = os.pread(fd, n, size - n)
        if len(raw) != n or crc.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
            raise Unreadable("shard index checksum")
        index = np.frombuffer(raw, "<u8", count=self.n_index * 2).reshape(*self.per_shard, 2)
        origin = [k * s for k, s in zip(sk, self.shard)]
        a = [max(lo[d], origin[d]) for d in range(len(lo))]
        b = [min(hi[d], origin[d] + self.shard[d]) for d in range(len(lo))]
        cr = [range((a[d] - origin[d]) // self.inner[d], (b[d] - 1 - origin[d]) // self.inner[d] + 1)
              for d in range(len(lo))]
        wanted = []
        for ck in np.ndindex(*(len(r) for r in cr)):
            ci = tuple(r[k] for r, k in zip(cr, ck))
            off, nbytes = (int(v) for v in index[ci])
            if off == _MISSING or nbytes < 5 or off + nbytes > size:
                raise Unreadable("inner chunk missing or out of the file")
            wanted.append((off, nbytes, ci))
        for span_off, span, members in _spans(wanted):
            data = os.pread(fd, span, span_off)  # one read for neighbouring chunks (fewer, larger I/O requests)
            if len(data) != span:
                raise Unreadable("shard shorter than its index says")
            for off, nbytes, ci in members:
                piece = data if len(members) == 1 else data[off - span_off:off - span_off + nbytes]
                self._decode(piece, ci, origin, a, b, lo, out, chunk, buf, crc, blosc)

    def _decode(self, data, ci, origin, a, b, lo, out, chunk, buf, crc, blosc):
        """Check, decompress and place one inner chunk (its stored bytes ``data``)."""
        if crc.value(data[:-4]) != int.from_bytes(data[-4:], "little"):
            raise Unreadable("inner chunk checksum")
        body = memoryview(data)[:-4]
        # Blosc's 16-byte header holds the uncompressed size at bytes 4..8 (little endian)
        if len(body) < 16 or int.from_bytes(body[4:8], "little") != self.chunk_bytes:
            raise Unreadable("inner chunk size")
        try:
            blosc.decompress(body, buf)
        except Exception as err:  # noqa: BLE001 - any decoder complaint: let zarr read it and name it
            raise Unreadable(str(err)) from None
        c0 = [origin[d] + ci[d] * self.inner[d] for d in range(len(lo))]
        src = tuple(slice(max(a[d], c0[d]) - c0[d], min(b[d], c0[d] + self.inner[d]) - c0[d])
                    for d in range(len(lo)))
        dst = tuple(slice(max(a[d], c0[d]) - lo[d], min(b[d], c0[d] + self.inner[d]) - lo[d])
                    for d in range(len(lo)))
        out[dst] = chunk[src]


_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_BLOSC_OVERHEAD = 16  # BLOSC_MAX_OVERHEAD: a Blosc frame is at most this much larger than its input


def _fill(value, dtype: np.dtype):
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        value = float(value.replace("Infinity", "inf"))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return np.array(value).astype(dtype)
    except (ValueError, OverflowError):
        return None


class ShardEncoder:
    """Writes whole shards of the layout of the module docstring as zarr does: every inner chunk (edge chunks padded
    with the fill value) Blosc-compressed with the array's settings and followed by its crc32c, the index of
    offsets and sizes at the end followed by its crc32c - the same bytes per chunk and index format as zarr; the
    chunks are placed in C order (zarr 3.4 places them in Morton order; readers go by the index) - through
    :func:`ecm_dask.store.direct.write_file`.

    zarr's asynchronous codec pipeline costs ~3x the compression itself for a 64 MiB shard of 140 inner chunks
    (0.26 s against 0.08 s on one core of the README's machine); this encoder compresses each inner chunk from a
    reused buffer.  :meth:`open` gives None for any other layout (the caller then writes through zarr)."""

    def __init__(self, path, shape, dtype, shard, inner, blosc_config, fill):
        from numcodecs import Blosc

        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.shard, self.inner = tuple(shard), tuple(inner)
        self.per_shard = tuple(s // i for s, i in zip(self.shard, self.inner))
        self.fill = fill
        cfg = blosc_config
        self.codec = Blosc(cname=cfg["cname"], clevel=int(cfg["clevel"]), shuffle=_SHUFFLE[cfg["shuffle"]],
                           blocksize=int(cfg.get("blocksize", 0)), typesize=int(cfg["typesize"]))

    @classmethod
    def open(cls, path: str | os.PathLike) -> ShardEncoder | None:
        known = _known_layout(path)
        if known is None:
            return None
        shape, dtype, shard, inner, cfg, fill = known
        fill = _fill(fill, dtype)
        if (fill is None or cfg.get("cname") not in ("lz4", "lz4hc", "zstd", "zlib", "blosclz")
                or cfg.get("shuffle") not in _SHUFFLE or cfg.get("typesize") != dtype.itemsize):
            return None
        try:
            return cls(path, shape, dtype, shard, inner, cfg, fill)
        except (KeyError, TypeError, ValueError, ImportError):
            return None

    def write_region(self, origin: tuple[int, ...], data: np.ndarray) -> int:
        """Write every shard of the region of ``data`` starting at ``origin`` (a shard corner; the region ends at
        shard boundaries or the array's edge).  Returns the bytes written."""
        if any(o % s for o, s in zip(origin, self.shard)):
            raise ValueError(f"{self.path}: region origin {origin} is not on the shard grid {self.shard}")
        first = [o // s for o, s in zip(origin, self.shard)]
        counts = [-(-n // s) for n, s in zip(data.shape, self.shard)]
        total = 0
        for rel in np.ndindex(*counts):
            part = tuple(slice(r * s, (r + 1) * s) for r, s in zip(rel, self.shard))
            total += self.write(tuple(f + r for f, r in zip(first, rel)), data[part])
        return total

    def write(self, key: tuple[int, ...], data: np.ndarray) -> int:
        """Write shard ``key`` (its grid index) from ``data``: the part of the array inside that shard.  Returns
        the bytes written."""
        import google_crc32c

        from .direct import write_file
        from .region import scratch

        origin = [k * s for k, s in zip(key, self.shard)]
        expect = tuple(min(s, n - o) for s, n, o in zip(self.shard, self.shape, origin))
        if len(key) != len(self.shape) or any(o >= n or o < 0 for o, n in zip(origin, self.shape)) \
                or data.shape != expect:
            raise ValueError(f"shard {key} of {self.path} needs data of shape {expect}, got {data.shape}")
        data = np.asarray(data, dtype=self.dtype)
        chunk = scratch(self.inner, self.dtype, "encode-chunk")
        raw = chunk.reshape(-1).view(np.uint8)
        index = np.empty((*self.per_shard, 2), "<u8")
        n_chunks = int(np.prod(self.per_shard))
        # every compressed chunk goes straight into this thread's shard buffer (sized for incompressible data:
        # Blosc adds at most 16 bytes), so no list of compressed pieces is held and copied again
        cap = n_chunks * (raw.nbytes + _BLOSC_OVERHEAD + 4) + index.nbytes + 4
        out = scratch((cap,), np.uint8, "encode-shard")
        offset = 0
        for ci in np.ndindex(*self.per_shard):
            lo = [c * i for c, i in zip(ci, self.inner)]
            hi = [min(a + i, e) for a, i, e in zip(lo, self.inner, expect)]
            part = tuple(slice(a, b) for a, b in zip(lo, hi))
            if any(b < a + i for a, b, i in zip(lo, hi, self.inner)):
                chunk[...] = self.fill
                if all(b > a for a, b in zip(lo, hi)):
                    chunk[tuple(slice(0, b - a) for a, b in zip(lo, hi))] = data[part]
            else:
                chunk[...] = data[part]
            body = self.codec.encode(raw)
            n = len(body)
            if offset + n + 4 > cap - index.nbytes - 4:  # cannot happen with Blosc's bound; never write past
                raise ValueError(f"shard {key} of {self.path}: a compressed chunk exceeds Blosc's size bound")
            out[offset:offset + n] = np.frombuffer(body, np.uint8)
            out[offset + n:offset + n + 4] = np.frombuffer(google_crc32c.value(body).to_bytes(4, "little"), np.uint8)
            index[ci] = (offset, n + 4)
            offset += n + 4
        index_bytes = index.tobytes()
        total = offset + len(index_bytes) + 4
        out[offset:offset + len(index_bytes)] = np.frombuffer(index_bytes, np.uint8)
        out[offset + len(index_bytes):total] = np.frombuffer(
            google_crc32c.value(index_bytes).to_bytes(4, "little"), np.uint8)
        fn = self.path / "c" / "/".join(str(k) for k in key)
        return write_file(fn, out[:total])

