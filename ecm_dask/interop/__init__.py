"""Bridges to the tools microscopists use next to ecm_dask (HyperSpy)."""

from .hyperspy import ingest_signal, maps_to_hyperspy, signal_source, to_hyperspy

__all__ = ["ingest_signal", "maps_to_hyperspy", "signal_source", "to_hyperspy"]
