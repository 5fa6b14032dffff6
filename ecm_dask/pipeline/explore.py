"""``explore.html``: a self-contained interactive page of a results store (works offline, no server).

Click a pixel of the map (τ, β, contrast, status or region) to see its g2 points, the fitted KWW curve, its status
and the fit parameters with their errors; a region overlay and per-region histograms.  Everything the page shows
is embedded in it: the maps as float32, the g2 curves as float16 (3 significant digits, plenty for a plot; the
numbers in the table come from the float32 maps).  Above ``max_mb`` of curves, only every k-th pixel's curve is
embedded (k the smallest that fits; the page says so and shows the nearest embedded curve).

``explore.html#pixel=IY,IX`` opens with that pixel selected (the same code path as a click).
"""

from __future__ import annotations

import base64
import json
import math
import os
from pathlib import Path

import numpy as np

from .. import schema as S

MAX_MB = 48.0
MAP_VARS = ("tau", "tau_err", "beta", "beta_err", "contrast", "contrast_err", "baseline", "baseline_err", "chi2",
            "n_pooled")


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _viridis() -> list[list[int]]:
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [[int(round(255 * c)) for c in cmap(i / 255)[:3]] for i in range(256)]


def _limits(v: np.ndarray, log: bool) -> list[float]:
    f = v[np.isfinite(v) & ((v > 0) if log else True)]
    if not f.size:
        return [0.0, 1.0]
    if log:
        f = np.log10(f)
    lo, hi = np.percentile(f, [2, 98])
    return [float(lo), float(hi if hi > lo else lo + 1)]


def page_data(tree, max_mb: float = MAX_MB) -> dict:
    """What the page embeds, from an open results DataTree."""
    from ..kernels.kww import FIT_OK

    maps = tree.to_dataset().transpose(S.Y, S.X, ...)
    ny, nx = maps.sizes[S.Y], maps.sizes[S.X]
    data: dict = {"ny": ny, "nx": nx, "y_nm": maps[S.Y].values.tolist(), "x_nm": maps[S.X].values.tolist(),
                  "ok_code": FIT_OK, "maps": {}, "limits": {}, "viridis": _viridis()}
    for name in MAP_VARS:
        if name in maps:
            v = np.asarray(maps[name].values, dtype=np.float32)
            data["maps"][name] = _b64(v)
            if name in ("tau", "beta", "contrast"):
                ok = np.asarray(maps[S.STATUS].values) == FIT_OK
                data["limits"][name] = _limits(np.where(ok, v, np.nan), log=name == "tau")
    data["status"] = _b64(np.asarray(maps[S.STATUS].values, dtype=np.uint8))
    data["status_names"] = S.flag_names(maps[S.STATUS].attrs)
    if S.REGIONS_GROUP in tree.children:
        reg = tree[S.REGIONS_GROUP].to_dataset()[S.REGION].transpose(S.Y, S.X)
        data["region"] = _b64(np.asarray(reg.values, dtype=np.int8))
        data["region_names"] = {int(k): v for k, v in S.REGION_NAMES.items()}
    if S.G2_GROUP in tree.children:
        g2 = tree[S.G2_GROUP].to_dataset()
        curves = g2["g2"].transpose(S.Y, S.X, S.LAG)
        n_lag = curves.sizes[S.LAG]
        stride = max(1, math.ceil(math.sqrt(ny * nx * n_lag * 2 / (max_mb * 2**20))))
        sub = np.asarray(curves.values[::stride, ::stride], dtype=np.float32)
        data["g2"] = _b64(sub.astype(np.float16))
        data["g2_stride"] = stride
        data["g2_shape"] = list(sub.shape)
        data["lag_s"] = np.asarray(g2[S.LAG].values, dtype=np.float64).tolist()
    return data


def render(data: dict, histograms_png: bytes | None, title: str) -> str:
    import html as _html

    title = _html.escape(title)
    hist = ("<img id='histograms' alt='per-region histograms' src='data:image/png;base64,"
            + base64.b64encode(histograms_png).decode() + "'>") if histograms_png else ""
    payload = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return _TEMPLATE.replace("%TITLE%", title).replace("%HIST%", hist).replace("%DATA%", payload)


def explore_html(tree, *, title: str = "results", max_mb: float = MAX_MB) -> str:
    """The explorer page of an open results DataTree, as one HTML string."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plot import plot_histograms

    data = page_data(tree, max_mb=max_mb)
    maps = tree.to_dataset()
    png = None
    if (maps[S.STATUS].values == 0).any():
        regions = tree[S.REGIONS_GROUP].to_dataset()[S.REGION] if S.REGIONS_GROUP in tree.children else None
        fig = plot_histograms(maps, regions=regions)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        png = buf.getvalue()
    return render(_clean(data), png, title)


def write_explore(results_path: str | os.PathLike, out: str | os.PathLike, *, max_mb: float = MAX_MB) -> Path:
    """Write ``explore.html`` for a results store (atomically); returns its path."""
    from .report import open_results

    page = explore_html(open_results(results_path), title=os.path.basename(os.fspath(results_path)), max_mb=max_mb)
    from ..store.direct import write_file

    out = Path(out)
    write_file(out, page.encode("utf-8"))  # a temporary name, then one rename
    return out


def _clean(obj):
    """JSON without NaN (None instead): lists of coordinates and limits only; arrays travel as base64."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


_TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ecm_dask explore: %TITLE%</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em;color:#222} h1{font-size:1.2em}
#wrap{display:flex;gap:1.5em;flex-wrap:wrap;align-items:flex-start}
#map{image-rendering:pixelated;cursor:crosshair;border:1px solid #999}
#info td,#info th{padding:.1em .5em;text-align:left} #info th{font-weight:600}
#bar{height:12px;width:300px} .ctl{margin:.3em 0} svg text{font-size:11px}
#note{color:#a40}
</style></head><body>
<h1>ecm_dask explore: %TITLE%</h1>
<div class="ctl">map: <select id="which"><option value="tau">tau (log)</option><option value="beta">beta</option>
<option value="contrast">contrast</option><option value="status">status</option><option value="region">region</option>
</select> <label><input type="checkbox" id="overlay"> region outlines</label>
<span id="note"></span></div>
<div id="wrap">
<div><canvas id="map"></canvas><div><canvas id="bar" width="300" height="12"></canvas></div>
<div id="range"></div></div>
<div><svg id="plot" width="460" height="300"></svg>
<table id="info"><tbody><tr><td>click a pixel of the map</td></tr></tbody></table></div>
</div>
<div>%HIST%</div>
<script id="data" type="application/json">%DATA%</script>
<script>
const D = JSON.parse(document.getElementById('data').textContent);
function dec(b64, T) { const s = atob(b64); const u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return new T(u.buffer); }
function half(h) { const s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
  if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * Math.pow(2, e - 15) * (1 + f / 1024); }
const M = {}; for (const k in D.maps) M[k] = dec(D.maps[k], Float32Array);
const status = dec(D.status, Uint8Array);
const region = D.region ? dec(D.region, Int8Array) : null;
const G = D.g2 ? dec(D.g2, Uint16Array) : null;
const ny = D.ny, nx = D.nx, scale = Math.max(2, Math.floor(560 / Math.max(nx, ny)));
const cv = document.getElementById('map'); cv.width = nx; cv.height = ny;
cv.style.width = (nx * scale) + 'px'; cv.style.height = (ny * scale) + 'px';
const CAT = [[68,1,84],[59,82,139],[33,145,140],[94,201,98],[253,231,37],[200,80,60],[150,150,150],[230,150,40],
             [120,60,160],[40,40,40],[180,180,220]];
if (D.g2_stride > 1) document.getElementById('note').textContent =
  'g2 curves embedded for every ' + D.g2_stride + 'th pixel (the nearest one is shown)';
function draw() {
  const which = document.getElementById('which').value, ctx = cv.getContext('2d');
  const img = ctx.createImageData(nx, ny), lim = D.limits[which];
  for (let i = 0; i < nx * ny; i++) {
    let c = [190, 190, 190];
    if (which === 'status') c = CAT[status[i] % CAT.length];
    else if (which === 'region') c = region ? CAT[(region[i] + 11) % CAT.length] : c;
    else if (status[i] === D.ok_code) {
      let v = M[which][i]; if (which === 'tau') v = Math.log10(v);
      if (isFinite(v)) { const t = Math.min(255, Math.max(0, Math.round(255 * (v - lim[0]) / (lim[1] - lim[0]))));
        c = D.viridis[t]; }
    }
    if (document.getElementById('overlay').checked && region) {
      const y = Math.floor(i / nx), x = i % nx;
      if ((x + 1 < nx && region[i + 1] !== region[i]) || (y + 1 < ny && region[i + nx] !== region[i])) c = [255,255,255];
    }
    img.data.set([c[0], c[1], c[2], 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  const bar = document.getElementById('bar').getContext('2d');
  for (let i = 0; i < 300; i++) { const c = D.viridis[Math.floor(i * 255 / 299)];
    bar.fillStyle = 'rgb(' + c + ')'; bar.fillRect(i, 0, 1, 12); }
  document.getElementById('range').textContent = lim ? (which === 'tau' ? 'tau ' + (10 ** lim[0]).toPrecision(3) +
    ' .. ' + (10 ** lim[1]).toPrecision(3) + ' s (log)' : which + ' ' + lim[0].toPrecision(3) + ' .. ' +
    lim[1].toPrecision(3)) : '';
}
function fmt(v, d) { return (v === undefined || !isFinite(v)) ? 'n/a' : Number(v).toPrecision(d || 4); }
function select(iy, ix) {
  iy = Math.max(0, Math.min(ny - 1, iy)); ix = Math.max(0, Math.min(nx - 1, ix));
  const i = iy * nx + ix, st = status[i];
  const rows = [['pixel', 'y ' + iy + ', x ' + ix + ' (' + fmt(D.y_nm[iy], 4) + ', ' + fmt(D.x_nm[ix], 4) + ' nm)'],
    ['status', st + ' ' + (D.status_names[st] || '')]];
  if (region) rows.push(['region', D.region_names[region[i]] || region[i]]);
  for (const [k, e] of [['tau', 'tau_err'], ['beta', 'beta_err'], ['contrast', 'contrast_err'], ['baseline', 'baseline_err']])
    if (M[k]) rows.push([k, fmt(M[k][i]) + (M[e] ? ' &plusmn; ' + fmt(M[e][i], 2) : '') + (k === 'tau' ? ' s' : '')]);
  if (M.chi2) rows.push(['chi2', fmt(M.chi2[i], 3)]);
  if (M.n_pooled) rows.push(['pooled pixels', fmt(M.n_pooled[i], 3)]);
  document.getElementById('info').innerHTML = '<tbody>' + rows.map(r =>
    '<tr><th>' + r[0] + '</th><td id="v-' + r[0].replace(' ', '_') + '">' + r[1] + '</td></tr>').join('') + '</tbody>';
  plot(iy, ix, i);
  document.body.dataset.selected = iy + ',' + ix;
}
function plot(iy, ix, i) {
  const svg = document.getElementById('plot'), W = 460, H = 300, L = 50, R = 10, T = 10, B = 35;
  let s = '';
  if (!G) { svg.innerHTML = '<text x="60" y="150">no g2 in this store</text>'; return; }
  const k = D.g2_stride, sy = Math.min(D.g2_shape[0] - 1, Math.round(iy / k)), sx = Math.min(D.g2_shape[1] - 1,
    Math.round(ix / k)), nl = D.lag_s.length, off = (sy * D.g2_shape[1] + sx) * nl;
  const pts = []; for (let j = 0; j < nl; j++) { const v = half(G[off + j]); if (isFinite(v)) pts.push([D.lag_s[j], v]); }
  const tau = M.tau ? M.tau[i] : NaN, beta = M.beta ? M.beta[i] : NaN, A = M.contrast ? M.contrast[i] : NaN,
    b0 = M.baseline ? M.baseline[i] : NaN, fitted = status[i] === D.ok_code && isFinite(tau) && isFinite(A);
  const curve = [];
  const t0 = Math.log10(D.lag_s[0]), t1 = Math.log10(D.lag_s[nl - 1]);
  if (fitted) for (let j = 0; j <= 200; j++) { const t = 10 ** (t0 + (t1 - t0) * j / 200);
    curve.push([t, b0 + A * Math.exp(-2 * Math.pow(t / tau, beta))]); }
  const ys = pts.map(p => p[1]).concat(curve.map(p => p[1]));
  let y0 = Math.min(...ys), y1 = Math.max(...ys); if (!(y1 > y0)) { y0 = 0.9; y1 = 1.1; }
  const X = t => L + (W - L - R) * (Math.log10(t) - t0) / (t1 - t0 || 1), Y = v => H - B - (H - T - B) * (v - y0) / (y1 - y0);
  s += '<rect x="' + L + '" y="' + T + '" width="' + (W - L - R) + '" height="' + (H - T - B) + '" fill="none" stroke="#999"/>';
  for (let e = Math.ceil(t0); e <= Math.floor(t1); e++) s += '<text x="' + (X(10 ** e) - 8) + '" y="' + (H - 18) +
    '">1e' + e + '</text>';
  s += '<text x="' + (W / 2 - 20) + '" y="' + (H - 4) + '">lag (s)</text>';
  s += '<text x="4" y="' + (T + 10) + '">' + y1.toPrecision(4) + '</text><text x="4" y="' + (H - B) + '">' +
    y0.toPrecision(4) + '</text>';
  for (const p of pts) s += '<circle class="pt" cx="' + X(p[0]).toFixed(1) + '" cy="' + Y(p[1]).toFixed(1) +
    '" r="2.5" fill="#1f77b4"/>';
  if (curve.length) s += '<polyline id="fit" fill="none" stroke="#d62728" stroke-width="1.5" points="' +
    curve.map(p => X(p[0]).toFixed(1) + ',' + Y(p[1]).toFixed(1)).join(' ') + '"/>';
  const pooled = M.n_pooled && M.n_pooled[i] > 1 ? ' (fitted to the g2 pooled over ' + M.n_pooled[i] + ' pixels)' : '';
  s += '<text x="' + (L + 8) + '" y="' + (T + 14) + '" fill="#1f77b4">&#9679; g2 of this pixel' +
    (k > 1 ? ' (nearest embedded: y ' + sy * k + ', x ' + sx * k + ')' : '') + '</text>';
  if (curve.length) s += '<text x="' + (L + 8) + '" y="' + (T + 28) + '" fill="#d62728">&#8212; KWW fit' + pooled +
    '</text>';
  svg.innerHTML = s;
  svg.dataset.points = pts.length; svg.dataset.fitted = fitted ? 1 : 0; svg.dataset.curve = sy * k + ',' + sx * k;
}
cv.addEventListener('click', ev => { const r = cv.getBoundingClientRect();
  select(Math.floor((ev.clientY - r.top) / r.height * ny), Math.floor((ev.clientX - r.left) / r.width * nx)); });
document.getElementById('which').addEventListener('change', draw);
document.getElementById('overlay').addEventListener('change', draw);
draw();
const m = location.hash.match(/pixel=(\d+),(\d+)/); if (m) select(+m[1], +m[2]);
</script></body></html>
"""
