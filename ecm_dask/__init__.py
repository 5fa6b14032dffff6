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

__all__ = ["EcmError", "InputError", "MetadataError", "StoreError", "ValidationError", "open_results",
           "validate_series", "__version__"]


def open_results(path):
    """A results store as an xarray DataTree (maps at the root, ``/g2``, ``/regions``, ...), with the ``.ecm``
    accessor registered (``tree.ecm.pixel(y, x).plot()``, ``tree.ecm.explore()``); an InputError names what is
    wrong with a store that is not one."""
    from . import accessor  # noqa: F401 - registers .ecm
    from .pipeline.report import open_results as _open

    return _open(path)
