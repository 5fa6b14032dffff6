"""The live page of ``ecm-dask watch``: a folder (``<output>.live/page``) with ``index.html``, the figures of the
last update and ``status.json``, rewritten at every update (each file atomically), and an optional web server
bound to the loopback interface only.  The page asks for ``status.json`` every two seconds and, when the update
number changes, replaces the text and reloads the figures; without a server it can be opened as a file (then it
shows the state it was written with)."""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path

import numpy as np

from .. import schema as S
from ..store.direct import write_file  # atomic: a temporary name, then one rename

REFRESH_MS = 2000


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    write_file(path, buf.getvalue())


def figures(folder: Path, results_path, drift_path=None) -> list[str]:
    """τ map (ok pixels), per-region histograms and the drift trace of a results store, as PNGs in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import xarray as xr

    from ..plot import ok_only, plot_drift, plot_histograms, plot_map

    tree = xr.open_datatree(results_path, engine="zarr")
    maps = tree.to_dataset()
    names = []
    tau = ok_only(maps, S.TAU)
    if np.isfinite(tau.values).any():
        _save(plot_map(tau, title="tau (fit ok)"), folder / "tau.png")
        names.append("tau.png")
    regions = tree[S.REGIONS_GROUP].to_dataset()[S.REGION] if S.REGIONS_GROUP in tree else None
    if (maps[S.STATUS].values == 0).any():
        _save(plot_histograms(maps, regions=regions), folder / "histograms.png")
        names.append("histograms.png")
    if drift_path is not None:
        _save(plot_drift(xr.open_zarr(drift_path)), folder / "drift.png")
        names.append("drift.png")
    return names


def _status_payload(run, update: int, figs: list[str]) -> dict:
    v = run.verdicts
    rows = []
    for name in ("bulk", "surface"):
        if name in v and "median_tau_s" in v[name]:
            r = v[name]
            rows.append({"region": name, "pixels": r["ok_pixels"], "median_tau_s": r["median_tau_s"],
                         "long_enough": r["fraction_long_enough"], "frame_time_ok": r["fraction_frame_time_ok"],
                         "seconds_to_go": r["seconds_to_go"]})
    words = [v[k]["verdict"] for k in ("bulk", "surface", "drift", "stationarity") if k in v]
    n = run.published_frames  # the frames the maps were made from (more may have arrived meanwhile)
    return {"update": update, "frames": n, "series_s": v.get("series_s", 0.0),
            "last_frame": run.source.used[n - 1] if n else None,
            "verdicts": words, "regions": rows, "figures": figs, "notes": run.source.reports[-10:]}


def _html(payload: dict) -> str:
    esc = html.escape
    verdicts = "".join(f"<li>{esc(w)}</li>" for w in payload["verdicts"])
    rows = "".join(
        f"<tr><td>{esc(r['region'])}</td><td>{r['pixels']}</td><td>{r['median_tau_s']:.3g}</td>"
        f"<td>{100 * r['long_enough']:.0f} %</td><td>{100 * r['frame_time_ok']:.0f} %</td>"
        f"<td>{r['seconds_to_go']:.0f}</td></tr>" for r in payload["regions"])
    figs = "".join(f'<figure><img id="fig-{esc(f.split(".")[0])}" src="{esc(f)}?v={payload["update"]}" '
                   f'alt="{esc(f)}" onload="this.dataset.loaded=1"></figure>' for f in payload["figures"])
    notes = "".join(f"<li>{esc(n)}</li>" for n in payload["notes"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ecm-dask live</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.2em;color:#222}} h1{{font-size:1.3em}}
#verdicts li{{margin:.3em 0;font-size:1.05em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}} figure{{display:inline-block;margin:.4em}}
img{{max-width:46vw}} #notes{{color:#a40}}
</style></head><body>
<h1>ecm-dask live: <span id="frames">{payload['frames']}</span> frames
(<span id="series">{payload['series_s']:.0f}</span> s), update <span id="update">{payload['update']}</span></h1>
<ul id="verdicts">{verdicts}</ul>
<table id="regions"><tr><th>region</th><th>ok pixels</th><th>median &tau; (s)</th><th>&ge; 40 &tau;</th>
<th>frame &le; 0.1 &tau;</th><th>s to go</th></tr>{rows}</table>
<div id="figures">{figs}</div>
<ul id="notes">{notes}</ul>
<script>
let shown = {payload['update']};
async function poll() {{
  try {{
    const r = await fetch('status.json?t=' + Date.now());
    const s = await r.json();
    if (s.update !== shown) {{ location.reload(); return; }}
  }} catch (e) {{ /* opened as a file, or the watch stopped: keep what is shown */ }}
  setTimeout(poll, {REFRESH_MS});
}}
if (location.protocol.startsWith('http')) setTimeout(poll, {REFRESH_MS});
</script>
</body></html>
"""


def write_page(folder: Path, run, results_path, drift_path=None, update: int = 0) -> Path:
    """Figures, ``status.json`` and ``index.html`` of the current update in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    figs = figures(folder, results_path, drift_path)
    payload = _status_payload(run, update, figs)
    write_file(folder / "index.html", _html(payload).encode())
    write_file(folder / "status.json", json.dumps(payload, indent=1).encode())
    return folder / "index.html"


def serve(folder: Path, port: int = 0):
    """Serve ``folder`` on 127.0.0.1 (loopback only) in a daemon thread; returns the server (``.server_address``,
    ``.shutdown()``)."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # no line per request on the watch's terminal
            pass

        def end_headers(self):
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

    folder.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True, name="ecm-dask live page").start()
    return server
