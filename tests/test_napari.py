"""The napari reader (ecm_dask/napari.yaml -> ecm_dask.interop.napari), headless: napari's Qt-free ViewerModel opens
stores through the real npe2 plugin discovery (the ``napari.manifest`` entry point of the installed package).

Expected values are read from the stores with zarr directly (not through the reader's xarray path)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():  # npe2 and napari declare pydantic models the deprecated way (their business)
    warnings.simplefilter("ignore", DeprecationWarning)
    pytest.importorskip("napari")
    npe2 = pytest.importorskip("npe2")
    from napari.components import ViewerModel

import dask.array as da  # noqa: E402
import zarr  # noqa: E402

from ecm_dask import schema as S  # noqa: E402
from ecm_dask.errors import EcmError, StoreError, ValidationError  # noqa: E402
from ecm_dask.interop.napari import (  # noqa: E402
    LOG10_TAU_LAYER,
    frames_per_chunk,
    get_reader,
    read_results,
    read_series,
)
from ecm_dask.pipeline.run import run_pipeline  # noqa: E402
from ecm_dask.store.integrity import ATTR_INTEGRITY  # noqa: E402
from ecm_dask.synth import SynthParams, write_synthetic_series  # noqa: E402

#: npe2's and napari's pydantic models warn when they are first built (at discovery, in the first viewer)
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
PLUGIN = "ecm_dask"  # the manifest's name: npe2 requires the distribution's name (project.name in pyproject.toml)
PARAMS = SynthParams(ny=32, nx=40, n_frames=240, seed=5)
FRAME_BYTES = PARAMS.ny * PARAMS.nx * 2  # uint16 counts
RESULT_LAYERS = [LOG10_TAU_LAYER, S.BETA, S.CONTRAST, S.STATUS, S.REGIONS_GROUP]


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("napari")
    # shards (and inner chunks) of 60 frames: the series layer's dask chunks, 4 along time
    series = write_synthetic_series(tmp / "s.zarr", PARAMS, progress=False, shard_bytes=FRAME_BYTES * 60)
    results = run_pipeline(series, tmp / "r.zarr", progress=False)
    return Path(series), Path(results)


@pytest.fixture(scope="module")
def plugins():
    """npe2's plugin manager after entry-point discovery (what napari.Viewer does at start-up)."""
    pm = npe2.PluginManager.instance()
    pm.discover()
    return pm


@pytest.fixture
def viewer(plugins):
    return ViewerModel()


def _attrs(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]


def _read(path: Path, name: str) -> np.ndarray:
    return zarr.open_array(store=str(path / name), mode="r")[...]


def _flip(f: Path, at: int) -> None:
    raw = bytearray(f.read_bytes())
    raw[at] ^= 0xFF
    f.write_bytes(bytes(raw))


def _chunk(path: Path, name: str) -> Path:
    return next(p for p in sorted((path / name / "c").rglob("*")) if p.is_file())


# ------------------------------------------------------------------------------------------------- plugin

def test_the_manifest_is_discovered_through_the_entry_point(plugins):
    mf = plugins.get_manifest(PLUGIN)
    (reader,) = mf.contributions.readers
    assert "*.zarr" in reader.filename_patterns and reader.accepts_directories
    assert plugins.get_command(reader.command).python_name == "ecm_dask.interop.napari:get_reader"


def test_importing_ecm_dask_and_the_reader_does_not_import_napari():
    code = ("import sys, ecm_dask, ecm_dask.interop, ecm_dask.interop.napari; "
            "assert not any(m == 'napari' or m.startswith('napari.') for m in sys.modules), 'napari imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_get_reader_claims_series_and_results_stores_only(stores, tmp_path):
    series, results = stores
    assert get_reader(str(series)) is read_series and get_reader([str(results)]) is read_results
    plain = tmp_path / "plain.zarr"
    zarr.create_array(str(plain), shape=(4, 5), dtype="f4")[...] = np.arange(20, dtype="f4").reshape(4, 5)
    unrelated = tmp_path / "notes.zarr"
    unrelated.mkdir()
    (unrelated / "readme.txt").write_text("not a store")
    for path in (plain, unrelated, tmp_path / "absent.zarr", tmp_path):
        assert get_reader(str(path)) is None, path
    assert get_reader([str(series), str(results)]) is None  # a stack of stores is not one image


def test_a_plain_zarr_array_falls_back_to_another_reader_and_is_refused_by_name(stores, viewer, tmp_path):
    _, results = stores
    plain = tmp_path / "plain.zarr"
    data = np.arange(20, dtype="f4").reshape(4, 5)
    zarr.create_array(str(plain), shape=data.shape, dtype=data.dtype)[...] = data
    # no reader chosen: npe2 tries every compatible reader in turn; ecm_dask declines, napari's own reads it
    layer_data, reader = npe2.read_get_reader(str(plain))
    assert reader.plugin_name != PLUGIN
    np.testing.assert_array_equal(np.asarray(layer_data[0][0]), data)
    _, reader = npe2.read_get_reader(str(results))
    assert reader.plugin_name == PLUGIN
    with pytest.raises(ValueError, match="refused"):
        viewer.open(str(plain), plugin=PLUGIN)


# ------------------------------------------------------------------------------------------------- series

def test_the_series_is_one_lazy_calibrated_image_layer(stores, viewer, monkeypatch):
    from ecm_dask.store import integrity

    series, _ = stores
    reads = []
    original = integrity.CheckedArray.__getitem__

    def spy(self, key):
        reads.append(key)
        return original(self, key)

    monkeypatch.setattr(integrity.CheckedArray, "__getitem__", spy)
    (layer,) = viewer.open(str(series), plugin=PLUGIN)
    attrs = _attrs(series)
    assert layer.name == S.INTENSITY and layer.source.reader_plugin == PLUGIN
    assert isinstance(layer.data, da.Array) and layer.data.shape == (PARAMS.n_frames, PARAMS.ny, PARAMS.nx)
    assert layer.data.chunks == ((60,) * 4, (PARAMS.ny,), (PARAMS.nx,))  # whole frames, within stored chunks
    # opening read 3 single frames (contrast limits) and the dask chunks of the frames napari displayed
    shown = {int(viewer.dims.current_step[0])}
    single = sorted(k[0] for k in reads if isinstance(k[0], int))
    ranges = {(k[0].start, k[0].stop) for k in reads if isinstance(k[0], slice)}
    assert single == layer.metadata["contrast_frames"] == [0, 119, 239]
    assert ranges and ranges <= {(0, 60), (60, 120)}, ranges  # napari shows frame 0, then the middle one
    assert any(lo <= t < hi for t in shown for lo, hi in ranges)
    stored = zarr.open_array(store=str(series / S.INTENSITY), mode="r")
    for k in (0, 117, PARAMS.n_frames - 1):
        np.testing.assert_array_equal(np.asarray(layer.data[k]), stored[k])
    np.testing.assert_allclose(layer.scale, [attrs[S.ATTR_FRAME_TIME], attrs[S.ATTR_PIXEL_SIZE],
                                             attrs[S.ATTR_PIXEL_SIZE]])
    assert attrs[S.ATTR_FRAME_TIME] == PARAMS.frame_time_s and attrs[S.ATTR_PIXEL_SIZE] == PARAMS.pixel_size_nm
    np.testing.assert_allclose(layer.translate, [_read(series, d)[0] for d in S.SERIES_DIMS])
    assert tuple(layer.axis_labels) == S.SERIES_DIMS
    assert [str(u) for u in layer.units] == ["second", "nanometer", "nanometer"]
    sample = np.stack([stored[k] for k in layer.metadata["contrast_frames"]])
    lo, hi = layer.contrast_limits
    assert sample.min() <= lo < hi <= sample.max()
    assert layer.metadata["store"] == str(series.resolve()) and layer.metadata["frame_time_s"] == PARAMS.frame_time_s


def test_series_chunks_hold_whole_frames_within_a_stored_chunk_and_a_memory_budget():
    assert frames_per_chunk(256, 24_576) == 256  # the demo: 96 x 128 uint16, one stored chunk per dask chunk
    assert frames_per_chunk(256, 631 * 861 * 2) == 32  # 1.1 MB frames: 32 of them fit 64 MiB
    assert frames_per_chunk(60, 10 << 20) == 6 and frames_per_chunk(7, 1 << 30) == 1
    assert frames_per_chunk(256, 1 << 20, budget=100 << 20) == 64  # a divisor: never across a stored chunk


def test_an_incomplete_series_store_is_refused_naming_it(stores, tmp_path, viewer):
    series, _ = stores
    broken = shutil.copytree(series, tmp_path / "s.zarr")
    meta = json.loads((broken / "zarr.json").read_text())
    meta["attributes"][S.ATTR_COMPLETE] = False
    (broken / "zarr.json").write_text(json.dumps(meta))
    assert get_reader(str(broken)) is read_series
    with pytest.raises(ValidationError, match="incomplete") as err:
        viewer.open(str(broken), plugin=PLUGIN)
    assert str(broken) in str(err.value)


# ------------------------------------------------------------------------------------------------ results

def test_results_maps_show_only_trusted_pixels(stores, viewer):
    _, results = stores
    layers = viewer.open(str(results), plugin=PLUGIN)
    assert [layer.name for layer in layers] == RESULT_LAYERS
    by_name = {layer.name: layer for layer in layers}
    status = _read(results, S.STATUS)
    ok = status == S.STATUS_OK
    assert 50 < ok.sum() < ok.size  # the synthetic wire: trusted pixels and others
    tau = _read(results, S.TAU).astype(np.float64)
    expected = {LOG10_TAU_LAYER: np.where(ok, np.log10(np.where(ok, tau, 1.0)), np.nan),
                S.BETA: np.where(ok, _read(results, S.BETA), np.nan),
                S.CONTRAST: np.where(ok, _read(results, S.CONTRAST), np.nan)}
    for name, want in expected.items():
        layer = by_name[name]
        assert layer._type_string == "image"
        np.testing.assert_allclose(layer.data, want, rtol=1e-6, equal_nan=True)
        lo, hi = layer.contrast_limits
        np.testing.assert_allclose((lo, hi), np.percentile(want[ok], [1, 99]), rtol=1e-5)
        assert layer.metadata["store"] == str(results.resolve()) and layer.metadata["variable"] in S.ROOT_MAPS
    assert by_name[LOG10_TAU_LAYER].metadata["value_units"] == "log10(s)"
    assert by_name[LOG10_TAU_LAYER].colormap.name == "viridis" and by_name[LOG10_TAU_LAYER].visible


def test_results_labels_equal_the_stored_codes_and_name_them(stores, viewer):
    _, results = stores
    by_name = {layer.name: layer for layer in viewer.open(str(results), plugin=PLUGIN)}
    status, region = by_name[S.STATUS], by_name[S.REGIONS_GROUP]
    assert status._type_string == region._type_string == "labels"
    np.testing.assert_array_equal(status.data, _read(results, S.STATUS))
    stored_region = _read(results / S.REGIONS_GROUP, S.REGION)
    np.testing.assert_array_equal(region.data, stored_region)
    assert {S.REGION_BULK, S.REGION_SURFACE, S.REGION_VACUUM} <= set(np.unique(stored_region).tolist())
    names = dict(zip(region.features["index"], region.features["name"]))
    assert names[S.REGION_SURFACE] == S.REGION_NAMES[S.REGION_SURFACE] == "surface"
    assert names[S.REGION_BULK] == "bulk" and names[S.REGION_EXCLUDED] == "excluded"
    counts = dict(zip(region.features["index"], region.features["pixels"]))
    assert counts[S.REGION_SURFACE] == np.count_nonzero(stored_region == S.REGION_SURFACE)
    status_names = dict(zip(status.features["index"], status.features["name"]))
    assert status_names[S.STATUS_VACUUM] == "vacuum" and status_names[S.STATUS_OK] == "ok"


def test_results_layers_are_calibrated_and_line_up_with_the_series(stores, viewer):
    series, results = stores
    (image,) = viewer.open(str(series), plugin=PLUGIN)
    layers = viewer.open(str(results), plugin=PLUGIN)
    pixel = _attrs(results)[S.ATTR_PIXEL_SIZE]
    np.testing.assert_allclose(pixel, PARAMS.pixel_size_nm, rtol=1e-9)
    y, x = _read(results, S.Y), _read(results, S.X)
    for layer in layers:
        np.testing.assert_allclose(layer.scale, [pixel, pixel], rtol=1e-9)
        np.testing.assert_allclose(layer.translate, [y[0], x[0]])
        assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
        np.testing.assert_allclose(layer.scale, image.scale[1:], rtol=1e-9)
        np.testing.assert_allclose(layer.translate, image.translate[1:])
    # the same world point is the same pixel in the series and in the maps
    world = (0.0, y[7], x[11])
    assert tuple(image.world_to_data(world)[1:]) == pytest.approx((7, 11))
    assert tuple(layers[0].world_to_data(world[1:])) == pytest.approx((7, 11))


@pytest.mark.parametrize("damage", ["missing chunk", "flipped byte", "missing array"])
def test_a_damaged_results_store_is_an_error_naming_the_file(stores, tmp_path, viewer, damage):
    _, results = stores
    broken = shutil.copytree(results, tmp_path / "r.zarr")
    if damage == "missing chunk":
        f = _chunk(broken, S.TAU)
        f.unlink()
        expected = str(f)
    elif damage == "flipped byte":
        f = _chunk(broken, S.STATUS)
        _flip(f, f.stat().st_size // 2)
        expected = str(f)
    else:  # the consolidated metadata still lists it: it must not read as the fill value (vacuum)
        shutil.rmtree(broken / S.REGIONS_GROUP / S.REGION)
        expected = str(broken / S.REGIONS_GROUP / S.REGION)
    assert get_reader(str(broken)) is read_results
    with pytest.raises(StoreError) as err:
        viewer.open(str(broken), plugin=PLUGIN)
    assert expected in str(err.value), str(err.value)
    assert not viewer.layers


def test_a_results_store_without_maps_is_an_error_naming_it(stores, tmp_path):
    _, results = stores
    broken = shutil.copytree(results, tmp_path / "r.zarr")
    shutil.rmtree(broken / S.TAU)
    meta = json.loads((broken / "zarr.json").read_text())
    meta.pop("consolidated_metadata", None)
    meta["attributes"].pop(ATTR_INTEGRITY, None)  # an older store: no chunk files recorded
    (broken / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(EcmError) as err:
        read_results(str(broken))
    assert str(broken) in str(err.value) and S.TAU in str(err.value)
