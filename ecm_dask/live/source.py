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
from ..readers.tiff import TIFF_EXTENSIONS


def frame_number(name: str) -> int | None:
    """The last number in a file name (``frame_00012.tif`` -> 12), None if it has none."""
    nums = re.findall(r"\d+", os.path.splitext(os.path.basename(name))[0])
    return int(nums[-1]) if nums else None


def read_frame(path: str) -> np.ndarray:
    """One 2-D frame from a single-frame TIFF (InputError naming the file if it is not one)."""
    import tifffile

    try:
        a = np.asarray(tifffile.imread(path))
    except Exception as exc:  # noqa: BLE001 - any reader complaint names the file
        raise InputError(f"{path}: cannot read a frame ({type(exc).__name__}: {exc})") from None
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise InputError(f"{path}: holds data of shape {a.shape}, not one 2-D frame")
    return a


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
        out = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            raise InputError(f"{self.folder}: cannot list the frame folder ({exc})") from None
        for e in entries:
            if e.name.startswith(".") or os.path.splitext(e.name)[1].lower() not in TIFF_EXTENSIONS:
                continue
            try:
                st = e.stat()
            except OSError:  # removed meanwhile
                continue
            if e.is_file():
                out[e.name] = (st.st_size, st.st_mtime_ns)
        return out

    def poll(self) -> list[tuple[str, np.ndarray]]:
        """New complete frames since the last poll, in order: ``[(file name, frame), ...]``."""
        now = self._listing()
        stable = {n for n, v in now.items() if v[0] > 0 and self._last.get(n) == v}
        self._last = now
        used = set(self.used)
        used_numbers = {frame_number(n) for n in self.used} - {None}
        last_key = _natural_key(self.used[-1]) if self.used else None
        candidates = []
        for name in sorted(now, key=_natural_key):
            if name in used:
                continue
            num = frame_number(name)
            if last_key is not None and _natural_key(name) < last_key:
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
