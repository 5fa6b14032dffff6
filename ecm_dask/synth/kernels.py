"""Pure NumPy/SciPy kernels of the synthetic nanowire: KWW speckle processes and block rendering.

Speckle process
---------------
Each dynamic sample pixel carries a stationary, circular complex Gaussian field ``E(t)`` with unit
variance whose field autocorrelation is exactly ``g1(k) = exp(-(k/tau)**beta)`` at the integer lags
``k = 0 .. n_frames-1`` (circulant embedding): the covariance is embedded in a symmetric circulant of
even size ``M >= 2 (n_frames - 1)``, its eigenvalues ``lam = FFT(c_embedded)`` (a DCT-I of
``c[0 .. M/2]``) are clipped at 0, and

    E = FFT( sqrt(lam / M) * Z )[:n_frames],      Z = (X + iY) / sqrt(2),  X, Y ~ N(0, 1)

so ``<E_j E_l*> = (1/M) sum_k lam_k exp(-2 pi i (j-l) k / M) = c(j - l)``.  For ``0 < beta <= 1`` the
embedded sequence is convex and decreasing, hence ``lam >= 0`` and the result is exact; for
``1 < beta <= 2`` tiny negative eigenvalues may be clipped.

Intensity
---------
``I = mean * ((1 - s) + s |E|^2)`` with ``s = sqrt(A)`` gives ``<I> = mean`` and, by the Siegert
relation for the Gaussian field, ``g2(k) = 1 + A |g1(k)|^2``.  Vacuum and crystal pixels have a
constant expected intensity.

Rendering
---------
:func:`render_block` produces all frames of a rectangular block of *observed* pixels: observed pixel
``(y, x)`` at frame ``t`` is the bilinear interpolation of the sample intensity at
``(y - dy(t), x - dx(t))`` (see :func:`ecm_dask.synth.model.drift_trace` for the sign convention),
followed by Poisson noise.  Every sample pixel's speckle and every observed pixel's Poisson noise has
its own Philox stream keyed by (seed, pixel), so the result does not depend on how the frame is cut
into blocks.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from .model import (
    TAG_POISSON,
    TAG_SPECKLE,
    TRUTH_CONTRAST,
    TRUTH_MEAN,
    SynthParams,
    canvas,
    drift_trace,
    stream_key,
)

__all__ = [
    "circulant_amplitudes",
    "embedding_size",
    "gaussian_process",
    "kww_g1",
    "render_block",
    "speckle_intensity",
]

#: complex64 elements of one generation batch (pixels x M): 16 MiB.  The batch work arrays
#: (fields, eigenvalues, intensities) total about 2.5x this.
BATCH_ELEMENTS = 1 << 21
#: bytes of one strip of output rows: the float32 sample intensities it needs (rows x columns with
#: the drift halo) plus its float32 interpolated intensities, scratch and uint16 counts
STRIP_BYTES = 32 << 20


def embedding_size(n_frames: int) -> int:
    """Even, FFT-friendly circulant size ``M >= 2 (n_frames - 1)``."""
    return 2 * sfft.next_fast_len(max(int(n_frames) - 1, 1))


def kww_g1(lag, tau, beta):
    """KWW field autocorrelation ``exp(-(lag/tau)**beta)`` (broadcasting)."""
    lag = np.asarray(lag, dtype=np.float64)
    return np.exp(-(np.abs(lag) / np.asarray(tau, dtype=np.float64)) ** np.asarray(beta, dtype=np.float64))


def circulant_amplitudes(tau_frames, beta, n_frames: int, m: int | None = None) -> np.ndarray:
    """``sqrt(max(lam, 0) / (2 M))`` for ``k = 0 .. M/2``, shape ``(npix, M/2 + 1)`` float32.

    ``lam`` are the eigenvalues of the circulant embedding of ``exp(-(k/tau)**beta)``; the factor
    ``1/2`` accounts for the two real normal deviates of each unit-variance complex deviate.
    """
    m = embedding_size(n_frames) if m is None else int(m)
    tau = np.atleast_1d(np.asarray(tau_frames, dtype=np.float64))
    beta = np.atleast_1d(np.asarray(beta, dtype=np.float64))
    tau, beta = np.broadcast_arrays(tau, beta)
    half = m // 2
    logk = np.log(np.arange(1, half + 1, dtype=np.float64))
    c = np.empty((tau.size, half + 1), dtype=np.float64)
    c[:, 0] = 1.0
    x = c[:, 1:]
    np.subtract(logk[None, :], np.log(tau)[:, None], out=x)
    x *= beta[:, None]
    np.exp(x, out=x)
    np.negative(x, out=x)
    np.exp(x, out=x)
    # one transform per row (batched pocketfft may round differently depending on the batch
    # position of a row, and a pixel's result must not depend on its batch neighbours)
    lam = c
    for i in range(lam.shape[0]):
        lam[i] = sfft.dct(c[i], type=1)
    np.maximum(lam, 0.0, out=lam)
    lam *= 1.0 / (2.0 * m)
    return np.sqrt(lam).astype(np.float32)


def _fill_noise(noise: np.ndarray, rngs) -> None:
    """Fill the float32 array ``noise (B, 2M)`` with standard normals, row i from ``rngs[i]``."""
    if isinstance(rngs, np.random.Generator):
        rngs.standard_normal(out=noise, dtype=np.float32)
        return
    for i, g in enumerate(rngs):
        g.standard_normal(out=noise[i], dtype=np.float32)


def _field_batch(amp: np.ndarray, rngs, n_frames: int, m: int, out: np.ndarray | None = None) -> np.ndarray:
    """Complex fields ``(B, M)`` complex64 (only the first n_frames are the process) for one batch."""
    b = amp.shape[0]
    z = np.empty((b, m), dtype=np.complex64) if out is None else out[:b]
    _fill_noise(z.view(np.float32), rngs)
    half = m // 2
    z[:, : half + 1] *= amp
    if half > 1:
        z[:, half + 1:] *= amp[:, half - 1:0:-1]
    # one transform per row: the result of a pixel must not depend on its batch neighbours
    for i in range(b):
        z[i] = sfft.fft(z[i], overwrite_x=True)
    return z


def gaussian_process(tau_frames, beta, n_frames: int, rng) -> np.ndarray:
    """Stationary circular complex Gaussian process(es) with ``<|E|^2> = 1`` and exact KWW ``g1``.

    Parameters
    ----------
    tau_frames, beta : float or 1-D array
        Relaxation time (frames) and stretching exponent, one per process (broadcast together).
    n_frames : int
        Length of each process.
    rng : numpy.random.Generator or sequence of Generators
        One generator for all processes, or one per process (used by the renderer so each pixel
        has its own stream).

    Returns
    -------
    complex64 array ``(n_frames,)`` for scalar inputs, else ``(npix, n_frames)``; satisfies
    ``<E(t) E*(t+k)> = exp(-(k/tau)**beta)`` for ``0 <= k < n_frames``.
    """
    scalar = np.ndim(tau_frames) == 0 and np.ndim(beta) == 0
    tau = np.atleast_1d(np.asarray(tau_frames, dtype=np.float64))
    bet = np.atleast_1d(np.asarray(beta, dtype=np.float64))
    tau, bet = np.broadcast_arrays(tau, bet)
    tau, bet = tau.ravel(), bet.ravel()
    if np.any(~(tau > 0)) or np.any(~((bet > 0) & (bet <= 2))):
        raise ValueError("gaussian_process needs tau_frames > 0 and 0 < beta <= 2")
    n = int(n_frames)
    if n < 1:
        raise ValueError("n_frames must be >= 1")
    per_pixel = not isinstance(rng, np.random.Generator)
    if per_pixel and len(rng) != tau.size:
        raise ValueError(f"got {len(rng)} generators for {tau.size} processes")
    m = embedding_size(n)
    bsz = max(1, BATCH_ELEMENTS // m)
    out = np.empty((tau.size, n), dtype=np.complex64)
    work = np.empty((min(bsz, tau.size), m), dtype=np.complex64)
    for a in range(0, tau.size, bsz):
        b = min(a + bsz, tau.size)
        amp = circulant_amplitudes(tau[a:b], bet[a:b], n, m)
        z = _field_batch(amp, rng[a:b] if per_pixel else rng, n, m, out=work)
        out[a:b] = z[:, :n]
    return out[0] if scalar else out


def speckle_intensity(mean, contrast, power):
    """``mean * ((1 - s) + s * power)`` with ``s = sqrt(contrast)`` (``power = |E|^2``)."""
    s = np.sqrt(np.asarray(contrast, dtype=np.float64))
    return mean * (1.0 - s) + mean * s * power


# ------------------------------------------------------------------------------------------ render
def _sample_rows(p: SynthParams, cmaps, rows: range, ca: int, cb: int, n: int, m: int,
                 dest: np.ndarray, work: np.ndarray) -> None:
    """Write the sample intensities of canvas rows ``rows`` x columns ``[ca, cb)`` into ``dest``.

    ``dest`` has shape ``(len(rows), cb - ca, n)`` float32.
    """
    my, mx = cmaps["margin"]
    mean = cmaps[TRUTH_MEAN]
    contrast = cmaps[TRUTH_CONTRAST]
    dynamic = cmaps["dynamic"]
    tau_f = cmaps["tau_frames"]
    beta = cmaps["beta"]
    r0 = rows.start
    sub_dyn = dynamic[rows.start:rows.stop, ca:cb]
    # static pixels: constant expected intensity
    sub_mean = mean[rows.start:rows.stop, ca:cb].astype(np.float32)
    static = np.argwhere(~sub_dyn)
    if static.size:
        dest[static[:, 0], static[:, 1], :] = sub_mean[static[:, 0], static[:, 1], None]
    pix = np.argwhere(sub_dyn)  # row-major (local row, local col)
    if not pix.size:
        return
    bsz = work.shape[0]
    for a in range(0, len(pix), bsz):
        chunk = pix[a:a + bsz]
        cy = chunk[:, 0] + r0
        cx = chunk[:, 1] + ca
        amp = circulant_amplitudes(tau_f[cy, cx], beta[cy, cx], n, m)
        rngs = [np.random.Generator(np.random.Philox(key=stream_key(p.seed, TAG_SPECKLE, iy - my, ix - mx)))
                for iy, ix in zip(cy.tolist(), cx.tolist())]
        z = _field_batch(amp, rngs, n, m, out=work)
        zf = z[:, :n].view(np.float32).reshape(len(chunk), n, 2)
        power = zf[..., 0] * zf[..., 0]
        power += zf[..., 1] * zf[..., 1]
        mn = mean[cy, cx]
        s = np.sqrt(contrast[cy, cx])
        m1 = (mn * (1.0 - s)).astype(np.float32)[:, None]
        m2 = (mn * s).astype(np.float32)[:, None]
        power *= m2
        power += m1
        dest[chunk[:, 0], chunk[:, 1], :] = power


def _check_bounds(name0: str, v0: int, name1: str, v1: int, size: int) -> tuple[int, int]:
    v0, v1 = int(v0), int(v1)
    if not (0 <= v0 < v1 <= size):
        raise ValueError(f"render_block: need 0 <= {name0} < {name1} <= {size}, got {name0}={v0}, {name1}={v1}")
    return v0, v1


def render_block(p: SynthParams, y0: int, y1: int, x0: int, x1: int, *, noise: bool = True) -> np.ndarray:
    """All frames of the observed pixels ``[y0:y1, x0:x1]``: array ``(n_frames, y1-y0, x1-x0)``.

    With ``noise=True`` and finite ``p.counts_wire``: Poisson counts as uint16 (clipped at 65535).
    Otherwise the float64 expected intensity (the bilinearly interpolated, drifted sample intensity).

    Deterministic per ``p.seed`` and independent of the block partition: rendering the full frame
    equals stitching any set of blocks.  Working memory is bounded (one generation batch of
    ``BATCH_ELEMENTS`` complex64 plus a strip buffer of ``STRIP_BYTES``) besides the output.
    """
    y0, y1 = _check_bounds("y0", y0, "y1", y1, p.ny)
    x0, x1 = _check_bounds("x0", x0, "x1", x1, p.nx)
    noise = bool(noise) and p.noise
    n = p.n_frames
    m = embedding_size(n)
    cm = canvas(p)
    my, mx = cm["margin"]
    shift = drift_trace(p)
    # source point of observed (y, x) at frame t, in canvas coordinates: (y + my - dy, x + mx - dx)
    sy = -shift[:, 0]
    sx = -shift[:, 1]
    oy = np.floor(sy).astype(np.int64)
    ox = np.floor(sx).astype(np.int64)
    fy = sy - oy
    fx = sx - ox
    w00 = ((1.0 - fy) * (1.0 - fx)).astype(np.float32)
    w01 = ((1.0 - fy) * fx).astype(np.float32)
    w10 = (fy * (1.0 - fx)).astype(np.float32)
    w11 = (fy * fx).astype(np.float32)
    # time segments of constant integer offsets
    cuts = np.flatnonzero((np.diff(oy) != 0) | (np.diff(ox) != 0)) + 1
    bounds = np.concatenate([[0], cuts, [n]])
    segments = []
    for t0, t1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        segments.append((t0, t1, int(oy[t0]), int(ox[t0]),
                         bool(np.any(fy[t0:t1] > 0)), bool(np.any(fx[t0:t1] > 0))))
    lo_y = int(oy.min())
    hi_y = int(np.max(oy + (fy > 0)))
    lo_x = int(ox.min())
    hi_x = int(np.max(ox + (fx > 0)))
    by, bx = y1 - y0, x1 - x0
    ca = x0 + mx + lo_x
    cb = x1 - 1 + mx + hi_x + 1
    width = cb - ca
    span = hi_y - lo_y  # extra rows a strip needs beyond its own height
    # strip height: (hs + span) sample rows of float32 + hs output rows of lam, tmp (float32), counts
    in_row = width * n * 4
    out_row = bx * n * (4 + 4 + (2 if noise else 0))
    hs = int(max(1, min(by, (STRIP_BYTES - span * in_row) // (in_row + out_row))))
    buf = np.empty((hs + span, width, n), dtype=np.float32)
    work = np.empty((max(1, min(BATCH_ELEMENTS // m, (hs + span) * width)), m), dtype=np.complex64)
    out = np.empty((n, by, bx), dtype=np.uint16 if noise else np.float64)
    lam = np.empty((hs, bx, n), dtype=np.float32)
    tmp = np.empty((hs, bx, n), dtype=np.float32)
    bstart, bcount = 0, 0  # canvas row of buf[0], number of valid rows
    for ya in range(y0, y1, hs):
        yb = min(ya + hs, y1)
        h = yb - ya
        na = ya + my + lo_y
        nb = yb - 1 + my + hi_y + 1
        # keep the overlap with the previous strip, generate the rest
        keep_a = max(na, bstart)
        keep_b = min(nb, bstart + bcount)
        if keep_b > keep_a:
            if keep_a != bstart:
                buf[: keep_b - keep_a] = buf[keep_a - bstart: keep_b - bstart]
            first_new = keep_b
        else:
            first_new = na
        bstart = na
        if nb > first_new:
            _sample_rows(p, cm, range(first_new, nb), ca, cb, n, m, buf[first_new - na: nb - na], work)
        bcount = nb - na
        # bilinear gather, segment by segment
        L = lam[:h]
        T = tmp[:h]
        for t0, t1, sy0, sx0, has_y, has_x in segments:
            r = ya + my + sy0 - bstart
            c = x0 + mx + sx0 - ca
            ls = L[:, :, t0:t1]
            ts = T[:, :, t0:t1]
            np.multiply(buf[r:r + h, c:c + bx, t0:t1], w00[t0:t1], out=ls)
            if has_x:
                np.multiply(buf[r:r + h, c + 1:c + 1 + bx, t0:t1], w01[t0:t1], out=ts)
                ls += ts
            if has_y:
                np.multiply(buf[r + 1:r + 1 + h, c:c + bx, t0:t1], w10[t0:t1], out=ts)
                ls += ts
            if has_x and has_y:
                np.multiply(buf[r + 1:r + 1 + h, c + 1:c + 1 + bx, t0:t1], w11[t0:t1], out=ts)
                ls += ts
        if noise:
            counts = np.empty((h, bx, n), dtype=np.uint16)
            for iy in range(h):
                for ix in range(bx):
                    g = np.random.Generator(np.random.Philox(
                        key=stream_key(p.seed, TAG_POISSON, ya + iy, x0 + ix)))
                    k = g.poisson(L[iy, ix])
                    np.minimum(k, 65535, out=k)
                    counts[iy, ix] = k
            out[:, ya - y0: yb - y0, :] = counts.transpose(2, 0, 1)
        else:
            out[:, ya - y0: yb - y0, :] = L.transpose(2, 0, 1)
    return out
