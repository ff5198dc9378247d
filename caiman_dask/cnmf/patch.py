"""CNMF on one spatial patch: the pure function a driver maps over CaImAn's patch grid.

Pixel convention (whole package): pixel (row ``r``, col ``c``) of a ``(d1, d2)`` patch is
row ``r + d1 * c`` of ``A``, ``b`` and ``sn`` (CaImAn's F-order flattening).
Output footprints have unit L2 norm; ``C``, ``S``, ``YrA``, ``bl``, ``c1`` and
``neurons_sn`` carry the amplitude (CaImAn's ``normalize_components`` convention).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp

from caiman_dask.cnmf._validate import validate_params
from caiman_dask.cnmf.frames import FrameSource, as_source, correlate, project, sampled_rows
from caiman_dask.cnmf.initialization import initialize_components
from caiman_dask.cnmf.merge import merge_components
from caiman_dask.cnmf.noise import get_noise_fft
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.spatial import full_support, hals_spatial, threshold_components
from caiman_dask.cnmf.temporal import TemporalResult, update_temporal
from caiman_dask.errors import MovieError


@dataclasses.dataclass(frozen=True)
class PatchResult:
    """CNMF estimates of one patch (K components, nb backgrounds, T frames).

    ``A`` csc (npix, K) unit-norm footprints; ``C``, ``S``, ``YrA`` (K, T); ``b`` (npix, nb);
    ``f`` (nb, T); ``bl``, ``c1``, ``neurons_sn`` (K,); ``g`` (K, p); ``sn`` (npix,) pixel
    noise; ``dims`` the patch shape (d1, d2).
    """

    A: sp.csc_matrix
    C: np.ndarray
    S: np.ndarray
    b: np.ndarray
    f: np.ndarray
    YrA: np.ndarray
    bl: np.ndarray
    c1: np.ndarray
    neurons_sn: np.ndarray
    g: np.ndarray
    sn: np.ndarray
    dims: tuple[int, int]


def _source(Y: np.ndarray | FrameSource) -> FrameSource:
    """The patch as a frame source, checked to be large enough."""
    if not isinstance(Y, FrameSource) and not (isinstance(Y, np.ndarray) and Y.ndim == 3):
        raise MovieError(f"fit_patch needs a (T, d1, d2) array or a FrameSource, got "
                         f"{getattr(Y, 'shape', type(Y).__name__)}")
    source = as_source(Y)
    if source.n_frames < 8 or min(source.dims) < 3:
        raise MovieError(f"patch of {source.n_frames} frames of {source.dims} pixels is too "
                         "small: need T >= 8 frames and at least 3x3 pixels")
    return source


def _temporal(source, A, b, C, f, params, *, deconvolve_traces: bool) -> TemporalResult:
    Ab = np.concatenate([A, b], axis=1)
    return update_temporal(project(source, Ab), Ab.T @ Ab, C, f, params,
                           deconvolve_traces=deconvolve_traces)


def _spatial(source, A, b, C, f, params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spatial HALS + thresholding; drops empty components. Returns (A, b, kept)."""
    dims, nb = source.dims, b.shape[1]
    W = np.concatenate([C, f], axis=0)
    Ab = hals_spatial(correlate(source, W), W @ W.T, np.concatenate([A, b], axis=1),
                      full_support(A, dims, nb))
    K = A.shape[1]
    s = params.spatial
    At = threshold_components(Ab[:, :K], dims, thr_method=s.thr_method, nrgthr=s.nrgthr,
                              maxthr=s.maxthr, extract_cc=s.extract_cc)
    kept = np.flatnonzero((np.diff(At.indptr) > 0) & (np.abs(C).sum(axis=1) > 0))
    return At[:, kept].toarray(), Ab[:, K:], kept


def _normalised(A, b, tr: TemporalResult, sn, dims) -> PatchResult:
    norm = np.linalg.norm(A, axis=0)
    keep = norm > 0
    scale = norm[keep]
    A = A[:, keep] / scale
    col = scale[:, None]
    return PatchResult(A=sp.csc_matrix(A), C=tr.C[keep] * col, S=tr.S[keep] * col, b=b,
                       f=tr.f, YrA=tr.YrA[keep] * col, bl=tr.bl[keep] * scale,
                       c1=tr.c1[keep] * scale, neurons_sn=tr.neurons_sn[keep] * scale,
                       g=tr.g[keep], sn=sn, dims=dims)


def _only_init(source, init, sn, params) -> PatchResult:
    """Initialisation only: traces as initialised, residual traces, no deconvolution."""
    K, T = init.C.shape
    Ab = np.concatenate([init.A, init.b], axis=1)
    AY, AA = project(source, Ab), Ab.T @ Ab
    W = np.concatenate([init.C, init.f], axis=0)
    diag = np.maximum(np.diag(AA)[:K], 1e-12)
    YrA = (AY[:K] - AA[:K] @ W) / diag[:, None]
    zeros = np.zeros(K)
    tr = TemporalResult(C=init.C, f=init.f, S=np.zeros((K, T)), bl=zeros, c1=zeros.copy(),
                        g=np.zeros((K, params.temporal.p)),
                        neurons_sn=get_noise_fft(init.C + YrA), YrA=YrA, lam=zeros.copy())
    return _normalised(init.A, init.b, tr, sn, source.dims)


def fit_patch(Y: np.ndarray | FrameSource, params: CNMFParams, *,
              seed: int = 0) -> PatchResult:
    """Run CNMF on one patch.

    The patch is read a block of frames at a time (:mod:`~caiman_dask.cnmf.frames`) and
    the initialisation searches at most ``init.max_init_frames`` averaged frames, so the
    memory of a fit does not grow with the number of frames beyond the (K, T) traces.

    Parameters
    ----------
    Y : ndarray, shape (T, d1, d2), or FrameSource
        The patch's frames (any real dtype; read as float32).
    params : CNMFParams
        All groups are used; ``patch.only_init`` stops after initialisation (then ``S`` is
        zero and ``g`` is zero, as CaImAn leaves them unset).
    seed : int
        Accepted for API stability; the built-in engine is deterministic without it.

    Returns
    -------
    PatchResult

    Raises
    ------
    MovieError
        The patch is too small or holds NaN / inf values.
    """
    del seed  # every step is deterministic
    source = _source(Y)
    dims = source.dims
    validate_params(params.replace(patch={"rf": None}), dims)
    pre = params.preprocess
    sn = get_noise_fft(sampled_rows(source, pre.max_num_samples_fft),
                       noise_range=pre.noise_range, noise_method=pre.noise_method,
                       max_num_samples_fft=pre.max_num_samples_fft)
    init = initialize_components(source, params)
    if params.patch.only_init:
        return _only_init(source, init, sn, params)
    A, b, C, f = init.A, init.b, init.C, init.f
    tr = _temporal(source, A, b, C, f, params, deconvolve_traces=False)
    for rnd in range(2):
        A, b, kept = _spatial(source, A, b, tr.C, tr.f, params)
        tr = _temporal(source, A, b, tr.C[kept], tr.f, params, deconvolve_traces=True)
        if rnd == 0 and params.merging.do_merge and A.shape[1] > 1:
            merged = merge_components(A, tr.C, merge_thr=params.merging.merge_thr,
                                      duplicate_thr=params.merging.duplicate_thr)
            A, C = merged.A.toarray(), merged.C
            tr = dataclasses.replace(tr, C=C)
    return _normalised(A, b, tr, sn, dims)
