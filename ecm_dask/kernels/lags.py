"""Lag grids for g2: multi-tau channels and log-spaced bins of linear lags (pure functions of sizes).

Multi-tau (``m`` points per octave)
    level 0: lags ``1 .. 2m-1`` on the raw frames; level ``l >= 1``: frames averaged in pairs ``l`` times,
    lags ``k * 2**l`` for ``k = m .. 2m-1``.  Every octave above ``m`` holds ``m`` channels.

Log bins of linear lags (same density)
    every lag its own bin while the log spacing is under one frame, then ``m`` bins per octave with
    integer edges; a bin's lag is the mean of the integer lags it holds.

Lag 0 is never part of either grid: it carries shot noise and is reported separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def default_max_lag(n_frames: int) -> int:
    """Half the series (in frames), at least 1."""
    return max(1, int(n_frames) // 2)


def _check(n_frames: int, points_per_octave: int, max_lag: int | None) -> int:
    if int(n_frames) < 2:
        raise ValueError(f"a correlation needs at least 2 frames, got {n_frames}")
    if int(points_per_octave) < 1:
        raise ValueError(f"points_per_octave must be >= 1, got {points_per_octave}")
    max_lag = default_max_lag(n_frames) if max_lag is None else int(max_lag)
    if not 1 <= max_lag <= int(n_frames) - 1:
        raise ValueError(f"max_lag must be in 1..{int(n_frames) - 1} frames for {n_frames} frames, got {max_lag}")
    return max_lag


@dataclass(frozen=True)
class MultiTauLags:
    """Channels of a multi-tau correlator.

    Attributes
    ----------
    level : (n,) int   averaging level of each channel (frames binned by ``2**level``)
    k : (n,) int       lag in binned frames at that level
    lag : (n,) int     lag in raw frames, ``k * 2**level``
    m : int            points per octave
    """

    level: np.ndarray
    k: np.ndarray
    lag: np.ndarray
    m: int

    @property
    def n_levels(self) -> int:
        return int(self.level.max()) + 1 if self.level.size else 0

    def level_range(self, level: int) -> tuple[int, int]:
        """``(k_min, k_max_exclusive)`` of the channels at ``level`` (empty range if none)."""
        ks = self.k[self.level == level]
        return (int(ks.min()), int(ks.max()) + 1) if ks.size else (0, 0)


def multitau_lags(n_frames: int, points_per_octave: int = 8, max_lag: int | None = None) -> MultiTauLags:
    """Multi-tau channels up to ``max_lag`` frames (default half the series)."""
    max_lag = _check(n_frames, points_per_octave, max_lag)
    m = int(points_per_octave)
    levels, ks = [], []
    level, n_l = 0, int(n_frames)
    while n_l >= 2:
        k_lo = 1 if level == 0 else m
        for k in range(k_lo, 2 * m):
            if k >= n_l or k << level > max_lag:
                break
            levels.append(level)
            ks.append(k)
        if (2 * m) << level > max_lag:  # next level would start beyond max_lag
            break
        level += 1
        n_l //= 2
    level_a = np.asarray(levels, dtype=np.int64)
    k_a = np.asarray(ks, dtype=np.int64)
    return MultiTauLags(level=level_a, k=k_a, lag=k_a << level_a, m=m)


@dataclass(frozen=True)
class LagBins:
    """Log-spaced bins of integer lags ``[edges[i], edges[i+1])``, lag 0 excluded.

    Attributes
    ----------
    edges : (n + 1,) int
    lag : (n,) float  mean of the integer lags in each bin
    """

    edges: np.ndarray
    lag: np.ndarray

    @property
    def max_lag(self) -> int:
        return int(self.edges[-1]) - 1

    def bin_of_lag(self) -> np.ndarray:
        """For lags ``1 .. max_lag``: the index of the bin holding each."""
        counts = np.diff(self.edges)
        return np.repeat(np.arange(counts.size), counts)


def log_lag_bins(n_frames: int, points_per_octave: int = 8, max_lag: int | None = None) -> LagBins:
    """Log-spaced bins of linear lags ``1 .. max_lag`` with ``points_per_octave`` bins per octave."""
    max_lag = _check(n_frames, points_per_octave, max_lag)
    n_oct = np.log2(max_lag + 1)
    grid = np.exp2(np.arange(0, n_oct * points_per_octave + 1) / points_per_octave)
    edges = np.unique(np.concatenate([np.round(grid).astype(np.int64), [1, max_lag + 1]]))
    edges = edges[(edges >= 1) & (edges <= max_lag + 1)]
    lag = np.array([(a + b - 1) / 2.0 for a, b in zip(edges[:-1], edges[1:])])
    return LagBins(edges=edges, lag=lag)
