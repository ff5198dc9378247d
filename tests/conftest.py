"""Shared fixtures: real data from ../shared, real clusters on free ports."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("CAIMAN_DASK_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """Path of ``../shared/data``; skips (locally) or fails (in CI) when absent."""
    path = SHARED / "data"
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared data beside the checkout: {path} is missing")
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def neurofinder_tif(shared_data: pathlib.Path) -> pathlib.Path:
    """The real 600x256x256 neurofinder crop (uint16, zlib TIFF)."""
    return shared_data / "neurofinder-00.00-crop" / "movie.tif"


@pytest.fixture(scope="session")
def dask_cluster():
    """A real 2-worker LocalCluster started by ``setup_cluster``: ``(client, dview)``."""
    import caiman_dask

    client, dview, _ = caiman_dask.setup_cluster(n_processes=2, threads_per_worker=1,
                                                 memory_limit="2GB")
    yield client, dview
    caiman_dask.stop_server(dview)
