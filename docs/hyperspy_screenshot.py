"""Draw docs/hyperspy.png: the demo's result maps and a series frame as HyperSpy signals (calibrated axes in nm, time
in s), plotted by HyperSpy itself.  Run after `make demo`: `.venv/bin/python docs/hyperspy_screenshot.py demo_out`."""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ecm_dask.interop import maps_to_hyperspy, to_hyperspy  # noqa: E402


def main(demo: Path, out: Path) -> None:
    maps = maps_to_hyperspy(demo / "results.zarr")
    series = to_hyperspy(demo / "series.zarr")
    tau = maps["tau"]
    tau.data = np.log10(tau.data)  # τ spans decades
    frame = series.inav[0]
    frame.compute()
    fig = plt.figure(figsize=(10, 4.2))
    import hyperspy.api as hs

    hs.plot.plot_images([frame, tau], fig=fig, label=[f"series frame 0 ({series.axes_manager[0].name} navigation, "
                                                       f"{series.axes_manager.navigation_shape[0]} frames)",
                                                       "log10 τ (s), ok pixels (maps_to_hyperspy)"],
                        colorbar="multi", scalebar="all", cmap=["gray", "viridis"], axes_decor="all", tight_layout=True,
                        vmin=["1th", "2th"], vmax=["99th", "98th"])
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_out"), Path(__file__).with_name("hyperspy.png"))
