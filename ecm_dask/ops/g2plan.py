"""The g2 block plan: which pixel blocks the g2 stage correlates and which store reads each needs (shapes only).

Pure arithmetic on shapes, the store layout and the drift trace - no I/O, no dask - in the spirit of
rechunker's planner: :func:`plan_g2` decides, the executor (:mod:`ecm_dask.ops.correlation` through dask, any
scheduler) only carries it out, and :mod:`ecm_dask.pipeline.plan` reads the memory a task needs from it before a
cluster starts.

A block is a rectangle of whole store tiles over all frames, as many tiles as fit ``block_bytes``.  With drift
undone in whole pixels, each task reads its block plus a halo in the stored dtype into one *region* and the
kernel gathers every frame's registered pixels from it while it loads them (no registered copy); each run of
frames stored together (one shard) is read only over the rows and columns its shifts reach (drift is slow: a
few pixels on one side, not the whole halo on every side).  Parts of the region no read touches are never used
by a pixel that stays in view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..store.region import Read

__all__ = ["BLOCK_BYTES", "G2Plan", "Read", "block_tiles", "plan_g2", "region_itemsize"]

#: target uncompressed bytes of one (time, y, x) pixel block handed to the g2 kernel
BLOCK_BYTES = 160 << 20


def block_tiles(n_frames: int, itemsize: int, tile: tuple[int, int], frame: tuple[int, int],
                block_bytes: int = BLOCK_BYTES) -> tuple[int, int]:
    """Spatial size of a g2 block: whole store tiles, as many as fit ``block_bytes`` over all frames."""
    ty, tx = tile
    per_tile = max(1, n_frames * ty * tx * itemsize)
    n = max(1, int(math.isqrt(max(1, block_bytes // per_tile))))
    return min(frame[0], ty * n), min(frame[1], tx * n)


@dataclass(frozen=True)
class G2Plan:
    """The blocks of a g2 stage and the reads each needs.

    Attributes
    ----------
    n_frames, frame : series shape ``(T, (ny, nx))``
    tile, shard_frames : store inner chunk ``(shard_frames, ty, tx)`` (frames read together)
    itemsize : bytes per value of a region (the stored dtype, or 4 where frames are blended as float32)
    block : ``(by, bx)`` pixels of a (full) block
    halo : ``(hy, hx)`` pixels around a block a region carries (0 without drift)
    offsets : ``(lo, hi)``, each ``(T, 2)`` int: per frame, the smallest and largest source offset (y, x) of a
        registered pixel (``None`` without drift)
    """

    n_frames: int
    frame: tuple[int, int]
    tile: tuple[int, int]
    shard_frames: int
    itemsize: int
    block: tuple[int, int]
    halo: tuple[int, int] = (0, 0)
    offsets: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)

    @property
    def grid(self) -> tuple[int, int]:
        """Blocks along y and x."""
        return math.ceil(self.frame[0] / self.block[0]), math.ceil(self.frame[1] / self.block[1])

    @property
    def n_blocks(self) -> int:
        gy, gx = self.grid
        return gy * gx

    def blocks(self) -> list[tuple[int, int, int, int]]:
        """``(y0, y1, x0, x1)`` of every block, row by row."""
        (ny, nx), (by, bx) = self.frame, self.block
        return [(y0, min(ny, y0 + by), x0, min(nx, x0 + bx)) for y0 in range(0, ny, by) for x0 in range(0, nx, bx)]

    @property
    def block_bytes(self) -> int:
        """Bytes of a full block over all frames (the value the memory model of a task scales with)."""
        return self.n_frames * self.block[0] * self.block[1] * self.itemsize

    @property
    def region_bytes(self) -> int:
        """Bytes of the largest region a task reads (block plus halo)."""
        hy, hx = self.halo
        by, bx = self.block
        return self.n_frames * (by + 2 * hy) * (bx + 2 * hx) * self.itemsize

    def region_shape(self, y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int]:
        hy, hx = self.halo
        return self.n_frames, y1 - y0 + 2 * hy, x1 - x0 + 2 * hx

    def region_origin(self, y0: int, x0: int) -> tuple[int, int]:
        """Stored-frame coordinates of the region's pixel (0, 0)."""
        return y0 - self.halo[0], x0 - self.halo[1]

    def reads(self, y0: int, y1: int, x0: int, x1: int) -> list[Read]:
        """The store reads that fill the region of block ``[y0, y1) x [x0, x1)``: one per shard of frames, over the
        rows and columns its shifts reach, clipped to the stored frame (empty reads left out)."""
        n_t, (ny, nx) = self.n_frames, self.frame
        if self.offsets is None:
            return [Read(0, n_t, y0, y1, x0, x1)]
        lo, hi = self.offsets
        step = max(1, int(self.shard_frames))
        out = []
        for t0 in range(0, n_t, step):
            t1 = min(n_t, t0 + step)
            ly, lx = lo[t0:t1].min(axis=0)
            uy, ux = hi[t0:t1].max(axis=0)
            ya, yb = max(0, y0 + int(ly)), min(ny, y1 + int(uy))
            xa, xb = max(0, x0 + int(lx)), min(nx, x1 + int(ux))
            if ya < yb and xa < xb:
                out.append(Read(t0, t1, ya, yb, xa, xb))
        return out

    def read_bytes(self) -> int:
        """Bytes (uncompressed) the whole stage reads from the store."""
        return sum((r.t1 - r.t0) * (r.y1 - r.y0) * (r.x1 - r.x0) for b in self.blocks() for r in self.reads(*b)) \
            * self.itemsize


def region_itemsize(itemsize: int, *, drift: bool, method: str = "multitau", shift_mode: str = "integer",
                    pool_sum: bool = False) -> int:
    """Bytes per value of a g2 task's block: the stored ``itemsize``, or 4 where drift is undone on a float32
    registered copy first (blended shifts, the fft estimator, pooled sums); whole-pixel shifts are gathered by the
    multi-tau kernel from the stored dtype."""
    if drift and (shift_mode != "integer" or method != "multitau" or pool_sum):
        return 4
    return int(itemsize)


def plan_g2(n_frames: int, frame: tuple[int, int], tile: tuple[int, int], itemsize: int, *,
            shard_frames: int | None = None, block_bytes: int = BLOCK_BYTES, shifts=None,
            mode: str = "integer", method: str = "multitau") -> G2Plan:
    """Plan the g2 blocks of a ``n_frames x frame`` series stored in ``tile`` chunks of ``shard_frames`` frames.

    ``itemsize`` is the stored value size; the region's follows :func:`region_itemsize` (float32 where a registered
    copy is made, the stored dtype where the kernel gathers whole-pixel shifts).
    """
    from ..kernels.shift import halo_for, source_offsets

    ny, nx = (int(v) for v in frame)
    tile = (max(1, min(int(tile[0]), ny)), max(1, min(int(tile[1]), nx)))
    offsets, halo = None, (0, 0)
    drift = shifts is not None and np.asarray(shifts).size > 0
    if drift:
        halo = halo_for(shifts, mode)
        offsets = source_offsets(shifts, mode)
    itemsize = region_itemsize(itemsize, drift=drift, method=method, shift_mode=mode)
    block = block_tiles(int(n_frames), int(itemsize), tile, (ny, nx), int(block_bytes))
    return G2Plan(n_frames=int(n_frames), frame=(ny, nx), tile=tile,
                  shard_frames=int(shard_frames or n_frames), itemsize=int(itemsize), block=block, halo=halo,
                  offsets=offsets)
