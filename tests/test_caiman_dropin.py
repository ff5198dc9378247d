"""CaImAn's own pipeline with our dview: same results as its multiprocessing backend.

Needs CaImAn importable (skipped otherwise; CI cannot install it). The movie is a small
synthetic one with a random walk of motion, so each backend runs in well under a minute
on an idle machine.
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import tifffile

cm = pytest.importorskip("caiman")
from caiman.motion_correction import MotionCorrect  # noqa: E402
from caiman.source_extraction.cnmf import cnmf as cm_cnmf  # noqa: E402
from caiman.source_extraction.cnmf import params as cm_params  # noqa: E402

import caiman_dask  # noqa: E402
from caiman_dask import interop  # noqa: E402
from caiman_dask.synthetic import make_movie, move_frames, random_walk  # noqa: E402

pytestmark = [
    pytest.mark.caiman,
    # CaImAn 1.12's own warnings (scipy 1.16's toeplitz notice, pkg_resources), not ours
    pytest.mark.filterwarnings("ignore::FutureWarning:caiman"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # CaImAn's noise estimate calls scipy.signal.welch with nperseg=256 on short traces
    pytest.mark.filterwarnings("ignore:nperseg=256 is greater than signal length:UserWarning"),
]

D, T = 48, 150
PARAMS = dict(fr=30, decay_time=0.4, max_shifts=(5, 5), pw_rigid=True, strides=(16, 16),
              overlaps=(8, 8), max_deviation_rigid=3, num_frames_split=50, border_nan="copy",
              p=1, nb=1, rf=12, stride=4, K=3, gSig=(3, 3), method_init="greedy_roi",
              rolling_sum=True, only_init=True, ssub=1, tsub=1, merge_thr=0.85,
              min_SNR=2.0, rval_thr=0.8, use_cnn=False)


@dataclass(frozen=True)
class PipelineRun:
    """The figures compared between backends."""

    shifts_rig: np.ndarray
    x_shifts_els: np.ndarray
    n_fit: int
    n_refit: int
    n_good: int
    n_bad: int


@pytest.fixture(scope="module")
def movie_tif(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A (T, D, D) float32 movie of 12 neurons moving by a sub-pixel random walk."""
    synth = make_movie(dims=(D, D), T=T, K=10, gSig=3.0, seed=3, baseline=5.0)
    moved = move_frames(synth.Y, random_walk(np.random.default_rng(4), T, limit=3.0))
    path = tmp_path_factory.mktemp("movie") / "movie.tif"
    tifffile.imwrite(path, (moved + 50).astype(np.float32))
    return path


def _options(fname: pathlib.Path) -> Any:
    return cm_params.CNMFParams(params_dict={**PARAMS, "fnames": [str(fname)]})


def _run_pipeline(fname: pathlib.Path, dview: Any, n_processes: int) -> PipelineRun:
    """CaImAn's batch pipeline, call for call as its demo writes it."""
    opts = _options(fname)
    mc = MotionCorrect([str(fname)], dview=dview, **opts.get_group("motion"))
    mc.motion_correct(save_movie=True)
    mmap = cm.save_memmap(mc.mmap_file, base_name="memmap_", order="C", border_to_0=0,
                          dview=dview)
    Yr, dims, n_frames = cm.load_memmap(mmap)
    images = np.reshape(Yr.T, [n_frames, *dims], order="F")
    cnm = cm_cnmf.CNMF(n_processes, params=opts, dview=dview)
    cnm.fit(images)
    n_fit = cnm.estimates.A.shape[1]
    cnm2 = cnm.refit(images, dview=dview)
    cnm2.estimates.evaluate_components(images, cnm2.params, dview=dview)
    return PipelineRun(np.array(mc.shifts_rig), np.array(mc.x_shifts_els), n_fit,
                       cnm2.estimates.A.shape[1], len(cnm2.estimates.idx_components),
                       len(cnm2.estimates.idx_components_bad))


@pytest.fixture(scope="module")
def caiman_temp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """CAIMAN_TEMP/CAIMAN_DATA in a temporary folder (never the user's ~/caiman_data)."""
    folder = tmp_path_factory.mktemp("caiman_temp")
    saved = {k: os.environ.get(k) for k in ("CAIMAN_TEMP", "CAIMAN_DATA")}
    os.environ.update(CAIMAN_TEMP=str(folder), CAIMAN_DATA=str(folder))
    yield folder
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def caiman_dview(caiman_temp: pathlib.Path) -> Iterator[tuple[Any, Any, int]]:
    """A cluster started by CaImAn's own ``setup_cluster(backend="dask")`` after install()."""
    interop.install()
    client, dview, n = cm.cluster.setup_cluster(backend="dask", n_processes=2,
                                                threads_per_worker=1, memory_limit="2GB")
    yield client, dview, n
    cm.stop_server(dview=dview)  # the user's own call: closes what setup_cluster started
    interop.uninstall()


@pytest.fixture(scope="module")
def reference(movie_tif: pathlib.Path, caiman_temp: pathlib.Path) -> PipelineRun:
    """The pipeline on CaImAn's multiprocessing backend (a Pool of 2)."""
    # forked workers inherit pytest's "warnings are errors"; CaImAn's own Pool has defaults
    pool = multiprocessing.Pool(2, initializer=warnings.resetwarnings)
    try:
        return _run_pipeline(movie_tif, pool, 2)
    finally:
        pool.terminate()
        pool.join()


@pytest.fixture(scope="module")
def ours(movie_tif: pathlib.Path, caiman_dview: tuple[Any, Any, int],
         reference: PipelineRun) -> PipelineRun:
    """The same pipeline on our dview (after the reference, so they never share cores)."""
    _, dview, n = caiman_dview
    return _run_pipeline(movie_tif, dview, n)


def test_install_gives_our_dview_on_caimans_pool_path(caiman_dview: tuple[Any, Any, int]) -> None:
    client, dview, n = caiman_dview
    assert isinstance(dview, caiman_dask.DaskPool) and "multiprocessing" in str(type(dview))
    assert n == 2 and client.status == "running"
    assert interop.is_installed()
    # workers imported CaImAn at start, as a forked Pool's would have (not at the first task)
    assert all(client.run(lambda: "caiman" in sys.modules, nanny=False).values())


def test_motion_correction_shifts_match_multiprocessing(reference: PipelineRun,
                                                        ours: PipelineRun) -> None:
    assert ours.shifts_rig.shape == (T, 2) and ours.x_shifts_els.shape[0] == T
    assert np.abs(reference.shifts_rig).max() > 0.5  # the movie really moves
    np.testing.assert_allclose(ours.shifts_rig, reference.shifts_rig, atol=1e-6)
    np.testing.assert_allclose(ours.x_shifts_els, reference.x_shifts_els, atol=1e-6)


def test_cnmf_fit_refit_evaluate_counts_match_multiprocessing(reference: PipelineRun,
                                                              ours: PipelineRun) -> None:
    assert reference.n_fit >= 5 and reference.n_good >= 3
    assert (ours.n_fit, ours.n_refit, ours.n_good, ours.n_bad) == (
        reference.n_fit, reference.n_refit, reference.n_good, reference.n_bad)


def test_save_memmap_of_several_files_matches_serial(
        movie_tif: pathlib.Path, tmp_path: pathlib.Path,
        caiman_dview: tuple[Any, Any, int]) -> None:
    _, dview, _ = caiman_dview
    frames = tifffile.imread(movie_tif)
    parts = [tmp_path / "a.tif", tmp_path / "b.tif"]
    tifffile.imwrite(parts[0], frames[:70])
    tifffile.imwrite(parts[1], frames[70:])
    joined = {}
    for name, view in (("serial", None), ("dask", dview)):
        out = cm.save_memmap([str(p) for p in parts], base_name=f"{name}_", order="C",
                             dview=view)
        Yr, dims, n_frames = cm.load_memmap(out)
        joined[name] = np.array(Yr)
        assert (tuple(dims), n_frames) == ((D, D), T)
    np.testing.assert_array_equal(joined["dask"], joined["serial"])
    np.testing.assert_allclose(joined["dask"][:, 0], frames[0].ravel(order="F"), rtol=1e-5)


def test_fit_file_matches_and_its_stop_leaves_the_cluster_up(
        movie_tif: pathlib.Path, caiman_dview: tuple[Any, Any, int], ours: PipelineRun) -> None:
    client, dview, n = caiman_dview
    cnm = cm_cnmf.CNMF(n, params=_options(movie_tif), dview=dview)
    # include_eval=True cannot run in CaImAn 1.12.1 with any backend: CNMF.fit returns
    # None and fit_file then calls None.save (cnmf.py:391), before its stop_server
    cnm.fit_file(motion_correct=True)
    assert cnm.estimates.A.shape[1] == ours.n_fit
    # fit_file's own stop (cnmf.py:401) is a call from CaImAn's module: replay it there
    exec("import caiman.cluster\ncaiman.cluster.stop_server(dview=dview)",
         {"__name__": "caiman.source_extraction.cnmf.cnmf", "dview": dview})
    assert client.status == "running" and dview.map(abs, [-3, 4]) == [3, 4]


def test_caimans_stop_server_leaves_a_cluster_the_user_started(
        caiman_dview: tuple[Any, Any, int]) -> None:
    client, _, _ = caiman_dview
    _, attached, _ = caiman_dask.setup_cluster(client)  # the user's own dview
    cm.stop_server(dview=attached)
    cm.cluster.stop_server(dview=attached)
    assert client.status == "running" and attached.map(abs, [-2]) == [2]


def test_users_stop_server_closes_what_caimans_setup_started(
        caiman_dview: tuple[Any, Any, int]) -> None:
    client, dview, _ = cm.cluster.setup_cluster(backend="dask", n_processes=1,
                                                threads_per_worker=1, memory_limit="1GB")
    assert dview.map(abs, [-1]) == [1]
    cm.stop_server(dview=dview)
    assert client.status in ("closing", "closed")
    assert caiman_dview[0].status == "running"


def test_uninstall_restores_caimans_functions(caiman_dview: tuple[Any, Any, int]) -> None:
    def names() -> list[str]:
        return [f.__qualname__ for f in (cm.cluster.setup_cluster, cm.cluster.stop_server,
                                         cm.stop_server)]

    interop.install()  # idempotent: already installed by the fixture
    assert all("for_caiman" in name for name in names())
    interop.uninstall()
    try:
        assert names() == ["setup_cluster", "stop_server", "stop_server"]
        assert cm.cluster.setup_cluster(backend="single") == (None, None, 1)
    finally:
        interop.install()
