"""``python -m ecm_dask`` runs the command line."""

from .cli import entry

entry()
