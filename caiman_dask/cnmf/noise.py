"""Noise level by power spectral density, and AR coefficients from the autocovariance.

All functions work on the last axis (time) of an array of traces, e.g. ``Yr`` of shape
``(npix, T)`` or component traces ``(K, T)``.
"""

from __future__ import annotations

import numpy as np

from caiman_dask.errors import ParameterError

NOISE_METHODS = ("mean", "median", "logmexp")


def sample_stretches(T: int, max_samples: int) -> list[tuple[int, int]]:
    """Frame ranges the noise estimate reads: all ``T`` frames, or (CaImAn's rule) three
    evenly spread stretches of ``max_samples // 3`` frames when ``T > max_samples``."""
    if T <= max_samples:
        return [(0, T)]
    n = max_samples // 3
    return [(s, s + n) for s in (0, T // 2 - n // 2, T - n)]


def _subsample_time(y: np.ndarray, max_samples: int) -> np.ndarray:
    """The frames of :func:`sample_stretches` (time last)."""
    parts = sample_stretches(y.shape[-1], max_samples)
    if len(parts) == 1:
        return y
    return np.concatenate([y[..., a:b] for a, b in parts], axis=-1)


def power_spectrum(y: np.ndarray, *, noise_range: tuple[float, float] = (0.25, 0.5),
                   max_num_samples_fft: int = 3072) -> np.ndarray:
    """One-sided periodogram of each trace restricted to the band ``noise_range``.

    Frequencies are in units of the sampling rate (0.5 = Nyquist), so the band does not
    depend on the frame rate. For white noise of variance ``s**2`` every returned value
    has expectation ``2 * s**2``.
    """
    y = _subsample_time(np.asarray(y, dtype=np.float32), max_num_samples_fft)
    T = y.shape[-1]
    freqs = np.arange(T // 2 + 1) / T
    band = (freqs > noise_range[0]) & (freqs <= noise_range[1])
    spectrum = np.fft.rfft(y, axis=-1)[..., band]
    return 2.0 / T * (spectrum.real ** 2 + spectrum.imag ** 2)


def mean_psd(psd: np.ndarray, *, method: str = "mean") -> np.ndarray:
    """Average a band of the periodogram into a noise standard deviation.

    ``'mean'`` is unbiased for white noise; ``'median'`` is robust to narrow-band
    peaks but low by a factor ``sqrt(ln 2)``; ``'logmexp'`` (exp of the mean log) is robust
    too but low by ``exp(-euler_gamma / 2)`` (~0.75) — CaImAn's choices, kept as they are.
    """
    half = psd / 2.0
    if method == "mean":
        return np.sqrt(np.mean(half, axis=-1))
    if method == "median":
        return np.sqrt(np.median(half, axis=-1))
    if method == "logmexp":
        return np.sqrt(np.exp(np.mean(np.log(half + 1e-30), axis=-1)))
    raise ParameterError(f"noise_method={method!r} is invalid: use one of {NOISE_METHODS}")


def get_noise_fft(y: np.ndarray, *, noise_range: tuple[float, float] = (0.25, 0.5),
                  noise_method: str = "mean", max_num_samples_fft: int = 3072) -> np.ndarray:
    """Noise standard deviation of each trace from its high-frequency power.

    Parameters
    ----------
    y : ndarray, shape (..., T)
        Traces (time last).
    noise_range : (float, float)
        Band of the periodogram, as fractions of the sampling rate.
    noise_method : {'mean', 'median', 'logmexp'}
        How the band is averaged, see :func:`mean_psd`.
    max_num_samples_fft : int
        Longer traces are subsampled to three stretches of this many frames in total.

    Returns
    -------
    ndarray, shape (...)
        Noise standard deviation per trace.
    """
    if y.shape[-1] < 8:
        raise ParameterError(f"noise estimation needs at least 8 frames, got {y.shape[-1]}")
    rows = _rows_per_block(min(y.shape[-1], max_num_samples_fft))
    if y.ndim == 2 and y.shape[0] > rows:  # the spectra of a block of pixels at a time
        return np.concatenate([get_noise_fft(y[i:i + rows], noise_range=noise_range,
                                             noise_method=noise_method,
                                             max_num_samples_fft=max_num_samples_fft)
                               for i in range(0, y.shape[0], rows)])
    psd = power_spectrum(y, noise_range=noise_range, max_num_samples_fft=max_num_samples_fft)
    return mean_psd(psd, method=noise_method).astype(np.float64)


def _rows_per_block(T: int, samples: int = 2**19) -> int:
    """Traces whose spectra together hold about ``samples`` values (~8 MB complex)."""
    return max(1, samples // T)


def autocovariance(y: np.ndarray, *, max_lag: int) -> np.ndarray:
    """Biased autocovariance of each trace for lags ``0..max_lag`` (FFT based)."""
    y = np.asarray(y, dtype=np.float64)
    y = y - y.mean(axis=-1, keepdims=True)
    T = y.shape[-1]
    n = 1 << int(np.ceil(np.log2(2 * T - 1)))
    spec = np.fft.rfft(y, n=n, axis=-1)
    xc = np.fft.irfft(spec.real ** 2 + spec.imag ** 2, n=n, axis=-1)[..., :max_lag + 1]
    return xc / T


def _stabilise(g: np.ndarray, fudge_factor: float) -> np.ndarray:
    """Make the AR polynomial's roots real, in (0, 1), and shrink them by ``fudge_factor``."""
    roots = np.roots(np.concatenate([[1.0], -g]))
    roots = np.clip(roots.real, 0.15, 0.995)
    poly = np.poly(fudge_factor * roots)
    return -poly[1:].real


def estimate_time_constant(y: np.ndarray, *, p: int = 2, sn: float | None = None,
                           lags: int = 5, fudge_factor: float = 1.0) -> np.ndarray:
    """AR(p) coefficients ``g`` of a calcium trace from its autocovariance.

    Solves the noise-corrected Yule-Walker equations over lags ``1..lags + p - 1``
    (least squares): ``acov(k) = sum_j g_j acov(k - j)`` for ``k >= 1`` with the white-noise
    variance ``sn**2`` removed from ``acov(0)``. Roots are clipped to (0.15, 0.995) and
    multiplied by ``fudge_factor`` (CaImAn's 0.96 shortens kernels slightly, which
    counters the bias of noisy estimates).

    Parameters
    ----------
    y : ndarray, shape (T,)
        One fluorescence trace.
    p : {1, 2}
        AR order.
    sn : float, optional
        Noise standard deviation; estimated with :func:`get_noise_fft` when omitted.
    lags : int
        Number of extra lags used in the least-squares fit.
    fudge_factor : float
        Shrinkage of the roots, in (0, 1].

    Returns
    -------
    ndarray, shape (p,)
    """
    if p not in (1, 2):
        raise ParameterError(f"AR order p={p!r} is invalid for estimation: use 1 or 2")
    if sn is None:
        sn = float(get_noise_fft(y))
    nl = lags + p
    xc = autocovariance(y, max_lag=nl)
    rows = np.arange(1, nl)
    design = xc[np.abs(rows[:, None] - 1 - np.arange(p)[None, :])]
    for j in range(p):
        design[j, j] -= sn ** 2  # lag-0 entries carry the noise variance
    g = np.linalg.lstsq(design, xc[rows], rcond=None)[0]
    return _stabilise(g, fudge_factor)

