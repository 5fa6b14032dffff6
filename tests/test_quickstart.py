"""The README's "three commands" work as written: its ecm-dask lines run on a multi-page TIFF, and the page the
third line opens exists and holds the run's maps."""

import re
import shlex
from pathlib import Path

import numpy as np
import tifffile
from click.testing import CliRunner

import ecm_dask
from ecm_dask.cli import main
from ecm_dask.live.camera import synthetic_frames
from ecm_dask.store.series import open_series

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## From a raw file to an interactive page in three commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_three_commands_from_a_tiff_to_the_explorer(tmp_path, monkeypatch):
    lines = quickstart_lines()
    assert len(lines) == 3 and lines[0].startswith("ecm-dask ingest") and lines[1].startswith("ecm-dask run")
    frames, _ = synthetic_frames(240, 32, 40, seed=2)
    tifffile.imwrite(tmp_path / "movie.tif", frames)
    monkeypatch.chdir(tmp_path)
    for line in lines[:2]:
        args = shlex.split(line)[1:]
        r = CliRunner().invoke(main, args + ["--quiet"], catch_exceptions=False)
        assert r.exit_code == 0, (line, r.output)
    page = Path(shlex.split(lines[2])[-1])
    assert lines[2].startswith("python -m webbrowser ") and page.is_file()
    html = page.read_text(encoding="utf-8")
    tree = ecm_dask.open_results("results.zarr")
    assert int((tree.to_dataset()["status"].values == 0).sum()) > 100
    assert "results.zarr" in html and len(html) > 20_000
    np.testing.assert_array_equal(open_series("series.zarr")["intensity"].values, frames)  # the TIFF, frame for frame
