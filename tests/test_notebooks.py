"""The notebooks (jupytext percent scripts) run top to bottom on small synthetic data."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("ECM_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    # not as __main__: worker processes of a LocalCluster are spawned and re-import __main__ (as Jupyter does
    # not: its __main__ has no file)
    runpy.run_path(str(path), run_name="__notebook__")
    assert any(tmp_path.iterdir()), "the notebook wrote nothing"
