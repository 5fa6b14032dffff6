"""Hostile and degenerate input (issue 8, item 3): property-based tests (hypothesis, derandomized) and targeted
cases on the g2 kernel, the KWW fits, drift, the readers/ingest and ops.correlate.

Every case must end in a clear ecm_dask error naming the file/frame/parameter, or in a documented NaN with a
status code; never a crash, a hang or a silently wrong number.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import ecm_cli, one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ecm_dask.errors import EcmError, InputError, MetadataError, ParameterError
from ecm_dask.kernels import drift as KD
from ecm_dask.kernels.g2 import PIXEL_DARK, PIXEL_NONFINITE, PIXEL_OK, PIXEL_SATURATED, PIXEL_STATUS, g2
from ecm_dask.kernels.kww import (
    FIT_BAD_INPUT,
    FIT_NO_DECAY,
    FIT_OK,
    FIT_STATUS,
    FIT_STATUS2,
    FIT_TOO_FEW_POINTS,
    fit_kww,
    kww_model,
)
from ecm_dask.kernels.kww2 import fit_kww2
from ecm_dask.kernels.lags import log_lag_bins, multitau_lags

#: reproducible in CI: derandomized, no deadline (numba compiles on first use), no example database
HOSTILE = settings(derandomize=True, deadline=None, database=None, max_examples=40,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
F32_MAX = float(np.finfo(np.float32).max)
METHODS = ("multitau", "fft")
NORMS = ("symmetric", "standard")


# ------------------------------------------------------------------------------ g2: float64 reference
def _ref_linear(x, w, k, norm, m_all):
    """Estimator at linear lag k on series x (P, T) with weights w: (g2, pairs, first, last)."""
    ww = w[:-k] * w[k:]
    pairs = ww.sum()
    num = (x[:, :-k] * x[:, k:] * ww).sum(1) / pairs if pairs else np.full(x.shape[0], np.nan)
    first = (x[:, :-k] * w[:-k]).sum(1) / w[:-k].sum() if w[:-k].sum() else np.full(x.shape[0], np.nan)
    last = (x[:, k:] * w[k:]).sum(1) / w[k:].sum() if w[k:].sum() else np.full(x.shape[0], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        den = first * last if norm == "symmetric" else m_all**2
        return num / den, pairs, first, last


def reference_g2(x, w, method, norm, max_lag=None, ppo=8):
    """Direct float64 sums: (g2 (P, n), pairs (n,), lag0 (P,), expected status (P,)).

    Status rules (the kernel's documented precedence): non-finite input, mean <= 0 (dark), a valid frame
    at/above the dtype maximum (saturated), a window mean <= 0 at a lag point with pairs (dark), a g2 not
    representable in float32 (non-finite)."""
    x = np.asarray(x)
    sat = float(np.iinfo(x.dtype).max) if np.issubdtype(x.dtype, np.integer) else None
    xf = np.where(w > 0, x.astype(np.float64), 0.0)
    n_t = x.shape[1]
    valid = x[:, w > 0].astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        m_all = valid.mean(1)
        lag0 = (valid**2).mean(1) / m_all**2
    empty = np.zeros(x.shape[0], dtype=bool)
    if method == "fft":
        bins = log_lag_bins(n_t, ppo, max_lag)
        lin = [_ref_linear(xf, w, k, norm, m_all) for k in range(1, bins.max_lag + 1)]
        out, pairs = np.empty((x.shape[0], bins.lag.size)), np.empty(bins.lag.size)
        for b, (lo, hi) in enumerate(zip(bins.edges[:-1], bins.edges[1:])):
            pk = np.array([lin[k - 1][1] for k in range(lo, hi)])
            gk = np.stack([lin[k - 1][0] for k in range(lo, hi)], axis=1)
            pairs[b] = pk.sum()
            with np.errstate(invalid="ignore"):
                out[:, b] = np.where(pk > 0, gk * pk, 0.0).sum(1) / pk.sum()
        if norm == "symmetric":
            for g, pk, first, last in lin:
                if pk > 0:
                    empty |= ~(first > 0) | ~(last > 0)
    else:
        grid = multitau_lags(n_t, ppo, max_lag)
        xs, ws = xf, w.astype(np.float64)
        out, pairs = np.empty((x.shape[0], grid.lag.size)), np.empty(grid.lag.size)
        for level in range(grid.n_levels):
            if level:
                h = xs.shape[1] // 2
                xs, ws = 0.5 * (xs[:, 0:2 * h:2] + xs[:, 1:2 * h:2]), 0.5 * (ws[0:2 * h:2] + ws[1:2 * h:2])
            for c in np.flatnonzero(grid.level == level):
                k = int(grid.k[c])
                pairs[c] = (ws[:-k] * ws[k:]).sum()
                with np.errstate(divide="ignore", invalid="ignore"):
                    num = (xs[:, :-k] * xs[:, k:]).sum(1) / pairs[c]
                    first, last = xs[:, :-k].sum(1) / ws[:-k].sum(), xs[:, k:].sum(1) / ws[k:].sum()
                    out[:, c] = num / (first * last if norm == "symmetric" else m_all**2)
                if norm == "symmetric" and pairs[c] > 0:
                    empty |= ~(first > 0) | ~(last > 0)
    status = np.zeros(x.shape[0], dtype=np.uint8)
    status[empty] = PIXEL_DARK
    if sat is not None:
        status[(valid >= sat).any(1)] = PIXEL_SATURATED
    status[~(m_all > 0)] = PIXEL_DARK
    status[~np.isfinite(valid).all(1)] = PIXEL_NONFINITE
    with np.errstate(invalid="ignore"):
        huge = (~(np.abs(out[:, pairs > 0]) < F32_MAX)).any(1) | ~(np.abs(lag0) < F32_MAX)
    status[(status == PIXEL_OK) & huge] = PIXEL_NONFINITE
    return out, pairs, lag0, status


def check_g2_contract(r, n_pix):
    """What every g2 result promises, whatever the input."""
    assert r.g2.shape == (n_pix, r.lag.size) and r.status.shape == (n_pix,)
    assert set(np.unique(r.status)) <= set(PIXEL_STATUS)
    ok = r.status == PIXEL_OK
    has_pairs = r.pairs > 0
    assert np.isfinite(r.g2[ok][:, has_pairs]).all(), "an ok pixel has a non-finite g2"
    assert np.isfinite(r.g2_lag0[ok]).all()
    assert np.isnan(r.g2[~ok]).all() and np.isnan(r.g2_lag0[~ok]).all(), "a flagged pixel has a number"
    assert np.isnan(r.g2[:, ~has_pairs]).all(), "a lag point without frame pairs has a number"


@st.composite
def count_blocks(draw):
    """(P, T) counts: uint16 over the full range (incl. 65535 and values near it) or float32 counts, with
    zeros, constant pixels, and sparse pixels that are 0 except in a few frames."""
    n_p = draw(st.integers(1, 4))
    n_t = draw(st.integers(2, 40))
    dtype = draw(st.sampled_from([np.uint16, np.float32]))
    if dtype == np.uint16:
        elems = st.one_of(st.integers(0, 5), st.integers(65500, 65535), st.integers(0, 65535))
    else:
        elems = st.one_of(st.integers(0, 5), st.integers(0, 4_000_000)).map(lambda v: v * 0.25)
    x = draw(hnp.arrays(dtype, (n_p, n_t), elements=elems))
    kind = draw(st.sampled_from(["random", "constant", "zero", "sparse"]))
    if kind == "constant":
        x[0] = x[0, 0]
    elif kind == "zero":
        x[0] = 0
    elif kind == "sparse":
        x[0] = 0
        x[0, draw(st.integers(0, n_t - 1))] = 3
    mask = None
    if n_t > 3 and draw(st.booleans()):
        mask = np.array(draw(st.lists(st.booleans(), min_size=n_t, max_size=n_t)))
        if mask.sum() < 2:
            mask[:2] = True
    max_lag = draw(st.one_of(st.none(), st.integers(1, n_t - 1)))
    return x, mask, max_lag


@HOSTILE
@given(case=count_blocks(), method=st.sampled_from(METHODS), norm=st.sampled_from(NORMS))
def test_g2_matches_float64_direct_sums_and_flags_degenerate_pixels(case, method, norm):
    x, mask, max_lag = case
    r = g2(x, method=method, normalization=norm, frame_mask=mask, max_lag=max_lag)
    check_g2_contract(r, x.shape[0])
    w = np.ones(x.shape[1]) if mask is None else mask.astype(np.float64)
    ref, pairs, lag0, status = reference_g2(x, w, method, norm, max_lag)
    np.testing.assert_array_equal(r.pairs, pairs)
    np.testing.assert_array_equal(r.status, status)
    ok = status == PIXEL_OK
    has = pairs > 0
    # float32 output of float64 sums: 1e-6 relative; the FFT adds ~1e-16 of the signal energy per point
    atol = 1e-12 * x.shape[1] * np.abs(lag0[ok])[:, None]
    np.testing.assert_allclose(r.g2[ok][:, has], ref[ok][:, has], rtol=2e-6, atol=atol.max() if ok.any() else 0)
    np.testing.assert_allclose(r.g2_lag0[ok], lag0[ok], rtol=2e-6)
    if x.shape[1] > 2:  # a constant pixel decorrelates nothing: g2 == 1 (float32) at every lag with pairs
        const = ok & (x == x[:, :1]).all(1)
        assert (r.g2[const][:, has] == 1.0).all()


@HOSTILE
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(2, 33)),
                    elements=st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)),
       method=st.sampled_from(METHODS), norm=st.sampled_from(NORMS))
def test_g2_of_arbitrary_floats_never_raises_and_keeps_its_contract(x, method, norm):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow/invalid warnings leak to the user either
        r = g2(x, method=method, normalization=norm)
    check_g2_contract(r, x.shape[0])
    assert (r.status[~np.isfinite(x).all(1)] == PIXEL_NONFINITE).all()
    assert (r.status[np.isfinite(x).all(1) & ~(x.astype(np.float64).mean(1) > 0)] == PIXEL_DARK).all()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("norm", NORMS)
def test_g2_targeted_degenerate_pixels(method, norm):
    x = np.full((9, 64), 50.0)
    x[0] = np.random.default_rng(0).poisson(50, 64)  # ok
    x[1] = 0.0  # dark
    x[2, 7] = np.nan  # dead
    x[3, 9] = -np.inf  # dead
    x[4, :] = 0.0
    x[4, -1] = 5.0  # counts only in the last frame: the first window of every lag is empty
    x[5] *= 1e200  # float64 counts whose products overflow
    x[6] *= 1e-200  # ... or underflow
    x[7] = -3.0  # negative mean
    # x[8]: constant
    r = g2(x, method=method, normalization=norm)
    check_g2_contract(r, 9)
    window = PIXEL_DARK if norm == "symmetric" else PIXEL_OK  # the standard estimator only needs <I> > 0
    assert list(r.status) == [PIXEL_OK, PIXEL_DARK, PIXEL_NONFINITE, PIXEL_NONFINITE, window, PIXEL_NONFINITE,
                              PIXEL_NONFINITE, PIXEL_DARK, PIXEL_OK]
    assert (r.g2[8] == 1.0).all()
    if norm == "standard":  # I(t) I(t+k) = 0 for every pair: g2 = 0 exactly (up to FFT rounding)
        np.testing.assert_allclose(r.g2[4], 0.0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_g2_uint16_near_full_scale_does_not_overflow(method):
    rng = np.random.default_rng(3)
    x = rng.integers(65000, 65535, (4, 300), dtype=np.uint16)  # 65535 excluded: that is saturation
    r = g2(x, method=method)
    assert (r.status == PIXEL_OK).all()
    ref, _, lag0, _ = reference_g2(x, np.ones(300), method, "symmetric")
    np.testing.assert_allclose(r.g2, ref, rtol=2e-6)
    assert np.abs(r.g2 - 1).max() < 1e-3  # nearly constant: g2 ~ 1, not wrapped-around garbage
    x[2, 100] = 65535
    assert g2(x, method=method).status[2] == PIXEL_SATURATED


@pytest.mark.parametrize("method", METHODS)
def test_g2_shapes_two_frames_one_pixel_empty_block_and_max_lag(method):
    r = g2(np.array([[2.0, 4.0]]), method=method, normalization="standard")
    np.testing.assert_allclose(r.g2, [[8.0 / 9.0]])  # 2*4 / 3^2
    r = g2(np.ones((3, 5, 7, 2)), method=method, axis=-1)  # odd pixel shape, T = 2
    assert r.g2.shape == (3, 5, 7, 1) and (r.g2 == 1).all()
    r = g2(np.ones((0, 10)), method=method)  # zero pixels (an empty dask block): empty result, no crash
    assert r.g2.shape == (0, r.lag.size)
    with pytest.raises(ValueError, match="max_lag must be in 1..9"):  # series shorter than the max lag
        g2(np.ones((2, 10)), method=method, max_lag=10)
    with pytest.raises(ValueError, match="at least 2 frames"):
        g2(np.ones((2, 1)), method=method)


# ------------------------------------------------------------------------------------------ KWW fits
LAG = np.geomspace(1.0, 1000.0, 24)
curve_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e30, 1e30),
                         st.sampled_from([0.0, 1.0, 1e30, -1e30, np.nan, np.inf]))


def check_fit_contract(fit, n_params, codes):
    assert set(np.unique(fit.status)) <= set(codes)
    gone = np.isin(fit.status, (FIT_BAD_INPUT, FIT_TOO_FEW_POINTS))
    fitted, not_fitted = np.isfinite(fit.params).all(axis=1), np.isnan(fit.params).all(axis=1)
    assert (fitted | not_fitted).all(), "parameters must be all finite (fitted) or all NaN (not fitted)"
    assert not_fitted[gone].all(), "bad input / too few points must have NaN parameters"
    # the only other curves left unfitted: flat or rising by the model-free rule (no decay, 0 iterations)
    assert (fit.status[not_fitted & ~gone] == FIT_NO_DECAY).all() and (fit.n_iter[not_fitted & ~gone] == 0).all()
    ok = fit.status == FIT_OK
    assert np.isfinite(fit.errors[ok]).all() and np.isfinite(fit.chi2_red[ok]).all()
    assert fit.params.shape[1] == n_params


@HOSTILE
@given(y=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 24)), elements=curve_values))
def test_fit_kww_on_arbitrary_curves_never_raises_and_status_matches_params(y):
    lag = LAG[:y.shape[1]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_kww(y, lag)
    check_fit_contract(fit, 4, FIT_STATUS)
    ok = fit.status == FIT_OK
    tau, contrast = fit.params[ok, 2], fit.params[ok, 1]
    assert ((tau > lag[0]) & (tau <= lag[-1])).all()
    assert (contrast > 2 * fit.errors[ok, 1]).all()
    finite_pts = np.isfinite(y).sum(1)
    assert (fit.status[finite_pts == 0] == FIT_BAD_INPUT).all()
    assert (fit.status[(finite_pts > 0) & (finite_pts < 5)] == FIT_TOO_FEW_POINTS).all()


@settings(HOSTILE, max_examples=12)
@given(y=hnp.arrays(np.float64, st.tuples(st.integers(1, 2), st.integers(1, 24)), elements=curve_values))
def test_fit_kww2_on_arbitrary_curves_never_raises_and_status_matches_params(y):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_kww2(y, LAG[:y.shape[1]])
    check_fit_contract(fit, 7, FIT_STATUS2)


@pytest.mark.parametrize("values", [[np.nan] * 24, [np.inf] * 24, [1.0] * 24, [0.0] * 24, [-1.0] * 24,
                                    [1.1], [1e30] * 24, list(1e30 * (1 + np.exp(-LAG / 10)))])
@pytest.mark.parametrize("fitter", [fit_kww, fit_kww2])
def test_fits_of_degenerate_curves_are_never_ok(values, fitter):
    y = np.asarray(values, dtype=np.float64)
    fit = fitter(y, LAG[:y.size])
    assert fit.status[0] != FIT_OK, (values[:3], fit.status, fit.params)
    check_fit_contract(fit, fit.params.shape[1], FIT_STATUS2)


@HOSTILE
@given(tau=st.floats(3.0, 300.0), beta=st.floats(0.3, 2.0), contrast=st.floats(0.01, 0.5),
       baseline=st.floats(0.9, 1.1))
def test_fit_kww_recovers_exact_kww_curves(tau, beta, contrast, baseline):
    lag = np.geomspace(1.0, 3000.0, 60)
    y = kww_model(lag, [baseline, contrast, tau, beta])
    fit = fit_kww(y, lag)
    assert fit.status[0] == FIT_OK
    np.testing.assert_allclose(fit.params[0], [baseline, contrast, tau, beta], rtol=1e-5)


# ---------------------------------------------------------------------------------------------- drift
def _band_limited(shape, seed):
    rng = np.random.default_rng(seed)
    f = np.fft.fft2(rng.normal(size=shape))
    fy, fx = np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1])
    return f * np.exp(-0.5 * (fy[:, None] ** 2 + fx[None, :] ** 2) / 0.12**2)


def _circular_shift(f, shape, dy, dx):
    """The band-limited image of spectrum ``f`` moved by +(dy, dx) circularly (Fourier shift theorem)."""
    fy, fx = np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1])
    return np.real(np.fft.ifft2(f * np.exp(-2j * np.pi * (fy[:, None] * dy + fx[None, :] * dx))))


@HOSTILE
@given(ny=st.integers(8, 41), nx=st.integers(8, 41), seed=st.integers(0, 10_000),
       dy=st.floats(-2.5, 2.5), dx=st.floats(-2.5, 2.5), integer=st.booleans())
def test_phase_correlation_recovers_circular_shifts(ny, nx, seed, dy, dx, integer):
    if integer:
        dy, dx = float(round(dy)), float(round(dx))
    f = _band_limited((ny, nx), seed)
    ref, img = _circular_shift(f, (ny, nx), 0, 0), _circular_shift(f, (ny, nx), dy, dx)
    gy, gx, peak = KD.phase_correlation(ref, img, window=None, upsample=50)
    tol = 1e-6 if integer else 0.05
    assert abs(gy - dy) < tol and abs(gx - dx) < tol, (gy, gx, dy, dx)
    assert peak > 0.9
    gy2, gx2, _ = KD.phase_correlation(ref * 1e300, img * 1e300, window=None, upsample=50)  # scale free
    assert abs(gy2 - gy) < 1e-9 and abs(gx2 - gx) < 1e-9


def test_drift_of_constant_images_is_an_error_or_a_flagged_frame():
    img = np.real(np.fft.ifft2(_band_limited((24, 24), 1)))
    for ref, other, who in ((np.zeros((24, 24)), img, "reference"), (img, np.full((24, 24), 3.0), "image")):
        with pytest.raises(ValueError, match=f"{who} is constant"):
            KD.phase_correlation(ref, other)
    with pytest.raises(ValueError, match="constant"):
        KD.estimate_shifts(np.ones((4, 16, 16)))
    frames = np.stack([np.roll(img, (t, -t), (0, 1)) for t in range(8)])
    frames[5] = 7.0  # beam blanked: no estimate, peak 0, flagged and interpolated, not a silent 0
    shifts, peaks = KD.estimate_shifts(frames, window=None)
    assert peaks[5] == 0.0 and (np.delete(peaks, 5) > 0.99).all()
    cleaned, outliers = KD.clean_shifts(shifts, peaks)
    assert outliers[5]
    np.testing.assert_allclose(cleaned, np.arange(8)[:, None] * [1.0, -1.0], atol=1e-6)


# -------------------------------------------------------------------------------------- readers/ingest
def _ingest(path, out, **kw):
    from ecm_dask.pipeline.ingest import ingest

    kw = {"frame_time_s": 0.1, "pixel_size_nm": 1.0, "progress": False, **kw}
    return ingest(path, out, **kw)


def _series(shape=(6, 7, 13), dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(dtype)


def _declare_shape(path, shape):
    """Rewrite the shape in a .npy header (same header length: padding spaces absorb the longer text)."""
    raw = path.read_bytes()
    hlen = int.from_bytes(raw[8:10], "little")
    header = raw[10:10 + hlen].decode("latin1")
    new = header.replace("(6, 7, 13)", str(tuple(shape)))
    new = new.rstrip("\n").rstrip(" ")
    new = new + " " * (hlen - 1 - len(new)) + "\n"
    assert len(new) == hlen
    path.write_bytes(raw[:10] + new.encode("latin1") + raw[10 + hlen:])


def test_npy_header_declaring_a_huge_shape_in_a_tiny_file(tmp_path):
    path = tmp_path / "huge.npy"
    np.save(path, _series())
    _declare_shape(path, (600000, 70000, 13))
    with pytest.raises(InputError, match=r"huge\.npy.*(truncated|corrupt)"):
        _ingest(path, tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_mrc_header_with_wrong_sizes(tmp_path):
    import mrcfile

    path = tmp_path / "bad.mrc"
    with mrcfile.new(path) as m:
        m.set_data(_series((4, 8, 8), np.int16))
    raw = bytearray(path.read_bytes())
    raw[0:4] = np.int32(4096).tobytes()  # nx far beyond the data
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"bad\.mrc.*(truncated|corrupt)"):
        _ingest(path, tmp_path / "s.zarr")
    raw[0:4] = np.int32(-8).tobytes()  # negative size
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"bad\.mrc"):
        _ingest(path, tmp_path / "s.zarr")
    raw[0:4] = np.int32(8).tobytes()
    raw[92:96] = np.int32(10**6).tobytes()  # extended header size (nsymbt) beyond the file
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"bad\.mrc.*(truncated|corrupt)"):
        _ingest(path, tmp_path / "s.zarr")


def test_truncated_tiff_and_2d_input_and_mixed_frame_shapes(tmp_path):
    import tifffile

    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, _series((10, 16, 16)), imagej=True)
    stack.write_bytes(stack.read_bytes()[:4000])  # ImageJ: contiguous pixels from byte ~350, IFDs after them
    with pytest.raises(InputError, match=r"stack\.tif.*(truncated|corrupt)"):
        _ingest(stack, tmp_path / "s.zarr")
    single = tmp_path / "one.npy"
    np.save(single, _series((7, 13)))
    with pytest.raises(InputError, match=r"one\.npy holds a single 2-D image"):
        _ingest(single, tmp_path / "s.zarr")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, shape in enumerate([(8, 8), (8, 8), (8, 9)]):
        tifffile.imwrite(folder / f"f{i}.tif", _series(shape, seed=i))
    with pytest.raises(InputError, match=r"f2\.tif has frame shape \(8, 9\)"):
        _ingest(folder, tmp_path / "s.zarr")


@pytest.mark.parametrize(("option", "value", "flag"), [
    ("pixel_size_nm", -0.3, "--pixel-size"), ("pixel_size_nm", 0.0, "--pixel-size"),
    ("pixel_size_nm", float("nan"), "--pixel-size"), ("pixel_size_nm", float("inf"), "--pixel-size"),
    ("frame_time_s", 0.0, "--frame-time"), ("frame_time_s", -1.0, "--frame-time"),
    ("frame_time_s", float("nan"), "--frame-time"), ("frame_time_s", 1e9, "--frame-time"),
])
def test_absurd_calibration_is_refused_naming_the_flag(tmp_path, option, value, flag):
    path = tmp_path / "s.npy"
    np.save(path, _series())
    with pytest.raises(MetadataError, match=flag):
        _ingest(path, tmp_path / "s.zarr", **{option: value})
    assert not (tmp_path / "s.zarr").exists()


def test_absurd_calibration_in_the_file_is_not_trusted(tmp_path):
    import tifffile

    path = tmp_path / "neg.tif"  # ImageJ: negative frame interval, 1 mm pixels "in nm"
    tifffile.imwrite(path, _series((5, 8, 8)), imagej=True, resolution=(1e-6, 1e-6),
                     metadata={"finterval": -2.0, "unit": "nm"})
    with pytest.raises(MetadataError, match=r"neg\.tif.*--frame-time"):
        _ingest(path, tmp_path / "s.zarr", frame_time_s=None)
    with pytest.raises(MetadataError, match=r"neg\.tif.*--pixel-size"):
        _ingest(path, tmp_path / "s.zarr", pixel_size_nm=None)


def test_cli_hostile_ingest_and_run_options_are_one_line_errors(tmp_path):
    path = tmp_path / "huge.npy"
    np.save(path, _series())
    _declare_shape(path, (9999, 7, 13))
    assert "huge.npy" in one_line_error(_run("ingest", path, "-o", tmp_path / "a.zarr", "--frame-time", 1,
                                        "--pixel-size", 1))
    good = tmp_path / "good.npy"
    np.save(good, _series((40, 20, 24)))
    assert "--pixel-size" in one_line_error(_run("ingest", good, "-o", tmp_path / "a.zarr", "--frame-time", 1,
                                            "--pixel-size", -2))
    assert "--frame-time" in one_line_error(_run("ingest", good, "-o", tmp_path / "a.zarr", "--frame-time", 0,
                                            "--pixel-size", 1))
    series = tmp_path / "s.zarr"
    assert _run("ingest", good, "-o", series, "--frame-time", 0.1, "--pixel-size", 1, "--quiet").returncode == 0
    run = ("run", series, "--cluster", "threads", "--quiet")
    assert "--max-lag" in one_line_error(_run(*run, "-o", tmp_path / "r1.zarr", "--no-drift", "--max-lag", 100))
    assert "--bad-frames leaves 1 of 40" in one_line_error(_run(*run, "-o", tmp_path / "r2.zarr", "--no-drift",
                                                         "--bad-frames", "0-38"))
    assert "0:100,0:5" in one_line_error(_run(*run, "-o", tmp_path / "r3.zarr", "--reference-roi", "0:100,0:5"))


# ----------------------------------------------------------------------------------- ops.correlate
def _write(path, data):
    from ecm_dask.pipeline.ingest import resolve_metadata, write_series
    from ecm_dask.readers.memory import ArraySource

    src = ArraySource(data, name="hostile", frame_time_s=0.5, pixel_size_nm=0.5)
    return write_series(src, path, resolve_metadata(src), tile=8, progress=False)


@pytest.mark.parametrize("n_t", [2, 3])
@pytest.mark.parametrize("method", METHODS)
def test_correlate_tiny_odd_series_from_a_store(tmp_path, n_t, method):
    from ecm_dask.ops import correlate
    from ecm_dask.store.series import open_series

    data = np.random.default_rng(n_t).poisson(30, (n_t, 7, 13)).astype(np.float32)
    data[:, 2, 3] = 0.0  # dark
    data[1, 4, 5] = np.nan  # dead
    res = correlate(open_series(_write(tmp_path / "s.zarr", data)), method=method).compute()
    assert res.g2.shape == (7, 13, 1)  # lag 1 only
    ref, _, _, status = reference_g2(data.reshape(n_t, -1).T, np.ones(n_t), method, "symmetric")
    np.testing.assert_array_equal(res.status.values.ravel(), status)
    assert res.status.values[2, 3] == PIXEL_DARK and res.status.values[4, 5] == PIXEL_NONFINITE
    ok = status == PIXEL_OK
    np.testing.assert_allclose(res.g2.values.reshape(-1, 1)[ok], ref[ok], rtol=2e-6)
    np.testing.assert_allclose(res.lag.values, [0.5])
    with pytest.raises(ParameterError, match="max_lag"):
        correlate(open_series(tmp_path / "s.zarr"), max_lag=float(n_t))
    with pytest.raises(EcmError, match="bad_frames leaves"):
        correlate(open_series(tmp_path / "s.zarr"), bad_frames=list(range(n_t - 1)))


# ----------------------------------------------------------------------------------- run configurations
_any_value = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                       st.text(max_size=12), st.lists(st.integers(-5, 50), max_size=5),
                       st.tuples(st.floats(-5, 50), st.floats(-5, 50)))
_frames_text = st.lists(st.tuples(st.integers(-3, 10**13), st.one_of(st.none(), st.integers(-3, 10**13))),
                        max_size=4).map(lambda parts: ",".join(f"{a}" if b is None else f"{a}-{b}" for a, b in parts))
_g2_options = st.fixed_dictionaries({}, optional={
    "method": st.one_of(st.sampled_from(["multitau", "fft"]), _any_value),
    "points_per_octave": _any_value, "max_lag": _any_value, "pool": _any_value, "block_bytes": _any_value,
    "normalization": st.one_of(st.sampled_from(["symmetric", "standard"]), _any_value),
    "bad_frames": st.one_of(_frames_text, _any_value)})
_fit_options = st.fixed_dictionaries({}, optional={
    "max_iter": _any_value, "baseline": st.one_of(st.sampled_from(["free", "fixed"]), _any_value),
    "fixed": st.dictionaries(st.sampled_from(["beta", "tau", "contrast", "baseline", "gamma"]), _any_value, max_size=2),
    "bounds": st.dictionaries(st.sampled_from(["beta", "tau", "contrast"]), _any_value, max_size=2)})


@HOSTILE
@given(g2=_g2_options, fit=_fit_options, max_shift=_any_value, surface=_any_value, roi=_any_value)
def test_run_configurations_are_valid_or_refused_by_name_never_a_crash(g2, fit, max_shift, surface, roi):
    """Any option values: RunConfig.build and check_series end in a config whose every number is usable (finite, in
    range, bad frames inside the series) or in a ParameterError - never another exception, never an allocation that
    grows with a value (bad frames are ranges)."""
    import json
    import math

    import dask.array as da
    import xarray as xr

    from ecm_dask import schema as S
    from ecm_dask.pipeline.config import RunConfig

    ds = xr.Dataset({S.INTENSITY: ((S.TIME, S.Y, S.X), da.zeros((50, 12, 12), dtype="uint16", chunks=(50, 12, 12)))},
                    coords={S.Y: np.arange(12) * 0.5, S.X: np.arange(12) * 0.5}, attrs={S.ATTR_FRAME_TIME: 0.5})
    try:
        cfg = RunConfig.build("s.zarr", g2_options=g2, fit_options=fit, max_shift=max_shift, surface_nm=surface,
                              reference_roi=roi)
        cfg.check_series(ds)
    except ParameterError:
        return
    d = json.loads(json.dumps(cfg.as_dict(), allow_nan=False))  # the stored form has no NaN/inf
    assert d["g2"]["method"] in METHODS and 1 <= d["g2"]["pool"] <= 12
    assert d["g2"]["max_lag"] is None or 0.5 <= d["g2"]["max_lag"] <= 49 * 0.5 + 0.5
    mask = cfg.g2.kwargs(50)["bad_frames"]
    assert mask is None or (mask.shape == (50,) and (~mask).sum() >= 2)
    assert cfg.max_shift is None or (math.isfinite(cfg.max_shift) and cfg.max_shift > 0)
    assert 1 <= cfg.fit.get("max_iter", 100) <= 10_000


def _run(*args, timeout=300):
    return ecm_cli(*args, timeout=timeout, check=False)
