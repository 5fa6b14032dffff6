"""Synthetic supercooled-liquid nanowire series with ground truth (deterministic per seed).

* :mod:`.model` - parameters, ground-truth maps (τ, β, contrast, regions) and the drift trace;
* :mod:`.kernels` - pure NumPy rendering of any block of pixels over all frames (exact KWW speckle
  by circulant embedding, Siegert relation, bilinear drift, Poisson counts);
* :mod:`.writer` - renders straight into a series store, tile by tile, for series of any size.
"""

from .kernels import gaussian_process, render_block
from .model import SynthParams, drift_trace, truth_maps
from .writer import truth_dataset, write_synthetic_series

__all__ = ["SynthParams", "drift_trace", "gaussian_process", "render_block", "truth_dataset", "truth_maps",
           "write_synthetic_series"]
