"""CNMF reads movies a block of frames at a time: same products, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from cnmf_synth import make_movie

from caiman_dask.cnmf import CNMFParams, fit_patch
from caiman_dask.cnmf._validate import validate_params
from caiman_dask.cnmf.driver_source import RegionFrames
from caiman_dask.cnmf.frames import (
    as_source,
    correlate,
    project,
    read_frames,
    sampled_rows,
)
from caiman_dask.cnmf.initialization import init_tsub
from caiman_dask.cnmf.noise import _subsample_time
from caiman_dask.cnmf.spatial import to_pixels
from caiman_dask.errors import MovieError, ParameterError
from caiman_dask.movie import to_zarr
from caiman_dask.movie.ref import ArrayRef
from caiman_dask.plan import plan_chunks

PARAMS = CNMFParams().replace(init={"K": 6, "gSig": (4, 4)}, data={"fr": 30.0},
                              patch={"only_init": False})


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    rng = np.random.default_rng(2)
    return rng.gamma(2.0, 30.0, size=(13 * 9, 101)).astype(np.float32)


@pytest.mark.parametrize("block", [1, 7, 50, 101, 500])
def test_products_in_blocks_equal_the_whole_movie(rows: np.ndarray, block: int) -> None:
    rng = np.random.default_rng(3)
    source = as_source(rows, block_frames=block)
    Ab = rng.uniform(0, 1, size=(rows.shape[0], 4))
    W = rng.uniform(0, 1, size=(4, rows.shape[1]))
    M = sp.random(rows.shape[1], 3, density=0.2, random_state=4, format="csc")
    exact = rows.astype(np.float64)
    np.testing.assert_allclose(project(source, Ab), Ab.T @ exact, rtol=1e-5)
    np.testing.assert_allclose(project(source, sp.csc_matrix(Ab)), Ab.T @ exact, rtol=1e-5)
    np.testing.assert_allclose(correlate(source, W), exact @ W.T, rtol=1e-5)
    np.testing.assert_allclose(correlate(source, M.T), exact @ M.toarray(), rtol=1e-12)


def test_frames_and_noise_samples_are_those_of_the_whole_movie() -> None:
    Y = np.random.default_rng(1).normal(size=(5000, 6, 5)).astype(np.float32)
    source = as_source(Y, block_frames=333)
    np.testing.assert_array_equal(read_frames(source), Y)
    whole = to_pixels(Y, dtype=np.float32)
    np.testing.assert_array_equal(sampled_rows(source, 3072), _subsample_time(whole, 3072))
    np.testing.assert_array_equal(sampled_rows(source, 6000), whole)


def test_a_nan_frame_in_a_later_block_is_named() -> None:
    movie = make_movie(dims=(32, 32), T=300, K=2, seed=1)
    Y = movie.Y.astype(np.float32)
    Y[257, 3, 4] = np.nan
    with pytest.raises(MovieError, match=r"frame 257 .*border_nan='copy'"):
        fit_patch(as_source(Y, block_frames=40), PARAMS)


@pytest.mark.parametrize(("T", "tsub", "limit", "expected"),
                         [(1000, 1, None, 1), (1000, 1, 2000, 1), (4000, 2, 2000, 2),
                          (10000, 2, 2000, 5), (10001, 2, 2000, 6), (50, 3, 8, 7)])
def test_init_tsub_averages_long_movies_into_at_most_max_init_frames(
        T: int, tsub: int, limit: int | None, expected: int) -> None:
    assert init_tsub(T, tsub, limit) == expected
    assert -(-T // expected) <= (limit or T)


def test_max_init_frames_is_checked() -> None:
    with pytest.raises(ParameterError, match="init.max_init_frames"):
        validate_params(PARAMS.replace(init={"max_init_frames": 0}), (40, 40))


def _match(A_true: np.ndarray, A: sp.spmatrix) -> np.ndarray:
    """Best footprint correlation of each true neuron with a found one."""
    A = np.asarray(sp.csc_matrix(A).toarray())
    unit = lambda M: M / np.maximum(np.linalg.norm(M, axis=0), 1e-12)  # noqa: E731
    return (unit(A_true).T @ unit(A)).max(axis=1)


def test_small_blocks_give_the_same_fit() -> None:
    movie = make_movie(dims=(40, 40), T=900, K=4, amplitude=30.0, seed=5)
    whole = fit_patch(movie.Y, PARAMS)
    blocked = fit_patch(as_source(movie.Y, block_frames=64), PARAMS)
    assert blocked.A.shape == whole.A.shape
    assert _match(whole.A.toarray(), blocked.A).min() > 0.999
    for k in range(whole.C.shape[0]):
        assert np.corrcoef(whole.C[k], blocked.C[k])[0, 1] > 0.999


def test_an_initialisation_on_averaged_frames_finds_the_neurons() -> None:
    movie = make_movie(dims=(40, 40), T=2400, K=4, amplitude=30.0, seed=6)
    fit = fit_patch(movie.Y, PARAMS.replace(init={"max_init_frames": 400}))  # tsub 6
    assert (_match(movie.A, fit.A) > 0.9).all()


def _peak(Y: np.ndarray, params: CNMFParams, block: int) -> int:
    tracemalloc.start()
    try:
        fit_patch(as_source(Y, block_frames=block), params)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_fit_patch_memory_does_not_grow_with_the_length() -> None:
    params = PARAMS.replace(init={"max_init_frames": 500})
    peaks = []
    for T in (3200, 12800):  # both above the noise estimate's 3072 sampled frames
        movie = make_movie(dims=(32, 32), T=T, K=3, seed=3)
        Y = np.clip(np.rint(movie.Y), 0, 65535).astype(np.uint16)
        del movie
        peaks.append(_peak(Y, params, block=250))
    # the (K, T) traces still grow; the patch (4x longer: 13 -> 52 MB of float32) does not
    assert peaks[1] < 1.15 * peaks[0], peaks


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("region")
    Y = np.random.default_rng(0).integers(0, 4000, size=(700, 30, 26), dtype=np.uint16)
    np.save(folder / "m.npy", Y)
    dest = str(folder / "m.zarr")
    to_zarr(str(folder / "m.npy"), dest, chunks=(100, 10, 13), fr=30.0)
    return dest, Y


def test_region_frames_read_whole_time_chunks_of_the_region(store) -> None:
    path, Y = store
    region = RegionFrames(ArrayRef(path), slice(5, 25), slice(13, 26))
    assert region.dims == (20, 13) and region.n_frames == 700
    assert region.block_frames % 100 == 0
    np.testing.assert_array_equal(read_frames(region), Y[:, 5:25, 13:26])
    first = region.read(0, 100)
    assert region.read(0, 100) is first  # the last block is kept, not read again
    np.testing.assert_array_equal(first, to_pixels(Y[:100, 5:25, 13:26], dtype=np.float32))


def test_long_movies_get_rechunked_chunks_of_a_few_patch_blocks() -> None:
    plan = plan_chunks((100_000, 512, 512), "uint16", rf=25, stride=10)
    t_chunk = plan.cnmf_layout.chunks[0]
    lo, _ = plan.chunk_bytes
    assert t_chunk < 100_000 and t_chunk % plan.time_blocks[0][1] == 0
    assert plan.cnmf_layout.chunk_bytes >= lo
    # a patch task's block of whole chunks stays near 16 MiB of float32 (51 x 51 px)
    assert t_chunk * 51 * 51 * 4 < 64 << 20
