"""ecm_dask: electron correlation microscopy image series -> maps of atomic dynamics, out of core.

Layers (each knows only the one below): ``kernels`` (pure NumPy) -> labelled ops (xarray/dask) ->
``store`` (Zarr layout, schema, readers) -> ``pipeline`` -> front ends (``cli``, notebooks, clusters).
Names of dims, variables and attributes live in :mod:`ecm_dask.schema`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ecm_dask")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from .errors import EcmError, InputError, MetadataError, StoreError, ValidationError  # noqa: E402
from .schema import validate_series  # noqa: E402

__all__ = ["EcmError", "InputError", "MetadataError", "StoreError", "ValidationError", "validate_series",
           "__version__"]
