"""Command line: ``ecm-dask ingest | run | info | verify | report | demo | watch | simulate-camera | compare |
export``.

User errors (:class:`ecm_dask.errors.EcmError`) are printed as one line, ``error: ...``, and exit with
status 2; no traceback.  Set ``ECM_DASK_DEBUG=1`` to get the traceback as well.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from .errors import EcmError

#: True when this process is the ecm-dask command itself (then a refused run silences the interpreter's shutdown);
#: False when the commands are invoked in-process (tests, notebooks), whose global state is left alone
_OWN_PROCESS = False


def entry() -> None:
    """The ``ecm-dask`` / ``python -m ecm_dask`` entry point."""
    global _OWN_PROCESS
    _OWN_PROCESS = True
    try:
        main()
    finally:
        # the process ends here: the objects left are not collected one by one at exit (gc.freeze moves them out
        # of the collector's reach; ~0.3 s of a short run spent in the final collections otherwise)
        import gc

        gc.freeze()


def _quiet_exit() -> None:
    """After the one-line error: nothing more on stderr. zarr's event loop may still hold reads that the error
    cut short; asyncio would report them at exit ("Task was destroyed but it is pending!", "coroutine ... was never
    awaited")."""
    import logging
    import warnings

    if not _OWN_PROCESS:
        return
    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    sys.unraisablehook = lambda unraisable: None  # "Exception ignored in <coroutine ...>: Event loop is closed"


def _friendly(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .compute import interruptible

        try:
            with interruptible():  # Ctrl-C stops the stage even if Python delivers it inside a callback
                return func(*args, **kwargs)
        except EcmError as exc:
            if os.environ.get("ECM_DASK_DEBUG"):
                raise
            click.echo(f"error: {exc}", err=True)
            _quiet_exit()
            sys.exit(2)
        except OSError as exc:  # disk full, permissions, I/O errors not turned into a StoreError on the way
            if os.environ.get("ECM_DASK_DEBUG"):
                raise
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"error: {exc.strerror or exc}{where} (what was written before is kept; fix it and run "
                       "the same command again to resume)", err=True)
            _quiet_exit()
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: run the same command again to resume", err=True)
            _quiet_exit()
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ecm_dask")
def main():
    """ecm-dask: electron correlation microscopy image series -> maps of atomic dynamics."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="series store to write (*.zarr)")
@click.option("--frame-time", type=float, help="seconds between frames (overrides the file)")
@click.option("--pixel-size", type=float, help="pixel size in nm (overrides the file)")
@click.option("--k-calibration", type=float, help="diffraction series: nm^-1 per camera pixel (instead of "
                                                  "--pixel-size); analyse it with 'run --mode diffraction'")
@click.option("--counts-per-electron", type=float,
              help="camera gain (counts per detected electron); the report then gives the dose in electrons")
@click.option("--temperature", type=float, help="sample temperature in degrees Celsius")
@click.option("--material", help="sample material, e.g. Pt57.5Cu14.7Ni5.3P22.5")
@click.option("--instrument", help="instrument and mode, e.g. 'Titan, tilted dark field'")
@click.option("--description", help="free text stored with the series")
@click.option("--format", "fmt", help="force the reader (tiff, tiff-folder, dm, emd, hdf5, mrc, npy, zarr)")
@click.option("--dataset", help="dataset path inside an HDF5 file or Zarr group")
@click.option("--axes", help="stored axis order of HDF5/EMD data, letters t y x, e.g. yxt [default: from the file's "
                             "axis labels; unlabelled: tyx]")
@click.option("--tile", type=click.IntRange(8, 1024), default=64, show_default=True,
              help="spatial size of an inner chunk, pixels")
@click.option("--shard-mb", type=float, default=64.0, show_default=True,
              help="uncompressed size of one shard (frames x whole frame), MiB; one task holds one shard")
@click.option("--overwrite", is_flag=True, help="replace an existing store at OUTPUT")
@click.option("--quiet", is_flag=True, help="no progress bar")
@_friendly
def ingest(inputs, output, frame_time, pixel_size, k_calibration, counts_per_electron, temperature, material,
           instrument, description, fmt, dataset, axes, tile, shard_mb, overwrite, quiet):
    """Convert INPUTS (a multi-frame file, a folder of frames, or frame files) into a series store.

    Formats: multi-page TIFF or a folder of TIFFs, Gatan DM3/DM4, Velox or Berkeley EMD, HDF5, MRC,
    NumPy .npy, Zarr.  An interrupted ingest resumes when run again with the same arguments.
    """
    from .pipeline.ingest import ingest as run_ingest
    from .store.info import describe

    path = run_ingest(list(inputs) if len(inputs) > 1 else inputs[0], output, frame_time_s=frame_time,
                      pixel_size_nm=pixel_size, temperature_C=temperature, material=material, instrument=instrument,
                      description=description, format=fmt, dataset=dataset, axes=axes, overwrite=overwrite, tile=tile,
                      shard_mb=shard_mb, progress=not quiet, k_calibration=k_calibration,
                      counts_per_electron=counts_per_electron)
    click.echo(describe(path))
    click.echo(f"wrote {path}")


CONFIG_SECTIONS = ("fit",)  # config-file sections that are not command-line flags


def _load_config(ctx, param, value):
    """--config FILE: YAML mapping of option names (dashes or underscores) to values; flags given on the
    command line win.  A ``fit:`` section holds fit options (weights, bounds, fixed, baseline, max_iter)."""
    if value is None:
        return None
    from .errors import ParameterError
    from .pipeline.config import load_config_file

    try:
        content = load_config_file(value)
    except ParameterError as err:
        raise click.BadParameter(str(err)) from None
    known = {p.name for p in ctx.command.params if p.name not in ("config",)}
    options = {str(k).replace("-", "_"): v for k, v in content.items()}
    unknown = sorted(set(options) - known - set(CONFIG_SECTIONS))
    if unknown:
        raise click.BadParameter(f"{value}: unknown option(s) {unknown}; known: {sorted(known | set(CONFIG_SECTIONS))}")
    ctx.meta["config_sections"] = {k: options.pop(k) for k in CONFIG_SECTIONS if k in options}
    ctx.default_map = {**(ctx.default_map or {}), **options}
    return Path(value)


def cluster_options(default: str):
    """The options choosing where the work runs (see :mod:`ecm_dask.cluster`)."""
    opts = [
        click.option("--cluster", help=f"threads | local | tcp://HOST:PORT | tls://HOST:PORT | slurm | pbs "
                                       f"[default: {default}, or the kind of --profile]"),
        click.option("--workers", type=click.IntRange(1, None), help="worker processes (local) or workers (slurm/pbs)"),
        click.option("--threads", type=click.IntRange(1, None), default=1, show_default=True,
                     help="threads per local worker"),
        click.option("--memory-limit", help="memory per worker, e.g. 2GB"),
        click.option("--profile", help="named slurm/pbs profile (cluster/profiles.yaml, $ECM_DASK_PROFILES)"),
        click.option("--profiles-file", type=click.Path(path_type=Path), help="YAML file with cluster profiles"),
        click.option("--local-directory", help="worker scratch directory (node-local disk on clusters)"),
        click.option("--tls", is_flag=True, help="local cluster with temporary TLS credentials (shared login nodes)"),
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="interface a local cluster listens on; another than loopback needs --tls or --insecure-host"),
        click.option("--insecure-host", is_flag=True,
                     help="allow a non-loopback --host without TLS (anyone reaching it can run code as you)"),
        click.option("--dashboard-host", default="127.0.0.1", show_default=True,
                     help="interface of the dask dashboard (it has no authentication)"),
    ]

    def decorate(func):
        for opt in reversed(opts):
            func = opt(func)
        return func

    return decorate


def default_cluster(cluster, profile, workers, memory_limit, tls, host) -> str | None:
    """The cluster a run uses: as given; else on this machine the threaded scheduler (no worker processes, no
    data transfers; the kernels release the GIL), or a LocalCluster when worker processes are asked for (per-worker
    memory limits, a number of workers, TLS or another interface)."""
    if cluster is not None or profile:
        return cluster
    wants_processes = memory_limit is not None or workers is not None or tls or host not in (None, "127.0.0.1")
    return "local" if wants_processes else "threads"


def _connect(cluster, workers, threads, memory_limit, profile, profiles_file, local_directory, tls, host,
             insecure_host=False, dashboard_host="127.0.0.1"):
    from .cluster import connect

    cluster = default_cluster(cluster, profile, workers, memory_limit, tls, host)
    return connect(cluster, workers=workers, threads=threads, memory_limit=memory_limit, profile=profile,
                   profiles_file=profiles_file, local_directory=local_directory, tls=tls, host=host,
                   insecure_host=insecure_host, dashboard_host=dashboard_host,
                   log=lambda line: click.echo(line, err=True))


@main.command()
@click.argument("series", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="results store (*.zarr)")
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False, callback=_load_config,
              help="YAML file of options (names as the flags); flags on the command line win")
@click.option("--reference-roi", help="drift reference Y0:Y1,X0:X1 (default: suggested automatically)")
@click.option("--roi-units", type=click.Choice(["pixel", "nm"]), default="pixel", show_default=True)
@click.option("--no-drift", is_flag=True, help="do not estimate or correct drift")
@click.option("--max-shift", type=float, help="largest plausible drift, pixels")
@click.option("--method", type=click.Choice(["multitau", "fft"]), default="multitau", show_default=True)
@click.option("--points-per-octave", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--max-lag", type=float, help="largest lag, seconds (default: half the series)")
@click.option("--normalization", type=click.Choice(["symmetric", "standard"]), default="symmetric", show_default=True)
@click.option("--bad-frames", help="frames to skip, e.g. 3,7,10-12 (ranges inclusive)")
@click.option("--pool", type=click.IntRange(1, 16), default=1, show_default=True, help="pool k x k pixels")
@click.option("--pool-mode", type=click.Choice(["average", "sum"]), default="average", show_default=True)
@click.option("--model", type=click.Choice(["kww", "kww2"]), default="kww", show_default=True,
              help="kww2: also fit two KWW terms per pixel (maps tau1, tau2, ..., F-test of 2 terms against 1)")
@click.option("--block-mb", type=click.FloatRange(0.01, None), default=160.0, show_default=True,
              help="size of one (time, y, x) block of the g2 stage: the unit of work and of resume")
@click.option("--surface-nm", type=click.FloatRange(0.0, 1e4), default=1.0, show_default=True,
              help="width of the surface band of the region map, nm (wire pixels this close to vacuum)")
@click.option("--adaptive-radius", type=click.IntRange(0, 16), default=3, show_default=True,
              help="average each pixel's g2 with same-region neighbours of compatible tau within this many pixels "
                   "before fitting (full resolution kept; 0 = plain per-pixel fits)")
@click.option("--adaptive-tol", type=click.FloatRange(0.0, 10.0), default=0.3, show_default=True,
              help="largest |log10 tau| difference of a pooled neighbour (decades)")
@click.option("--stall-timeout", type=click.FloatRange(1.0, 1e7), help="stop a stage in which no task finished for "
              "this many seconds [default: $ECM_DASK_STALL_TIMEOUT or 3600]")
@click.option("--mode", type=click.Choice(["image", "diffraction", "scan"]), default="image", show_default=True,
              help="image: maps of tau, beta per pixel; diffraction: a diffraction-pattern series at one probe "
                   "position -> tau(q), beta(q), I(q) on rings of constant q; scan: a STEM scan repeated in time "
                   "(a 5-D array file as SERIES) -> maps of tau, beta per q ring")
@click.option("--frame-time", type=float, help="scan: seconds between frames (repeats of the scan)")
@click.option("--scan-step", type=float, help="scan: distance between probe positions, nm")
@click.option("--dataset", help="scan: the 5-D array inside an HDF5 file or Zarr group")
@click.option("--axes", help="scan: stored axis order, names time,y,x,ky,kx [default: time,y,x,ky,kx]")
@click.option("--k-calibration", type=float, help="diffraction: nm^-1 per camera pixel [default: the series']")
@click.option("--beam-centre", help="diffraction: ROW,COLUMN of the beam on the camera, pixels [default: the "
                                    "series', else found from the mean pattern]")
@click.option("--q-bins", default="24", show_default=True,
              help="diffraction: number of equal q rings, or ring edges in nm^-1 like 1,1.5,2,3")
@click.option("--mask", "mask_file", type=click.Path(path_type=Path),
              help="diffraction: .npy or .tif image of the camera, True/1 = use the pixel")
@click.option("--beam-stop-q", type=float, help="diffraction: leave out pixels below this q (nm^-1)")
@click.option("--sectors", type=click.IntRange(0, 64), default=8, show_default=True,
              help="diffraction: angular sectors per ring for jackknife errors (0: fit-covariance errors; the "
                   "default of scan mode, where sector curves multiply the result)")
@click.option("--report", "report_dir", type=click.Path(path_type=Path),
              help="folder for figures and the summary page [default: OUTPUT without .zarr + _report]")
@click.option("--no-report", is_flag=True, help="do not write the report")
@cluster_options(default="threads; local when --workers, --memory-limit, --tls or --host is given")
@click.option("--overwrite", is_flag=True, help="start over if the output or its stages belong to another run")
@click.option("--quiet", is_flag=True, help="no progress bars")
@click.pass_context
@_friendly
def run(ctx, series, output, reference_roi, roi_units, no_drift, max_shift, method, points_per_octave, max_lag,
        normalization, bad_frames, pool, pool_mode, model, block_mb, surface_nm, adaptive_radius, adaptive_tol,
        stall_timeout, mode, frame_time, scan_step, dataset, axes, k_calibration, beam_centre, q_bins, mask_file,
        beam_stop_q, sectors, report_dir,
        no_report, cluster, workers, threads, memory_limit, profile, profiles_file, local_directory, tls, host,
        insecure_host, dashboard_host, overwrite, quiet):
    """Analyse SERIES: drift -> g2 -> regions and artefacts -> KWW fits -> a results DataTree (maps, /fit,
    /regions, /distributions, /artefacts, /g2, /drift).

    Completed stages (and completed pixel blocks of an interrupted stage) are kept in OUTPUT.stages/ and
    skipped when the same command runs again.
    """
    from .cluster import check_host
    from .compute import STALL_ENV
    from .pipeline.config import RunConfig

    if stall_timeout is not None:
        os.environ[STALL_ENV] = repr(float(stall_timeout))

    cluster = default_cluster(cluster, profile, workers, memory_limit, tls, host)
    if cluster == "local" and not profile:  # refuse an open cluster before anything else
        check_host(host, tls=tls, insecure=insecure_host, log=lambda line: None)
        check_host(dashboard_host, insecure=insecure_host, what="--dashboard-host", log=lambda line: None)
    _check_mode_options(ctx, mode)
    if mode in ("diffraction", "scan"):
        from click.core import ParameterSource

        from .pipeline import diffraction as D
        from .pipeline import scan as SC
        from .pipeline.run import default_report_dir

        if mode == "scan":
            for name, value in (("--frame-time", frame_time), ("--scan-step", scan_step),
                                ("--k-calibration", k_calibration)):
                if value is None:
                    raise click.UsageError(f"--mode scan needs {name}")
        given = ctx.get_parameter_source("sectors") != ParameterSource.DEFAULT
        config = D.DiffractionConfig.build(
            series, g2_options={"method": method, "points_per_octave": points_per_octave, "max_lag": max_lag,
                                "normalization": normalization, "bad_frames": bad_frames},
            k_calibration=k_calibration, beam_centre=beam_centre, q_bins=q_bins, mask=mask_file,
            beam_stop_q=beam_stop_q, n_sectors=sectors if mode == "diffraction" or given else 0)
        with _connect(cluster, workers, threads, memory_limit, profile, profiles_file, local_directory, tls, host,
                      insecure_host, dashboard_host):
            if mode == "scan":
                path = SC.run_scan(series, output, config, frame_time_s=frame_time, scan_step_nm=scan_step,
                                   dataset=dataset, axes=axes, overwrite=overwrite, progress=not quiet)
            else:
                path = D.run_diffraction(series, output, config, overwrite=overwrite, progress=not quiet)
        write, summary, holds = ((SC.write_scan_report, SC.scan_summary, "tau, beta, I on (y, x, q)") if mode == "scan"
                                 else (D.write_diffraction_report, D.ring_summary, "tau, beta, I(q), g2 on q"))
        if not no_report:
            click.echo(f"report: {write(path, report_dir or default_report_dir(path))}", err=True)
        click.echo(summary(path))
        click.echo(f"wrote {path}  (xr.open_datatree(..., engine='zarr'): {holds}; /camera)")
        return
    from .pipeline.run import check_run, default_report_dir, run_pipeline

    g2_options = {"method": method, "points_per_octave": points_per_octave, "max_lag": max_lag,
                  "normalization": normalization, "bad_frames": bad_frames, "pool": pool, "pool_mode": pool_mode,
                  "block_bytes": block_mb * 2**20}
    fit_options = ctx.meta.get("config_sections", {}).get("fit") or {}
    if not isinstance(fit_options, dict):
        raise click.BadParameter("the config file's 'fit' section must be a mapping of fit options")
    if model != "kww":
        fit_options = {**fit_options, "model": model}
    # one typed configuration, validated (on its own and against the series) before any cluster starts
    config = RunConfig.build(series, reference_roi=reference_roi, roi_units=roi_units, drift=not no_drift,
                             max_shift=max_shift, g2_options=g2_options, fit_options=fit_options,
                             surface_nm=surface_nm, pooling={"radius": adaptive_radius, "tol": adaptive_tol})
    check_run(series, output, config, overwrite=overwrite)
    if memory_limit is not None and cluster == "local" and not profile:
        from .cluster import _parse_memory
        from .pipeline.plan import check_memory, plan_run
        from .store.series import open_series

        check_memory(plan_run(config, open_series(series)), _parse_memory(memory_limit), threads)
    with _connect(cluster, workers, threads, memory_limit, profile, profiles_file, local_directory, tls, host,
                  insecure_host, dashboard_host):
        path = run_pipeline(series, output, config, overwrite=overwrite, progress=not quiet)
    if not no_report:
        from .pipeline.report import write_report

        report_dir = report_dir or default_report_dir(path)
        click.echo(f"report: {write_report(path, report_dir)}", err=True)
    from .pipeline.report import region_summary

    click.echo(region_summary(path))
    click.echo(f"wrote {path}  (xr.open_zarr: maps; xr.open_datatree(..., engine='zarr'): maps, /fit, /regions, "
               "/distributions, /artefacts, /g2, /drift)")


IMAGE_ONLY = ("reference_roi", "roi_units", "no_drift", "max_shift", "pool", "pool_mode", "model", "block_mb",
              "surface_nm", "adaptive_radius", "adaptive_tol")
DIFFRACTION_ONLY = ("k_calibration", "beam_centre", "q_bins", "mask_file", "beam_stop_q", "sectors")
SCAN_ONLY = ("frame_time", "scan_step", "dataset", "axes")


def _check_mode_options(ctx, mode: str) -> None:
    """Options of another mode given on the command line (or in --config) are refused, not ignored."""
    from click.core import ParameterSource

    other = {"image": DIFFRACTION_ONLY + SCAN_ONLY, "diffraction": IMAGE_ONLY + SCAN_ONLY, "scan": IMAGE_ONLY}[mode]
    given = [p for p in ctx.command.params if p.name in other and ctx.get_parameter_source(p.name) in (
        ParameterSource.COMMANDLINE, ParameterSource.DEFAULT_MAP, ParameterSource.ENVIRONMENT)]
    if given:
        names = ", ".join(p.opts[0] for p in given)
        raise click.UsageError(f"{names} do(es) not apply to --mode {mode}")


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@_friendly
def info(store):
    """Describe what is in a STORE (series, an interrupted ingest, results, or a stage checkpoint)."""
    from .store.info import describe, store_kind

    kind = store_kind(store)
    if kind == "results":
        from .pipeline.results import describe_results

        click.echo(describe_results(store))
    elif kind == "diffraction":
        from .pipeline.diffraction import ring_summary

        click.echo(f"{store}  (results of run --mode diffraction)\n{ring_summary(store)}")
    elif kind == "scan":
        from .pipeline.scan import scan_summary

        click.echo(f"{store}  (results of run --mode scan)\n{scan_summary(store)}")
    else:
        click.echo(describe(store))


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@_friendly
def verify(store):
    """Decode every chunk of STORE (series, stage or results) and list missing or damaged files; exit 1 if any."""
    from .errors import StoreError
    from .store.integrity import verify as verify_store

    if not (store / "zarr.json").is_file():
        raise StoreError(f"{store}: not a Zarr store")
    problems = verify_store(store)
    for line in problems:
        click.echo(line)
    click.echo(f"{store}: {'OK, every chunk decodes and passes its checksum' if not problems else f'{len(problems)} damaged or missing file(s)'}")
    sys.exit(1 if problems else 0)


def _pixels(ctx, param, value):
    out = []
    for item in value:
        try:
            y, x = (float(v) for v in item.split(","))
        except ValueError:
            raise click.BadParameter(f"expected Y,X in nm like 3.5,12, got {item!r}") from None
        out.append((y, x))
    return out or None


@main.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="folder for the figures, report.md and report.html")
@click.option("--pixel", "pixels", multiple=True, callback=_pixels,
              help="Y,X (nm) of a pixel whose g2 fit to show; repeatable (default: 4 at quantiles of tau)")
@click.option("--series", type=click.Path(path_type=Path),
              help="series store for the frame figure (default: the one recorded in RESULTS)")
@click.option("--counts-per-electron", type=float,
              help="camera gain for the dose in electrons (default: the series', if ingested with it)")
@_friendly
def report(results, output, pixels, series, counts_per_electron):
    """Figures (frame, maps, g2 fits, histograms, drift, series and dose) and a summary page of a RESULTS store
    (image mode), or tau(q), beta(q), I(q) and the ring fits (diffraction mode)."""
    from .store.info import store_kind

    kind = store_kind(results)
    if kind in ("diffraction", "scan"):
        if pixels or series or counts_per_electron:
            raise click.UsageError("--pixel, --series and --counts-per-electron apply to image-mode results")
        from .pipeline.diffraction import write_diffraction_report
        from .pipeline.scan import write_scan_report

        click.echo(f"wrote {(write_diffraction_report if kind == 'diffraction' else write_scan_report)(results, output)}")
        return
    from .pipeline.report import write_report

    click.echo(f"wrote {write_report(results, output, pixels=pixels, series_path=series, counts_per_electron=counts_per_electron)}")


def _parse_size(ctx, param, value):
    try:
        parts = [int(v) for v in value.lower().replace("*", "x").split("x")]
    except ValueError:
        raise click.BadParameter(f"expected NY or NYxNX, got {value!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 16:
        raise click.BadParameter(f"expected NY or NYxNX with both >= 16, got {value!r}")
    return tuple(parts)


@main.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True,
              help="output folder")
@click.option("--size", default="96x128", show_default=True, callback=_parse_size, help="frame size NYxNX, pixels")
@click.option("--frames", type=click.IntRange(2, None), default=4000, show_default=True, help="number of frames")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="replace an existing demo output")
@click.option("--quiet", is_flag=True, help="no progress bar")
@_friendly
def demo(output, size, frames, seed, overwrite, quiet):
    """Generate the synthetic nanowire series with ground truth and run the pipeline on it."""
    from .pipeline.demo import run_demo
    from .synth import SynthParams

    params = SynthParams(ny=size[0], nx=size[1], n_frames=frames, seed=seed)
    click.echo(run_demo(output, params, overwrite=overwrite, progress=not quiet))
    click.echo(f"explore it:  open {Path(output) / 'report' / 'explore.html'} (click a pixel: its g2 and fit), or in "
               f"Python: ecm_dask.open_results('{Path(output) / 'results.zarr'}').ecm.pixel(y_nm, x_nm).plot()")


if __name__ == "__main__":  # pragma: no cover
    entry()


def _rate(ctx, param, value):
    """``4``, ``4/s`` or ``10fps`` -> frames per second."""
    text = str(value).strip().lower().removesuffix("fps").removesuffix("/s").strip()
    try:
        rate = float(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a rate; give frames per second, e.g. 4/s") from None
    if not (rate > 0 and rate < float("inf")):
        raise click.BadParameter(f"{value!r}: the rate must be a positive number of frames per second")
    return rate


def _seconds(ctx, param, value):
    """``30``, ``30s``, ``2min`` -> seconds."""
    text = str(value).strip().lower()
    scale = 60.0 if text.endswith("min") else 1.0
    text = text.removesuffix("min").removesuffix("s").strip()
    try:
        v = float(text) * scale
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a duration; e.g. 30s or 2min") from None
    if not (v > 0 and v < float("inf")):
        raise click.BadParameter(f"{value!r}: give a positive duration")
    return v


@main.command()
@click.argument("source", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(), help="results store written at every update")
@click.option("--dataset", help="the (time, y, x) dataset an HDF5 SOURCE grows (written in SWMR mode)")
@click.option("--frame-time", type=float, required=True, help="seconds between frames")
@click.option("--pixel-size", type=float, required=True, help="pixel size in nm")
@click.option("--points-per-octave", type=int, default=8, show_default=True)
@click.option("--update-every", default="30s", callback=_seconds, show_default=True,
              help="refit the maps and write the results this often")
@click.option("--poll", "poll_s", default="0.5s", callback=_seconds, show_default=True, help="folder polling interval")
@click.option("--frames", "stop_after", type=int, help="stop after this many frames")
@click.option("--reference-roi", help="drift reference Y0:Y1,X0:X1 in pixels (a static, textured region, e.g. a "
              "crystallised chunk): drift is estimated frame by frame and undone; default: no drift correction")
@click.option("--max-shift", type=float, default=8.0, show_default=True,
              help="largest drift in pixels (margin read around the reference region)")
@click.option("--window", "window_frames", type=int, default=200, show_default=True,
              help="frames per stationarity window (tau of each window compared with the first)")
@click.option("--checkpoint-every", default="300s", callback=_seconds, show_default=True,
              help="save the sums at most this often (and at the end); after a crash the frames since are re-read")
@click.option("--series", type=click.Path(), help="when the watch ends, ingest the frames it used into this series "
              "store (for `ecm-dask run`)")
@click.option("--serve", type=int, default=None, help="serve the live page on 127.0.0.1:PORT (0: any free port)")
@click.option("--idle-stop", default=None, callback=lambda c, p, v: None if v is None else _seconds(c, p, v),
              help="stop when no frame came for this long (e.g. 60s); default: until Ctrl-C")
@_friendly
def watch(source, output, dataset, frame_time, pixel_size, points_per_octave, update_every, poll_s, stop_after, reference_roi,
          max_shift, window_frames, checkpoint_every, series, serve, idle_stop):
    """Correlate the frames a camera writes into SOURCE while they arrive: a folder (one TIFF per frame), a
    multi-page TIFF or an HDF5 dataset (--dataset) that grows.

    Every update writes OUTPUT (same contract as `ecm-dask run --no-drift`) and prints one line per region: how
    many pixels already have a series >= 40 tau, the time still needed, and whether frames are short enough
    (<= 0.1 tau).  Stopped (Ctrl-C, kill) and started again, it continues from the frames already summed.
    """
    from .live.watch import watch as run_watch

    run_watch(source, output, frame_time_s=frame_time, pixel_size_nm=pixel_size, points_per_octave=points_per_octave,
              update_every=update_every, poll_s=poll_s, stop_after=stop_after, idle_stop=idle_stop,
              reference_roi=reference_roi, max_shift=max_shift, serve=serve, window_frames=window_frames,
              checkpoint_every=checkpoint_every, series=series, dataset=dataset, echo=click.echo)


@main.command("simulate-camera")
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--rate", default="4/s", callback=_rate, show_default=True, help="frames per second")
@click.option("--frames", "n_frames", type=int, default=400, show_default=True)
@click.option("--size", default="64x64", show_default=True, help="ny x nx of the synthetic wire")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--start", type=int, default=0, help="first frame to write (to continue an interrupted simulation)")
@click.option("--drift", "drift_px", default="0,0", show_default=True,
              help="total drift DY,DX in pixels over the series (plus a random walk of a tenth of it)")
@_friendly
def simulate_camera(output, rate, n_frames, size, seed, start, drift_px):
    """Write the synthetic nanowire's frames into OUTPUT at RATE, one TIFF per frame, as a camera does
    (frame time 0.5 s, pixel 0.33 nm: give those to `ecm-dask watch`)."""
    import numpy as np

    from .errors import ParameterError
    from .live.camera import reference_box, synthetic_frames
    from .live.camera import simulate_camera as sim

    try:
        ny, nx = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ParameterError(f"--size {size!r}: give NYxNX, e.g. 64x64") from None
    try:
        dy, dx = (float(v) for v in drift_px.split(","))
    except ValueError:
        raise ParameterError(f"--drift {drift_px!r}: give DY,DX in pixels, e.g. 2,-3") from None
    frames, p = synthetic_frames(n_frames, ny, nx, seed=seed, drift_px=(dy, dx),
                                 drift_walk_px=0.1 * max(abs(dy), abs(dx)))
    click.echo(f"camera: {n_frames} frames of {ny}x{nx} px into {output} at {rate:g}/s "
               f"(frame time {p.frame_time_s} s, pixel {p.pixel_size_nm} nm)")
    margin = int(np.ceil(max(abs(dy), abs(dx)) * 1.5)) + 2
    box = reference_box(p, margin)
    if box is not None:
        click.echo(f"camera: the static crystal is at --reference-roi {box[0]}:{box[1]},{box[2]}:{box[3]} "
                   f"(with --max-shift {margin})")
    n = sim(output, frames, rate=rate, start=start, echo=click.echo)
    click.echo(f"camera: done, {n} frames written")


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(), help="folder for tau_vs_T.png, compare.json, "
              "combined.zarr")
@click.option("--temperatures", help="comma-separated °C, one per result (default: from the stores)")
@_friendly
def compare(results, output, temperatures):
    """Compare RESULTS of runs at several temperatures: per-region median τ(T) with intervals, Arrhenius and VFT
    fits, a figure and a combined store."""
    from .errors import ParameterError
    from .pipeline.compare import compare_results, summary_lines

    temps = None
    if temperatures:
        try:
            temps = [float(v) for v in temperatures.split(",")]
        except ValueError:
            raise ParameterError(f"--temperatures {temperatures!r}: give numbers in °C, e.g. 250,260,270") from None
    summary = compare_results(results, output, temperatures=temps)
    for line in summary_lines(summary):
        click.echo(line)
    click.echo(f"wrote {output}/ (tau_vs_T.png, compare.json, combined.zarr)")


@main.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="NeXus file to write, e.g. OUT.nxs (name it .hdf or .h5 for pyXpcsViewer's file list)")
@click.option("--overwrite", is_flag=True, help="replace an existing output file")
@_friendly
def export(results, output, overwrite):
    """Export a RESULTS store as NeXus NXxpcs (also read by the APS XPCS viewer): one ROI per sample region, its
    g2 the mean over the region's ok pixels with standard errors, and a KWW fit of each ROI curve; for diffraction
    results one ROI per q ring with q, the ring map and the ring fits."""
    from .interop.nexus import export_results, summary_lines

    path = export_results(results, output, overwrite=overwrite)
    for line in summary_lines(path):
        click.echo(line)
    click.echo(f"wrote {path}")
