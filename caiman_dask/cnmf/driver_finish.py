"""From patch results to evaluated full-field estimates (driver, no maths).

Assembly and merging across patch borders run on the client; refinement rounds and
evaluation map pixel-block tasks (:mod:`~caiman_dask.cnmf.driver_refine`). The order
follows :mod:`caiman_dask.cnmf.refine`: merge, round, merge, round, evaluate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from caiman_dask.cnmf.assemble import assemble_noise, assemble_patches
from caiman_dask.cnmf.driver_refine import (
    Factors,
    PixelBlock,
    evaluate_pass,
    refine_round,
    temporal_pass,
)
from caiman_dask.cnmf.evaluate import Evaluation
from caiman_dask.cnmf.merge import merge_components
from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.cnmf.patch import PatchResult
from caiman_dask.cnmf.refine import normalize_components
from caiman_dask.cnmf.temporal import TemporalResult
from caiman_dask.results.estimates import Estimates
from caiman_dask.view.base import BaseView

#: Refinement rounds (spatial + temporal), each followed by a merge.
ROUNDS = 2


@dataclass(frozen=True)
class Final:
    """Refined, normalised and evaluated components of the whole field of view."""

    A: sp.csc_matrix
    b: np.ndarray
    temporal: TemporalResult
    sn: np.ndarray
    evaluation: Evaluation
    n_candidates: int
    n_merged: int


def _merged(model: Factors, params: CNMFParams) -> Factors:
    if not params.merging.do_merge or model.A.shape[1] < 2:
        return model
    merged = merge_components(model.A, model.C, merge_thr=params.merging.merge_thr,
                              duplicate_thr=params.merging.duplicate_thr)
    return Factors(A=merged.A, b=model.b, C=merged.C, f=model.f)


def _refine(model: Factors, blocks: list[PixelBlock], dims: tuple[int, int],
            params: CNMFParams, view: BaseView) -> tuple[sp.csc_matrix, np.ndarray,
                                                         TemporalResult]:
    if params.patch.skip_refinement:
        tr = temporal_pass(blocks, model.A, model.b, model.C, model.f, params, view,
                           "cnmf temporal")
        return model.A, model.b, tr
    for rnd in range(1, ROUNDS + 1):
        A, b, tr = refine_round(blocks, model, dims, params, view, f"cnmf round {rnd}")
        model = _merged(Factors(A=A, b=b, C=tr.C, f=tr.f), params)
    if model.A.shape[1] == A.shape[1]:
        return A, b, tr
    # the last merge changed components: their traces need a last temporal update (a
    # spatial one could let two footprints drift onto one neuron again)
    tr = temporal_pass(blocks, model.A, b, model.C, tr.f, params, view, "cnmf temporal")
    return model.A, b, tr


def refine_and_evaluate(results: Sequence[PatchResult], origins: Sequence[tuple[int, int]],
                        blocks: list[PixelBlock], params: CNMFParams, view: BaseView,
                        timings: dict[str, float]) -> Final:
    """Assemble, merge, refine over the full field and evaluate; fills ``timings``."""
    T, d1, d2 = blocks[0].source.open().shape
    dims = (int(d1), int(d2))
    start = time.perf_counter()
    fov = assemble_patches(results, origins, dims, nb=params.init.nb)
    model = _merged(Factors(A=fov.A, b=fov.b, C=fov.C, f=fov.f), params)
    timings["merge"] = time.perf_counter() - start
    n_candidates, n_merged = fov.A.shape[1], model.A.shape[1]
    start = time.perf_counter()
    A, b, tr = _refine(model, blocks, dims, params, view)
    A, tr = normalize_components(A, tr)
    timings["refine"] = time.perf_counter() - start
    start = time.perf_counter()
    evaluation = evaluate_pass(blocks, A, b, tr.C, tr.f, tr.YrA, params, view)
    timings["evaluate"] = time.perf_counter() - start
    return Final(A=A, b=b, temporal=tr, sn=assemble_noise(results, origins, dims),
                 evaluation=evaluation, n_candidates=n_candidates, n_merged=n_merged)


def estimates_of(final: Final, dims: tuple[int, int]) -> Estimates:
    """The run's :class:`Estimates` (CaImAn's names)."""
    tr, ev = final.temporal, final.evaluation
    return Estimates(A=sp.csc_matrix(final.A), dims=(int(dims[0]), int(dims[1])), C=tr.C,
                     S=tr.S, b=np.asarray(final.b), f=tr.f, YrA=tr.YrA, g=tr.g, sn=final.sn,
                     bl=tr.bl, c1=tr.c1, neurons_sn=tr.neurons_sn,
                     idx_components=ev.idx_components,
                     idx_components_bad=ev.idx_components_bad, SNR_comp=ev.SNR_comp,
                     r_values=ev.r_values)
