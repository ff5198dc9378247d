"""The motion-correction driver: one task per time block over zarr stores.

No maths here: tasks call an engine's ``register_block`` (built-in:
:func:`caiman_dask.motion.correct_block`). The driver reads
the template sample, runs CaImAn's passes (``niter_rig`` rigid passes, each ending in
the median of the blocks' mean images, then a piecewise-rigid pass when ``pw_rigid``),
writes the last pass into the corrected store laid out by the chunk plan (block writes
never share a shard) and records shifts, template and flags beside the movie.

Client memory is bounded: only the mean images of at most :data:`MAX_TEMPLATE_BLOCKS`
evenly spaced blocks come back for the next template (CaImAn takes the median of every
block's mean; movies of up to that many blocks get exactly that), the rest of each block's
summary is O(frames) numbers. The corrected store's codec is the
``caiman-dask.store.corrected-codec`` setting (default uncompressed, docs/motion.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from caiman_dask import config
from caiman_dask.engines import DEFAULT_ENGINE, get_engine
from caiman_dask.errors import MovieError, ParameterError
from caiman_dask.motion.driver_io import BlockReader, write_block
from caiman_dask.motion.params import MotionParams
from caiman_dask.motion.template import meta_template, rigid_template, template_indices
from caiman_dask.movie.model import Movie
from caiman_dask.movie.ref import ArrayRef
from caiman_dask.movie.store import (
    check_disk_full,
    create_store,
    finish_store,
    prepare_destination,
)
from caiman_dask.movie.writer import BlockWritten
from caiman_dask.movie.zarrio import ATTRS_KEY, corrected_codecs, open_store
from caiman_dask.plan import ChunkPlan, plan_chunks, validate_aligned_writes
from caiman_dask.progress import Progress
from caiman_dask.view.base import BaseView

MAX_TEMPLATE_BLOCKS = 64  # block means kept for the next template: O(1) frames in the client


@dataclass(frozen=True)
class BlockTask:
    """One block of frames ``[start, stop)`` to correct; ``dest`` None: a template pass.

    ``keep_mean``: return the block's mean image (an input of the next template).
    """

    index: int
    start: int
    stop: int
    source: ArrayRef
    dest: ArrayRef | None
    keep_mean: bool = True
    engine: str = DEFAULT_ENGINE


@dataclass(frozen=True)
class BlockSummary:
    """What a block task returns: everything but the corrected frames (and the mean image
    unless the task keeps it)."""

    index: int
    rigid_shifts: np.ndarray
    pw_shifts: np.ndarray | None
    mean_image: np.ndarray | None
    flags: np.ndarray
    offset: float
    written: BlockWritten | None


@dataclass(frozen=True)
class MotionResult:
    """The corrected store and what was found.

    Attributes
    ----------
    path : str
        The corrected zarr store (float32, laid out by ``plan.corrected``).
    template : ndarray
        (Y, X) final template (median of the last pass's block means).
    rigid_shifts : ndarray
        (T, 2) shifts applied per frame, (rows, columns).
    pw_shifts : ndarray or None
        (T, ty, tx, 2) tile shifts of the piecewise-rigid pass.
    flags : ndarray
        (T,) per-frame flags (flat, non-finite, at the shift bound).
    offset : float
        ``nonneg_movie`` offset added to the corrected movie.
    """

    path: str
    template: np.ndarray
    rigid_shifts: np.ndarray
    pw_shifts: np.ndarray | None
    flags: np.ndarray
    offset: float


def correct_store_block(item: tuple[BlockTask, np.ndarray, MotionParams]) -> BlockSummary:
    """Task: read one block (overlapping its registration), correct it, write it if asked,
    return the small results."""
    task, template, params = item
    with BlockReader(task.source.open(), task.start, task.stop) as reader:
        register = get_engine(task.engine).register_block
        result = register(reader.frames, template, params, ready=reader.wait)
    written = None
    if task.dest is not None:
        write_block(task.dest.open(write=True), task.start, task.stop, result.corrected)
        written = BlockWritten((task.start,), (task.stop,), int(result.corrected.nbytes))
    mean = result.mean_image if task.keep_mean else None
    return BlockSummary(task.index, result.rigid_shifts, result.pw_shifts, mean,
                        result.flags, result.offset, written)


def read_frames(item: tuple[ArrayRef, np.ndarray]) -> np.ndarray:
    """Task: the frames at sorted ``indices`` of one stretch of the movie."""
    ref, indices = item
    array = ref.open()
    return array[int(indices[0]) : int(indices[-1]) + 1][indices - indices[0]]


def read_sample(movie_ref: ArrayRef, n_frames: int, time_chunk: int,
                view: BaseView) -> np.ndarray:
    """CaImAn's template sample: ~50 evenly spaced frames, read one time chunk per task."""
    indices = template_indices(n_frames)
    groups = [indices[indices // time_chunk == c] for c in np.unique(indices // time_chunk)]
    return np.concatenate(view.map(read_frames, [(movie_ref, g) for g in groups], 1))


def with_min_mov(params: MotionParams, sample: np.ndarray) -> MotionParams:
    """Fix ``min_mov`` once per movie (from the template sample), so every block gets the
    same ``nonneg_movie`` offset; CaImAn takes the minimum of the first 400 frames."""
    if not params.nonneg_movie or params.min_mov is not None:
        return params
    finite = sample[np.isfinite(sample)]
    return params.replace(min_mov=float(finite.min()) if finite.size else 0.0)


def check_finite(sample: np.ndarray, source: str) -> None:
    """Refuse a movie whose template sample holds NaN, inf, or values so large that the
    float32 registration overflows (CNMF would refuse them later, after a long stage)."""
    bad = ~np.isfinite(sample)
    if bad.any():
        raise MovieError(f"{source}: {int(bad.sum())} of {sample.size} sampled pixels are NaN "
                         "or inf; replace them (e.g. with the frame's median) before motion "
                         "correction, or run without it (motion=False / --no-motion)")
    limit = 1e18 / max(1, sample[0].size)  # float32 spectra products overflow above it
    top = float(np.abs(sample).max()) if sample.size else 0.0
    if top > limit:
        raise MovieError(f"{source}: pixel values up to {top:.3g} overflow the float32 "
                         f"registration (limit {limit:.3g} for this frame size); rescale the "
                         "movie, e.g. to photon counts")


def plan_for(movie: Movie, params: MotionParams, plan: ChunkPlan | None) -> ChunkPlan:
    """The plan the store was converted with, re-planned if the motion grid changed."""
    if plan is None:
        stored = movie.metadata.plan
        if stored is None:
            raise MovieError("the input store has no chunk plan: convert it with "
                             "caiman_dask.movie.to_zarr(chunks='auto') first")
        plan = ChunkPlan.from_dict(stored)
    if (plan.num_frames_split, tuple(plan.strides), tuple(plan.overlaps)) == (
            params.num_frames_split, tuple(params.strides), tuple(params.overlaps)):
        return plan
    return plan_chunks(movie.shape, str(movie.dtype), rf=plan.rf, stride=plan.stride,
                       border_pix=plan.border_pix, num_frames_split=params.num_frames_split,
                       strides=params.strides, overlaps=params.overlaps)


def run_pass(tasks: list[BlockTask], template: np.ndarray, params: MotionParams,
             view: BaseView, label: str) -> list[BlockSummary]:
    """Map the block tasks over the view, with progress; summaries in block order."""
    items = [(task, template, params) for task in tasks]
    summaries: list[BlockSummary] = []
    with Progress(label, total=len(tasks)) as progress:
        for summary in view.imap_unordered(correct_store_block, items):
            summaries.append(summary)
            progress.advance()
    return sorted(summaries, key=lambda s: s.index)


def motion_correct(source: str, dest: str, *, params: MotionParams | dict[str, Any],
                   view: BaseView, plan: ChunkPlan | None = None,
                   storage_options: dict[str, Any] | None = None,
                   overwrite: bool = False, engine: str | None = None) -> MotionResult:
    """Motion-correct a caiman-dask store into a new corrected store.

    Parameters
    ----------
    source : str
        Path or URL of a caiman-dask store (``caiman_dask.movie.to_zarr``).
    dest : str
        Path or URL of the corrected store to create.
    params : MotionParams or dict
        CaImAn's ``motion`` group.
    view : BaseView
        Where tasks run: the dview from ``setup_cluster`` or a ``SerialView``.
    plan : ChunkPlan, optional
        Chunk plan; default the one recorded at conversion (re-planned if the
        motion grid differs).
    storage_options : dict, optional
        fsspec options for URLs.
    overwrite : bool
        Replace ``dest`` if it is a caiman-dask store.
    engine : {"builtin", "caiman"}, optional
        Whose maths registers each block (default: config ``caiman-dask.engine``);
        "caiman" runs CaImAn's ``tile_and_correct`` per frame. The template is ours.

    Returns
    -------
    MotionResult
    """
    engine = get_engine(config.get("engine", engine)).name  # fails here if unavailable
    params = params if isinstance(params, MotionParams) else MotionParams.from_dict(params)
    movie = open_store(source, storage_options=storage_options)
    if movie.data.ndim != 3:
        raise ParameterError(f"{source}: motion correction takes (T, Y, X) movies, this one "
                             f"is {movie.shape}")
    params.validate(movie.shape[1:])
    plan = plan_for(movie, params, plan)
    tasks_src = ArrayRef(source, storage_options)
    sample = read_sample(tasks_src, movie.shape[0], movie.data.chunksize[0], view)
    origin = movie.metadata.sources  # name the user's file, not our raw.zarr copy of it
    check_finite(sample, f"{origin[0].path} (as {source})" if origin else source)
    params = with_min_mov(params, sample)
    template = rigid_template(sample, params)
    prepare_destination(dest, storage_options, overwrite=overwrite)
    attrs = corrected_attrs(source, storage_options, plan, params)
    group, _ = create_store(dest, storage_options, plan.corrected, attrs,
                            compressors=corrected_codecs())
    regions = [(slice(a, b),) + (slice(None),) * 2 for a, b in plan.time_blocks]
    validate_aligned_writes(plan.corrected, regions, name="motion-correction blocks")
    dest_ref = ArrayRef(dest, storage_options)
    try:
        summaries, template = _passes(plan, tasks_src, dest_ref, template, params, view, engine)
    except OSError as exc:
        check_disk_full(exc, dest, "run motion correction again with overwrite=True")
        raise
    result = _result(dest, template, summaries)
    _record(group, result)
    attrs["motion"]["offset"] = result.offset
    finish_store(group, attrs, [s.written for s in summaries],
                 expected=int(np.prod(movie.shape)) * 4)
    return result


def _passes(plan: ChunkPlan, source: ArrayRef, dest: ArrayRef, template: np.ndarray,
            params: MotionParams, view: BaseView,
            engine: str) -> tuple[list[BlockSummary], np.ndarray]:
    rigid = params.replace(pw_rigid=False)
    passes = [(rigid, f"motion rigid {i + 1}/{params.niter_rig}") for i in range(params.niter_rig)]
    if params.pw_rigid:
        passes.append((params, "motion pw-rigid"))
    for number, (pass_params, label) in enumerate(passes):
        last = number == len(passes) - 1
        tasks = block_tasks(plan.time_blocks, source, dest if last else None, engine=engine)
        summaries = run_pass(tasks, template, pass_params, view, label)
        template = meta_template([s.mean_image for s in summaries if s.mean_image is not None])
    return summaries, template


def block_tasks(blocks: tuple[tuple[int, int], ...] | list[tuple[int, int]], source: ArrayRef,
                dest: ArrayRef | None, *, max_means: int = MAX_TEMPLATE_BLOCKS,
                engine: str = DEFAULT_ENGINE) -> list[BlockTask]:
    """One task per block; at most ``max_means`` evenly spaced ones keep their mean image."""
    keep = set(template_indices(len(blocks), n_samples=max_means).tolist())
    return [BlockTask(i, a, b, source, dest, keep_mean=i in keep, engine=engine)
            for i, (a, b) in enumerate(blocks)]


def _result(dest: str, template: np.ndarray, summaries: list[BlockSummary]) -> MotionResult:
    pw = [s.pw_shifts for s in summaries]
    return MotionResult(
        path=dest, template=template,
        rigid_shifts=np.concatenate([s.rigid_shifts for s in summaries]),
        pw_shifts=None if pw[0] is None else np.concatenate(pw),
        flags=np.concatenate([s.flags for s in summaries]),
        offset=summaries[0].offset,
    )


def corrected_attrs(source: str, storage_options: dict[str, Any] | None, plan: ChunkPlan,
                     params: MotionParams) -> dict[str, Any]:
    attrs = dict(zarr.open_group(ArrayRef(source, storage_options).open().store, mode="r")
                 .attrs[ATTRS_KEY])
    layout = plan.corrected
    attrs.update({"dtype": layout.dtype, "layout": layout.to_dict(), "plan": plan.to_dict(),
                  "complete": False, "motion": {"source": source, "params": params.to_dict()}})
    return attrs


def _record(group: zarr.Group, result: MotionResult) -> None:
    """Store shifts, template and flags beside the corrected movie."""
    arrays = {"template": result.template, "rigid_shifts": result.rigid_shifts,
              "flags": result.flags}
    if result.pw_shifts is not None:
        arrays["pw_shifts"] = result.pw_shifts
    for name, data in arrays.items():
        group.create_array(name, data=np.ascontiguousarray(data), overwrite=True)
