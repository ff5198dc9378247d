"""Score found components against manual ROIs with one-to-one (Hungarian) matching.

Both sets become boolean masks: footprints are binarised at ``binarize`` times their
own maximum (pixels with a positive value at least that large); boolean masks and
``regions.json`` ROIs are already binary. Two criteria:

- ``"centroid"``: a pair may match when the centroids of the two masks are at most
  ``max_distance`` pixels apart (neurofinder's criterion; cost = distance);
- ``"iou"``: a pair may match when the masks' intersection over union is at least
  ``min_iou`` (cost = 1 - IoU).

Among the allowed pairs a one-to-one matching of maximum size is chosen, and among
those the one of least total cost (:func:`scipy.optimize.linear_sum_assignment`, run
separately on each connected group of candidate pairs, so thousands of components
cost milliseconds). Candidates come from a k-d tree (centroids) or one sparse matrix
product (intersections), never from a dense ``n_found x n_true`` table.

Definitions, with ``m`` matched pairs: precision ``m / n_found``, recall ``m / n_true``,
F1 ``2m / (n_found + n_true)`` (the harmonic mean of the two). A ratio whose
denominator is zero is 1.0 (nothing found means no false positive; no ROI means
nothing missed), so two empty sets score P = R = F1 = 1 and one empty set scores
F1 = 0; no division warning is ever raised.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from caiman_dask.errors import ParameterError
from caiman_dask.results.estimates import Estimates, centroids_of, masks_to_sparse
from caiman_dask.results.regions import load_regions

CRITERIA: tuple[str, ...] = ("centroid", "iou")
#: Relative slack on the thresholds, so that a distance of exactly ``max_distance`` or an
#: IoU of exactly ``min_iou`` matches despite rounding in the centroid and IoU arithmetic.
TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class ScoreResult:
    """Outcome of matching found components to true ROIs under one criterion.

    Attributes
    ----------
    criterion : str
        ``"centroid"`` or ``"iou"``.
    n_true, n_found : int
        Number of true ROIs and of found components.
    pairs : numpy.ndarray
        ``(n_matched, 2)`` int array of matched ``[found index, true index]``.
    values : numpy.ndarray
        Per pair: centroid distance in pixels, or IoU.
    """

    criterion: str
    n_true: int
    n_found: int
    pairs: np.ndarray
    values: np.ndarray

    @property
    def n_matched(self) -> int:
        """Number of matched pairs."""
        return int(len(self.pairs))

    @property
    def precision(self) -> float:
        """Matched / found (1.0 when nothing was found)."""
        return self.n_matched / self.n_found if self.n_found else 1.0

    @property
    def recall(self) -> float:
        """Matched / true (1.0 when there is no true ROI)."""
        return self.n_matched / self.n_true if self.n_true else 1.0

    @property
    def f1(self) -> float:
        """``2 m / (n_found + n_true)`` (1.0 when both sets are empty)."""
        total = self.n_found + self.n_true
        return 2 * self.n_matched / total if total else 1.0

    def as_dict(self) -> dict[str, Any]:
        """Return the summary numbers and the pairs as plain Python values (JSON-ready)."""
        return {
            "criterion": self.criterion, "n_true": self.n_true, "n_found": self.n_found,
            "n_matched": self.n_matched, "precision": self.precision, "recall": self.recall,
            "f1": self.f1, "pairs": self.pairs.tolist(), "values": self.values.tolist(),
        }


def score(
    estimates_or_masks: Any,
    regions: Any,
    *,
    dims: tuple[int, int] | None = None,
    criterion: str = "centroid",
    max_distance: float = 5.0,
    min_iou: float = 0.5,
    binarize: float = 0.2,
) -> ScoreResult:
    """Match found components to true ROIs one-to-one and score the matching.

    Parameters
    ----------
    estimates_or_masks : Estimates, numpy.ndarray or scipy.sparse matrix
        Found components: an :class:`Estimates` (all of its components; pass
        ``estimates.accepted()`` to score the accepted ones), a ``(K, d1, d2)`` stack,
        or a ``(d1*d2, K)`` sparse matrix in F-order pixels.
    regions : str, path-like, Estimates, numpy.ndarray or scipy.sparse matrix
        True ROIs: a neurofinder ``regions.json`` path, or any form accepted above.
    dims : tuple of int, optional
        Frame shape ``(d1, d2)``; needed when no input carries it (a path or sparse
        matrix only), and checked against the inputs otherwise.
    criterion : {"centroid", "iou"}
        Matching criterion (see the module docstring).
    max_distance : float
        Largest centroid distance in pixels for a match (centroid criterion).
    min_iou : float
        Smallest intersection over union for a match (IoU criterion), in (0, 1].
    binarize : float
        Footprint pixels at least ``binarize`` times the footprint's maximum form its mask.

    Returns
    -------
    ScoreResult
        Counts, matched pairs, precision, recall and F1.
    """
    if criterion not in CRITERIA:
        raise ParameterError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    return score_both(
        estimates_or_masks, regions, dims=dims, max_distance=max_distance,
        min_iou=min_iou, binarize=binarize, criteria=(criterion,),
    )[criterion]


def score_both(
    estimates_or_masks: Any,
    regions: Any,
    *,
    dims: tuple[int, int] | None = None,
    max_distance: float = 5.0,
    min_iou: float = 0.5,
    binarize: float = 0.2,
    criteria: tuple[str, ...] = CRITERIA,
) -> dict[str, ScoreResult]:
    """Score under both criteria from one set of masks; see :func:`score`.

    Returns
    -------
    dict of str to ScoreResult
        ``{"centroid": ..., "iou": ...}`` (in the order of ``criteria``).
    """
    _check_options(max_distance, min_iou, binarize)
    dims = _resolve_dims(dims, estimates_or_masks, regions)
    found = binarize_columns(_as_sparse(estimates_or_masks, dims), binarize)
    true = binarize_columns(_as_sparse(regions, dims), binarize)
    out = {}
    for name in criteria:
        if name == "centroid":
            i, j, value = _centroid_candidates(found, true, dims, max_distance)
            cost = value
        else:
            i, j, value = _iou_candidates(found, true, min_iou)
            cost = 1.0 - value
        sel = match_pairs(found.shape[1], true.shape[1], i, j, cost)
        pairs = np.stack([i[sel], j[sel]], axis=1).astype(np.int64)
        out[name] = ScoreResult(name, int(true.shape[1]), int(found.shape[1]), pairs, value[sel])
    return out


def binarize_columns(A: sp.spmatrix, fraction: float) -> sp.csc_matrix:
    """Return boolean masks: entries > 0 and >= ``fraction`` x their column's maximum."""
    A = sp.csc_matrix(A)
    data = np.asarray(A.data, dtype=np.float64)
    col_max = np.zeros(A.shape[1])
    counts = np.diff(A.indptr)
    nonempty = counts > 0
    if data.size:
        col_max[nonempty] = np.maximum.reduceat(data, A.indptr[:-1][nonempty])
    keep = (data > 0) & (data >= fraction * np.repeat(col_max, counts))
    cols = np.repeat(np.arange(A.shape[1]), counts)[keep]
    ones = np.ones(int(keep.sum()), dtype=bool)
    return sp.csc_matrix((ones, (A.indices[keep], cols)), shape=A.shape)


def match_pairs(
    n_found: int, n_true: int, i: np.ndarray, j: np.ndarray, cost: np.ndarray
) -> np.ndarray:
    """Maximum one-to-one matching of least total cost over candidate pairs.

    Parameters
    ----------
    n_found, n_true : int
        Sizes of the two sets.
    i, j, cost : numpy.ndarray
        Candidate pairs (found ``i[k]``, true ``j[k]``) and their costs (finite, >= 0).

    Returns
    -------
    numpy.ndarray
        Indices into the candidate list of the matched pairs, sorted by found index.
    """
    if len(i) == 0:
        return np.zeros(0, dtype=np.int64)
    graph = sp.coo_matrix(
        (np.ones(len(i)), (i, n_found + np.asarray(j))), shape=(n_found + n_true,) * 2
    )
    _, labels = connected_components(graph, directed=False)
    group = labels[i]
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    chunks = np.split(order, starts[1:])
    picked = [c if len(c) == 1 else c[_assign(i[c], j[c], cost[c])] for c in chunks]
    sel = np.concatenate(picked)
    return sel[np.argsort(i[sel], kind="stable")]


def _assign(i: np.ndarray, j: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices (into the candidate list) of a maximum matching of least cost."""
    rows, ri = np.unique(i, return_inverse=True)
    cols, ci = np.unique(j, return_inverse=True)
    big = (float(cost.max()) + 1.0) * (min(len(rows), len(cols)) + 1)
    table = np.full((len(rows), len(cols)), big)
    slot = np.full((len(rows), len(cols)), -1, dtype=np.int64)
    table[ri, ci] = cost
    slot[ri, ci] = np.arange(len(i))
    r, c = linear_sum_assignment(table)
    return slot[r, c][slot[r, c] >= 0]


def _centroid_candidates(
    found: sp.csc_matrix, true: sp.csc_matrix, dims: tuple[int, int], max_distance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cf, ct = centroids_of(found, dims), centroids_of(true, dims)
    vf, vt = np.flatnonzero(~np.isnan(cf[:, 0])), np.flatnonzero(~np.isnan(ct[:, 0]))
    if not len(vf) or not len(vt):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    limit = max_distance + TOLERANCE * max(1.0, max_distance)
    near = cKDTree(cf[vf]).sparse_distance_matrix(cKDTree(ct[vt]), limit, output_type="ndarray")
    keep = near["v"] <= limit
    return vf[near["i"][keep]], vt[near["j"][keep]], np.asarray(near["v"][keep], float)


def _iou_candidates(
    found: sp.csc_matrix, true: sp.csc_matrix, min_iou: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f_int, t_int = found.astype(np.int64), true.astype(np.int64)
    inter = (f_int.T @ t_int).tocoo()
    area_f = np.asarray(f_int.sum(axis=0)).ravel()
    area_t = np.asarray(t_int.sum(axis=0)).ravel()
    union = area_f[inter.row] + area_t[inter.col] - inter.data
    iou = inter.data / union
    keep = iou >= min_iou - TOLERANCE
    return inter.row[keep], inter.col[keep], iou[keep]


def _check_options(max_distance: float, min_iou: float, binarize: float) -> None:
    if not (math.isfinite(max_distance) and max_distance >= 0):
        raise ParameterError(f"max_distance must be a finite number >= 0, got {max_distance}")
    if not 0 < min_iou <= 1:
        raise ParameterError(f"min_iou must lie in (0, 1], got {min_iou}")
    if not 0 <= binarize <= 1:
        raise ParameterError(f"binarize must lie in [0, 1], got {binarize}")


def _implied_dims(obj: Any) -> tuple[int, int] | None:
    if isinstance(obj, Estimates):
        return obj.dims
    if isinstance(obj, np.ndarray) and obj.ndim == 3:
        return int(obj.shape[1]), int(obj.shape[2])
    return None


def _resolve_dims(dims: Any, *inputs: Any) -> tuple[int, int]:
    candidates = [tuple(int(d) for d in dims)] if dims is not None else []
    candidates += [d for d in map(_implied_dims, inputs) if d is not None]
    if not candidates:
        raise ParameterError("dims=(d1, d2) is needed: no input carries the frame shape")
    if any(c != candidates[0] for c in candidates):
        raise ParameterError(f"inputs disagree on the frame shape: {sorted(set(candidates))}")
    return candidates[0]


def _as_sparse(obj: Any, dims: tuple[int, int]) -> sp.csc_matrix:
    if isinstance(obj, Estimates):
        return obj.A
    if isinstance(obj, (str, os.PathLike)):
        return load_regions(obj, dims)
    if sp.issparse(obj):
        if obj.shape[0] != dims[0] * dims[1]:
            raise ParameterError(
                f"a sparse mask matrix must be (d1*d2, K) = ({dims[0] * dims[1]}, K) "
                f"for dims {dims}, got {obj.shape}"
            )
        return sp.csc_matrix(obj)
    if isinstance(obj, np.ndarray) and obj.ndim == 3:
        return masks_to_sparse(obj)
    raise ParameterError(
        "components must be an Estimates, a (K, d1, d2) array, a (d1*d2, K) sparse matrix "
        f"or a regions.json path; got {type(obj).__name__}"
    )
