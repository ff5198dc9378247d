"""What a chunk plan costs: per-task reads, amplification, files and memory.

Pure arithmetic over a :class:`caiman_dask.plan.ChunkPlan` (no dask, no zarr).
Every amplification figure comes from :func:`caiman_dask.layout.read_amplification`.

Memory estimates per task (bytes):

- MC block of ``n`` frames: the raw block (native dtype) + a float32 working
  copy + the float32 corrected block, plus per-frame FFT work space: four
  complex64 spectra (template, frame, cross-power, inverse) of the whole frame
  and of all tiles, and two float32 remap fields for pw-rigid.
- Rechunk task: the ``corrected`` column it reads + the ``rechunked`` shard it
  encodes (2x the shard's float32 bytes).
- CNMF patch (read a block of frames at a time, :mod:`caiman_dask.cnmf.frames`): the
  largest of its phases, none of which grows with ``T`` past a cap: the updates (the
  decoded chunks of one block and its float32 pixel rows), the noise estimate (float32
  pixel rows of at most ``NOISE_FRAMES`` frames and ``NOISE_EXTRA`` of spectra) and the
  initialisation (``INIT_COPIES`` float32 copies of the movie averaged into at most
  ``init.max_init_frames`` frames — the data, its residual and its Gaussian-filtered
  copy — and ``INIT_EXTRA`` of float64 energy blocks). The ``K x T`` traces and sparse
  footprints are small beside these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from caiman_dask.chunking import cnmf_block_frames
from caiman_dask.cnmf.param_groups import InitParams
from caiman_dask.errors import ChunkAlignmentError
from caiman_dask.geometry import Tile, patch_axes
from caiman_dask.layout import (
    ReadCost,
    Region,
    StoreLayout,
    human_bytes,
    read_amplification,
    validate_aligned_writes,
)

if TYPE_CHECKING:
    from caiman_dask.plan import ChunkPlan

#: A CNMF patch task's initialisation: float32 copies of its averaged movie, and bytes of
#: float64 energy blocks (measured with tracemalloc; docs/performance.md).
INIT_COPIES = 3
INIT_EXTRA = 16 << 20
#: Frames the noise estimate reads at most (CaImAn's ``max_num_samples_fft``), and
#: bytes of its spectra.
NOISE_FRAMES = 3072
NOISE_EXTRA = 10 << 20
#: Complex64 whole-frame-sized spectra an MC task holds per frame (whole frame and tiles).
MC_FFT_SPECTRA = 4
#: Evenly spaced frames the MC driver reads for the initial template (CaImAn uses ~50).
TEMPLATE_FRAMES = 50


@dataclass(frozen=True)
class AccessStats:
    """Cost of one access pattern over all its tasks.

    Attributes
    ----------
    pattern, store : str
        What is done (``"CNMF patch read"``) and on which store (``"rechunked"``).
    tasks : int
        Tasks (regions) in the pattern.
    chunks_max, read_max, needed_max : int
        Per task maxima: chunks touched, bytes of those chunks, bytes needed.
    read_total, needed_total : int
        Sums over tasks.
    amp_max, amp_mean : float
        Read amplification (read / needed) over tasks.
    memory_max : int or None
        Per-task memory estimate (bytes); None for a write done by a task whose
        memory is counted in its read row.
    """

    pattern: str
    store: str
    tasks: int
    chunks_max: int
    read_max: int
    needed_max: int
    read_total: int
    needed_total: int
    amp_max: float
    amp_mean: float
    memory_max: int | None


def access_stats(
    pattern: str, store: str, layout: StoreLayout, regions: Sequence[Region], *,
    memory: Sequence[int] | None = None,
) -> AccessStats:
    """Summarise :func:`read_amplification` over ``regions`` (one per task)."""
    return _summarise(pattern, store, [read_amplification(layout, r) for r in regions], memory)


def _summarise(
    pattern: str, store: str, costs: Sequence[ReadCost], memory: Sequence[int] | None
) -> AccessStats:
    amps = [c.amplification for c in costs]
    return AccessStats(
        pattern=pattern, store=store, tasks=len(costs),
        chunks_max=max(c.chunks for c in costs),
        read_max=max(c.bytes_read for c in costs),
        needed_max=max(c.bytes_needed for c in costs),
        read_total=sum(c.bytes_read for c in costs),
        needed_total=sum(c.bytes_needed for c in costs),
        amp_max=max(amps), amp_mean=float(np.mean(amps)),
        memory_max=None if memory is None else max(memory),
    )


def mc_block_memory(n_frames: int, frame: tuple[int, int], itemsize: int,
                    tiles: Sequence[Tile]) -> int:
    """Estimate an MC task's memory for ``n_frames`` frames (see module docstring)."""
    pixels = frame[0] * frame[1]
    blocks = n_frames * pixels * (itemsize + 4 + 4)
    tile_pixels = sum(t.shape[0] * t.shape[1] for t in tiles)
    return blocks + MC_FFT_SPECTRA * 8 * (pixels + tile_pixels) + 2 * 4 * pixels


def patch_memory(bytes_read: int, n_frames: int, shape: tuple[int, int], t_chunk: int) -> int:
    """Estimate a CNMF patch task's memory (see module docstring) from the bytes it
    reads in all and the store's time chunk."""
    pixels = shape[0] * shape[1]
    block = min(cnmf_block_frames(pixels, multiple=t_chunk), n_frames)
    updates = bytes_read * block // max(n_frames, 1) + 4 * pixels * block
    noise = 4 * pixels * min(n_frames, NOISE_FRAMES) + NOISE_EXTRA
    init_frames = min(n_frames, InitParams().max_init_frames or n_frames)
    return max(updates, noise, INIT_COPIES * 4 * pixels * init_frames + INIT_EXTRA)


@dataclass(frozen=True)
class PlanReport:
    """A chunk plan's costs: one :class:`AccessStats` per access pattern.

    Attributes
    ----------
    plan : ChunkPlan
    patterns : tuple of AccessStats
        MC read (raw), MC write (corrected), rechunk read/write (when planned),
        CNMF patch read.
    write_conflicts : tuple of str
        Alignment errors of parallel writes (empty when every write is aligned).
    template : ReadCost
        Reading ``TEMPLATE_FRAMES`` evenly spaced raw frames for the initial
        template (one read on the client; each frame costs a whole raw chunk).
    """

    plan: ChunkPlan
    patterns: tuple[AccessStats, ...]
    write_conflicts: tuple[str, ...]
    template: ReadCost

    def pattern(self, name: str) -> AccessStats:
        """Return the stats of the pattern called ``name`` (KeyError if absent)."""
        for stats in self.patterns:
            if stats.pattern == name:
                return stats
        raise KeyError(f"no pattern {name!r}; have {[s.pattern for s in self.patterns]}")

    def stores(self) -> list[tuple[str, StoreLayout]]:
        """``(name, layout)`` of each store in the plan."""
        out = [("raw", self.plan.raw), ("corrected", self.plan.corrected)]
        if self.plan.rechunked is not None:
            out.append(("rechunked", self.plan.rechunked))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the plan, per-store files and per-pattern stats."""
        return {
            "plan": self.plan.to_dict(),
            "files": {name: layout.n_files for name, layout in self.stores()},
            "patterns": [asdict(s) for s in self.patterns],
            "write_conflicts": list(self.write_conflicts),
            "template": {**asdict(self.template), "frames": TEMPLATE_FRAMES},
        }

    def format(self) -> str:
        """Return the report as plain-text tables (grids, stores, patterns, notes)."""
        plan = self.plan
        T, Y, X = plan.raw.shape
        lines = [
            f"movie {T} x {Y} x {X} {plan.raw.dtype} ({human_bytes(plan.raw.nbytes)}; "
            f"float32 {human_bytes(plan.corrected.nbytes)})",
            *_grid_lines(plan), "",
            *_table(_STORE_HEADER, [_store_row(n, lay) for n, lay in self.stores()]), "",
            *_table(_PATTERN_HEADER, [_pattern_row(s) for s in self.patterns]), "",
            *(f"note: {n}" for n in plan.notes),
            f"note: the MC template sample ({TEMPLATE_FRAMES} frames) decodes "
            f"{self.template.chunks} raw chunks: {human_bytes(self.template.bytes_read)} for "
            f"{human_bytes(self.template.bytes_needed)} of frames.",
            *(f"WRITE CONFLICT: {c}" for c in self.write_conflicts),
        ]
        return "\n".join(lines)


def _conflicts(plan: ChunkPlan) -> tuple[str, ...]:
    writes = [("raw", plan.raw, plan.block_regions()),
              ("corrected", plan.corrected, plan.block_regions())]
    if plan.rechunked is not None:
        writes.append(("rechunked", plan.rechunked, plan.rechunk_regions()))
    found = []
    for name, layout, regions in writes:
        try:
            validate_aligned_writes(layout, regions, name=f"the {name} store")
        except ChunkAlignmentError as exc:
            found.append(str(exc))
    return tuple(found)


def report(plan: ChunkPlan) -> PlanReport:
    """Compute a plan's per-task costs for every access pattern.

    Parameters
    ----------
    plan : ChunkPlan

    Returns
    -------
    PlanReport
    """
    T, Y, X = plan.raw.shape
    blocks = plan.block_regions()
    tiles = plan.tiles()
    mc_mem = [mc_block_memory(r[0].stop - r[0].start, (Y, X), plan.raw.itemsize, tiles)
              for r in blocks]
    rows = [
        access_stats("MC read", "raw", plan.raw, blocks, memory=mc_mem),
        access_stats("MC write", "corrected", plan.corrected, blocks),
    ]
    if plan.rechunked is not None:
        regions = plan.rechunk_regions()
        mem = [2 * 4 * math.prod(s.stop - s.start for s in r) for r in regions]
        rows.append(access_stats("rechunk read", "corrected", plan.corrected, regions, memory=mem))
        rows.append(access_stats("rechunk write", "rechunked", plan.rechunked, regions))
    rows.append(_patch_stats(plan))
    return PlanReport(plan=plan, patterns=tuple(rows), write_conflicts=_conflicts(plan),
                      template=template_cost(plan.raw))


def template_cost(raw: StoreLayout, *, n_frames: int = TEMPLATE_FRAMES) -> ReadCost:
    """Cost of reading ``n_frames`` evenly spaced whole frames in one request.

    Frames sharing a chunk share its cost (the chunk is decoded once).
    """
    T = raw.shape[0]
    frames = np.unique(np.linspace(0, T - 1, min(n_frames, T)).astype(int))
    ct = raw.chunks[0]
    groups = np.unique(frames // ct)
    costs = [read_amplification(raw, (slice(g * ct, min((g + 1) * ct, T)),)) for g in groups]
    frame_bytes = math.prod(raw.shape[1:]) * raw.itemsize
    return ReadCost(chunks=sum(c.chunks for c in costs),
                    bytes_read=sum(c.bytes_read for c in costs),
                    bytes_needed=len(frames) * frame_bytes)


def _patch_stats(plan: ChunkPlan) -> AccessStats:
    layout = plan.cnmf_layout
    T = layout.shape[0]
    patches = plan.patches()
    costs = [read_amplification(layout, (slice(0, T), p.y, p.x)) for p in patches]
    mem = [patch_memory(c.bytes_read, T, p.shape, layout.chunks[0])
           for c, p in zip(costs, patches, strict=True)]
    name = "rechunked" if plan.rechunked is not None else "corrected"
    return _summarise("CNMF patch read", name, costs, mem)


_STORE_HEADER = ("store", "dtype", "chunks", "shards", "chunk", "shard", "files")
_PATTERN_HEADER = ("pattern", "store", "tasks", "chunks/task", "read/task", "needed/task",
                   "amp max", "amp mean", "memory/task")


def _grid_lines(plan: ChunkPlan) -> list[str]:
    ys, xs = patch_axes(plan.frame_dims, rf=plan.rf, stride=plan.stride,
                        border_pix=plan.border_pix)
    tiles = plan.tiles()
    ty = len({t.y.start for t in tiles})
    described = (f"{ty} x {len(tiles) // ty} tiles of {tiles[0].shape[0]} x {tiles[0].shape[1]} px"
                 if tiles else "none fit the frame (rigid only)")
    tiles = f"MC tiles: strides {plan.strides}, overlaps {plan.overlaps} -> {described}"
    sizes = sorted({b - a for a, b in plan.time_blocks})
    return [
        f"CNMF patches: rf {plan.rf}, stride {plan.stride}, border_pix {plan.border_pix} -> "
        f"{len(ys)} x {len(xs)} = {len(ys) * len(xs)} patches",
        f"  y starts ({len(ys)}): {_starts(ys)}",
        f"  x starts ({len(xs)}): {_starts(xs)}",
        tiles,
        f"MC time blocks: {len(plan.time_blocks)} (frames per block: "
        f"{', '.join(map(str, sizes))}; num_frames_split {plan.num_frames_split})",
    ]


def _starts(axis: Sequence[slice]) -> str:
    starts = [str(s.start) for s in axis]
    widths = sorted({s.stop - s.start for s in axis})
    shown = starts if len(starts) <= 16 else [*starts[:8], "...", *starts[-4:]]
    return f"{' '.join(shown)} (widths {', '.join(map(str, widths))})"


def _store_row(name: str, layout: StoreLayout) -> tuple[str, ...]:
    return (name, layout.dtype, str(layout.chunks), str(layout.shards),
            human_bytes(layout.chunk_bytes), human_bytes(layout.shard_bytes),
            str(layout.n_files))


def _pattern_row(s: AccessStats) -> tuple[str, ...]:
    memory = "-" if s.memory_max is None else human_bytes(s.memory_max)
    return (s.pattern, s.store, str(s.tasks), str(s.chunks_max), human_bytes(s.read_max),
            human_bytes(s.needed_max), f"{s.amp_max:.3f}", f"{s.amp_mean:.3f}", memory)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]


__all__ = ["AccessStats", "PlanReport", "access_stats", "human_bytes", "report"]
