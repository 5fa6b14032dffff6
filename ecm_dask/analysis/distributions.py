"""Distributions of τ and β per region, with bootstrap confidence intervals, and region comparisons.

Numerics (plain NumPy on 1-D samples): :func:`describe` (median, IQR, std), :func:`bootstrap_ci`
(percentile intervals, seeded, batched so memory stays bounded), :func:`permutation_pvalue`.
Labelled layer: :func:`region_statistics` and :func:`compare_regions` take the maps Dataset (root of
``results.zarr``) and a region map (:func:`ecm_dask.analysis.regions.classify`, or the synthetic truth) and
return Datasets on ``region`` / ``quantity`` dims.

Only pixels with ``status == FIT_OK`` (when the maps carry a status), finite ``tau > 0`` and finite ``beta``
enter.  τ is summarised as ``log10(tau / s)``: its median ``m`` gives the median τ as ``10**m`` seconds.
Pixels are treated as independent samples: neighbouring pixels are correlated (domains, pooling), so the
intervals describe the sampling of *these* pixels, and are too narrow as statements about the material when
the region spans few correlation lengths.
"""

from __future__ import annotations

import numpy as np

from .. import schema as S
from ..errors import InputError

__all__ = ["bootstrap_ci", "compare_regions", "describe", "permutation_pvalue", "region_statistics"]

STATISTICS = ("median", "iqr", "std")
ESTIMATES = ("value", "ci_low", "ci_high")
#: default histogram edges: log10(tau / s) in 0.05-decade bins, beta in 0.025 bins
LOG10_TAU_EDGES = np.round(np.arange(-3.0, 5.0 + 1e-9, 0.05), 10)
BETA_EDGES = np.round(np.arange(0.0, 2.5 + 1e-9, 0.025), 10)
#: elements of one bootstrap/permutation batch (float64): 4 MiB.  Batches of this size are reused from the
#: allocator's heap; 32 MiB ones were mapped and faulted in afresh each time (results stage: 3.4-4.0 s -> 1.4-1.6 s
#: for the distributions of a 631 x 861 map, same numbers: the random stream does not depend on the batch size)
_BATCH = 1 << 19


# ------------------------------------------------------------------------------------------ numerics
def describe(x, axis: int = -1) -> np.ndarray:
    """``[median, IQR, std (ddof=1)]`` of ``x`` along ``axis`` (stacked on a new first axis)."""
    x = np.asarray(x, dtype=np.float64)
    q25, q50, q75 = np.percentile(x, [25.0, 50.0, 75.0], axis=axis)
    sd = np.std(x, axis=axis, ddof=1) if x.shape[axis] > 1 else np.full(q50.shape, np.nan)
    return np.stack([q50, q75 - q25, sd])


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_level(ci: float) -> float:
    if not 0 < ci < 1:
        raise InputError(f"ci must be a confidence level in (0, 1), got {ci!r}")
    return float(ci)


def bootstrap_ci(samples, statistic=describe, *, n_boot: int = 1000, ci: float = 0.95, seed=0):
    """Percentile bootstrap of ``statistic`` over one or several independent samples.

    Parameters
    ----------
    samples : 1-D array or sequence of 1-D arrays
        Each sample is resampled with replacement on its own (independent groups).
    statistic : callable
        ``statistic(*resampled, axis=-1) -> array (k, batch)`` for resampled arrays ``(batch, n_i)``;
        called on the original samples (as ``(1, n_i)``) for the point estimate.  Default :func:`describe`.
    n_boot : int
        Bootstrap replicates.
    ci : float
        Confidence level of the percentile interval.
    seed : int or numpy.random.Generator

    Returns
    -------
    (value, low, high) : three float arrays of shape ``(k,)``.
    """
    if isinstance(samples, np.ndarray) and samples.dtype != object:
        groups = [np.asarray(samples, dtype=np.float64)]
    else:
        groups = [np.asarray(s, dtype=np.float64) for s in samples]
    if any(g.ndim != 1 or g.size == 0 for g in groups):
        raise InputError("bootstrap_ci: every sample must be a non-empty 1-D array")
    ci = _check_level(ci)
    n_boot = int(n_boot)
    if n_boot < 10:
        raise InputError(f"n_boot must be >= 10, got {n_boot}")
    rng = _rng(seed)
    value = np.asarray(statistic(*[g[None, :] for g in groups], axis=-1))[:, 0]
    batch = max(1, _BATCH // sum(g.size for g in groups))
    reps = []
    for a in range(0, n_boot, batch):
        b = min(a + batch, n_boot)
        res = [g[rng.integers(0, g.size, size=(b - a, g.size))] for g in groups]
        reps.append(np.asarray(statistic(*res, axis=-1)))
    reps = np.concatenate(reps, axis=1)
    alpha = 0.5 * (1.0 - ci)
    lo, hi = np.nanpercentile(reps, [100 * alpha, 100 * (1 - alpha)], axis=1)
    return value, lo, hi


def permutation_pvalue(a, b, statistic, *, n_perm: int = 2000, seed=0) -> float:
    """Two-sided permutation p-value of ``statistic(a, b, axis=-1)`` (a scalar per row) under exchangeability.

    ``p = (1 + #{|s_perm| >= |s_obs|}) / (1 + n_perm)``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    rng = _rng(seed)
    obs = abs(float(np.asarray(statistic(a[None], b[None], axis=-1)).ravel()[0]))
    pooled = np.concatenate([a, b])
    batch = max(1, _BATCH // pooled.size)
    hits = 0
    for start in range(0, int(n_perm), batch):
        k = min(batch, int(n_perm) - start)
        perm = rng.permuted(np.broadcast_to(pooled, (k, pooled.size)), axis=1)
        s = np.abs(np.asarray(statistic(perm[:, :a.size], perm[:, a.size:], axis=-1)).ravel())
        hits += int(np.sum(s >= obs * (1 - 1e-12)))
    return (1.0 + hits) / (1.0 + int(n_perm))


# ------------------------------------------------------------------------------------- pixel samples
def _ok_pixels(maps) -> np.ndarray:
    """Bool (y, x): pixels whose fit can be used."""
    from ..kernels.kww import FIT_OK

    for name in ("tau", "beta"):
        if name not in maps:
            raise InputError(f"maps has no variable {name!r} (found {sorted(map(str, maps.data_vars))})")
    tau = np.asarray(maps["tau"].values, dtype=np.float64)
    beta = np.asarray(maps["beta"].values, dtype=np.float64)
    ok = np.isfinite(tau) & (tau > 0) & np.isfinite(beta)
    if "status" in maps:
        ok &= np.asarray(maps["status"].values) == FIT_OK
    return ok


def _region_codes(regions, shape) -> np.ndarray | None:
    if regions is None:
        return None
    da = regions[S.TRUTH_REGION] if hasattr(regions, "data_vars") else regions
    codes = np.asarray(getattr(da, "values", da))
    if codes.shape != tuple(shape):
        raise InputError(f"the region map has shape {codes.shape}, the maps {tuple(shape)}: they must share the grid")
    return codes


def _code(name) -> int:
    if isinstance(name, (int, np.integer)):
        return int(name)
    for c, n in S.REGION_NAMES.items():
        if n == name:
            return c
    raise InputError(f"unknown region {name!r}; known: {list(S.REGION_NAMES.values())}")


def region_samples(maps, regions, name) -> tuple[np.ndarray, np.ndarray]:
    """``(log10 tau, beta)`` of the usable pixels of region ``name`` (``"all"``: every usable pixel)."""
    ok = _ok_pixels(maps)
    codes = _region_codes(regions, ok.shape)
    sel = ok if (codes is None or name == "all") else ok & (codes == _code(name))
    tau = np.asarray(maps["tau"].values, dtype=np.float64)[sel]
    beta = np.asarray(maps["beta"].values, dtype=np.float64)[sel]
    return np.log10(tau), beta


# ------------------------------------------------------------------------------------------ labelled
def region_statistics(maps, regions=None, *, names=None, n_boot: int = 1000, ci: float = 0.95, seed=0,
                      tau_edges=LOG10_TAU_EDGES, beta_edges=BETA_EDGES, min_pixels: int = 3):
    """Median, IQR and std of ``log10 tau`` and ``beta`` per region, with bootstrap intervals and histograms.

    Parameters
    ----------
    maps : xarray.Dataset
        ``tau`` (s), ``beta`` and optionally ``status`` on (y, x), e.g. ``xr.open_zarr("results.zarr")``.
    regions : Dataset with ``region``, DataArray of region codes, or None
        Region map on the same grid (:func:`~ecm_dask.analysis.regions.classify`).  None: one region ``all``.
    names : sequence of str, optional
        Regions to report, in this order (default bulk, surface, crystal; ``("all",)`` without ``regions``).
        Listed regions with fewer than ``min_pixels`` usable pixels get NaN statistics.
    n_boot, ci, seed
        Bootstrap replicates, confidence level, seed (each region gets its own stream from the seed).
    tau_edges, beta_edges : 1-D arrays
        Histogram bin edges of ``log10(tau / s)`` and ``beta``.

    Returns
    -------
    xarray.Dataset with dims ``region``, ``statistic`` (median, iqr, std), ``estimate`` (value, ci_low, ci_high):
    ``log10_tau``, ``beta`` (region, statistic, estimate), ``tau_median`` (region, estimate) in s, ``n`` (region),
    ``log10_tau_hist`` (region, log10_tau_bin) and ``beta_hist`` (region, beta_bin) counts (bin centres as
    coordinates, edges in the attrs).  Example: ``stats.log10_tau.sel(region="surface", statistic="iqr")``.
    """
    import xarray as xr

    if names is None:
        names = ("all",) if regions is None else tuple(S.REGION_NAMES[c] for c in
                                                       (S.REGION_BULK, S.REGION_SURFACE, S.REGION_CRYSTAL))
    names = tuple(str(n) for n in names)
    tau_edges = np.asarray(tau_edges, dtype=np.float64)
    beta_edges = np.asarray(beta_edges, dtype=np.float64)
    seeds = np.random.SeedSequence(seed if isinstance(seed, (int, np.integer)) else 0).spawn(len(names))
    nr, ns, ne = len(names), len(STATISTICS), len(ESTIMATES)
    out = {"log10_tau": np.full((nr, ns, ne), np.nan), "beta": np.full((nr, ns, ne), np.nan)}
    n = np.zeros(nr, dtype=np.int64)
    h_tau = np.zeros((nr, tau_edges.size - 1), dtype=np.int64)
    h_beta = np.zeros((nr, beta_edges.size - 1), dtype=np.int64)
    for i, name in enumerate(names):
        lt, be = region_samples(maps, regions, name)
        n[i] = lt.size
        h_tau[i] = np.histogram(lt, bins=tau_edges)[0]
        h_beta[i] = np.histogram(be, bins=beta_edges)[0]
        if lt.size < max(int(min_pixels), 2):
            continue
        rng = np.random.default_rng(seeds[i])
        idx_seed = int(rng.integers(2**63))
        for key, x in (("log10_tau", lt), ("beta", be)):
            # the same seed for both quantities: paired resamples of the same pixels
            out[key][i] = np.stack(bootstrap_ci(x, n_boot=n_boot, ci=ci, seed=idx_seed), axis=-1)
    dims = (S.REGION, S.STATISTIC, S.ESTIMATE)
    ds = xr.Dataset(
        {"log10_tau": (dims, out["log10_tau"], {"long_name": "log10(tau / s)", "units": "1"}),
         "beta": (dims, out["beta"], {"long_name": "stretching exponent", "units": "1"}),
         "tau_median": ((S.REGION, S.ESTIMATE), 10.0 ** out["log10_tau"][:, 0, :],
                        {"long_name": "median relaxation time", "units": "s"}),
         "n": ((S.REGION,), n, {"long_name": "usable pixels (status ok)"}),
         "log10_tau_hist": ((S.REGION, S.LOG10_TAU_BIN), h_tau, {"edges": tau_edges.tolist()}),
         "beta_hist": ((S.REGION, S.BETA_BIN), h_beta, {"edges": beta_edges.tolist()})},
        coords={S.REGION: list(names), S.STATISTIC: list(STATISTICS), S.ESTIMATE: list(ESTIMATES),
                S.LOG10_TAU_BIN: 0.5 * (tau_edges[:-1] + tau_edges[1:]),
                S.BETA_BIN: 0.5 * (beta_edges[:-1] + beta_edges[1:])},
        attrs={"n_boot": int(n_boot), "ci": float(ci), "seed": seed if isinstance(seed, int) else None,
               "interval": "percentile bootstrap over pixels (treated as independent)",
               "std_ddof": 1})
    return ds


def _median_diff(a, b, axis=-1):
    return np.median(a, axis=axis) - np.median(b, axis=axis)


def _width(x, axis, how):
    if how == "iqr":
        q25, q75 = np.percentile(x, [25.0, 75.0], axis=axis)
        return q75 - q25
    return np.std(x, axis=axis, ddof=1)


def compare_regions(maps, regions, a: str = "surface", b: str = "bulk", *, width: str = "iqr",
                    n_boot: int = 2000, n_perm: int = 2000, ci: float = 0.95, alpha: float = 0.05, seed=0):
    """Compare two regions: ratio of median τ, difference of median β, differences of the widths.

    Parameters
    ----------
    maps, regions
        As in :func:`region_statistics`.
    a, b : str
        Region names (``schema.REGION_NAMES`` values) or codes.
    width : ``"iqr"`` or ``"std"``
        Width of the ``log10 tau`` and ``beta`` distributions.
    n_boot, n_perm : int
        Bootstrap replicates (each region resampled on its own) and label permutations.
    ci, alpha : float
        Confidence level of the intervals; significance level of the p-values.
    seed : int

    Returns
    -------
    xarray.Dataset on dim ``quantity`` = ``tau_ratio`` (median τ of a / median τ of b), ``beta_median_diff``,
    ``log10_tau_width_diff``, ``beta_width_diff`` (a minus b): variables ``value``, ``ci_low``, ``ci_high``
    (percentile bootstrap), ``p_value`` (two-sided permutation test: of the medians for the first two; for
    the widths the values are centred on their region's median first, so only the spread is tested) and
    ``significant`` (``p_value < alpha``).  Attributes: ``a``, ``b``, ``n_a``, ``n_b``, ``width``.
    """
    import xarray as xr

    if width not in ("iqr", "std"):
        raise InputError(f"width must be 'iqr' or 'std', got {width!r}")
    ta, ba = region_samples(maps, regions, a)
    tb, bb = region_samples(maps, regions, b)
    for name, x in ((a, ta), (b, tb)):
        if x.size < 3:
            raise InputError(f"region {name!r} has {x.size} usable pixel(s) (status ok); need at least 3 to compare")
    ss = np.random.SeedSequence(seed).spawn(8)

    def wdiff(x, y, axis=-1):
        return _width(x, axis, width) - _width(y, axis, width)

    def stat_median(x, y, axis=-1):
        return _median_diff(x, y, axis)[None]

    def stat_width(x, y, axis=-1):
        return wdiff(x, y, axis)[None]

    def row(k, xa, xb, stat):
        v, lo, hi = bootstrap_ci([xa, xb], stat, n_boot=n_boot, ci=ci, seed=np.random.default_rng(ss[k]))
        if stat is stat_width:
            ca, cb = xa - np.median(xa), xb - np.median(xb)
        else:
            ca, cb = xa, xb
        p = permutation_pvalue(ca, cb, stat, n_perm=n_perm, seed=np.random.default_rng(ss[4 + k]))
        return float(v[0]), float(lo[0]), float(hi[0]), p

    from concurrent.futures import ThreadPoolExecutor

    jobs = ((ta, tb, stat_median), (ba, bb, stat_median), (ta, tb, stat_width), (ba, bb, stat_width))
    with ThreadPoolExecutor(2) as pool:  # each row has its own seeded streams: the same numbers in any order
        rows = np.array(list(pool.map(lambda j: row(j[0], *j[1]), enumerate(jobs))))
    rows[0, :3] = 10.0 ** rows[0, :3]  # median log10 tau difference -> ratio of median tau
    quantities = ["tau_ratio", "beta_median_diff", "log10_tau_width_diff", "beta_width_diff"]
    return xr.Dataset(
        {"value": (S.QUANTITY, rows[:, 0]), "ci_low": (S.QUANTITY, rows[:, 1]), "ci_high": (S.QUANTITY, rows[:, 2]),
         "p_value": (S.QUANTITY, rows[:, 3]), "significant": (S.QUANTITY, rows[:, 3] < alpha)},
        coords={S.QUANTITY: quantities},
        attrs={"a": str(a), "b": str(b), "n_a": int(ta.size), "n_b": int(tb.size), "width": width,
               "n_boot": int(n_boot), "n_perm": int(n_perm), "ci": float(ci), "alpha": float(alpha),
               "description": "tau_ratio = median tau(a) / median tau(b); the others are a minus b"})
