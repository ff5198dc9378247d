"""Merging of components that overlap in space and whose traces are correlated.

CaImAn's rule: build the graph whose edges join components with overlapping footprints
AND trace correlation above ``merge_thr``; each connected component of that graph
becomes one component, whose footprint and trace are the rank-1 NMF of the union's
reconstruction ``sum_k a_k c_k``. Repeated until nothing merges.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from caiman_dask.cnmf.background import rank1_nmf


@dataclasses.dataclass(frozen=True)
class MergeResult:
    """Merged ``A`` (csc, npix x K'), ``C`` (K', T) and, per output component, the indices
    of the input components it came from (``sources``, a tuple of int arrays). Unmerged
    components come first in their original order, then one per merged group."""

    A: sp.csc_matrix
    C: np.ndarray
    sources: tuple[np.ndarray, ...]

    @property
    def merged(self) -> tuple[np.ndarray, ...]:
        """Groups of input indices that were merged (size >= 2)."""
        return tuple(s for s in self.sources if s.size > 1)


def trace_correlation(C: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix of the rows of ``C`` (constant rows correlate 0)."""
    X = C - C.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(X, axis=1)
    X = X / np.where(norm > 0, norm, 1.0)[:, None]
    return X @ X.T


def footprint_similarity(A: sp.csc_matrix) -> np.ndarray:
    """Cosine similarity (K, K) of the footprints (columns of ``A``)."""
    norm = np.sqrt(np.asarray(A.multiply(A).sum(axis=0))).ravel()
    An = sp.csc_matrix(A @ sp.diags(1.0 / np.where(norm > 0, norm, 1.0)))
    return (An.T @ An).toarray()


def merge_graph(A: sp.csc_matrix, C: np.ndarray, merge_thr: float,
                duplicate_thr: float | None = None) -> np.ndarray:
    """Label (K,) of each component's group in the graph "overlap AND corr > merge_thr"
    (OR footprint cosine similarity > ``duplicate_thr``, when given)."""
    support = sp.csc_matrix(A > 0, dtype=np.float32)
    overlap = (support.T @ support).toarray() > 0
    edges = overlap & (trace_correlation(C) > merge_thr)
    if duplicate_thr is not None:
        edges |= footprint_similarity(A) > duplicate_thr
    np.fill_diagonal(edges, False)
    _, labels = connected_components(sp.csr_matrix(edges), directed=False)
    return labels


def _merge_group(A: sp.csc_matrix, C: np.ndarray, group: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-1 NMF of the group's reconstruction, on the union of its pixels."""
    sub = A[:, group]
    rows = np.unique(sub.indices)
    a, c = rank1_nmf(sub[rows].toarray(), C[group])
    return rows, a, c


def _merge_once(A: sp.csc_matrix, C: np.ndarray, merge_thr: float,
                duplicate_thr: float | None
                ) -> tuple[sp.csc_matrix, np.ndarray, list[np.ndarray]]:
    labels = merge_graph(A, C, merge_thr, duplicate_thr)
    sizes = np.bincount(labels)
    single = np.flatnonzero(sizes[labels] == 1)
    groups = [np.flatnonzero(labels == lab) for lab in np.flatnonzero(sizes > 1)]
    cols, traces = [A[:, single]], [C[single]]
    for group in groups:
        rows, a, c = _merge_group(A, C, group)
        cols.append(sp.csc_matrix((a, (rows, np.zeros(rows.size, dtype=int))),
                                  shape=(A.shape[0], 1)))
        traces.append(c[None, :])
    sources = [np.array([k]) for k in single] + groups
    return sp.hstack(cols, format="csc"), np.concatenate(traces, axis=0), sources


def merge_components(A: np.ndarray | sp.spmatrix, C: np.ndarray, *, merge_thr: float = 0.8,
                     max_rounds: int = 10, duplicate_thr: float | None = None) -> MergeResult:
    """Merge overlapping, correlated components until none is left to merge.

    Parameters
    ----------
    A : (npix, K) array or sparse matrix
        Footprints (F-ordered pixels), e.g. the whole field of view.
    C : ndarray, shape (K, T)
        Traces.
    merge_thr : float
        Correlation threshold (``merging.merge_thr``).
    max_rounds : int
        Upper bound on merge rounds.
    duplicate_thr : float, optional
        Also merge footprints whose cosine similarity exceeds this, whatever their
        traces: one neuron found twice (two greedy seeds, or two overlapping patches)
        whose activity HALS splits between the copies, so that neither trace
        correlates with the other. None (CaImAn's rule) disables it.

    Returns
    -------
    MergeResult
        Merged traces are raw rank-1 traces: deconvolve them again (the next temporal
        update does) before using ``S``, ``bl`` etc.
    """
    A = sp.csc_matrix(A, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    sources = [np.array([k]) for k in range(A.shape[1])]
    for _ in range(max_rounds):
        if A.shape[1] < 2:
            break
        A, C, new = _merge_once(A, C, merge_thr, duplicate_thr)
        if len(new) == len(sources):
            break
        sources = [np.sort(np.concatenate([sources[i] for i in s])) for s in new]
    return MergeResult(A=A, C=C, sources=tuple(sources))
