"""The artefact screen against truth: drift-swept wire edges and the static crystal on the synthetic nanowire.

For each case the script reads the pipeline's stage checkpoints (``results.zarr.stages/{g2,drift,maps}.zarr``),
runs :func:`ecm_dask.ops.artefacts.screen_artefacts` on them (never the raw frames) and prints, against the ground
truth of the synthetic series:

- ``slow``: wire pixels (truth bulk + surface) whose fit status is ok AND that the screen does not flag, with
  tau > 3x truth, in % of all wire pixels (target <= 1 %), and the same count among the edge rows (wire pixels
  next to vacuum);
- ``slow_before``: the same without the screen (the fit status alone);
- ``crystal``: crystal pixels flagged static or drift edge (%; target >= 95 %), of all and of those with a usable
  g2 (the others already have a bad-input status, mostly not in view for the whole series under drift);
- ``fp``: interior pixels (>= 2 px from vacuum, not crystal) flagged (%; keep < 3 %), and the pixels flagged static
  there;
- ``surface_kept``: surface pixels (truth) not flagged (%), and among them those >= 2 px from vacuum.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/study_artefacts.py [--root /tmp/ecm_study] [--cases drift_s0 ...]``
or ``--generate --workdir DIR`` to write the synthetic series and run the pipeline first (about 40 s per case).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CASES = {
    "drift_s0": {"seed": 0},
    "drift_s1": {"seed": 1},
    "nodrift_s0": {"seed": 0, "drift_px": (0.0, 0.0), "drift_walk_px": 0.0},
}


def evaluate(case_dir: Path) -> dict:
    """Screen one case from its stage checkpoints and score it against the series' truth."""
    import xarray as xr
    from scipy import ndimage

    from ecm_dask import schema as S
    from ecm_dask.ops.artefacts import ARTEFACT_NONE, ARTEFACT_STATIC, screen_artefacts

    stages = case_dir / "results.zarr.stages"
    g2 = xr.open_zarr(stages / "g2.zarr")
    drift = xr.open_zarr(stages / "drift.zarr") if (stages / "drift.zarr" / "zarr.json").is_file() else None
    maps = xr.open_zarr(stages / "maps.zarr")
    truth = xr.open_zarr(case_dir / "series.zarr", group=S.TRUTH_GROUP).load()
    art = screen_artefacts(g2, drift)
    code = art[S.ARTEFACT].values
    flagged = code != ARTEFACT_NONE
    reg, tau_t = truth[S.TRUTH_REGION].values, truth[S.TRUTH_TAU].values
    tau = maps[S.TAU].values.astype(np.float64)
    ok = maps[S.STATUS].values == 0
    usable = g2[S.STATUS].values == 0  # the others are bad input already (e.g. not in view for the whole series)
    vac = reg == S.REGION_VACUUM
    wire = (reg == S.REGION_BULK) | (reg == S.REGION_SURFACE)
    edge = wire & ndimage.binary_dilation(vac)
    interior = ~ndimage.binary_dilation(vac, iterations=2) & ~vac & (reg != S.REGION_CRYSTAL)
    crystal = reg == S.REGION_CRYSTAL
    surface = reg == S.REGION_SURFACE
    with np.errstate(invalid="ignore"):
        slow_fit = ok & wire & (tau > 3 * tau_t)
    slow = slow_fit & ~flagged

    def pct(num, den) -> float:
        return 100.0 * float(np.sum(num)) / max(float(np.sum(den)), 1.0)

    return {
        "drift": drift is not None,
        "slow_before_pct": pct(slow_fit, wire), "slow_pct": pct(slow, wire),
        "edge_px": int(edge.sum()), "edge_slow_before": int((slow_fit & edge).sum()),
        "edge_slow": int((slow & edge).sum()),
        "crystal_flagged_pct": pct(flagged & crystal, crystal),
        "crystal_static_pct": pct((code == ARTEFACT_STATIC) & crystal, crystal),
        "crystal_usable_flagged_pct": pct(flagged & crystal & usable, crystal & usable),
        "fp_pct": pct(flagged & interior, interior), "fp_static_pct": pct((code == ARTEFACT_STATIC) & interior,
                                                                           interior),
        "surface_kept_pct": pct(surface & ~flagged, surface),
        "surface_inner_kept_pct": pct(surface & interior & ~flagged, surface & interior),
        "residual_rms_px": art.attrs.get("residual_rms_px"),
    }


def generate(workdir: Path, names) -> None:
    """Write the synthetic series and run the default pipeline for every case (skips existing results)."""
    from ecm_dask.pipeline.run import run_pipeline
    from ecm_dask.synth import SynthParams, write_synthetic_series

    for name in names:
        d = workdir / name
        if (d / "results.zarr").exists():
            continue
        p = SynthParams(**CASES[name])
        s = write_synthetic_series(d / "series.zarr", p, overwrite=True, progress=False)
        run_pipeline(s, d / "results.zarr", overwrite=True, progress=False, drift=(p.drift_px != (0.0, 0.0)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/ecm_study"), help="folder of the case folders")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--generate", action="store_true", help="write the series and run the pipeline first")
    ap.add_argument("--workdir", type=Path, default=None, help="with --generate: where (default --root)")
    args = ap.parse_args(argv)
    root = args.workdir if (args.generate and args.workdir is not None) else args.root
    if args.generate:
        generate(root, args.cases)
    cols = ("slow_before_pct", "slow_pct", "edge_px", "edge_slow_before", "edge_slow", "crystal_flagged_pct",
            "crystal_usable_flagged_pct", "crystal_static_pct", "fp_pct", "fp_static_pct", "surface_kept_pct", "surface_inner_kept_pct")
    print("case        " + " ".join(f"{c:>22s}" for c in cols))
    for name in args.cases:
        r = evaluate(root / name)
        print(f"{name:11s} " + " ".join(f"{r[c]:22.2f}" if isinstance(r[c], float) else f"{r[c]:22d}"
                                        for c in cols) + f"   residual rms px {r['residual_rms_px']}")


if __name__ == "__main__":
    main()
