"""Direct whole-shard writes (caiman_dask.movie.shards) against zarr's own writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from caiman_dask.movie import shards
from caiman_dask.movie.shards import write_region

LAYOUTS = [  # shape, inner chunks, shards: whole shards, edge shards, a short last shard
    ((160, 64, 64), (80, 32, 32), (80, 64, 64)),
    ((170, 50, 70), (40, 16, 24), (80, 32, 48)),
    ((100, 45, 33), (20, 45, 33), (40, 45, 33)),
]


def _pair(tmp_path, shape, chunks, shard_shape, **kwargs):
    make = dict(shape=shape, chunks=chunks, shards=shard_shape, dtype="f4", fill_value=0,
                **{"compressors": None, **kwargs})
    return (zarr.create_array(tmp_path / "direct.zarr", **make),
            zarr.create_array(tmp_path / "zarr.zarr", **make))


@pytest.mark.parametrize(("shape", "chunks", "shard_shape"), LAYOUTS)
def test_direct_shards_read_back_as_zarrs_own(tmp_path, shape, chunks, shard_shape):
    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    direct, reference = _pair(tmp_path, shape, chunks, shard_shape)
    for start in range(0, shape[0], shard_shape[0]):
        stop = min(start + shard_shape[0], shape[0])
        assert shards._direct_possible(direct, start, stop, data[start:stop])
        write_region(direct, start, stop, data[start:stop])
        reference[start:stop] = data[start:stop]
    reopened = zarr.open_array(tmp_path / "direct.zarr", mode="r")
    np.testing.assert_array_equal(reopened[:], data)
    np.testing.assert_array_equal(reopened[:], reference[:])
    part = (slice(3, shape[0] - 5), slice(2, shape[1] - 1), slice(1, shape[2] - 3))
    np.testing.assert_array_equal(reopened[part], data[part])  # partial chunk reads
    leftovers = [n for _, _, files in os.walk(tmp_path) for n in files if "partial" in n]
    assert leftovers == []


def test_rewriting_a_shard_replaces_it(tmp_path):
    direct, _ = _pair(tmp_path, *LAYOUTS[0])
    first = np.ones((80, 64, 64), np.float32)
    write_region(direct, 0, 80, first)
    write_region(direct, 0, 80, first * 2)
    np.testing.assert_array_equal(direct[:80], first * 2)


@pytest.mark.parametrize("case", ["compressed", "unaligned", "dtype"])
def test_other_layouts_and_regions_go_through_zarr(tmp_path, case):
    shape, chunks, shard_shape = LAYOUTS[0]
    kwargs = {"compressors": [BloscCodec(cname="lz4")]} if case == "compressed" else {}
    direct, _ = _pair(tmp_path, shape, chunks, shard_shape, **kwargs)
    start, stop = (40, 120) if case == "unaligned" else (0, 80)
    data = np.full((stop - start, *shape[1:]), 3, np.float64 if case == "dtype" else np.float32)
    assert not shards._direct_possible(direct, start, stop, data)
    write_region(direct, start, stop, data)
    np.testing.assert_array_equal(direct[start:stop], data.astype(np.float32))


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    direct, _ = _pair(tmp_path, *LAYOUTS[0])

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shards.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        write_region(direct, 0, 80, np.ones((80, 64, 64), np.float32))
    files = [n for _, _, names in os.walk(tmp_path / "direct.zarr") for n in names]
    assert files == ["zarr.json"]


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a tmpfs at /dev/shm")
def test_tmpfs_shards_are_written_with_or_without_o_direct(tmp_path):
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:  # O_DIRECT only on Linux >= 6.6
        data = np.random.default_rng(3).random((80, 64, 64), dtype=np.float32)
        array = zarr.create_array(os.path.join(shm, "a.zarr"), shape=(80, 64, 64),
                                  chunks=(80, 32, 32), shards=(80, 64, 64), dtype="f4",
                                  compressors=None, fill_value=0)
        write_region(array, 0, 80, data)
        np.testing.assert_array_equal(zarr.open_array(os.path.join(shm, "a.zarr"))[:], data)


def test_o_direct_takes_the_whole_pages_of_an_unaligned_body(tmp_path) -> None:
    """A shard body padded by edge chunks is rarely a whole number of pages: its whole
    pages still go around the page cache, the caller appends the rest."""
    raw = np.empty(4 * shards.ALIGN + 100, dtype=np.uint8)
    start = -raw.ctypes.data % shards.ALIGN
    body = raw[start:start + 3 * shards.ALIGN + 100]
    body[:] = np.arange(body.size) % 251
    path = tmp_path / "shard.partial"
    written = shards._write_direct(str(path), body)
    if written == 0:
        pytest.skip("this filesystem refuses O_DIRECT")
    assert written == 3 * shards.ALIGN
    assert path.read_bytes() == body[:written].tobytes()
