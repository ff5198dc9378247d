"""fit_cnmf over a zarr store on a real 2-worker cluster: accuracy, determinism, resume."""

from __future__ import annotations

import argparse
import functools
import pathlib

import numpy as np
import pytest
import scipy.sparse as sp
import tifffile
from cnmf_synth import make_movie
from estimates_check import assert_identical

import caiman_dask
from caiman_dask.cli import cnmf as cnmf_cli
from caiman_dask.cnmf import (
    CNMFParams,
    block_products,
    driver_refine,
    temporal,
    temporal_update,
    to_pixels,
)
from caiman_dask.cnmf.driver import evaluate_estimates, fit_cnmf
from caiman_dask.cnmf.driver_refine import BLOCK_BYTES, MIN_BLOCKS, pixel_blocks
from caiman_dask.cnmf.temporal import parcels
from caiman_dask.errors import ParameterError
from caiman_dask.movie import to_zarr
from caiman_dask.results import load_estimates, save_estimates, score
from caiman_dask.view import SerialView

DIMS, T, K_TRUE = (96, 96), 800, 24
PARAMS = {"data": {"fr": 30.0, "decay_time": 0.4},
          "patch": {"rf": 20, "stride": 8, "only_init": False},
          "init": {"K": 10, "gSig": [4, 4]}, "temporal": {"p": 2}}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    """24 neurons (some crossing patch borders), neuropil, Poisson-Gaussian noise."""
    folder = tmp_path_factory.mktemp("cnmf_driver")
    movie = make_movie(dims=DIMS, T=T, K=K_TRUE, amplitude=30.0, min_dist=8.0, seed=1)
    tifffile.imwrite(folder / "movie.tif", movie.Y)
    store = str(folder / "movie.zarr")
    to_zarr(str(folder / "movie.tif"), store, rf=20, stride=8, fr=30.0)
    return movie, store, folder


@pytest.fixture(scope="module")
def fitted(synth, dask_cluster):
    """The fit on the 2-worker cluster, with every patch result recorded by ``on_patch``."""
    _, store, folder = synth
    seen: dict = {}
    result = fit_cnmf(store, params=PARAMS, view=dask_cluster[1], work_dir=str(folder / "w2"),
                      on_patch=lambda i, r: seen.__setitem__(i, r))
    return result, seen


def _unit(M: np.ndarray) -> np.ndarray:
    return M / np.linalg.norm(M, axis=0, keepdims=True)


def test_finds_the_neurons_without_border_duplicates(synth, fitted) -> None:
    movie, _, _ = synth
    est = fitted[0].estimates
    strong = np.flatnonzero(movie.snr >= 5)
    accepted = est.A[:, est.idx_components]
    found = score(accepted, sp.csc_matrix(movie.A[:, strong]), criterion="centroid",
                  dims=DIMS)
    assert found.f1 >= 0.95, found.as_dict()
    for i, j in found.pairs:  # matched: footprint and trace agree with the truth
        k, t = est.idx_components[i], strong[j]
        a = accepted[:, i].toarray().ravel()
        assert np.corrcoef(a, movie.A[:, t])[0, 1] >= 0.9
        assert np.corrcoef(est.C[k], movie.C[t])[0, 1] >= 0.9
    overlap = _unit(accepted.toarray()).T @ _unit(movie.A)
    per_truth = (overlap > 0.5).sum(axis=0)
    assert per_truth.max() == 1, "a neuron was found twice (duplicate across patches)"
    assert fitted[0].n_candidates > fitted[0].n_merged >= est.A.shape[1]


def test_serial_one_and_two_workers_agree(synth, fitted) -> None:
    _, store, folder = synth
    view = SerialView()
    try:
        serial = fit_cnmf(store, params=PARAMS, view=view, work_dir=str(folder / "ws"))
    finally:
        view.shutdown()
    assert_identical(serial.estimates, fitted[0].estimates)  # view/align.py
    client, dview, _ = caiman_dask.setup_cluster(n_processes=1, threads_per_worker=1,
                                                 memory_limit="2GB")
    try:
        one = fit_cnmf(store, params=PARAMS, view=dview, work_dir=str(folder / "w1"))
    finally:
        caiman_dask.stop_server(dview)
    assert_identical(one.estimates, fitted[0].estimates)


def test_evaluation_alone_repeats_the_fits_decisions(synth, fitted, dask_cluster) -> None:
    """The pipeline's evaluate stage: same thresholds, same decisions (r-values to the
    last bits: sparse products of the stored footprints sum in another order); stricter,
    fewer."""
    _, store, folder = synth
    estimates = fitted[0].estimates
    work = str(folder / "w2")
    same = evaluate_estimates(store, estimates, params=PARAMS, view=dask_cluster[1],
                              work_dir=work)
    np.testing.assert_array_equal(same.idx_components, estimates.idx_components)
    np.testing.assert_array_equal(same.idx_components_bad, estimates.idx_components_bad)
    np.testing.assert_allclose(same.r_values, estimates.r_values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(same.SNR_comp, estimates.SNR_comp, rtol=1e-12)
    strict = {**PARAMS, "quality": {"min_SNR": 8.0, "rval_thr": 0.95}}
    fewer = evaluate_estimates(store, estimates, params=strict, view=dask_cluster[1],
                               work_dir=work)
    assert 0 < len(fewer.idx_components) < len(estimates.idx_components)
    np.testing.assert_array_equal(fewer.C, estimates.C)


def test_resume_recomputes_no_finished_patch(synth, fitted, dask_cluster) -> None:
    _, store, folder = synth
    result, seen = fitted
    assert sorted(seen) == list(range(len(result.patches))) == list(result.computed)
    calls: list[int] = []
    again = fit_cnmf(store, params=PARAMS, view=dask_cluster[1], work_dir=str(folder / "w2"),
                     done_patches=seen, on_patch=lambda i, r: calls.append(i))
    assert calls == [] and again.computed == ()
    assert_identical(again.estimates, result.estimates)
    partial = {i: r for i, r in seen.items() if i % 2}
    third = fit_cnmf(store, params=PARAMS, view=dask_cluster[1], work_dir=str(folder / "w2"),
                     done_patches=partial)
    assert set(third.computed) == set(seen) - set(partial)
    assert_identical(third.estimates, result.estimates)


def test_hdf5_round_trip_is_lossless(fitted, tmp_path: pathlib.Path) -> None:
    result = fitted[0]
    path = save_estimates(tmp_path / "out.h5", result.estimates, result.params.to_dict())
    loaded, params = load_estimates(path)
    assert_identical(loaded, result.estimates)
    assert loaded.dims == DIMS and params["init"]["K"] == 10


@pytest.mark.parametrize("change, name", [
    ({"patch": {"rf": 70}}, "patch.rf"),
    ({"patch": {"stride": 40}}, "patch.stride"),
    ({"init": {"K": 0}}, "init.K"),
    ({"init": {"gSig": [21, 21]}}, "init.gSig"),
])
def test_bad_parameters_are_refused_before_any_task(synth, tmp_path, change, name) -> None:
    _, store, _ = synth
    params = {g: {**PARAMS.get(g, {}), **change.get(g, {})} for g in {*PARAMS, *change}}
    work = tmp_path / "work"
    with pytest.raises(ParameterError, match=name.replace(".", r"\.")):
        fit_cnmf(store, params=params, view=SerialView(), work_dir=str(work))
    assert not work.exists()


def test_done_patches_from_another_grid_are_refused(synth, fitted) -> None:
    _, store, _ = synth
    wrong = {0: fitted[1][len(fitted[1]) - 1]}  # the last patch is narrower than the first
    with pytest.raises(ParameterError, match="done_patches"):
        fit_cnmf(store, params=PARAMS, view=SerialView(), done_patches=wrong)


def test_cli_refuses_bad_params_clearly(synth, tmp_path) -> None:
    _, store, _ = synth
    (tmp_path / "p.json").write_text('{"init": {"K": 0}}')
    parser = argparse.ArgumentParser(prog="caiman-dask")
    cnmf_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cnmf", store, "-o", str(tmp_path / "r.h5"), "--params",
                              str(tmp_path / "p.json"), "--backend", "single"])
    with pytest.raises(ParameterError, match=r"init\.K"):
        args.run(args)
    assert not (tmp_path / "r.h5").exists()
    assert cnmf_cli.load_params(None) == {}


@pytest.mark.parametrize("shape, chunks", [
    ((600, 256, 256), (600, 4, 20)),      # neurofinder's rechunked store: 13 column chunks
    ((20000, 512, 512), (2200, 11, 11)),  # long movie: the byte budget sets the widths
    ((500, 512, 512), (500, 8, 8)),
    ((100, 30, 30), (100, 30, 30)),       # one chunk: one band
])
def test_pixel_bands_are_even_whole_chunks_within_budget(shape, chunks) -> None:
    blocks = pixel_blocks(None, shape, chunks)
    T, d1, d2 = shape
    edges = [b.x0 for b in blocks] + [blocks[-1].x1]
    assert edges[0] == 0 and edges[-1] == d2 and all(np.diff(edges) > 0)
    assert all(b.start == d1 * b.x0 and b.stop == d1 * b.x1 for b in blocks)
    assert all(x % chunks[2] == 0 for x in edges[:-1])  # no chunk decoded for two bands
    units = [-(-(b.x1 - b.x0) // chunks[2]) for b in blocks]
    assert max(units) - min(units) <= 1  # a pass is not held up by one wide band
    assert len(blocks) >= min(MIN_BLOCKS, -(-d2 // chunks[2]))
    band_bytes = max(b.x1 - b.x0 for b in blocks) * d1 * min(T, chunks[0]) * 4
    assert band_bytes <= max(BLOCK_BYTES, chunks[2] * d1 * min(T, chunks[0]) * 4)
    longer = pixel_blocks(None, (4 * T, d1, d2), chunks)
    assert [(b.x0, b.x1) for b in longer] == [(b.x0, b.x1) for b in blocks] or T < chunks[0]


def test_temporal_sweeps_on_workers_equal_serial(synth, dask_cluster, monkeypatch) -> None:
    """Parcels of one sweep run as tasks: the same traces on 2 workers as in-process."""
    movie = synth[0]
    Ab = np.concatenate([movie.A, movie.b], axis=1)
    total = block_products(to_pixels(movie.Y), Ab)
    params = CNMFParams().replace(temporal={"p": 1}, data={"fr": 30.0})
    monkeypatch.setattr(temporal, "MIN_PARCEL", 2)  # several parcels from 24 neurons
    out = {}
    for name, view in (("serial", SerialView()), ("cluster", dask_cluster[1])):
        run = functools.partial(driver_refine._run_sweeps, view, "test sweep")
        out[name] = temporal_update(total, movie.C * 0.9, movie.f, params, run_sweeps=run)
    assert len(parcels(total.AA, K_TRUE)) > 1
    for key in ("C", "S", "f", "YrA", "g", "lam"):
        np.testing.assert_array_equal(getattr(out["cluster"], key), getattr(out["serial"], key))
