"""Workers as real Grid Engine jobs (.ci/services/sge-up.sh): cluster, failure, main job."""

from __future__ import annotations

import time

import pytest
from batch_scheduler import (
    batch_config,
    check_cluster,
    check_main_job,
    demo_run,
    numpy_task,
    scheduler_env,
    wait_empty,
)

pytestmark = [pytest.mark.sge, pytest.mark.timeout(240)]


@pytest.fixture(autouse=True)
def sge(monkeypatch):
    pytest.importorskip("dask_jobqueue")
    for name, value in scheduler_env("sge").items():
        monkeypatch.setenv(name, value)


def test_workers_are_pinned_tls_jobs_and_a_cancelled_job_is_replaced(tmp_path, dask_cluster):
    _, local = dask_cluster
    check_cluster("sge", tmp_path, local.map_sync(numpy_task, range(20)))


def test_a_job_that_never_starts_is_a_clear_error(tmp_path):
    import dask.config

    import caiman_dask
    from caiman_dask.errors import ClusterError

    with dask.config.set({**batch_config("sge", tmp_path),
                          "caiman-dask.jobqueue.job-extra-directives": ["-a 209912312359"]}):
        start = time.monotonic()
        with pytest.raises(ClusterError, match="did not start within 8 s"):
            caiman_dask.setup_cluster("sge", 1, memory_limit="1GB", timeout=8)
    assert time.monotonic() - start < 30
    assert wait_empty("sge") == []


def test_main_job_on_sge_with_a_job_cancelled_equals_local(tmp_path_factory):
    check_main_job("sge", *demo_run(tmp_path_factory))
