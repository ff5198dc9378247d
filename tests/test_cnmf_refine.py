"""Patches -> field of view -> merge -> blockwise refinement -> evaluation (pure maths)."""

from __future__ import annotations

import numpy as np
import pytest
from cnmf_synth import make_movie
from scipy import sparse

from caiman_dask.cnmf import (
    CNMFParams,
    assemble_patches,
    block_products,
    evaluate_components,
    finish_spatial,
    fit_patch,
    full_support,
    merge_components,
    spatial_block,
    sum_products,
    temporal,
    temporal_update,
    to_pixels,
)
from caiman_dask.cnmf.temporal import parcels

DIMS = (48, 90)
PARAMS = CNMFParams().replace(init={"K": 10, "gSig": (4, 4)}, data={"fr": 30.0},
                              patch={"only_init": True})


@pytest.fixture(scope="module")
def movie():
    return make_movie(dims=DIMS, T=600, K=12, amplitude=30.0, min_dist=8.0, seed=11)


def _blocks(npix: int, n: int) -> list[np.ndarray]:
    return np.array_split(np.arange(npix), n)


def _refine_round(Yr, A, b, C, f, params, n_blocks):
    nb = b.shape[1]
    Ab = np.concatenate([A.toarray(), b], axis=1)
    mask = full_support(A, DIMS, nb)
    W = np.concatenate([C, f], axis=0)
    rows = _blocks(Yr.shape[0], n_blocks)
    new = np.concatenate([spatial_block(Yr[r], Ab[r], mask[r], W) for r in rows])
    sp_res = finish_spatial(new, DIMS, nb, params)
    Ab = np.concatenate([sp_res.A.toarray(), sp_res.b], axis=1)
    total = sum_products([block_products(Yr[r], Ab[r]) for r in rows])
    return sp_res, temporal_update(total, C[sp_res.kept], f, params)


def test_blockwise_refinement_equals_whole(movie) -> None:
    Yr = to_pixels(movie.Y)
    params = PARAMS.replace(temporal={"p": 1})
    A = movie.A[:, :6] * (1 + 0.1 * np.random.default_rng(0).random(6))
    A = sparse.csc_matrix(A)
    C, b, f = movie.C[:6] * 0.9, movie.b, movie.f
    one = _refine_round(Yr, A, b, C, f, params, n_blocks=1)
    four = _refine_round(Yr, A, b, C, f, params, n_blocks=4)
    np.testing.assert_allclose(four[0].A.toarray(), one[0].A.toarray(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(four[1].C, one[1].C, rtol=1e-4, atol=1e-4 * one[1].C.max())
    again = _refine_round(Yr, A, b, C, f, params, n_blocks=4)
    np.testing.assert_array_equal(again[1].C, four[1].C)


def test_patches_assemble_merge_refine_evaluate(movie) -> None:
    Y, Yr = movie.Y, to_pixels(movie.Y)
    origins = [(0, 0), (0, 40)]
    results = [fit_patch(Y[:, :, c:c + 50], PARAMS) for _, c in origins]
    fov = assemble_patches(results, origins, DIMS, nb=1)
    assert fov.A.shape == (DIMS[0] * DIMS[1], sum(r.A.shape[1] for r in results))
    merged = merge_components(fov.A, fov.C, merge_thr=0.8)
    assert merged.merged, "neurons in the overlap should be found twice and merged"
    params = PARAMS.replace(patch={"only_init": False}, temporal={"p": 2})
    A, C, b, f = merged.A, merged.C, fov.b, fov.f
    for rnd in range(2):  # the documented order: (spatial, temporal, merge) rounds
        sp_res, tr = _refine_round(Yr, A, b, C, f, params, n_blocks=3)
        A, b, C, f = sp_res.A, sp_res.b, tr.C, tr.f
        if rnd == 0:
            again = merge_components(A, C, merge_thr=0.8)
            A, C = again.A, again.C
    ev = evaluate_components(Yr, A, C, b, f, tr.YrA, params)
    good = A.toarray()[:, ev.idx_components]
    good /= np.linalg.norm(good, axis=0)
    truth = movie.A / np.linalg.norm(movie.A, axis=0)
    corr = good.T @ truth
    assert np.all(corr.max(axis=0) >= 0.9), corr.max(axis=0).round(2)
    owners = corr.argmax(axis=1)[corr.max(axis=1) > 0.5]
    assert len(owners) == len(set(owners.tolist())), "a neuron is represented twice"


def _products(movie, K):
    """Exact products of the true footprints (K of them) with the movie, and their traces."""
    Yr = to_pixels(movie.Y)
    Ab = np.concatenate([movie.A[:, :K], movie.b], axis=1)
    return block_products(Yr, Ab), movie.C[:K] * 0.9, movie.f


def test_parcels_are_whole_overlap_clusters(movie) -> None:
    total, _, _ = _products(movie, 12)
    AA = total.AA
    overlap = AA[:12, :12] != 0
    for min_size in (1, 3, 64):
        found = parcels(AA, 12, min_size=min_size)
        assert np.array_equal(np.sort(np.concatenate(found)), np.arange(12))
        label = np.empty(12, int)
        for i, rows in enumerate(found):
            assert np.array_equal(rows, np.sort(rows))
            label[rows] = i
        i, j = np.nonzero(overlap)
        assert np.array_equal(label[i], label[j])  # no overlapping pair is split
    assert len(parcels(AA, 12, min_size=64)) == 1
    assert len(parcels(AA, 12, min_size=1)) > 1  # the test movie has separate clusters


@pytest.mark.parametrize("p", [1, 2])
def test_parcel_sweeps_match_the_whole_field_schedule(movie, monkeypatch, p) -> None:
    params = PARAMS.replace(temporal={"p": p})
    total, C, f = _products(movie, 12)
    one = temporal_update(total, C, f, params)  # one parcel: every colour group in turn
    monkeypatch.setattr(temporal, "MIN_PARCEL", 1)
    jobs_seen: list[int] = []

    def run(jobs):
        jobs_seen.append(len(jobs))
        return temporal.run_serially(jobs)

    many = temporal_update(total, C, f, params, run_sweeps=run)
    assert min(jobs_seen) > 1
    # AR(1): the exact solver, trace by trace. AR(2): the FISTA solver shares its lam
    # bisection across the traces of a batch, so a batch's composition moves each trace
    # within the solver's tolerance.
    tol = 1e-6 if p == 1 else 2e-2
    np.testing.assert_allclose(many.C, one.C, atol=tol * np.abs(one.C).max())
    np.testing.assert_allclose(many.f, one.f, atol=tol * np.abs(one.f).max())
    for a, b in zip(many.C, one.C, strict=True):
        assert np.corrcoef(a, b)[0, 1] > 1 - tol
