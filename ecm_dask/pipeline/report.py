"""``ecm-dask report``: figures and a summary page (Markdown and HTML) of a ``results.zarr``.

The report folder holds ``frame.png`` (mean image with a scale bar), ``maps.png`` (τ and β), ``tau.png``,
``beta.png``, ``g2_fits.png`` (a few pixels with their KWW fits), ``histograms.png``, ``drift.png`` (when the
run estimated drift), ``report.md``, ``report.html`` (images by relative path) and ``summary.json`` (the
numbers of the summary).  Everything is written into a temporary folder next to the output first; an
interrupted report leaves the output as it was.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import schema as S
from ..errors import InputError, StoreError

FIGURES = ("frame.png", "maps.png", "tau.png", "beta.png", "regions.png", "g2_fits.png", "histograms.png",
           "drift.png", "series.png")
SUMMARIES = ("summary.json", "report.md", "report.html", "explore.html")
#: frames averaged for frame.png (the first ones: they are read from the first shard only)
MEAN_FRAMES = 100
#: quantiles of τ (over ok pixels) of the pixels shown in g2_fits.png by default
PIXEL_QUANTILES = (0.1, 0.37, 0.63, 0.9)


def open_results(path: str | os.PathLike):
    """Open a ``results.zarr`` DataTree, or raise :class:`InputError` naming the path and what is wrong."""
    import xarray as xr

    ROOT_MAPS = S.ROOT_MAPS
    path = Path(path)
    if not path.exists():
        raise InputError(f"results store {path} does not exist")
    if not (path / "zarr.json").is_file():
        raise InputError(f"{path} is not a results store (not a Zarr v3 store: no zarr.json); "
                         "make one with `ecm-dask run SERIES -o RESULTS.zarr`")
    try:
        tree = xr.open_datatree(path, engine="zarr")
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one line naming the store
        raise InputError(f"{path} cannot be opened as a results store: {exc}") from None
    root = tree.to_dataset()
    missing = [v for v in ROOT_MAPS if v not in root]
    if missing:
        hint = (" (it is a series store: run `ecm-dask run` on it first)" if S.INTENSITY in root
                else "; make one with `ecm-dask run SERIES -o RESULTS.zarr`")
        raise InputError(f"{path} is not an ecm_dask results store: no map(s) {missing} at its root{hint}")
    return tree


def choose_pixels(maps, quantiles=PIXEL_QUANTILES) -> list[tuple[int, int]]:
    """Distinct ok pixels (row, column) whose τ is nearest to the given quantiles of τ over the ok pixels
    (over the ok pixels without quality flags, when there are enough of them)."""
    from ..kernels.kww import FIT_OK

    tau = np.asarray(maps[S.TAU].transpose(S.Y, S.X).values, dtype=np.float64)
    ok = (np.asarray(maps[S.STATUS].transpose(S.Y, S.X).values) == FIT_OK) & np.isfinite(tau) & (tau > 0)
    if S.QUALITY in maps:  # prefer pixels the reliability rules accept (not e.g. drift-swept wire edges)
        reliable = ok & (np.asarray(maps[S.QUALITY].transpose(S.Y, S.X).values) == 0)
        if np.count_nonzero(reliable) >= len(quantiles):
            ok = reliable
    rows, cols = np.nonzero(ok)
    if rows.size == 0:
        return []
    log_tau = np.log10(tau[rows, cols])
    chosen: list[tuple[int, int]] = []
    for q in quantiles:
        order = np.argsort(np.abs(log_tau - np.quantile(log_tau, q)), kind="stable")
        for k in order:
            pix = (int(rows[k]), int(cols[k]))
            if pix not in chosen:
                chosen.append(pix)
                break
    return chosen


def _counts(codes: np.ndarray, names: dict[int, str]) -> list[dict[str, Any]]:
    values, n = np.unique(codes, return_counts=True)
    found = dict(zip(values.tolist(), n.tolist()))
    rows = [{"code": int(c), "name": name, "pixels": int(found.pop(int(c), 0))} for c, name in names.items()]
    rows += [{"code": int(c), "name": "unknown code", "pixels": int(k)} for c, k in found.items()]
    total = max(int(codes.size), 1)
    for r in rows:
        r["fraction"] = r["pixels"] / total
    return rows


def _stats(values: np.ndarray) -> dict[str, float | int | None]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"n": 0, "median": None, "q25": None, "q75": None, "iqr": None}
    q25, med, q75 = (float(x) for x in np.percentile(v, [25, 50, 75]))
    return {"n": int(v.size), "median": med, "q25": q25, "q75": q75, "iqr": q75 - q25}


def summarize(tree, *, results_path, series=None, series_note: str | None = None) -> dict[str, Any]:
    """The numbers of the report: input and calibration, run configuration, pixels per status code, median and
    IQR of τ and β over the ok pixels, per region (with bootstrap intervals) and surface vs bulk, fraction of ok
    pixels with quality flags, drift RMS.  JSON-serialisable."""
    from ..kernels.kww import FIT_OK
    from ..ops.fit import QUALITY_FLAGS

    maps = tree.to_dataset()
    g2 = tree[S.G2_GROUP].to_dataset() if S.G2_GROUP in tree.children else None
    g2_attrs = dict(g2.attrs) if g2 is not None else {}
    status = np.asarray(maps[S.STATUS].values).ravel()
    ok = status == FIT_OK
    tau = np.asarray(maps[S.TAU].values, dtype=np.float64).ravel()
    beta = np.asarray(maps[S.BETA].values, dtype=np.float64).ravel()
    y, x = (np.asarray(maps[d].values, dtype=np.float64) for d in (S.Y, S.X))
    grid_nm = float(np.median(np.diff(x))) if x.size > 1 else None
    pool = int(g2_attrs.get("pool", 1) or 1)
    if series is not None:
        a = series.attrs
        calib = {"frame_time_s": float(a[S.ATTR_FRAME_TIME]), "pixel_size_nm": float(a[S.ATTR_PIXEL_SIZE]),
                 "n_frames": int(series.sizes[S.TIME]), "material": a.get(S.ATTR_MATERIAL),
                 "temperature_C": a.get(S.ATTR_TEMPERATURE), "instrument": a.get(S.ATTR_INSTRUMENT)}
    else:  # from the results alone
        ft = g2_attrs.get(S.ATTR_FRAME_TIME, maps.attrs.get(S.ATTR_FRAME_TIME))
        calib = {"frame_time_s": float(ft) if ft is not None else None,
                 "pixel_size_nm": grid_nm / pool if grid_nm else None,
                 "n_frames": int(g2_attrs["n_frames"]) if "n_frames" in g2_attrs else None,
                 "material": None, "temperature_C": None, "instrument": None}
    out: dict[str, Any] = {
        "results": str(Path(results_path).resolve()),
        "series": series_note,
        **calib,
        "map_shape": [int(y.size), int(x.size)],
        "map_grid_nm": grid_nm,
        "run_config": maps.attrs.get(S.ATTR_RUN_CONFIG),
        "g2": {k: g2_attrs.get(k) for k in ("estimator", "normalization", "points_per_octave", "n_bad_frames",
                                            "pool", "pool_mode", "shift_mode") if k in g2_attrs},
        "created": (maps.attrs.get(S.ATTR_PROVENANCE) or {}).get("created"),
        "ecm_dask_version": ((maps.attrs.get(S.ATTR_PROVENANCE) or {}).get("versions") or {}).get("ecm_dask"),
        "status": _counts(status, S.RESULT_STATUS),
        "n_pixels": int(status.size),
        "n_ok": int(ok.sum()),
        "tau_s": _stats(tau[ok]),
        "beta": _stats(beta[ok]),
    }
    if g2 is not None and S.STATUS in g2:
        out["pixel_status"] = _counts(np.asarray(g2[S.STATUS].values).ravel(),
                                      S.flag_names(g2[S.STATUS].attrs, "flag_values"))
    if S.QUALITY in maps:
        quality = np.asarray(maps[S.QUALITY].values).ravel()[ok].astype(np.int64)
        flags = S.flag_names(maps[S.QUALITY].attrs, "flag_masks") or {k: v.replace("_", " ")
                                                                    for k, v in QUALITY_FLAGS.items()}
        n = max(int(ok.sum()), 1)
        out["quality_of_ok_pixels"] = {"any flag": float(np.count_nonzero(quality) / n),
                                       **{name: float(np.count_nonzero(quality & bit) / n)
                                          for bit, name in flags.items()}}
    out.update(region_numbers(tree))
    if S.DRIFT_GROUP in tree.children:
        drift = tree[S.DRIFT_GROUP].to_dataset()
        shift = np.asarray(drift[S.SHIFT].values, dtype=np.float64)
        rms = np.sqrt(np.nanmean(shift ** 2, axis=0))
        px = calib["pixel_size_nm"]
        out["drift"] = {"rms_px": {S.Y: float(rms[0]), S.X: float(rms[1])},
                        "rms_nm": {S.Y: float(rms[0] * px), S.X: float(rms[1] * px)} if px else None,
                        "max_abs_px": float(np.nanmax(np.abs(shift))) if shift.size else None,
                        "outlier_frames": int(np.count_nonzero(drift[S.OUTLIER].values)) if S.OUTLIER in drift
                        else None,
                        "reference_roi_px": drift.attrs.get(S.ATTR_REFERENCE_ROI_PX)}
    return out


def region_numbers(tree) -> dict[str, Any]:
    """Per region: pixels, pixels per status, median τ and β with their intervals (``/distributions``), and the
    surface/bulk ratio of median τ with its interval and p-value.  Empty if the store has no regions."""
    if S.REGIONS_GROUP not in tree.children or S.DISTRIBUTIONS_GROUP not in tree.children:
        return {}
    region = np.asarray(tree[S.REGIONS_GROUP].to_dataset()[S.REGION].values)
    status = np.asarray(tree.to_dataset()[S.STATUS].values)
    dist = tree[S.DISTRIBUTIONS_GROUP].to_dataset()
    rows = []
    for code, name in S.REGION_NAMES.items():
        sel = region == code
        row: dict[str, Any] = {"region": name, "pixels": int(sel.sum()),
                               "status": {S.RESULT_STATUS[c]: int(np.count_nonzero(status[sel] == c))
                                          for c in S.RESULT_STATUS if np.any(status[sel] == c)}}
        if name in dist[S.REGION].values:
            d = dist.sel({S.REGION: name})
            row["ok"] = int(d["n"])
            row["tau_median_s"] = [float(v) for v in d["tau_median"].values]
            row["log10_tau_iqr"] = float(d[S.LOG10_TAU].sel({S.STATISTIC: "iqr", S.ESTIMATE: "value"}))
            row["beta_median"] = [float(v) for v in d[S.BETA].sel({S.STATISTIC: "median"}).values]
            row["beta_iqr"] = float(d[S.BETA].sel({S.STATISTIC: "iqr", S.ESTIMATE: "value"}))
        rows.append(row)
    out: dict[str, Any] = {"regions": rows, "interval": f"{dist.attrs.get('ci', 0.95):.0%} "
                                                          f"{dist.attrs.get('interval', 'bootstrap')}"}
    if "surface_bulk_value" in dist:
        c = dist.sel({S.QUANTITY: "tau_ratio"})
        w = dist.sel({S.QUANTITY: "log10_tau_width_diff"})
        out["surface_bulk"] = {"tau_ratio": float(c["surface_bulk_value"]),
                               "tau_ratio_ci": [float(c["surface_bulk_ci_low"]), float(c["surface_bulk_ci_high"])],
                               "p_value": float(c["surface_bulk_p_value"]),
                               "log10_tau_width_diff": float(w["surface_bulk_value"]),
                               "log10_tau_width_diff_ci": [float(w["surface_bulk_ci_low"]),
                                                           float(w["surface_bulk_ci_high"])],
                               "width_p_value": float(w["surface_bulk_p_value"])}
    else:
        out["surface_bulk"] = {"note": dist.attrs.get("comparison", "not compared")}
    return out


def region_lines(numbers: dict[str, Any]) -> list[str]:
    """Plain-text lines of :func:`region_numbers` (the CLI and the demo print them)."""
    lines = []
    for r in numbers.get("regions", []):
        if r["region"] == "vacuum" or not r["pixels"]:
            continue
        st = ", ".join(f"{k} {v}" for k, v in r["status"].items())
        if r.get("ok"):
            t, b = r["tau_median_s"], r["beta_median"]
            lines.append(f"  {r['region']:8s} {r.get('ok', 0):6d} ok of {r['pixels']:6d} px: median tau {t[0]:.3g} s "
                         f"[{t[1]:.3g}, {t[2]:.3g}], beta {b[0]:.2f} [{b[1]:.2f}, {b[2]:.2f}]  ({st})")
        else:
            lines.append(f"  {r['region']:8s}      0 ok of {r['pixels']:6d} px  ({st})")
    sb = numbers.get("surface_bulk", {})
    if "tau_ratio" in sb:
        lo, hi = sb["tau_ratio_ci"]
        lines.append(f"  surface/bulk median tau ratio {sb['tau_ratio']:.3f} [{lo:.3f}, {hi:.3f}] "
                     f"({numbers['interval']}), permutation p = {sb['p_value']:.3g}")
    elif sb:
        lines.append(f"  {sb.get('note')}")
    return lines


def region_summary(results_path) -> str:
    """Per-region lines of a results store (median τ, β with intervals; surface/bulk ratio)."""
    tree = open_results(results_path)
    lines = region_lines(region_numbers(tree))
    return "\n".join(["per region (ok pixels; intervals from /distributions):", *lines]) if lines else ""


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _sections(summary: dict[str, Any], figures: dict[str, str]) -> list[tuple[str, Any]]:
    """The page as (heading, content): content is a list of table rows (first row = header), a code block
    (str) or a list of (figure file, caption)."""
    s = summary
    inputs = [("item", "value"), ("results", s["results"]), ("series", s["series"] or "n/a"),
              ("material", _fmt(s["material"])), ("temperature (degC)", _fmt(s["temperature_C"])),
              ("frames", _fmt(s["n_frames"])), ("frame time (s)", _fmt(s["frame_time_s"])),
              ("pixel size (nm)", _fmt(s["pixel_size_nm"])),
              ("map", f"{s['map_shape'][0]} x {s['map_shape'][1]} pixels, grid {_fmt(s['map_grid_nm'])} nm"),
              ("g2", ", ".join(f"{k} {v}" for k, v in s["g2"].items()) or "n/a"),
              ("created", _fmt(s["created"])), ("ecm_dask", _fmt(s["ecm_dask_version"]))]
    status = [("code", "pixel status", "pixels", "fraction")]
    status += [(str(r["code"]), r["name"], str(r["pixels"]), f"{r['fraction']:.3f}") for r in s["status"]]
    stats = [("quantity (ok pixels)", "n", "median", "IQR", "25 %", "75 %")]
    for name, st in (("tau (s)", s["tau_s"]), ("beta", s["beta"])):
        stats.append((name, str(st["n"]), _fmt(st["median"]), _fmt(st["iqr"]), _fmt(st["q25"]), _fmt(st["q75"])))
    out: list[tuple[str, Any]] = [("Input", inputs), ("Pixel status", status), ("τ and β", stats)]
    if s.get("regions"):
        rows = [("region", "pixels", "ok", "median τ (s) [CI]", "IQR log10 τ", "median β [CI]", "IQR β",
                 "status of its pixels")]
        for r in s["regions"]:
            t, b = r.get("tau_median_s"), r.get("beta_median")
            ci = (lambda v, d: f"{v[0]:.{d}g} [{v[1]:.{d}g}, {v[2]:.{d}g}]" if v and np.isfinite(v[0]) else "n/a")
            rows.append((r["region"], str(r["pixels"]), str(r.get("ok", "")), ci(t, 3), _fmt(r.get("log10_tau_iqr"), 3),
                         ci(b, 3), _fmt(r.get("beta_iqr"), 3), ", ".join(f"{k} {v}" for k, v in r["status"].items())))
        out.append((f"Regions ({s['interval']})", rows))
        sb = s["surface_bulk"]
        if "tau_ratio" in sb:
            out.append(("Surface vs bulk", [("quantity", "value", "CI", "permutation p"),
                                            ("median τ surface / bulk", _fmt(sb["tau_ratio"]),
                                             f"[{sb['tau_ratio_ci'][0]:.4g}, {sb['tau_ratio_ci'][1]:.4g}]",
                                             _fmt(sb["p_value"], 3)),
                                            ("IQR of log10 τ, surface - bulk", _fmt(sb["log10_tau_width_diff"]),
                                             f"[{sb['log10_tau_width_diff_ci'][0]:.3g}, "
                                             f"{sb['log10_tau_width_diff_ci'][1]:.3g}]", _fmt(sb["width_p_value"], 3))]))
        else:
            out.append(("Surface vs bulk", [("note",), (sb.get("note", "not compared"),)]))
    if "quality_of_ok_pixels" in s:
        out.append(("Quality flags (fraction of ok pixels)",
                    [("flag", "fraction")] + [(k, f"{v:.3f}") for k, v in s["quality_of_ok_pixels"].items()]))
    if "pixel_status" in s:
        out.append(("Pixel status (g2)", [("code", "pixel status", "pixels", "fraction")]
                    + [(str(r["code"]), r["name"], str(r["pixels"]), f"{r['fraction']:.3f}")
                       for r in s["pixel_status"]]))
    if "drift" in s:
        d = s["drift"]
        rows = [("axis", "RMS (pixel)", "RMS (nm)")]
        for ax in (S.Y, S.X):
            rows.append((ax, _fmt(d["rms_px"][ax]), _fmt(d["rms_nm"][ax]) if d["rms_nm"] else "n/a"))
        rows.append(("max abs", _fmt(d["max_abs_px"]), ""))
        rows.append(("replaced frames", _fmt(d["outlier_frames"]), ""))
        rows.append(("reference ROI (pixels y0,y1,x0,x1)", _fmt(d["reference_roi_px"]), ""))
        out.append(("Drift", rows))
    if "series_panel" in s:
        from .series_panel import panel_rows

        out.append(("Series and stationarity", panel_rows(s["series_panel"])))
    if s.get("g2_pixels"):
        out.append(("Pixels in g2_fits.png", [("y (nm)", "x (nm)", "tau (s)", "beta", "fit status")]
                    + [(_fmt(p["y_nm"]), _fmt(p["x_nm"]), _fmt(p["tau_s"]), _fmt(p["beta"]), p["status"])
                       for p in s["g2_pixels"]]))
    out.append(("Figures", list(figures.items())))
    out.append(("Run configuration", json.dumps(s["run_config"], indent=2)))
    return out


def render_markdown(summary: dict[str, Any], figures: dict[str, str]) -> str:
    """The summary page as Markdown (figures by relative path)."""
    lines = ["# ecm_dask report", ""]
    for heading, content in _sections(summary, figures):
        lines += [f"## {heading}", ""]
        if isinstance(content, str):
            lines += ["```json", content, "```"]
        elif heading == "Figures":
            for name, caption in content:
                lines += [f"**{caption}**", "", f"![{caption}]({name})", ""]
        else:
            lines.append("| " + " | ".join(content[0]) + " |")
            lines.append("|" + "---|" * len(content[0]))
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in content[1:]]
        lines.append("")
    return "\n".join(lines)


def render_html(summary: dict[str, Any], figures: dict[str, str]) -> str:
    """The summary page as a self-contained HTML file (images by relative path)."""
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>ecm_dask report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%}</style>",
             "</head><body>", "<h1>ecm_dask report</h1>",
             "<p><a href='explore.html'>explore.html</a>: click a pixel of the maps to see its g2 curve and fit</p>"]
    for heading, content in _sections(summary, figures):
        parts.append(f"<h2>{e(heading)}</h2>")
        if isinstance(content, str):
            parts.append(f"<pre>{e(content)}</pre>")
        elif heading == "Figures":
            for name, caption in content:
                parts.append(f"<figure><img src='{e(name)}' alt='{e(caption)}'><figcaption>{e(caption)}"
                             "</figcaption></figure>")
        else:
            parts.append("<table><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in content[0]) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in content[1:]]
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _open_series_for_report(series_path, explicit: bool):
    """(dataset or None, note for the summary)."""
    from ..store.series import open_series

    if series_path is None:
        return None, "not recorded in the run configuration"
    p = Path(series_path)
    if not p.exists():
        if explicit:
            raise InputError(f"series store {p} does not exist (--series)")
        return None, f"{p} not found: frame.png shows the mean intensity from /g2 instead"
    try:
        return open_series(p), str(p.resolve())
    except Exception as exc:  # EcmError or a reader failure: the report goes on without the series
        if explicit:
            raise
        return None, f"{p} could not be opened ({exc}): frame.png shows the mean intensity from /g2 instead"


def write_report(results_path: str | os.PathLike, out_dir: str | os.PathLike, *, pixels=None,
                 series_path: str | os.PathLike | None = None, mean_frames: int = MEAN_FRAMES,
                 counts_per_electron: float | None = None) -> Path:
    """Figures and a summary page of a results store.

    Parameters
    ----------
    results_path : a ``results.zarr`` written by :func:`ecm_dask.pipeline.run.run_pipeline`
    out_dir : folder to write (created; files of an earlier report there are replaced)
    pixels : (y, x) pairs in nm of the pixels shown in ``g2_fits.png``; default: ok pixels whose τ is at
        the 10, 37, 63 and 90 % quantiles (:func:`choose_pixels`)
    series_path : the series store, for ``frame.png`` (mean of its first ``mean_frames`` frames) and the
        calibration; default: the one in the run configuration.  If that one is missing, ``frame.png`` shows
        the mean intensity from ``/g2`` and the summary says so; a missing explicit ``series_path`` is an error.
    mean_frames : frames averaged for ``frame.png``
    counts_per_electron : camera gain for the dose in electrons (default: the series attribute, if any)

    Returns
    -------
    Path of ``report.md`` in ``out_dir``.
    """
    from .. import plot as P
    from ..store.paths import check_apart

    check_apart(out_dir, [results_path], what="report folder")
    tree = open_results(results_path)
    maps = tree.to_dataset()
    explicit = series_path is not None
    if not explicit:
        series_path = (maps.attrs.get(S.ATTR_RUN_CONFIG) or {}).get("series")
    if series_path is not None:
        check_apart(out_dir, [series_path], what="report folder")
    series, series_note = _open_series_for_report(series_path, explicit)
    g2 = tree[S.G2_GROUP].to_dataset() if S.G2_GROUP in tree.children else None

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} exists and is not a folder; choose another output for the report")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by a killed report
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the report folder gets the usual permissions
        figures, shown = _write_figures(P, tmp, tree, maps, g2, series, pixels, mean_frames)
        summary = summarize(tree, results_path=results_path, series=series, series_note=series_note)
        if series is not None:  # I(t), suspect frames, counts, stationarity per region
            from .series_panel import plot_series_panel, series_panel

            panel = series_panel(series, tree, counts_per_electron=counts_per_electron)
            plot_series_panel(panel).savefig(tmp / "series.png", dpi=110)
            figures["series.png"] = ("mean intensity per frame (suspect frames marked) and the model-free τ of "
                                     "consecutive windows of the series per region (stationarity)")
            summary["series_panel"] = {k: v for k, v in panel.items() if k not in ("time_s", "mean_intensity")}
        summary["figures"] = figures
        summary["g2_pixels"] = [_pixel_row(maps, iy, ix) for iy, ix in shown]
        if "frame.png" not in figures:
            summary["frame_figure"] = "skipped: neither the series nor /g2 mean_intensity is available"
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
        (tmp / "report.md").write_text(render_markdown(summary, figures), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(summary, figures), encoding="utf-8")
        from .explore import write_explore

        write_explore(results_path, tmp / "explore.html")
        _publish(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "report.md"


def _pixel_row(maps, iy: int, ix: int) -> dict[str, Any]:
    code = int(maps[S.STATUS].isel({S.Y: iy, S.X: ix}))
    return {"row": iy, "column": ix, "y_nm": float(maps[S.Y][iy]), "x_nm": float(maps[S.X][ix]),
            "tau_s": float(maps[S.TAU].isel({S.Y: iy, S.X: ix})),
            "beta": float(maps[S.BETA].isel({S.Y: iy, S.X: ix})), "status": S.RESULT_STATUS.get(code, str(code))}


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _write_figures(P, tmp: Path, tree, maps, g2, series, pixels, mean_frames: int):
    """Draw every figure into ``tmp``; return {file name: caption} of those written and the (row, column) of
    the pixels in g2_fits.png."""
    figures: dict[str, str] = {}
    shown: list[tuple[int, int]] = []

    def save(fig, name, caption):  # Figure objects (no pyplot state) are freed with their last reference
        fig.savefig(tmp / name, dpi=120)
        figures[name] = caption

    if series is not None:
        n = int(min(mean_frames, series.sizes[S.TIME]))
        image = series[S.INTENSITY].isel({S.TIME: slice(0, n)}).astype("float64").mean(S.TIME).compute()
        image.attrs = {S.ATTR_UNITS: S.UNITS[S.INTENSITY]}
        image.name = S.INTENSITY
        save(P.plot_frame(image, title=f"mean of frames 0-{n - 1} of the series"), "frame.png",
             f"mean of the first {n} frames (raw, before drift correction)")
    elif g2 is not None and S.MEAN_INTENSITY in g2:
        image = g2[S.MEAN_INTENSITY].load()
        save(P.plot_frame(image, title="mean intensity (from /g2; the series store is not available)"), "frame.png",
             "mean intensity over the used frames (from /g2)")
    save(P.plot_maps(maps), "maps.png", "τ (log colours) and β, pixels whose status is ok")
    for name in (S.TAU, S.BETA):
        save(P.plot_map(P.ok_only(maps, name)), f"{name}.png", f"{name} map, pixels whose status is ok")
    regions = tree[S.REGIONS_GROUP].to_dataset() if S.REGIONS_GROUP in tree.children else None
    if regions is not None:
        save(P.plot_regions(regions, maps[S.STATUS]), "regions.png",
             "regions (vacuum, bulk, surface, crystal) and the status of every pixel (drift edges, static, ...)")
    if g2 is not None:
        fit = tree[S.FIT_GROUP].to_dataset() if S.FIT_GROUP in tree.children else maps
        fitted = fit.assign({S.STATUS: maps[S.STATUS]})  # the raw fit, labelled with the result status
        chosen = (choose_pixels(maps) if pixels is None
                  else [P.pixel_index(maps, float(y), float(x), "nm") for y, x in pixels])
        if chosen:
            save(P.plot_g2_fits(g2, fitted, chosen, units="pixel"), "g2_fits.png",
                 "g2 of a few pixels with their KWW fits")
        shown.extend(chosen)
    overlay = None if regions is None else {S.REGION_NAMES[c]: regions[S.REGION] == c
                                            for c in (S.REGION_BULK, S.REGION_SURFACE)}
    save(P.plot_histograms(maps, regions=overlay), "histograms.png",
         "distributions of log10 τ and β over the ok pixels, bulk and surface overlaid (dotted: medians)")
    if S.DRIFT_GROUP in tree.children:
        save(P.plot_drift(tree[S.DRIFT_GROUP].to_dataset()), "drift.png", "drift trace")
    return figures, shown


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished report into place: rename the folder if ``out`` is new, else replace file by file
    (figures first, the summary pages last) and remove report figures an earlier report left that this one
    does not have."""
    if not out.exists():
        os.replace(tmp, out)
        return
    for name in FIGURES:
        if (tmp / name).exists():
            os.replace(tmp / name, out / name)
        elif (out / name).is_file() and (out / "report.md").is_file():
            (out / name).unlink()
    for name in SUMMARIES:
        os.replace(tmp / name, out / name)
