"""Full-field refinement as pure functions mapped over pixel blocks of ``Yr``.

A pixel block is a contiguous range of rows of ``Yr`` (npix, T) (F-ordered pixels; an
array or a :class:`~caiman_dask.cnmf.frames.FrameSource` read a block of frames at a time), with
the matching rows of ``Ab = [A, b]`` (npix, K+nb) and of the support mask. Nothing here
needs the whole movie in one process.

Driver protocol (what to sum, in which order). Before the first round: place the patch
results with :func:`~caiman_dask.cnmf.assemble.assemble_patches` and merge them with
:func:`~caiman_dask.cnmf.merge.merge_components` (duplicates from overlapping patches).
Then one or more refinement rounds:

1. Spatial. On the client: ``mask = full_support(A, dims, nb)`` and ``W = [C; f]``.
   Per block i: ``Ab_i = spatial_block(Y_i, Ab[rows_i], mask[rows_i], W)``. Stack the
   blocks in increasing row order (``np.concatenate``), then on the client
   ``finish_spatial(Ab, dims, nb, params)`` -> thresholded ``A``, ``b`` and the indices
   of the kept components (select ``C[kept]``).
2. Temporal. Per block: ``block_products(Y_i, Ab_i)`` -> ``Products(AY_i, AA_i)``.
   Sum with ``sum_products(parts)``, or block by block with ``add_products`` (what the
   driver does, holding one running sum), **in increasing block order** (floating-point sums
   depend on order; a fixed order makes results bit-identical from run to run), then
   ``temporal_update(total, C, f, params)``, whose sweeps the driver may run as one
   task per parcel of components (``run_sweeps`` mapping
   :func:`~caiman_dask.cnmf.temporal.sweep_parcel`).
3. Merge (after the first round): ``merge_components(A, C, merge_thr=...)``; merged
   traces are re-deconvolved by the next round's temporal update, so end with a round.

Evaluation (functions of :mod:`~caiman_dask.cnmf.evaluate`): ``M = activity_matrix(C, A)``
on the client; per block ``evaluation_block(Y_i, M)``, stacked in row order, minus
``b @ evaluation_block(f, M)``; then ``spatial_rvalues``, ``trace_snr(C + YrA, ...)``,
``footprint_area(A)`` and ``classify``.

Pixel noise per block: :func:`noise_block`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from caiman_dask.cnmf.frames import FrameSource, as_source, correlate, project, sampled_rows
from caiman_dask.cnmf.noise import get_noise_fft
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.spatial import hals_spatial, threshold_components
from caiman_dask.cnmf.temporal import ParcelSweep, TemporalResult, update_temporal


@dataclasses.dataclass(frozen=True)
class Products:
    """``AY = Ab.T @ Yr`` (K+nb, T) and ``AA = Ab.T @ Ab`` (K+nb, K+nb), float64."""

    AY: np.ndarray
    AA: np.ndarray


@dataclasses.dataclass(frozen=True)
class SpatialResult:
    """Thresholded footprints ``A`` (csc), background ``b`` and kept component indices."""

    A: sp.csc_matrix
    b: np.ndarray
    kept: np.ndarray


def _dense(M: np.ndarray | sp.spmatrix) -> np.ndarray:
    return M.toarray() if sp.issparse(M) else np.asarray(M)


def block_products(Y_block: np.ndarray | FrameSource,
                   Ab_block: np.ndarray | sp.spmatrix) -> Products:
    """Partial products of one pixel block ((npix_block, T) rows or a source); the driver
    sums them over blocks."""
    Ab = sp.csc_matrix(Ab_block, dtype=np.float64)
    return Products(AY=project(as_source(Y_block), Ab), AA=(Ab.T @ Ab).toarray())


def sum_products(parts: Sequence[Products]) -> Products:
    """Sum partial products in the order given (keep the block order fixed)."""
    total = None
    for part in parts:
        total = add_products(total, part)
    return total


def add_products(total: Products | None, part: Products) -> Products:
    """``total + part`` (a copy of ``part`` when ``total`` is None), in place in ``total``.

    Adding the blocks one by one in block order gives exactly :func:`sum_products`, so a
    driver can keep a running sum instead of every block's ``(K+nb, T)`` products.
    """
    if total is None:
        return Products(AY=part.AY.copy(), AA=part.AA.copy())
    np.add(total.AY, part.AY, out=total.AY)
    np.add(total.AA, part.AA, out=total.AA)
    return total


def spatial_block(Y_block: np.ndarray | FrameSource, Ab_block: np.ndarray | sp.spmatrix,
                  mask_block: sp.spmatrix, W: np.ndarray, *, iters: int = 3) -> np.ndarray:
    """New ``[A, b]`` rows (dense) of one pixel block given ``W = [C; f]``.

    Every pixel's update only needs its own data row, its rows of ``[A, b]`` and of the
    support mask, and the traces ``W`` (K+nb, T).
    """
    YW = correlate(as_source(Y_block), W)
    return hals_spatial(YW, W @ W.T, np.asarray(_dense(Ab_block), dtype=np.float64),
                        sp.csc_matrix(mask_block), iters=iters)


def finish_spatial(Ab: np.ndarray | sp.spmatrix, dims: tuple[int, int], nb: int,
                   params: CNMFParams) -> SpatialResult:
    """Threshold the stacked blocks' footprints and drop empty components."""
    Ab = sp.csc_matrix(Ab)
    K = Ab.shape[1] - nb
    s = params.spatial
    A = threshold_components(Ab[:, :K], dims, thr_method=s.thr_method, nrgthr=s.nrgthr,
                             maxthr=s.maxthr, extract_cc=s.extract_cc)
    kept = np.flatnonzero(np.diff(A.indptr) > 0)
    return SpatialResult(A=sp.csc_matrix(A[:, kept]), b=Ab[:, K:].toarray(), kept=kept)


def temporal_update(total: Products, C: np.ndarray, f: np.ndarray, params: CNMFParams, *,
                    g: np.ndarray | None = None,
                    run_sweeps: Callable[[list[ParcelSweep]], list] | None = None
                    ) -> TemporalResult:
    """Whole-FOV temporal update (HALS + OASIS) from the summed products; ``run_sweeps``
    may run each sweep's parcels in parallel (see :func:`update_temporal`)."""
    return update_temporal(total.AY, total.AA, C, f, params, g=g, run_sweeps=run_sweeps)


def noise_block(Y_block: np.ndarray | FrameSource, params: CNMFParams) -> np.ndarray:
    """Pixel noise levels (npix_block,) of one block."""
    pre = params.preprocess
    rows = sampled_rows(as_source(Y_block), pre.max_num_samples_fft)
    return get_noise_fft(rows, noise_range=pre.noise_range,
                         noise_method=pre.noise_method,
                         max_num_samples_fft=pre.max_num_samples_fft)


def normalize_components(A: sp.spmatrix, tr: TemporalResult
                         ) -> tuple[sp.csc_matrix, TemporalResult]:
    """Unit-L2 footprints, amplitude moved into the traces (CaImAn's convention).

    Scales ``C``, ``S``, ``YrA``, ``bl``, ``c1`` and ``neurons_sn`` by each footprint's
    norm; ``A`` must have no empty column (``finish_spatial`` drops them).
    """
    A = sp.csc_matrix(A, dtype=np.float64)
    norm = np.sqrt(np.asarray(A.multiply(A).sum(axis=0))).ravel()
    norm = np.where(norm > 0, norm, 1.0)
    col = norm[:, None]
    A = sp.csc_matrix(A @ sp.diags(1.0 / norm))
    return A, dataclasses.replace(tr, C=tr.C * col, S=tr.S * col, YrA=tr.YrA * col,
                                  bl=tr.bl * norm, c1=tr.c1 * norm,
                                  neurons_sn=tr.neurons_sn * norm)
