"""The visual report: streamed summary images, figures and the self-contained page."""

from __future__ import annotations

import os
import pathlib
import re

import matplotlib.image as mpimg
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.sparse as sp
import tifffile

from caiman_dask.errors import ParameterError, StoreExistsError
from caiman_dask.motion.metrics import compare_metrics
from caiman_dask.movie import to_zarr
from caiman_dask.report import (
    block_moments,
    combine,
    local_correlation,
    summary_images,
    write_report,
)
from caiman_dask.report.moments import mean_image
from caiman_dask.results import Estimates
from caiman_dask.synthetic import make_movie
from caiman_dask.view import SerialView

DIMS = (40, 48)


def direct_local_correlation(Y: np.ndarray) -> np.ndarray:
    """CaImAn's ``local_correlations`` (8 neighbours), written directly with NumPy."""
    Y = np.asarray(Y, dtype=np.float64)
    Z = (Y - Y.mean(axis=0)) / Y.std(axis=0)
    kernel = np.ones((3, 3))
    kernel[1, 1] = 0
    neighbours = ndi.convolve(Z, kernel[None], mode="constant")
    count = ndi.convolve(np.ones(Y.shape[1:]), kernel, mode="constant")
    return (neighbours * Z).mean(axis=0) / count


@pytest.fixture(scope="module")
def synth():
    return make_movie(dims=DIMS, T=150, K=8, gSig=3.0, baseline=10.0, seed=3)


@pytest.fixture(scope="module")
def store(synth, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("report-store")
    tifffile.imwrite(folder / "movie.tif", synth.Y)
    path = str(folder / "movie.zarr")
    to_zarr(str(folder / "movie.tif"), path, chunks=(32,) + DIMS, fr=10.0, progress=False)
    return path


def test_local_correlation_matches_numpy_over_uneven_blocks(synth):
    Y = synth.Y + 1000.0  # a large baseline: the moments must not cancel catastrophically
    parts = [block_moments(Y[a:b], chunk=7) for a, b in ((0, 13), (13, 14), (14, 150))]
    total = combine(combine(parts[0], parts[1]), parts[2])
    np.testing.assert_allclose(local_correlation(total), direct_local_correlation(Y),
                               atol=2e-6)
    np.testing.assert_allclose(mean_image(total), Y.mean(axis=0), rtol=1e-6)
    assert 0.3 < np.nanmax(local_correlation(total)) <= 1.0


def test_nonfinite_pixels_are_nan_and_left_out_of_neighbours(synth):
    Y = synth.Y[:60].copy()
    Y[5, 10, 12] = np.nan
    image = local_correlation(block_moments(Y))
    assert np.isnan(image[10, 12]) and np.isfinite(np.delete(image.ravel(), 10 * 48 + 12)).all()
    # its neighbour (10, 11) averages the correlations with its 7 other neighbours
    rows, cols = np.meshgrid([9, 10, 11], [10, 11, 12], indexing="ij")
    pairs = [(r, c) for r, c in zip(rows.ravel(), cols.ravel(), strict=True)
             if (r, c) not in ((10, 11), (10, 12))]
    zz = (synth.Y[:60] - synth.Y[:60].mean(0)) / synth.Y[:60].std(0)
    expected = np.mean([np.mean(zz[:, 10, 11] * zz[:, r, c]) for r, c in pairs])
    assert image[10, 11] == pytest.approx(expected, abs=1e-5)
    assert mean_image(block_moments(Y))[10, 12] == pytest.approx(np.nanmean(Y[:, 10, 12]))


def test_summary_images_identical_serially_and_on_a_cluster(store, synth, dask_cluster):
    _, dview = dask_cluster
    serial = summary_images(store, view=SerialView(), progress=False)
    cluster = summary_images(store, view=dview, block_frames=20, progress=False)
    again = summary_images(store, view=dview, block_frames=20, progress=False)
    assert serial.n_frames == 150 and serial.fr == 10.0 and serial.dims == DIMS
    np.testing.assert_array_equal(cluster.correlation, again.correlation)
    np.testing.assert_allclose(cluster.correlation, serial.correlation, atol=1e-6)
    np.testing.assert_allclose(serial.correlation, direct_local_correlation(synth.Y),
                               atol=2e-6)
    np.testing.assert_allclose(serial.mean, synth.Y.mean(axis=0), rtol=1e-5)
    same_blocks = summary_images(store, view=dview, progress=False)
    np.testing.assert_array_equal(same_blocks.correlation, serial.correlation)
    np.testing.assert_array_equal(same_blocks.mean, serial.mean)


def _estimates(synth) -> Estimates:
    rng = np.random.default_rng(0)
    K, T = synth.C.shape
    A = sp.csc_matrix(np.vstack([synth.A.T, rng.random((2, synth.A.shape[0])) *
                                 (rng.random((2, synth.A.shape[0])) > 0.97)]).T)
    C = np.vstack([synth.C, rng.random((2, T))])
    S = np.vstack([synth.S, np.zeros((2, T))])
    return Estimates(A=A, dims=DIMS, C=C, S=S, YrA=rng.normal(0, 2, C.shape),
                     idx_components=np.arange(K), idx_components_bad=np.array([K, K + 1]),
                     SNR_comp=np.r_[synth.snr, 0.5, 0.4])


def _inputs(synth, store):
    images = summary_images(store, view=SerialView(), progress=False)
    T = synth.Y.shape[0]
    walk = np.cumsum(np.random.default_rng(1).normal(0, 0.2, (T, 2)), axis=0)
    motion = {"rigid_shifts": walk, "pw_shifts": walk[:, None, None] + np.zeros((T, 2, 3, 2)),
              "flags": np.zeros(T, np.uint8),
              "metrics": compare_metrics(synth.Y[:50], synth.Y[:50])}
    summary = {"inputs": ["movie.tif"], "seconds": 12.5,
               "stages": {"motion": {"seconds": 2.0, "skipped": False,
                                     "peak_memory": {"client": 2 ** 28, "worker a": 2 ** 29}},
                          "cnmf": {"seconds": 9.5, "skipped": False, "n_candidates": 12,
                                   "peak_memory": {"client": 2 ** 28}}},
               "scores": {"iou": {"n_true": 8, "n_found": 8, "n_matched": 8, "precision": 1.0,
                                  "recall": 1.0, "f1": 1.0}},
               "params": {"init": {"K": 4, "gSig": [3, 3]}, "quality": {"min_SNR": 2.5}},
               "versions": {"numpy": np.__version__}}
    regions = sp.csc_matrix(synth.A > 0.5)
    return images, motion, summary, regions


def _files(root: pathlib.Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_report_page_and_pictures(synth, store, tmp_path):
    images, motion, summary, regions = _inputs(synth, store)
    cwd_before = set(os.listdir(os.getcwd()))
    before = _files(tmp_path)
    page = write_report(tmp_path / "out", summary=summary, images=images,
                        estimates=_estimates(synth), motion=motion, regions=regions)
    assert page == tmp_path / "out" / "report.html"
    assert set(os.listdir(os.getcwd())) == cwd_before
    assert {p for p in _files(tmp_path) - before if not p.startswith("out")} == set()
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "http" not in text.replace(
        "http-equiv", "") and "url(" not in text
    refs = re.findall(r'(?:src|href)="([^"]+)"', text)
    sizes = re.findall(r'<img src="([^"]+)" width="(\d+)" height="(\d+)"', text)
    assert len(refs) == len(sizes) == 6
    for ref, width, height in sizes:
        path = page.parent / ref
        assert path.resolve().is_relative_to((tmp_path / "out").resolve()) and path.is_file()
        pixels = mpimg.imread(path)
        assert pixels.shape[:2] == (int(height), int(width))
        assert pixels[..., :3].std() > 0.02  # not blank
    assert _files(tmp_path / "out" / "report") == {
        "mean.png", "correlation.png", "motion.png", "motion_metrics.png", "traces.png",
        "timings.png"}
    for expected in ("accepted after evaluation</td><td class=\"num\">8",
                     "rejected</td><td class=\"num\">2", ">gSig<", "min_SNR", "F1"):
        assert expected in text


def test_report_replaces_only_its_own_files(synth, store, tmp_path):
    images, motion, summary, _ = _inputs(synth, store)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    write_report(out, summary=summary, images=images, estimates=None, motion=motion)
    assert (out / "report" / "motion.png").is_file()
    write_report(out, summary={}, images=images, estimates=None, motion=None)
    assert _files(out) == {"notes.txt", "report.html", "report", "report/mean.png",
                           "report/correlation.png"}
    (out / "report.html").write_text("<html>the user's own page</html>")
    with pytest.raises(StoreExistsError, match="report.html"):
        write_report(out, summary={}, images=images, estimates=None, motion=None)
    assert (out / "report.html").read_text() == "<html>the user's own page</html>"


def test_bad_inputs_are_named(synth, store, tmp_path):
    images = summary_images(store, view=SerialView(), progress=False)
    with pytest.raises(ParameterError, match="rigid_shifts"):
        write_report(tmp_path, summary={}, images=images, estimates=None,
                     motion={"rigid_shifts": np.zeros((5, 3))})
    with pytest.raises(ParameterError, match="unknown keys"):
        write_report(tmp_path, summary={}, images=images, estimates=None,
                     motion={"rigid": np.zeros((5, 2))})
    wrong = Estimates(A=sp.csc_matrix((10 * 10, 1)), dims=(10, 10))
    with pytest.raises(ParameterError, match="summary images"):
        write_report(tmp_path, summary={}, images=images, estimates=wrong, motion=None)
    assert _files(tmp_path) == set()
