"""rechunk_store and the CNMF source preparation: bytes preserved, one task per shard."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import zarr

from caiman_dask.cnmf.driver_source import prepare_source
from caiman_dask.errors import ParameterError, StoreExistsError
from caiman_dask.layout import StoreLayout
from caiman_dask.movie import open_store, to_zarr
from caiman_dask.movie.rechunk import read_cost, rechunk_store, source_layout
from caiman_dask.movie.zarrio import store_attrs
from caiman_dask.plan import plan_chunks
from caiman_dask.view import SerialView


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray]:
    frames = np.random.default_rng(5).integers(0, 3000, size=(120, 40, 48), dtype=np.uint16)
    path = tmp_path_factory.mktemp("rechunk") / "raw.zarr"
    np.save(path.with_suffix(".npy"), frames)
    to_zarr(str(path.with_suffix(".npy")), str(path), chunks=(20, 40, 48), fr=10.0)
    return str(path), frames


@pytest.fixture()
def view():
    v = SerialView()
    yield v
    v.shutdown()


def test_rechunk_copies_every_byte_into_the_new_layout(raw, view, tmp_path) -> None:
    source, frames = raw
    layout = StoreLayout((120, 40, 48), "float32", (120, 8, 12), (120, 40, 24))
    dest = rechunk_store(source, str(tmp_path / "r.zarr"), layout, view=view)
    array = zarr.open_group(dest, mode="r")["movie"]
    assert array.chunks == (120, 8, 12) and array.shards == (120, 40, 24)
    np.testing.assert_array_equal(array[:], frames.astype(np.float32))
    attrs = store_attrs(dest)
    assert attrs["complete"] is True and attrs["rechunk"]["source"] == source
    assert open_store(dest).metadata.fr == 10.0
    assert source_layout(dest) == layout


def test_rechunk_refuses_existing_destination_and_wrong_shape(raw, view, tmp_path) -> None:
    source, _ = raw
    layout = StoreLayout((120, 40, 48), "float32", (120, 8, 12))
    dest = rechunk_store(source, str(tmp_path / "r.zarr"), layout, view=view)
    with pytest.raises(StoreExistsError):
        rechunk_store(source, dest, layout, view=view)
    rechunk_store(source, dest, layout, view=view, overwrite=True)
    with pytest.raises(ParameterError, match="shape"):
        rechunk_store(source, str(tmp_path / "x.zarr"),
                      StoreLayout((100, 40, 48), "float32", (100, 8, 12)), view=view)
    assert not (tmp_path / "x.zarr").exists()


def test_cnmf_source_goes_through_time_blocks_when_reads_amplify(raw, view,
                                                                   tmp_path: pathlib.Path) -> None:
    source, frames = raw
    plan = plan_chunks((120, 40, 48), "uint16", rf=8, stride=4, num_frames_split=20,
                       rechunk=True, max_shard_bytes=120_000, chunk_bytes=(1000, 100_000))
    assert read_cost(source_layout(source), plan.rechunked) > 4.0  # whole frames per read
    path = prepare_source(source, plan, view=view, work_dir=str(tmp_path))
    assert source_layout(path).chunks == plan.rechunked.chunks
    assert source_layout(str(tmp_path / "cnmf-blocks.zarr")).chunks == plan.corrected.chunks
    copied = zarr.open_group(path, mode="r")["movie"][:]
    assert copied.dtype == np.uint16  # 16-bit integers keep their dtype: half the disk
    assert source_layout(str(tmp_path / "cnmf-blocks.zarr")).dtype == "uint16"
    np.testing.assert_array_equal(copied, frames)
    again = prepare_source(source, plan, view=view, work_dir=str(tmp_path))  # reused
    assert again == path and store_attrs(path)["complete"] is True
