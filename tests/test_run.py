"""The whole analysis as one resumable run (ecm-dask run)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.errors import StoreError
from ecm_dask.pipeline import run as R
from ecm_dask.synth import SynthParams, write_synthetic_series


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    p = SynthParams(ny=48, nx=64, n_frames=600, seed=8)
    return write_synthetic_series(tmp_path_factory.mktemp("r") / "s.zarr", p, tile=32, progress=False)


def test_run_writes_results_resumes_after_a_crash_and_refuses_another_config(series, tmp_path, monkeypatch):
    out = tmp_path / "results.zarr"
    import ecm_dask.pipeline.fit as F

    real = F.run_fit

    def crash(*a, **k):
        raise RuntimeError("killed during the fit")

    monkeypatch.setattr(F, "run_fit", crash)
    with pytest.raises(RuntimeError, match="killed"):
        R.run_pipeline(series, out, progress=False)
    stages = R.stage_dir(out)
    assert (stages / "g2.zarr" / "zarr.json").is_file() and not out.exists()
    g2_mtime = (stages / "g2.zarr" / "zarr.json").stat().st_mtime_ns
    monkeypatch.setattr(F, "run_fit", real)
    R.run_pipeline(series, out, progress=False)  # resume: drift and g2 are not redone
    assert (stages / "g2.zarr" / "zarr.json").stat().st_mtime_ns == g2_mtime
    maps = xr.open_zarr(out)
    g2_config = maps.attrs["run_config"]["g2"]  # every option, defaults included (one typed RunConfig)
    assert g2_config["method"] == "multitau" and g2_config["pool"] == 1 and g2_config["bad_frames"] is None
    assert maps.attrs["run_config"]["drift"] is True
    assert maps.attrs["run_fingerprint"] and maps.tau.shape == (48, 64)
    took = maps.attrs["stage_seconds"]  # the resumed run reused drift, g2 and screen and ran the fit
    assert took["drift"] is None and took["g2"] is None and took["screen"] is None and took["fit"] > 0
    tree = xr.open_datatree(out, engine="zarr")
    assert set(tree.groups) == {"/", "/g2", "/drift", "/fit", "/artefacts", "/regions", "/distributions"}
    # an uninterrupted run into another place gives the same maps
    fresh = R.run_pipeline(series, tmp_path / "fresh.zarr", progress=False)
    np.testing.assert_array_equal(xr.open_zarr(fresh).tau.values, maps.tau.values)
    # another configuration into the same output is refused, then accepted with overwrite
    with pytest.raises(StoreError, match="different input or configuration"):
        R.run_pipeline(series, out, g2_options={"pool": 2}, progress=False)
    R.run_pipeline(series, out, g2_options={"pool": 2}, overwrite=True, progress=False)
    assert xr.open_zarr(out).tau.shape == (24, 32)
    assert xr.open_zarr(out).attrs["run_config"]["g2"]["pool"] == 2


def test_run_from_the_command_line(series, tmp_path):
    out = tmp_path / "cli.zarr"
    cmd = [sys.executable, "-m", "ecm_dask", "run", str(series), "-o", str(out), "--quiet",
           "--bad-frames", "3,10-12", "--method", "fft"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    tree = xr.open_datatree(out, engine="zarr")
    assert tree["g2"].attrs["n_bad_frames"] == 4 and tree["g2"].attrs["estimator"] == "fft"
    assert tree["drift"][S.SHIFT].shape == (600, 2)
    summary = json.loads((tmp_path / "cli_report" / "summary.json").read_text())  # the report, next to the results
    assert summary["n_ok"] == int((tree.to_dataset().status == 0).sum()) and summary["n_frames"] == 600
    r = subprocess.run(cmd[:-2] + ["--method", "multitau"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--overwrite" in r.stderr


def test_config_file_sets_options_and_flags_win(series, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("pool: 2\nmethod: fft\nbad-frames: 3,10-12\nfit:\n  weights: none\n  fixed: {beta: 1.0}\n")
    out = tmp_path / "conf.zarr"
    cmd = [sys.executable, "-m", "ecm_dask", "run", str(series), "-o", str(out), "--config", str(config),
           "--method", "multitau", "--cluster", "threads", "--no-report", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    tree = xr.open_datatree(out, engine="zarr")
    cfg = tree.attrs["run_config"]
    assert cfg["g2"]["pool"] == 2 and cfg["g2"]["method"] == "multitau"  # the flag wins over the file
    assert cfg["g2"]["bad_frames"] == "3,10-12" and cfg["fit"] == {"weights": "none", "fixed": {"beta": 1.0}}
    maps = tree.to_dataset()
    assert maps.tau.shape == (24, 32) and tree["g2"].attrs["estimator"] == "multitau"
    ok = maps.status == 0
    assert int(ok.sum()) > 100 and np.all(maps.beta.values[ok.values] == 1.0)  # beta fixed by the file
    config.write_text("pool: 2\ncolour: blue\n")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unknown option(s) ['colour']" in r.stderr


@pytest.mark.parametrize("fit, words", [("bounds: {beta: [2.0, 0.5]}", "lo <= hi"),
                                        ("bounds: {tau: 3}", "must be (low, high)"),
                                        ("fixed: {gamma: 1.0}", "unknown parameter 'gamma'"),
                                        ("max_iter: 0", "max_iter must be a whole number in [1, 10000]"),
                                        ("max_iter: 1.0e12", "max_iter must be a whole number in [1, 10000]"),
                                        ("fixed: {beta: .nan}", "fixed['beta'] must be a finite number"),
                                        ("fixed: {beta: 100}", "fixed['beta'] = 100 is outside its bounds"),
                                        ("baseline: .inf", "baseline must be 'free', 'fixed' or a finite number"),
                                        ("colour: red", "unknown fit option(s) ['colour']")])
def test_bad_fit_options_in_a_config_are_refused_before_any_work(series, tmp_path, fit, words):
    config = tmp_path / "run.yaml"
    config.write_text(f"fit:\n  {fit}\n")
    out = tmp_path / "bad.zarr"
    r = subprocess.run([sys.executable, "-m", "ecm_dask", "run", str(series), "-o", str(out), "--config", str(config),
                        "--cluster", "threads", "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
    assert not R.stage_dir(out).exists(), "nothing was computed"
