"""``python -m ecm_dask`` runs the command line."""

from .cli import main

main()
