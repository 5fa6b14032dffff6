"""Frames that camera software writes into a folder, one TIFF per frame, picked up while they arrive.

A polling loop of our own (file-system watchers miss files on network shares).  A file becomes a frame only when
it is complete: its size and modification time are the same at two successive polls and it reads as one frame
of the series' shape and dtype.  Frames are used in natural order of the numbers in their names, each once:

* the next frame is the first file after the last used one (natural order); a later file that is complete
  while an earlier one is still being written waits for it;
* a gap (frame numbers missing between the last used frame and the next complete files) is waited for
  ``gap_polls`` polls, then skipped and reported;
* a file whose number was already used (``frame_6.tif`` and ``frame_006.tif``), or that appears after later
  frames were used, is reported and ignored;
* a file that keeps its size but does not read as a frame (truncated, another shape) is reported once and
  waited for (the camera may still be writing it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..readers._common import _natural_key
from ..readers._common import read_single_frame as read_frame  # noqa: F401  (re-exported)
from ..readers.tiff import TIFF_EXTENSIONS

FRAME_EXTENSIONS = (*TIFF_EXTENSIONS, ".dm3", ".dm4")


def order_key(name: str):
    """Natural order of a relative path, folder by folder (``Second_2/...`` before ``Second_10/...``)."""
    return tuple(_natural_key(part)[0] for part in name.split("/"))


def frame_number(name: str) -> int | None:
    """The last number in a file name (``frame_00012.tif`` -> 12), None if it has none or the file is in a
    sub-folder (Gatan's in-situ trees ``Hour_00/Minute_01/Second_02/...`` number frames within each second)."""
    if "/" in name:
        return None
    nums = re.findall(r"\d+", os.path.splitext(os.path.basename(name))[0])
    return int(nums[-1]) if nums else None


@dataclass
class FolderFrames:
    """Polls ``folder`` for new complete frames (see the module docstring)."""

    folder: str
    used: list[str] = field(default_factory=list)  # names of the files used, in order
    gap_polls: int = 3
    shape: tuple[int, int] | None = None
    dtype: np.dtype | None = None
    reports: list[str] = field(default_factory=list)
    _last: dict = field(default_factory=dict)  # name -> (size, mtime) at the previous poll
    _gap_wait: int = 0
    _reported: set = field(default_factory=set)

    def _report(self, key: str, text: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.reports.append(text)

    def _listing(self) -> dict[str, tuple[int, int]]:
        """Frame files by their path relative to the folder (``/``-separated; sub-folders such as Gatan's
        ``Hour_xx/Minute_xx/Second_xx`` trees included) -> (size, modification time)."""
        out = {}
        stack = [""]
        while stack:
            rel = stack.pop()
            where = os.path.join(self.folder, rel) if rel else self.folder
            try:
                entries = list(os.scandir(where))
            except OSError as exc:
                if not rel:
                    raise InputError(f"{self.folder}: cannot list the frame folder ({exc})") from None
                continue  # a sub-folder removed meanwhile
            for e in entries:
                if e.name.startswith("."):
                    continue
                name = f"{rel}/{e.name}" if rel else e.name
                try:
                    if e.is_dir():
                        stack.append(name)
                        continue
                    if os.path.splitext(e.name)[1].lower() not in FRAME_EXTENSIONS or not e.is_file():
                        continue
                    st = e.stat()
                except OSError:  # removed meanwhile
                    continue
                out[name] = (st.st_size, st.st_mtime_ns)
        return out

    def poll(self) -> list[tuple[str, np.ndarray]]:
        """New complete frames since the last poll, in order: ``[(file name, frame), ...]``."""
        now = self._listing()
        stable = {n for n, v in now.items() if v[0] > 0 and self._last.get(n) == v}
        self._last = now
        used = set(self.used)
        used_numbers = {frame_number(n) for n in self.used} - {None}
        last_key = order_key(self.used[-1]) if self.used else None
        candidates = []
        for name in sorted(now, key=order_key):
            if name in used:
                continue
            num = frame_number(name)
            if last_key is not None and order_key(name) < last_key:
                self._report(f"late:{name}", f"{name} arrived after later frames were used: ignored")
                continue
            if num is not None and num in used_numbers:
                self._report(f"dup:{name}", f"{name} repeats frame number {num}: ignored")
                continue
            candidates.append(name)
        out: list[tuple[str, np.ndarray]] = []
        last_num = frame_number(self.used[-1]) if self.used else None
        for name in candidates:
            num = frame_number(name)
            if name not in stable:
                break  # still being written (or just appeared): frames are used in order
            if last_num is not None and num is not None and num > last_num + 1:
                if self._gap_wait < self.gap_polls:
                    self._gap_wait += 1
                    break
                missing = f"{last_num + 1}" if num == last_num + 2 else f"{last_num + 1}-{num - 1}"
                self.reports.append(f"frame number(s) {missing} missing before {name}: skipped")
            try:
                frame = read_frame(os.path.join(self.folder, name))
                self._check(name, frame)
            except InputError as err:
                self._report(f"bad:{name}:{now[name]}", f"{err} (waiting for it)")
                break
            self._gap_wait = 0
            self.used.append(name)
            if num is not None:
                used_numbers.add(num)
                last_num = num
            out.append((name, frame))
        return out

    def _check(self, name: str, frame: np.ndarray) -> None:
        if self.shape is None:
            self.shape, self.dtype = tuple(frame.shape), frame.dtype
            return
        if tuple(frame.shape) != self.shape or frame.dtype != self.dtype:
            raise InputError(f"{os.path.join(self.folder, name)}: frame of shape {frame.shape} {frame.dtype}, but the "
                             f"series is {self.shape} {self.dtype}")


@dataclass
class GrowingStack:
    """Frames appended to one file while it is watched: a multi-page TIFF (one page per frame) or an HDF5 dataset
    ``(time, y, x)`` written in SWMR mode (``dataset``: its path in the file).

    A frame is used when it is complete: the TIFF's pages except the last, and the last once the file's size stayed
    the same for two polls; the HDF5 dataset's length as the writer last flushed it (SWMR readers see only whole
    frames).  ``used`` holds ``"#<index>"`` per frame, so a restart continues at the first frame not used.
    """

    path: str
    dataset: str | None = None
    used: list[str] = field(default_factory=list)
    shape: tuple[int, int] | None = None
    dtype: np.dtype | None = None
    reports: list[str] = field(default_factory=list)
    _last: tuple | None = None

    @property
    def folder(self) -> str:  # what a live state is bound to
        return self.path if self.dataset is None else f"{self.path}::{self.dataset}"

    def _check(self, frame: np.ndarray, index: int) -> None:
        if self.shape is None:
            self.shape, self.dtype = tuple(frame.shape), frame.dtype
        elif tuple(frame.shape) != self.shape or frame.dtype != self.dtype:
            raise InputError(f"{self.path}: frame {index} has shape {frame.shape} {frame.dtype}, but the series is "
                             f"{self.shape} {self.dtype}")

    def poll(self) -> list[tuple[str, np.ndarray]]:
        try:
            st = os.stat(self.path)
        except OSError:
            return []  # not created yet
        now = (st.st_size, st.st_mtime_ns)
        stable, self._last = now == self._last, now
        frames = self._read_hdf5() if self.dataset is not None else self._read_tiff(stable)
        out = []
        for i, frame in frames:
            self._check(frame, i)
            self.used.append(f"#{i}")
            out.append((f"#{i}", frame))
        return out

    def _read_tiff(self, stable: bool):
        import tifffile

        start = len(self.used)
        try:
            with tifffile.TiffFile(self.path) as tf:
                n = len(tf.pages)
                complete = n if stable else n - 1  # the last page may still be written
                return [(i, np.asarray(tf.pages[i].asarray())) for i in range(start, complete)]
        except Exception:  # noqa: BLE001 - a file in the middle of an append: try again at the next poll
            return []

    def _read_hdf5(self):
        import h5py

        start = len(self.used)
        try:
            with h5py.File(self.path, "r", libver="latest", swmr=True) as f:
                if self.dataset not in f:
                    raise InputError(f"{self.path}: no dataset {self.dataset!r} (give --dataset)")
                d = f[self.dataset]
                d.refresh()
                if d.ndim != 3:
                    raise InputError(f"{self.path}::{self.dataset} has shape {d.shape}; watch needs (time, y, x)")
                n = d.shape[0]
                return [(i, np.asarray(d[i])) for i in range(start, n)]
        except InputError:
            raise
        except OSError:  # being created, or not written with SWMR yet: try again
            return []


def open_live_source(path, dataset: str | None = None, gap_polls: int = 3):
    """A folder of frame files, or one growing file (``.tif``/``.tiff`` pages, ``.h5``/``.hdf5`` with ``dataset``)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return FolderFrames(os.path.abspath(path), gap_polls=gap_polls)
    ext = os.path.splitext(path)[1].lower()
    if ext in TIFF_EXTENSIONS:
        return GrowingStack(os.path.abspath(path))
    if ext in (".h5", ".hdf5", ".nxs"):
        if not dataset:
            raise InputError(f"{path}: give the dataset the camera appends frames to (--dataset /entry/data/data)")
        return GrowingStack(os.path.abspath(path), dataset=dataset)
    raise InputError(f"{path}: watch takes a folder of frame files, a growing multi-page TIFF or an HDF5 file "
                     "(with --dataset)")
