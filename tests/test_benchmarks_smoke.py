"""Smoke test of the large benchmarks (benchmarks/bench_realscale.py, bench_outofcore.py) at toy size, so they
do not rot: each main() runs end to end and its JSON holds sensible numbers."""

import json
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(BENCH)
    yield
    for name in ("bench_realscale", "bench_outofcore", "bench_g2", "_memory"):
        sys.modules.pop(name, None)


def test_realscale_toy(tmp_path, bench_path, capsys):
    import bench_realscale

    res = bench_realscale.main(["--frames", "200", "--ny", "48", "--nx", "64", "--subset", "4", "--cluster",
                                "threads", "--gen-cluster", "threads", "--workdir", str(tmp_path), "--quiet",
                                "--no-report"])
    run = res["runs"]["threads"]
    assert set(run["stages"]) == set(bench_realscale.STAGES) and run["report"] is None
    assert all(s["wall_s"] > 0 and s["peak_tree_rss_mib"] > 50 for s in run["stages"].values())
    # the synthetic drift (6, -10 px over the series) is recovered: the pipeline really ran on the TIFF input
    assert run["accuracy"]["drift_rms_error_px"] < 0.2
    assert run["accuracy"]["fit_ok_in_wire"] > 0.3 * run["accuracy"]["wire_pixels"]
    assert res["loop"]["pixels"] == 4 and res["loop"]["extrapolated_g2_s"] > 0
    assert json.loads((tmp_path / "bench_realscale.json").read_text())["runs"]["threads"]["total_s"] > 0
    assert not (tmp_path / "raw").exists() and not (tmp_path / "run-threads").exists()  # cleaned without --keep
    assert "per-pixel loop" in capsys.readouterr().out


def test_outofcore_toy(tmp_path, bench_path):
    import bench_outofcore

    res = bench_outofcore.main(["--sizes-gb", "0.002", "--frames", "200", "--workers", "1", "--source", "random",
                                "--gen-cluster", "threads", "--workdir", str(tmp_path), "--quiet"])
    (size,) = res["sizes"]
    assert size["shape"][0] == 200 and abs(size["nbytes"] - 2e6) < 2e4
    run = size["run"]
    assert run["error"] is None and not run["restarted"]
    assert set(run["stages"]) == {"g2", "screen", "fit", "results"}  # random counts: no drift stage
    (peak,) = run["peak_worker_rss_mib"].values()
    assert 50 < peak < 1000
    assert json.loads((tmp_path / "bench_outofcore.json").read_text())["sizes"][0]["px_frames_per_s"] > 0


def test_read_toy(bench_path, capsys):
    """zarr and the shard reader give the same blocks (asserted inside) and both are timed."""
    import bench_g2

    bench_g2.main(["read", "--frames", "100", "--side", "160", "--block", "32"])
    out = capsys.readouterr().out
    assert "no drift: zarr" in out and "halo 10 px: zarr" in out and "shard reader" in out


def test_kernel_parts_toy(bench_path, capsys):
    """The loader and driver phases are timed apart for each length (a rate per phase and for both)."""
    import bench_g2

    bench_g2.main(["parts", "--frames", "256", "512", "--pixels", "128", "--repeat", "1"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["256", "512"]
    for r in rows:
        loader, driver, both = (float(v) for v in r[1:4])
        assert loader > 0 and driver > 0 and both < min(loader, driver)  # both phases: slower than either alone


def test_codec_toy(bench_path, tmp_path, capsys):
    """Every compressor round-trips a g2 block (asserted inside) and gets a ratio and timings."""
    import bench_g2
    import numpy as np
    import zarr

    rng = np.random.default_rng(0)
    g2 = 1.0 + 0.1 * np.exp(-np.arange(20) / 5.0) + rng.normal(0, 0.01, (16, 16, 20))
    zarr.create_array(str(tmp_path / "g2.zarr" / "g2"), data=g2.astype(np.float32))
    bench_g2.main(["codec", str(tmp_path / "g2.zarr"), "--block", "16", "--repeat", "1"])
    rows = capsys.readouterr().out.splitlines()[2:]
    ratio = {r[:22].strip(): float(r.split()[-3]) for r in rows}
    assert len(ratio) == 6 and min(ratio.values()) > 0.9  # no compressor blows the block up
    assert ratio["blosc lz4 5 shuffle"] > 1.2  # the shuffle groups the float32 exponents of g2 ~ 1


def test_stage_toy(bench_path, tmp_path, capsys):
    """The g2 stage is timed with and without drift, each against the kernel's own CPU time on the same blocks."""
    import re

    import bench_g2
    import numpy as np
    import xarray as xr

    from ecm_dask.synth import SynthParams, write_synthetic_series

    write_synthetic_series(tmp_path / "s.zarr", SynthParams(ny=48, nx=64, n_frames=120, seed=2), progress=False)
    shifts = np.stack([np.linspace(0, 3, 120), np.linspace(0, -2, 120)], axis=1)
    xr.Dataset({"shift": (("time", "axis"), shifts)}).to_zarr(tmp_path / "drift.zarr", consolidated=False)
    bench_g2.main(["stage", str(tmp_path / "s.zarr"), str(tmp_path / "drift.zarr"), "--repeat", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("first g2 stage of the process") and float(lines[-1].split(": ")[1].split()[0]) > 0
    lines = lines[:-1]
    assert [line.split(":")[0].split()[-2:] for line in lines] == [["with", "drift"], ["without", "drift"]]
    for line in lines:
        wall, alone, limit, ratio = (float(v) for v in re.search(
            r"([\d.e+-]+) s on 2 threads .* kernel alone ([\d.e+-]+) CPU-s .* kernel-limited ([\d.e+-]+) s, "
            r"stage / kernel-limited ([\d.]+)x", line).groups())
        assert wall > 0 and alone > 0 and limit == pytest.approx(alone / 2, rel=0.02) and ratio == pytest.approx(
            wall / limit, rel=0.02)
