"""Chunk layout of a series store: pure functions of shapes and sizes (no I/O).

The layout makes both access patterns of the analysis cheap without an all-to-all rechunk:

* a **pixel block over all time** (correlation, fitting) is a concatenation of inner chunks
  ``(frames_per_shard, tile, tile)``, one per time shard, each decoded on its own;
* a **small reference ROI** (drift) touches only the inner chunks it overlaps, never whole frames.

Writes happen one whole **shard** ``(frames_per_shard, ny_padded, nx_padded)`` at a time (ingest reads
frames in time order), so no shard is ever rewritten partially.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_TILE = 64
DEFAULT_SHARD_BYTES = 64 << 20  # uncompressed bytes of one shard (what one ingest task holds)
MAX_INNER_FRAMES = 256  # inner chunk time length cap (keeps a decoded inner chunk <= a few MB)


@dataclass(frozen=True)
class SeriesLayout:
    """Where the bytes of a ``(time, y, x)`` series go.

    Attributes
    ----------
    shape : (n_frames, ny, nx)
    shard : (frames_per_shard, ny_padded, nx_padded) - one shard file per time slab, whole frame
    chunk : (frames_per_chunk, tile_y, tile_x) - inner chunk, the unit of decoding
    """

    shape: tuple[int, int, int]
    shard: tuple[int, int, int]
    chunk: tuple[int, int, int]

    @property
    def frames_per_shard(self) -> int:
        return self.shard[0]

    @property
    def n_shards(self) -> int:
        return math.ceil(self.shape[0] / self.shard[0])

    def shard_frames(self, index: int) -> tuple[int, int]:
        """Frame range ``[start, stop)`` of time shard ``index``."""
        if not 0 <= index < self.n_shards:
            raise IndexError(f"shard {index} outside 0..{self.n_shards - 1}")
        start = index * self.shard[0]
        return start, min(self.shape[0], start + self.shard[0])

    def as_dict(self) -> dict:
        return {"shape": list(self.shape), "shard": list(self.shard), "chunk": list(self.chunk)}


def plan_layout(shape: tuple[int, int, int], itemsize: int, *, tile: int = DEFAULT_TILE,
                shard_bytes: int = DEFAULT_SHARD_BYTES, frames_per_shard: int | None = None) -> SeriesLayout:
    """Choose shard and inner-chunk shapes for a series.

    Parameters
    ----------
    shape : (n_frames, ny, nx)
    itemsize : bytes per pixel of the stored dtype
    tile : spatial size of an inner chunk (64-128 recommended; clipped to the frame size)
    shard_bytes : target uncompressed size of one shard; sets how many frames a shard holds
    frames_per_shard : force the shard length in frames (overrides ``shard_bytes``)

    Returns
    -------
    SeriesLayout
    """
    n_frames, ny, nx = (int(s) for s in shape)
    if n_frames < 1 or ny < 1 or nx < 1:
        raise ValueError(f"cannot lay out an empty series of shape {shape}")
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    tile_y, tile_x = min(tile, ny), min(tile, nx)
    ny_pad = math.ceil(ny / tile_y) * tile_y
    nx_pad = math.ceil(nx / tile_x) * tile_x
    if frames_per_shard is None:
        frame_bytes = ny_pad * nx_pad * itemsize
        frames_per_shard = max(1, shard_bytes // frame_bytes)
    frames_per_shard = int(max(1, min(frames_per_shard, n_frames)))
    # inner chunk time length: the shard length, or the largest divisor of it <= MAX_INNER_FRAMES
    inner_t = frames_per_shard
    if inner_t > MAX_INNER_FRAMES:
        inner_t = max(d for d in range(1, MAX_INNER_FRAMES + 1) if frames_per_shard % d == 0)
        if inner_t < MAX_INNER_FRAMES // 4:  # awkward shard length: round the shard down to a multiple
            inner_t = MAX_INNER_FRAMES
            frames_per_shard = (frames_per_shard // inner_t) * inner_t
    return SeriesLayout(shape=(n_frames, ny, nx), shard=(frames_per_shard, ny_pad, nx_pad),
                        chunk=(inner_t, tile_y, tile_x))
