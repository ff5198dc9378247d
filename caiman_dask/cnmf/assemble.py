"""Placing per-patch results on the field of view (before merging and refinement)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from caiman_dask.cnmf.background import combine_backgrounds
from caiman_dask.cnmf.patch import PatchResult


@dataclasses.dataclass(frozen=True)
class Assembled:
    """Field-of-view estimates stacked from patches: ``A`` csc (npix, K), ``C``/``YrA``
    (K, T), background ``b`` (npix, nb) / ``f`` (nb, T), and the patch index of each
    component (``patch_of``)."""

    A: sp.csc_matrix
    C: np.ndarray
    YrA: np.ndarray
    b: np.ndarray
    f: np.ndarray
    patch_of: np.ndarray


def patch_pixels(origin: tuple[int, int], patch_dims: tuple[int, int],
                 dims: tuple[int, int]) -> np.ndarray:
    """FOV row of each F-ordered pixel of a patch whose top-left corner is ``origin``."""
    rows = origin[0] + np.arange(patch_dims[0])
    cols = origin[1] + np.arange(patch_dims[1])
    return (rows[:, None] + dims[0] * cols[None, :]).ravel(order="F")


def _coverage(origins, results, dims) -> np.ndarray:
    count = np.zeros(dims[0] * dims[1])
    for origin, res in zip(origins, results, strict=True):
        count[patch_pixels(origin, res.dims, dims)] += 1
    return np.maximum(count, 1)


def assemble_patches(results: Sequence[PatchResult], origins: Sequence[tuple[int, int]],
                     dims: tuple[int, int], *, nb: int = 1) -> Assembled:
    """Stack patch components on the FOV and fuse the patch backgrounds into rank ``nb``.

    Each patch background ``b_p f_p`` is weighted by 1 / (number of patches covering the
    pixel) and the sum is factorised by NMF, as with CaImAn's ``low_rank_background``.
    Duplicates from overlapping patches are left to :func:`merge_components`.
    """
    npix = dims[0] * dims[1]
    weight = 1.0 / _coverage(origins, results, dims)
    cols, bcols, traces, resid, bgs, owner = [], [], [], [], [], []
    for i, (origin, res) in enumerate(zip(origins, results, strict=True)):
        rows = patch_pixels(origin, res.dims, dims)
        A = sp.csc_matrix(res.A)
        cols.append(sp.csc_matrix((A.data, rows[A.indices], A.indptr), shape=(npix, A.shape[1])))
        B = sp.csc_matrix(res.b)
        bcols.append(sp.csc_matrix((B.data * weight[rows[B.indices]], rows[B.indices],
                                    B.indptr), shape=(npix, B.shape[1])))
        traces.append(res.C)
        resid.append(res.YrA)
        bgs.append(res.f)
        owner.append(np.full(res.C.shape[0], i))
    b, f = combine_backgrounds(sp.hstack(bcols, format="csc"), np.concatenate(bgs), nb)
    return Assembled(A=sp.hstack(cols, format="csc"), C=np.concatenate(traces),
                     YrA=np.concatenate(resid), b=b, f=f, patch_of=np.concatenate(owner))


def assemble_noise(results: Sequence[PatchResult], origins: Sequence[tuple[int, int]],
                   dims: tuple[int, int]) -> np.ndarray:
    """Pixel noise (npix,) of the field of view from the patches' ``sn``.

    A pixel's noise depends only on its own trace, so overlapping patches agree; the
    last patch covering a pixel is kept. Pixels outside every patch get 0.
    """
    sn = np.zeros(dims[0] * dims[1])
    for origin, res in zip(origins, results, strict=True):
        sn[patch_pixels(origin, res.dims, dims)] = res.sn
    return sn
