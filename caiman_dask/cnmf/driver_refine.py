"""Full-field refinement and evaluation in pixel-block tasks (driver, no maths).

A pixel block is a band of whole columns ``[x0, x1)`` of the frame: in CaImAn's F-order
pixel numbering that is the contiguous rows ``d1*x0 .. d1*x1`` of ``Yr``. Each task
opens the zarr store itself and reads only its band, a block of frames at a time
(:class:`~caiman_dask.cnmf.driver_source.RegionFrames`); the client holds the factors,
never the movie. Block results are combined in increasing block order
(:mod:`caiman_dask.cnmf.refine` explains what is summed), so results do not depend on
the number of workers or on the order in which tasks finish.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from caiman_dask.cnmf.driver_source import RegionFrames
from caiman_dask.cnmf.evaluate import (
    Evaluation,
    activity_matrix,
    classify,
    evaluation_block,
    footprint_area,
    on_support,
    spatial_rvalues,
    trace_snr,
)
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.refine import (
    Products,
    add_products,
    block_products,
    finish_spatial,
    spatial_block,
    temporal_update,
)
from caiman_dask.cnmf.spatial import full_support
from caiman_dask.cnmf.temporal import ParcelSweep, TemporalResult, sweep_parcel
from caiman_dask.movie.ref import ArrayRef
from caiman_dask.progress import Progress
from caiman_dask.view.base import BaseView

#: Decoded float32 bytes of one band over one time chunk of the store (sets band widths).
BLOCK_BYTES = 64 << 20
#: At least this many blocks when the frame has enough column chunks: with dynamic
#: scheduling a pass ends at most one band after the even split across workers.
MIN_BLOCKS = 8
#: A band may exceed ``BLOCK_BYTES`` up to this factor to span one whole column chunk.
MAX_CHUNK_OVERSHOOT = 8


F = TypeVar("F", bound=Callable[..., Any])


def one_blas_thread(fn: F) -> F:
    """Run a task with one BLAS thread: multithreaded BLAS sums in an order that depends
    on the thread count, and results must not depend on where a task runs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class PixelBlock:
    """Columns ``[x0, x1)`` of the frame, i.e. pixel rows ``[start, stop)`` of ``Yr``."""

    index: int
    x0: int
    x1: int
    start: int
    stop: int
    source: ArrayRef

    def frames(self) -> RegionFrames:
        """This band of the store as a frame source (opens the store)."""
        return RegionFrames(self.source, slice(None), slice(self.x0, self.x1))


@dataclass(frozen=True)
class Factors:
    """The model on the client: ``A`` csc (npix, K), ``b`` (npix, nb), traces."""

    A: sp.csc_matrix
    b: np.ndarray
    C: np.ndarray
    f: np.ndarray


def pixel_blocks(source: ArrayRef, shape: tuple[int, int, int], chunks: tuple[int, ...], *,
                 block_bytes: int = BLOCK_BYTES) -> list[PixelBlock]:
    """Column bands of at most about ``block_bytes`` per time chunk, of even widths.

    Bands are whole column chunks of the store whenever a chunk fits the budget (up to
    ``MAX_CHUNK_OVERSHOOT``), at least ``MIN_BLOCKS`` of them when the frame has that many
    column chunks, and their widths differ by at most one chunk: a pass costs its widest
    band, so even bands keep workers equally busy. Widths depend only on the frame, the
    chunks and the budget, never on the movie's length or the number of workers.
    """
    T, d1, d2 = shape
    x_chunk = int(chunks[2])
    column = max(min(T, int(chunks[0])) * d1 * 4, 1)
    cols = max(1, block_bytes // column)
    whole_chunks = cols >= x_chunk or x_chunk * column <= MAX_CHUNK_OVERSHOOT * block_bytes
    unit = x_chunk if whole_chunks else 1  # narrower bands would decode chunks twice
    units = math.ceil(d2 / unit)
    n = max(math.ceil(units / max(1, cols // unit)), min(MIN_BLOCKS, units))
    edges = [min(d2, (i * units // n) * unit) for i in range(n + 1)]
    return [PixelBlock(i, a, b, d1 * a, d1 * b, source)
            for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))]


@one_blas_thread
def spatial_task(item: tuple[PixelBlock, np.ndarray, sp.csc_matrix, sp.csc_matrix]
                 ) -> tuple[int, sp.csc_matrix]:
    """Task: new ``[A, b]`` rows of one block."""
    block, W, Ab_rows, mask_rows = item
    return block.index, sp.csc_matrix(spatial_block(block.frames(), Ab_rows, mask_rows, W))


@one_blas_thread
def products_task(item: tuple[PixelBlock, sp.csc_matrix]) -> tuple[int, Products]:
    """Task: ``Ab.T @ Yr`` and ``Ab.T @ Ab`` of one block."""
    block, Ab_rows = item
    return block.index, block_products(block.frames(), Ab_rows)


@one_blas_thread
def sweep_task(item: tuple[int, ParcelSweep]) -> tuple[int, tuple]:
    """Task: one HALS sweep of one parcel of components (the temporal update)."""
    index, job = item
    return index, sweep_parcel(job)


@one_blas_thread
def evaluation_task(item: tuple[PixelBlock, sp.csc_matrix, sp.csc_matrix, np.ndarray,
                                np.ndarray]) -> tuple[int, sp.csc_matrix]:
    """Task: ``(Yr - b f) @ M`` of one block, kept on the footprints' supports."""
    block, M, A_rows, b_rows, fM = item
    YM = evaluation_block(block.frames(), M) - b_rows @ fM
    return block.index, on_support(YM, A_rows)


def _in_block_order(view: BaseView, fn: Callable[[tuple], tuple[int, Any]],
                    items: list[tuple], label: str) -> Iterator[Any]:
    """Map ``fn`` over flat block items (block first) with progress; yield the results in
    block order, each as soon as its turn comes (only early finishers wait here)."""
    early: dict[int, Any] = {}
    turn = 0
    with Progress(label, total=len(items)) as progress:
        for index, result in view.imap_unordered(fn, items):
            early[index] = result
            progress.advance()
            while turn in early:
                yield early.pop(turn)
                turn += 1


def _run(view: BaseView, fn: Callable[[tuple], tuple[int, Any]], items: list[tuple],
         label: str) -> list[Any]:
    """Every block's result, in block order."""
    return list(_in_block_order(view, fn, items, label))


def _run_summed(view: BaseView, items: list[tuple], label: str) -> Products:
    """Every block's products added in block order as they arrive: the client holds the
    running sum, never one ``(K+nb, T)`` array per block (gigabytes on long movies)."""
    total = None
    for part in _in_block_order(view, products_task, items, label):
        total = add_products(total, part)
    return total


def _rows(M: sp.spmatrix, block: PixelBlock) -> sp.csc_matrix:
    return sp.csc_matrix(sp.csr_matrix(M)[block.start:block.stop])


def spatial_pass(blocks: list[PixelBlock], model: Factors, dims: tuple[int, int],
                 params: CNMFParams, view: BaseView, label: str):
    """One spatial update over all blocks; returns ``finish_spatial``'s result."""
    nb = model.b.shape[1]
    mask = full_support(model.A, dims, nb)
    Ab = sp.hstack([model.A, sp.csc_matrix(model.b)], format="csr")
    W = np.concatenate([model.C, model.f], axis=0)
    items = [(blk, W, _rows(Ab, blk), _rows(mask, blk)) for blk in blocks]
    parts = _run(view, spatial_task, items, label)
    return finish_spatial(sp.vstack(parts, format="csc"), dims, nb, params)


def temporal_pass(blocks: list[PixelBlock], A: sp.csc_matrix, b: np.ndarray, C: np.ndarray,
                  f: np.ndarray, params: CNMFParams, view: BaseView,
                  label: str) -> TemporalResult:
    """Blockwise products summed in block order, then the whole-FOV temporal update."""
    Ab = sp.hstack([A, sp.csc_matrix(b)], format="csr")
    products = _run_summed(view, [(blk, _rows(Ab, blk)) for blk in blocks], label)
    return temporal_update(products, C, f, params,
                           run_sweeps=functools.partial(_run_sweeps, view, f"{label} sweep"))


def _run_sweeps(view: BaseView, label: str, jobs: list[ParcelSweep]) -> list[tuple]:
    """One temporal sweep's parcels as tasks, results in parcel order."""
    return _run(view, sweep_task, list(enumerate(jobs)), label)


def refine_round(blocks: list[PixelBlock], model: Factors, dims: tuple[int, int],
                 params: CNMFParams, view: BaseView, label: str
                 ) -> tuple[sp.csc_matrix, np.ndarray, TemporalResult]:
    """Spatial then temporal update over the full field: ``(A, b, temporal result)``."""
    spatial = spatial_pass(blocks, model, dims, params, view, f"{label} spatial")
    tr = temporal_pass(blocks, spatial.A, spatial.b, model.C[spatial.kept], model.f, params,
                       view, f"{label} temporal")
    return spatial.A, spatial.b, tr


def evaluate_pass(blocks: list[PixelBlock], A: sp.csc_matrix, b: np.ndarray, C: np.ndarray,
                  f: np.ndarray, YrA: np.ndarray, params: CNMFParams,
                  view: BaseView) -> Evaluation:
    """CaImAn's component evaluation with blockwise ``Yr @ M``."""
    M = activity_matrix(C, A)
    fM = evaluation_block(f, M)
    Ar, br = sp.csr_matrix(A), np.asarray(b)
    items = [(blk, M, _rows(Ar, blk), br[blk.start:blk.stop], fM) for blk in blocks]
    YM = sp.vstack(_run(view, evaluation_task, items, "cnmf evaluate"), format="csc")
    snr = trace_snr(C + YrA, fr=params.data.fr, decay_time=params.data.decay_time)
    return classify(snr, spatial_rvalues(YM, A), params, areas=footprint_area(A))
