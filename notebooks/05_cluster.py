# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Running the pipeline on a cluster
#
# The same analysis runs on a laptop, on an existing dask scheduler, or on an HPC batch system: only the
# `connect(...)` line changes. On a SLURM site it would be
#
# ```python
# with connect("slurm", profile="slurm-example", workers=32) as client:   # cluster/profiles.yaml
# ```
#
# Here (and in CI) a `LocalCluster` of two worker processes stands in; set `ECM_NOTEBOOK_CLUSTER` to a
# scheduler address (`tcp://host:8786`) or to `slurm` (with `ECM_NOTEBOOK_PROFILE`) to use a real one.
#
# Open it in Jupyter (`jupytext --to notebook 05_cluster.py`). In a plain Python *script*, code that starts
# a LocalCluster must sit under `if __name__ == "__main__":`, because worker processes re-import the script.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from ecm_dask.cluster import connect
from ecm_dask.pipeline.run import run_pipeline
from ecm_dask.synth import SynthParams, write_synthetic_series

workdir = Path(os.environ.get("ECM_NOTEBOOK_DIR") or tempfile.mkdtemp(prefix="ecm_cluster_"))
cluster = os.environ.get("ECM_NOTEBOOK_CLUSTER", "local")
profile = os.environ.get("ECM_NOTEBOOK_PROFILE")  # e.g. slurm-example

params = SynthParams(ny=48, nx=64, n_frames=1200, frame_time_s=0.5, tau_bulk_s=8.0, seed=5)
series_path = write_synthetic_series(workdir / "series.zarr", params, tile=16, overwrite=True, progress=False)

# %% [markdown]
# `connect` starts the cluster (here: 2 single-threaded worker processes, 1 GB each, listening on
# 127.0.0.1 only), prints the dashboard link, and shuts everything down when the block ends. Every dask
# computation inside the block runs on it. Each g2 task reads its own pixel block from the store, so
# workers never exchange frames.

# %%
with connect(cluster, profile=profile, workers=2, memory_limit="1GB") as client:
    if client is not None:
        print("workers:", len(client.scheduler_info()["workers"]), "| dashboard:", client.dashboard_link)
    results = run_pipeline(series_path, workdir / "results.zarr", g2_options={"block_bytes": 2**20},
                           overwrite=True, progress=False)

# %% [markdown]
# The result is a labelled store: the maps open with `xr.open_zarr`, the whole tree with `open_datatree`.
# Running the same cell again would skip every finished stage (and every finished pixel block of an
# interrupted one).

# %%
tree = xr.open_datatree(results, engine="zarr")
maps = tree.to_dataset()
truth = xr.open_zarr(series_path, group="truth").load()
ok = maps.status == 0
bulk = (truth.region == 1) & ok
print(tree)
print(f"bulk median tau {float(maps.tau.where(bulk).median()):.2f} s "
      f"(truth {float(truth.tau.where(truth.region == 1).median()):.2f} s) over {int(bulk.sum())} pixels")
ratio = float(maps.tau.where(bulk).median()) / float(truth.tau.where(truth.region == 1).median())
assert 0.6 < ratio < 1.5, ratio

# %% [markdown]
# Labelled selection: τ along a line across the wire (by position in nm), and the g2 of one pixel.

# %%
line = maps.tau.where(ok).sel(x=10.0, method="nearest")
print(np.round(line.values[::6], 2))
pixel_g2 = tree["g2"].to_dataset().g2.sel(y=8.0, x=10.0, method="nearest").sel(lag=slice(0, 30))
print(pixel_g2.round(3).values)
if os.environ.get("ECM_NOTEBOOK_PLOTS", "1") == "1":
    import matplotlib

    matplotlib.use("Agg")
    np.log10(maps.tau.where(ok)).plot(cmap="viridis")
