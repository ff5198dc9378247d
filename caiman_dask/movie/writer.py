"""Streamed block writes: one task reads one block and writes it into the zarr array.

Blocks are whole write units (shards, or chunks when unsharded), so no two tasks ever
share a file. Tasks run on a ``distributed.Client`` when given, else on dask's
threaded scheduler in this process; either way memory holds a few blocks at a time.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from dask.array.core import normalize_chunks
from dask.callbacks import Callback
from dask.delayed import Delayed

from caiman_dask.layout import Region
from caiman_dask.movie.model import SourceFile
from caiman_dask.movie.paths import checksum_source
from caiman_dask.plan import StoreLayout, validate_aligned_writes
from caiman_dask.progress import Progress
from caiman_dask.system import usable_cpus

TARGET_BLOCK_BYTES = 16 << 20  # a write task covers whole write units up to about this
MAX_FRAME_BLOCK_BYTES = 256 << 20  # above this one unit of whole frames is split spatially
TASK_PREFIX = "caiman-dask-"


@dataclass(frozen=True)
class BlockWritten:
    """What one write task did: the region's corners and the bytes written (decoded)."""

    start: tuple[int, ...]
    stop: tuple[int, ...]
    nbytes: int


def write_block(block: np.ndarray, target: zarr.Array, region: Region) -> BlockWritten:
    """Write ``block`` into ``target[region]`` (a task; ``region`` covers whole shards)."""
    target[region] = block
    return BlockWritten(tuple(s.start for s in region), tuple(s.stop for s in region),
                        int(block.nbytes))


def block_shape(layout: StoreLayout, *, target: int = TARGET_BLOCK_BYTES) -> tuple[int, ...]:
    """Shape of a write block: whole frames and whole write units along time.

    Whole frames keep TIFF reads free of amplification; frames are split into write
    units only when one unit of whole frames exceeds ``MAX_FRAME_BLOCK_BYTES``.
    """
    unit = layout.write_unit
    frame_bytes = math.prod(layout.shape[1:]) * layout.itemsize
    if unit[0] * frame_bytes <= MAX_FRAME_BLOCK_BYTES:
        spatial = tuple(layout.shape[1:])
        units = max(1, target // (unit[0] * frame_bytes))
    else:
        spatial = tuple(unit[1:])
        units = max(1, target // (unit[0] * math.prod(spatial) * layout.itemsize))
    return (min(unit[0] * units, layout.shape[0]), *spatial)


def block_regions(layout: StoreLayout, block: Sequence[int]) -> list[Region]:
    """The grid of write regions of ``block`` shape, checked against shard alignment."""
    axes = [[slice(a, min(a + b, n)) for a in range(0, n, b)]
            for n, b in zip(layout.shape, block, strict=True)]
    regions = list(itertools.product(*axes))
    validate_aligned_writes(layout, regions)
    return regions


def write_tasks(data: da.Array, target: zarr.Array, block: Sequence[int]) -> list[Delayed]:
    """One delayed write per block of ``data`` (rechunked to ``block`` if needed)."""
    want = normalize_chunks(tuple(block), data.shape, dtype=data.dtype)
    if data.chunks != want:
        data = data.rechunk(want, method="tasks")
    token = uuid.uuid4().hex  # side effects: never let the scheduler reuse an old result
    pieces = data.to_delayed(optimize_graph=True)
    offsets = [np.cumsum((0, *c)) for c in data.chunks]
    tasks = []
    for n, index in enumerate(itertools.product(*(range(len(c)) for c in data.chunks))):
        region = tuple(slice(int(o[i]), int(o[i + 1])) for o, i in zip(offsets, index))
        tasks.append(dask.delayed(write_block, pure=False)(
            pieces[index], target, region, dask_key_name=f"{TASK_PREFIX}write-{token}-{n}"))
    return tasks


def checksum_tasks(sources: Sequence[SourceFile], storage_options: dict[str, Any] | None
                   ) -> list[Delayed]:
    """One delayed SHA-256 per source file, prioritised so it runs beside the writes."""
    token = uuid.uuid4().hex
    with dask.annotate(priority=1):
        return [dask.delayed(checksum_source, pure=False)(
            source, storage_options, dask_key_name=f"{TASK_PREFIX}checksum-{token}-{n}")
            for n, source in enumerate(sources)]


class _ProgressCallback(Callback):
    """Advance a Progress when one of our tasks finishes on the local scheduler."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if isinstance(key, str) and key.startswith(TASK_PREFIX):
            self.progress.advance(1)


def run_tasks(tasks: list[Delayed], *, client: Any = None, progress: Progress) -> list[Any]:
    """Compute ``tasks`` on ``client`` (a distributed.Client) or local threads, in order."""
    if client is None:
        with _ProgressCallback(progress):
            return list(dask.compute(*tasks, scheduler="threads", num_workers=usable_cpus()))
    import distributed

    futures = client.compute(tasks)
    try:
        for future in distributed.as_completed(futures):
            future.result()
            progress.advance(1)
    except BaseException:
        client.cancel(futures)
        raise
    return client.gather(futures)
