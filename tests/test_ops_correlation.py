"""The labelled g2 layer: exact against the kernel, local dask graphs, drift hook, pooling, relayout."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.core import get_dependencies

from ecm_dask import schema as S
from ecm_dask.kernels.g2 import PIXEL_OK, PIXEL_OUTSIDE, g2
from ecm_dask.ops import correlate, register, relayout
from ecm_dask.ops import g2 as g2_labelled
from ecm_dask.store.series import open_series
from ecm_dask.synth import SynthParams, write_synthetic_series


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = SynthParams(ny=48, nx=64, n_frames=600, seed=21)
    path = write_synthetic_series(tmp_path_factory.mktemp("s") / "s.zarr", p, tile=16,
                                  shard_bytes=48 * 64 * 2 * 150, progress=False)
    return open_series(path)


def labelled(arr, frame_time=0.5, px=0.33, chunks=(50, 16, 16)):
    n_t, ny, nx = arr.shape
    return xr.Dataset(
        {S.INTENSITY: ((S.TIME, S.Y, S.X), da.from_array(arr, chunks=chunks))},
        coords={S.TIME: np.arange(n_t) * frame_time, S.Y: np.arange(ny) * px, S.X: np.arange(nx) * px},
        attrs={S.ATTR_FRAME_TIME: frame_time, S.ATTR_PIXEL_SIZE: px})


def test_equals_the_kernel_with_labels_units_and_settings(store):
    res = correlate(store, method="multitau", points_per_octave=8).compute()
    ref = g2(store.intensity.values, axis=0, points_per_octave=8)
    np.testing.assert_allclose(res.g2.values, ref.g2, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(res.status.values, ref.status)
    assert res.g2.dims == (S.Y, S.X, S.LAG)
    np.testing.assert_allclose(res[S.LAG].values, ref.lag * 0.5)  # seconds
    assert res[S.LAG].attrs["units"] == "s" and res.attrs["normalization"] == "symmetric"
    np.testing.assert_allclose(res.pairs.values, ref.pairs)
    np.testing.assert_allclose(res[S.X].values, store[S.X].values)
    da_ = g2_labelled(store, method="fft").compute()
    assert da_.dims == (S.Y, S.X, S.LAG) and "pairs" in da_.coords and da_.attrs["estimator"] == "fft"


def _ancestors(dsk, key, stop_prefix):
    """Keys of the layer named ``stop_prefix`` that ``key`` depends on."""
    seen, todo, found = set(), [key], set()
    while todo:
        k = todo.pop()
        if k in seen:
            continue
        seen.add(k)
        name = k[0] if isinstance(k, tuple) else k
        if isinstance(name, str) and name.startswith(stop_prefix) and isinstance(k, tuple):
            found.add(k)
            continue
        todo.extend(get_dependencies(dsk, k))
    return found


def generic(store):
    """The same series, but not recognisable as a pristine store array: forces the dask-chunk path."""
    ds = store.copy()
    ds[S.INTENSITY] = ds[S.INTENSITY].copy(data=ds[S.INTENSITY].data.map_blocks(np.asarray))
    return ds


def test_direct_store_path_has_one_task_per_block_and_equals_the_chunk_path(store, tmp_path):
    res = correlate(store, block_bytes=600 * 32 * 32 * 2)
    assert res.attrs["read_path"] == "direct from store"
    layers = res.g2.data.dask.layers
    assert not any(name.startswith("open_dataset") for name in layers)  # no per-chunk read tasks
    blocks = [k for k in dict(res.g2.data.__dask_graph__()) if k[0].startswith("direct_block")]
    assert len(blocks) == 2 * 2  # 48 x 64 pixels in blocks of 32 x 32
    ref = correlate(generic(store), block_bytes=600 * 32 * 32 * 2)
    assert ref.attrs["read_path"] == "dask chunks"
    np.testing.assert_array_equal(res.g2.values, ref.g2.values)
    truth = xr.open_zarr(store.encoding["source"], group="truth")
    shifts = truth["shift"].values
    a = correlate(store, shifts=shifts).compute()
    b = correlate(generic(store), shifts=shifts).compute()
    np.testing.assert_array_equal(a.status.values, b.status.values)
    np.testing.assert_allclose(a.g2.values, b.g2.values, rtol=1e-6, equal_nan=True)
    # the direct path reads each run of stored frames only where its shifts reach: same result, also bilinear
    a = correlate(store, shifts=shifts, shift_mode="bilinear", block_bytes=600 * 32 * 32 * 2).compute()
    b = correlate(generic(store), shifts=shifts, shift_mode="bilinear", block_bytes=600 * 32 * 32 * 2).compute()
    np.testing.assert_array_equal(a.status.values, b.status.values)
    np.testing.assert_allclose(a.g2.values, b.g2.values, rtol=1e-6, equal_nan=True)
    # a subset is not the store any more: the generic path reads it
    assert correlate(store.isel(time=slice(0, 300))).attrs["read_path"] == "dask chunks"


def test_each_g2_block_of_the_chunk_path_reads_only_its_own_tiles_no_all_to_all(store):
    data = generic(store).intensity.data
    res = correlate(generic(store), block_bytes=600 * 32 * 32 * 2)  # blocks of 2 x 2 store tiles
    g = res.g2.data
    assert g.chunks[0] == (32, 16) and g.chunks[1] == (32, 32)
    dsk = dict(g.__dask_graph__())
    src = data.name
    n_time_chunks = len(data.chunks[0])
    for key in g.__dask_keys__()[0][0][:1] + g.__dask_keys__()[1][1][:1]:
        key = key[0] if isinstance(key, list) else key
        deps = _ancestors(dsk, key, src)
        iy, ix = key[1], key[2]
        tiles = {(k[2], k[3]) for k in deps}
        # a 32x32 block is made of the 2x2 store tiles under it, all time chunks of each, nothing else
        expect = {(ty, tx) for ty in range(2 * iy, min(2 * iy + 2, 3)) for tx in range(2 * ix, 2 * ix + 2)}
        assert tiles == expect and len(deps) == n_time_chunks * len(expect)
    layers = "".join(res.g2.data.dask.layers)
    assert "p2p" not in layers and "shuffle" not in layers and res.attrs["read_path"] == "dask chunks"


def test_drift_hook_undoes_integer_shifts_exactly_and_flags_pixels_out_of_view():
    rng = np.random.default_rng(4)
    n_t, ny, nx = 120, 40, 48
    truth = rng.gamma(5.0, 20.0, (n_t, ny, nx)).astype(np.float32)
    # different drift in y and x, so swapped axes cannot pass
    shifts = np.stack([np.round(np.linspace(0, 4, n_t)), np.round(np.linspace(0, -6, n_t))], axis=1)
    observed = np.full_like(truth, 7777.0)  # garbage where the sample was not seen
    for t, (dy, dx) in enumerate(shifts.astype(int)):
        ys, xs = slice(max(dy, 0), ny + min(dy, 0)), slice(max(dx, 0), nx + min(dx, 0))
        observed[t, ys, xs] = truth[t, max(-dy, 0):ny - max(dy, 0), max(-dx, 0):nx - max(dx, 0)]
    got = correlate(labelled(observed), shifts=shifts).compute()
    want = correlate(labelled(truth)).compute()
    inside = np.zeros((ny, nx), bool)
    inside[0:ny - 4, 6:nx] = True  # covered in every frame
    np.testing.assert_array_equal(got.status.values == PIXEL_OUTSIDE, ~inside)
    np.testing.assert_allclose(got.g2.values[inside], want.g2.values[inside], rtol=1e-6)
    assert np.isnan(got.g2.values[~inside]).all()
    # bilinear mode with whole-pixel shifts is the same operation
    bil = correlate(labelled(observed), shifts=shifts, shift_mode="bilinear").compute()
    np.testing.assert_allclose(bil.g2.values[inside], want.g2.values[inside], rtol=1e-6)


def test_registration_sign_matches_the_synthetic_drift_convention(tmp_path):
    p = SynthParams(ny=48, nx=64, n_frames=256, seed=5, counts_wire=float("inf"), drift_px=(4.0, -6.0),
                    drift_walk_px=0.3)
    ds = open_series(write_synthetic_series(tmp_path / "d.zarr", p, tile=16, progress=False))
    truth = xr.open_zarr(tmp_path / "d.zarr", group="truth").load()
    crystal = (truth.region == S.REGION_CRYSTAL).values
    reg, cover = register(ds.intensity, truth["shift"].values, mode="bilinear")
    good = crystal & cover.values
    assert good.sum() > 50
    std_raw = ds.intensity.values[:, good].std(0).mean()
    std_reg = reg.values[:, good].std(0).mean()
    wrong, _ = register(ds.intensity, -truth["shift"].values, mode="bilinear")
    std_wrong = wrong.values[:, good & ~np.isnan(wrong.values).any(0)].std(0).mean()
    # the static crystal becomes (nearly) static again only with the right sign
    assert std_reg < 0.2 * std_raw and std_wrong > std_raw


def test_frame_chunked_series_is_refused_and_relayout_fixes_it(store, tmp_path):
    frames = store.intensity.values
    whole = xr.Dataset({S.INTENSITY: ((S.TIME, S.Y, S.X), da.from_array(frames, chunks=(8, 48, 64)))},
                       coords=store.coords, attrs=store.attrs)
    # shrink the "whole frame" threshold instead of building a huge test frame
    import ecm_dask.ops.correlation as C

    old = C.MAX_TILE_PIXELS
    C.MAX_TILE_PIXELS = 16 * 16
    try:
        with pytest.raises(ValueError, match="relayout"):
            correlate(whole)
        fixed = relayout(whole, tmp_path / "r.zarr", tile=16, frames_per_shard=100, progress=False)
        assert not C.needs_relayout(fixed.intensity.data)
    finally:
        C.MAX_TILE_PIXELS = old
    np.testing.assert_array_equal(fixed.intensity.values, frames)
    a = correlate(fixed).g2.values
    b = correlate(store).g2.values
    np.testing.assert_allclose(a, b, rtol=1e-6, equal_nan=True)


def test_pooling_modes_match_numpy_references():
    rng = np.random.default_rng(8)
    x = rng.poisson(50, (200, 16, 24)).astype(np.uint16)
    summed = correlate(labelled(x, chunks=(50, 8, 8)), pool=2, pool_mode="sum").compute()
    pooled = x.reshape(200, 8, 2, 12, 2).sum(axis=(2, 4))
    np.testing.assert_allclose(summed.g2.values, g2(pooled, axis=0).g2, rtol=1e-6)
    assert summed.g2.shape[:2] == (8, 12)
    np.testing.assert_allclose(summed[S.Y].values, (np.arange(16) * 0.33).reshape(8, 2).mean(1))
    avg = correlate(labelled(x, chunks=(50, 8, 8)), pool=2, pool_mode="average").compute()
    per_pixel = g2(x, axis=0).g2
    np.testing.assert_allclose(avg.g2.values, per_pixel.reshape(8, 2, 12, 2, -1).mean(axis=(1, 3)), rtol=1e-6)


def test_bad_frames_by_index_or_mask_and_lag_limit_in_seconds(store):
    n_t = store.sizes[S.TIME]
    bad = [5, 6, 100]
    by_idx = correlate(store, bad_frames=bad, max_lag=40.0).compute()
    mask = np.zeros(n_t, bool)
    mask[bad] = True
    by_mask = correlate(store, bad_frames=mask, max_lag=40.0).compute()
    keep = ~mask
    ref = g2(store.intensity.values, axis=0, frame_mask=keep, max_lag=80)
    np.testing.assert_allclose(by_idx.g2.values, ref.g2, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(by_idx.g2.values, by_mask.g2.values)
    assert by_idx.attrs["n_bad_frames"] == 3 and by_idx[S.LAG].values.max() <= 40.0
    with pytest.raises(ValueError, match="max_lag"):
        correlate(store, max_lag=0.1)
    with pytest.raises(ValueError, match="outside"):
        correlate(store, bad_frames=[n_t])


def test_threaded_and_synchronous_schedulers_agree(store):
    a = correlate(store, method="fft").compute(scheduler="threads")
    with dask.config.set(scheduler="synchronous"):
        b = correlate(store, method="fft").compute()
    np.testing.assert_array_equal(a.g2.values, b.g2.values)
    assert (a.status.values == PIXEL_OK).mean() > 0.9
