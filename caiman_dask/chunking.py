"""Arithmetic behind the chunk plan: per-axis amplification, chunk and shard sizes.

Pure integer/NumPy arithmetic used by :mod:`caiman_dask.plan` (whose docstring
explains the choices); no dask, no zarr.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from caiman_dask.layout import StoreLayout, human_bytes

Pair = tuple[int, int]
CORRECTED_DTYPE = "float32"
#: float32 bytes of the frames a CNMF task reads at a time (:mod:`caiman_dask.cnmf.frames`).
CNMF_BLOCK_BYTES = 16 << 20


@dataclass(frozen=True)
class AxisAmplification:
    """Patch-read amplification on one axis for candidate chunk sizes.

    ``worst[i]`` and ``mean[i]`` are the max and mean, over the axis's patch
    intervals, of (elements of the chunks of size ``sizes[i]`` touched, clipped to
    the axis) / (elements of the interval). A 2-D patch grid is the product of
    its two axes, so its worst (mean) amplification is the product of the axes'.
    """

    sizes: np.ndarray
    worst: np.ndarray
    mean: np.ndarray


def axis_amplification(
    intervals: Sequence[slice], extent: int, *, max_amplification: float = math.inf
) -> AxisAmplification:
    """Return the amplification of candidate chunk sizes for ``intervals`` on an axis.

    Candidates are ``1 .. extent``, except that sizes above
    ``max_amplification`` times the widest interval (and below ``extent``) are
    skipped: a full chunk that large already exceeds the bound on the first
    interval.

    Parameters
    ----------
    intervals : sequence of slice
        Half-open intervals read on this axis (one per patch row or column).
    extent : int
        Length of the axis.
    max_amplification : float, optional
        Bound used only to skip hopeless sizes.
    """
    start = np.array([s.start for s in intervals])[None, :]
    stop = np.array([s.stop for s in intervals])[None, :]
    limit = min(extent, int(max_amplification * int((stop - start).max())) if
                math.isfinite(max_amplification) else extent)
    sizes = np.unique(np.r_[np.arange(1, limit + 1), extent])
    col = sizes[:, None]
    first = start // col
    covered = np.minimum(((stop - 1) // col + 1) * col, extent) - first * col
    ratio = covered / (stop - start)
    return AxisAmplification(sizes=sizes, worst=ratio.max(axis=1), mean=ratio.mean(axis=1))


def best_spatial_chunk(
    ay: AxisAmplification, ax: AxisAmplification, max_amplification: float, *, max_area: int
) -> tuple[Pair, float]:
    """Return the largest ``(cy, cx)`` whose worst patch amplification is bounded.

    Among sizes with ``worst_y * worst_x <= max_amplification`` and
    ``cy * cx <= max_area`` take the largest area, then the lowest amplification,
    then the squarest. ``(1, 1)`` always qualifies (amplification 1).

    Returns
    -------
    ((int, int), float)
        The chunk's spatial shape and its worst amplification.
    """
    best: tuple[tuple[int, float, int], Pair, float] = ((1, -1.0, 0), (1, 1), 1.0)
    ok_x = ax.worst <= max_amplification
    for cy, wy in zip(ay.sizes, ay.worst):
        amps = wy * ax.worst
        for cx, amp in zip(ax.sizes[ok_x & (amps <= max_amplification)],
                           amps[ok_x & (amps <= max_amplification)]):
            key = (int(cy * cx), -float(amp), -abs(int(cy) - int(cx)))
            if cy * cx <= max_area and key > best[0]:
                best = (key, (int(cy), int(cx)), float(amp))
    return best[1], best[2]


def divisors(n: int) -> list[int]:
    """Return the divisors of ``n >= 1`` in increasing order."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small) | {n // d for d in small})


def time_extent(length: int, frame_bytes: int, max_bytes: int, *, multiple_of: int = 0) -> int:
    """Return a chunk's time extent: as long as ``max_bytes`` allows, at least 1 frame.

    Without ``multiple_of`` the extent divides ``length`` (a block written by one
    task). With ``multiple_of = L`` it covers all of ``length`` frames when it
    fits, else a multiple of ``L`` (when one ``L`` fits), else the largest extent
    that fits.
    """
    fit = max(1, max_bytes // max(frame_bytes, 1))
    if not multiple_of:
        return max(d for d in divisors(length) if d <= fit or d == 1)
    if length <= fit:
        return length
    return fit // multiple_of * multiple_of if fit >= multiple_of else fit


def frame_chunks(frame: Pair, itemsize: int, length: int, max_bytes: int) -> tuple[int, int, int]:
    """Return chunks of whole frames for a store written and read in blocks of frames.

    The time extent divides ``length``; rows are split in equal bands only when
    one frame exceeds ``max_bytes``.
    """
    rows, cols = frame
    for bands in range(1, rows + 1):
        band = math.ceil(rows / bands)
        if band * cols * itemsize <= max_bytes or band == 1:
            return (time_extent(length, band * cols * itemsize, max_bytes), band, cols)
    raise AssertionError("unreachable: a band of one row always qualifies")


def shard_shape(
    chunks: tuple[int, ...], shape: tuple[int, ...], t_extent: int, itemsize: int, max_bytes: int
) -> tuple[int, ...] | None:
    """Return a shard of up to ``t_extent`` frames holding as much of the frame as fits.

    The shard is a multiple of ``chunks``. Its spatial extent is the whole frame
    (rounded up to chunks) unless that exceeds ``max_bytes``: then the larger
    side is halved (in whole chunks) until it fits, and the shards are balanced.
    If one chunk column of ``t_extent`` frames still does not fit, the time
    extent drops to the largest multiple of ``chunks[0]`` dividing ``t_extent``
    that fits (so shards still never straddle ``t_extent`` boundaries).
    Returns ``None`` when the shard would be a single chunk.
    """
    counts = [math.ceil(n / c) for n, c in zip(shape[1:], chunks[1:], strict=True)]
    per = list(counts)

    def side(axis: int) -> int:
        return per[axis] * chunks[1 + axis]

    frame_bytes = itemsize * math.prod(side(a) for a in range(len(per)))
    while t_extent * frame_bytes > max_bytes and max(per) > 1:
        axis = max((a for a in range(len(per)) if per[a] > 1), key=side)
        per[axis] = math.ceil(per[axis] / 2)
        frame_bytes = itemsize * math.prod(side(a) for a in range(len(per)))
    per = [math.ceil(n / math.ceil(n / k)) for n, k in zip(counts, per, strict=True)]
    frame_bytes = itemsize * math.prod(side(a) for a in range(len(per)))
    fits = [d * chunks[0] for d in divisors(max(t_extent // chunks[0], 1))
            if d * chunks[0] * frame_bytes <= max_bytes and t_extent % (d * chunks[0]) == 0]
    shards = (max(fits, default=chunks[0]), *(side(a) for a in range(len(per))))
    return None if shards == tuple(chunks) else shards


def rechunked_shards(chunks: tuple[int, int, int], shape: tuple[int, ...], itemsize: int,
                     max_bytes: int) -> tuple[int, ...] | None:
    """Return the rechunked store's shard: whole frames over time chunks.

    As many time chunks of whole frames (rounded up to chunks) as fit in ``max_bytes``,
    up to the whole movie: a rechunk task then reads whole frames of ``corrected`` and
    holds one shard. When one time chunk of whole frames does not fit, the frame is
    split as :func:`shard_shape` does, over one time chunk. The time extent may pass the
    movie's end. Returns ``None`` when the shard would be a single chunk.
    """
    t_chunk = chunks[0]
    sides = tuple(math.ceil(n / c) * c for n, c in zip(shape[1:], chunks[1:], strict=True))
    frame_bytes = itemsize * math.prod(sides)
    k = min(math.ceil(shape[0] / t_chunk), max_bytes // max(t_chunk * frame_bytes, 1))
    if k < 1:
        return shard_shape(chunks, shape, t_chunk, itemsize, max_bytes)
    shards = (k * t_chunk, *sides)
    return None if shards == tuple(chunks) else shards


@dataclass(frozen=True)
class Budget:
    """What every layout of one plan shares.

    Attributes
    ----------
    shape : (int, int, int)
        Movie shape ``(T, Y, X)``.
    block : int
        MC block length ``L``: block boundaries are multiples of it.
    window : (int, int)
        Inner chunk bytes ``(lower, upper)``.
    max_shard : int
        Upper bound of a shard's bytes.
    patch_pixels : int
        Pixels of the largest CNMF patch (0: unknown): the rechunked store's chunks span
        at most the frames a patch task reads at a time (:func:`cnmf_block_frames`).
    """

    shape: tuple[int, int, int]
    block: int
    window: tuple[int, int]
    max_shard: int
    patch_pixels: int = 0


def cnmf_block_frames(n_pixels: int, *, multiple: int = 1,
                      block_bytes: int = CNMF_BLOCK_BYTES) -> int:
    """Frames of ``n_pixels`` float32 pixels in about ``block_bytes``: how many frames a
    CNMF task reads at a time, and the cap on the rechunked chunks' time extent (so such
    a read decodes only its own chunks). A multiple of ``multiple``, at least one."""
    fit = max(1, block_bytes // max(4 * n_pixels, 1))
    return max(multiple, fit - fit % multiple)


def block_layout(budget: Budget, dtype: str, chunks: tuple[int, int, int]) -> StoreLayout:
    """Return a layout written one MC block per task: shards of ``budget.block`` frames."""
    itemsize = np.dtype(dtype).itemsize
    shards = shard_shape(chunks, budget.shape, budget.block, itemsize, budget.max_shard)
    return StoreLayout(budget.shape, dtype, chunks, shards)


def corrected_layouts(
    budget: Budget, spatial: Pair, amp: float, rechunk: bool | None
) -> tuple[StoreLayout, StoreLayout | None, tuple[str, ...]]:
    """Return ``(corrected, rechunked or None, notes)`` for patch chunks ``spatial``.

    The direct layout puts ``spatial`` chunks of at most one block in time into
    ``corrected``. The rechunked layout's chunks span at most the frames a CNMF task
    reads at a time; its shards are whole frames over such chunks
    (:func:`rechunked_shards`).
    ``rechunk=None`` takes the rechunk when the direct chunks are below the window's
    lower bound and the rechunked ones are at least twice as large; then
    ``corrected``'s chunks are the rechunked shards' columns so each rechunk task
    reads exactly its own chunks.
    """
    itemsize = np.dtype(CORRECTED_DTYPE).itemsize
    area_bytes = spatial[0] * spatial[1] * itemsize
    lo, hi = budget.window
    direct = block_layout(
        budget, CORRECTED_DTYPE, (time_extent(budget.block, area_bytes, hi), *spatial)
    )
    t_full = time_extent(budget.shape[0], area_bytes, hi, multiple_of=budget.block)
    t_chunk = t_full
    if budget.patch_pixels:  # frames a patch task reads at a time, chunks of >= lo bytes
        at_least = -(-lo // area_bytes)
        at_least = -(-at_least // budget.block) * budget.block
        cap = cnmf_block_frames(budget.patch_pixels, multiple=budget.block)
        t_chunk = min(t_full, max(cap, at_least))
    chunks = (t_chunk, *spatial)
    shards = rechunked_shards(chunks, budget.shape, itemsize, budget.max_shard)
    rech = StoreLayout(budget.shape, CORRECTED_DTYPE, chunks, shards)
    small = direct.chunk_bytes < lo
    use = rechunk if rechunk is not None else small and rech.chunk_bytes >= 2 * direct.chunk_bytes
    notes = _layout_notes(direct, rech, amp, use=use, small=small, lo=lo)
    if not use:
        return direct, None, notes
    columns = tuple(min(u, n) for u, n in zip(rech.write_unit[1:], budget.shape[1:]))
    mc_time = time_extent(budget.block, math.prod(columns) * itemsize, hi)
    return block_layout(budget, CORRECTED_DTYPE, (mc_time, *columns)), rech, notes


def _layout_notes(
    direct: StoreLayout, rech: StoreLayout, amp: float, *, use: bool, small: bool, lo: int
) -> tuple[str, ...]:
    cy, cx = direct.chunks[1:]
    head = (
        f"CNMF patch reads need spatial chunks of {cy}x{cx} px (amplification <= {amp:.3f}); "
        f"inside one MC block of {direct.chunks[0]} frames such a chunk holds "
        f"{human_bytes(direct.chunk_bytes)}"
    )
    if use:
        return (
            f"{head}, below the {human_bytes(lo)} window: MC writes 'corrected' in columns and "
            f"one rechunk pass copies it to 'rechunked' ({rech.chunks} chunks of "
            f"{human_bytes(rech.chunk_bytes)}), reading and writing {human_bytes(rech.nbytes)} "
            "once.",
        )
    if small:
        return (f"{head}, below the {human_bytes(lo)} window; CNMF reads 'corrected' directly "
                "(a rechunk would not give chunks twice as large, or was refused).",)
    return (f"{head}: CNMF reads 'corrected' directly, no rechunk needed.",)
