"""Labelled operations: the kernels applied to xarray objects over dask chunks, with named dims and units."""

from .correlation import correlate, g2, register, relayout

__all__ = ["correlate", "g2", "register", "relayout"]
