"""Spatial update: HALS of footprints on a dilated support, then thresholding.

Pixel convention of the whole package (CaImAn's): a frame of shape ``(d1, d2)`` is
flattened in F order, so pixel (row ``r``, column ``c``) is row ``r + d1 * c`` of ``A``,
``b`` and ``Yr`` (npix, T).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import scipy.sparse as sp


def to_pixels(frames: np.ndarray, dtype: np.dtype | type | None = None) -> np.ndarray:
    """(n, d1, d2) frames -> (d1*d2, n) F-ordered pixel rows (``Yr`` from a movie).

    With ``dtype`` the conversion and the reordering are one copy (a long movie's pixel
    block is then held twice at most, not three times).
    """
    n, d1, d2 = frames.shape
    if dtype is None:
        return frames.transpose(0, 2, 1).reshape(n, d1 * d2).T
    out = np.empty((n, d2, d1), dtype=dtype)
    out[...] = frames.transpose(0, 2, 1)
    return out.reshape(n, d1 * d2).T


def to_frames(Yr: np.ndarray, dims: tuple[int, int]) -> np.ndarray:
    """(d1*d2, n) F-ordered pixel rows -> (n, d1, d2) frames; a view of ``to_pixels``'s output."""
    return Yr.T.reshape(-1, dims[1], dims[0]).transpose(0, 2, 1)


def pixel_adjacency(dims: tuple[int, int]) -> sp.csr_matrix:
    """Sparse (npix, npix) 4-neighbourhood (plus self) of an F-ordered ``dims`` frame."""
    d1, d2 = dims
    idx = np.arange(d1 * d2).reshape(d2, d1).T  # idx[r, c] = r + d1*c
    pairs = [(idx[:-1, :], idx[1:, :]), (idx[:, :-1], idx[:, 1:])]
    src = np.concatenate([p[0].ravel() for p in pairs] + [p[1].ravel() for p in pairs])
    dst = np.concatenate([p[1].ravel() for p in pairs] + [p[0].ravel() for p in pairs])
    n = d1 * d2
    src = np.concatenate([src, np.arange(n)])
    dst = np.concatenate([dst, np.arange(n)])
    return sp.csr_matrix((np.ones(src.size, dtype=np.float32), (src, dst)), shape=(n, n))


def support_mask(A: np.ndarray | sp.spmatrix, dims: tuple[int, int], *,
                 radius: int = 2) -> sp.csc_matrix:
    """Boolean (npix, K) support of each footprint dilated by a diamond of ``radius`` px.

    CaImAn's default ``expandCore`` (a cross iterated twice) is the diamond of radius 2.
    """
    mask = sp.csc_matrix(sp.csc_matrix(A) > 0, dtype=np.float32)
    adj = pixel_adjacency(dims)
    for _ in range(radius):
        mask = sp.csc_matrix(adj @ mask)
    mask.data[:] = 1.0
    return mask.astype(bool)


def hals_spatial(YW: np.ndarray, WW: np.ndarray, A: np.ndarray, mask: sp.csc_matrix, *,
                 iters: int = 3) -> np.ndarray:
    """HALS updates of footprints restricted to their supports.

    Minimises ``||Y - A W||^2`` over ``A >= 0`` with ``A[:, k]`` zero outside
    ``mask[:, k]``, given ``YW = Y @ W.T`` (npix, K') and ``WW = W @ W.T`` (K', K').
    Columns are updated in order, ``iters`` sweeps; each update only touches the
    column's support rows and the columns whose supports meet it. Returns a new ``A``.
    """
    mask = sp.csc_matrix(mask, dtype=bool)
    A0 = np.asarray(A, dtype=np.float64)
    A = np.zeros(A0.shape, order="F")  # column-contiguous; only supports are written
    for k in range(A.shape[1]):
        rows = mask.indices[mask.indptr[k]:mask.indptr[k + 1]]
        A[rows, k] = A0[rows, k]
    meets = sp.csc_matrix(mask.T.astype(np.float32) @ mask.astype(np.float32))
    for _ in range(iters):
        for k in range(A.shape[1]):
            rows = mask.indices[mask.indptr[k]:mask.indptr[k + 1]]
            if rows.size == 0 or WW[k, k] <= 0:
                A[:, k] = 0.0
                continue
            if 2 * rows.size > A.shape[0]:  # background: a dense product is cheaper
                fitted = (A @ WW[:, k])[rows]
            else:
                cols = meets.indices[meets.indptr[k]:meets.indptr[k + 1]]
                fitted = A[np.ix_(rows, cols)] @ WW[cols, k]
            step = (YW[rows, k] - fitted) / WW[k, k]
            A[rows, k] = np.maximum(A[rows, k] + step, 0.0)
    return A


def _keep_pixels(values: np.ndarray, *, thr_method: str, nrgthr: float,
                 maxthr: float) -> np.ndarray:
    """Boolean mask of the pixels kept by CaImAn's 'nrg' or 'max' rule."""
    if thr_method == "max":
        return values >= maxthr * values.max()
    order = np.argsort(values)[::-1]
    energy = np.cumsum(values[order] ** 2)
    n_keep = int(np.searchsorted(energy, nrgthr * energy[-1]) + 1)
    keep = np.zeros(values.size, dtype=bool)
    keep[order[:n_keep]] = True
    return keep


def _largest_component(rows: np.ndarray, values: np.ndarray, d1: int) -> np.ndarray:
    """Mask of the 8-connected piece (of pixels ``rows``) with the largest energy."""
    r, c = rows % d1, rows // d1
    img = np.zeros((r.max() - r.min() + 1, c.max() - c.min() + 1))
    img[r - r.min(), c - c.min()] = values
    labels, n = scipy.ndimage.label(img > 0, structure=np.ones((3, 3)))
    if n <= 1:
        return np.ones(rows.size, dtype=bool)
    lab = labels[r - r.min(), c - c.min()]
    energy = np.bincount(lab, weights=values ** 2, minlength=n + 1)
    return lab == int(np.argmax(energy[1:]) + 1)


def threshold_components(A: np.ndarray | sp.spmatrix, dims: tuple[int, int], *,
                         thr_method: str = "nrg", nrgthr: float = 0.9999, maxthr: float = 0.1,
                         extract_cc: bool = True) -> sp.csc_matrix:
    """Zero the weak pixels of each footprint and keep its main connected piece.

    Returns a csc matrix of the same shape; empty columns stay (callers drop them).
    """
    A = sp.csc_matrix(A)
    A.eliminate_zeros()
    cols = []
    for k in range(A.shape[1]):
        lo, hi = A.indptr[k], A.indptr[k + 1]
        rows, values = A.indices[lo:hi], A.data[lo:hi]
        if rows.size == 0:
            cols.append((rows, values))
            continue
        keep = _keep_pixels(values, thr_method=thr_method, nrgthr=nrgthr, maxthr=maxthr)
        rows, values = rows[keep], values[keep]
        if extract_cc and rows.size:
            keep = _largest_component(rows, values, dims[0])
            rows, values = rows[keep], values[keep]
        cols.append((rows, values))
    indptr = np.cumsum([0] + [r.size for r, _ in cols])
    data = np.concatenate([v for _, v in cols]) if cols else np.zeros(0)
    indices = np.concatenate([r for r, _ in cols]) if cols else np.zeros(0, dtype=np.int32)
    return sp.csc_matrix((data, indices, indptr), shape=A.shape)


def full_support(A: np.ndarray | sp.spmatrix, dims: tuple[int, int], nb: int) -> sp.csc_matrix:
    """Support mask of ``[A, b]``: dilated footprints, then ``nb`` all-pixel columns."""
    mask = support_mask(A, dims)
    ones = sp.csc_matrix(np.ones((mask.shape[0], nb), dtype=bool))
    return sp.hstack([mask, ones], format="csc")
