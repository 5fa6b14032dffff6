"""The g2 block planner (shapes only): blocks tile the frame once, and every source pixel a registered pixel in
view needs is inside one of its block's reads - checked by brute force against the shift convention."""

import numpy as np
import pytest

from ecm_dask.kernels.shift import coverage
from ecm_dask.ops.g2plan import G2Plan, block_tiles, plan_g2


def test_blocks_are_whole_tiles_and_cover_the_frame_exactly_once():
    plan = plan_g2(500, (100, 150), (16, 16), 2, shard_frames=50, block_bytes=500 * 32 * 32 * 2)
    assert plan.block == (32, 32) and plan.grid == (4, 5) and plan.n_blocks == 20
    hits = np.zeros((100, 150), int)
    for y0, y1, x0, x1 in plan.blocks():
        assert y0 % 16 == 0 and x0 % 16 == 0
        hits[y0:y1, x0:x1] += 1
    assert (hits == 1).all()
    assert plan.block_bytes == 500 * 32 * 32 * 2 and plan.halo == (0, 0)
    # without drift: one read of exactly the block over all frames
    assert [(r.t0, r.t1, r.y0, r.y1, r.x0, r.x1) for r in plan.reads(32, 64, 128, 150)] == [(0, 500, 32, 64, 128, 150)]
    assert plan.read_bytes() == 500 * 100 * 150 * 2


def test_block_size_follows_the_byte_budget_and_never_exceeds_the_frame():
    assert block_tiles(1000, 2, (64, 64), (631, 861), 160 << 20) == (256, 256)  # 20.5 tiles: 4 x 4
    assert block_tiles(1000, 4, (64, 64), (631, 861), 160 << 20) == (192, 192)  # 10.2 tiles: 3 x 3
    assert block_tiles(10, 2, (64, 64), (100, 90), 1 << 40) == (100, 90)
    assert block_tiles(10 ** 6, 8, (64, 64), (100, 90), 1) == (64, 64)  # at least one tile


@pytest.mark.parametrize("mode", ["integer", "bilinear"])
def test_every_source_pixel_of_a_pixel_in_view_is_read(mode):
    rng = np.random.default_rng(0)
    n_t, ny, nx = 120, 40, 52
    shifts = np.cumsum(rng.normal(0, 0.25, (n_t, 2)), axis=0) + (1.5, -2.0)
    plan = plan_g2(n_t, (ny, nx), (8, 8), 2, shard_frames=16, block_bytes=n_t * 16 * 16 * 2, shifts=shifts,
                   mode=mode)
    assert plan.itemsize == (2 if mode == "integer" else 4)  # whole pixels are gathered from the stored dtype
    cover = coverage((ny, nx), shifts, mode)
    if mode == "integer":
        d = np.floor(shifts + 0.5).astype(int)
        needs = [(d[:, 0], d[:, 1])]
    else:
        f = np.floor(shifts).astype(int)
        frac = shifts - f
        needs = [(f[:, 0] + a * (frac[:, 0] > 0), f[:, 1] + b * (frac[:, 1] > 0)) for a in (0, 1) for b in (0, 1)]
    full = 0
    for y0, y1, x0, x1 in plan.blocks():
        oy, ox = plan.region_origin(y0, x0)
        shape = plan.region_shape(y0, y1, x0, x1)
        read = np.zeros(shape, bool)
        for r in plan.reads(y0, y1, x0, x1):
            assert 0 <= r.y0 < r.y1 <= ny and 0 <= r.x0 < r.x1 <= nx and r.t1 - r.t0 <= 16
            read[r.t0:r.t1, r.y0 - oy:r.y1 - oy, r.x0 - ox:r.x1 - ox] = True
        full += shape[0] * (min(ny, y1 + plan.halo[0]) - max(0, y0 - plan.halo[0])) * \
            (min(nx, x1 + plan.halo[1]) - max(0, x0 - plan.halo[1]))
        for y in range(y0, y1):
            for x in range(x0, x1):
                if not cover[y, x]:
                    continue
                for dy, dx in needs:
                    src_y, src_x = y + dy - oy, x + dx - ox
                    assert read[np.arange(n_t), src_y, src_x].all(), (y, x)
    # reading only where each shard's shifts reach decodes less than the whole halo around every block
    assert plan.read_bytes() < full * plan.itemsize


def test_the_plan_is_plain_data_without_io():
    plan = plan_g2(10, (8, 8), (4, 4), 2)
    assert isinstance(plan, G2Plan) and plan.offsets is None and plan.region_bytes == plan.block_bytes
    assert plan == plan_g2(10, (8, 8), (4, 4), 2)
