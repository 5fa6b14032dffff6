"""The report's series panel: mean intensity per frame I(t), suspect frames, counts per pixel and frame (the dose
seen by the camera), and a stationarity check per region (model-free τ of consecutive windows of the series).

Bounded memory at any size: one pass over the series (:func:`ecm_dask.store.series.scan_frames`, a run of stored
frames per task) gives I(t) and the time series of the pixels the stationarity check uses: the ok pixels of each
region on a sub-grid (every k-th row and column, at most ``max_pixels`` of them).
"""

from __future__ import annotations

import math

import numpy as np

from .. import schema as S

#: a frame whose mean intensity departs from the running median by more than this many robust sigmas is suspect
SUSPECT_SIGMAS = 6.0
#: bytes of sampled pixel time series per region, at most (the stationarity check of a long series samples fewer)
SAMPLE_BYTES = 256 << 20
RUNNING_MEDIAN_FRAMES = 21


def suspect_frames(mean_t: np.ndarray, sigmas: float = SUSPECT_SIGMAS) -> np.ndarray:
    """Frames whose mean intensity jumps away from its running median (beam blanking, glitches, dropped frames)."""
    from scipy.ndimage import median_filter

    m = np.asarray(mean_t, dtype=np.float64)
    if m.size < 5:
        return np.zeros(0, dtype=np.int64)
    base = median_filter(m, size=min(RUNNING_MEDIAN_FRAMES, m.size | 1), mode="nearest")
    dev = m - base
    mad = np.median(np.abs(dev - np.median(dev))) * 1.4826
    if not mad > 0:
        mad = max(float(np.std(dev)), 1e-12)
    return np.flatnonzero(~np.isfinite(m) | (np.abs(dev) > sigmas * mad))


def dose(mean_counts: float, n_frames: int, *, counts_per_electron: float, frame_time_s: float,
         pixel_size_nm: float) -> dict:
    """Electrons reaching the camera from the mean counts per pixel per frame and the camera gain: per pixel and
    frame, per square angstrom per second (the dose rate) and per square angstrom over the whole series.  In
    dark field this is the part of the incident dose that passes the objective aperture, not the incident dose."""
    e_px = mean_counts / counts_per_electron
    area_a2 = (10.0 * pixel_size_nm) ** 2
    return {"counts_per_electron": counts_per_electron, "pixel_area_A2": area_a2, "electrons_per_pixel_per_frame": e_px,
            "dose_rate_e_per_A2_per_s": e_px / area_a2 / frame_time_s,
            "total_dose_e_per_A2": e_px * n_frames / area_a2}


def _series_pixels(intensity, maps, sub: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) in the series of the map pixels set in ``sub`` (the map's sub-grid of stride ``k``), matched by
    coordinate: the same pixel for a map of the series' grid, the pixel nearest the centre of a pooled cell (of two
    equally near, the later one)."""
    rows, cols = (i * k for i in np.nonzero(sub))
    return tuple(intensity.get_index(d).get_indexer(maps[d].values[i], method="nearest")
                 for d, i in ((S.Y, rows), (S.X, cols)))


def series_panel(series, tree, *, n_windows: int = 4, max_pixels: int = 20_000, max_bytes: int = SAMPLE_BYTES,
                 counts_per_electron: float | None = None) -> dict:
    """Numbers of the panel (JSON-ready): I(t), suspect frames, counts per pixel per frame, the dose in electrons
    (with the camera gain: ``counts_per_electron`` or the series attribute), stationarity per region.

    Each region's stationarity check samples at most ``max_pixels`` of its ok pixels, and fewer where their time
    series would take more than ``max_bytes`` (a long series; never fewer than 100)."""
    from ..kernels.stationarity import stationarity_check
    from ..store.series import scan_frames
    from .ingest import check_gain

    intensity = series[S.INTENSITY]
    n_t = intensity.sizes[S.TIME]
    maps = tree.to_dataset().transpose(S.Y, S.X)
    regions: dict[int, tuple[np.ndarray, int]] = {}  # region code -> (its sub-grid of ok pixels, stride)
    max_pixels = max(100, min(int(max_pixels), int(max_bytes) // max(1, n_t * np.dtype(intensity.dtype).itemsize)))
    if S.REGIONS_GROUP in tree.children and n_t >= 16 * n_windows:
        region = np.asarray(tree[S.REGIONS_GROUP].to_dataset()[S.REGION].transpose(S.Y, S.X).values)
        ok = np.asarray(maps[S.STATUS].values) == 0
        for code in (S.REGION_BULK, S.REGION_SURFACE):
            mask = ok & (region == code)
            n = int(mask.sum())
            if n >= 10:
                k = max(1, math.ceil(math.sqrt(n / max_pixels)))
                regions[code] = (mask[::k, ::k], k)
    # one pass over the series: I(t) and the time series of the sampled pixels of each region (only those pixels:
    # a whole strided sub-grid would be the whole series where the stride is 1)
    pixels = [_series_pixels(intensity, maps, sub, k) for sub, k in regions.values()]
    mean_t, sampled = scan_frames(intensity, pixels)
    frame_time = float(series.attrs.get(S.ATTR_FRAME_TIME, 1.0))
    bad = suspect_frames(mean_t)
    out: dict = {"time_s": (np.arange(n_t) * frame_time).tolist(), "mean_intensity": mean_t.tolist(),
                 "suspect_frames": bad.tolist(), "counts_per_pixel_per_frame": float(np.nanmean(mean_t)),
                 "stationarity": {}}
    gain = counts_per_electron if counts_per_electron is not None else series.attrs.get(S.ATTR_COUNTS_PER_ELECTRON)
    if gain is not None and S.ATTR_PIXEL_SIZE in series.attrs:
        out["dose"] = dose(out["counts_per_pixel_per_frame"], n_t, counts_per_electron=check_gain(gain),
                           frame_time_s=frame_time, pixel_size_nm=float(series.attrs[S.ATTR_PIXEL_SIZE]))
    for (code, (sub, k)), block in zip(regions.items(), sampled):
        r = stationarity_check(block, n_windows, frame_time=frame_time)  # (frames, pixels) in row-major order
        out["stationarity"][S.REGION_NAMES[code]] = {
            "pixels": int(sub.sum()), "stride": k, "window_mid_s": np.asarray(r["t_mid"]).tolist(),
            "tau_s": [None if not np.isfinite(v) else float(v) for v in r["tau"]],
            "tau_err_s": [None if not np.isfinite(v) else float(v) for v in r["tau_err"]],
            "slope_log10tau_per_1000s": float(r["slope"]), "slope_err": float(r["slope_err"]),
            "ratio_last_first": float(r["ratio"]), "drifting": bool(r["drifting"])}
    return out


def plot_series_panel(panel: dict):
    """I(t) with the suspect frames marked, and the windows' τ per region with their errors."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.2), layout="constrained")
    ax, ax2 = fig.subplots(2, 1)
    t, m = np.asarray(panel["time_s"]), np.asarray(panel["mean_intensity"])
    ax.plot(t, m, lw=0.8, gid="mean")
    bad = np.asarray(panel["suspect_frames"], dtype=int)
    if bad.size:
        ax.plot(t[bad], m[bad], "rx", label=f"suspect frames ({bad.size})", gid="suspect")
        ax.legend(fontsize=8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mean counts per pixel")
    ax.set_title("mean intensity per frame")
    d = panel.get("dose")
    if d:  # the same curve in electrons per square angstrom per frame
        per_count = 1.0 / (d["counts_per_electron"] * d["pixel_area_A2"])
        sec = ax.secondary_yaxis("right", functions=(lambda c: c * per_count, lambda e: e / per_count))
        sec.set_ylabel("e⁻/Å² per frame (camera)")
    for name, st in panel["stationarity"].items():
        tau = np.array([np.nan if v is None else v for v in st["tau_s"]])
        err = np.array([np.nan if v is None else v for v in st["tau_err_s"]])
        bars = ax2.errorbar(st["window_mid_s"], tau, yerr=err, marker="o", capsize=3,
                            label=f"{name}: last/first {st['ratio_last_first']:.2f}"
                            + (" (drifting)" if st["drifting"] else ""))
        bars.lines[0].set_gid(f"tau:{name}")
    if panel["stationarity"]:
        ax2.set_yscale("log")
        ax2.legend(fontsize=8)
    ax2.set_xlabel("window mid-time (s)")
    ax2.set_ylabel("model-free τ (s)")
    ax2.set_title("stationarity: τ of consecutive windows of the series, per region")
    return fig


def panel_rows(panel: dict) -> list[tuple]:
    rows = [("quantity", "value"), ("mean counts per pixel per frame", f"{panel['counts_per_pixel_per_frame']:.4g}"),
            ("suspect frames (mean intensity > 6 robust sigma off its running median)",
             ", ".join(map(str, panel["suspect_frames"][:30])) or "none")]
    d = panel.get("dose")
    if d:
        rows += [("electrons per pixel per frame at the camera (gain "
                  f"{d['counts_per_electron']:g} counts/e⁻)", f"{d['electrons_per_pixel_per_frame']:.4g}"),
                 ("dose rate at the camera (e⁻/Å²/s)", f"{d['dose_rate_e_per_A2_per_s']:.4g}"),
                 ("dose over the series at the camera (e⁻/Å²)", f"{d['total_dose_e_per_A2']:.4g}")]
    else:
        rows.append(("dose in electrons", "unknown: no camera gain (ingest --counts-per-electron, or report "
                                          "--counts-per-electron)"))
    for name, st in panel["stationarity"].items():
        taus = ", ".join("n/a" if v is None else f"{v:.3g}" for v in st["tau_s"])
        rows.append((f"{name}: model-free τ (s) of {len(st['tau_s'])} windows ({st['pixels']} px)", taus))
        rows.append((f"{name}: slope of log10 τ per 1000 s", f"{st['slope_log10tau_per_1000s']:.3g} ± "
                     f"{st['slope_err']:.2g}" + ("  DRIFTING" if st["drifting"] else "  (stationary)")))
    return rows
