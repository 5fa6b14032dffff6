"""`ecm-dask compare` on runs whose bulk tau follows an Arrhenius law with a known activation energy."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ecm_dask.cli import main
from ecm_dask.pipeline.run import run_pipeline
from ecm_dask.synth import SynthParams, write_synthetic_series

K_B = 8.617333262e-5
EA = 1.5  # eV
TEMPS = (250.0, 256.0, 262.0, 268.0)


def _tau(t_c):  # bulk tau 4 s at 250 °C, Arrhenius with EA (1.3 s at 268 °C)
    return 4.0 * np.exp(EA / K_B * (1 / (t_c + 273.15) - 1 / (250 + 273.15)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    out = []
    for t in TEMPS:
        # 2000 frames of 0.1 s: >= 40 tau and frames <= 0.1 tau for the bulk at every temperature (the reliability
        # rules; a shorter series biases the longest tau low and flattens the law)
        p = SynthParams(ny=40, nx=48, n_frames=2000, frame_time_s=0.1, seed=4, tau_bulk_s=float(_tau(t)),
                        temperature_C=t, drift_px=(0.0, 0.0), drift_walk_px=0.0)
        s = write_synthetic_series(tmp / f"s{t:g}.zarr", p, progress=False)
        out.append(run_pipeline(s, tmp / f"r{t:g}.zarr", drift=False, progress=False))
    return tmp, out


def test_compare_recovers_the_activation_energy(runs):
    tmp, results = runs
    res = CliRunner().invoke(main, ["compare", *map(str, results), "-o", str(tmp / "tseries")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp / "tseries" / "compare.json").read_text())
    assert summary["temperature_C"] == list(TEMPS)  # from the stores' attributes
    bulk = summary["regions"]["bulk"]
    tau = np.array(bulk["tau_s"])
    assert np.all(np.diff(tau) < 0)  # faster when hotter
    ea = bulk["arrhenius"]["params"]["Ea_eV"]
    assert ea == pytest.approx(EA, rel=0.15), (ea, bulk["arrhenius"])
    assert isinstance(bulk["vft"], (dict, str))
    assert (tmp / "tseries" / "tau_vs_T.png").is_file() and (tmp / "tseries" / "combined.zarr").is_dir()
    assert "Arrhenius  Ea =" in res.output
    # measured: Ea 1.38 +- 0.06 eV (bulk medians 3.52 / 2.48 / 1.77 / 1.27 s against 4.0 / 2.8 / 2.0 / 1.3 s: the
    # longest tau, 50 tau in the series, is biased ~10 % low); VFT collapses to Arrhenius (T0 -> 0)
    assert "the data need no VFT curvature" in res.output


def test_compare_needs_two_results_and_sane_temperatures(runs, tmp_path):
    _, results = runs
    res = CliRunner().invoke(main, ["compare", str(results[0]), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "at least two runs" in res.output
    res = CliRunner().invoke(main, ["compare", *map(str, results[:2]), "-o", str(tmp_path / "o"),
                                    "--temperatures", "250,abc"])
    assert res.exit_code == 2 and "--temperatures" in res.output
