"""The typed run configuration (issue 13, item 5): every option validated once, arithmetically, before any
allocation or cluster start; config files capped in size and alias expansion."""

from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import pytest
from conftest import ecm_cli, one_line_error

from ecm_dask.errors import ParameterError
from ecm_dask.pipeline.config import FrameRanges, G2Config, RunConfig, load_config_file


def test_frame_ranges_parse_merge_count_and_mask_like_a_direct_expansion():
    fr = FrameRanges.parse("12, 3,7,10-12,8-9,40")
    assert fr.ranges == ((3, 3), (7, 12), (40, 40)) and fr.count == 8 and str(fr) == "3,7-12,40"
    expected = np.zeros(50, bool)
    expected[[3, 7, 8, 9, 10, 11, 12, 40]] = True
    np.testing.assert_array_equal(fr.mask(50), expected)
    assert FrameRanges.parse([5, 1, 2]).ranges == ((1, 2), (5, 5))
    assert FrameRanges.parse(np.array([False, True, True, False])).ranges == ((1, 2),)
    assert FrameRanges.parse(str(fr)) == fr  # the stored form reads back


@pytest.mark.parametrize("text, words", [("10-5", "10-5 is empty"), ("-3", "frame numbers like"),
                                         ("a-b", "frame numbers like"), ("3,,x", "frame numbers like")])
def test_bad_frame_ranges_are_refused_with_the_range(text, words):
    with pytest.raises(ParameterError, match=words):
        FrameRanges.parse(text)


@pytest.mark.parametrize("text", ["0-30000000", "0-999999999999", "5-999999999999999999999"])
def test_huge_frame_ranges_cost_nothing_before_they_are_refused(text):
    tracemalloc.start()
    t0 = time.perf_counter()
    fr = FrameRanges.parse(text)
    with pytest.raises(ParameterError, match="outside the series of 600 frames"):
        fr.check(600)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20 and time.perf_counter() - t0 < 0.5  # never expanded (0-30000000 used to take 2.6 GB)
    assert fr.count == int(text.split("-")[1]) - int(text.split("-")[0]) + 1


@pytest.mark.parametrize("options, words", [
    ({"g2_options": {"max_lag": float("nan")}}, "max_lag (--max-lag, seconds) must be a finite number"),
    ({"g2_options": {"max_lag": float("inf")}}, "max_lag (--max-lag, seconds) must be a finite number"),
    ({"g2_options": {"max_lag": -1.0}}, "must be > 0"),
    ({"g2_options": {"block_bytes": float("inf")}}, "--block-mb"),
    ({"g2_options": {"pool": 3.5}}, "pool (--pool) must be a whole number"),
    ({"g2_options": {"method": "magic"}}, "method (--method) must be one of multitau, fft"),
    ({"g2_options": {"colour": 1}}, "unknown g2 option(s) ['colour']"),
    ({"max_shift": float("nan")}, "max_shift (--max-shift, pixels) must be a finite number"),
    ({"surface_nm": float("inf")}, "surface_nm (--surface-nm) must be a finite number"),
    ({"reference_roi": "0:nan,0:5"}, "with finite numbers"),
    ({"reference_roi": (0, 1, 2)}, "must be (y0, y1, x0, x1)"),
    ({"fit_options": {"fixed": {"beta": float("nan")}}}, "fixed['beta'] must be a finite number"),
    ({"fit_options": {"fixed": {"beta": 100}}}, "outside its bounds [0.1, 2.5]"),
    ({"fit_options": {"max_iter": 10**12}}, "max_iter must be a whole number in [1, 10000]"),
    ({"fit_options": {"bounds": {"beta": [0.1, float("nan")]}}}, "bounds['beta'] must be numbers"),
    ({"pooling": {"radius": 99}}, "radius"),
    ({"drift": "yes"}, "drift must be true or false"),
])
def test_every_bad_option_is_refused_naming_it(options, words):
    with pytest.raises(ParameterError) as err:
        RunConfig.build("s.zarr", **options)
    assert words in str(err.value), str(err.value)


def test_defaults_and_the_json_form():
    cfg = RunConfig.build("s.zarr", g2_options={"bad_frames": "3,10-12", "pool": 2.0})
    d = cfg.as_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["g2"]["bad_frames"] == "3,10-12" and d["g2"]["pool"] == 2 and d["surface_nm"] == 1.0
    assert d["pooling"] == {"radius": 3, "tol": 0.3, "passes": 3}
    kw = cfg.g2.kwargs(20)
    assert kw["bad_frames"].sum() == 4 and kw["bad_frames"][[3, 10, 11, 12]].all()
    assert G2Config.build(d["g2"]) == cfg.g2  # the stored form rebuilds the same configuration


def test_series_dependent_checks_use_the_metadata_only(tmp_path):
    # a lazily 'opened' series of 10^6 frames: checks must not touch (or allocate) its data
    import dask.array as da
    import xarray as xr

    from ecm_dask import schema as S
    data = da.zeros((1_000_000, 12, 12), dtype="uint16", chunks=(1000, 12, 12))
    ds = xr.Dataset({S.INTENSITY: ((S.TIME, S.Y, S.X), data)},
                    coords={S.Y: np.arange(12) * 0.5, S.X: np.arange(12) * 0.5}, attrs={S.ATTR_FRAME_TIME: 0.1})
    ok = RunConfig.build("s.zarr", g2_options={"bad_frames": "0-500000", "max_lag": 1000.0})
    ok.check_series(ds)
    cases = [({"g2_options": {"bad_frames": "0-999999999999"}}, "frame(s) 0-999999999999 outside the series of 1000000"),
             ({"g2_options": {"bad_frames": "1-999999"}}, "leaves 1 of 1000000 frames"),
             ({"g2_options": {"max_lag": 1e9}}, "between 1 and 999999 frames"),
             ({"g2_options": {"max_lag": 0.01}}, "is 0 frames"),
             ({"g2_options": {"pool": 16}}, "--pool 16 is larger than the frame of 12 x 12 pixels"),
             ({"reference_roi": "0:100,0:5"}, "not inside the frame of 12 x 12")]
    for options, words in cases:
        with pytest.raises(ParameterError) as err:
            RunConfig.build("s.zarr", **options).check_series(ds)
        assert words in str(err.value), str(err.value)


def test_config_files_are_capped_in_size_and_alias_expansion(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    bomb.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ParameterError, match="YAML aliases|expands to more than"):
        load_config_file(bomb)
    assert time.perf_counter() - t0 < 2
    few = tmp_path / "few.yaml"  # few aliases, but nested: 10 levels of x3 expand to 3^10 values
    lines = ["b0: &b0 [1, 2, 3]"] + [f"b{i}: &b{i} [*b{i - 1}, *b{i - 1}, *b{i - 1}]" for i in range(1, 12)]
    few.write_text("\n".join(lines) + "\n")
    with pytest.raises(ParameterError, match="expands to more than"):
        load_config_file(few)
    big = tmp_path / "big.yaml"
    big.write_text("pool: 2\n" + "# padding\n" * 200_000)
    with pytest.raises(ParameterError, match="must be below"):
        load_config_file(big)
    fine = tmp_path / "fine.yaml"
    fine.write_text("pool: &p 2\nmethod: fft\nfit: {fixed: {beta: 1.0}}\n")
    assert load_config_file(fine) == {"pool": 2, "method": "fft", "fit": {"fixed": {"beta": 1.0}}}


def test_cli_refuses_bad_options_before_any_stage(tmp_path):
    from ecm_dask.pipeline.ingest import resolve_metadata, write_series
    from ecm_dask.pipeline.run import stage_dir
    from ecm_dask.readers.memory import ArraySource

    rng = np.random.default_rng(0)
    src = ArraySource(rng.poisson(5, (60, 12, 12)).astype("uint16"), name="cfg", frame_time_s=0.5, pixel_size_nm=0.5)
    series = write_series(src, tmp_path / "s.zarr", resolve_metadata(src), tile=8, progress=False)
    out = tmp_path / "r.zarr"
    run = ("run", series, "-o", out, "--cluster", "threads", "--quiet")
    cases = [(("--bad-frames", "10-5"), "the range 10-5 is empty"),
             (("--bad-frames", "0-30000000"), "outside the series of 60 frames"),
             (("--bad-frames", "0-999999999999"), "outside the series of 60 frames"),
             (("--max-lag", "nan"), "--max-lag"), (("--max-lag", "inf"), "--max-lag"),
             (("--max-shift", "nan"), "--max-shift"), (("--pool", "16"), "larger than the frame of 12 x 12")]
    for extra, words in cases:
        t0 = time.perf_counter()
        line = one_line_error(_run(*run, *extra))
        assert words in line, (extra, line)
        assert time.perf_counter() - t0 < 30 and not stage_dir(out).exists() and not out.exists()
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"a{i}: &a{i} [{', '.join(['*a' if i == 1 else f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)))
    r = _run(*run, "--config", bomb)
    assert r.returncode == 2 and "expands to more than" in r.stderr and "Traceback" not in r.stderr
    good = tmp_path / "g.npy"
    np.save(good, rng.poisson(5, (20, 16, 16)).astype("uint16"))
    for value in ("nan", "inf", "0", "-1"):
        line = one_line_error(_run("ingest", good, "-o", tmp_path / "i.zarr", "--frame-time", 1, "--pixel-size", 1,
                              "--shard-mb", value))
        assert "--shard-mb" in line and not (tmp_path / "i.zarr").exists()


def _run(*args, timeout=300):
    return ecm_cli(*args, timeout=timeout, check=False)
