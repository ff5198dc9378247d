"""Workers as real SLURM and Grid Engine jobs (.ci/services/*-up.sh): cluster, failure,
main job. Each test runs once per batch system, under that system's marker."""

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

pytestmark = pytest.mark.timeout(240)

KINDS = [pytest.param("slurm", marks=pytest.mark.slurm, id="slurm"),
         pytest.param("sge", marks=pytest.mark.sge, id="sge")]
#: A directive that holds a job in the queue for an hour (it never starts in the test).
HOLD = {"slurm": "--begin=now+3600", "sge": "-a 209912312359"}


@pytest.fixture(params=KINDS)
def kind(request, monkeypatch) -> str:
    """The batch system, its client environment set (skips when it is not up)."""
    pytest.importorskip("dask_jobqueue")
    for name, value in scheduler_env(request.param).items():
        monkeypatch.setenv(name, value)
    return request.param


def test_workers_are_pinned_tls_jobs_and_a_cancelled_job_is_replaced(kind, tmp_path,
                                                                     dask_cluster):
    _, local = dask_cluster
    check_cluster(kind, tmp_path, local.map_sync(numpy_task, range(20)))


def test_a_job_that_never_starts_is_a_clear_error(kind, tmp_path):
    import dask.config

    import caiman_dask
    from caiman_dask.errors import ClusterError

    with dask.config.set({**batch_config(kind, tmp_path),
                          "caiman-dask.jobqueue.job-extra-directives": [HOLD[kind]]}):
        start = time.monotonic()
        with pytest.raises(ClusterError, match="did not start within 8 s"):
            caiman_dask.setup_cluster(kind, 1, memory_limit="1GB", timeout=8)
    assert time.monotonic() - start < 30
    assert wait_empty(kind) == []


def test_main_job_with_a_job_cancelled_equals_local(kind, tmp_path_factory):
    check_main_job(kind, *demo_run(tmp_path_factory))
