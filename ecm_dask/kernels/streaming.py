"""Streaming multi-tau correlator: the sums of :func:`ecm_dask.kernels.g2.g2` (method ``"multitau"``) updated frame
by frame, in memory that does not grow with the number of frames (pure NumPy/Numba: no dask, no xarray).

The block correlator walks a pixel's whole series level by level; this one takes frames as they arrive.  For
every pixel and averaging level it keeps the last ``2m`` values (a ring), the lagged products, the sums of the
first ``k`` values (``head``), the level's total and the largest raw value.  A new value at a level is multiplied
with the ring entries ``k`` places back; every second value completes a pair whose mean goes one level up, the
same pairs the block correlator averages.  :meth:`MultiTauState.result` turns the sums into g2 with the very
function the block correlator uses (:func:`ecm_dask.kernels.g2.finish_multitau`), so after the same frames
both give the same g2 up to the order of float64 additions (tests: <= 1e-12 relative).

Memory: ``(3 * 2m + 1) * L + 1`` float64 per pixel with ``L = floor(log2 T) + 1`` active levels (a level holds
values from its first pair on): 3.5 KiB per pixel at m = 8 and T = 400 (9 levels), 392 bytes more per doubling of T.
The arrays are level-major with room for 40 levels reserved as untouched pages, so a new level costs its own pages
and no copy of the others.

Frame masks are not supported: a live series uses every frame that arrived (bad frames are excluded offline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .g2 import PIXEL_OK, G2Result, _level_weights, _pack, finish_multitau
from .lags import multitau_lags

#: levels room is reserved for: 2**40 frames.  Arrays are level-major and made with np.zeros, whose pages the
#: operating system maps only when first written, so levels not reached cost address space, not memory
LEVEL_CAPACITY = 40
#: pixels normalised together by :meth:`MultiTauState.result` (bounds its working arrays)
RESULT_CHUNK = 32768


@njit(cache=True, nogil=True)
def _push(frames, p0, count, ring, num, head, total, maxval, m):  # pragma: no cover - compiled
    """Add ``frames (Tb, Pb)`` to the sums of pixels ``p0 .. p0 + Pb`` (state arrays level-major: ``ring[level, p]``);
    ``count (L,)`` the values each level held before."""
    two_m = 2 * m
    n_levels = count.shape[0]
    c = np.empty(n_levels, np.int64)
    for i in range(frames.shape[1]):
        p = p0 + i
        c[:] = count
        mx = maxval[p]
        for t in range(frames.shape[0]):
            v = np.float64(frames[t, i])
            if v > mx:
                mx = v
            level = 0
            while True:
                n = c[level]
                r = ring[level, p]
                nm = num[level, p]
                if level == 0:
                    nm[0] += v * v
                    k_lo = 1
                else:
                    k_lo = m
                k_hi = min(two_m - 1, n)
                pos = n % two_m  # ring slot of this value; value n - k sits k slots back (no division per lag)
                for k in range(k_lo, k_hi + 1):
                    j = pos - k
                    if j < 0:
                        j += two_m
                    nm[k] += r[j] * v
                if n < two_m:  # value n is one of the first ones: part of head[k] for k > n
                    hd = head[level, p]
                    for k in range(max(n + 1, k_lo), two_m):
                        hd[k] += v
                total[level, p] += v
                r[pos] = v
                c[level] = n + 1
                if n % 2 == 1 and level + 1 < n_levels:
                    v = 0.5 * (r[pos - 1] + v)  # pos is odd: the pair's first value is the slot before
                    level += 1
                    continue
                break
        maxval[p] = mx
    return 0


@njit(cache=True, nogil=True)
def _gather(ring, num, head, total, count, n_levels, p0, p1, num_o, head_o, tail_o, total_o):  # pragma: no cover
    """Pixels ``p0 .. p1`` in the block correlator's layout (P, L, 2m), with the tails (sums of the last k values)
    read from the rings."""
    two_m = ring.shape[2]
    for level in range(n_levels):
        n = count[level]
        pos = n % two_m
        for p in range(p0, p1):
            i = p - p0
            r = ring[level, p]
            acc = 0.0
            tail_o[i, level, 0] = 0.0
            for k in range(1, two_m):
                if k <= n:
                    j = pos - k
                    if j < 0:
                        j += two_m
                    acc += r[j]
                tail_o[i, level, k] = acc
                num_o[i, level, k] = num[level, p, k]
                head_o[i, level, k] = head[level, p, k]
            num_o[i, level, 0] = num[level, p, 0]
            head_o[i, level, 0] = head[level, p, 0]
            total_o[i, level] = total[level, p]
    return 0


def _levels_for(n_frames: int) -> int:
    """Levels that hold at least one value after ``n_frames`` frames."""
    n, levels = int(n_frames), 0
    while n >= 1:
        levels += 1
        n //= 2
    return max(levels, 1)


@dataclass
class MultiTauState:
    """The running multi-tau sums of ``n_pixels`` pixels (see the module docstring).

    Create with :meth:`empty`, add frames with :meth:`push`, read g2 at any time with :meth:`result`; a state is
    saved and restored with :meth:`to_dict` / :meth:`from_dict` (the active levels only).
    """

    m: int
    count: np.ndarray  # (L,) int64 values per active level (the same for every pixel)
    ring: np.ndarray  # (LEVEL_CAPACITY, P, 2m) float64
    num: np.ndarray  # (LEVEL_CAPACITY, P, 2m)
    head: np.ndarray  # (LEVEL_CAPACITY, P, 2m)
    total: np.ndarray  # (LEVEL_CAPACITY, P)
    maxval: np.ndarray  # (P,)
    #: counts at or above it mark a pixel saturated (default: the maximum of the first integer frames' dtype)
    saturation: float | None = None

    @classmethod
    def empty(cls, n_pixels: int, points_per_octave: int = 8) -> "MultiTauState":
        m = int(points_per_octave)
        if m < 1:
            raise ValueError(f"points_per_octave must be >= 1, got {points_per_octave}")
        shape = (LEVEL_CAPACITY, int(n_pixels), 2 * m)
        return cls(m=m, count=np.zeros(1, np.int64), ring=np.zeros(shape), num=np.zeros(shape),
                   head=np.zeros(shape), total=np.zeros(shape[:2]), maxval=np.full(shape[1], -np.inf))

    @property
    def n_frames(self) -> int:
        return int(self.count[0])

    @property
    def n_pixels(self) -> int:
        return self.ring.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the active levels (those in memory)."""
        L = self.count.size
        return (self.count.nbytes + self.maxval.nbytes + L * self.total[0].nbytes
                + 3 * L * self.ring[0].nbytes)

    def push(self, frames, pixels: slice | None = None, threads: int = 1) -> None:
        """Add frames ``(Tb, P)`` (time first, any numeric dtype; P = all pixels, or those of ``pixels``).

        With ``pixels``, call :meth:`reserve` first, then once per pixel slice for the same frames, then
        :meth:`advance` once.  ``threads`` > 1 splits the pixels between threads (the update releases the GIL).
        """
        x = np.asarray(frames)
        if x.ndim != 2:
            raise ValueError(f"frames must be (time, pixels), got shape {x.shape}")
        sl = pixels if pixels is not None else slice(0, self.n_pixels)
        p0, p1, _ = sl.indices(self.n_pixels)
        if x.shape[1] != p1 - p0:
            raise ValueError(f"frames hold {x.shape[1]} pixels, the state {p1 - p0}")
        if self.saturation is None and np.issubdtype(x.dtype, np.integer):
            self.saturation = float(np.iinfo(x.dtype).max)  # as the block correlator's default
        if pixels is None:
            self.reserve(self.n_frames + x.shape[0])
        n_thr = max(1, min(int(threads), (p1 - p0) // 1024 or 1))
        cuts = np.linspace(p0, p1, n_thr + 1).astype(int)

        def one(a: int, b: int) -> None:
            _push(x[:, a - p0:b - p0], a, self.count, self.ring, self.num, self.head, self.total, self.maxval,
                  self.m)

        if n_thr == 1:
            one(p0, p1)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n_thr) as pool:
                list(pool.map(one, cuts[:-1], cuts[1:]))
        if pixels is None:
            self.advance(x.shape[0])

    def reserve(self, n_frames: int) -> None:
        """Make room for the levels ``n_frames`` frames need (call before pushing pixel slices)."""
        levels = _levels_for(n_frames)
        if levels > LEVEL_CAPACITY:
            raise ValueError(f"{n_frames} frames need {levels} levels; at most {LEVEL_CAPACITY}")
        if levels > self.count.size:  # a new level starts empty, before the frames that give it its first value
            self.count = np.concatenate([self.count, np.zeros(levels - self.count.size, np.int64)])

    def advance(self, n_new: int) -> None:
        """Count ``n_new`` frames pushed to every pixel slice."""
        c = self.count
        n = int(c[0]) + int(n_new)
        for level in range(c.size):
            c[level] = n
            n //= 2

    def result(self, max_lag: int | None = None, normalization: str = "symmetric",
               saturation: float | None = None) -> G2Result:
        """g2 of the frames so far, as :func:`ecm_dask.kernels.g2.g2` (``"multitau"``) would give for them."""
        n_t = self.n_frames
        if n_t < 2:
            raise ValueError(f"{n_t} frame(s) so far; a correlation needs at least 2")
        lags = multitau_lags(n_t, self.m, max_lag)
        n_levels = max(lags.n_levels, 1)
        weights = _level_weights(np.ones(n_t), lags)
        sat = self.saturation if saturation is None else saturation
        n_p, n_ch = self.n_pixels, lags.lag.size
        out, lag0 = np.empty((n_p, n_ch), np.float32), np.empty(n_p, np.float32)
        status, mean = np.empty(n_p, np.uint8), np.empty(n_p)
        chunk = min(RESULT_CHUNK, max(n_p, 1))
        shape = (chunk, n_levels, 2 * self.m)
        num, head, tail, total = np.empty(shape), np.empty(shape), np.empty(shape), np.empty((chunk, n_levels))
        for p0 in range(0, n_p, chunk):
            p1 = min(n_p, p0 + chunk)
            n = p1 - p0
            _gather(self.ring, self.num, self.head, self.total, self.count, n_levels, p0, p1, num, head, tail, total)
            finish_multitau(num[:n], head[:n], tail[:n], total[:n], self.maxval[p0:p1], lags, weights, normalization,
                            sat, out[p0:p1], lag0[p0:p1], status[p0:p1], mean[p0:p1])
        return _pack(out, lag0, lags.lag.astype(np.float64), weights[0], mean, status, (n_p,))

    def to_dict(self) -> dict:
        L = self.count.size
        return {"m": self.m, "count": self.count, "ring": self.ring[:L], "num": self.num[:L], "head": self.head[:L],
                "total": self.total[:L], "maxval": self.maxval,
                "saturation": np.nan if self.saturation is None else self.saturation}

    @classmethod
    def from_dict(cls, d) -> "MultiTauState":
        m = int(d["m"])
        count = np.array(d["count"], dtype=np.int64)
        L = count.size
        ring = np.asarray(d["ring"])
        if (ring.ndim != 3 or ring.shape[0] != L or ring.shape[2] != 2 * m or L > LEVEL_CAPACITY
                or any(np.shape(d[k]) != ring.shape for k in ("num", "head"))
                or np.shape(d["total"]) != ring.shape[:2] or np.shape(d["maxval"]) != ring.shape[1:2]):
            raise ValueError("inconsistent multi-tau state arrays")
        st = cls.empty(ring.shape[1], m)
        st.count = count
        for k in ("ring", "num", "head", "total"):
            getattr(st, k)[:L] = d[k]
        st.maxval[:] = d["maxval"]
        sat = float(d.get("saturation", np.nan))
        st.saturation = None if np.isnan(sat) else sat
        return st


__all__ = ["MultiTauState", "PIXEL_OK"]
