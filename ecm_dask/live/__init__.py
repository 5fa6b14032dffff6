"""Live mode: correlate and map while the camera records (``ecm-dask watch``, ``ecm-dask simulate-camera``)."""

from .source import FolderFrames, frame_number, read_frame
from .watch import LiveRun, watch

__all__ = ["FolderFrames", "LiveRun", "frame_number", "read_frame", "watch"]
