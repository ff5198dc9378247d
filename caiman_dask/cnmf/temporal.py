"""Temporal update: block-coordinate descent (HALS) on the traces, then OASIS per component.

Inputs are the projections of the data on the footprints, so the same function serves a
patch and the whole field of view (where the driver sums them over pixel blocks):
``AY = [A, b].T @ Yr`` (K+nb, T) and ``AA = [A, b].T @ [A, b]`` (K+nb, K+nb).

Within a sweep a component's trace depends only on the components whose footprints
overlap its own and on the background, which is updated after the sweep. Components
therefore fall into parcels (whole connected clusters of the overlap graph) whose sweeps
are independent: :func:`sweep_parcel` runs one, and a driver may run a sweep's parcels
in parallel (``run_sweeps``). The parcels depend only on ``AA``, so results do not
depend on where they run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from caiman_dask.cnmf.oasis import Deconvolution, deconvolve
from caiman_dask.cnmf.params import CNMFParams

#: A parcel holds at least this many components (a patch's few are one parcel) ...
MIN_PARCEL = 64
#: ... and there are at most this many parcels, whatever the number of workers.
MAX_PARCELS = 8


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


def parcels(AA: np.ndarray, K: int, *, min_size: int | None = None,
            max_parcels: int | None = None) -> list[np.ndarray]:
    """Components ``0..K-1`` as sorted index arrays of whole overlap clusters.

    Clusters (connected components of ``AA[i, j] != 0``) are taken in the order of their
    first member and packed into parcels of about ``max(min_size, K / max_parcels)``
    components (defaults :data:`MIN_PARCEL`, :data:`MAX_PARCELS`); a cluster is never
    split, so parcels' sweeps are independent.
    """
    if K == 0:
        return []
    min_size = MIN_PARCEL if min_size is None else min_size
    max_parcels = MAX_PARCELS if max_parcels is None else max_parcels
    _, labels = connected_components(sp.csr_matrix(AA[:K, :K] != 0), directed=False)
    _, first, counts = np.unique(labels, return_index=True, return_counts=True)
    members = np.split(np.argsort(labels, kind="stable"), np.cumsum(counts)[:-1])
    size = max(min_size, math.ceil(K / max_parcels))
    out: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for label in np.argsort(first, kind="stable"):
        current.append(members[label])
        if sum(map(len, current)) >= size:
            out.append(np.sort(np.concatenate(current)))
            current = []
    if current:
        out.append(np.sort(np.concatenate(current)))
    return out


@dataclasses.dataclass(frozen=True)
class ParcelSweep:
    """One HALS sweep over one parcel of ``n`` components (the input of :func:`sweep_parcel`).

    ``AY`` (n, T) and ``W`` (n, T) are the parcel's projections and current traces, ``AA``
    (n, n + nb) its rows of ``AA`` restricted to its own columns then the background's,
    ``f`` (nb, T) the background traces (fixed during the sweep), ``groups`` parcel-local
    rows with no overlapping members, updated in order; ``g`` (n, p) fixed AR
    coefficients or None (estimated); ``warm`` each group's previous deconvolution;
    ``options`` the keyword options of :func:`~caiman_dask.cnmf.oasis.deconvolve`.
    """

    AY: np.ndarray
    AA: np.ndarray
    W: np.ndarray
    f: np.ndarray
    groups: list[np.ndarray]
    g: np.ndarray | None
    warm: list[Deconvolution | None]
    options: dict[str, Any]


def sweep_parcel(job: ParcelSweep) -> tuple[np.ndarray, list[Deconvolution]]:
    """Update a parcel's traces group by group; returns its new traces and deconvolutions."""
    n = job.W.shape[0]
    W = np.array(job.W, dtype=np.float64)
    own, background = job.AA[:, :n], job.AA[:, n:]
    diag = np.maximum(np.diag(own), 1e-12)
    residual = job.AY - background @ job.f  # the background is fixed during a sweep
    out = []
    for rows, warm in zip(job.groups, job.warm, strict=True):
        raw = _raw_traces(residual, own, W, rows, diag)
        g = job.g[rows] if job.g is not None else None
        dec = deconvolve(raw, g=g, warm=warm, **job.options)
        W[rows] = dec.c
        out.append(dec)
    return W, out


def run_serially(jobs: Sequence[ParcelSweep]) -> list[tuple[np.ndarray, list[Deconvolution]]]:
    """The default ``run_sweeps``: every parcel's sweep in this process, in order."""
    return [sweep_parcel(job) for job in jobs]


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
                    deconvolve_traces: bool = True,
                    run_sweeps: Callable[[list[ParcelSweep]], list] | None = None
                    ) -> TemporalResult:
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
    run_sweeps : callable, optional
        ``run_sweeps(jobs)`` returns ``sweep_parcel(job)`` for each job, in order (a
        driver maps them over workers); default :func:`run_serially`.

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
    layout = [(rows, overlap_groups(AA[np.ix_(rows, rows)], len(rows)))
              for rows in parcels(AA, K)]
    warm: list[list] = [[None] * len(groups) for _, groups in layout]
    for sweep in range(params.temporal.ITER):
        fixed_g = bool(p) and (g is not None or sweep > 0)
        jobs = [ParcelSweep(AY=AY[rows], AA=np.concatenate([AA[np.ix_(rows, rows)],
                                                            AA[rows, K:]], axis=1),
                            W=W[rows], f=W[K:], groups=groups,
                            g=out["g"][rows] if fixed_g else None, warm=warm[i],
                            options=opts)
                for i, (rows, groups) in enumerate(layout)]
        for i, (W_rows, decs) in enumerate((run_sweeps or run_serially)(jobs)):
            rows, groups = layout[i]
            W[rows], warm[i] = W_rows, decs
            for local, dec in zip(groups, decs, strict=True):
                _store(out, rows[local], dec)
        for j in range(K, W.shape[0]):
            W[j] = np.maximum(_raw_traces(AY, AA, W, np.array([j]), diag)[0], 0.0)
    YrA = (AY[:K] - AA[:K] @ W) / diag[:K, None]
    return TemporalResult(C=W[:K], f=W[K:], S=out["S"], bl=out["bl"], c1=out["c1"],
                          g=out["g"], neurons_sn=out["sn"], YrA=YrA, lam=out["lam"])


def _store(out: dict[str, np.ndarray], rows: np.ndarray, dec: Deconvolution) -> None:
    for key, value in (("S", dec.s), ("bl", dec.bl), ("c1", dec.c1), ("sn", dec.sn),
                       ("lam", dec.lam), ("g", dec.g)):
        out[key][rows] = value
