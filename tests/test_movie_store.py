"""to_zarr / open_store: round trips, atomic completion, refusals, parallel = serial, CLI."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pathlib
import tracemalloc

import dask.array as da
import distributed
import h5py
import numpy as np
import pytest
import tifffile
import zarr

from caiman_dask.cli import convert as convert_cli
from caiman_dask.errors import (
    IncompleteStoreError,
    MovieError,
    MovieNotFoundError,
    ParameterError,
    StoreExistsError,
)
from caiman_dask.movie import Movie, open_movie, open_store, to_zarr
from caiman_dask.plan import plan_chunks
from caiman_dask.progress import Progress

SMALL_GEOMETRY = {"rf": 8, "strides": (16, 16), "overlaps": (8, 8), "num_frames_split": 10}


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 4000, size=(50, 40, 48), dtype=np.uint16)


@pytest.fixture()
def tif(tmp_path: pathlib.Path, frames: np.ndarray) -> pathlib.Path:
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, frames, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "TYX", "finterval": 0.1, "unit": "um"})
    return path


def _attrs(store: pathlib.Path) -> dict:
    return json.loads((store / "zarr.json").read_text())["attributes"]["caiman_dask"]


def test_neurofinder_round_trip_auto_plan(tmp_path: pathlib.Path,
                                          neurofinder_tif: pathlib.Path) -> None:
    out = tmp_path / "nf.zarr"
    movie = to_zarr(neurofinder_tif, out)
    np.testing.assert_array_equal(movie.data.compute(), tifffile.imread(neurofinder_tif))
    attrs = _attrs(out)
    assert attrs["complete"] is True and attrs["format_version"] == 1
    assert attrs["dtype"] == "uint16" and attrs["dims"] == ["T", "Y", "X"]
    assert attrs["plan"]["raw"] == attrs["layout"] and attrs["plan"]["rf"] == [25, 25]
    digest = hashlib.sha256(neurofinder_tif.read_bytes()).hexdigest()
    assert attrs["sources"] == [{"path": str(neurofinder_tif), "size": 60719769,
                                 "format": "tiff", "checksum": f"sha256:{digest}"}]
    assert movie.metadata.sources[0].checksum == f"sha256:{digest}"
    assert movie.metadata.format == "caiman-dask-store"
    again = open_movie(out)
    assert again.metadata == movie.metadata and again.data.chunks == movie.data.chunks


def test_plan_shards_metadata_and_overrides(tmp_path: pathlib.Path, tif: pathlib.Path,
                                            frames: np.ndarray) -> None:
    plan = plan_chunks(frames.shape, frames.dtype, chunk_bytes=(1024, 16384), **SMALL_GEOMETRY)
    assert plan.raw.shards is not None
    out = tmp_path / "sharded.zarr"
    movie = to_zarr(tif, out, chunks=plan)
    array = zarr.open_group(out, mode="r")["movie"]
    assert array.shards == plan.raw.shards and array.chunks == plan.raw.chunks
    assert array.metadata.dimension_names == ("T", "Y", "X")
    assert movie.metadata.fr == pytest.approx(10.0)
    assert movie.metadata.dxy == pytest.approx((0.5, 0.5))
    np.testing.assert_array_equal(movie.data.compute(), frames)
    other = to_zarr(tif, tmp_path / "o.zarr", chunks=(7, 20, -1), fr=30.0, dxy=(0.9, 1.1))
    assert other.metadata.fr == 30.0 and other.metadata.dxy == (0.9, 1.1)
    assert other.metadata.plan is None
    assert zarr.open_group(tmp_path / "o.zarr", mode="r")["movie"].chunks == (7, 20, 48)


def test_formats_to_store_keep_dtype(tmp_path: pathlib.Path, frames: np.ndarray) -> None:
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.create_dataset("data", data=frames.astype(np.int16).transpose(1, 2, 0))
    movie = to_zarr(tmp_path / "m.h5", tmp_path / "h.zarr", axes="YXT", **SMALL_GEOMETRY)
    assert movie.dtype == np.int16
    np.testing.assert_array_equal(movie.data.compute(), frames.astype(np.int16))
    volume = frames.reshape(25, 2, 40, 48).astype(np.float32)
    np.save(tmp_path / "v.npy", volume)
    with pytest.raises(ParameterError, match="explicit chunks"):
        to_zarr(tmp_path / "v.npy", tmp_path / "v.zarr")
    stored = to_zarr(tmp_path / "v.npy", tmp_path / "v.zarr", chunks=(5, 1, 40, 48))
    assert stored.metadata.dims == ("T", "Z", "Y", "X") and stored.dtype == np.float32
    np.testing.assert_array_equal(stored.data.compute(), volume)


def test_sima_example_both_files_convert_identically(tmp_path: pathlib.Path,
                                                     shared_data: pathlib.Path) -> None:
    folder = shared_data / "sima-example"
    kw = {"rf": 10, "strides": (48, 48), "overlaps": (16, 16)}
    a = to_zarr(folder / "example.tif", tmp_path / "t.zarr", **kw)
    b = to_zarr(folder / "example.h5", tmp_path / "h.zarr", dataset="imaging", axes="YXT", **kw)
    np.testing.assert_array_equal(a.data.compute(), b.data.compute())


def _data_files(store: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != "zarr.json"}


def test_parallel_conversion_equals_in_process(tmp_path: pathlib.Path, tif: pathlib.Path,
                                               frames: np.ndarray) -> None:
    plan = plan_chunks(frames.shape, frames.dtype, chunk_bytes=(1024, 16384), **SMALL_GEOMETRY)
    serial = to_zarr(tif, tmp_path / "serial.zarr", chunks=plan)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        parallel = to_zarr(tif, tmp_path / "parallel.zarr", chunks=plan, client=client)
        np.testing.assert_array_equal(parallel.data.compute(), frames)
    a, b = _data_files(tmp_path / "serial.zarr"), _data_files(tmp_path / "parallel.zarr")
    assert len(a) == len(b) >= 5 and a == b
    assert serial.metadata == parallel.metadata


@pytest.mark.parametrize("case", ["truncated", "mismatched", "complex", "no-dataset", "empty"])
def test_bad_inputs_write_nothing(tmp_path: pathlib.Path, frames: np.ndarray, case: str) -> None:
    if case == "truncated":
        tifffile.imwrite(tmp_path / "a.tif", frames)
        data = (tmp_path / "a.tif").read_bytes()
        (tmp_path / "a.tif").write_bytes(data[: len(data) // 2])
        source, error, match = tmp_path / "a.tif", MovieError, "truncated|damaged"
    elif case == "mismatched":
        tifffile.imwrite(tmp_path / "a.tif", frames)
        tifffile.imwrite(tmp_path / "b.tif", frames[:, :, :40])
        source, error, match = [tmp_path / "a.tif", tmp_path / "b.tif"], MovieError, "b.tif"
    elif case == "complex":
        np.save(tmp_path / "c.npy", frames.astype(np.complex64))
        source, error, match = tmp_path / "c.npy", MovieError, "complex64"
    elif case == "no-dataset":
        with h5py.File(tmp_path / "m.h5", "w") as f:
            f.create_dataset("data", data=frames)
        source, error, match = tmp_path / "m.h5", MovieNotFoundError, "no dataset 'mov'"
    else:
        (tmp_path / "e.tif").write_bytes(b"")
        source, error, match = tmp_path / "e.tif", MovieError, "empty file"
    dest = tmp_path / "out.zarr"
    with pytest.raises(error, match=match):
        to_zarr(source, dest, dataset="mov" if case == "no-dataset" else None, **SMALL_GEOMETRY)
    assert not dest.exists()


def test_existing_destinations(tmp_path: pathlib.Path, tif: pathlib.Path,
                               frames: np.ndarray) -> None:
    foreign = tmp_path / "foreign.zarr"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    plain = tmp_path / "file.zarr"
    plain.write_text("not a store")
    for dest in (foreign, plain):
        for overwrite in (False, True):
            with pytest.raises(StoreExistsError, match="already exists|not a caiman-dask store"):
                to_zarr(tif, dest, overwrite=overwrite, **SMALL_GEOMETRY)
    assert (foreign / "precious.txt").read_text() == "keep me"
    assert plain.read_text() == "not a store"
    ours = tmp_path / "ours.zarr"
    to_zarr(tif, ours, chunks=(10, -1, -1))
    with pytest.raises(StoreExistsError, match="overwrite=True"):
        to_zarr(tif, ours, chunks=(10, -1, -1))
    np.save(tmp_path / "short.npy", frames[:7])
    replaced = to_zarr(tmp_path / "short.npy", ours, chunks=(5, -1, -1), overwrite=True)
    assert replaced.shape == (7, 40, 48) and not (ours / "movie" / "c" / "3").exists()
    with pytest.raises(ParameterError, match=r"is \(or holds\) the input"):
        to_zarr(ours, ours, overwrite=True, chunks=(5, -1, -1))


def _failing_movie(frames: np.ndarray, fail_block: int) -> Movie:
    def block(x: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        if block_info is not None and block_info[0]["chunk-location"][0] == fail_block:
            raise OSError("disk vanished while reading")
        return x

    good = open_movie_from_array(frames)
    return Movie(data=good.data.map_blocks(block, dtype=frames.dtype), metadata=good.metadata)


def open_movie_from_array(frames: np.ndarray) -> Movie:
    from caiman_dask.movie.model import MovieMetadata

    meta = MovieMetadata(fr=None, dxy=None, dims=("T", "Y", "X"), dtype=str(frames.dtype),
                         sources=(), shape=frames.shape, format="array")
    return Movie(data=da.from_array(frames, chunks=(10, -1, -1)), metadata=meta)


def test_interrupted_store_is_never_complete(tmp_path: pathlib.Path, tif: pathlib.Path,
                                             frames: np.ndarray) -> None:
    dest = tmp_path / "cut.zarr"
    with pytest.raises(OSError, match="disk vanished") as failure:
        to_zarr(_failing_movie(frames, 3), dest, chunks=(10, -1, -1))
    assert "left incomplete" in failure.value.__notes__[0]
    assert _attrs(dest)["complete"] is False
    for opener in (open_movie, open_store):
        with pytest.raises(IncompleteStoreError, match="interrupted.*overwrite=True"):
            opener(dest)
    with pytest.raises(StoreExistsError):
        to_zarr(tif, dest, chunks=(10, -1, -1))
    np.testing.assert_array_equal(
        to_zarr(tif, dest, chunks=(10, -1, -1), overwrite=True).data.compute(), frames)
    with pytest.raises(MovieError, match="not a caiman-dask store"):
        open_store(tmp_path)


def _peak_bytes(tmp_path: pathlib.Path, n_frames: int) -> int:
    rng = da.random.default_rng(0)
    data = rng.integers(0, 1000, (n_frames, 256, 256), chunks=(240, 256, 256), dtype=np.uint16)
    movie = open_movie_from_array(np.zeros((1, 256, 256), np.uint16))
    movie = Movie(data=data, metadata=movie.metadata)
    tracemalloc.start()
    try:
        to_zarr(movie, tmp_path / f"long{n_frames}.zarr", chunks=(80, 256, 256))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_length(tmp_path: pathlib.Path) -> None:
    block = 240 * 256 * 256 * 2  # 31 MB: the write block (3 chunks of 80 frames)
    short, long = _peak_bytes(tmp_path, 480), _peak_bytes(tmp_path, 3600)  # 2 and 15 blocks
    assert long < short + 2 * block, (short, long)
    assert long < 8 * block < 0.6 * 3600 * 256 * 256 * 2, long


def test_progress_plain_and_terminal() -> None:
    plain = io.StringIO()
    with Progress("convert", total=4, stream=plain, interval=0.0) as p:
        for _ in range(4):
            p.advance(1)
    lines = plain.getvalue().splitlines()
    assert lines[0].startswith("convert: 1/4 (25%)") and "ETA" in lines[0]
    assert lines[-1].startswith("convert: 4/4 (100%)") and len(lines) == 4

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    with Progress("convert", total=2, stream=term) as p:
        p.advance(1)
    text = term.getvalue()
    assert text.startswith("\rconvert [###############...............] 1/2 (50%)")
    assert text.endswith("(stopped)\x1b[K\n") is False and text.endswith("\n")
    silent = io.StringIO()
    with Progress("x", total=1, stream=silent, enabled=False) as p:
        p.advance(1)
    assert silent.getvalue() == ""


def test_cli_convert(tmp_path: pathlib.Path, tif: pathlib.Path, frames: np.ndarray,
                     capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    convert_cli.register(parser.add_subparsers())
    out = tmp_path / "cli.zarr"
    args = parser.parse_args(["convert", str(tif), "-o", str(out), "--chunks", "10,-1,-1",
                              "--fr", "7.5", "--dxy", "1.15", "--n-workers", "1"])
    assert args.run(args) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}: (50, 40, 48) uint16" in captured.out
    assert "convert: 2/2 (100%)" in captured.err  # one block + one checksum
    stored = open_store(str(out))
    assert stored.metadata.fr == 7.5 and stored.metadata.dxy == (1.15, 1.15)
    np.testing.assert_array_equal(stored.data.compute(), frames)
    with pytest.raises(SystemExit):
        parser.parse_args(["convert", str(tif), "-o", str(out), "--chunks", "a,b"])
