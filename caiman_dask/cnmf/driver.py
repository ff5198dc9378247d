"""The CNMF driver: CaImAn's patch grid, merging, refinement and evaluation over zarr.

No maths here: every computation is a call into :mod:`caiman_dask.cnmf`. Stages:

1. parameters checked against the frame (nothing runs before that), the store to read
   chosen and rechunked into ``work_dir`` when the chunk plan asks
   (:mod:`~caiman_dask.cnmf.driver_source`);
2. one task per CaImAn patch (:func:`fit_patch` on the patch's chunks only). Finished
   patches can be handed in (``done_patches``) and each new one is reported as it
   arrives (``on_patch``), so a pipeline can persist them and resume after a crash;
3. assembly over the field of view and merging across patch borders (client);
4. refinement rounds and evaluation in pixel-block tasks
   (:mod:`~caiman_dask.cnmf.driver_refine`).

Results are identical serially and on any number of workers: every reduction runs in
a fixed (patch or block) order.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import scipy.sparse as sp

from caiman_dask import config
from caiman_dask.cnmf._validate import validate_params
from caiman_dask.cnmf.driver_finish import estimates_of, refine_and_evaluate
from caiman_dask.cnmf.driver_refine import evaluate_pass, one_blas_thread, pixel_blocks
from caiman_dask.cnmf.driver_source import RegionFrames, cnmf_plan, prepare_source
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.patch import PatchResult
from caiman_dask.engines import DEFAULT_ENGINE, get_engine
from caiman_dask.errors import ParameterError
from caiman_dask.geometry import Patch
from caiman_dask.movie.ref import ArrayRef
from caiman_dask.movie.zarrio import open_store
from caiman_dask.plan import ChunkPlan
from caiman_dask.progress import Progress
from caiman_dask.results.estimates import Estimates
from caiman_dask.system import releases_memory
from caiman_dask.view.base import BaseView


@dataclass(frozen=True)
class PatchTask:
    """One CaImAn patch: its index and frame slices, and the store to read it from."""

    index: int
    y: slice
    x: slice
    source: ArrayRef
    engine: str = DEFAULT_ENGINE

    @property
    def label(self) -> str:
        """How errors name this task (e.g. a worker killed by it): CaImAn's patch index."""
        return (f"CNMF patch {self.index} (rows {self.y.start}:{self.y.stop}, "
                f"cols {self.x.start}:{self.x.stop})")


@dataclass(frozen=True)
class PatchDone:
    """What a patch task returns: the patch index, its estimates and seconds spent."""

    index: int
    result: PatchResult
    seconds: float


@dataclass(frozen=True)
class CNMFResult:
    """Estimates of a CNMF run and how it went.

    Attributes
    ----------
    estimates : Estimates
        Full-field components (A unit-norm, F-order pixels), evaluated.
    params : CNMFParams
        The parameters used (``data.fr`` filled from the store when not given).
    source : str
        The store the tasks read (the input or its rechunked copy).
    patches : tuple of Patch
        CaImAn's patch grid.
    computed : tuple of int
        Patches computed by this call (not taken from ``done_patches``).
    n_candidates, n_merged : int
        Components from the patches, and after merging across borders.
    timings : dict
        Wall seconds per stage (rechunk, patches, merge, refine, evaluate).
    """

    estimates: Estimates
    params: CNMFParams
    source: str
    patches: tuple[Patch, ...]
    computed: tuple[int, ...]
    n_candidates: int
    n_merged: int
    timings: dict[str, float] = field(default_factory=dict)


@releases_memory
@one_blas_thread
def fit_patch_task(item: tuple[PatchTask, CNMFParams]) -> PatchDone:
    """Task: run CNMF on one patch, read from the store a block of frames at a time."""
    task, params = item
    start = time.perf_counter()
    try:
        frames = RegionFrames(task.source, task.y, task.x)
        result = get_engine(task.engine).fit_patch(frames, params)
    except Exception as exc:
        exc.add_note(f"caiman-dask: CNMF patch {task.index} (rows {task.y.start}:{task.y.stop},"
                     f" cols {task.x.start}:{task.x.stop})")
        raise
    return PatchDone(task.index, result, time.perf_counter() - start)


def resolve_params(params: CNMFParams | Mapping[str, Any], fr: float | None) -> CNMFParams:
    """CNMFParams from a CaImAn dict; the store's frame rate fills a missing ``data.fr``."""
    if isinstance(params, CNMFParams):
        return params
    params = {k: dict(v) if isinstance(v, Mapping) else v for k, v in params.items()}
    if fr is not None and "fr" not in params.get("data", {}):
        params.setdefault("data", {})["fr"] = fr
    return CNMFParams.from_dict(params)


def patch_grid_of(plan_patches: list[Patch], params: CNMFParams,
                  dims: tuple[int, int]) -> list[Patch]:
    """CaImAn's patches, or the whole frame as one patch when ``rf`` is None."""
    if params.patch.rf is None:
        return [Patch(0, slice(0, dims[0]), slice(0, dims[1]))]
    return plan_patches


def run_patches(tasks: list[PatchTask], params: CNMFParams, view: BaseView, *,
                done: Mapping[int, PatchResult],
                on_patch: Callable[[int, PatchResult], None] | None) -> dict[int, PatchResult]:
    """Run the patches not in ``done``; report each through ``on_patch`` as it lands."""
    results = dict(done)
    todo = [(task, params) for task in tasks if task.index not in done]
    with Progress("cnmf patches", total=len(tasks)) as progress:
        progress.advance(len(tasks) - len(todo))
        for out in view.imap_unordered(fit_patch_task, todo):
            results[out.index] = out.result
            if on_patch is not None:
                on_patch(out.index, out.result)
            progress.advance()
    return results


def _check_done(done: Mapping[int, PatchResult], patches: list[Patch]) -> None:
    for index, result in done.items():
        if not 0 <= index < len(patches) or tuple(result.dims) != patches[index].shape:
            raise ParameterError(f"done_patches[{index}] does not belong to this run's patch "
                                 f"grid ({len(patches)} patches): recompute it (drop it from "
                                 "done_patches) or use the parameters it was computed with")


def fit_cnmf(store: str, *, params: CNMFParams | Mapping[str, Any], view: BaseView,
             storage_options: dict[str, Any] | None = None, work_dir: str | None = None,
             done_patches: Mapping[int, PatchResult] | None = None,
             on_patch: Callable[[int, PatchResult], None] | None = None,
             engine: str | None = None) -> CNMFResult:
    """Run CNMF on a caiman-dask store: patches, merge, refinement, evaluation.

    Parameters
    ----------
    store : str
        Path or URL of a complete caiman-dask store (raw, corrected or rechunked).
    params : CNMFParams or dict
        CaImAn's parameter groups; ``data.fr`` defaults to the store's frame rate.
    view : BaseView
        Where tasks run: the dview of ``setup_cluster`` or a ``SerialView``.
    storage_options : dict, optional
        fsspec options for URLs.
    work_dir : str, optional
        Path or URL for the rechunked copy (kept and reused); default a temporary
        local directory removed at the end (fine for clusters on this machine).
    done_patches : mapping of int to PatchResult, optional
        Patch results from an earlier call with the same store and parameters; these
        patches are not recomputed.
    on_patch : callable, optional
        ``on_patch(index, result)`` on the client as each new patch finishes (persist it).
    engine : {"builtin", "caiman"}, optional
        Whose maths fits each patch (default: config ``caiman-dask.engine``, "builtin");
        "caiman" runs CaImAn's own ``CNMF.fit`` on each patch array.

    Returns
    -------
    CNMFResult

    Raises
    ------
    ParameterError
        Invalid parameters for this frame (before any task runs), or ``done_patches``
        that do not fit the patch grid.
    """
    engine = get_engine(config.get("engine", engine)).name  # fails here if unavailable
    movie = open_store(store, storage_options=storage_options)
    params = resolve_params(params, movie.metadata.fr)
    dims = (int(movie.shape[1]), int(movie.shape[2]))
    validate_params(params, dims)
    plan = cnmf_plan(movie, params)
    patches = patch_grid_of(plan.patches(), params, dims)
    _check_done(done_patches or {}, patches)
    run = _Run(store=store, shape=tuple(movie.shape), params=params, plan=plan,
               patches=patches, storage_options=storage_options, engine=engine)
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="caiman-dask-cnmf-") as tmp:
            return _fit(run, view=view, work_dir=tmp, done=done_patches or {},
                        on_patch=on_patch)
    return _fit(run, view=view, work_dir=work_dir, done=done_patches or {}, on_patch=on_patch)


@dataclass(frozen=True)
class _Run:
    """What one fit_cnmf call works on (resolved before any task runs)."""

    store: str
    shape: tuple[int, ...]
    params: CNMFParams
    plan: ChunkPlan
    patches: list[Patch]
    storage_options: dict[str, Any] | None
    engine: str = DEFAULT_ENGINE


def _fit(run: _Run, *, view: BaseView, work_dir: str, done: Mapping[int, PatchResult],
         on_patch: Callable[[int, PatchResult], None] | None) -> CNMFResult:
    store, shape, params, plan = run.store, run.shape, run.params, run.plan
    patches, storage_options = run.patches, run.storage_options
    timings: dict[str, float] = {}
    start = time.perf_counter()
    source = prepare_source(store, plan, view=view, work_dir=work_dir,
                            storage_options=storage_options)
    timings["rechunk"] = time.perf_counter() - start
    ref = ArrayRef(source, storage_options)
    tasks = [PatchTask(p.index, p.y, p.x, ref, run.engine) for p in patches]
    patch_params = params.replace(init={"nb": params.patch.nb_patch})
    start = time.perf_counter()
    results = run_patches(tasks, patch_params, view, done=done, on_patch=on_patch)
    timings["patches"] = time.perf_counter() - start
    ordered = [results[p.index] for p in patches]
    origins = [(p.y.start, p.x.start) for p in patches]
    blocks = pixel_blocks(ref, tuple(shape), tuple(ref.open().chunks))
    final = refine_and_evaluate(ordered, origins, blocks, params, view, timings)
    return CNMFResult(estimates=estimates_of(final, (shape[1], shape[2])), params=params,
                      source=source, patches=tuple(patches),
                      computed=tuple(sorted(set(results) - set(done))),
                      n_candidates=final.n_candidates, n_merged=final.n_merged,
                      timings=timings)


def evaluate_estimates(store: str, estimates: Estimates, *,
                       params: CNMFParams | Mapping[str, Any], view: BaseView, work_dir: str,
                       storage_options: dict[str, Any] | None = None) -> Estimates:
    """Evaluate fitted components again with ``params.quality`` (CaImAn's
    ``evaluate_components``): pixel-block tasks over the store CNMF read.

    Parameters
    ----------
    store : str
        The store given to :func:`fit_cnmf`.
    estimates : Estimates
        Its results (footprints unit-norm, as :func:`fit_cnmf` returns them).
    params : CNMFParams or dict
        Parameters; only ``quality`` and ``data`` matter here.
    view : BaseView
        Where the block tasks run.
    work_dir : str
        The ``work_dir`` of the fit (its rechunked copy is reused).
    storage_options : dict, optional
        fsspec options for URLs.

    Returns
    -------
    Estimates
        ``estimates`` with new ``idx_components``, ``idx_components_bad``, ``SNR_comp``
        and ``r_values`` (identical to a fit evaluated with these thresholds).
    """
    movie = open_store(store, storage_options=storage_options)
    params = resolve_params(params, movie.metadata.fr)
    source = prepare_source(store, cnmf_plan(movie, params), view=view, work_dir=work_dir,
                            storage_options=storage_options)
    ref = ArrayRef(source, storage_options)
    blocks = pixel_blocks(ref, tuple(movie.shape), tuple(ref.open().chunks))
    e = estimates
    ev = evaluate_pass(blocks, sp.csc_matrix(e.A), e.b, e.C, e.f, e.YrA, params, view)
    return dataclasses.replace(e, idx_components=ev.idx_components,
                               idx_components_bad=ev.idx_components_bad,
                               SNR_comp=ev.SNR_comp, r_values=ev.r_values)
