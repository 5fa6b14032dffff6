"""Drift estimation for long image series (pure NumPy/SciPy).

Convention (the same as :mod:`ecm_dask.kernels.shift` and :func:`ecm_dask.synth.drift_trace`): frame
``t`` shows the sample displaced by ``+shift(t) = (dy, dx)``, i.e.
``observed[t, y, x] = sample[y - dy, x - dx]``; registration reads ``observed[t, y + dy, x + dx]``.

* :func:`phase_correlation` - shift of one image relative to a reference, sub-pixel by an upsampled
  matrix-multiply DFT around the coarse peak (Guizar-Sicairos, Thurman & Fienup, Opt. Lett. 33, 156
  (2008)) followed by a 3-point parabolic fit on the upsampled grid;
* :func:`estimate_shifts` - shifts of every frame of a reference ROI relative to frame 0;
* :func:`clean_shifts` - flag and interpolate single-frame outliers, optional smoothing;
* :func:`suggest_reference` - a bright, static, textured window to use as the reference ROI.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["REFERENCE_MODES", "WINDOWS", "clean_shifts", "estimate_shifts", "phase_correlation",
           "suggest_reference"]

WINDOWS = ("hann", "tukey", None)
REFERENCE_MODES = ("first", "mean", "iterative")
MIN_SIZE = 4  # smallest image side phase correlation accepts
_TUKEY_ALPHA = 0.5
_MAD_SCALE = 1.4826  # MAD -> standard deviation for Gaussian data
LOWPASS_SIGMA = 0.15  # cycles/px, Gaussian weight of the whitened cross-power
REFINE_PASSES = 2


# ------------------------------------------------------------------------------------------ helpers
def _window1d(n: int, kind: str | None, shift: float = 0.0) -> np.ndarray:
    """Periodic apodisation window of length ``n`` evaluated at ``arange(n) - shift`` (0 outside)."""
    return _windows1d(n, kind, np.array([shift], dtype=np.float64))[0]


def _check_window(window) -> None:
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")


def _check_upsample(upsample) -> int:
    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or upsample < 1:
        raise ValueError(f"upsample must be an integer >= 1, got {upsample!r}")
    return int(upsample)


def _check_max_shift(max_shift) -> tuple[float, float] | None:
    if max_shift is None:
        return None
    try:
        m = np.broadcast_to(np.asarray(max_shift, dtype=np.float64), (2,))
    except (TypeError, ValueError):
        m = None
    if m is None or not np.isfinite(m).all() or (m < 0).any():
        raise ValueError(f"max_shift must be None, a number >= 0 or a pair (my, mx) of them, got {max_shift!r}")
    return float(m[0]), float(m[1])


def _has_contrast(img: np.ndarray) -> bool:
    """False for a constant (or all-zero) image: it carries no phase to register."""
    return bool(img.size) and float(img.max() - img.min()) > 1e-12 * float(np.abs(img).max())


def _scaled(img: np.ndarray, inplace: bool = False) -> np.ndarray:
    """``img`` divided by its largest magnitude (phase correlation is scale free; keeps products of spectra
    of counts near 1e300 or 1e-300 from overflowing); ``inplace`` for an array the caller owns."""
    top = max(float(img.max()), -float(img.min())) if img.size else 0.0
    if not top > 0:
        return img
    if inplace:
        img /= top
        return img
    return img / top


def _spectrum(img: np.ndarray, kind: str | None, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """FFT of the image minus its window-weighted mean, times the window shifted by ``shift``."""
    return _spectra(img[None], kind, np.array([shift], dtype=np.float64))[0]


def _weights(shape: tuple[int, int]) -> np.ndarray:
    """Spectral weights of the whitened cross-power: Gaussian low-pass (noise and interpolation-bias
    suppression), zero at DC and on the Nyquist row/column of even sizes (ill-defined phase)."""
    fy = np.fft.fftfreq(shape[0])
    fx = np.fft.fftfreq(shape[1])
    w = np.exp(-0.5 * (fy[:, None] ** 2 + fx[None, :] ** 2) / LOWPASS_SIGMA**2)
    w[0, 0] = 0.0
    if shape[0] % 2 == 0:
        w[shape[0] // 2, :] = 0.0
    if shape[1] % 2 == 0:
        w[:, shape[1] // 2] = 0.0
    return w / w.sum()


def _cross_power(f_ref: np.ndarray, f_img: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted ``G conj(F) / |G conj(F)|``; its inverse transform peaks at ``+(dy, dx)`` with height
    1 (weights sum to 1) for identical, shifted content."""
    return _cross_powers(f_ref, f_img[None], weights)[0]


def _coarse_peak(r: np.ndarray, max_shift: tuple[float, float] | None) -> tuple[int, int]:
    dy, dx = _coarse_peaks(r[None], max_shift)[0]
    return int(dy), int(dx)


def _upsampled_idft(r: np.ndarray, centre: tuple[float, float], upsample: int, size: int) -> np.ndarray:
    """Real part of ``sum_k r(k) exp(2 pi i k.s)`` on a ``size x size`` grid of step ``1/upsample`` px
    centred on ``centre``: two small matrix multiplications (Guizar-Sicairos et al. 2008) instead of
    a zero-padded FFT."""
    return _upsampled_idfts(r[None], np.array([centre], dtype=np.float64), upsample, size)[0]


def _parabolic(cm: float, c0: float, cp: float) -> float:
    return float(_parabolas(cm, c0, cp))


def _locate(r: np.ndarray, centre: tuple[float, float], upsample: int,
            limit: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """Sub-pixel peak of the (weighted) cross-power's inverse transform near ``centre``, within
    ``|dy| <= limit[0]``, ``|dx| <= limit[1]`` if given."""
    size = int(math.ceil(1.5 * upsample)) | 1  # odd, covers +-0.75 px
    cy = round(centre[0] * upsample) / upsample
    cx = round(centre[1] * upsample) / upsample
    for _ in range(4):  # re-centre if the maximum sits on the border of the upsampled region
        up = _upsampled_idft(r, (cy, cx), upsample, size)
        jy, jx = np.unravel_index(int(np.argmax(up)), up.shape)
        if 0 < jy < size - 1 and 0 < jx < size - 1:
            break
        ny = cy + (jy - size // 2) / upsample
        nx = cx + (jx - size // 2) / upsample
        if limit is not None and (abs(ny) > limit[0] or abs(nx) > limit[1]):
            break
        cy, cx = ny, nx
    sub_y = _parabolic(up[jy - 1, jx], up[jy, jx], up[jy + 1, jx]) if 0 < jy < size - 1 else 0.0
    sub_x = _parabolic(up[jy, jx - 1], up[jy, jx], up[jy, jx + 1]) if 0 < jx < size - 1 else 0.0
    dy = cy + (jy - size // 2 + sub_y) / upsample
    dx = cx + (jx - size // 2 + sub_x) / upsample
    if limit is not None:
        dy = np.clip(dy, -limit[0], limit[0])
        dx = np.clip(dx, -limit[1], limit[1])
    return float(dy), float(dx), float(np.clip(up[jy, jx], 0.0, 1.0))


def _refine_tracked(f_ref: np.ndarray, crop: np.ndarray, frac: tuple[float, float], window: str | None,
                    weights: np.ndarray, upsample: int) -> tuple[float, float, float]:
    """Residual shift of ``crop`` against the reference spectrum ``f_ref`` (same size, window at 0):
    the crop's window is moved with the current estimate, so the apodisation does not pull the
    estimate towards zero; repeated ``REFINE_PASSES`` times."""
    fy, fx, pk = _refine_many(f_ref, crop[None], np.array([frac], dtype=np.float64), window, weights, upsample)
    return float(fy[0]), float(fx[0]), float(pk[0])


# ------------------------------------------------------------------ the same steps on stacks of frames
#: frames whose spectra are handled together (bounds memory: BATCH x h x w complex128)
BATCH = 256


def _windows1d(n: int, kind: str | None, shifts: np.ndarray) -> np.ndarray:
    """:func:`_window1d` for every shift of ``shifts (B,)``: (B, n)."""
    u = np.arange(n, dtype=np.float64)[None, :] - np.asarray(shifts, dtype=np.float64)[:, None]
    if kind is None:
        return np.ones(u.shape)
    inside = (u >= 0) & (u <= n)
    if kind == "hann":
        w = np.sin(np.pi * u / n) ** 2
    else:
        taper = 0.5 * _TUKEY_ALPHA * n
        w = np.ones(u.shape)
        w = np.where(u < taper, 0.5 * (1.0 - np.cos(np.pi * u / taper)), w)
        w = np.where(u > n - taper, 0.5 * (1.0 - np.cos(np.pi * (n - u) / taper)), w)
    return np.where(inside, w, 0.0)


def _spectra(imgs: np.ndarray, kind: str | None, shifts: np.ndarray | None = None) -> np.ndarray:
    """:func:`_spectrum` of every image of ``imgs (B, h, w)``, the window of image b shifted by ``shifts[b]``."""
    b, h, w_ = imgs.shape
    sh = np.zeros((b, 2)) if shifts is None else np.asarray(shifts, dtype=np.float64)
    win = _windows1d(h, kind, sh[:, 0])[:, :, None] * _windows1d(w_, kind, sh[:, 1])[:, None, :]
    sw = win.sum(axis=(1, 2))
    weighted = (imgs * win).sum(axis=(1, 2))
    mean = np.where(sw > 0, weighted / np.where(sw > 0, sw, 1.0), imgs.mean(axis=(1, 2)))
    return np.fft.fft2((imgs - mean[:, None, None]) * win, axes=(1, 2))


def _cross_powers(f_ref: np.ndarray, f_imgs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`_cross_power` of one reference spectrum against a stack of spectra."""
    r = f_imgs * np.conj(f_ref)
    mag = np.abs(r)
    top = mag.max(axis=(1, 2)) if mag.size else np.zeros(len(r))
    eps = np.where(top > 0, 1e-12 * top, 1.0)
    return weights * r / np.maximum(mag, eps[:, None, None])


def _coarse_peaks(r: np.ndarray, max_shift) -> np.ndarray:
    """:func:`_coarse_peak` of every cross-power of ``r (B, ny, nx)``: (B, 2) integer peaks."""
    b, ny, nx = r.shape
    corr = np.real(np.fft.ifft2(r, axes=(1, 2)))
    if max_shift is not None:
        fy = np.fft.fftfreq(ny) * ny
        fx = np.fft.fftfreq(nx) * nx
        allowed = (np.abs(fy)[:, None] <= max_shift[0] + 0.5) & (np.abs(fx)[None, :] <= max_shift[1] + 0.5)
        corr = np.where(allowed, corr, -np.inf)
    iy, ix = np.unravel_index(np.argmax(corr.reshape(b, -1), axis=1), (ny, nx))
    return np.stack([np.where(iy > ny // 2, iy - ny, iy), np.where(ix > nx // 2, ix - nx, ix)], axis=1)


def _parabolas(cm, c0, cp) -> np.ndarray:
    den = cm - 2.0 * c0 + cp
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.clip(0.5 * (cm - cp) / den, -0.5, 0.5)
    return np.where(den < 0, v, 0.0)


def _upsampled_idfts(r: np.ndarray, centres: np.ndarray, upsample: int, size: int) -> np.ndarray:
    """:func:`_upsampled_idft` of a stack ``r (B, ny, nx)`` around ``centres (B, 2)`` (batched matrix products)."""
    b, ny, nx = r.shape
    off = (np.arange(size) - size // 2) / upsample
    fy, fx = np.fft.fftfreq(ny), np.fft.fftfreq(nx)
    # exp(2 pi i (c + off) f) = exp(2 pi i c f) exp(2 pi i off f): B x n exponentials instead of B x size x n
    ky = np.exp(2j * np.pi * centres[:, 0, None] * fy)[:, None, :] * np.exp(2j * np.pi * off[:, None] * fy)
    kx = np.exp(2j * np.pi * centres[:, 1, None] * fx)[:, :, None] * np.exp(2j * np.pi * fx[:, None] * off)
    return np.real(ky @ r @ kx)  # (B, size, size)


def _locate_many(r: np.ndarray, centres: np.ndarray, upsample: int, limit=None):
    """:func:`_locate` for a stack of cross-powers ``r (B, ny, nx)`` near ``centres (B, 2)``: dy, dx, peak (B,).

    One upsampled DFT for all of them (batched matrix products); the few whose maximum lies on the border of the
    upsampled region, and need it moved, go through :func:`_locate` one by one."""
    b = r.shape[0]
    size = int(math.ceil(1.5 * upsample)) | 1
    half = size // 2
    c = np.round(np.asarray(centres, dtype=np.float64) * upsample) / upsample
    up = _upsampled_idfts(r, c, upsample, size)
    j = np.argmax(up.reshape(b, -1), axis=1)
    jy, jx = j // size, j % size
    inner = (jy > 0) & (jy < size - 1) & (jx > 0) & (jx < size - 1)
    k = np.arange(b)
    jyc, jxc = np.clip(jy, 1, size - 2), np.clip(jx, 1, size - 2)
    sub_y = _parabolas(up[k, jyc - 1, jx], up[k, jy, jx], up[k, jyc + 1, jx])
    sub_x = _parabolas(up[k, jy, jxc - 1], up[k, jy, jx], up[k, jy, jxc + 1])
    dy = c[:, 0] + (jy - half + sub_y) / upsample
    dx = c[:, 1] + (jx - half + sub_x) / upsample
    if limit is not None:
        dy = np.clip(dy, -limit[0], limit[0])
        dx = np.clip(dx, -limit[1], limit[1])
    pk = np.clip(up[k, jy, jx], 0.0, 1.0)
    for i in np.flatnonzero(~inner):  # the maximum on the border: re-centre frame by frame
        dy[i], dx[i], pk[i] = _locate(r[i], tuple(centres[i]), upsample, limit)
    return dy, dx, pk


def _refine_many(f_ref: np.ndarray, crops: np.ndarray, frac: np.ndarray, window: str | None, weights: np.ndarray,
                 upsample: int):
    """:func:`_refine_tracked` for a stack of crops with their fractional shifts ``frac (B, 2)``."""
    fy, fx = frac[:, 0].astype(np.float64), frac[:, 1].astype(np.float64)
    pk = np.zeros(len(crops))
    active = np.ones(len(crops), dtype=bool)
    for _ in range(REFINE_PASSES if window is not None else 1):
        a = np.flatnonzero(active)
        if not a.size:
            break
        sh = np.stack([fy[a], fx[a]], axis=1)
        r = _cross_powers(f_ref, _spectra(crops[a], window, sh), weights)
        ny, nx, pk[a] = _locate_many(r, sh, upsample)
        lost = (np.abs(ny) > 1.5) | (np.abs(nx) > 1.5)  # lost: keep the previous estimate
        fy[a[~lost]], fx[a[~lost]] = ny[~lost], nx[~lost]
        active[a[lost]] = False
    return fy, fx, pk


# -------------------------------------------------------------------------------- phase correlation
def phase_correlation(reference, image, *, upsample: int = 20, window: str | None = "hann",
                      max_shift=None) -> tuple[float, float, float]:
    """Shift of ``image`` relative to ``reference`` by phase correlation.

    Parameters
    ----------
    reference, image : (h, w) array_like
        Two images of the same shape (each side >= 4).
    upsample : int
        Sub-pixel refinement factor: the correlation peak is re-evaluated on a grid of step
        ``1/upsample`` px around the coarse peak by an upsampled matrix-multiply DFT, then refined by
        a 3-point parabolic fit.
    window : {"hann", "tukey", None}
        Apodisation applied to both (mean-subtracted) images before the FFT.
    max_shift : None, float or (float, float)
        Search the coarse peak only within ``|dy| <= my``, ``|dx| <= mx``.

    Returns
    -------
    (dy, dx, peak) : tuple of float
        ``image`` shows the reference content displaced by ``+(dy, dx)``:
        ``image[y, x] ~ reference[y - dy, x - dx]``.  ``peak`` is the height of the normalised
        (low-pass weighted) phase-correlation peak in [0, 1]: 1 for identical shifted content, ~0
        for unrelated images.

    Notes
    -----
    The whitened cross-power spectrum is weighted by a Gaussian low-pass (sigma 0.15 cycles/px),
    which suppresses shot noise and the phase errors of interpolated (e.g. bilinearly drifted) data
    at high frequencies.  With a window, after the coarse estimate the overlapping parts of the two
    images are correlated again with the image's window moved by the current estimate (twice),
    which removes the bias of a static apodisation window towards zero shift.  ``window=None``
    assumes periodic content (circular shifts) and skips that step.
    """
    ref = np.asarray(reference, dtype=np.float64)
    img = np.asarray(image, dtype=np.float64)
    if ref.ndim != 2:
        raise ValueError(f"reference must be a 2-D image, got shape {ref.shape}")
    if img.shape != ref.shape:
        raise ValueError(f"image shape {img.shape} differs from reference shape {ref.shape}")
    if min(ref.shape) < MIN_SIZE:
        raise ValueError(f"reference/image must be at least {MIN_SIZE} x {MIN_SIZE} pixels, got {ref.shape}")
    if not (np.isfinite(ref).all() and np.isfinite(img).all()):
        raise ValueError("reference and image must be finite (no NaN/inf)")
    _check_window(window)
    upsample = _check_upsample(upsample)
    ms = _check_max_shift(max_shift)
    for name, a in (("reference", ref), ("image", img)):
        if not _has_contrast(a):
            raise ValueError(f"{name} is constant (value {a.flat[0]:g}): it has no contrast to register")
    ref, img = _scaled(ref), _scaled(img)
    h, w = ref.shape
    r = _cross_power(_spectrum(ref, window), _spectrum(img, window), _weights(ref.shape))
    dy, dx, pk = _locate(r, _coarse_peak(r, ms), upsample, ms)
    # refinement on the overlap at the integer shift, window tracking the fractional part
    ny, nx = int(math.floor(dy + 0.5)), int(math.floor(dx + 0.5))
    oh, ow = h - abs(ny), w - abs(nx)
    if window is not None and oh >= max(MIN_SIZE, h // 3) and ow >= max(MIN_SIZE, w // 3):
        rc = ref[max(0, -ny):max(0, -ny) + oh, max(0, -nx):max(0, -nx) + ow]
        ic = img[max(0, ny):max(0, ny) + oh, max(0, nx):max(0, nx) + ow]
        fy, fx, pk2 = _refine_tracked(_spectrum(rc, window), ic, (dy - ny, dx - nx), window,
                                      _weights(rc.shape), upsample)
        dy, dx, pk = ny + fy, nx + fx, pk2
    if ms is not None:
        dy, dx = np.clip(dy, -ms[0], ms[0]), np.clip(dx, -ms[1], ms[1])
    return float(dy), float(dx), float(pk)


# --------------------------------------------------------------------------------- shift estimation
def _register_mean(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Mean of all frames registered onto the frame-0 grid (cubic spline, edges extended)."""
    acc = np.zeros(frames.shape[1:], dtype=np.float64)
    for t in range(frames.shape[0]):
        # registered[y, x] = frame[y + dy, x + dx]  <=>  ndimage.shift by -(dy, dx)
        acc += ndimage.shift(frames[t], -shifts[t], order=3, mode="nearest", prefilter=True)
    return acc / frames.shape[0]


def _shifts_against(ref: np.ndarray, frames: np.ndarray, *, upsample: int, window, max_shift,
                    margin: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coarse pass over the whole ROI, then a tracked window: the reference's interior (ROI minus the
    largest integer shift on every side, or minus a fixed ``margin``, as frames that arrive one batch at a
    time need) against the same-size window cut from each frame at its integer shift, with the apodisation
    moved by the fractional part.  Frames are handled in stacks of :data:`BATCH` (one FFT and one batched
    upsampled DFT per stack)."""
    n_t, h, w = frames.shape
    weights = _weights((h, w))
    f_ref = _spectrum(ref, window)
    out = np.zeros((n_t, 2))
    peaks = np.zeros(n_t)
    span = frames.max(axis=(1, 2)) - frames.min(axis=(1, 2))
    flat = ~(span > 1e-12 * np.abs(frames).max(axis=(1, 2)))  # nothing to register: peak 0, flagged by clean_shifts
    todo = np.flatnonzero(~flat)
    for i in range(0, todo.size, BATCH):
        b = todo[i:i + BATCH]
        r = _cross_powers(f_ref, _spectra(frames[b], window), weights)
        dy, dx, peaks[b] = _locate_many(r, _coarse_peaks(r, max_shift), upsample, max_shift)
        out[b, 0], out[b, 1] = dy, dx
    n_int = np.floor(out + 0.5).astype(np.int64)
    if margin is None:
        my, mx = (int(v) for v in np.abs(n_int).max(axis=0))
    else:
        my, mx = (int(v) for v in margin)
        n_int = np.clip(n_int, [-my, -mx], [my, mx])
    ih, iw = h - 2 * my, w - 2 * mx
    if ih < max(MIN_SIZE, h // 3) or iw < max(MIN_SIZE, w // 3):
        return out, peaks  # not enough margin for a tracked window
    weights_i = _weights((ih, iw))
    f_ref_i = _spectrum(ref[my:my + ih, mx:mx + iw], window)
    rows, cols = np.arange(ih), np.arange(iw)
    for i in range(0, todo.size, BATCH):
        b = todo[i:i + BATCH]
        y0, x0 = my + n_int[b, 0], mx + n_int[b, 1]
        crops = frames[b[:, None, None], (y0[:, None] + rows)[:, :, None], (x0[:, None] + cols)[:, None, :]]
        fy, fx, peaks[b] = _refine_many(f_ref_i, crops, out[b] - n_int[b], window, weights_i, upsample)
        out[b, 0], out[b, 1] = n_int[b, 0] + fy, n_int[b, 1] + fx
    if max_shift is not None:
        out = np.clip(out, -np.asarray(max_shift), np.asarray(max_shift))
    return out, peaks


def shifts_against(reference, frames, *, margin: tuple[int, int], upsample: int = 20, window: str | None = "hann",
                   max_shift=None) -> tuple[np.ndarray, np.ndarray]:
    """Raw shifts and peaks of ``frames (T, h, w)`` against a given ``reference (h, w)`` window: the frame-by-frame
    estimate of :func:`estimate_shifts` for frames that arrive over time (live mode).  ``margin`` (my, mx): the
    pixels on each side of the window around the reference region proper (the tracked second pass correlates
    that region); shifts are not made relative to frame 0 (subtract the first frame's estimate)."""
    f = np.asarray(frames)
    if f.ndim != 3 or f.shape[1:] != np.shape(reference):
        raise ValueError(f"frames {f.shape} and reference {np.shape(reference)} do not match")
    _check_window(window)
    ref = _scaled(np.asarray(reference, dtype=np.float64))
    if not _has_contrast(ref):
        raise ValueError("the reference is constant: it has no contrast to register; choose a textured region")
    f = _scaled(f.astype(np.float64), inplace=True)
    return _shifts_against(ref, f, upsample=_check_upsample(upsample), window=window,
                           max_shift=_check_max_shift(max_shift), margin=margin)


def estimate_shifts(frames, *, reference: str = "first", n_ref: int = 10, upsample: int = 20,
                    window: str | None = "hann", max_shift=None,
                    iterations: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Drift of every frame of a reference ROI relative to frame 0.

    Parameters
    ----------
    frames : (T, h, w) array_like
        All frames of a static, textured reference ROI, cut out with a margin at least as large as
        the drift on every side.
    reference : {"first", "mean", "iterative"}
        ``"first"``: frame 0; ``"mean"``: mean of the first ``n_ref`` frames; ``"iterative"``: start
        from the ``"mean"`` estimate, then ``iterations`` times re-estimate against the mean of all
        frames registered with the current shifts.
    n_ref : int
        Number of leading frames averaged for ``"mean"`` (and the start of ``"iterative"``).
    upsample, window, max_shift
        See :func:`phase_correlation`.
    iterations : int
        Number of re-referencing rounds of ``"iterative"`` (>= 1).

    Returns
    -------
    shifts : (T, 2) float64
        ``(dy, dx)`` per frame in the convention of :mod:`ecm_dask.kernels.shift`; ``shifts[0]`` is
        exactly 0 (the estimate of frame 0 is subtracted from all frames).
    peaks : (T,) float64
        Normalised phase-correlation peak heights (quality, in [0, 1]); a frame without contrast
        (constant, e.g. beam blanked) gets peak 0 and shift 0, and :func:`clean_shifts` flags it.

    Notes
    -----
    Each frame is first correlated over the whole ROI, then again on the interior of the reference
    (ROI minus the largest integer shift on every side) against the same-size window cut from the
    frame at its integer shift; the second pass gives the sub-pixel value, free of the bias a static
    apodisation window causes for large shifts.
    """
    f = np.asarray(frames)
    if f.ndim != 3:
        raise ValueError(f"frames must be a 3-D array (T, h, w), got shape {f.shape}")
    n_t, h, w = f.shape
    if n_t < 1:
        raise ValueError("frames must contain at least one frame")
    if h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"frames must be at least {MIN_SIZE} x {MIN_SIZE} pixels, got {(h, w)}")
    if reference not in REFERENCE_MODES:
        raise ValueError(f"reference must be one of {REFERENCE_MODES}, got {reference!r}")
    if isinstance(n_ref, bool) or not isinstance(n_ref, (int, np.integer)) or n_ref < 1:
        raise ValueError(f"n_ref must be an integer >= 1, got {n_ref!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    _check_window(window)
    upsample = _check_upsample(upsample)
    ms = _check_max_shift(max_shift)
    owned = f.dtype != np.float64  # converted below: a copy of our own, scaled in place
    counts = f.dtype.kind in "iub"  # always finite
    f = f.astype(np.float64, copy=False)
    if not counts and not np.isfinite(f).all():
        raise ValueError("frames must be finite (no NaN/inf)")
    f = _scaled(f, inplace=owned)

    kw = dict(upsample=upsample, window=window, max_shift=ms)
    ref = f[0] if reference == "first" else f[:min(int(n_ref), n_t)].mean(axis=0)
    if not _has_contrast(ref):
        raise ValueError(f"the reference ({'frame 0' if reference == 'first' else f'mean of the first {n_ref} frames'})"
                         " is constant: it has no contrast to register; choose a textured region")
    shifts, peaks = _shifts_against(ref, f, **kw)
    shifts -= shifts[0].copy()
    if reference == "iterative":
        for _ in range(int(iterations)):
            ref = _register_mean(f, shifts)
            shifts, peaks = _shifts_against(ref, f, **kw)
            shifts -= shifts[0].copy()
    shifts[0] = 0.0
    return shifts, peaks


# ------------------------------------------------------------------------------------------ cleaning
def _mad(x: np.ndarray) -> float:
    return float(_MAD_SCALE * np.median(np.abs(x - np.median(x)))) if x.size else 0.0


def clean_shifts(shifts, peaks, *, min_peak: float | None = None, max_jump: float | None = None,
                 smooth: int = 0, smooth_kind: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Flag single-frame outliers of a drift trace and replace them by interpolation.

    Parameters
    ----------
    shifts : (T, 2) array_like
        ``(dy, dx)`` per frame, e.g. from :func:`estimate_shifts`.
    peaks : (T,) array_like
        Phase-correlation peak heights of those estimates.
    min_peak : float, optional
        Frames with ``peak < min_peak`` are outliers.  Default ``median(peaks) - 5 * MAD(peaks)``
        (MAD scaled by 1.4826 to a Gaussian standard deviation).  A peak <= 0 (no correlation at all,
        e.g. a constant frame) is always an outlier.
    max_jump : float, optional
        Frames whose shift differs (on either axis) from the running median over 5 frames by more
        than this are outliers.  Default: per axis, ``5 * MAD`` of the first differences (scaled as
        above), at least 1e-3 px.
    smooth : int
        If > 1, a centred moving mean (``smooth_kind="mean"``) or median (``"median"``) over
        ``2 * (smooth // 2) + 1`` frames (even sizes rounded up) is applied after the outliers are
        replaced; the trace is extended point-symmetrically about its end frames, so the first and
        last frames keep their values and linear trends are not bent at the ends.
    smooth_kind : {"mean", "median"}

    Returns
    -------
    cleaned : (T, 2) float64
        The trace with outliers linearly interpolated from the good neighbours (constant beyond the
        ends), smoothed if asked.  Not re-referenced: if frame 0 itself was flagged, subtract
        ``cleaned[0]`` to keep shifts relative to frame 0.
    outliers : (T,) bool
        The flagged frames.
    """
    s = np.asarray(shifts, dtype=np.float64)
    pk = np.asarray(peaks, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2:
        raise ValueError(f"shifts must have shape (T, 2), got {s.shape}")
    if pk.shape != (s.shape[0],):
        raise ValueError(f"peaks must have shape ({s.shape[0]},) to match shifts, got {pk.shape}")
    if not (np.isfinite(s).all() and np.isfinite(pk).all()):
        raise ValueError("shifts and peaks must be finite")
    if isinstance(smooth, bool) or not isinstance(smooth, (int, np.integer)) or smooth < 0:
        raise ValueError(f"smooth must be an integer >= 0 (frames), got {smooth!r}")
    if smooth_kind not in ("mean", "median"):
        raise ValueError(f"smooth_kind must be 'mean' or 'median', got {smooth_kind!r}")
    if min_peak is not None and not np.isfinite(min_peak):
        raise ValueError(f"min_peak must be a finite number, got {min_peak!r}")
    if max_jump is not None and not (np.isfinite(max_jump) and max_jump > 0):
        raise ValueError(f"max_jump must be a number > 0, got {max_jump!r}")
    n_t = s.shape[0]
    out = s.copy()
    bad = np.zeros(n_t, dtype=bool)
    if n_t < 3:
        return out, bad
    thr_peak = float(np.median(pk) - 5.0 * _mad(pk)) if min_peak is None else float(min_peak)
    bad |= (pk < thr_peak) | (pk <= 0)
    local = ndimage.median_filter(s, size=(5, 1), mode="nearest")
    if max_jump is None:
        d = np.diff(s, axis=0)
        thr_jump = np.array([max(5.0 * _mad(d[:, k]), 1e-3) for k in range(2)])
    else:
        thr_jump = np.array([float(max_jump)] * 2)
    bad |= (np.abs(s - local) > thr_jump[None, :]).any(axis=1)
    good = ~bad
    if bad.any() and good.any():
        t = np.arange(n_t)
        for k in range(2):
            out[bad, k] = np.interp(t[bad], t[good], s[good, k])
    if smooth > 1:
        k = int(smooth) // 2  # window 2k + 1 frames
        # point-symmetric extension about the end frames: keeps them (frame 0 stays exactly where it
        # was) and keeps linear trends unbiased at the ends
        ext = np.concatenate([2 * out[:1] - out[k:0:-1], out, 2 * out[-1:] - out[-2:-k - 2:-1]], axis=0) \
            if k < n_t else out
        if ext is not out:
            if smooth_kind == "mean":
                sm = ndimage.uniform_filter1d(ext, size=2 * k + 1, axis=0, mode="nearest")
            else:
                sm = ndimage.median_filter(ext, size=(2 * k + 1, 1), mode="nearest")
            sm = sm[k:k + n_t]
            sm[[0, -1]] = out[[0, -1]]  # equal up to rounding: make it exact
            out = sm
    return out, bad


# ------------------------------------------------------------------------------ reference suggestion
def suggest_reference(mean_image, var_image, *, size=(48, 48),
                      min_mean: float | None = None) -> tuple[int, int, int, int]:
    """Window ``(y0, y1, x0, x1)`` suited as drift reference: bright, static and textured.

    Parameters
    ----------
    mean_image, var_image : (ny, nx) array_like
        Temporal mean and variance of the series (counts), e.g. over the first frames.  NaN marks a pixel
        without data (dead, masked): no window holding one is suggested.
    size : int or (int, int)
        Window size ``(h, w)``; must fit in the image.
    min_mean : float, optional
        Windows whose mean intensity is below this are not considered.

    Returns
    -------
    (y0, y1, x0, x1) : tuple of int
        The window maximising ``mean * spatial_std / sqrt(fano)`` where, over the window, ``mean``
        is the average of ``mean_image``, ``spatial_std`` its standard deviation (texture, needed to
        register) and ``fano = mean(var_image) / mean`` the temporal variance relative to shot noise
        (~1 for a static object imaged with counting noise, larger for dynamic speckle or motion).

    Notes
    -----
    Drift itself adds temporal variance where the image has texture, so compute the mean and
    variance over a stretch of frames in which the drift is small compared with the texture scale
    (e.g. the first few tens of frames).  The square root softens the penalty so that a textured
    object that moved a little still beats weakly textured wire edges.
    """
    m = np.asarray(mean_image, dtype=np.float64)
    v = np.asarray(var_image, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"mean_image must be 2-D, got shape {m.shape}")
    if v.shape != m.shape:
        raise ValueError(f"var_image shape {v.shape} differs from mean_image shape {m.shape}")
    sz = (size, size) if np.ndim(size) == 0 else tuple(size)
    if len(sz) != 2 or not all(isinstance(z, (int, np.integer)) and not isinstance(z, bool) and z >= MIN_SIZE
                               for z in sz):
        raise ValueError(f"size must be an integer or (h, w) of integers >= {MIN_SIZE}, got {size!r}")
    h, w = int(sz[0]), int(sz[1])
    ny, nx = m.shape
    if h > ny or w > nx:
        raise ValueError(f"size {(h, w)} is larger than the image {m.shape}")
    if min_mean is not None and not np.isfinite(min_mean):
        raise ValueError(f"min_mean must be a finite number, got {min_mean!r}")
    unusable = ~(np.isfinite(m) & np.isfinite(v))  # a pixel without data (NaN) cannot be registered
    m = np.where(unusable, 0.0, m)
    v = np.where(unusable, 0.0, v)
    # uniform_filter is centred: for even sizes the centre is at index size // 2 of the window
    mean_w = ndimage.uniform_filter(m, size=(h, w), mode="constant")
    sq_w = ndimage.uniform_filter(m * m, size=(h, w), mode="constant")
    var_w = ndimage.uniform_filter(np.maximum(v, 0.0), size=(h, w), mode="constant")
    std_w = np.sqrt(np.maximum(sq_w - mean_w**2, 0.0))
    fano = var_w / np.maximum(mean_w, 1e-12)
    floor = 1e-6 * max(float(np.median(fano[fano > 0])) if (fano > 0).any() else 1.0, 1e-12)
    score = np.where(mean_w > 0, mean_w * std_w / np.sqrt(np.maximum(fano, floor)), -np.inf)
    if min_mean is not None:
        score = np.where(mean_w >= min_mean, score, -np.inf)
    if unusable.any():  # no window holding one
        score = np.where(ndimage.uniform_filter(unusable.astype(np.float64), size=(h, w), mode="constant") > 1e-9,
                         -np.inf, score)
    # only windows fully inside the image: centre index c of window starting at y0 is y0 + h // 2
    cy = np.arange(h // 2, ny - h + h // 2 + 1)
    cx = np.arange(w // 2, nx - w + w // 2 + 1)
    valid = score[np.ix_(cy, cx)]
    if not np.isfinite(valid).any():
        raise ValueError("no window satisfies min_mean (or the mean image is not positive anywhere"
                         + (", or every window holds a pixel without data (NaN)" if unusable.any() else "") + ")")
    iy, ix = np.unravel_index(int(np.argmax(valid)), valid.shape)
    y0, x0 = int(cy[iy] - h // 2), int(cx[ix] - w // 2)
    return y0, y0 + h, x0, x0 + w
