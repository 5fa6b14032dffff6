"""The whole analysis of one series: drift -> g2 -> fit -> results.zarr, resumable.

Stage checkpoints go to ``<results>.stages/`` (``drift.zarr``, ``g2.zarr``, ``maps.zarr``), each written
atomically; the g2 and fit stages pixel block by pixel block, so an interrupted stage resumes where it stopped.
A lock file ``<results>.lock`` keeps a second run from writing the same output at the same time.  A fingerprint of the series and of the run configuration is kept there: a rerun with the same
input and configuration skips completed stages; a different one is refused unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .. import schema as S
from ..errors import StoreError
from .config import RunConfig
from .lock import run_lock

CONFIG_FILE = "run_config.json"


def stage_dir(output: str | os.PathLike) -> Path:
    """Where the stage checkpoints of a run writing ``output`` live."""
    output = Path(output)
    return output.with_name(output.name + ".stages")


def default_report_dir(output: str | os.PathLike) -> Path:
    """Where ``ecm-dask run`` writes the report of ``output`` by default: ``results.zarr`` -> ``results_report``."""
    output = Path(output)
    stem = output.name[:-5] if output.name.endswith(".zarr") else output.name
    return output.with_name(stem + "_report")


def run_pipeline(series_path: str | os.PathLike, output: str | os.PathLike, config: RunConfig | None = None, *,
                 overwrite: bool = False, progress: bool = True, **options: Any) -> Path:
    """Run drift estimation, g2, KWW fits and assemble ``results.zarr``.

    Parameters
    ----------
    series_path : a complete series store
    output : the ``results.zarr`` to write
    config : a :class:`~ecm_dask.pipeline.config.RunConfig`; or give its options as keywords instead:
        ``reference_roi`` (drift reference region, None = suggest one), ``roi_units`` (``"pixel"`` or ``"nm"``),
        ``drift`` (False: no drift estimation/correction), ``max_shift``, ``margin`` (pixels), ``g2_options``
        (:func:`ecm_dask.ops.correlate`'s method, points_per_octave, max_lag, normalization, bad_frames, pool,
        pool_mode, block_bytes, shift_mode), ``fit_options`` (:func:`ecm_dask.ops.fit.fit_kww`'s weights, bounds,
        fixed, baseline, max_iter, model), ``surface_nm`` (surface band width of the region map, nm) and
        ``pooling`` (adaptive pooling ``{"radius": px, "tol": decades, "passes": n}``; ``radius=0``: plain
        per-pixel fits)
    overwrite : discard checkpoints of a different input or configuration (and an existing result)
    progress : progress bars

    Returns
    -------
    Path of ``results.zarr``.
    """
    from ..compute import active_client
    from ..store.series import open_series
    from .plan import check_workers, plan_run

    output = Path(output)
    config, key = check_run(series_path, output, config, overwrite=overwrite, **options)
    client = active_client()
    if client is not None:  # a task that cannot fit a worker's memory would pause it forever: refuse now
        check_workers(plan_run(config, open_series(series_path)), client)
    with run_lock(output):
        return _run_locked(series_path, output, config, key, overwrite=overwrite, progress=progress)


def check_run(series_path, output, config: RunConfig | None = None, *, overwrite: bool = False,
              **options: Any) -> tuple[RunConfig, str]:
    """Everything that can refuse a run, checked before any work (or any cluster) starts: the options (one
    :class:`RunConfig`, validated on its own and against the series' metadata), the series is complete and
    valid, no other run holds the output, the output and its stages belong to this input and configuration (or
    ``overwrite``).  Returns the configuration and its fingerprint."""
    from ..store.paths import check_apart
    from ..store.series import fingerprint, open_series, store_key
    from .lock import check_unlocked

    output = Path(output)
    if config is None:
        config = RunConfig.build(series_path, **options)
    elif options:
        raise TypeError(f"give a RunConfig or options, not both (got {sorted(options)})")
    for what, path in (("output", output), ("stage folder", stage_dir(output))):
        check_apart(path, [series_path], what=what)  # before anything can be replaced or deleted
    config.check_series(open_series(series_path))  # validates: complete and well-formed, else a clear error
    key = fingerprint({"series": store_key(series_path), "config": config.as_dict()})
    check_unlocked(output)
    problem = _conflict(output, key, overwrite)
    if problem:
        raise StoreError(problem)
    return config, key


def check_pooling(pooling: dict | None) -> dict:
    """The adaptive pooling options with defaults, or a :class:`ParameterError` naming the bad one."""
    import math

    from ..errors import ParameterError
    from .fit import DEFAULT_POOLING

    if pooling is not None and not isinstance(pooling, dict):
        raise ParameterError(f"pooling must be a mapping of radius, tol, passes, got {pooling!r}")
    unknown = sorted(set(pooling or {}) - set(DEFAULT_POOLING))
    if unknown:
        raise ParameterError(f"unknown pooling option(s) {unknown}; known: {sorted(DEFAULT_POOLING)}")
    out = {**DEFAULT_POOLING, **(pooling or {})}
    for name, hi in (("radius", 16), ("passes", 5)):
        v = out[name]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
            raise ParameterError(f"pooling {name} (--adaptive-{name}) must be a whole number in [0, {hi}], got {v!r}")
    tol = out["tol"]
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and 0 <= tol <= 10):
        raise ParameterError(f"pooling tol (--adaptive-tol) must be a number of decades in [0, 10], got {tol!r}")
    out["tol"] = float(tol)
    return out


def _conflict(output: Path, key: str, overwrite: bool) -> str | None:
    """Why the stages/output at ``output`` cannot be reused by a run with fingerprint ``key``, or None."""
    work = stage_dir(output)
    if overwrite:
        return None
    if output.exists() and not work.exists():
        return f"{output} exists and was not written by a run with this output; use --overwrite to replace it"
    if work.exists():
        if _saved_fingerprint(work) != key:
            return (f"{work} holds stages of a different input or configuration; use --overwrite to start over "
                    "(or choose another output)")
    return None


def _saved_fingerprint(work: Path) -> str | None:
    """The fingerprint recorded by the run that made the stage folder ``work`` (None if it has none)."""
    saved = work / CONFIG_FILE
    return json.loads(saved.read_text()).get("fingerprint") if saved.is_file() else None


def _run_locked(series_path, output: Path, config: RunConfig, key: str, *, overwrite: bool, progress: bool) -> Path:
    import xarray as xr

    from ..store.integrity import check_complete, open_checked
    from .correlate import run_g2
    from .drift import run_drift
    from .fit import run_fit
    from .results import assemble_results
    from .screen import run_screen

    work = stage_dir(output)
    saved = work / CONFIG_FILE
    problem = _conflict(output, key, overwrite)  # again, now under the lock
    if problem:
        raise StoreError(problem)
    if work.exists() and overwrite and _saved_fingerprint(work) != key:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({"fingerprint": key, "config": config.as_dict()}, indent=2))

    def done(name: str) -> bool:
        """A complete, undamaged checkpoint (a damaged one - missing or truncated chunk files - is made again)."""
        if not (work / name / "zarr.json").is_file():
            return False
        try:
            check_complete(work / name)
        except StoreError as err:
            print(f"{err}; computing that stage again", file=sys.stderr)
            shutil.rmtree(work / name)
            return False
        return True

    seconds: dict[str, float | None] = {}  # wall time of each stage run now (None: its checkpoint was reused)

    def stage(name: str, store: str, func) -> None:
        if done(store):
            seconds[name] = None
            return
        t0 = time.perf_counter()
        func()
        seconds[name] = round(time.perf_counter() - t0, 3)

    drift_path = work / "drift.zarr"
    shifts = None
    # the g2 stage reads all of the series: it is read into the page cache meanwhile, unless g2 is checkpointed
    with series_readahead(series_path, needed=not (work / "g2.zarr" / "zarr.json").is_file()):
        if config.drift:
            stage("drift", "drift.zarr", lambda: run_drift(
                series_path, drift_path, roi=config.reference_roi, units=config.roi_units, margin=config.margin,
                max_shift=config.max_shift, progress=progress))  # its figure: in the report
            shifts = open_checked(drift_path)["shift"].values
        n_frames = int(xr.open_zarr(series_path).sizes[S.TIME])
        stage("g2", "g2.zarr", lambda: run_g2(series_path, work / "g2.zarr", shifts=shifts, resume_key=f"{key}/g2",
                                              progress=progress, **config.g2.kwargs(n_frames)))
    stage("screen", "screen.zarr", lambda: run_screen(
        work / "g2.zarr", work / "screen.zarr", drift_path=drift_path if config.drift else None,
        surface_nm=config.surface_nm, overwrite=True))
    stage("fit", "maps.zarr", lambda: run_fit(work / "g2.zarr", work / "maps.zarr", resume_key=f"{key}/fit",
                                              progress=progress, screen_path=work / "screen.zarr",
                                              pooling=dict(config.pooling), **config.fit))
    # the configuration goes into the store before it is renamed into place: a result never lacks it
    return assemble_results(output, work / "maps.zarr", work / "g2.zarr", drift_path if config.drift else None,
                            screen=work / "screen.zarr", overwrite=True,
                            attrs={S.ATTR_RUN_CONFIG: config.as_dict(), S.ATTR_RUN_FINGERPRINT: key,
                                   S.ATTR_STAGE_SECONDS: seconds})


def series_readahead(series_path, *, needed: bool = True):
    """Read the series into the page cache in the background while the drift stage runs, for the g2 stage
    (:func:`ecm_dask.store.readahead.warm`): only where the g2 tasks read through this machine's page cache (the
    threaded scheduler or a LocalCluster) and its checkpoint is not already there."""
    from contextlib import nullcontext

    from ..compute import active_client
    from ..store.readahead import warm

    client = active_client()
    local = client is None
    if client is not None:
        from distributed import LocalCluster

        local = isinstance(getattr(client, "cluster", None), LocalCluster)
    return warm(series_path) if needed and local else nullcontext()


def _jsonable(value):
    """Configuration values as JSON (tuples -> lists, slices -> [start, stop], arrays -> lists)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, slice):
        return [value.start, value.stop]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
