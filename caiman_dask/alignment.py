"""Parallel writes that never share a file: region normalisation and alignment checks.

Pure arithmetic (no dask, no zarr), after xarray's idea of refusing writes whose
chunks straddle storage chunks. A region is a tuple of step-1 slices, one per
axis (a bare slice or a shorter tuple covers the leading axes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from caiman_dask.errors import ChunkAlignmentError, ParameterError

if TYPE_CHECKING:
    from caiman_dask.layout import StoreLayout

Shape = tuple[int, ...]
Region = tuple[slice, ...]
#: Above this many (region, unit) pairs conflicts are found by a pairwise sweep.
_MAX_ENUMERATED_UNITS = 1_000_000


def full_region(shape: Shape, region: slice | Sequence[slice]) -> Region:
    """Return ``region`` with one concrete ``slice(start, stop)`` per axis.

    A single slice or a shorter tuple covers the leading axes; missing axes are
    whole. Slices must have step 1 and lie inside the array (after clipping).
    """
    given = (region,) if isinstance(region, slice) else tuple(region)
    if len(given) > len(shape):
        raise ParameterError(f"region {given} has more axes than the array shape {shape}")
    out = []
    for axis, n in enumerate(shape):
        sl = given[axis] if axis < len(given) else slice(None)
        if not isinstance(sl, slice):
            raise ParameterError(f"regions are tuples of slices, got {sl!r} on axis {axis}")
        start, stop, step = sl.indices(n)
        if step != 1:
            raise ParameterError(f"region slices must have step 1, got {sl} on axis {axis}")
        out.append(slice(start, max(start, stop)))
    return tuple(out)


def _unit_box(region: Region, unit: Shape) -> tuple[range, ...]:
    return tuple(
        range(sl.start // u, (sl.stop - 1) // u + 1) if sl.stop > sl.start else range(0)
        for sl, u in zip(region, unit, strict=True)
    )


def _first_conflict(boxes: list[tuple[range, ...]]) -> tuple[int, int, Shape] | None:
    """Return (i, j, shared unit) for two boxes sharing a unit, else None."""
    if sum(math.prod(len(r) for r in box) for box in boxes) <= _MAX_ENUMERATED_UNITS:
        owner: dict[Shape, int] = {}
        for j, box in enumerate(boxes):
            for unit in itertools.product(*box):
                i = owner.setdefault(unit, j)
                if i != j:
                    return (i, j, unit)
        return None
    return _first_conflict_sweep(boxes)


def _first_conflict_sweep(boxes: list[tuple[range, ...]]) -> tuple[int, int, Shape] | None:
    """Pairwise check of boxes sorted along the first axis (for huge unit counts)."""
    order = sorted(range(len(boxes)), key=lambda k: boxes[k][0].start)
    for pos, i in enumerate(order):
        for j in order[pos + 1 :]:
            if boxes[j][0].start >= boxes[i][0].stop:
                break
            shared = [range(max(a.start, b.start), min(a.stop, b.stop)) for a, b in
                      zip(boxes[i], boxes[j], strict=True)]
            if all(len(r) for r in shared):
                return (min(i, j), max(i, j), tuple(r.start for r in shared))
    return None


def validate_aligned_writes(
    layout: StoreLayout, regions: Iterable[slice | Sequence[slice]], *, name: str = "the store"
) -> None:
    """Refuse parallel write regions that share a shard (or a chunk when unsharded).

    Each region is written by its own task; two tasks writing parts of one shard
    would overwrite each other's data.

    Parameters
    ----------
    layout : StoreLayout
        The destination.
    regions : iterable of slice or sequence of slice
        One region per writing task (a bare slice covers the time axis only).
    name : str, optional
        The destination's name, for the message.

    Raises
    ------
    ChunkAlignmentError
        Naming the two regions, the shared unit and how to fix the plan.
    """
    full = [full_region(layout.shape, r) for r in regions]
    unit = layout.write_unit
    hit = _first_conflict([_unit_box(r, unit) for r in full])
    if hit is None:
        return
    i, j, shared = hit
    raise ChunkAlignmentError(_conflict_message(layout, full, i, j, shared, name))


def _conflict_message(
    layout: StoreLayout, regions: list[Region], i: int, j: int, shared: Shape, name: str
) -> str:
    kind = "shard" if layout.shards is not None else "chunk"
    unit = layout.write_unit
    head = (
        f"write regions {i} {_fmt(regions[i])} and {j} {_fmt(regions[j])} both touch {kind} "
        f"{shared} of {name} ({kind} shape {unit}): parallel writes would overwrite each other"
    )
    axis = next(
        (a for a, (p, q) in enumerate(zip(regions[i], regions[j], strict=True))
         if p.stop <= q.start or q.stop <= p.start),
        None,
    )
    if axis is None:
        return f"{head}; the regions overlap: give each task its own disjoint region"
    inner = {r[axis].start for r in regions} | {r[axis].stop for r in regions}
    inner.discard(layout.shape[axis])
    step = math.gcd(*inner) or layout.shape[axis]
    return (
        f"{head}. Make every region boundary on axis {axis} a multiple of the {kind} extent "
        f"{unit[axis]}: use a {kind} extent on axis {axis} that divides {step}, or regions "
        f"that start at multiples of {unit[axis]}"
    )


def _fmt(region: Region) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in region) + "]"
