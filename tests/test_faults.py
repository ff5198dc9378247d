"""Fault injection on the real main job: killed workers, nanny, scheduler; memory; disk full.

Every case ends within a bounded time with the results of an undisturbed run (compared
exactly) or with a clear error, and a rerun after a failure resumes. Worker kills use a
``LocalCluster`` of worker processes; the nanny and scheduler kills need them in their
own processes, so those tests start ``dask scheduler`` / ``dask worker`` processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import dask
import distributed
import numpy as np
import psutil
import pytest
from estimates_check import assert_identical

from caiman_dask.demo import DEMO_PARAMS, make_demo_movie
from caiman_dask.errors import CaimanDaskError, ClusterError, IncompleteStoreError, WorkerLostError
from caiman_dask.movie import to_zarr
from caiman_dask.movie.zarrio import store_attrs
from caiman_dask.pipeline import run
from caiman_dask.results import load_estimates

pytestmark = pytest.mark.slow  # end-to-end: run once in CI (newest releases), not twice

PARAMS = json.loads(json.dumps(DEMO_PARAMS))
PARAMS["motion"]["num_frames_split"] = 40


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The demo movie and the results of an undisturbed run (single process)."""
    folder = tmp_path_factory.mktemp("faults")
    demo = make_demo_movie(folder / "input", dims=(64, 64), n_frames=240, n_neurons=8, seed=3)
    clean = run(str(demo.path), str(folder / "clean"), params=PARAMS, backend="single",
                report=False)
    return str(demo.path), clean


def assert_same(a, b) -> None:
    assert_identical(a, b)


def note(case: str, outcome: str, seconds: float) -> None:
    """One row of docs/reliability.md's table (shown with ``pytest -s``)."""
    print(f"\nRELIABILITY | {case} | {seconds:.1f} s | {' '.join(outcome.split())}")


def _records(outdir: pathlib.Path) -> dict:
    """The stages a run folder records as done."""
    manifest = outdir / "run.json"
    return json.loads(manifest.read_text())["stages"] if manifest.exists() else {}


class Killer(threading.Thread):
    """Kill a process once ``when()`` is true (polled), recording when it struck."""

    def __init__(self, when: Callable[[], bool], pid: Callable[[], int]):
        super().__init__(daemon=True)
        self.when, self.pid = when, pid
        self.struck: float | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                if self.when():
                    os.kill(self.pid(), signal.SIGKILL)
                    self.struck = time.monotonic()
                    return
            except Exception:  # the cluster is changing under us; poll again
                pass
            time.sleep(0.01)

    def __enter__(self) -> Killer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(timeout=10)


def _busy_with(client: distributed.Client, prefix: str) -> str | None:
    """Address of a worker running a task whose key starts with ``prefix``."""
    for address, keys in client.processing().items():
        if any(str(k).startswith(prefix) for k in keys):
            return address
    return None


# ---------------------------------------------------------------- killed worker processes


@pytest.mark.timeout(120)
def test_worker_killed_holding_a_shared_argument_the_map_completes() -> None:
    """The only worker dies while it holds a large argument shared by every task (the
    refinement's footprints and traces are such arguments). The argument is made again
    from the scheduler's copy and the map completes; a scattered argument was lost, and
    the map failed with 'cancelled: the scheduler or the client connection was lost'."""
    import view_tasks as vt

    import caiman_dask

    client, dview, _ = caiman_dask.setup_cluster(n_processes=1, memory_limit="1GB")
    try:
        pid = next(iter(client.run(os.getpid).values()))
        big = np.ones(2_000_000)  # 16 MB, shared by every task
        result = dview.map_async(vt.array_sum_slowly, [(big, 0.4)] * 8, 1)

        def holding() -> bool:
            shared = [k for k in client.who_has() if str(k).startswith("shared-")]
            return bool(shared) and bool(_busy_with(client, "array_sum_slowly"))

        start = time.monotonic()
        with Killer(holding, lambda: pid) as killer:
            assert result.get(90) == [2_000_000.0] * 8
        assert killer.struck is not None
        note("the only worker SIGKILLed holding a shared argument", "map completes",
             time.monotonic() - start)
    finally:
        caiman_dask.stop_server(dview)


@pytest.mark.timeout(120)
def test_worker_killed_holding_a_finished_result_the_map_completes() -> None:
    """A task's result is lost with its worker while the map's other task still runs: the
    scheduler computes it again and get() waits for it. A lost result is not a failed task
    (CI saw get() cancel the map's running tasks over one: 'cancelled for reason: unknown')."""
    import view_tasks as vt

    import caiman_dask

    client, dview, _ = caiman_dask.setup_cluster(n_processes=2, memory_limit="1GB")
    try:
        start = time.monotonic()
        result = dview.map_async(vt.sleep_then, [0.2, 6.0], 1)  # one task per worker
        first, second = result._handles
        while first.status != "finished" and time.monotonic() < start + 30:
            time.sleep(0.01)
        holder = client.who_has([first])[first.key][0]
        os.kill(client.run(os.getpid, workers=[holder])[holder], signal.SIGKILL)
        while first.status != "lost" and time.monotonic() < start + 30:
            time.sleep(0.005)
        assert (first.status, second.status) == ("lost", "pending")
        assert result.get(90) == [0.2, 6.0]
        note("a worker SIGKILLed holding a finished result", "map completes",
             time.monotonic() - start)
    finally:
        caiman_dask.stop_server(dview)


@pytest.fixture(scope="module")
def local_client() -> Iterator[distributed.Client]:
    with dask.config.set({"distributed.scheduler.allowed-failures": 2}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           memory_limit="1GB", dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:
        yield client


@pytest.mark.timeout(180)
@pytest.mark.parametrize("prefix", ["correct_store_block", "fit_patch_task"])
def test_worker_killed_mid_stage_gives_identical_results(job, local_client, tmp_path,
                                                         prefix) -> None:
    movie, clean = job
    client = local_client
    client.wait_for_workers(2, timeout=60)
    pids = client.run(os.getpid)
    target: dict[str, int] = {}

    def busy() -> bool:
        address = _busy_with(client, prefix)
        if address in pids:
            target["pid"] = pids[address]
        return "pid" in target

    start = time.monotonic()
    with Killer(busy, lambda: target["pid"]) as killer:
        found = run(movie, str(tmp_path / "out"), params=PARAMS, backend=client, report=False)
    assert killer.struck is not None, f"no {prefix} task was seen running"
    assert not psutil.pid_exists(target["pid"]) or \
        psutil.Process(target["pid"]).status() == psutil.STATUS_ZOMBIE
    assert_same(found, clean)
    note(f"worker SIGKILLed running {prefix}", "identical results", time.monotonic() - start)
    assert time.monotonic() - start < 150


# ---------------------------------------------------------------- dask worker/scheduler CLI


class ProcessCluster:
    """A scheduler and nanny workers, each in its own process (``dask`` command line)."""

    def __init__(self, folder: pathlib.Path, n_workers: int = 2):
        self.file = folder / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.scheduler = self._spawn("dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                     "--dashboard-address", ":0")
        deadline = time.monotonic() + 60
        while not self.file.exists():
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        self.nannies = [self._spawn("dask_worker", "--nthreads", "1", "--memory-limit", "1GB",
                                    "--death-timeout", "10", "--dashboard-address", ":0")
                        for _ in range(n_workers)]
        with distributed.Client(scheduler_file=str(self.file), timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=90)
            self.address = client.scheduler.address
            self.worker_pids = list(client.run(os.getpid).values())

    def _spawn(self, module: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", f"distributed.cli.{module}",
                                 "--scheduler-file", str(self.file), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def close(self) -> list[int]:
        """Stop everything; return the pids of processes that had to be killed."""
        family = []
        for proc in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                family += psutil.Process(proc.pid).children(recursive=True)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _, alive = psutil.wait_procs(family, timeout=10)
        for child in alive:
            child.kill()
        return [p.pid for p in alive]


@pytest.fixture(scope="module")
def process_cluster(tmp_path_factory) -> Iterator[ProcessCluster]:
    """Shared: the nanny test leaves one worker, which the scheduler test then loses."""
    cluster = ProcessCluster(tmp_path_factory.mktemp("process-cluster"))
    try:
        yield cluster
    finally:
        leaked = cluster.close()
        assert leaked == [], f"processes left running: {leaked}"


@pytest.mark.timeout(180)
def test_nanny_killed_mid_cnmf_gives_identical_results(job, process_cluster, tmp_path) -> None:
    movie, clean = job
    out = tmp_path / "out"
    start = time.monotonic()
    nanny = process_cluster.nannies[0]
    worker = psutil.Process(nanny.pid).children()
    with Killer(lambda: bool(list(out.glob("patches/*/patch-*.pkl"))), lambda: nanny.pid) \
            as killer:
        found = run(movie, str(out), params=PARAMS, backend=process_cluster.address,
                    report=False)
    assert killer.struck is not None
    _, alive = psutil.wait_procs(worker, timeout=15)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], \
        "the worker outlived its nanny"
    assert_same(found, clean)
    note("nanny SIGKILLed mid CNMF", "identical results", time.monotonic() - start)


@pytest.mark.timeout(200)
def test_scheduler_killed_fails_fast_and_the_rerun_resumes(job, process_cluster,
                                                          tmp_path) -> None:
    movie, clean = job
    out = tmp_path / "out"
    scheduler = process_cluster.scheduler
    with dask.config.set({"distributed.comm.timeouts.connect": "5s"}):
        with Killer(lambda: bool(list(out.glob("patches/*/patch-*.pkl"))),
                    lambda: scheduler.pid) as killer:
            with pytest.raises(CaimanDaskError) as info:
                run(movie, str(out), params=PARAMS, backend=process_cluster.address,
                    report=False)
    failed_after = time.monotonic() - killer.struck
    assert isinstance(info.value, ClusterError), repr(info.value)
    assert "scheduler" in str(info.value)
    note("scheduler SIGKILLed mid CNMF", f"{type(info.value).__name__}: {info.value}",
         failed_after)
    assert failed_after < 60, f"the run took {failed_after:.0f} s to notice"
    assert not (out / ".lock").exists()
    assert "cnmf" not in _records(out) and not (out / "results.hdf5").exists()
    kept = len(list(out.glob("patches/*/patch-*.pkl")))
    found = run(movie, str(out), params=PARAMS, backend="single", report=False)
    stages = json.loads((out / "summary.json").read_text())["stages"]
    assert stages["convert"]["skipped"] and stages["motion"]["skipped"]
    assert stages["cnmf"]["patches_reused"] == kept >= 1
    assert_same(found, clean)
    note("rerun after the scheduler kill (single)", "resumed, identical results", 0.0)


# ---------------------------------------------------------------- memory and disk


@pytest.mark.timeout(200)
def test_oversized_patch_fails_clearly_after_bounded_retries(tmp_path) -> None:
    frames = np.random.default_rng(0).poisson(20, (4000, 96, 96)).astype(np.uint16)
    store = str(tmp_path / "big.zarr")
    np.save(tmp_path / "big.npy", frames)
    to_zarr(str(tmp_path / "big.npy"), store, rf=20, stride=8)
    params = json.loads(json.dumps(PARAMS))
    params["patch"] = {"rf": None, "only_init": True}  # the whole frame is one patch
    # patches are read a block of frames at a time: only an unbounded initialisation on
    # all 4000 frames (4 float32 copies of 147 MB) outgrows the worker
    params.setdefault("init", {})["max_init_frames"] = None
    config = {"distributed.scheduler.allowed-failures": 1,
              "caiman-dask.cluster.allowed-failures": 1}
    with dask.config.set(config):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                           memory_limit="450MB", dashboard_address=":0")
        with cluster, distributed.Client(cluster) as client:
            start = time.monotonic()
            with pytest.raises(WorkerLostError) as info:
                run(store, str(tmp_path / "out"), params=params, backend=client,
                    motion=False, report=False)
            took = time.monotonic() - start
    message = str(info.value)
    note("one patch over the worker memory limit", f"WorkerLostError: {message}", took)
    assert "killed the worker running it 2 time(s)" in message
    assert "CNMF patch 0 (rows 0:96, cols 0:96)" in message and "429.15 MiB" in message
    assert "rf" in message and "memory_limit" in message
    assert took < 150
    assert not (tmp_path / "out" / "results.hdf5").exists()
    assert "cnmf" not in _records(tmp_path / "out")


@contextlib.contextmanager
def _tmpfs(mount: pathlib.Path, size: str) -> Iterator[pathlib.Path]:
    """A tmpfs of ``size`` at ``mount`` (root only), unmounted afterwards."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[pathlib.Path]:
    """A 1 MiB tmpfs."""
    with _tmpfs(tmp_path / "disk", "1m") as mount:
        yield mount


@pytest.fixture
def run_disk(tmp_path) -> Iterator[pathlib.Path]:
    """A 64 MiB tmpfs: room for a whole demo run, then filled up on purpose."""
    with _tmpfs(tmp_path / "rundisk", "64m") as mount:
        yield mount


def _fill(disk: pathlib.Path, leave: int) -> None:
    """Take all free space of ``disk`` but ``leave`` bytes (a real full disk)."""
    stat = os.statvfs(disk)
    with open(disk / "filler", "wb") as fh:
        fh.write(bytes(max(stat.f_bavail * stat.f_frsize - leave, 0)))


def _run_files(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "run.log" and ".zarr" not in str(p)}


@pytest.mark.timeout(120)
def test_disk_full_while_writing_the_store(tmp_path, small_disk) -> None:
    frames = np.random.default_rng(1).integers(0, 60000, (100, 64, 64), dtype=np.uint16)
    source = tmp_path / "movie.npy"
    np.save(source, frames)  # 800 KB of noise: incompressible, twice is more than 1 MiB
    out = small_disk / "out"
    start = time.monotonic()
    with pytest.raises(IncompleteStoreError, match=r"raw\.zarr: the disk is full \(No space"):
        run([str(source), str(source)], str(out), params=PARAMS, backend="single",
            report=False)
    note("disk full while writing raw.zarr", "IncompleteStoreError, store incomplete",
         time.monotonic() - start)
    assert time.monotonic() - start < 60
    attrs = store_attrs(str(out / "raw.zarr"))
    assert attrs is None or attrs["complete"] is False  # never taken for complete
    assert "convert" not in _records(out)
    assert not (out / ".lock").exists()
    subprocess.run(["mount", "-o", "remount,size=32m", str(small_disk)], check=True)
    found = run([str(source), str(source)], str(out), params=PARAMS, backend="single",
                report=False)  # space freed: the rerun converts again and finishes
    assert store_attrs(str(out / "raw.zarr"))["complete"] is True
    assert set(_records(out)) == {"convert", "motion", "cnmf", "evaluate"}
    assert found.n_components == load_estimates(out / "results.hdf5")[0].n_components


@pytest.mark.timeout(180)
def test_disk_full_while_writing_the_corrected_movie(tmp_path, small_disk, dask_cluster) -> None:
    from caiman_dask.motion.driver import motion_correct

    frames = np.random.default_rng(2).integers(100, 4000, (160, 64, 64), dtype=np.uint16)
    np.save(tmp_path / "movie.npy", frames)
    store = str(tmp_path / "raw.zarr")
    to_zarr(str(tmp_path / "movie.npy"), store, progress=False)
    dest = small_disk / "corrected.zarr"  # 2.6 MB of float32 frames on a 1 MiB disk
    start = time.monotonic()
    with pytest.raises(IncompleteStoreError, match=r"corrected\.zarr: the disk is full"):
        motion_correct(store, str(dest), params={}, view=dask_cluster[1])
    note("disk full while writing corrected.zarr", "IncompleteStoreError, store incomplete",
         time.monotonic() - start)
    assert store_attrs(str(dest))["complete"] is False
    assert not [n for _, _, names in os.walk(small_disk) for n in names if "partial" in n]


@pytest.mark.timeout(180)
def test_disk_full_while_rechunking_for_cnmf(tmp_path, small_disk) -> None:
    from caiman_dask.cnmf.driver import fit_cnmf
    from caiman_dask.view.serial import SerialView

    frames = np.random.default_rng(3).integers(100, 60000, (200, 96, 96), dtype=np.uint16)
    np.save(tmp_path / "movie.npy", frames)
    store = str(tmp_path / "raw.zarr")
    to_zarr(str(tmp_path / "movie.npy"), store, progress=False)  # whole-frame chunks
    params = {"patch": {"rf": 16, "stride": 6}, "init": {"K": 2, "gSig": [3, 3]}}
    view = SerialView()
    try:
        with pytest.raises(IncompleteStoreError, match=r"cnmf-.*\.zarr: the disk is full"):
            fit_cnmf(store, params=params, view=view, work_dir=str(small_disk / "work"))
    finally:
        view.shutdown()


@pytest.mark.timeout(300)
def test_disk_full_on_patches_or_results_loses_nothing(job, run_disk) -> None:
    """A rerun with a new fit (patch pickles) and one with new thresholds (results.hdf5)
    on a disk with 48 KiB left (less than one pickle): a clear DiskFullError naming the
    file, no temporary file left, the earlier results byte for byte intact; once space is
    freed the rerun works."""
    from caiman_dask.errors import DiskFullError

    movie, _ = job
    out = run_disk / "out"
    run(movie, str(out), params=PARAMS, backend="single", report=False)
    before = _run_files(out)
    _fill(run_disk, leave=48 << 10)
    refit = json.loads(json.dumps(PARAMS))
    refit["init"]["K"] = PARAMS["init"]["K"] + 1
    rethreshold = json.loads(json.dumps(PARAMS))
    rethreshold["quality"]["min_SNR"] = 1.5
    for params, culprit in ((refit, r"patch-\d+\.pkl"), (rethreshold, r"results\.hdf5")):
        start = time.monotonic()
        with pytest.raises(DiskFullError, match=culprit + r": the disk is full \(No space"):
            run(movie, str(out), params=params, backend="single", report=False)
        note(f"disk full while writing {culprit.replace(chr(92), '')}",
             "DiskFullError naming the file; earlier results intact", time.monotonic() - start)
        after = _run_files(out)
        assert not [name for name in after if name.endswith(".tmp")]
        assert after["results.hdf5"] == before["results.hdf5"]
        assert not (out / ".lock").exists()
    (run_disk / "filler").unlink()
    found = run(movie, str(out), params=rethreshold, backend="single", report=False)
    assert found.n_components == load_estimates(out / "results.hdf5")[0].n_components
