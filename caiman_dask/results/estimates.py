"""The result of a CNMF run, in CaImAn's ``Estimates`` conventions.

Spatial matrices are ``(d1*d2, K)`` with pixels in CaImAn's F order: pixel (row ``r``,
column ``c``) of a ``(d1, d2)`` frame is row ``r + d1*c``. :func:`masks_to_sparse` and
:func:`sparse_to_masks` convert between that and a ``(K, d1, d2)`` stack.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from caiman_dask.errors import ParameterError

#: Per-component arrays: ``select`` keeps their rows of the chosen components.
COMPONENT_FIELDS: tuple[str, ...] = (
    "C", "S", "YrA", "g", "bl", "c1", "neurons_sn", "SNR_comp", "r_values",
)
#: Arrays carried over unchanged by ``select`` (background and per-pixel noise).
PIXEL_FIELDS: tuple[str, ...] = ("b", "f", "sn")
INDEX_FIELDS: tuple[str, ...] = ("idx_components", "idx_components_bad")


def flat_pixel_index(rows: np.ndarray, cols: np.ndarray, d1: int) -> np.ndarray:
    """Return the F-order flat index ``rows + d1*cols`` of pixels (as int64)."""
    return np.asarray(rows, dtype=np.int64) + d1 * np.asarray(cols, dtype=np.int64)


def masks_to_sparse(masks: np.ndarray) -> sp.csc_matrix:
    """Convert a ``(K, d1, d2)`` stack into a ``(d1*d2, K)`` csc matrix (F-order pixels).

    Parameters
    ----------
    masks : numpy.ndarray
        Footprints or boolean masks, one ``(d1, d2)`` image per component.

    Returns
    -------
    scipy.sparse.csc_matrix
        Column ``k`` holds ``masks[k]`` flattened in F order; zeros are not stored.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ParameterError(f"masks must have shape (K, d1, d2), got shape {masks.shape}")
    k, d1, d2 = masks.shape
    flat = masks.transpose(0, 2, 1).reshape(k, d1 * d2)
    return sp.csc_matrix(flat.T)


def sparse_to_masks(A: sp.spmatrix, dims: tuple[int, int]) -> np.ndarray:
    """Convert a ``(d1*d2, K)`` sparse matrix (F-order pixels) into a ``(K, d1, d2)`` array."""
    d1, d2 = dims
    dense = np.asarray(A.T.toarray())
    return dense.reshape(A.shape[1], d2, d1).transpose(0, 2, 1)


def centroids_of(A: sp.spmatrix, dims: tuple[int, int]) -> np.ndarray:
    """Return the ``(K, 2)`` weighted ``[row, col]`` centroids of the columns of ``A``.

    A column whose weights sum to zero (an empty footprint) has a NaN centroid.
    """
    d1, _ = dims
    A = sp.csc_matrix(A)
    pix = np.arange(A.shape[0])
    coords = np.stack([pix % d1, pix // d1], axis=1).astype(np.float64)
    mass = np.asarray(A.sum(axis=0), dtype=np.float64).ravel()
    moments = np.asarray(A.T @ coords, dtype=np.float64)
    out = np.full((A.shape[1], 2), np.nan)
    np.divide(moments, mass[:, None], out=out, where=mass[:, None] != 0)
    return out


@dataclass(frozen=True, eq=False)
class Estimates:
    """Components found by CNMF (CaImAn's ``Estimates`` attribute names).

    Parameters
    ----------
    A : scipy.sparse.csc_matrix
        Spatial footprints, ``(d1*d2, K)``, pixels in F order (row ``r + d1*c``).
    dims : tuple of int
        Frame shape ``(d1, d2)``.
    C, S, YrA : numpy.ndarray, optional
        Denoised traces, deconvolved activity and residuals, each ``(K, T)``.
    b, f : numpy.ndarray, optional
        Background footprints ``(d1*d2, nb)`` and traces ``(nb, T)``.
    g, bl, c1, neurons_sn : numpy.ndarray, optional
        Per-component AR coefficients ``(K, p)``, baselines, initial values, noise levels.
    sn : numpy.ndarray, optional
        Per-pixel noise level, ``(d1*d2,)``.
    idx_components, idx_components_bad : numpy.ndarray, optional
        Indices of accepted and rejected components; ``None`` means "not evaluated".
    SNR_comp, r_values : numpy.ndarray, optional
        Per-component quality metrics.

    Notes
    -----
    The class is frozen: use :meth:`select` or :func:`dataclasses.replace` for changes.
    """

    A: sp.csc_matrix
    dims: tuple[int, int]
    C: np.ndarray | None = None
    S: np.ndarray | None = None
    b: np.ndarray | None = None
    f: np.ndarray | None = None
    YrA: np.ndarray | None = None
    g: np.ndarray | None = None
    sn: np.ndarray | None = None
    bl: np.ndarray | None = None
    c1: np.ndarray | None = None
    neurons_sn: np.ndarray | None = None
    idx_components: np.ndarray | None = None
    idx_components_bad: np.ndarray | None = None
    SNR_comp: np.ndarray | None = None
    r_values: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not sp.issparse(self.A):
            raise ParameterError(f"Estimates.A must be a scipy.sparse matrix, got {type(self.A)}")
        dims = tuple(int(d) for d in self.dims)
        if len(dims) != 2 or min(dims) < 1:
            raise ParameterError(f"Estimates.dims must be (d1, d2) > 0, got {self.dims!r}")
        object.__setattr__(self, "dims", dims)
        if not isinstance(self.A, sp.csc_matrix):
            object.__setattr__(self, "A", sp.csc_matrix(self.A))
        self._check_shapes()

    def _check_shapes(self) -> None:
        npix, k = self.A.shape
        if npix != self.dims[0] * self.dims[1]:
            raise ParameterError(
                f"Estimates.A has {npix} rows but dims {self.dims} have "
                f"{self.dims[0] * self.dims[1]} pixels; A must be (d1*d2, K)"
            )
        for name in COMPONENT_FIELDS:
            _check_leading(name, getattr(self, name), k, "components")
        for name in ("b", "sn"):
            _check_leading(name, getattr(self, name), npix, "pixels")
        for name in INDEX_FIELDS:
            idx = getattr(self, name)
            if idx is not None and np.size(idx) and not (0 <= np.min(idx) <= np.max(idx) < k):
                raise ParameterError(f"Estimates.{name} has indices outside 0..{k - 1}")

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return int(self.A.shape[1])

    def footprints(self, idx: Any = None) -> np.ndarray:
        """Return dense footprints ``(n, d1, d2)`` of components ``idx`` (default: all).

        For many components on large frames pass ``idx`` to bound the memory used.
        """
        A = self.A if idx is None else self.A[:, _as_index(idx, self.n_components)]
        return sparse_to_masks(A, self.dims)

    def centroids(self) -> np.ndarray:
        """Return the ``(K, 2)`` weighted ``[row, col]`` centroids (NaN for empty footprints)."""
        return centroids_of(self.A, self.dims)

    def select(self, idx: Any) -> Estimates:
        """Return the estimates of components ``idx`` (integer indices or a boolean mask).

        Per-component arrays keep the chosen rows; ``idx_components`` and
        ``idx_components_bad`` become the sorted new positions of the chosen
        components they listed; background and
        per-pixel fields are kept.
        """
        keep = _as_index(idx, self.n_components)
        changes: dict[str, Any] = {"A": sp.csc_matrix(self.A[:, keep])}
        for name in COMPONENT_FIELDS:
            value = getattr(self, name)
            changes[name] = None if value is None else np.asarray(value)[keep]
        for name in INDEX_FIELDS:
            changes[name] = _renumber(getattr(self, name), keep)
        return dataclasses.replace(self, **changes)

    def accepted(self) -> Estimates:
        """Return only the accepted components (all of them when not evaluated)."""
        if self.idx_components is None:
            return self
        return self.select(self.idx_components)


def _check_leading(name: str, value: Any, n: int, what: str) -> None:
    if value is not None and np.shape(value)[:1] != (n,):
        raise ParameterError(
            f"Estimates.{name} has shape {np.shape(value)}; its first axis must have "
            f"{n} entries ({what})"
        )


def _as_index(idx: Any, k: int) -> np.ndarray:
    arr = np.asarray(idx)
    if arr.dtype == bool:
        if arr.shape != (k,):
            raise ParameterError(f"a boolean selection must have {k} entries, got {arr.shape}")
        return np.flatnonzero(arr)
    arr = arr.astype(np.int64).ravel()
    if arr.size and not (-k <= arr.min() <= arr.max() < k):
        raise ParameterError(f"component indices must lie in 0..{k - 1}")
    return np.where(arr < 0, arr + k, arr)


def _renumber(idx: np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
    if idx is None:
        return None
    idx = np.asarray(idx)
    new_pos = {int(old): new for new, old in enumerate(keep)}
    kept = sorted(new_pos[int(i)] for i in idx if int(i) in new_pos)
    return np.asarray(kept, dtype=idx.dtype if idx.dtype.kind in "iu" else np.int64)
