"""Human-readable summaries of stores (``ecm-dask info``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import StoreError
from . import series as SS


def disk_usage(path: str | os.PathLike) -> int:
    """Bytes used by all files below ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def store_kind(path: str | os.PathLike) -> str:
    """What is at ``path``: ``series``, ``interrupted`` (an ingest into it was interrupted: ``<path>.partial``),
    ``results`` (``ecm-dask run``), ``diffraction`` / ``scan`` (``ecm-dask run --mode diffraction / scan``), ``zarr`` (another Zarr store, e.g. a stage checkpoint) or ``absent``."""
    import json

    from .blocks import PARTIAL, partial_path

    path = Path(path)
    if path.name.endswith(PARTIAL) and SS.store_key(path) is not None:
        return "interrupted"
    state = SS.store_state(path)
    if state == SS.ABSENT:  # an ingest interrupted (even while creating its .partial) writes <path>.partial
        return "interrupted" if SS.store_key(partial_path(path)) is not None else "absent"
    if state in (SS.COMPLETE, SS.INCOMPLETE):
        return "series"
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return "absent" if not path.exists() else "other"
    if attrs.get(S.ATTR_SERIES_MODE) in (S.MODE_DIFFRACTION, "scan") and S.ATTR_RUN_CONFIG in attrs:
        return attrs[S.ATTR_SERIES_MODE]
    return "results" if S.ATTR_RUN_FINGERPRINT in attrs else "zarr"


def shards_written(path: str | os.PathLike, attrs: dict) -> tuple[int, int]:
    """``(time shards written, time shards in all)`` of a series store being written at ``path``: from its
    progress ticks, else (interrupted before they were made, or written without them) from the shard files."""
    import math

    from .blocks import progress

    done = progress(path)
    if done is not None:
        return done
    n, shard = (attrs.get(SS.ATTR_LAYOUT) or {}).get("shape"), (attrs.get(SS.ATTR_LAYOUT) or {}).get("shard")
    total = math.ceil(n[0] / shard[0]) if n and shard else 0
    folder = Path(path) / S.INTENSITY / "c"
    written = sum(1 for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else 0
    return min(written, total) if total else written, total


def describe_interrupted(path: str | os.PathLike) -> str:
    """An interrupted ingest: what it was writing, how far it got, how to resume (metadata only)."""
    import json

    from .blocks import PARTIAL, partial_path

    path = Path(path)
    partial = path if path.name.endswith(PARTIAL) else partial_path(path)
    final = partial.with_name(partial.name.removesuffix(PARTIAL))
    try:
        attrs = json.loads((partial / "zarr.json").read_text()).get("attributes", {})
        meta = json.loads((partial / S.INTENSITY / "zarr.json").read_text())
    except (OSError, ValueError) as err:
        raise StoreError(f"{partial}: an interrupted ingest whose metadata cannot be read ({err}); run the ingest "
                         "again with --overwrite") from None
    done = shards_written(partial, attrs)
    n, ny, nx = meta.get("shape", ("?", "?", "?"))
    src = attrs.get(S.ATTR_SOURCE) or []
    src = [src] if isinstance(src, str) else src
    lines = [f"{final}  (INCOMPLETE: the ingest was interrupted; {done[0]} of {done[1]} shards written in {partial}; "
             "run the same ingest command again to resume)",
             f"  intensity  (time: {n}, y: {ny}, x: {nx})  {meta.get('data_type', '?')}",
             f"  frame time {attrs.get(S.ATTR_FRAME_TIME)} s, " + (
                 f"diffraction camera {attrs.get(S.ATTR_K_CALIBRATION)} nm^-1/pixel"
                 if S.series_mode(attrs) == S.MODE_DIFFRACTION else f"pixel size {attrs.get(S.ATTR_PIXEL_SIZE)} nm")]
    if src:
        lines.append(f"  source     {src[0]}" + (f" (+{len(src) - 1} more)" if len(src) > 1 else ""))
    return "\n".join(lines)


def describe_zarr(path: str | os.PathLike) -> str:
    """Any other Zarr store (e.g. a stage checkpoint): its groups and variables with dims."""
    import xarray as xr

    path = Path(path)
    with SS._quiet():
        tree = xr.open_datatree(path, engine="zarr")
    lines = [f"{path}  (Zarr store, {_human(disk_usage(path))} on disk)"]
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        if not ds.variables:
            continue
        lines.append(f"  {node.path}")
        for name, var in ds.data_vars.items():
            dims = ", ".join(f"{d}: {n}" for d, n in var.sizes.items())
            lines.append(f"    {name:16s} ({dims})  {var.dtype}")
    return "\n".join(lines)


def describe(path: str | os.PathLike) -> str:
    """A multi-line description of a series store: shape, calibration, layout, size, completeness (and of an
    interrupted ingest or another Zarr store; results stores: :func:`ecm_dask.pipeline.results.describe_results`)."""
    path = Path(path)
    kind = store_kind(path)
    if kind == "interrupted":
        return describe_interrupted(path)
    if kind == "zarr" or kind == "results":
        return describe_zarr(path)
    state = SS.store_state(path)
    if state == SS.ABSENT:
        raise StoreError(f"{path}: no such store")
    if state == SS.FOREIGN:
        raise StoreError(f"{path} is not an ecm_dask store")
    ds = SS.open_series(path, require_complete=False, validate=False)
    a = ds.attrs
    da = ds[S.INTENSITY]
    n, ny, nx = da.shape
    ft = a[S.ATTR_FRAME_TIME]
    diffraction = S.series_mode(a) == S.MODE_DIFFRACTION
    px = a[S.ATTR_K_CALIBRATION] if diffraction else a[S.ATTR_PIXEL_SIZE]
    enc = da.encoding
    used = disk_usage(path)
    temp = a.get(S.ATTR_TEMPERATURE)
    if state == SS.COMPLETE:
        status = "complete"
    else:
        written, total = shards_written(path, a)
        status = f"INCOMPLETE: {written} of {total} shards written; run the ingest again to resume"
    lines = [
        f"{path}  ({status})",
        f"  intensity  (time: {n}, y: {ny}, x: {nx})  {da.dtype}",
        f"  duration   {n * ft:g} s = {n} frames x {ft:g} s",
        (f"  camera     diffraction, {ny * px:.4g} x {nx * px:.4g} nm^-1  ({px:g} nm^-1/pixel; "
         "analyse with: ecm-dask run --mode diffraction)" if diffraction else
         f"  field      {ny * px:.4g} x {nx * px:.4g} nm  ({px:g} nm/pixel)"),
        f"  sample     {a.get(S.ATTR_MATERIAL, S.UNKNOWN)} at "
        f"{'unknown temperature' if temp is None else f'{temp:g} degC'}",
        f"  instrument {a.get(S.ATTR_INSTRUMENT, S.UNKNOWN)}",
        f"  layout     shards {tuple(enc.get('shards') or ())}, inner chunks {tuple(enc.get('chunks') or ())}",
        f"  size       {_human(da.nbytes)} raw, {_human(used)} on disk ({da.nbytes / max(used, 1):.2f}x)",
    ]
    src = a.get(S.ATTR_SOURCE)
    if src:
        src = [src] if isinstance(src, str) else src
        lines.append(f"  source     {src[0]}" + (f" (+{len(src) - 1} more)" if len(src) > 1 else ""))
    if (path / S.TRUTH_GROUP).is_dir():
        lines.append(f"  truth      group '{S.TRUTH_GROUP}' (synthetic ground truth)")
    return "\n".join(lines)


def truth_summary(path: str | os.PathLike) -> str:
    """Ground-truth statistics of a synthetic series (τ, β, contrast per region, drift)."""
    import xarray as xr

    with SS._quiet():
        t = xr.open_zarr(path, group=S.TRUTH_GROUP)
    region = t[S.TRUTH_REGION].values
    lines = ["ground truth (synthetic):"]
    for code in (S.REGION_BULK, S.REGION_SURFACE):
        m = region == code
        if not m.any():
            continue
        tau = t[S.TRUTH_TAU].values[m]
        beta = t[S.TRUTH_BETA].values[m]
        q = np.percentile(tau, [5, 50, 95])
        lines.append(f"  {S.REGION_NAMES[code]:8s} {m.sum():6d} px  tau median {q[1]:.3g} s "
                     f"(5-95%: {q[0]:.3g}-{q[2]:.3g} s), beta median {np.median(beta):.2f} "
                     f"(IQR {np.subtract(*np.percentile(beta, [75, 25])):.2f})")
    shift = t[S.TRUTH_SHIFT].values
    lines.append(f"  drift    final shift (dy, dx) = ({shift[-1, 0]:+.2f}, {shift[-1, 1]:+.2f}) px, "
                 f"max |shift| {np.abs(shift).max():.2f} px")
    return "\n".join(lines)
