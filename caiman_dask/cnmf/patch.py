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
from caiman_dask.cnmf.initialization import initialize_components
from caiman_dask.cnmf.merge import merge_components
from caiman_dask.cnmf.noise import get_noise_fft
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.spatial import (
    full_support,
    threshold_components,
    to_frames,
    to_pixels,
    update_spatial_block,
)
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


def _pixels(Y: np.ndarray) -> np.ndarray:
    """The patch's float32 F-ordered pixel rows (one copy of any input dtype), checked."""
    if not isinstance(Y, np.ndarray) or Y.ndim != 3:
        raise MovieError(f"fit_patch needs a (T, d1, d2) array, got "
                         f"{getattr(Y, 'shape', type(Y).__name__)}")
    if Y.shape[0] < 8 or min(Y.shape[1:]) < 3:
        raise MovieError(f"patch of shape {Y.shape} is too small: need T >= 8 frames and "
                         "at least 3x3 pixels")
    Yr = to_pixels(np.asarray(Y), dtype=np.float32)
    if not np.isfinite(Yr).all():
        raise MovieError("patch contains NaN or inf values; fill them (e.g. motion-correction "
                         "border_nan='copy') before CNMF")
    return Yr


def _projections(Yr: np.ndarray, Ab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    AY = (Yr.T @ Ab.astype(np.float32)).T.astype(np.float64)
    return AY, Ab.T @ Ab


def _temporal(Yr, A, b, C, f, params, *, deconvolve_traces: bool) -> TemporalResult:
    Ab = np.concatenate([A, b], axis=1)
    AY, AA = _projections(Yr, Ab)
    return update_temporal(AY, AA, C, f, params, deconvolve_traces=deconvolve_traces)


def _spatial(Yr, A, b, C, f, dims, params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spatial HALS + thresholding; drops empty components. Returns (A, b, kept)."""
    nb = b.shape[1]
    Ab = update_spatial_block(Yr, np.concatenate([A, b], axis=1), full_support(A, dims, nb),
                              np.concatenate([C, f], axis=0))
    K = A.shape[1]
    s = params.spatial
    At = threshold_components(Ab[:, :K], dims, thr_method=s.thr_method, nrgthr=s.nrgthr,
                              maxthr=s.maxthr, extract_cc=s.extract_cc)
    kept = np.flatnonzero((np.diff(At.indptr) > 0) & (np.abs(C).sum(axis=1) > 0))
    return At[:, kept].toarray(), Ab[:, K:], kept


def _normalised(Yr, A, b, tr: TemporalResult, sn, dims) -> PatchResult:
    norm = np.linalg.norm(A, axis=0)
    keep = norm > 0
    scale = norm[keep]
    A = A[:, keep] / scale
    col = scale[:, None]
    return PatchResult(A=sp.csc_matrix(A), C=tr.C[keep] * col, S=tr.S[keep] * col, b=b,
                       f=tr.f, YrA=tr.YrA[keep] * col, bl=tr.bl[keep] * scale,
                       c1=tr.c1[keep] * scale, neurons_sn=tr.neurons_sn[keep] * scale,
                       g=tr.g[keep], sn=sn, dims=dims)


def _only_init(Yr, init, sn, dims, params) -> PatchResult:
    """Initialisation only: traces as initialised, residual traces, no deconvolution."""
    K, T = init.C.shape
    AY, AA = _projections(Yr, np.concatenate([init.A, init.b], axis=1))
    W = np.concatenate([init.C, init.f], axis=0)
    diag = np.maximum(np.diag(AA)[:K], 1e-12)
    YrA = (AY[:K] - AA[:K] @ W) / diag[:, None]
    zeros = np.zeros(K)
    tr = TemporalResult(C=init.C, f=init.f, S=np.zeros((K, T)), bl=zeros, c1=zeros.copy(),
                        g=np.zeros((K, params.temporal.p)),
                        neurons_sn=get_noise_fft(init.C + YrA), YrA=YrA, lam=zeros.copy())
    return _normalised(Yr, init.A, init.b, tr, sn, dims)


def fit_patch(Y: np.ndarray, params: CNMFParams, *, seed: int = 0) -> PatchResult:
    """Run CNMF on one patch.

    Parameters
    ----------
    Y : ndarray, shape (T, d1, d2)
        The patch's frames (cast to float32).
    params : CNMFParams
        All groups are used; ``patch.only_init`` stops after initialisation (then ``S`` is
        zero and ``g`` is zero, as CaImAn leaves them unset).
    seed : int
        Accepted for API stability; the built-in engine is deterministic without it.

    Returns
    -------
    PatchResult
    """
    del seed  # every step is deterministic
    Yr = _pixels(Y)
    dims = (int(Y.shape[1]), int(Y.shape[2]))
    del Y  # the caller's array; from here on the frames are views of Yr
    validate_params(params.replace(patch={"rf": None}), dims)
    pre = params.preprocess
    sn = get_noise_fft(Yr, noise_range=pre.noise_range, noise_method=pre.noise_method,
                       max_num_samples_fft=pre.max_num_samples_fft)
    init = initialize_components(to_frames(Yr, dims), params, Yr=Yr)
    if params.patch.only_init:
        return _only_init(Yr, init, sn, dims, params)
    A, b, C, f = init.A, init.b, init.C, init.f
    tr = _temporal(Yr, A, b, C, f, params, deconvolve_traces=False)
    for rnd in range(2):
        A, b, kept = _spatial(Yr, A, b, tr.C, tr.f, dims, params)
        tr = _temporal(Yr, A, b, tr.C[kept], tr.f, params, deconvolve_traces=True)
        if rnd == 0 and params.merging.do_merge and A.shape[1] > 1:
            merged = merge_components(A, tr.C, merge_thr=params.merging.merge_thr,
                                          duplicate_thr=params.merging.duplicate_thr)
            A, C = merged.A.toarray(), merged.C
            tr = dataclasses.replace(tr, C=C)
    return _normalised(Yr, A, b, tr, sn, dims)
