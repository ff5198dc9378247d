"""open_movie: every input format written here, read back bit-exact and lazily."""

from __future__ import annotations

import os
import pathlib

import fsspec
import h5py
import numpy as np
import pytest
import tifffile
import zarr

from caiman_dask.errors import MovieError, MovieNotFoundError, ParameterError
from caiman_dask.movie import open_movie
from caiman_dask.movie.memmap import parse_mmap_name


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """A (12, 24, 32) uint16 movie with distinct values everywhere."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 60000, size=(12, 24, 32), dtype=np.uint16)


TIFF_KINDS = {
    "classic": {},
    "bigtiff": {"bigtiff": True},
    "zlib": {"compression": "zlib"},
    "zlib-predictor": {"compression": "zlib", "predictor": True},
    "tiled": {"tile": (16, 16), "compression": "zlib"},
    "big-endian": {"byteorder": ">"},
    "strips": {"rowsperstrip": 5},
    "imagej": {"imagej": True, "metadata": {"axes": "TYX"}},
    "ome": {"ome": True, "metadata": {"axes": "TYX"}},
}


@pytest.mark.parametrize("kind", sorted(TIFF_KINDS))
def test_tiff_kinds_read_back_exact(tmp_path: pathlib.Path, frames: np.ndarray, kind: str) -> None:
    path = tmp_path / f"{kind}.tif"
    tifffile.imwrite(path, frames, **TIFF_KINDS[kind])
    movie = open_movie(path, chunks=(5, -1, -1))
    assert movie.data.chunks[0] == (5, 5, 2)
    assert movie.metadata.dims == ("T", "Y", "X") and movie.metadata.format == "tiff"
    np.testing.assert_array_equal(movie.data.compute(), frames)
    np.testing.assert_array_equal(movie.data[3:9, 2:7, 5:].compute(), frames[3:9, 2:7, 5:])


def test_tiff_frame_rate_and_pixel_size(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    ij, ome = tmp_path / "ij.tif", tmp_path / "ome.tif"
    tifffile.imwrite(ij, frames, imagej=True, resolution=(2.0, 4.0),
                     metadata={"axes": "TYX", "finterval": 0.05, "unit": "um"})
    tifffile.imwrite(ome, frames, ome=True, metadata={
        "axes": "TYX", "TimeIncrement": 0.25, "PhysicalSizeX": 0.7, "PhysicalSizeY": 0.8})
    a, b = open_movie(ij).metadata, open_movie(ome).metadata
    assert a.fr == pytest.approx(20.0) and a.dxy == pytest.approx((0.25, 0.5))
    assert b.fr == pytest.approx(4.0) and b.dxy == pytest.approx((0.8, 0.7))
    assert open_movie(tmp_path / "ij.tif").metadata.sources[0].size == os.path.getsize(ij)


def test_imagej_hyperstack_is_4d(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    stack = frames.reshape(4, 3, 24, 32)  # T=4, Z=3
    tifffile.imwrite(tmp_path / "tz.tif", stack, imagej=True, metadata={"axes": "TZYX"})
    movie = open_movie(tmp_path / "tz.tif")
    assert movie.metadata.dims == ("T", "Z", "Y", "X")
    np.testing.assert_array_equal(movie.data.compute(), stack)
    np.testing.assert_array_equal(movie.data[1:3, 2].compute(), stack[1:3, 2])


def test_several_channels_refused(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "tc.tif", frames.reshape(6, 2, 24, 32), imagej=True,
                     metadata={"axes": "TCYX"})
    with pytest.raises(MovieError, match="C=2 channels"):
        open_movie(tmp_path / "tc.tif")


def test_tiff_open_is_lazy_and_reads_page_ranges(tmp_path: pathlib.Path,
                                                 frames: np.ndarray) -> None:
    for kind in ("classic", "zlib"):
        path = tmp_path / f"{kind}.tif"
        tifffile.imwrite(path, frames, **TIFF_KINDS[kind])
        movie = open_movie(path, chunks=(3, -1, -1))
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[2]
            end = page.dataoffsets[-1] + page.databytecounts[-1]
        with open(path, "r+b") as fh:  # cut the file after frame 2: later pages are gone
            fh.truncate(end)
        np.testing.assert_array_equal(movie.data[:3].compute(), frames[:3])
        with pytest.raises((MovieError, OSError, ValueError)):
            movie.data[9:].compute()


def test_list_and_glob_concatenate(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    for i, part in enumerate(np.split(frames, [5, 9])):
        tifffile.imwrite(tmp_path / f"part_{i}.tif", part, photometric="minisblack")
    np.save(tmp_path / "extra.npy", frames[:2])
    glob = open_movie(str(tmp_path / "part_*.tif"))
    np.testing.assert_array_equal(glob.data.compute(), frames)
    assert [pathlib.Path(s.path).name for s in glob.metadata.sources] == [
        "part_0.tif", "part_1.tif", "part_2.tif"]
    mixed = open_movie([tmp_path / "part_2.tif", tmp_path / "extra.npy"])
    np.testing.assert_array_equal(mixed.data.compute(), np.concatenate([frames[9:], frames[:2]]))
    assert mixed.metadata.format == "npy+tiff"


def test_mismatched_files_named(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "a.tif", frames)
    tifffile.imwrite(tmp_path / "b.tif", frames[:, :20])
    with pytest.raises(MovieError, match=r"b\.tif has frames \(20, 32\).*a\.tif has frames "
                                         r"\(24, 32\)"):
        open_movie([tmp_path / "a.tif", tmp_path / "b.tif"])
    with pytest.raises(MovieNotFoundError, match="no file matches"):
        open_movie(str(tmp_path / "nothing_*.tif"))


def test_hdf5_auto_explicit_and_axes(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("grp/mov", data=frames, chunks=(4, 24, 32))
        f.create_dataset("yxt", data=frames.transpose(1, 2, 0))
        f.create_dataset("small", data=np.zeros((3, 3)))
    with pytest.raises(MovieError, match="/grp/mov, /yxt"):
        open_movie(path)
    movie = open_movie(path, dataset="grp/mov")
    assert movie.data.chunks[0][0] % 4 == 0
    np.testing.assert_array_equal(movie.data.compute(), frames)
    np.testing.assert_array_equal(open_movie(path, dataset="yxt", axes="YXT").data, frames)
    with pytest.raises(MovieNotFoundError, match="no dataset 'nope'.*/grp/mov"):
        open_movie(path, dataset="nope")
    with pytest.raises(ParameterError, match="axes='YXZ'"):
        open_movie(path, dataset="yxt", axes="YXZ")


def test_nwb_acquisition_and_rate(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    path = tmp_path / "m.nwb"
    with h5py.File(path, "w") as f:
        series = f.create_group("acquisition/TwoPhotonSeries")
        series.create_dataset("data", data=frames)
        series.create_dataset("starting_time", data=0.0).attrs["rate"] = 30.0
        f.create_dataset("processing/other", data=np.zeros((2, 2, 2)))
    movie = open_movie(path)
    assert movie.metadata.fr == 30.0
    np.testing.assert_array_equal(movie.data.compute(), frames)
    np.testing.assert_array_equal(open_movie(path, dataset="TwoPhotonSeries").data, frames)


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy(tmp_path: pathlib.Path, frames: np.ndarray, order: str) -> None:
    np.save(tmp_path / "m.npy", np.asarray(frames, order=order))
    movie = open_movie(tmp_path / "m.npy", chunks=(5, 24, 32))
    np.testing.assert_array_equal(movie.data.compute(), frames)
    np.save(tmp_path / "xyt.npy", frames.transpose(2, 1, 0))
    np.testing.assert_array_equal(open_movie(tmp_path / "xyt.npy", axes="XYT").data, frames)


def _write_caiman_mmap(folder: pathlib.Path, movie: np.ndarray, order: str, prefix: str) -> str:
    """Write ``movie`` (T, d1, d2[, d3]) as CaImAn does: Yr (npix, T), pixel x + d1*y (+...)."""
    T, dims = movie.shape[0], movie.shape[1:] + (1,) * (4 - movie.ndim)
    columns = [movie[t].reshape(dims).ravel(order="F") for t in range(T)]  # one per frame
    yr = np.stack(columns, axis=1).astype(np.float32)  # (npix, T)
    name = f"{prefix}_d1_{dims[0]}_d2_{dims[1]}_d3_{dims[2]}_order_{order}_frames_{T}.mmap"
    data = yr if order == "C" else yr.T  # C: pixel-major rows; F: frame-major
    np.ascontiguousarray(data).tofile(folder / name)
    return str(folder / name)


@pytest.mark.parametrize("order,prefix", [("C", "memmap_"), ("F", "Yr")])
def test_caiman_mmap_both_orders(tmp_path: pathlib.Path, frames: np.ndarray, order: str,
                                 prefix: str) -> None:
    path = _write_caiman_mmap(tmp_path, frames, order, prefix)
    movie = open_movie(path, chunks=(5, -1, -1))
    assert movie.data.dtype == np.float32
    np.testing.assert_array_equal(movie.data.compute(), frames.astype(np.float32))
    np.testing.assert_array_equal(movie.data[4:7, 3:9, 1:4].compute(),
                                  frames[4:7, 3:9, 1:4].astype(np.float32))
    yr = np.fromfile(path, dtype=np.float32).reshape((-1, 12) if order == "C" else (12, -1))
    pixel = (5 + 24 * 7)  # x=5 (d1), y=7 (d2)
    series = yr[pixel] if order == "C" else yr[:, pixel]
    np.testing.assert_array_equal(series, frames[:, 5, 7])


def test_caiman_mmap_volume_and_bad_names(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    volume = frames.reshape(6, 2, 24, 32).transpose(0, 2, 3, 1)  # (T, d1, d2, d3=2), CaImAn's
    path = _write_caiman_mmap(tmp_path, np.ascontiguousarray(volume), "F", "vol")
    movie = open_movie(path)
    assert movie.metadata.dims == ("T", "Z", "Y", "X")
    np.testing.assert_array_equal(movie.data.compute(), volume.transpose(0, 3, 1, 2))
    assert parse_mmap_name("x_d1_5_d2_6_d3_1_order_F_frames_7_.mmap") == ((5, 6, 1), "F", 7)
    (tmp_path / "bad.mmap").write_bytes(b"\0" * 16)
    with pytest.raises(MovieError, match="cannot read dims"):
        open_movie(tmp_path / "bad.mmap")
    (tmp_path / "m_d1_4_d2_4_d3_1_order_C_frames_9.mmap").write_bytes(b"\0" * 16)
    with pytest.raises(MovieError, match="announces"):
        open_movie(tmp_path / "m_d1_4_d2_4_d3_1_order_C_frames_9.mmap")


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_bare_arrays_and_groups(tmp_path: pathlib.Path, frames: np.ndarray,
                                     fmt: int) -> None:
    bare = zarr.create_array(tmp_path / "bare.zarr", shape=frames.shape, dtype=frames.dtype,
                             chunks=(4, 12, 32), zarr_format=fmt)
    bare[:] = frames
    movie = open_movie(tmp_path / "bare.zarr")
    assert movie.data.chunks[0][0] % 4 == 0
    np.testing.assert_array_equal(movie.data.compute(), frames)
    group = zarr.open_group(tmp_path / "group.zarr", mode="w", zarr_format=fmt)
    group.create_array("a/mov", shape=frames.shape, dtype=frames.dtype)[:] = frames
    group.create_array("b", shape=(2, 3, 4), dtype="f4")
    with pytest.raises(MovieError, match="a/mov, b"):
        open_movie(tmp_path / "group.zarr")
    np.testing.assert_array_equal(open_movie(tmp_path / "group.zarr", dataset="a/mov").data,
                                  frames)


def test_fsspec_memory_urls(frames: np.ndarray) -> None:
    fs = fsspec.filesystem("memory")
    with fs.open("/readers/m.tif", "wb") as fh:
        tifffile.imwrite(fh, frames, compression="zlib")
    with fs.open("/readers/raw.tif", "wb") as fh:
        tifffile.imwrite(fh, frames)
    with fs.open("/readers/m.h5", "wb") as fh, h5py.File(fh, "w") as f:
        f.create_dataset("mov", data=frames, chunks=(3, 24, 32))
    z = zarr.create_array("memory://readers/m.zarr", shape=frames.shape, dtype=frames.dtype)
    z[:] = frames
    try:
        for url in ("memory://readers/m.tif", "memory://readers/raw.tif",
                    "memory://readers/m.h5", "memory://readers/m.zarr"):
            movie = open_movie(url, chunks=(5, -1, -1))
            # memory:// lives in this process only: not on a default cluster's workers
            np.testing.assert_array_equal(movie.data.compute(scheduler="threads"), frames)
            assert movie.metadata.sources[0].path == url
    finally:
        fs.rm("/readers", recursive=True)


def test_sima_example_tif_and_h5_agree(shared_data: pathlib.Path) -> None:
    folder = shared_data / "sima-example"
    tif = open_movie(folder / "example.tif")
    h5 = open_movie(folder / "example.h5", dataset="imaging", axes="YXT")
    assert tif.shape == h5.shape == (20, 128, 256)
    np.testing.assert_array_equal(tif.data.compute(), h5.data.compute())


def test_neurofinder_matches_tifffile(neurofinder_tif: pathlib.Path) -> None:
    movie = open_movie(neurofinder_tif)
    assert movie.shape == (600, 256, 256) and movie.dtype == np.uint16
    np.testing.assert_array_equal(movie.data[100:180].compute(),
                                  tifffile.imread(neurofinder_tif, key=range(100, 180)))


def _truncated_tiff(tmp_path: pathlib.Path, frames: np.ndarray, **kwargs: object) -> pathlib.Path:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, frames, **kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


@pytest.mark.parametrize("kwargs", [{}, {"compression": "zlib"}, {"imagej": True}])
def test_truncated_tiff(tmp_path: pathlib.Path, frames: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(MovieError, match="cut.tif.*(truncated|damaged)"):
        open_movie(_truncated_tiff(tmp_path, frames, **kwargs))


def test_bad_inputs(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(MovieError, match="empty file"):
        open_movie(tmp_path / "empty.tif")
    with pytest.raises(MovieNotFoundError, match="no such file"):
        open_movie(tmp_path / "missing.tif")
    np.save(tmp_path / "c.npy", frames.astype(np.complex64))
    with pytest.raises(MovieError, match="complex64 is not supported"):
        open_movie(tmp_path / "c.npy")
    np.save(tmp_path / "b.npy", frames > 5)
    with pytest.raises(MovieError, match="bool is not supported"):
        open_movie(tmp_path / "b.npy")
    (tmp_path / "x.dat").write_bytes(b"hello world")
    with pytest.raises(MovieError, match="unknown movie format"):
        open_movie(tmp_path / "x.dat")
    (tmp_path / "dir").mkdir()
    with pytest.raises(MovieError, match="not a zarr store"):
        open_movie(tmp_path / "dir")
    tifffile.imwrite(tmp_path / "ok.tif", frames)
    with pytest.raises(ParameterError, match="axes= applies"):
        open_movie(tmp_path / "ok.tif", axes="TYX")
    with pytest.raises(ParameterError, match="chunks="):
        open_movie(tmp_path / "ok.tif", chunks=(5, 5))
