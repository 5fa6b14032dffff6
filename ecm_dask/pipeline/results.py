"""Assemble ``results.zarr``: the labelled result store other tools and notebooks rely on (DESIGN §4).

An xarray DataTree (names in :mod:`ecm_dask.schema`, checked by :func:`ecm_dask.schema.validate_results`):

- ``/``: the maps on the reference frame's pixel grid (``tau`` in s, ``beta``, ``contrast``, ``baseline``, their
  errors, ``chi2``, ``status``, ``quality``).  A map holds a value only where ``status`` is ok: rejected fits,
  artefacts (drift-swept edges, static pixels) and vacuum are NaN there, and ``status`` says why;
- ``/fit``: the raw fit of every pixel whatever its status (experts: covariance, iterations, model-free τ, ...);
- ``/artefacts``: the artefact screen (codes and diagnostics); ``/regions``: ``region`` and ``surface_distance``;
- ``/distributions``: per-region statistics of log10 τ and β with bootstrap intervals, surface vs bulk;
- ``/g2``: the per-pixel g2 with its lags and pairs; ``/drift``: the shift trace with its reference ROI.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import schema as S
from ..errors import StoreError
from ..store.blocks import KEY_ATTR, atomic
from ..store.integrity import checksummed

#: variables the root of every results store carries (the contract)
ROOT_MAPS = S.ROOT_MAPS


def pixel_status(fit_status, g2_status, artefact, region, *, drift_edge_code: int, static_code: int) -> np.ndarray:
    """The result status of every pixel (codes :data:`ecm_dask.schema.RESULT_STATUS`).

    Precedence: unusable g2 (``bad input``) > ``vacuum`` > ``static`` (artefact screen, or the crystal region) >
    ``drift edge`` > the fit's own status.
    """
    status = np.asarray(fit_status).astype(np.uint8).copy()
    artefact = np.asarray(artefact)
    region = np.asarray(region)
    status[artefact == drift_edge_code] = S.STATUS_DRIFT_EDGE
    status[(artefact == static_code) | (region == S.REGION_CRYSTAL)] = S.STATUS_STATIC
    status[region == S.REGION_VACUUM] = S.STATUS_VACUUM
    status[np.asarray(g2_status) != 0] = S.STATUS_BAD_INPUT
    return status


def root_maps(fit, g2, regions, artefacts):
    """The root Dataset: the fit's value maps where the pixel status is ok, NaN elsewhere."""
    import xarray as xr

    from ..ops import artefacts as A

    status = pixel_status(fit[S.STATUS].values, g2[S.STATUS].values, artefacts[S.ARTEFACT].values,
                          regions[S.REGION].values, drift_edge_code=A.ARTEFACT_DRIFT_EDGE,
                          static_code=A.ARTEFACT_STATIC)
    ok = status == S.STATUS_OK
    coords = {d: (d, np.asarray(fit[d].values), S.coord_attrs(d, d)) for d in (S.Y, S.X)}
    root = xr.Dataset(coords=coords)
    for name in S.ROOT_VALUE_MAPS:
        if name not in fit:
            raise StoreError(f"the fit stage has no map {name!r}; run the fit stage again")
        v = np.asarray(fit[name].values, dtype=np.float32)
        root[name] = ((S.Y, S.X), np.where(ok, v, np.float32(np.nan)), dict(fit[name].attrs))
        if name in S.UNITS:
            root[name].attrs[S.ATTR_UNITS] = S.UNITS[name]
    root[S.STATUS] = ((S.Y, S.X), status, S.flag_attrs(S.RESULT_STATUS, "pixel status"))
    quality = np.where(ok, np.asarray(fit[S.QUALITY].values), 0).astype(np.uint8)
    root[S.QUALITY] = ((S.Y, S.X), quality, dict(fit[S.QUALITY].attrs))
    if S.N_POOLED in fit:
        root[S.N_POOLED] = ((S.Y, S.X), np.asarray(fit[S.N_POOLED].values), dict(fit[S.N_POOLED].attrs))
    root.attrs.update({k: v for k, v in fit.attrs.items() if k != KEY_ATTR})
    return root


#: above this many ok pixels the statistics use a regular sub-grid (every k-th row and column): bootstrap and
#: permutation costs grow with the pixel count, and neighbouring pixels are correlated anyway (adaptive pooling
#: shares curves within 3 px, domains span several nm): a 631 x 861 map with 316 000 ok pixels is read every 6th
#: row and column (7.6 s of statistics at 20 000 pixels, every 4th)
MAX_STAT_PIXELS = 10_000


def distributions(root, regions, *, seed: int = 0, n_boot: int = 1000):
    """Per-region statistics (bulk, surface, crystal) and the surface-vs-bulk comparison of the ok pixels.

    Maps with more than :data:`MAX_STAT_PIXELS` ok pixels are thinned to every k-th row and column first (k in the
    ``grid_stride`` attribute), which keeps the cost of the intervals bounded at any frame size.
    """
    import math

    import xarray as xr

    from ..analysis.distributions import compare_regions, region_statistics
    from ..errors import InputError

    n_ok = int(np.count_nonzero(np.asarray(root[S.STATUS].values) == S.STATUS_OK))
    k = max(1, math.ceil(math.sqrt(n_ok / MAX_STAT_PIXELS)))
    if k > 1:
        thin = {S.Y: slice(None, None, k), S.X: slice(None, None, k)}
        root, regions = root.isel(thin), regions.isel(thin)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # independent seeded streams: the same numbers in any order
        stats_job = pool.submit(region_statistics, root, regions, n_boot=n_boot, seed=seed)
        cmp_job = pool.submit(compare_regions, root, regions, "surface", "bulk", n_boot=n_boot, n_perm=n_boot,
                              seed=seed)
        stats = stats_job.result()
        stats.attrs["grid_stride"] = k
        try:
            cmp = cmp_job.result()
        except InputError as err:  # too few ok pixels in one region: no comparison, say why
            stats.attrs["comparison"] = f"surface vs bulk not compared: {err}"
            return stats
    cmp = cmp.rename({v: f"surface_bulk_{v}" for v in cmp.data_vars})
    for v in cmp.data_vars:
        cmp[v].attrs["long_name"] = f"surface vs bulk: {v.removeprefix('surface_bulk_')} (tau_ratio = median tau of " \
                                    "surface / bulk; the others surface minus bulk)"
    out = xr.merge([stats, cmp], combine_attrs="drop_conflicts")
    out.attrs.update({"comparison": "surface vs bulk", "n_surface": cmp.attrs["n_a"], "n_bulk": cmp.attrs["n_b"]})
    return out


def _pixel_size(g2) -> float:
    """Pixel size (nm) from the y/x coordinates of the g2 grid (pooled grids included)."""
    for d in (S.X, S.Y):
        c = np.asarray(g2[d].values, dtype=np.float64)
        if c.size > 1:
            return float(np.median(np.diff(c)))
    return float(g2.attrs.get(S.ATTR_PIXEL_SIZE, np.nan))


def assemble_results(output: str | os.PathLike, maps: str | os.PathLike, g2: str | os.PathLike,
                     drift: str | os.PathLike | None = None, *, screen: str | os.PathLike,
                     overwrite: bool = False, attrs: dict | None = None) -> Path:
    """Write the result DataTree from the stage checkpoints (maps.zarr, g2.zarr, screen.zarr, drift.zarr).

    ``attrs`` (e.g. the run configuration and its fingerprint) are added to the root attributes.
    """
    import xarray as xr

    from ..store.integrity import open_checked
    from ..store.writer import provenance
    from .screen import open_screen

    fit = open_checked(maps).load()  # a damaged chunk: one StoreError naming the file
    g2_ds = open_checked(g2)
    regions, artefacts = open_screen(screen)
    root = root_maps(fit, g2_ds, regions, artefacts)
    root.attrs.update({S.ATTR_FRAME_TIME: g2_ds.attrs.get(S.ATTR_FRAME_TIME),
                       S.ATTR_PIXEL_SIZE: _pixel_size(g2_ds),
                       S.ATTR_TEMPERATURE: g2_ds.attrs.get(S.ATTR_TEMPERATURE),
                       S.ATTR_PROVENANCE: provenance(), "series": g2_ds.attrs.get("series"),
                       "stages": {"maps": os.path.abspath(maps), "g2": os.path.abspath(g2),
                                  "screen": os.path.abspath(screen),
                                  "drift": os.path.abspath(drift) if drift is not None else None},
                       **(attrs or {})})
    for ds in (fit, regions, artefacts):
        S.with_units(ds)
    groups = {"/": root, f"/{S.G2_GROUP}": g2_ds, f"/{S.FIT_GROUP}": fit, f"/{S.ARTEFACTS_GROUP}": artefacts,
              f"/{S.REGIONS_GROUP}": regions, f"/{S.DISTRIBUTIONS_GROUP}": distributions(root, regions)}
    if drift is not None:
        groups[f"/{S.DRIFT_GROUP}"] = open_checked(drift)
    S.validate_results(xr.DataTree.from_dict(groups))
    # the checkpoints' groups (the g2 curves are most of the bytes) are copied file by file, hard-linked where
    # possible: already compressed and checksummed, they are not decoded and encoded again
    sources = {f"/{S.G2_GROUP}": Path(g2), f"/{S.FIT_GROUP}": Path(maps),
               f"/{S.ARTEFACTS_GROUP}": Path(screen) / S.ARTEFACTS_GROUP, f"/{S.REGIONS_GROUP}": Path(screen) / S.REGIONS_GROUP}
    if drift is not None:
        sources[f"/{S.DRIFT_GROUP}"] = Path(drift)
    copied = {k: src for k, src in sources.items() if _copyable(src)}
    tree = xr.DataTree.from_dict({k: checksummed(v) for k, v in groups.items() if k not in copied})
    with atomic(output, overwrite=overwrite) as partial:  # metadata consolidated at the commit, after the copies
        tree.to_zarr(partial, mode="w", zarr_format=3, consolidated=False, write_empty_chunks=True)
        for name, src in copied.items():
            copy_group(src, Path(partial) / name.strip("/"))
    return Path(output)


def _copyable(store: Path) -> bool:
    """A finished stage checkpoint whose arrays all carry checksums and every chunk (what results.zarr promises)."""
    import json

    from ..store.integrity import ATTR_INTEGRITY, INTEGRITY

    try:
        meta = json.loads((store / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("node_type") == "group" and (meta.get("attributes") or {}).get(ATTR_INTEGRITY) == INTEGRITY


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link where the file system allows it (stores replace files, never rewrite them in place, so the
    checkpoint and the result can share them), else a copy."""
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def copy_group(src: Path, dst: Path) -> None:
    """Copy the Zarr group ``src`` (its arrays) to ``dst``: chunk files byte for byte (hard links where possible),
    metadata rewritten - the group's loses the consolidated copy (the target store consolidates everything) and the
    checkpoint's write key; every array named in :data:`ecm_dask.schema.UNITS` gets its units (as
    :func:`ecm_dask.schema.with_units` gives them to a dataset)."""
    import json
    import shutil

    def copy(a: str, b: str) -> None:
        if os.path.basename(a) != "zarr.json":
            return _link_or_copy(a, b)
        meta = json.loads(Path(a).read_text())  # a new file: the checkpoint's metadata stays as it is
        name = os.path.basename(os.path.dirname(b))
        if meta.get("node_type") == "array" and name in S.UNITS:
            meta.setdefault("attributes", {})[S.ATTR_UNITS] = S.UNITS[name]
        Path(b).write_text(json.dumps(meta, indent=2))

    meta = json.loads((src / "zarr.json").read_text())
    meta.pop("consolidated_metadata", None)
    (meta.get("attributes") or {}).pop(KEY_ATTR, None)
    dst.mkdir(parents=True, exist_ok=False)
    for child in sorted(src.iterdir()):
        if child.is_dir() and (child / "zarr.json").is_file():
            shutil.copytree(child, dst / child.name, copy_function=copy)
    (dst / "zarr.json").write_text(json.dumps(meta, indent=2))


def describe_results(path: str | os.PathLike) -> str:
    """``ecm-dask info`` of a results store: the map, pixels per status, per-region τ and β, the run."""
    import xarray as xr

    from ..store.info import _human, disk_usage
    from .report import region_summary

    root = xr.open_zarr(path)
    status = np.asarray(root[S.STATUS].values)
    codes, counts = np.unique(status, return_counts=True)
    cfg = root.attrs.get(S.ATTR_RUN_CONFIG) or {}
    g2 = cfg.get("g2") or {}
    lines = [f"{path}  (results of ecm-dask run, {_human(disk_usage(path))} on disk)",
             f"  maps       {', '.join(S.ROOT_VALUE_MAPS)} on (y: {root.sizes[S.Y]}, x: {root.sizes[S.X]})",
             "  status     " + ", ".join(f"{S.RESULT_STATUS.get(int(c), int(c))} {n}" for c, n in zip(codes, counts)),
             f"  series     {cfg.get('series', root.attrs.get('series'))}",
             f"  run        drift {'on' if cfg.get('drift', True) else 'off'}, g2 {g2.get('method', '?')} "
             f"{g2.get('normalization', '')}, pool {g2.get('pool', 1)}, bad frames {g2.get('bad_frames') or 'none'}",
             "  groups     /fit, /regions, /distributions, /artefacts, /g2" + (", /drift" if cfg.get("drift") else "")]
    summary = region_summary(path)
    return "\n".join([*lines, summary] if summary else lines)
