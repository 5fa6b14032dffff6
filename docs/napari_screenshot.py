"""Make docs/napari.png: a results store opened in napari through the ecm_dask reader plugin (README figure).

Needs napari with a Qt binding and OpenGL, which the project's extras do not install (``pip install -e ".[napari]"
PyQt6``).  Without a display, run it under a virtual X server (Mesa's llvmpipe renders the canvas; on Debian
``apt-get install xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1`` for Xvfb and Qt 6's xcb platform)::

    ecm-dask demo -o /tmp/napari_demo --overwrite
    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" python docs/napari_screenshot.py /tmp/napari_demo/results.zarr

Qt's ``offscreen`` platform draws the window but not napari's OpenGL canvas (Qt says "QOpenGLWidget is not
supported on this platform"); the script refuses to save a figure whose canvas shows no map.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from ecm_dask import schema as S
from ecm_dask.interop.napari import LOG10_TAU_LAYER

HERE = Path(__file__).resolve().parent
#: window size (px): the figure stays small (a PNG of ~100 KB)
WIDTH, HEIGHT = 1100, 720


def viridis_pixels(image: np.ndarray) -> float:
    """Fraction of an RGB(A) screenshot's pixels in the green-to-yellow half of viridis, which napari's own interface
    never uses: well above zero only if the canvas rendered the tau map."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return float(np.mean((g > 120) & (b < 140) & (g - b > 20) & (g > r)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results store (ecm-dask run / ecm-dask demo)")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "napari.png")
    args = parser.parse_args(argv)
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print("error: no display: napari's canvas needs OpenGL, which Qt's offscreen platform does not give it "
              "(napari fails with 'QOpenGLWidget is not supported on this platform'); run under xvfb-run with "
              "QT_QPA_PLATFORM=xcb (see this script's docstring)", file=sys.stderr)
        return 1
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb" if os.environ.get("DISPLAY") else "wayland")

    import napari

    viewer = napari.Viewer(show=False, title="napari: ecm_dask results")
    try:
        layers = {layer.name: layer for layer in viewer.open(str(args.results), plugin="ecm_dask")}
        for layer in layers.values():
            layer.visible = layer.name in (LOG10_TAU_LAYER, S.REGIONS_GROUP)
        regions = layers[S.REGIONS_GROUP]
        regions.contour, regions.opacity = 1, 1.0  # region outlines over the tau map
        viewer.layers.selection.active = layers[LOG10_TAU_LAYER]
        viewer.canvas.overlays.scale_bar.visible = True
        viewer.window.resize(WIDTH, HEIGHT)
        # a hidden window is laid out when it is first grabbed: grab once, then fit the view to the laid-out canvas
        viewer.screenshot(canvas_only=False, flash=False)
        viewer.reset_view(margin=0.02)
        image = viewer.screenshot(canvas_only=False, flash=False)
    finally:
        viewer.close()
    shown = viridis_pixels(image)
    if shown < 0.02:
        print(f"error: the canvas shows no tau map ({shown:.1%} viridis pixels): napari's OpenGL canvas did "
              "not render; run under xvfb-run with QT_QPA_PLATFORM=xcb (see this script's docstring)", file=sys.stderr)
        return 1
    from imageio.v3 import imwrite

    args.output.parent.mkdir(parents=True, exist_ok=True)
    imwrite(args.output, image[..., :3], optimize=True)  # opaque: RGB is smaller
    print(f"{args.output}: {image.shape[1]} x {image.shape[0]} px, {args.output.stat().st_size / 1024:.0f} KiB, "
          f"{shown:.0%} viridis pixels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
