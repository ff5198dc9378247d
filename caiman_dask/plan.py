"""The chunk plan: zarr layouts that keep motion correction and CNMF patch reads cheap.

Pure arithmetic (no dask, no zarr). Three stores and their access patterns:

- ``raw`` (the converted movie, native dtype): written by the converter and read
  by motion-correction (MC) tasks, one time block of whole frames each. Chunks
  are whole frames (row bands only if one frame exceeds the window) and divide
  the block length ``L`` in time; shards (files) hold ``L`` frames.
- ``corrected`` (float32): written by MC, one block per task. Shards hold ``L``
  frames (a divisor of ``L`` if ``L`` frames exceed ``max_shard_bytes``), so no
  shard is ever shared by two MC tasks.
- CNMF patch tasks read all frames of one spatial patch. Amplification (bytes of
  chunks touched / bytes needed) stays <= ``max_amplification`` only with small
  spatial chunks that nearly align with the patch step ``2*rf - stride`` (11x11
  px for rf=25, stride=6). Inside one block such chunks are tiny (100 x 11 x 11
  float32 = 47 KiB). When they fall below the window's lower bound and spanning
  more of the movie in time makes them at least twice as large, the plan adds
  ``rechunked`` and says so in its notes: one rechunk pass, one task per
  ``rechunked`` shard, copies ``corrected`` into it. Its chunks span as many frames
  as a patch task reads at a time (``cnmf_block_frames`` of the largest patch, at
  least the window's lower bound: 2200 x 11 x 11 float32 = 1.0 MiB), so the memory
  of patch tasks, which read a block of frames at a time, does not grow with the
  movie's length; its shards are whole frames over such chunks.
  ``corrected``'s chunks are then exactly those shards' columns, so the pass
  reads each byte once. Otherwise (or with ``rechunk=False``) CNMF reads
  ``corrected`` directly. ``benchmarks/plan_report.py --measure`` times both.
- CNMF on a movie that skips MC (already registered) should read a rechunked
  copy of ``raw`` for the same reason: whole-frame chunks cost ~(Y/h)*(X/w).

Chunk window: inner chunks of 1-16 MiB by default. Measured with zarr 3.1 and
zstd on this project's 2-core test machine (float32 movie, local disk): chunks
of 25-100 KiB decode and encode at 50-160 MB/s (about 0.3-0.8 ms of overhead per
chunk), 1.6 MiB at ~300 MB/s, 6-25 MiB at 450-800 MB/s. Free choices take the
largest chunk <= the upper bound.

Time blocks (:func:`plan_time_blocks`): CaImAn's ``np.array_split`` blocks have
lengths ``n`` and ``n + 1`` when ``T`` is not a multiple of
``num_frames_split``, which no regular shard grid can follow. The plan keeps
CaImAn's block count, ``max(T // nfs, 1)``, with blocks of exactly
``L = min(nfs, T)`` frames and a last block of ``L .. 2L - 1`` frames (the
remainder). Every boundary is a multiple of ``L``, so shards of ``L`` frames
are never shared; the last block writes its own shards. No block is shorter
than CaImAn's shortest (each block's mean image feeds the next template), and
no block is longer than CaImAn's longest possible (``2L - 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caiman_dask.chunking import (
    CORRECTED_DTYPE,
    Budget,
    axis_amplification,
    best_spatial_chunk,
    block_layout,
    corrected_layouts,
    frame_chunks,
)
from caiman_dask.errors import ParameterError
from caiman_dask.geometry import (
    Pair,
    Patch,
    Tile,
    as_pair,
    patch_axes,
    patch_grid,
    plan_time_blocks,
    resolve_stride,
    tile_grid,
)
from caiman_dask.layout import (
    ReadCost,
    Region,
    StoreLayout,
    layout_from_chunks,
    read_amplification,
    validate_aligned_writes,
)
from caiman_dask.plan_report import AccessStats, PlanReport, report

__all__ = [
    "AccessStats", "ChunkPlan", "PlanReport", "ReadCost", "StoreLayout", "layout_from_chunks",
    "plan_chunks", "plan_time_blocks", "read_amplification", "report", "validate_aligned_writes",
]

MIB = 1 << 20
#: Default (lower, upper) bounds of an inner chunk's decoded bytes.
DEFAULT_CHUNK_BYTES: tuple[int, int] = (1 * MIB, 16 * MIB)
#: Default upper bound of one shard (file). A task writes whole shards and a rechunk task
#: holds one decoded and encoded, so this also bounds a rechunk task's memory (about 3x).
DEFAULT_MAX_SHARD_BYTES: int = 128 * MIB
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ChunkPlan:
    """Layouts of the movie's stores and the grids they were chosen for.

    Attributes
    ----------
    raw, corrected : StoreLayout
        Converted movie (read by MC) and MC output (written one block per task).
    rechunked : StoreLayout or None
        Copy of ``corrected`` for CNMF patch reads; ``None`` when CNMF reads
        ``corrected`` directly.
    time_blocks : tuple of (int, int)
        ``(start, stop)`` of each MC task's frames (see :func:`plan_time_blocks`).
    rf, stride : (int, int)
        CNMF patch half-size and overlap per axis (stride resolved).
    border_pix : int
        CNMF patch border.
    strides, overlaps : (int, int)
        NoRMCorre tile geometry.
    num_frames_split : int
        CaImAn's ``motion.num_frames_split``.
    chunk_bytes : (int, int)
        The chunk window used.
    max_amplification : float
        The patch-read amplification bound used.
    notes : tuple of str
        Why the plan looks as it does (rechunk, small chunks, block lengths).
    """

    raw: StoreLayout
    corrected: StoreLayout
    rechunked: StoreLayout | None
    time_blocks: tuple[tuple[int, int], ...]
    rf: Pair
    stride: Pair
    border_pix: int
    strides: Pair
    overlaps: Pair
    num_frames_split: int
    chunk_bytes: tuple[int, int] = DEFAULT_CHUNK_BYTES
    max_amplification: float = 1.25
    notes: tuple[str, ...] = field(default=())

    @property
    def needs_rechunk(self) -> bool:
        """True when CNMF must read a rechunked copy of ``corrected``."""
        return self.rechunked is not None

    @property
    def cnmf_layout(self) -> StoreLayout:
        """The store CNMF patch tasks read: ``rechunked``, else ``corrected``."""
        return self.rechunked if self.rechunked is not None else self.corrected

    @property
    def frame_dims(self) -> Pair:
        """``(Y, X)``."""
        return (self.raw.shape[1], self.raw.shape[2])

    def block_regions(self) -> list[Region]:
        """One ``(slice(t0, t1),)`` region per MC task."""
        return [(slice(a, b),) for a, b in self.time_blocks]

    def patches(self) -> list[Patch]:
        """CaImAn's CNMF patch grid for this plan."""
        return patch_grid(self.frame_dims, rf=self.rf, stride=self.stride,
                          border_pix=self.border_pix)

    def tiles(self) -> list[Tile]:
        """NoRMCorre's tiles for this plan; none when they do not fit (rigid only)."""
        try:
            return tile_grid(self.frame_dims, strides=self.strides, overlaps=self.overlaps)
        except ParameterError:
            return []

    def rechunk_regions(self) -> list[Region]:
        """One region per rechunk task (a ``rechunked`` shard); empty without rechunk."""
        if self.rechunked is None:
            return []
        return self.rechunked.shard_regions()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (for zarr attributes)."""
        return {
            "format": FORMAT_VERSION,
            "raw": self.raw.to_dict(),
            "corrected": self.corrected.to_dict(),
            "rechunked": None if self.rechunked is None else self.rechunked.to_dict(),
            "time_blocks": [list(b) for b in self.time_blocks],
            "rf": list(self.rf), "stride": list(self.stride), "border_pix": self.border_pix,
            "strides": list(self.strides), "overlaps": list(self.overlaps),
            "num_frames_split": self.num_frames_split,
            "chunk_bytes": list(self.chunk_bytes),
            "max_amplification": self.max_amplification,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkPlan:
        """Inverse of :meth:`to_dict`; raises ParameterError on a malformed dict."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
            raise ParameterError(
                f"not a chunk plan of format {FORMAT_VERSION}: {str(data)[:200]!r}; "
                "re-plan with plan_chunks()"
            )
        try:
            return _plan_from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"malformed chunk plan: {exc!r}") from None


def _plan_from_dict(data: dict[str, Any]) -> ChunkPlan:
    rech = data["rechunked"]
    return ChunkPlan(
        raw=StoreLayout.from_dict(data["raw"]),
        corrected=StoreLayout.from_dict(data["corrected"]),
        rechunked=None if rech is None else StoreLayout.from_dict(rech),
        time_blocks=tuple((int(a), int(b)) for a, b in data["time_blocks"]),
        rf=as_pair(data["rf"], "rf"), stride=as_pair(data["stride"], "stride"),
        border_pix=int(data["border_pix"]),
        strides=as_pair(data["strides"], "strides"),
        overlaps=as_pair(data["overlaps"], "overlaps"),
        num_frames_split=int(data["num_frames_split"]),
        chunk_bytes=(int(data["chunk_bytes"][0]), int(data["chunk_bytes"][1])),
        max_amplification=float(data["max_amplification"]),
        notes=tuple(str(n) for n in data.get("notes", ())),
    )


def _check_inputs(
    shape: Sequence[int], dtype: Any, window: Sequence[int], max_amp: float, max_shard: int
) -> tuple[tuple[int, int, int], np.dtype, tuple[int, int]]:
    dims = tuple(shape)
    if len(dims) != 3 or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in dims):
        raise ParameterError(
            f"the chunk plan needs a (T, Y, X) movie shape of ints >= 1, got {tuple(shape)!r}"
            " (volumetric movies: give explicit chunks)"
        )
    try:
        dt = np.dtype(dtype)
        lo, hi = (int(v) for v in window)
        amp = float(max_amp)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"bad dtype, chunk_bytes or max_amplification: {exc}") from None
    if dt.kind not in "uif":
        raise ParameterError(f"movie dtype {dt} is not an integer or float type")
    if not 1 <= lo <= hi <= max_shard:
        raise ParameterError(
            f"chunk_bytes=({lo}, {hi}) must satisfy 1 <= lower <= upper <= max_shard_bytes="
            f"{max_shard}: widen max_shard_bytes or narrow the window"
        )
    if not amp >= 1.0:
        raise ParameterError(f"max_amplification must be >= 1.0, got {max_amp!r}")
    return (int(dims[0]), int(dims[1]), int(dims[2])), dt, (lo, hi)


def plan_chunks(
    shape: Sequence[int],
    dtype: Any,
    *,
    rf: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    border_pix: int = 0,
    num_frames_split: int = 80,
    strides: int | Sequence[int] = (96, 96),
    overlaps: int | Sequence[int] = (32, 32),
    chunk_bytes: Sequence[int] = DEFAULT_CHUNK_BYTES,
    max_amplification: float = 1.25,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    rechunk: bool | None = None,
) -> ChunkPlan:
    """Choose zarr v3 chunk and shard shapes for a movie's raw and corrected stores.

    Parameters
    ----------
    shape : (int, int, int)
        Movie shape ``(T, Y, X)``.
    dtype : dtype-like
        The raw movie's dtype (the corrected movie is float32).
    rf, stride, border_pix : see :func:`caiman_dask.geometry.patch_grid`
        CNMF patch geometry (CaImAn's ``patch`` group).
    num_frames_split : int, optional
        Frames per MC task (CaImAn's ``motion.num_frames_split``).
    strides, overlaps : int or (int, int), optional
        NoRMCorre tile geometry, recorded in the plan; it does not shape the layout (MC
        reads whole frames), so it is validated by the motion parameters, and only when
        ``pw_rigid`` is on.
    chunk_bytes : (int, int), optional
        Window of an inner chunk's decoded bytes; chunks are made as large as
        the upper bound allows, and a patch layout below the lower bound inside
        one block triggers the rechunk (when it gives larger chunks).
    max_amplification : float, optional
        Bound on CNMF patch-read amplification; spatial chunks are the largest
        that respect it.
    max_shard_bytes : int, optional
        Bound on one shard (file) in bytes.
    rechunk : bool or None, optional
        Force (True) or forbid (False) the rechunked store; None decides.

    Returns
    -------
    ChunkPlan

    Raises
    ------
    ParameterError
        Naming the bad parameter (shape, dtype, window, rf, stride, border_pix,
        strides, overlaps, num_frames_split).
    """
    (T, Y, X), dt, window = _check_inputs(
        shape, dtype, chunk_bytes, max_amplification, max_shard_bytes
    )
    rfs = as_pair(rf, "patch.rf", minimum=1)
    stride_p = resolve_stride(rfs, stride)
    ys, xs = patch_axes((Y, X), rf=rfs, stride=stride_p, border_pix=border_pix)
    as_pair(strides, "motion.strides", minimum=1)
    as_pair(overlaps, "motion.overlaps", minimum=0)
    blocks = plan_time_blocks(T, num_frames_split=num_frames_split)
    length = blocks[0][1] - blocks[0][0]
    patch_pixels = max(s.stop - s.start for s in ys) * max(s.stop - s.start for s in xs)
    budget = Budget((T, Y, X), length, window, max_shard_bytes, patch_pixels)
    raw = block_layout(budget, dt.name, frame_chunks((Y, X), dt.itemsize, length, window[1]))
    spatial, amp = best_spatial_chunk(
        axis_amplification(ys, Y, max_amplification=max_amplification),
        axis_amplification(xs, X, max_amplification=max_amplification),
        max_amplification, max_area=window[1] // np.dtype(CORRECTED_DTYPE).itemsize,
    )
    corrected, rechunked, notes = corrected_layouts(budget, spatial, amp, rechunk)
    notes = _block_note(T, blocks) + notes
    return ChunkPlan(
        raw=raw, corrected=corrected, rechunked=rechunked, time_blocks=blocks,
        rf=rfs, stride=stride_p, border_pix=int(border_pix),
        strides=as_pair(strides, "motion.strides", minimum=1),
        overlaps=as_pair(overlaps, "motion.overlaps"),
        num_frames_split=int(num_frames_split), chunk_bytes=window,
        max_amplification=float(max_amplification), notes=notes,
    )


def _block_note(T: int, blocks: tuple[tuple[int, int], ...]) -> tuple[str, ...]:
    length = blocks[0][1] - blocks[0][0]
    last = blocks[-1][1] - blocks[-1][0]
    if last == length:
        return (f"MC: {len(blocks)} blocks of {length} frames (as CaImAn's np.array_split).",)
    return (
        f"MC: {len(blocks)} blocks of {length} frames, the last {last} (CaImAn's "
        f"np.array_split would give {T // len(blocks)}/{T // len(blocks) + 1}); shards of "
        f"{length} frames are then never shared by two MC tasks.",
    )

