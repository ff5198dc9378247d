"""Greedy ROI initialisation (CaImAn's ``method_init='greedy_roi'``) and background init.

The movie is read a block of frames at a time (:mod:`~caiman_dask.cnmf.frames`).
Steps: subtract each pixel's temporal median; optionally divide by each pixel's noise
level (``normalize_init``) so that the search favours signal-to-noise rather than
brightness; optionally average ``ssub`` x ``ssub`` pixels and ``tsub`` frames (more
frames on a movie longer than ``max_init_frames`` averaged frames, so the search's memory
does not grow with the length); Gaussian-filter every frame with ``gSig``; then ``K``
times pick the pixel whose filtered trace has the most energy (the largest rolling sum
over ``rolling_length`` frames with ``rolling_sum``), fit a rank-1 non-negative model of
the data in the ``gSiz`` window around it, subtract it and refresh the filtered residual
nearby. The background is a rank-``nb`` NMF of the residual plus median. A few HALS
sweeps refine everything before footprints are brought back to full resolution.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.ndimage
import scipy.sparse as sp

from caiman_dask.cnmf.background import hals_rows, nmf_factors
from caiman_dask.cnmf.frames import (
    FrameSource,
    as_source,
    blocks,
    project,
    read_rows,
    sampled_rows,
)
from caiman_dask.cnmf.noise import get_noise_fft
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.spatial import hals_spatial, support_mask, to_frames, to_pixels


@dataclasses.dataclass(frozen=True)
class InitResult:
    """Initial ``A`` (npix, K), ``C`` (K, T), ``b`` (npix, nb), ``f`` (nb, T), and the
    ``centers`` (K, 2) (row, col) where each component was seeded."""

    A: np.ndarray
    C: np.ndarray
    b: np.ndarray
    f: np.ndarray
    centers: np.ndarray


def _blur(R: np.ndarray, sig: tuple[float, float], half: tuple[int, int]) -> np.ndarray:
    """Gaussian filter of each frame, kernel truncated to the ``gSiz`` window."""
    truncate = max(half[0] / max(sig[0], 1e-3), half[1] / max(sig[1], 1e-3), 1.0)
    return scipy.ndimage.gaussian_filter(R, sigma=(0.0, sig[0], sig[1]), truncate=truncate,
                                         mode="constant")


def _energy(rho: np.ndarray, rolling_length: int | None, *, step: int = 1024,
            samples: int = 2**20) -> np.ndarray:
    """Per-pixel energy of the filtered movie: total or max rolling sum of squares.

    Pixels are independent, so rows of the frame are taken about ``samples`` values at a
    time (float64 cumulative sums of one block, not of the whole movie), and the rolling
    maximum works through time ``step`` windows at a time.
    """
    T, d1 = rho.shape[:2]
    rows = max(1, samples // max(T * int(np.prod(rho.shape[2:])), 1))
    if d1 > rows:
        return np.concatenate([_energy(rho[:, r:r + rows], rolling_length, step=step,
                                       samples=samples) for r in range(0, d1, rows)])
    cs = np.square(rho, dtype=np.float64)
    np.cumsum(cs, axis=0, out=cs)
    if rolling_length is None or rolling_length >= T:
        return cs[-1]
    best = cs[rolling_length - 1].copy()
    for start in range(rolling_length, T, step):
        stop = min(start + step, T)
        best = np.maximum(best, (cs[start:stop] - cs[start - rolling_length:stop
                                                        - rolling_length]).max(axis=0))
    return best


def _finetune(data: np.ndarray, trace: np.ndarray, n_iter: int) -> tuple[np.ndarray,
                                                                       np.ndarray]:
    """Rank-1 non-negative fit ``data (T, m) ~ c a^T`` starting from ``c = trace``."""
    c = np.maximum(trace, 0.0)
    a = np.zeros(data.shape[1])
    for _ in range(n_iter):
        a = np.maximum(c @ data, 0.0) / max(float(c @ c), 1e-30)
        norm = float(np.linalg.norm(a))
        if norm == 0:
            break
        a /= norm
        c = np.maximum(data @ a, 0.0)
    return a, c


def _window(center: tuple[int, int], half: tuple[int, int], dims: tuple[int, ...]
            ) -> tuple[slice, slice]:
    return tuple(slice(max(c - h, 0), min(c + h + 1, d))
                 for c, h, d in zip(center, half, dims, strict=True))  # type: ignore


def _greedy(R: np.ndarray, K: int, sig: tuple[float, float], half: tuple[int, int], *,
            n_iter: int, rolling_length: int | None) -> tuple[np.ndarray, ...]:
    """Core loop on the (already normalised) residual ``R`` (T, d1, d2), changed in place."""
    T, d1, d2 = R.shape
    rho = _blur(R, sig, half)
    energy = _energy(rho, rolling_length)
    A, C, centers = np.zeros((K, d1, d2)), np.zeros((K, T)), np.zeros((K, 2), dtype=int)
    found = 0
    for k in range(K):
        r, c = np.unravel_index(int(np.argmax(energy)), energy.shape)
        if energy[r, c] <= 0:
            break
        rs, cs = _window((r, c), half, (d1, d2))
        data = R[:, rs, cs].reshape(T, -1).astype(np.float64)
        a, trace = _finetune(data, rho[:, r, c].astype(np.float64), n_iter)
        A[k, rs, cs] = a.reshape(rs.stop - rs.start, cs.stop - cs.start)
        C[k], centers[k] = trace, (r, c)
        R[:, rs, cs] -= (trace[:, None] * a[None, :]).reshape(T, rs.stop - rs.start, -1)
        wide = _window((r, c), (2 * half[0], 2 * half[1]), (d1, d2))
        src = _window((r, c), (3 * half[0], 3 * half[1]), (d1, d2))
        blurred = _blur(R[:, src[0], src[1]], sig, half)
        off = (wide[0].start - src[0].start, wide[1].start - src[1].start)
        rho[:, wide[0], wide[1]] = blurred[:, off[0]:off[0] + wide[0].stop - wide[0].start,
                                           off[1]:off[1] + wide[1].stop - wide[1].start]
        energy[wide] = _energy(rho[:, wide[0], wide[1]], rolling_length)
        energy[r, c] = 0.0
        found = k + 1
    return A[:found], C[:found], centers[:found]


def _scaled_downsample(source: FrameSource, scale: np.ndarray, ssub: int,
                       tsub: int) -> np.ndarray:
    """``_downsample(Y / scale, ssub, tsub)`` as float32, read a block of frames at a time.

    The same values as dividing the whole movie first, without holding it.
    """
    T, (d1, d2) = source.n_frames, source.dims
    out = np.empty((-(-T // tsub), -(-d1 // ssub), -(-d2 // ssub)), dtype=np.float32)
    for t0, t1 in blocks(source, multiple=tsub):
        frames = np.empty((t1 - t0, d1, d2), dtype=np.float32)  # one copy, in frame order
        frames[...] = to_frames(read_rows(source, t0, t1), (d1, d2))
        frames /= scale
        out[t0 // tsub:-(-t1 // tsub)] = _downsample(frames, ssub, tsub)
    return out


def init_tsub(n_frames: int, tsub: int, max_frames: int | None) -> int:
    """Temporal downsampling of the initialisation: ``tsub``, or more so that at most
    ``max_frames`` averaged frames are searched (None: no limit)."""
    if max_frames is None or -(-n_frames // tsub) <= max_frames:
        return tsub
    return -(-n_frames // max(int(max_frames), 1))


def _downsample(Y: np.ndarray, ssub: int, tsub: int) -> np.ndarray:
    """Block means over ``tsub`` frames and ``ssub`` x ``ssub`` pixels (edges padded)."""
    T, d1, d2 = Y.shape
    pads = ((0, (-T) % tsub), (0, (-d1) % ssub), (0, (-d2) % ssub))
    if any(p[1] for p in pads):
        Y = np.pad(Y, pads, mode="edge")
    T2, e1, e2 = Y.shape
    return Y.reshape(T2 // tsub, tsub, e1 // ssub, ssub, e2 // ssub, ssub).mean(axis=(1, 3, 5))


def _refine(Yr: np.ndarray, A: np.ndarray, C: np.ndarray, b: np.ndarray, f: np.ndarray,
            dims: tuple[int, int], iters: int) -> tuple[np.ndarray, ...]:
    """CaImAn-style HALS polish of (A, b) and (C, f) on the (downsampled) data."""
    K = A.shape[1]
    ones = sp.csc_matrix(np.ones((A.shape[0], b.shape[1]), dtype=bool))
    for _ in range(iters):
        Ab = np.concatenate([A, b], axis=1)
        W = hals_rows(Ab.T @ Yr, Ab.T @ Ab, np.concatenate([C, f], axis=0))
        mask = sp.hstack([support_mask(A, dims), ones], format="csc")
        Ab = hals_spatial(Yr @ W.T, W @ W.T, Ab, mask, iters=1)
        A, b, C, f = Ab[:, :K], Ab[:, K:], W[:K], W[K:]
    return A, C, b, f


def _upsample_pixels(M: np.ndarray, dims_d: tuple[int, int], dims: tuple[int, int],
                     ssub: int) -> np.ndarray:
    """(npix_d, n) F-ordered columns -> (npix, n) by pixel replication and cropping."""
    if ssub == 1:
        return M
    imgs = M.T.reshape(-1, dims_d[1], dims_d[0]).transpose(0, 2, 1)
    imgs = imgs.repeat(ssub, axis=1).repeat(ssub, axis=2)[:, :dims[0], :dims[1]]
    return to_pixels(imgs)


def initialize_components(data: np.ndarray | FrameSource, params: CNMFParams) -> InitResult:
    """Greedy ROI initialisation of ``params.init.K`` components and ``nb`` backgrounds.

    Parameters
    ----------
    data : ndarray, shape (T, d1, d2), or FrameSource
        The movie (read a block of frames at a time).
    params : CNMFParams
        Uses the ``init`` group (K, gSig, gSiz, nb, ssub, tsub, nIter, normalize_init,
        rolling_sum, rolling_length, max_init_frames: see :func:`init_tsub`).

    Returns
    -------
    InitResult
        Footprints and background in data units, F-ordered pixels.
    """
    init = params.init
    source = as_source(data)
    (d1, d2), T = source.dims, source.n_frames
    scale = np.ones((d1, d2), dtype=np.float32)
    if init.normalize_init:
        sn = get_noise_fft(sampled_rows(source, 3072))
        scale = np.maximum(sn, 1e-6 * max(float(sn.max()), 1e-12)).reshape(d2, d1).T
        scale = scale.astype(np.float32)
    tsub = init_tsub(T, init.tsub, init.max_init_frames)
    X = _scaled_downsample(source, scale, init.ssub, tsub)
    med = np.median(X, axis=0)
    R = X - med
    sig = tuple(g / init.ssub for g in init.gSig)
    half = tuple(max(int(round((w // 2) / init.ssub)), 1) for w in init.window())
    rolling = init.rolling_length // tsub if init.rolling_sum else None
    A_img, C, centers = _greedy(R, init.K, sig, half, n_iter=init.nIter,
                                rolling_length=max(rolling, 1) if rolling else None)
    dims_d = X.shape[1:]
    R += med  # the data minus the greedy components; R is not needed after this
    resid = to_pixels(R, dtype=np.float64)
    del R
    b, f = nmf_factors(np.maximum(resid, 0.0, out=resid), init.nb)
    del resid
    A, C, b, f = _refine(to_pixels(X, dtype=np.float64), to_pixels(A_img), C, b, f, dims_d,
                         iters=2)
    del X
    low = _LowResolution(A=A, b=b, C=C, f=f, dims=dims_d, ssub=init.ssub, tsub=tsub)
    return _full_resolution(source, low, scale, centers * init.ssub + init.ssub // 2)


@dataclasses.dataclass(frozen=True)
class _LowResolution:
    """The search's factors on ``ssub``-binned pixels and ``tsub``-averaged frames."""

    A: np.ndarray
    b: np.ndarray
    C: np.ndarray
    f: np.ndarray
    dims: tuple[int, int]
    ssub: int
    tsub: int


def _full_resolution(source: FrameSource, low: _LowResolution, scale: np.ndarray,
                     centers: np.ndarray) -> InitResult:
    """Bring footprints to full resolution and data units; traces to all frames."""
    Ab = _upsample_pixels(np.concatenate([low.A, low.b], axis=1), low.dims, source.dims,
                          low.ssub)
    Ab = Ab * to_pixels(scale[None])[:, :1].astype(np.float64)
    W = np.concatenate([low.C, low.f], axis=0)
    W = np.repeat(W, low.tsub, axis=1)[:, :source.n_frames]
    W = hals_rows(project(source, Ab), Ab.T @ Ab, W, sweeps=2)
    K = low.A.shape[1]
    return InitResult(A=Ab[:, :K], C=W[:K], b=Ab[:, K:], f=W[K:], centers=centers)
