"""What a run needs, from shapes alone: the g2 block plan and the memory one task needs.

A dask worker pauses at 80 % of its memory limit and is restarted at 95 %; a task that needs more than that never
finishes (a paused worker waits forever, a restarted one is killed again and again).  :func:`check_memory` refuses
such a limit before any cluster starts and says which limit (or block size) works.

The model (bytes of one task of the g2 stage, the largest of the pipeline):
``WORKER_BASE + BLOCK_FACTOR * block`` with ``block = frames x block pixels x itemsize`` (the stored dtype; float32
when drift is undone by blending or for the fft estimator).  Calibrated with ``benchmarks/bench_task_memory.py`` on
a one-worker LocalCluster (distributed's MemorySampler, 2000 x 256 x 256 synthetic series): peaks of 354 / 686 / 1082 MiB for float32 blocks of 31 / 281 /
500 MiB when drift was undone on a registered copy, i.e. ~300 MiB of worker, imports, compiled kernels and the other
stages, plus ~1.6x the block; the model gives 350 / 750 / 1100 MiB.  Since the kernel gathers the registered pixels
from uint16 regions (no copy), the peaks are 343 / 614 MiB for blocks of 62.5 / 250 MiB (model 400 / 700 MiB): the
model stays on the safe side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: resident memory of a worker with the stack imported and kernels compiled, plus the small stages (bytes)
WORKER_BASE = 300 << 20
#: bytes a g2 task holds per byte of its (time, y, x) block
BLOCK_FACTOR = 1.6
#: distributed pauses a worker at this fraction of its limit (distributed.worker.memory.pause)
PAUSE_FRACTION = 0.8
#: keep this margin below the pause threshold
HEADROOM = 0.85


@dataclass(frozen=True)
class Plan:
    """The g2 block plan of a run and the memory one task needs."""

    n_frames: int
    block: tuple[int, int]
    block_bytes: int
    n_blocks: int
    smallest_block_bytes: int

    def task_bytes(self, threads: int = 1, block_bytes: int | None = None) -> int:
        """Memory a worker running ``threads`` g2 tasks at once needs."""
        b = self.block_bytes if block_bytes is None else block_bytes
        return int(WORKER_BASE + threads * BLOCK_FACTOR * b)

    def min_limit(self, threads: int = 1, block_bytes: int | None = None) -> int:
        """The smallest per-worker memory limit that keeps those tasks below the pause threshold."""
        return int(math.ceil(self.task_bytes(threads, block_bytes) / (PAUSE_FRACTION * HEADROOM)))


def plan_run(config, ds) -> Plan:
    """The g2 blocks of ``config`` (a :class:`~ecm_dask.pipeline.config.RunConfig`) on the series ``ds``
    (metadata only: shape, dtype, store tile)."""
    import numpy as np

    from .. import schema as S
    from ..ops.g2plan import plan_g2, region_itemsize

    da = ds[S.INTENSITY]
    n_t, ny, nx = (int(s) for s in da.shape)
    chunks = da.encoding.get("chunks") or (n_t, min(64, ny), min(64, nx))
    tile = (int(chunks[1]), int(chunks[2]))
    g = config.g2
    itemsize = region_itemsize(np.dtype(da.dtype).itemsize, drift=config.drift, method=g.method,
                               shift_mode=g.shift_mode, pool_sum=g.pool > 1 and g.pool_mode == "sum")
    plan = plan_g2(n_t, (ny, nx), tile, itemsize, shard_frames=int(chunks[0]), block_bytes=g.block_bytes)
    smallest = n_t * min(tile[0], ny) * min(tile[1], nx) * itemsize
    return Plan(n_frames=n_t, block=plan.block, block_bytes=plan.block_bytes, n_blocks=plan.n_blocks,
                smallest_block_bytes=smallest)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{math.ceil(n / 2**20)} MiB"


def check_memory(plan: Plan, limit: int | None, threads: int = 1) -> None:
    """Refuse a per-worker ``limit`` (bytes) too small for the tasks of ``plan`` with a ParameterError giving the
    limit to use (and a smaller --block-mb if one would fit)."""
    from ..errors import ParameterError

    if limit is None:
        return
    need = plan.min_limit(threads)
    if limit >= need:
        return
    tip = f"use --memory-limit {math.ceil(need / 2**20)}MiB or more"
    fits = (PAUSE_FRACTION * HEADROOM * limit - WORKER_BASE) / (BLOCK_FACTOR * threads)
    if fits >= plan.smallest_block_bytes:
        tip += f", or --block-mb {max(1, int(fits / 2**20))} (smaller g2 blocks)"
    elif plan.min_limit(threads, plan.smallest_block_bytes) > limit:
        tip += (f" (even the smallest g2 block, one store tile over all {plan.n_frames} frames = "
                f"{_gib(plan.smallest_block_bytes)}, needs {_gib(plan.min_limit(threads, plan.smallest_block_bytes))})")
    raise ParameterError(f"--memory-limit {_gib(limit)} per worker is too small: a g2 task of "
                         f"{plan.block[0]} x {plan.block[1]} pixels x {plan.n_frames} frames "
                         f"({_gib(plan.block_bytes)}){f' x {threads} threads' if threads > 1 else ''} needs about "
                         f"{_gib(plan.task_bytes(threads))}, and a worker pauses at {PAUSE_FRACTION:.0%} of its "
                         f"limit; {tip}")


def check_workers(plan: Plan, client) -> None:
    """:func:`check_memory` against the memory limit and threads of every worker of a connected ``client``."""
    workers = client.scheduler_info().get("workers", {})
    for info in workers.values():
        limit = info.get("memory_limit") or None  # 0 / None: no limit
        check_memory(plan, int(limit) if limit else None, int(info.get("nthreads", 1) or 1))
