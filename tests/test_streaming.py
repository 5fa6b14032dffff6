"""The streaming multi-tau correlator against the block correlator on the same frames (same estimator, so the
same numbers up to the order of float64 additions), whatever the batches the frames arrive in."""

import numpy as np
import pytest

from ecm_dask.kernels import g2 as K
from ecm_dask.kernels.streaming import MultiTauState


def _frames(n_t, n_p, seed=0):
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.5, 40, n_p)
    # slowly varying speckle intensity times Poisson noise, plus a dark and a saturated pixel
    slow = 1 + 0.5 * np.sin(np.arange(n_t)[:, None] / rng.uniform(3, 300, n_p))
    x = rng.poisson(rate * slow).astype(np.uint16)
    x[:, 0] = 0
    x[n_t // 3, 1] = 65535
    return x


def _check(state, x, **kw):
    ref = K.g2(x, axis=0, **kw)
    got = state.result(**{k: v for k, v in kw.items() if k != "points_per_octave"})
    np.testing.assert_array_equal(got.status, ref.status)
    np.testing.assert_array_equal(got.lag, ref.lag)
    np.testing.assert_array_equal(got.pairs, ref.pairs)
    np.testing.assert_allclose(got.g2, ref.g2, rtol=1e-6, atol=0, equal_nan=True)
    np.testing.assert_allclose(got.g2_lag0, ref.g2_lag0, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-12)
    # float32 output: the float64 sums agree far closer than the 1e-6 asked for
    ok = ref.status == K.PIXEL_OK
    with np.errstate(invalid="ignore", divide="ignore"):  # g2 exactly 0 at a lag of a 3-frame series
        rel = np.abs(got.g2[ok].astype(np.float64) / ref.g2[ok] - 1)
    assert np.nanmax(rel, initial=0.0) < 2e-7


@pytest.mark.parametrize("n_t", [2, 3, 17, 33, 500, 1023, 1500])
@pytest.mark.parametrize("batch", [1, 7, 64, None])
def test_streaming_equals_block_correlator_after_any_batches(n_t, batch):
    x = _frames(n_t, 40, seed=n_t)
    st = MultiTauState.empty(40)
    step = batch or n_t
    for t in range(0, n_t, step):
        st.push(x[t:t + step])
    assert st.n_frames == n_t
    _check(st, x)


@pytest.mark.parametrize("m", [4, 8, 16])
def test_points_per_octave_and_max_lag(m):
    x = _frames(700, 25, seed=m)
    st = MultiTauState.empty(25, points_per_octave=m)
    for t in range(0, 700, 50):
        st.push(x[t:t + 50])
    _check(st, x, points_per_octave=m)
    _check(st, x, points_per_octave=m, max_lag=100)
    _check(st, x, points_per_octave=m, normalization="standard")


def test_result_at_every_moment_equals_the_block_correlator_of_the_frames_so_far():
    x = _frames(300, 12, seed=5)
    st = MultiTauState.empty(12)
    for t in range(0, 300, 37):
        st.push(x[t:t + 37])
        if st.n_frames >= 2:
            _check(st, x[:st.n_frames])


def test_pixel_slices_then_advance_equal_whole_pushes_and_state_round_trips():
    x = _frames(400, 30, seed=9)
    a, b = MultiTauState.empty(30), MultiTauState.empty(30)
    for t in range(0, 400, 90):
        chunk = x[t:t + 90]
        a.push(chunk)
        b.reserve(b.n_frames + chunk.shape[0])
        for p0 in (0, 11, 20):
            p1 = {0: 11, 11: 20, 20: 30}[p0]
            b.push(chunk[:, p0:p1], pixels=slice(p0, p1))
        b.advance(chunk.shape[0])
        b = MultiTauState.from_dict({k: np.copy(v) for k, v in b.to_dict().items()})
    for name in ("count", "ring", "num", "head", "total", "maxval"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    _check(b, x)


def test_memory_grows_with_log_of_frames():
    st = MultiTauState.empty(10)
    st.push(np.ones((1000, 10), np.uint16))
    b1000 = st.nbytes
    st.push(np.ones((15000, 10), np.uint16))
    assert st.count.size == 14 and b1000 / st.nbytes > 0.7  # 16000 frames: 4 more levels than 1000


def test_errors_name_the_problem():
    st = MultiTauState.empty(5)
    with pytest.raises(ValueError, match="at least 2"):
        st.result()
    with pytest.raises(ValueError, match="holds? 4 pixels"):
        st.push(np.ones((3, 4)))
    with pytest.raises(ValueError, match="time, pixels"):
        st.push(np.ones(3))
