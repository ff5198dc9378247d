"""Component evaluation: trace SNR (event exceptionality) and spatial r-values.

* SNR (CaImAn's idea): estimate each raw trace's mode and, from the values below it, a
  noise level; the tail probabilities of the largest ``N = ceil(fr * decay_time)``
  consecutive frames under that Gaussian noise (values scaled by 1/3 as in CaImAn) are
  multiplied, and their geometric mean is turned back into a z-score.
* area (optional, a caiman-dask extension): pixels at >= 0.2 of the footprint's maximum,
  compared with ``quality.min_area`` when that is set.
* r-value: correlation, over a footprint's support, between the footprint and the mean
  background-subtracted frame of the frames where the component is active.

The r-value needs ``Yr @ M`` (npix, K) for the activity matrix ``M`` (T, K) of
:func:`activity_matrix`; a driver computes it block by block (``Y_block @ M``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
from scipy.special import log_ndtr, ndtri_exp

from caiman_dask.cnmf.frames import FrameSource, as_source, correlate
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.errors import ParameterError


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Accepted / rejected component indices and the per-component values."""

    idx_components: np.ndarray
    idx_components_bad: np.ndarray
    SNR_comp: np.ndarray
    r_values: np.ndarray
    areas: np.ndarray


def mode_robust(X: np.ndarray) -> np.ndarray:
    """Half-sample mode of each row (Bickel & Fruehwirth), vectorised over rows."""
    X = np.sort(np.atleast_2d(np.asarray(X, dtype=np.float64)), axis=1)
    rows = np.arange(X.shape[0])[:, None]
    n = X.shape[1]
    while n > 3:
        h = int(np.ceil(n / 2))
        widths = X[:, h - 1:n] - X[:, :n - h + 1]
        start = np.argmin(widths, axis=1)
        X = X[rows, start[:, None] + np.arange(h)[None, :]]
        n = h
    if n < 3:
        return X[:, :n].mean(axis=1)
    low, high = X[:, 1] - X[:, 0], X[:, 2] - X[:, 1]
    return np.where(low < high, X[:, :2].mean(1),
                    np.where(low > high, X[:, 1:].mean(1), X[:, 1]))


def _window_sums(x: np.ndarray, N: int) -> np.ndarray:
    cs = np.cumsum(x, axis=1)
    if N >= x.shape[1]:
        return cs[:, -1:]
    out = cs[:, N - 1:].copy()
    out[:, 1:] -= cs[:, :-N]
    return out


def trace_snr(traces: np.ndarray, *, fr: float, decay_time: float) -> np.ndarray:
    """SNR-like value (K,) of raw traces ``C + YrA`` by event exceptionality."""
    traces = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    N = max(int(np.ceil(fr * decay_time)), 1)
    md = mode_robust(traces)
    below = np.minimum(traces - md[:, None], 0.0)
    count = np.maximum((below < 0).sum(axis=1), 1)
    sd = np.sqrt((below ** 2).sum(axis=1) / count)
    z = (traces - md[:, None]) / (3.0 * np.maximum(sd, 1e-12)[:, None])
    fitness = _window_sums(log_ndtr(-z), N).min(axis=1)
    return -ndtri_exp(np.minimum(fitness / N, 0.0))


def _peak_frames(C: np.ndarray, *, n_peaks: int, thres: float) -> np.ndarray:
    """Boolean (K, T) of the ``n_peaks`` highest local maxima above ``thres * max``."""
    K, T = C.shape
    local = np.zeros_like(C, dtype=bool)
    local[:, 1:-1] = (C[:, 1:-1] > C[:, :-2]) & (C[:, 1:-1] >= C[:, 2:])
    local &= C > thres * C.max(axis=1, keepdims=True)
    local &= C > 0
    peaks = np.zeros_like(local)
    for k in range(K):
        idx = np.flatnonzero(local[k])
        peaks[k, idx[np.argsort(C[k, idx])[::-1][:n_peaks]]] = True
    return peaks


def _dilate_time(peaks: np.ndarray, before: int, after: int) -> np.ndarray:
    """Frames within ``[t - before, t + after]`` of a peak ``t``."""
    K, T = peaks.shape
    padded = np.zeros((K, T + before + after + 1))
    padded[:, after + 1:after + 1 + T] = peaks
    cs = np.cumsum(padded, axis=1)
    # frame u is active when a peak lies in [u - after, u + before]
    return (cs[:, before + after + 1:] - cs[:, :T]) > 0


def activity_matrix(C: np.ndarray, A: sp.spmatrix | np.ndarray, *, n_peaks: int = 5,
                    t_before: int = 3, t_after: int = 10, thres: float = 0.3,
                    overlap_thr: float = 0.1) -> sp.csc_matrix:
    """(T, K) matrix whose column ``k`` averages the frames where component ``k`` is active.

    Active frames are windows ``[t - t_before, t + t_after]`` around the ``n_peaks``
    largest events; frames where an overlapping component (normalised overlap above
    ``overlap_thr``) is also active are left out unless nothing would remain.
    """
    A = sp.csc_matrix(A)
    active = _dilate_time(_peak_frames(C, n_peaks=n_peaks, thres=thres), t_before, t_after)
    norms = np.sqrt(np.asarray(A.multiply(A).sum(axis=0))).ravel()
    AA = (A.T @ A).toarray() / np.outer(np.maximum(norms, 1e-12), np.maximum(norms, 1e-12))
    np.fill_diagonal(AA, 0.0)
    clean = active.copy()
    for k in range(C.shape[0]):
        others = np.flatnonzero(AA[k] > overlap_thr)
        if others.size:
            keep = active[k] & ~active[others].any(axis=0)
            clean[k] = keep if keep.any() else active[k]
    counts = np.maximum(clean.sum(axis=1), 1)
    return sp.csc_matrix((clean / counts[:, None]).T)


def evaluation_block(Y_block: np.ndarray | FrameSource, M: sp.spmatrix) -> np.ndarray:
    """``Y_block @ M`` (npix_block, K): one pixel block's mean active frame per component.

    ``Y_block`` is (npix_block, T) rows or a source read a block of frames at a time.
    """
    return correlate(as_source(Y_block), sp.csc_matrix(M).T)


def on_support(YM_block: np.ndarray, A_block: sp.spmatrix | np.ndarray) -> sp.csc_matrix:
    """``YM_block`` (npix_block, K) kept only on the support of ``A_block`` (same rows).

    Lets a driver stack blockwise ``(Y - b f) @ M`` without holding a dense (npix, K).
    """
    A = sp.coo_matrix(A_block)
    keep = A.data != 0
    rows, cols = A.row[keep], A.col[keep]
    vals = np.asarray(YM_block)[rows, cols]
    return sp.csc_matrix((vals, (rows, cols)), shape=A.shape)


def spatial_rvalues(YM: np.ndarray | sp.spmatrix, A: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Correlation (K,) of each footprint with ``YM[:, k]`` over the footprint's support.

    ``YM`` (npix, K) is the background-subtracted mean active frame, ``(Yr - b f) @ M``,
    dense or (from :func:`on_support`) sparse on the footprints' supports. Footprints
    of fewer than 3 pixels get -1.
    """
    coo = sp.coo_matrix(sp.csc_matrix(A))
    keep = coo.data != 0
    rows, cols, y = coo.row[keep], coo.col[keep], coo.data[keep].astype(np.float64)
    if sp.issparse(YM):
        picked = sp.csr_matrix(YM)[rows, cols]  # a sparse matrix when nothing is picked
        x = np.asarray(picked.toarray() if sp.issparse(picked) else picked,
                       dtype=np.float64).ravel()
    else:
        x = np.asarray(YM, dtype=np.float64)[rows, cols]
    K = A.shape[1]
    n = np.bincount(cols, minlength=K).astype(np.float64)
    safe = np.maximum(n, 1.0)
    x = x - (np.bincount(cols, weights=x, minlength=K) / safe)[cols]
    y = y - (np.bincount(cols, weights=y, minlength=K) / safe)[cols]
    sxy = np.bincount(cols, weights=x * y, minlength=K)
    den = np.sqrt(np.bincount(cols, weights=x * x, minlength=K)
                  * np.bincount(cols, weights=y * y, minlength=K))
    r = np.full(K, -1.0)
    ok = (n >= 3) & (den > 0)
    r[ok] = sxy[ok] / den[ok]
    return r


def footprint_area(A: sp.spmatrix | np.ndarray, *, binarize: float = 0.2) -> np.ndarray:
    """Pixels (K,) of each footprint holding at least ``binarize`` times its maximum."""
    A = sp.csc_matrix(A)
    top = np.asarray(A.max(axis=0).todense()).ravel()
    cols = np.repeat(np.arange(A.shape[1]), np.diff(A.indptr))
    keep = (A.data >= binarize * top[cols]) & (A.data > 0)
    return np.bincount(cols[keep], minlength=A.shape[1])


def classify(snr: np.ndarray, rval: np.ndarray, params: CNMFParams, *,
             areas: np.ndarray | None = None) -> Evaluation:
    """CaImAn's rule: accept when SNR >= min_SNR or r >= rval_thr, unless either value
    is below its ``*_lowest`` floor; with ``quality.min_area`` set, also reject
    footprints of fewer pixels than that (``areas`` from :func:`footprint_area`)."""
    q = params.quality
    ok = (snr >= q.min_SNR) | (rval >= q.rval_thr)
    ok &= (snr > q.SNR_lowest) & (rval > q.rval_lowest)
    areas = np.full(snr.shape, -1) if areas is None else np.asarray(areas)
    if q.min_area is not None:
        if np.any(areas < 0):
            raise ParameterError("quality.min_area is set: pass the footprint areas "
                                 "(evaluate.footprint_area(A)) to classify")
        ok &= areas >= q.min_area
    return Evaluation(idx_components=np.flatnonzero(ok), idx_components_bad=np.flatnonzero(~ok),
                      SNR_comp=snr, r_values=rval, areas=areas)


def evaluate_components(Yr: np.ndarray, A: sp.spmatrix | np.ndarray, C: np.ndarray,
                        b: np.ndarray, f: np.ndarray, YrA: np.ndarray,
                        params: CNMFParams) -> Evaluation:
    """Evaluate components with the whole ``Yr`` (npix, T) in memory (a patch, a test).

    The full-FOV driver computes the same with :func:`activity_matrix`, a blockwise
    ``Yr @ M``, :func:`spatial_rvalues`, :func:`trace_snr` and :func:`classify`.
    """
    snr = trace_snr(C + YrA, fr=params.data.fr, decay_time=params.data.decay_time)
    M = activity_matrix(C, A)
    YM = evaluation_block(Yr, M) - b @ evaluation_block(f, M)
    return classify(snr, spatial_rvalues(YM, A), params, areas=footprint_area(A))
