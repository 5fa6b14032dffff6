"""Outputs never touch inputs: ingest, run and report refuse an output that is, contains or lies inside an input
(also through a symbolic link), before anything is written or deleted, and the input stays byte for byte."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from ecm_dask.errors import StoreError
from ecm_dask.pipeline.ingest import ingest
from ecm_dask.pipeline.report import write_report
from ecm_dask.pipeline.run import check_run
from ecm_dask.store.paths import check_apart


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_check_apart_names_each_relation(tmp_path):
    inp = tmp_path / "data" / "series.zarr"
    with pytest.raises(StoreError, match=r"output .*series.zarr is the input"):
        check_apart(inp, [inp])
    with pytest.raises(StoreError, match="contains the input"):
        check_apart(tmp_path / "data", [inp])
    with pytest.raises(StoreError, match="lies inside the input"):
        check_apart(inp / "results.zarr", [inp])
    with pytest.raises(StoreError, match=r"output .*data/x/\.\./series.zarr is the input"):
        check_apart(tmp_path / "data" / "x" / ".." / "series.zarr", [inp])
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "link")
    with pytest.raises(StoreError, match="is the input"):
        check_apart(tmp_path / "link" / "series.zarr", [inp])
    check_apart(tmp_path / "data" / "series.zarr.other", [inp])  # a sibling with a common prefix is fine
    check_apart(tmp_path / "results.zarr", [inp])


def test_run_refuses_to_write_over_or_into_its_series(blocked_series, tmp_path):
    before = digest(blocked_series)
    for out in (blocked_series, blocked_series / "results.zarr", blocked_series.parent):
        with pytest.raises(StoreError, match="the input"):
            check_run(blocked_series, out, overwrite=True)
    # the stage folder sits next to the output (OUTPUT.stages): it may not be the series either
    os.symlink(blocked_series, tmp_path / "r.zarr.stages")
    with pytest.raises(StoreError, match=r"stage folder .*r.zarr.stages is the input"):
        check_run(blocked_series, tmp_path / "r.zarr", overwrite=True)
    assert digest(blocked_series) == before


def test_cli_run_overwrite_onto_the_series_is_one_line_and_harmless(blocked_series):
    from conftest import ecm_cli

    before = digest(blocked_series)
    r = ecm_cli("run", blocked_series, "-o", blocked_series, "--overwrite", "--cluster", "threads", check=False)
    assert r.returncode == 2 and "is the input" in r.stderr and "Traceback" not in r.stderr
    assert digest(blocked_series) == before


def test_ingest_refuses_an_output_inside_its_input_folder(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        tifffile.imwrite(frames / f"f{i:03d}.tif", np.full((8, 8), i, dtype=np.uint16))
    before = digest(frames)
    with pytest.raises(StoreError, match="lies inside the input"):
        ingest(frames, frames / "series.zarr", frame_time_s=1.0, pixel_size_nm=0.3, progress=False)
    assert digest(frames) == before and not (frames / "series.zarr").exists()


def test_report_refuses_a_folder_inside_the_results_or_the_series(blocked_reference, tmp_path):
    before = digest(blocked_reference)
    with pytest.raises(StoreError, match="report folder .* lies inside the input"):
        write_report(blocked_reference, blocked_reference / "figures")
    with pytest.raises(StoreError, match="report folder .* contains the input"):
        write_report(blocked_reference, blocked_reference.parent)
    assert digest(blocked_reference) == before


def test_replacing_folder_swaps_whole_and_keeps_the_old_one_on_error(tmp_path):
    from ecm_dask.store.paths import replacing_folder

    out = tmp_path / "report"
    with replacing_folder(out) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with replacing_folder(out) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("killed mid-write")
    assert (out / "a.txt").read_text() == "one"  # untouched
    with replacing_folder(out) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]  # replaced as a whole, no stale file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary left beside it
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        with replacing_folder(tmp_path / "file"):
            pass
