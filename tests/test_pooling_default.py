"""The documented pooling default (average the k x k g2 curves) recovers τ better than summing intensities
on the synthetic wire at low contrast (the full study: benchmarks/bench_pooling.py)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_pooling import study  # noqa: E402

from ecm_dask.ops import correlate  # noqa: E402


@pytest.mark.slow
def test_average_pooling_is_the_default_and_beats_sum_at_low_contrast(tmp_path):
    assert inspect.signature(correlate).parameters["pool_mode"].default == "average"
    res = study(contrast=0.005, pool=3, frames=2000, size=(48, 64), seed=1, tmp=str(tmp_path))
    (err_avg, fail_avg, n), (err_sum, fail_sum, _) = res["average"], res["sum"]
    assert n > 50
    assert err_avg < err_sum and fail_avg <= fail_sum
