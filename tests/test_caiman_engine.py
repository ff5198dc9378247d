"""Engines: the built-in maths and CaImAn's own, behind one pair of task functions."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.sparse as sp
from motion_synth import crop, neuron_image, rigid_movie

from caiman_dask.cnmf.params import CNMFParams
from caiman_dask.engines import get_engine
from caiman_dask.errors import BackendError
from caiman_dask.motion.params import MotionParams
from caiman_dask.synthetic import make_movie

HAVE_CAIMAN = importlib.util.find_spec("caiman") is not None
CAIMAN_MARKS = (
    pytest.mark.caiman,
    pytest.mark.skipif(not HAVE_CAIMAN, reason="CaImAn is not importable"),
    # CaImAn 1.12's own warnings (pkg_resources, scipy 1.16 notices, sklearn NMF), not ours
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning:caiman"),
    pytest.mark.filterwarnings("ignore:Maximum number of iterations:UserWarning"),
)
TRUE_SHIFTS = np.array([[0.0, 0.0], [1.5, -2.25], [-3.0, 0.75], [2.2, 2.6], [-1.1, -3.4]])


def caiman_only(test):
    """Mark a test as needing CaImAn (skipped cleanly without it)."""
    for mark in CAIMAN_MARKS:
        test = mark(test)
    return test


def _block(pad: int = 12) -> tuple[np.ndarray, np.ndarray]:
    image = neuron_image((64, 64), n_neurons=40, seed=5, pad=pad)
    frames = rigid_movie(image, TRUE_SHIFTS, pad=pad, noise=2.0)
    return frames, crop(image, pad)


def test_builtin_is_the_default_and_unknown_names_are_clear_errors() -> None:
    assert get_engine().name == "builtin" and get_engine(None).name == "builtin"
    with pytest.raises(BackendError, match="unknown engine 'numba'.*builtin"):
        get_engine("numba")


@pytest.mark.skipif(HAVE_CAIMAN, reason="CaImAn is importable here")
def test_caiman_engine_without_caiman_says_how_to_fix() -> None:
    with pytest.raises(BackendError, match='engine="caiman" needs CaImAn.*engine="builtin"'):
        get_engine("caiman")


@caiman_only
@pytest.mark.parametrize("pw_rigid", [False, True])
def test_caiman_registers_a_block_like_the_builtin(pw_rigid: bool) -> None:
    frames, template = _block()
    params = MotionParams.from_dict(dict(max_shifts=(6, 6), strides=(24, 24), overlaps=(12, 12),
                                         max_deviation_rigid=2, pw_rigid=pw_rigid))
    ours = get_engine("builtin").register_block(frames, template, params)
    waited: list[int] = []
    theirs = get_engine("caiman").register_block(frames, template, params, ready=waited.append)
    assert waited == [len(frames) - 1]  # waits for the whole block before CaImAn's maths
    assert theirs.corrected.shape == frames.shape and theirs.corrected.dtype == np.float32
    # CaImAn's unwindowed phase correlation is biased towards 0 on a 64x64 frame (it finds
    # ~0.8 of the displacement); the built-in engine finds it within 0.15 px
    np.testing.assert_allclose(ours.rigid_shifts, -TRUE_SHIFTS, atol=0.15)
    np.testing.assert_allclose(theirs.rigid_shifts, -TRUE_SHIFTS, atol=0.75)
    assert np.all(np.sign(theirs.rigid_shifts[1:]) == np.sign(-TRUE_SHIFTS[1:]))
    assert theirs.offset == pytest.approx(ours.offset)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    before = np.abs(frames[inner] - template[inner[1:]]).mean()
    after = np.abs(theirs.corrected[inner] - theirs.offset - template[inner[1:]]).mean()
    assert after < 0.5 * before
    np.testing.assert_allclose(theirs.mean_image, theirs.corrected.mean(0) - theirs.offset,
                               rtol=1e-5)
    if pw_rigid:
        assert theirs.pw_shifts.shape == ours.pw_shifts.shape == (5, 3, 3, 2)
        # a rigid movement: every tile follows it (CaImAn is more biased on 36 px tiles)
        tiles = theirs.pw_shifts.reshape(5, 9, 2)
        np.testing.assert_allclose(np.median(tiles, axis=1), -TRUE_SHIFTS, atol=1.2)
    else:
        assert theirs.pw_shifts is None


@caiman_only
def test_caiman_fits_a_patch_into_our_patch_result() -> None:
    synth = make_movie(dims=(24, 24), T=300, K=3, gSig=3.0, seed=7, baseline=5.0, rate=2.0)
    params = CNMFParams.from_dict({"data": {"fr": 30, "decay_time": 0.4},
                                   "init": {"K": 3, "gSig": [3, 3], "nb": 1},
                                   "temporal": {"p": 1}, "patch": {"only_init": False}})
    ours = get_engine("builtin").fit_patch(synth.Y, params)
    theirs = get_engine("caiman").fit_patch(synth.Y, params)
    k = theirs.A.shape[1]
    assert theirs.dims == (24, 24) and theirs.A.shape[0] == 24 * 24
    assert abs(k - ours.A.shape[1]) <= 1 and k >= 2
    assert theirs.C.shape == theirs.S.shape == theirs.YrA.shape == (k, 300)
    assert theirs.b.shape == (576, 1) and theirs.f.shape == (1, 300)
    assert theirs.sn.shape == (576,) and np.all(theirs.sn > 0)
    # each true neuron is found: its best footprint correlates strongly
    truth = synth.A / np.linalg.norm(synth.A, axis=0)
    found = theirs.A.toarray()
    found = found / np.maximum(np.linalg.norm(found, axis=0), 1e-12)
    assert np.all((truth.T @ found).max(axis=1) > 0.8)


@pytest.mark.skipif(HAVE_CAIMAN, reason="CaImAn is importable here")
def test_asking_the_drivers_for_caiman_fails_before_any_work(tmp_path) -> None:
    from caiman_dask.cnmf.driver import fit_cnmf
    from caiman_dask.pipeline import run
    from caiman_dask.view import SerialView

    with pytest.raises(BackendError, match="needs CaImAn"):
        fit_cnmf(str(tmp_path / "absent.zarr"), params={}, view=SerialView(), engine="caiman")
    with pytest.raises(BackendError, match="needs CaImAn"):
        run(str(tmp_path / "absent.tif"), str(tmp_path / "out"), engine="caiman")
    assert not (tmp_path / "out").exists()


@caiman_only
def test_cnmf_driver_runs_caimans_patch_fit_over_zarr_patches(tmp_path, dask_cluster) -> None:
    import tifffile

    from caiman_dask.cnmf.driver import fit_cnmf
    from caiman_dask.movie import to_zarr
    from caiman_dask.results import score
    from caiman_dask.view import SerialView

    synth = make_movie(dims=(48, 48), T=400, K=8, gSig=3.0, seed=11, baseline=5.0, rate=2.0)
    tifffile.imwrite(tmp_path / "movie.tif", synth.Y.astype(np.float32))
    store = str(tmp_path / "movie.zarr")
    to_zarr(str(tmp_path / "movie.tif"), store, rf=12, stride=6, fr=30.0)
    params = {"data": {"fr": 30.0, "decay_time": 0.4}, "patch": {"rf": 12, "stride": 6},
              "init": {"K": 4, "gSig": [3, 3]}, "temporal": {"p": 1}}
    cluster = fit_cnmf(store, params=params, view=dask_cluster[1], engine="caiman",
                       work_dir=str(tmp_path / "w2"))
    serial = fit_cnmf(store, params=params, view=SerialView(), engine="caiman",
                      work_dir=str(tmp_path / "w1"))
    assert cluster.estimates.n_components == serial.estimates.n_components > 0
    found = cluster.estimates
    assert score(found.A, sp.csc_matrix(synth.A), dims=(48, 48)).recall >= 0.75


@caiman_only
def test_main_job_with_the_caiman_engine_finds_the_demo_neurons(tmp_path) -> None:
    from caiman_dask.demo import DEMO_PARAMS, make_demo_movie, shift_error
    from caiman_dask.motion.apply import load_motion
    from caiman_dask.pipeline import run
    from caiman_dask.results import score

    demo = make_demo_movie(tmp_path / "input", dims=(96, 96), n_frames=300, n_neurons=12,
                           seed=4)
    out = tmp_path / "run"
    estimates = run(str(demo.path), str(out), params=DEMO_PARAMS, backend="local",
                    n_workers=2, memory_limit="2GB", engine="caiman", report=False)
    motion, _ = load_motion(str(out / "corrected.zarr"))
    assert shift_error(motion.rigid_shifts, demo.displacements) < 0.5  # px, CaImAn's maths
    found = estimates.select(estimates.idx_components)
    assert score(found, demo.truth_masks(), dims=(96, 96)).f1 >= 0.8
