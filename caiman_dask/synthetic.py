"""Synthetic calcium-imaging movies with ground truth (tests, benchmarks, the demo).

Neurons are elliptical Gaussian footprints (some overlapping) firing Poisson spike trains
of log-normal amplitudes through a GCaMP-like AR(2) kernel; a smooth neuropil background
fluctuates slowly; the photon counts are Poisson with Gaussian read noise. Pixels are
flattened in F order (pixel ``(r, c)`` is row ``r + d1 * c``), as in the package.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.signal


@dataclasses.dataclass(frozen=True)
class SynthMovie:
    """A movie ``Y`` (T, d1, d2) float32 and its ground truth.

    ``A`` (d1*d2, K) footprints with peak 1; ``C``/``S`` (K, T) calcium and spikes in
    photons; ``b`` (d1*d2, 1) and ``f`` (1, T) background; ``g`` (2,) AR coefficients;
    ``centers`` (K, 2) (row, col); ``snr`` (K,) single-spike peak over pixel noise.
    """

    Y: np.ndarray
    A: np.ndarray
    C: np.ndarray
    S: np.ndarray
    b: np.ndarray
    f: np.ndarray
    g: np.ndarray
    centers: np.ndarray
    snr: np.ndarray
    noise_sd: np.ndarray


def ar2_coefficients(*, fr: float, decay_time: float, rise_time: float) -> np.ndarray:
    """AR(2) coefficients of a kernel with the given decay and rise times (s)."""
    d, r = np.exp(-1.0 / (decay_time * fr)), np.exp(-1.0 / (rise_time * fr))
    return np.array([d + r, -d * r])


def spike_trains(rng: np.random.Generator, *, K: int, T: int, fr: float,
                 rate: float) -> np.ndarray:
    """Poisson spike counts (K, T) at ``rate`` Hz with log-normal amplitudes (mean 1)."""
    counts = rng.poisson(rate / fr, size=(K, T)).astype(np.float64)
    counts[:, 0] = 0.0
    return counts * rng.lognormal(-0.08, 0.4, size=(K, T))


def _place(rng: np.random.Generator, dims: tuple[int, int], K: int, margin: float,
           min_dist: float) -> np.ndarray:
    centers: list[np.ndarray] = []
    while len(centers) < K:
        cand = rng.uniform(margin, np.asarray(dims) - 1 - margin)
        if all(np.hypot(*(cand - c)) >= min_dist for c in centers):
            centers.append(cand)
    return np.array(centers)


def footprints(rng: np.random.Generator, centers: np.ndarray, dims: tuple[int, int], *,
               gSig: float) -> np.ndarray:
    """Elliptical Gaussians of peak 1, cut at 2.5 sigma, flattened in F order (npix, K)."""
    rows, cols = np.meshgrid(np.arange(dims[0]), np.arange(dims[1]), indexing="ij")
    out = np.zeros((dims[0] * dims[1], len(centers)))
    for k, (r0, c0) in enumerate(centers):
        sr, sc = gSig * rng.uniform(0.45, 0.6, size=2)
        q = ((rows - r0) / sr) ** 2 + ((cols - c0) / sc) ** 2
        img = np.exp(-0.5 * q) * (q < 2.5 ** 2)
        out[:, k] = img.ravel(order="F") / img.max()
    return out


def neuropil(dims: tuple[int, int], T: int, *, level: float, fr: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Smooth spatial background (npix, 1) and a slow temporal modulation (1, T)."""
    rows, cols = np.meshgrid(np.arange(dims[0]), np.arange(dims[1]), indexing="ij")
    img = 1.0 + 0.3 * np.cos(rows / dims[0] * np.pi) * np.cos(cols / dims[1] * 2.0)
    t = np.arange(T) / fr
    f = 1.0 + 0.1 * np.sin(2 * np.pi * t / 37.0) + 0.05 * np.sin(2 * np.pi * t / 11.0)
    return level * img.ravel(order="F")[:, None], f[None, :]


def make_movie(*, dims: tuple[int, int] = (64, 64), T: int = 1000, K: int = 10,
               gSig: float = 4.0, fr: float = 30.0, decay_time: float = 0.4,
               rise_time: float = 0.05, rate: float = 1.0, amplitude: float = 25.0,
               background: float = 20.0, read_noise: float = 2.0, min_dist: float = 6.0,
               baseline: float = 0.0, seed: int = 0) -> SynthMovie:
    """Simulate a movie; see :class:`SynthMovie` for the ground truth returned.

    ``baseline`` adds a resting fluorescence (photons at a footprint's peak) to every
    neuron, so cells show in the mean image as in real two-photon data; ``C`` stays the
    activity above it.
    """
    rng = np.random.default_rng(seed)
    g = ar2_coefficients(fr=fr, decay_time=decay_time, rise_time=rise_time)
    S = spike_trains(rng, K=K, T=T, fr=fr, rate=rate) * amplitude
    C = scipy.signal.lfilter([1.0], [1.0, -g[0], -g[1]], S, axis=1)
    centers = _place(rng, dims, K, margin=gSig, min_dist=min_dist)
    A = footprints(rng, centers, dims, gSig=gSig)
    b, f = neuropil(dims, T, level=background, fr=fr)
    rate_img = A @ (C + baseline) + b @ f
    counts = rng.poisson(rate_img).astype(np.float64)
    noisy = counts + rng.normal(0.0, read_noise, size=counts.shape)
    Y = noisy.T.reshape(T, dims[1], dims[0]).transpose(0, 2, 1).astype(np.float32)
    noise_sd = np.sqrt(b[:, 0] * f.mean() + read_noise ** 2)
    peak_pix = np.argmax(A, axis=0)
    snr = amplitude * A[peak_pix, np.arange(K)] / noise_sd[peak_pix]
    return SynthMovie(Y=Y, A=A, C=C, S=S, b=b, f=f, g=g, centers=centers, snr=snr,
                      noise_sd=noise_sd)


def random_walk(rng: np.random.Generator, T: int, *, step: float = 0.5,
                limit: float = 4.0) -> np.ndarray:
    """A (T, 2) sub-pixel random walk of frame displacements, kept within ``limit`` px."""
    steps = rng.normal(0.0, step, size=(T, 2))
    walk = np.zeros((T, 2))
    for t in range(1, T):
        walk[t] = np.clip(walk[t - 1] + steps[t], -limit, limit)
    return walk


def move_frames(Y: np.ndarray, displacements: np.ndarray) -> np.ndarray:
    """Move each frame's content by its (rows, cols) displacement (cubic, edges replicated).

    Frame ``t`` becomes ``Y[t](p - d_t)``: the shift that corrects it is ``-d_t``.
    """
    import cv2

    out = np.empty_like(Y, dtype=np.float32)
    for t, (frame, (dy, dx)) in enumerate(zip(Y, displacements, strict=True)):
        matrix = np.float32([[1, 0, dx], [0, 1, dy]])
        out[t] = cv2.warpAffine(frame.astype(np.float32), matrix, frame.shape[::-1],
                                flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return out
