"""Helpers of tests/test_batch_systems.py: a real batch system on this machine.

The systems are started by ``.ci/services/{slurm,sge}-up.sh``, which write the environment
to use them to a known file. Without it the tests skip, unless
``CAIMAN_DASK_REQUIRE_SCHEDULERS=1`` (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from estimates_check import assert_identical

TESTS = pathlib.Path(__file__).resolve().parent
ENV_FILES = {kind: pathlib.Path(os.environ.get(f"CAIMAN_DASK_{kind.upper()}_DIR",
                                               f"/tmp/caiman-dask-{kind}")) / "env"
             for kind in ("slurm", "sge")}
PROBES = {"slurm": ["sinfo", "-h", "-o", "%T"], "sge": ["qstat", "-f"]}
QUEUES = {"slurm": ["squeue", "-h", "-o", "%i"], "sge": ["qstat"]}
CANCEL = {"slurm": "scancel", "sge": "qdel"}


def scheduler_env(kind: str) -> dict[str, str]:
    """Variables of the running ``kind``, or skip (fail under CAIMAN_DASK_REQUIRE_SCHEDULERS)."""
    env: dict[str, str] = {}
    path = ENV_FILES[kind]
    if path.is_file():
        for word in shlex.split(path.read_text().replace("export ", " ")):
            name, _, value = word.partition("=")
            env[name] = value
    probe = subprocess.run(PROBES[kind], env={**os.environ, **env}, capture_output=True,
                           text=True, timeout=30) if env else None
    if probe is None or probe.returncode != 0:
        why = f"{kind} is not up: run .ci/services/{kind}-up.sh ({path} missing or not working)"
        if os.environ.get("CAIMAN_DASK_REQUIRE_SCHEDULERS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return env


def batch_config(kind: str, logs: pathlib.Path) -> dict[str, Any]:
    """Dask config for tests: loopback scheduler, job logs in ``logs``, tests importable."""
    return {
        "caiman-dask.jobqueue.scheduler-host": "127.0.0.1",
        "caiman-dask.jobqueue.shared-temp-directory": str(logs),
        "caiman-dask.jobqueue.walltime": "00:20:00",
        "caiman-dask.jobqueue.replace-interval": 1,
        "caiman-dask.jobqueue.job-script-prologue": [f"export PYTHONPATH={TESTS}"],
        "distributed.deploy.lost-worker-timeout": "1s",
        f"jobqueue.{kind}.log-directory": str(logs),
    }


def job_ids(kind: str) -> list[str]:
    """Ids of the jobs in the batch system's queue."""
    out = subprocess.run(QUEUES[kind], capture_output=True, text=True, timeout=30).stdout
    lines = out.splitlines()
    if kind == "sge":
        lines = [line.split()[0] for line in lines[2:] if line.strip()]
    return [line.strip() for line in lines if line.strip()]


def wait_empty(kind: str, timeout: float = 30) -> list[str]:
    """Wait until the queue is empty; return what is left."""
    deadline = time.monotonic() + timeout
    while (left := job_ids(kind)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def cancel_later(kind: str, when: Callable[[], bool]) -> dict[str, Any]:
    """Cancel one of the queue's jobs (scancel/qdel) once ``when()`` is true and 2 are queued.

    Returns a dict that gets ``job`` (the id) and ``at`` (monotonic time) once done.
    """
    done: dict[str, Any] = {}

    def run() -> None:
        deadline = time.monotonic() + 120
        while not when() and time.monotonic() < deadline:
            time.sleep(0.05)
        while len(jobs := job_ids(kind)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        if jobs:
            subprocess.run([CANCEL[kind], jobs[0]], capture_output=True, timeout=30)
            done.update(job=jobs[0], at=time.monotonic())

    threading.Thread(target=run, daemon=True).start()
    return done


def numpy_task(seed: int) -> float:
    """A fixed numpy workload: singular values of a seeded 200x200 matrix, after a pause."""
    time.sleep(0.3)
    matrix = np.random.default_rng(seed).standard_normal((200, 200))
    return float(np.linalg.svd(matrix, compute_uv=False).sum())


def summary(outdir: pathlib.Path) -> dict[str, Any]:
    """The run's summary.json."""
    return json.loads((outdir / "summary.json").read_text())
def check_cluster(kind: str, logs: pathlib.Path, reference: list[float]) -> None:
    """Workers as real jobs: pinning, TLS, a map surviving a cancelled job, clean teardown."""
    import dask.config
    from distributed import Client
    from distributed.security import Security

    import caiman_dask
    from caiman_dask.cluster.pinning import threading_report

    with dask.config.set(batch_config(kind, logs)):
        client, dview, n = caiman_dask.setup_cluster(kind, 2, memory_limit="1GB",
                                                     threads_per_worker=1, timeout=90)
    try:
        assert n == 2 and len(job_ids(kind)) == 2
        for report in client.run(threading_report).values():
            assert set(report["threadpools"].values()) == {1}, report
            assert report["opencv_threads"] == 1 and report["env"]["OMP_NUM_THREADS"] == "1"
            assert report["env"]["MALLOC_TRIM_THRESHOLD_"] is None  # the malloc fix
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert "127.0.0.1" in client.dashboard_link
        for other, security in ((address.replace("tls://", "tcp://"), Security()),
                                (address, Security.temporary())):  # no / other certificates
            with pytest.raises((OSError, TimeoutError)):
                Client(other, security=security, timeout=3)
        before = set(job_ids(kind))
        start = time.monotonic()
        cancelled = cancel_later(kind, lambda: time.monotonic() > start + 1.0)
        assert dview.map_sync(numpy_task, range(20)) == reference
        assert cancelled.get("job") in before and cancelled["at"] < time.monotonic()
        client.wait_for_workers(2, timeout=60)  # the cancelled job was replaced
        assert len(set(job_ids(kind)) - before) >= 1
    finally:
        caiman_dask.stop_server(dview)
    assert wait_empty(kind) == []


def check_main_job(kind: str, folder: pathlib.Path, movie: pathlib.Path,
                   params: pathlib.Path, local_out: pathlib.Path) -> None:
    """The main job with workers as jobs, one cancelled mid-run, equals the LocalCluster run."""
    import dask.config

    from caiman_dask.pipeline import run
    from caiman_dask.results import load_estimates

    out = folder / kind
    with dask.config.set(batch_config(kind, folder)):
        start = time.monotonic()
        cancelled = cancel_later(kind, lambda: (out / "corrected.zarr").exists()
                                 or time.monotonic() > start + 60)  # motion correction
        run(str(movie), str(out), params=str(params), backend=kind, n_workers=2,
            memory_limit="1GB", threads_per_worker=1)
    assert "job" in cancelled, "no job was cancelled during the run"
    a, _ = load_estimates(local_out / "results.hdf5")
    b, _ = load_estimates(out / "results.hdf5")
    assert_identical(b, a)
    assert wait_empty(kind) == []


_DEMO: dict[str, Any] = {}


def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A small demo movie, its parameters and its LocalCluster run (made once per session):
    ``(folder, movie, params, local_out)``."""
    from caiman_dask.demo import DEMO_PARAMS, make_demo_movie
    from caiman_dask.pipeline import run

    if not _DEMO:
        folder = tmp_path_factory.mktemp("batch-main-job")
        demo = make_demo_movie(folder / "input", dims=(64, 64), n_frames=200, n_neurons=10,
                               seed=2)
        params = folder / "params.json"
        params.write_text(json.dumps(DEMO_PARAMS))
        local = folder / "local"
        run(str(demo.path), str(local), params=str(params), backend="local", n_workers=2,
            memory_limit="1GB", threads_per_worker=1)
        _DEMO["run"] = (folder, demo.path, params, local)
    return _DEMO["run"]
