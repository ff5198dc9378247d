"""S3 round trip against a moto server on loopback, read and written by worker processes."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Iterator
from typing import Any

import distributed
import numpy as np
import pytest
import tifffile
from moto_server import moto_server

from caiman_dask.errors import StoreExistsError
from caiman_dask.movie import open_movie, open_store, to_zarr
from caiman_dask.plan import plan_chunks

pytestmark = pytest.mark.s3
BUCKET = "movies"


@pytest.fixture(scope="module")
def s3_options() -> Iterator[dict[str, Any]]:
    """Storage options of a fresh moto S3 server (no region: see docs/real-services.md)."""
    with moto_server() as endpoint:
        yield {"key": "testing", "secret": "testing", "endpoint_url": endpoint}


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def test_s3_tiff_to_s3_store_on_worker_processes(tmp_path: pathlib.Path,
                                                 s3_options: dict[str, Any],
                                                 client: distributed.Client) -> None:
    import s3fs

    frames = np.random.default_rng(5).integers(0, 5000, (60, 64, 80), dtype=np.uint16)
    local = tmp_path / "in.tif"
    tifffile.imwrite(local, frames, compression="zlib")
    fs = s3fs.S3FileSystem(**s3_options)
    fs.mkdir(BUCKET)
    fs.put(str(local), f"{BUCKET}/in.tif")
    source = f"s3://{BUCKET}/in.tif"

    lazy = open_movie(source, storage_options=s3_options, chunks=(16, -1, -1))
    np.testing.assert_array_equal(client.compute(lazy.data).result(), frames)

    plan = plan_chunks(frames.shape, frames.dtype, rf=8, strides=(24, 24), overlaps=(8, 8),
                       num_frames_split=10, chunk_bytes=(4096, 65536))
    dest = f"s3://{BUCKET}/out.zarr"
    movie = to_zarr(source, dest, chunks=plan, client=client, storage_options=s3_options)
    np.testing.assert_array_equal(client.compute(movie.data).result(), frames)
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    assert movie.metadata.sources[0].checksum == f"sha256:{digest}"
    assert movie.metadata.sources[0].path == source
    assert plan.raw.shards == (10, 64, 80) and fs.exists(f"{BUCKET}/out.zarr/movie/c/5/0/0")

    again = open_store(dest, storage_options=s3_options)
    assert again.metadata == movie.metadata
    np.testing.assert_array_equal(client.compute(again.data[20:40]).result(), frames[20:40])
    with pytest.raises(StoreExistsError, match="already exists"):
        to_zarr(source, dest, chunks=plan, storage_options=s3_options)
    replaced = to_zarr(lazy, dest, chunks=(20, -1, -1), overwrite=True,
                       storage_options=s3_options)  # in-process this time, from a Movie
    fs.invalidate_cache()
    assert replaced.metadata.plan is None and replaced.data.chunksize == (20, 64, 80)
    assert not fs.exists(f"{BUCKET}/out.zarr/movie/c/5/0/0")  # the old store's last shard
    np.testing.assert_array_equal(replaced.data.compute(), frames)
