"""Where the work runs: the local threaded scheduler, a LocalCluster, an existing scheduler, or an HPC
batch system through dask-jobqueue (SLURM, PBS) with named profiles.

Use :func:`connect` as a context manager around a pipeline call; every dask computation inside uses it::

    with connect("local", workers=2, memory_limit="2GB") as client:
        run_pipeline("series.zarr", "results.zarr")

Choices for ``cluster``
-----------------------
``"threads"``      no distributed client: dask's threaded scheduler in this process (smallest overhead)
``"local"``        a :class:`distributed.LocalCluster` of worker processes on this machine (the default of
                   ``ecm-dask run``); the scheduler and dashboard listen on 127.0.0.1 only
``tcp://HOST:PORT`` or ``tls://HOST:PORT``   an already running scheduler
``"slurm"``, ``"pbs"``   a dask-jobqueue cluster; workers are batch jobs (``--profile`` picks a named profile
                   from ``cluster/profiles.yaml`` or your own file)

Security: a local cluster binds 127.0.0.1 unless ``host`` says otherwise, and another address is refused unless
``tls=True`` or ``insecure_host=True`` (dask runs any code a client sends); the dashboard stays on 127.0.0.1
unless ``dashboard_host`` says otherwise.  ``tls=True`` gives the cluster
temporary TLS credentials (distributed's ``Security.temporary``), so other users of a shared login node can
neither connect to the scheduler nor read the traffic.  For a remote ``tls://`` scheduler pass a
:class:`distributed.security.Security` (or set dask's ``distributed.comm.tls`` configuration).
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import InputError, ParameterError

KINDS = ("threads", "local", "slurm", "pbs")
JOBQUEUE_KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}
PROFILES_ENV = "ECM_DASK_PROFILES"
#: keys of a profile that are ours; the rest go to the dask-jobqueue cluster class
PROFILE_OWN_KEYS = ("kind", "jobs", "workers", "wait_timeout", "description")
DEFAULT_WAIT_S = 300.0


def profile_files() -> list[Path]:
    """Where named profiles are looked up, first match wins: $ECM_DASK_PROFILES, ~/.config/ecm_dask/
    profiles.yaml, then ``cluster/profiles.yaml`` of the source tree this package runs from."""
    files = []
    if os.environ.get(PROFILES_ENV):
        files.append(Path(os.environ[PROFILES_ENV]))
    files.append(Path.home() / ".config" / "ecm_dask" / "profiles.yaml")
    files.append(Path(__file__).resolve().parents[1] / "cluster" / "profiles.yaml")
    return files


def load_profile(name: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The profile ``name`` from ``path`` (or the first file of :func:`profile_files` that has it)."""
    import yaml

    candidates = [Path(path)] if path is not None else profile_files()
    seen = []
    for file in candidates:
        if not file.is_file():
            if path is not None:
                raise InputError(f"cluster profile file {file} does not exist")
            continue
        try:
            content = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(f"cluster profile file {file} is not valid YAML: {err}") from None
        profiles = content.get("profiles", {}) if isinstance(content, dict) else {}
        if not isinstance(profiles, dict):
            raise InputError(f"{file}: 'profiles' must be a mapping of name -> settings")
        if name in profiles:
            profile = dict(profiles[name] or {})
            if profile.get("kind") not in JOBQUEUE_KINDS:
                raise InputError(f"{file}: profile {name!r} needs kind: slurm or pbs (got {profile.get('kind')!r})")
            return profile
        seen.append(f"{file} ({', '.join(sorted(profiles)) or 'none'})")
    raise InputError(f"no cluster profile named {name!r}; profiles found: {'; '.join(seen) or 'no profile files'}"
                     f" (searched {', '.join(str(f) for f in candidates)})")


def _parse_memory(value) -> int | None:
    if value is None:
        return None
    from dask.utils import parse_bytes

    try:
        n = parse_bytes(value)
    except (ValueError, TypeError):
        raise InputError(f"memory limit {value!r} is not a size such as '2GB' or '512MiB'") from None
    if n <= 0:
        raise InputError(f"memory limit {value!r} must be positive")
    return n


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    h = str(host).strip().strip("[]")
    if h.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return False  # a host name or interface: reachable from elsewhere until proven otherwise
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 (Python < 3.13 does not call it loopback)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def check_host(host: str, *, tls: bool = False, insecure: bool = False, what: str = "--host", log=None) -> None:
    """Refuse to listen on a non-loopback ``host`` without TLS: an unauthenticated dask scheduler runs any code
    sent to it.  ``insecure=True`` (``--insecure-host``) allows it with a warning line."""
    if is_loopback(host) or tls:
        return
    if not insecure:
        raise ParameterError(f"{what} {host} would let anyone who can reach this machine run code in the cluster "
                             "(dask has no authentication without TLS); add --tls (temporary TLS credentials), or "
                             "--insecure-host if this network is trusted")
    (log or (lambda line: print(line, file=sys.stderr, flush=True)))(
        f"warning: the cluster listens on {host} without TLS (--insecure-host): anyone who can reach it can run code "
        "as you")


def default_local_workers(memory_limit: int | None = None, workers: int | None = None) -> tuple[int, int]:
    """Workers and per-worker memory for a LocalCluster: ``workers`` or one single-threaded process per core,
    at most as many as fit in 80 % of the memory at ~1 GiB each; 80 % of the memory split evenly among them
    unless ``memory_limit`` is given."""
    import psutil

    cores = os.cpu_count() or 1
    total = psutil.virtual_memory().total
    n = workers if workers is not None else max(1, min(cores, int(0.8 * total // (1 << 30))))
    return n, memory_limit if memory_limit is not None else int(0.8 * total // n)


def describe(client) -> str:
    """One line: where the client is connected, how many workers/threads, the dashboard link."""
    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 0) for w in workers.values())
    link = getattr(client, "dashboard_link", None)
    return (f"dask scheduler {info.get('address', client.scheduler.address)}: {len(workers)} worker(s), "
            f"{threads} thread(s); dashboard {link or 'unavailable'}")


@contextmanager
def _workers_ignore_sigint():
    """Start processes with SIGINT ignored (inherited through spawn/exec; Python then installs no KeyboardInterrupt
    handler in them): a Ctrl-C at the terminal reaches the whole process group, and worker processes would each
    print a traceback instead of being shut down quietly by this one."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextmanager
def connect(cluster: str | None = "local", *, workers: int | None = None, threads: int = 1,
            memory_limit: str | int | None = None, profile: str | None = None,
            profiles_file: str | os.PathLike | None = None, host: str = "127.0.0.1", tls: bool = False,
            security=None, local_directory: str | None = None, dashboard: bool = True,
            wait_timeout: float | None = None, log=None, insecure_host: bool = False,
            dashboard_host: str = "127.0.0.1"):
    """Start or join a dask cluster for the duration of the ``with`` block; yield the Client (None for
    ``"threads"``).  Everything started here is shut down on exit, including on errors and Ctrl-C.

    Parameters
    ----------
    cluster : ``"threads"``, ``"local"``, a scheduler address (``tcp://`` / ``tls://``), ``"slurm"``, ``"pbs"``;
        None means ``"local"``, or the profile's kind when ``profile`` is given
    workers : local: worker processes (default: one per core, bounded by memory); jobqueue: workers to start
    threads : threads per local worker
    memory_limit : per worker, e.g. ``"2GB"`` (local: default splits 80 % of RAM; jobqueue: job memory)
    profile, profiles_file : a named jobqueue profile (see ``cluster/profiles.yaml``)
    host : interface the local scheduler and workers listen on (127.0.0.1: not reachable from other hosts); any
        other address needs ``tls=True`` or ``insecure_host=True`` (see :func:`check_host`)
    tls : local cluster with temporary TLS credentials (needs the ``cryptography`` package)
    security : a :class:`distributed.security.Security` for a ``tls://`` scheduler address
    local_directory : worker scratch (spilled data); put it on node-local disk on clusters
    dashboard : serve the dashboard (local cluster, at a free port on ``dashboard_host``)
    insecure_host : allow a non-loopback ``host`` without TLS (a warning is logged)
    dashboard_host : interface of the dashboard (default 127.0.0.1 whatever ``host`` is; the same rules apply)
    wait_timeout : seconds to wait for the first jobqueue worker (default 300)
    log : callable taking one line (default: print to stderr)
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    settings = load_profile(profile, profiles_file) if profile else None
    if cluster is None and settings:
        cluster = settings["kind"]
    kind, address = _resolve_kind(cluster, profile)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1 (got {workers})")
    if threads < 1:
        raise InputError(f"threads per worker must be at least 1 (got {threads})")
    memory = _parse_memory(memory_limit)
    if kind == "local":  # before anything listens
        check_host(host, tls=tls, insecure=insecure_host, log=log)
        if dashboard:
            check_host(dashboard_host, tls=False, insecure=insecure_host, what="--dashboard-host", log=log)

    if kind == "threads":
        import dask
        import dask.threaded

        # the scheduler given as the function itself and rechunks as tasks: dask then never imports distributed to
        # look for a client (0.25 s of every run)
        with dask.config.set({"scheduler": dask.threaded.get, "array.rechunk.method": "tasks"}):
            yield None
        return

    from distributed import Client

    if kind == "address":
        if address.startswith("tls://") and security is None:
            from distributed.security import Security

            security = Security()  # from dask config distributed.comm.tls.*
        try:
            client = Client(address, security=security)  # timeout: distributed.comm.timeouts.connect
        except (OSError, TimeoutError) as err:
            raise InputError(f"cannot connect to the dask scheduler at {address}: {err}") from None
        with client:
            log(describe(client))
            yield client
        return

    if kind == "local":
        from distributed import LocalCluster

        n, memory = default_local_workers(memory, workers)
        kwargs = dict(n_workers=n, threads_per_worker=threads, memory_limit=memory, processes=True,
                      silence_logs=logging.ERROR,  # workers: errors only (memory trouble: see compute.py)
                      host=host, dashboard_address=f"{dashboard_host}:0", local_directory=local_directory)
        if not dashboard:
            kwargs["scheduler_kwargs"] = {"dashboard": False}
        if tls:
            from distributed.security import Security

            try:
                kwargs["security"] = Security.temporary()
            except ImportError:
                raise InputError("--tls needs the 'cryptography' package (pip install cryptography)") from None
            kwargs["protocol"] = "tls://"
        with _workers_ignore_sigint():  # Ctrl-C goes to this process, which stops the workers itself
            lc = LocalCluster(**kwargs)
        with lc, Client(lc) as client:
            log(describe(client))
            yield client
        return

    # dask-jobqueue
    settings = settings or {"kind": kind}
    with _jobqueue_cluster(kind, settings, workers=workers, memory=memory, local_directory=local_directory,
                           log=log) as (jc, n_workers):
        with Client(jc) as client:
            timeout = wait_timeout or float(settings.get("wait_timeout", DEFAULT_WAIT_S))
            log(f"waiting up to {timeout:.0f} s for {n_workers} {kind} worker(s); job script:\n{jc.job_script()}")
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                logs = settings.get("log_directory") or "the job output files"
                raise InputError(f"no {kind} worker started within {timeout:.0f} s: check the queue "
                                 f"({'squeue' if kind == 'slurm' else 'qstat'}) and {logs}") from None
            log(describe(client))
            yield client


def _resolve_kind(cluster: str | None, profile: str | None) -> tuple[str, str | None]:
    if cluster is None:
        return "local", None
    value = str(cluster).strip()
    if "://" in value:
        if not value.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise InputError(f"--cluster {value!r}: scheduler addresses look like tcp://HOST:PORT or tls://HOST:PORT")
        return "address", value
    if value not in KINDS:
        raise InputError(f"--cluster {value!r} is not one of {', '.join(KINDS)} or a scheduler address "
                         "(tcp://HOST:PORT)")
    if profile and value not in JOBQUEUE_KINDS:
        raise InputError(f"--profile {profile!r} is for slurm or pbs clusters, not --cluster {value}")
    return value, None


@contextmanager
def _jobqueue_cluster(kind: str, settings: dict, *, workers, memory, local_directory, log):
    try:
        import dask_jobqueue
    except ImportError:
        raise InputError(f"--cluster {kind} needs dask-jobqueue (pip install dask-jobqueue)") from None
    if settings.get("kind", kind) != kind:
        raise InputError(f"the profile is for {settings['kind']}, not --cluster {kind}")
    options = {k: v for k, v in settings.items() if k not in PROFILE_OWN_KEYS}
    if memory is not None:
        options["memory"] = f"{memory}B"
    if local_directory is not None:
        options["local_directory"] = local_directory
    if options.get("log_directory"):
        Path(os.path.expandvars(options["log_directory"])).mkdir(parents=True, exist_ok=True)
    options.setdefault("scheduler_options", {})
    if "dashboard_address" not in options["scheduler_options"]:
        options["scheduler_options"] = {**options["scheduler_options"], "dashboard_address": ":0"}
    cls = getattr(dask_jobqueue, JOBQUEUE_KINDS[kind])
    try:
        jc = cls(**options)
    except (TypeError, ValueError) as err:
        raise InputError(f"invalid {kind} cluster settings {sorted(options)}: {err}") from None
    n_workers = workers or int(settings.get("workers", 1))
    try:
        jc.scale(n=n_workers)
        yield jc, n_workers
    finally:
        jc.close()
