"""The motion-correction driver over zarr stores: accuracy, determinism, shifts, CLI."""

from __future__ import annotations

import re
import shutil

import dask.config
import numpy as np
import pytest
import tifffile
import zarr
from motion_synth import crop, neuron_image, rigid_movie, translate

import caiman_dask
from caiman_dask.cli import main
from caiman_dask.errors import ConfigError, ParameterError
from caiman_dask.motion import MotionParams, correct_block
from caiman_dask.motion.apply import apply_shifts, load_motion
from caiman_dask.motion.driver import MAX_TEMPLATE_BLOCKS, block_tasks, motion_correct, run_pass
from caiman_dask.motion.driver_io import BlockReader
from caiman_dask.motion.template import meta_template
from caiman_dask.movie import open_store, to_zarr
from caiman_dask.movie.ref import ArrayRef
from caiman_dask.movie.zarrio import corrected_codecs
from caiman_dask.view import SerialView

PARAMS = {"max_shifts": (8, 8), "num_frames_split": 50, "niter_rig": 1}


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """A 200-frame synthetic movie with known sub-pixel shifts, converted to a store."""
    folder = tmp_path_factory.mktemp("motion")
    rng = np.random.default_rng(3)
    displacement = rng.uniform(-6, 6, (200, 2))
    frames = rigid_movie(neuron_image((96, 128), pad=16), displacement, pad=16, noise=4)
    tifffile.imwrite(folder / "movie.tif", frames.astype(np.uint16))
    store = folder / "raw.zarr"
    to_zarr(str(folder / "movie.tif"), str(store), rf=16, stride=4, num_frames_split=50)
    return str(store), displacement, folder


@pytest.fixture(scope="module")
def serial():
    view = SerialView()
    yield view
    view.shutdown()


def _relative_error(found: np.ndarray, displacement: np.ndarray) -> float:
    error = found + displacement  # found shifts undo the displacement
    error -= error.mean(axis=0)  # the template's own position is arbitrary
    return float(np.sqrt((error ** 2).sum(axis=1).mean()))


def test_rigid_shifts_recovered_within_a_tenth_of_a_pixel(shifted, serial):
    store, displacement, folder = shifted
    result = motion_correct(store, str(folder / "rigid.zarr"), params=PARAMS, view=serial)
    assert _relative_error(result.rigid_shifts, displacement) <= 0.1
    corrected = open_store(result.path)
    assert corrected.shape == (200, 96, 128) and corrected.dtype == np.float32
    recorded, params = load_motion(result.path)
    np.testing.assert_array_equal(recorded.rigid_shifts, result.rigid_shifts)
    assert params.max_shifts == (8, 8)


def test_identical_output_serial_one_and_two_workers(shifted, serial, dask_cluster):
    store, _, folder = shifted
    _, one, _ = caiman_dask.setup_cluster(n_processes=1, memory_limit="2GB")
    try:
        runs = [motion_correct(store, str(folder / f"same-{name}.zarr"),
                               params={**PARAMS, "pw_rigid": True, "strides": (48, 48),
                                       "overlaps": (16, 16)}, view=view)
                for name, view in (("serial", serial), ("one", one), ("two", dask_cluster[1]))]
    finally:
        caiman_dask.stop_server(one)
    movies = [open_store(r.path).data.compute() for r in runs]
    for run, movie in zip(runs[1:], movies[1:], strict=True):
        np.testing.assert_array_equal(run.rigid_shifts, runs[0].rigid_shifts)
        np.testing.assert_array_equal(run.pw_shifts, runs[0].pw_shifts)
        np.testing.assert_array_equal(movie, movies[0])
    assert runs[0].pw_shifts.shape == (200, 2, 3, 2)


def test_applying_the_shifts_reproduces_the_corrected_movie(shifted, serial):
    store, _, folder = shifted
    result = motion_correct(store, str(folder / "for-apply.zarr"), params=PARAMS, view=serial)
    moved = apply_shifts(store, result.path, str(folder / "applied.zarr"), view=serial)
    np.testing.assert_array_equal(open_store(moved).data.compute(),
                                  open_store(result.path).data.compute())


def test_real_movie_shifted_by_known_amounts(neurofinder_tif, tmp_path, serial):
    frames = tifffile.imread(neurofinder_tif, key=range(150)).astype(np.float32)
    rng = np.random.default_rng(5)
    displacement = rng.uniform(-4, 4, (len(frames), 2))
    moved = np.stack([crop(translate(f, d), 8) for f, d in zip(frames, displacement, strict=True)])
    tifffile.imwrite(tmp_path / "moved.tif", moved)  # cropped: no wrapped-around border
    tifffile.imwrite(tmp_path / "still.tif", crop(frames, 8))
    results = {}
    for name in ("moved", "still"):
        to_zarr(str(tmp_path / f"{name}.tif"), str(tmp_path / f"{name}.zarr"), rf=25,
                stride=10, num_frames_split=50)
        # jitter of +-4 px on every frame blurs the sampled template: a second rigid pass
        # (CaImAn's niter_rig) sharpens it (0.26 px error with one pass, 0.10 with two)
        results[name] = motion_correct(str(tmp_path / f"{name}.zarr"),
                                       str(tmp_path / f"{name}-mc.zarr"),
                                       params={**PARAMS, "niter_rig": 2},
                                       view=serial).rigid_shifts
    # the movie is registered already: its own residual sub-pixel jitter is the reference
    assert _relative_error(results["moved"] - results["still"], displacement) <= 0.2
    still = results["still"] - results["still"].mean(axis=0)
    assert np.sqrt((still ** 2).sum(axis=1).mean()) <= 0.3  # measured 0.25 px
    assert np.abs(still).max() < 1.0


@pytest.mark.parametrize(("params", "name"), [
    ({"max_shifts": (60, 60)}, "max_shifts"),
    ({"num_frames_split": 0}, "num_frames_split"),
    ({"pw_rigid": True, "strides": (96, 96), "overlaps": (64, 64)}, "strides"),
])
def test_bad_parameters_refused_before_anything_is_written(shifted, serial, params, name):
    store, _, folder = shifted
    dest = folder / f"bad-{name}.zarr"
    with pytest.raises(ParameterError, match=name):
        motion_correct(store, str(dest), params=params, view=serial)
    assert not dest.exists()


def test_command_line(shifted, capsys):
    store, _, folder = shifted
    code = main(["motion", store, "-o", str(folder / "cli.zarr"), "--max-shifts", "8",
                 "--num-frames-split", "50", "--backend", "single"])
    assert code == 0
    out = capsys.readouterr().out
    assert "corrected 200 frames" in out
    before, after = map(float, re.search(r"crispness ([0-9.e+]+) -> ([0-9.e+]+)", out).groups())
    assert after > before  # the mean image got sharper
    assert open_store(str(folder / "cli.zarr")).shape == (200, 96, 128)


def test_client_keeps_a_bounded_number_of_block_means(shifted, serial):
    store, _, _ = shifted
    source = ArrayRef(store)
    many = block_tasks([(80 * i, 80 * (i + 1)) for i in range(250)], source, None)
    kept = [t.index for t in many if t.keep_mean]
    assert len(kept) == MAX_TEMPLATE_BLOCKS and kept[0] == 0 and kept[-1] == 249
    assert max(np.diff(kept)) <= 5  # evenly spaced: 249 / 63 ~ 4
    blocks = [(0, 50), (50, 100), (100, 150), (150, 200)]
    template = open_store(store).data[:50].compute().mean(axis=0)
    params = MotionParams.from_dict(PARAMS)
    summaries = run_pass(block_tasks(blocks, source, None, max_means=2), template, params,
                         serial, "test")
    assert [s.mean_image is not None for s in summaries] == [True, False, False, True]
    every = run_pass(block_tasks(blocks, source, None), template, params, serial, "test")
    assert all(s.mean_image is not None for s in every)
    for few, full in zip(summaries, every, strict=True):
        np.testing.assert_array_equal(few.rigid_shifts, full.rigid_shifts)
    # the template of 2 of the 4 block means stays close to CaImAn's median of all 4
    # (measured: correlation 0.99995, interior 0.06% of the maximum; the blocks' borders
    # differ more); registering against either gives shifts 0.017 px RMS apart
    subset = meta_template([s.mean_image for s in summaries if s.mean_image is not None])
    whole = meta_template([s.mean_image for s in every])
    assert np.corrcoef(subset.ravel(), whole.ravel())[0, 1] >= 0.9995
    inner = (slice(8, -8), slice(8, -8))  # inside max_shifts
    assert np.abs(subset - whole)[inner].max() <= 0.005 * np.abs(whole).max()
    frames = open_store(store).data[:100].compute()
    found = [correct_block(frames, t, params).rigid_shifts for t in (subset, whole)]
    apart = found[0] - found[1] - (found[0] - found[1]).mean(axis=0)
    assert np.sqrt((apart ** 2).sum(axis=1).mean()) <= 0.05


def test_corrected_codec_setting(shifted, serial):
    store, _, folder = shifted
    plain = motion_correct(store, str(folder / "codec-none.zarr"), params=PARAMS, view=serial)
    with dask.config.set({"caiman-dask.store.corrected-codec": "zstd"}):
        packed = motion_correct(store, str(folder / "codec-zstd.zarr"), params=PARAMS,
                                view=serial)
    assert zarr.open_group(plain.path, mode="r")["movie"].compressors == ()
    assert type(zarr.open_group(packed.path, mode="r")["movie"].compressors[0]).__name__ == (
        "ZstdCodec")
    np.testing.assert_array_equal(open_store(packed.path).data.compute(),
                                  open_store(plain.path).data.compute())
    with dask.config.set({"caiman-dask.store.corrected-codec": "gzip"}):
        with pytest.raises(ConfigError, match="corrected-codec"):
            corrected_codecs()


def test_block_reader_fills_the_block_and_hands_over_read_errors(shifted, tmp_path):
    store, _, _ = shifted
    array = ArrayRef(store).open()
    with BlockReader(array, 30, 130) as reader:  # not chunk-aligned on purpose
        for index in range(100):
            reader.wait(index)
        np.testing.assert_array_equal(reader.frames, array[30:130])
    broken = tmp_path / "broken.zarr"
    shutil.copytree(store, broken)
    shard = sorted(p for p in (broken / "movie").rglob("*") if p.is_file()
                   and p.name != "zarr.json")[-1]  # the last block's shard
    shard.write_bytes(shard.read_bytes()[:100])
    with BlockReader(ArrayRef(str(broken)).open(), 150, 200) as reader:
        with pytest.raises(Exception):  # noqa: B017 - zarr's own decoding error
            reader.wait(0)
