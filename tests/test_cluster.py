"""setup_cluster / stop_server on real LocalCluster processes."""

from __future__ import annotations

import socket
import time
from typing import Any

import psutil
import pytest
import view_tasks as vt
from distributed import Client, LocalCluster

import caiman_dask
from caiman_dask.cluster.pinning import threading_report
from caiman_dask.errors import BackendError, ClusterError, ParameterError, WorkerLostError


def _children() -> set[int]:
    """Live child processes, less multiprocessing's long-lived resource tracker."""
    return {p.pid for p in psutil.Process().children(recursive=True)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            and "resource_tracker" not in " ".join(p.cmdline())}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_backend_has_no_cluster():
    assert caiman_dask.setup_cluster("single") == (None, None, 1)


def test_returns_total_threads_and_a_pool_like_dview(dask_cluster):
    client, dview = dask_cluster
    assert sum(client.nthreads().values()) == 2 == len(dview)
    assert "multiprocessing" in str(type(dview))  # CaImAn's path choice
    assert dview.map_sync(vt.square, [2, 3]) == [4, 9]
    dview.results.clear()
    dview.clear()


def test_threads_pinned_inside_workers_even_against_the_users_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")
    client, dview, n = caiman_dask.setup_cluster(n_processes=1, threads_per_worker=2,
                                                 memory_limit="1GB")
    try:
        assert n == 2
        (report,) = client.run(threading_report).values()
        assert report["opencv_threads"] == 2
        pools = report["threadpools"].values()  # some bundled BLAS are built single-threaded
        assert max(pools) == 2 and all(n <= 2 for n in pools)
        assert report["env"]["OMP_NUM_THREADS"] == "2"
        assert report["env"]["MALLOC_TRIM_THRESHOLD_"] is None
        (profiler,) = client.run(_profiler_enabled).values()
        assert profiler is False  # its 10 ms stack sampling slows Python-heavy tasks
        (tick,) = client.run(_tick_seconds).values()
        assert tick == 1.0  # dask's 20 ms wakes busy workers 50 times a second
        assert client.run_on_scheduler(_tick_seconds) == 1.0
    finally:
        caiman_dask.stop_server(dview)


def test_opencv_threads_reasserted_before_each_task(dask_cluster):
    client, dview = dask_cluster
    client.run(lambda: __import__("cv2").setNumThreads(0))  # what `import caiman` does
    counts = dview.map(_opencv_threads, range(4), 1)
    assert counts == [1, 1, 1, 1]


def _profiler_enabled() -> bool:
    import dask

    return dask.config.get("distributed.worker.profile.enabled")


def _tick_seconds(dask_worker: Any = None, dask_scheduler: Any = None) -> float:
    server = dask_worker or dask_scheduler
    return server._tick_interval


def _opencv_threads(_: int) -> int:
    import cv2

    return cv2.getNumThreads()


@pytest.mark.skipif(len(psutil.Process().cpu_affinity() or []) < 2, reason="needs 2 cores")
def test_pin_cpus_gives_workers_disjoint_cores():
    client, dview, _ = caiman_dask.setup_cluster(n_processes=2, pin_cpus=True, memory_limit="1GB")
    try:
        affinities = [tuple(r["affinity"]) for r in client.run(threading_report).values()]
        assert len(affinities) == 2 and all(len(a) == 1 for a in affinities)
        assert affinities[0] != affinities[1]
    finally:
        caiman_dask.stop_server(dview)


def test_setup_stop_cycles_leave_no_processes():
    before = _children()
    for _ in range(2):
        _, dview, _ = caiman_dask.setup_cluster(n_processes=2, memory_limit="1GB")
        assert len(_children() - before) >= 2
        caiman_dask.stop_server(dview)
    deadline = time.monotonic() + 10
    while _children() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _children() - before == set()


def test_a_client_the_user_passed_is_never_closed():
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0",
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        got, dview, n = caiman_dask.setup_cluster(client)
        assert got is client and n == 1
        caiman_dask.stop_server(dview)
        dview.terminate()  # what CaImAn's stop_server and fit_file call
        assert client.status == "running"
        assert client.submit(vt.square, 3).result(timeout=30) == 9


def test_view_works_when_another_client_is_the_default(dask_cluster):
    _, dview = dask_cluster
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0",
                      host="127.0.0.1") as other, Client(other):
        assert dview.map_async(vt.square, range(5)).get(30) == [0, 1, 4, 9, 16]
        assert sorted(dview.imap_unordered(vt.square, range(3))) == [0, 1, 4]


def test_address_backend_connects_and_stop_keeps_the_cluster():
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0",
                      host="127.0.0.1") as cluster:
        client, dview, _ = caiman_dask.setup_cluster(cluster.scheduler_address)
        assert dview.map(vt.square, [4]) == [16]
        caiman_dask.stop_server(dview)
        assert client.status == "closed"
        with Client(cluster) as again:
            assert again.submit(vt.square, 2).result(timeout=30) == 4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_processes": 0}, ParameterError, "n_processes"),
        ({"memory_limit": -1}, ParameterError, "memory_limit"),
        ({"memory_limit": "lots"}, ParameterError, "memory_limit"),
        ({"threads_per_worker": 0}, ParameterError, "threads_per_worker"),
        ({"backend": "nope"}, BackendError, r"available: .*local.*single"),
        ({"backend": 42}, BackendError, "unknown backend"),
    ],
)
def test_bad_arguments_fail_fast_and_clearly(kwargs, error, match):
    start = time.monotonic()
    with pytest.raises(error, match=match):
        caiman_dask.setup_cluster(**kwargs)
    assert time.monotonic() - start < 2


def test_unreachable_address_fails_within_its_timeout():
    start = time.monotonic()
    with pytest.raises(ClusterError, match="cannot reach the scheduler"):
        caiman_dask.setup_cluster(f"tcp://127.0.0.1:{_free_port()}", timeout=2)
    assert time.monotonic() - start < 10


def test_task_over_the_memory_limit_fails_clearly_in_bounded_time():
    client, dview, _ = caiman_dask.setup_cluster(n_processes=1, memory_limit="400MB")
    try:
        start = time.monotonic()
        with pytest.raises(WorkerLostError, match=r"allocate .*400\.00 MB|allocate .*381\.47 MiB"):
            dview.map_async(vt.allocate, [10**9]).get(120)
        assert time.monotonic() - start < 60
        assert dview.map(vt.square, [5]) == [25]  # the cluster recovered
    finally:
        caiman_dask.stop_server(dview)


def test_repeated_large_arguments_are_sent_once(dask_cluster):
    import numpy as np

    client, dview = dask_cluster
    big = np.ones(2_000_000)  # 16 MB, repeated in every task
    result = dview.map_async(vt.array_sum_slowly, [(big, 0.5)] * 6, 1)
    time.sleep(0.2)
    keys = client.run_on_scheduler(
        lambda dask_scheduler: [k for k in dask_scheduler.tasks
                                if str(k).startswith("shared-ndarray")])
    assert len(keys) == 1
    assert result.get(60) == [2_000_000.0] * 6


def test_large_argument_records_travel_outside_the_graph(dask_cluster):
    """A dataclass argument is as large as its arrays (dask alone counts an object's
    shell): it is sent as a shared value, not inside the map's graph."""
    import warnings

    import numpy as np

    client, dview = dask_cluster
    records = [(i, vt.Record(np.full(1_500_000, float(i)))) for i in range(3)]  # 12 MB each
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Sending large graph" would fail the map
        assert dview.map(vt.record_sum, records) == [i + 1_500_000.0 * i for i in range(3)]


def test_results_taken_from_imap_unordered_are_freed_on_the_workers(dask_cluster):
    """A long map of large results (refinement's blocks) must not keep every finished
    result on the workers until the map is over."""
    import numpy as np

    client, dview = dask_cluster
    seen = []
    for value in dview.imap_unordered(vt.array_sum_slowly, [(np.ones(1000), 0.3)] * 6):
        seen.append(value)
        if len(seen) == 6:  # all taken, the map not over yet (the generator is alive)
            time.sleep(0.5)  # the release messages reach the scheduler
            held = client.run_on_scheduler(lambda dask_scheduler: [
                str(k) for k, ts in dask_scheduler.tasks.items()
                if str(k).startswith("array_sum_slowly") and ts.state == "memory"])
            assert held == []
    assert seen == [1000.0] * 6


def test_a_failure_ends_the_wait_before_the_rest_of_the_map(dask_cluster):
    """get() raises as soon as one task failed, not when the slow ones are done."""
    _, dview = dask_cluster
    result = dview.map_async(vt.sleep_or_fail, [-1.0, 4.0, 4.0, 4.0], 1)
    start = time.monotonic()
    with pytest.raises(ValueError, match="asked to sleep"):
        result.get(60)
    assert time.monotonic() - start < 2.5


def test_results_of_a_finished_map_are_freed_without_the_garbage_collector(dask_cluster):
    """A map waited for in several slices leaves no reference cycle holding its futures:
    once the caller drops the result, the workers free the values."""
    import gc

    import numpy as np

    client, dview = dask_cluster
    gc.disable()
    try:
        result = dview.map_async(vt.array_sum_slowly, [(np.ones(1000), 0.6)] * 4, 1)
        keys = [h.key for h in result._handles]
        assert result.get(60) == [1000.0] * 4
        del result
        assert dview.map(vt.square, [2]) == [4]  # the view lets go of the finished map
        time.sleep(0.5)  # the release messages reach the scheduler
        held = client.run_on_scheduler(lambda dask_scheduler: [
            k for k in keys if k in dask_scheduler.tasks])
        assert held == []
    finally:
        gc.enable()


def test_a_function_changed_between_maps_runs_as_changed(dask_cluster):
    """A closure is pickled by value once per map, never reused from an earlier map."""
    _, dview = dask_cluster
    scale = [2]

    def times(x: int) -> int:
        return x * scale[0]

    assert dview.map(times, [1, 2], 1) == [2, 4]
    scale[0] = 3
    assert dview.map(times, [1, 2], 1) == [3, 6]
