"""Temporal update: block-coordinate descent (HALS) on the traces, then OASIS per component.

Inputs are the projections of the data on the footprints, so the same function serves a
patch and the whole field of view (where the driver sums them over pixel blocks):
``AY = [A, b].T @ Yr`` (K+nb, T) and ``AA = [A, b].T @ [A, b]`` (K+nb, K+nb).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from caiman_dask.cnmf.oasis import deconvolve
from caiman_dask.cnmf.params import CNMFParams


@dataclasses.dataclass(frozen=True)
class TemporalResult:
    """Updated traces: ``C``/``S`` (K, T), background ``f`` (nb, T), per-component ``bl``,
    ``c1``, ``neurons_sn``, ``lam`` (K,), ``g`` (K, p), residual traces ``YrA`` (K, T)
    normalised so that ``C + YrA`` is each component's raw trace (CaImAn's convention)."""

    C: np.ndarray
    f: np.ndarray
    S: np.ndarray
    bl: np.ndarray
    c1: np.ndarray
    g: np.ndarray
    neurons_sn: np.ndarray
    YrA: np.ndarray
    lam: np.ndarray


def overlap_groups(AA: np.ndarray, K: int) -> list[np.ndarray]:
    """Split components ``0..K-1`` into groups with no two spatially overlapping members.

    Greedy colouring of the graph ``AA[i, j] != 0``; each group can be updated at once.
    """
    overlap = AA[:K, :K] != 0
    colour = -np.ones(K, dtype=int)
    for k in range(K):
        used = set(colour[np.flatnonzero(overlap[k])].tolist())
        c = 0
        while c in used:
            c += 1
        colour[k] = c
    return [np.flatnonzero(colour == c) for c in range(colour.max() + 1)] if K else []


def _raw_traces(AY: np.ndarray, AA: np.ndarray, W: np.ndarray, rows: np.ndarray,
                diag: np.ndarray) -> np.ndarray:
    """HALS target of ``rows``: current trace plus the normalised residual projection."""
    return W[rows] + (AY[rows] - AA[rows] @ W) / diag[rows, None]


def _deconv_options(params: CNMFParams) -> dict:
    t = params.temporal
    return dict(p=t.p, bas_nonneg=t.bas_nonneg, noise_range=t.noise_range,
                noise_method=t.noise_method, lags=t.lags, fudge_factor=t.fudge_factor,
                s_min=t.s_min)


def update_temporal(AY: np.ndarray, AA: np.ndarray, C: np.ndarray, f: np.ndarray,
                    params: CNMFParams, *, g: np.ndarray | None = None,
                    deconvolve_traces: bool = True) -> TemporalResult:
    """Update traces and background by ``params.temporal.ITER`` HALS sweeps + OASIS.

    Parameters
    ----------
    AY, AA : ndarray
        Projections, see the module docstring (background columns last).
    C, f : ndarray
        Current traces (K, T) and background traces (nb, T).
    params : CNMFParams
        Uses the ``temporal`` group.
    g : ndarray (K, p), optional
        Fixed AR coefficients; estimated from the raw traces in the first sweep when omitted.
    deconvolve_traces : bool
        False gives plain non-negative HALS (CaImAn's p=0 behaviour, used after init).

    Returns
    -------
    TemporalResult
    """
    K, T = C.shape
    W = np.concatenate([C, f], axis=0).astype(np.float64)
    diag = np.maximum(np.diag(AA).astype(np.float64), 1e-12)
    p = params.temporal.p if deconvolve_traces else 0
    opts = {**_deconv_options(params), "p": p}
    out = {"S": np.zeros((K, T)), "bl": np.zeros(K), "c1": np.zeros(K), "sn": np.zeros(K),
           "lam": np.zeros(K), "g": np.zeros((K, p)) if g is None else np.asarray(g)}
    groups = overlap_groups(AA, K)
    previous: list = [None] * len(groups)
    for sweep in range(params.temporal.ITER):
        for i, rows in enumerate(groups):
            raw = _raw_traces(AY, AA, W, rows, diag)
            fixed_g = out["g"][rows] if (g is not None or sweep > 0) and p else None
            dec = deconvolve(raw, g=fixed_g, warm=previous[i], **opts)
            previous[i] = dec
            W[rows] = dec.c
            for key, value in (("S", dec.s), ("bl", dec.bl), ("c1", dec.c1), ("sn", dec.sn),
                               ("lam", dec.lam), ("g", dec.g)):
                out[key][rows] = value
        for j in range(K, W.shape[0]):
            W[j] = np.maximum(_raw_traces(AY, AA, W, np.array([j]), diag)[0], 0.0)
    YrA = (AY[:K] - AA[:K] @ W) / diag[:K, None]
    return TemporalResult(C=W[:K], f=W[K:], S=out["S"], bl=out["bl"], c1=out["c1"],
                          g=out["g"], neurons_sn=out["sn"], YrA=YrA, lam=out["lam"])
