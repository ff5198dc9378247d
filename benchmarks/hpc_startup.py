"""Batch-system clusters: start-up time and a fixed workload, SLURM and SGE vs LocalCluster.

For each backend (local, then slurm and sge where they answer): the time from
``setup_cluster`` to all workers joined (2 workers x 1 thread, 1 GB each), the time of a
fixed numpy workload through the dview (40 SVDs of seeded 300x300 matrices), and the time
of the main job (``caiman_dask.run``, no report) on the demo movie on those workers, repeated.
Batch backends run with their defaults: TLS on, the job script's thread pinning and malloc fix.

Run (with the single-node systems of .ci/services up):

    source /tmp/caiman-dask-slurm/env; source /tmp/caiman-dask-sge/env
    python benchmarks/hpc_startup.py [--repeats N] [--out FILE]

Writes benchmarks/results/hpc_startup.json.
"""

from __future__ import annotations

import argparse
import gc
import pathlib
import subprocess
import tempfile

from common import pin_threads

pin_threads(1)

import dask.config  # noqa: E402
import numpy as np  # noqa: E402
from common import stats, timed, write  # noqa: E402

import caiman_dask  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
PROBES = {"slurm": ["sinfo", "-h"], "sge": ["qstat"]}


def svd_task(seed: int) -> float:
    """The fixed workload's unit: singular values of a seeded 300x300 matrix."""
    matrix = np.random.default_rng(seed).standard_normal((300, 300))
    return float(np.linalg.svd(matrix, compute_uv=False).sum())


def available(backend: str) -> bool:
    """Whether ``backend`` can run here (batch systems: their client command answers)."""
    if backend == "local":
        return True
    try:
        return subprocess.run(PROBES[backend], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main_job(client, movie: pathlib.Path, out: pathlib.Path) -> int:
    """The main job on ``client``'s workers; the number of components found."""
    from caiman_dask.demo import DEMO_PARAMS

    return caiman_dask.run(str(movie), str(out), params=DEMO_PARAMS, backend=client,
                           report=False).n_components


def measure(backend: str, repeats: int, logs: str, movie: pathlib.Path) -> dict[str, object]:
    """Start-up, workload and main-job times of ``backend`` over ``repeats`` fresh clusters."""
    startup, workload, job, results, found = [], [], [], None, set()
    settings = {"caiman-dask.jobqueue.scheduler-host": "127.0.0.1",
                "caiman-dask.jobqueue.shared-temp-directory": logs,
                "caiman-dask.jobqueue.job-script-prologue": [f"export PYTHONPATH={HERE}"],
                f"jobqueue.{backend}.log-directory": logs}
    for _ in range(repeats):
        with dask.config.set(settings if backend != "local" else {}):
            seconds, (client, dview, _) = timed(lambda: caiman_dask.setup_cluster(
                backend, 2, memory_limit="1GB", threads_per_worker=1, timeout=120))
        startup.append(seconds)
        try:
            seconds, results = timed(lambda view=dview: view.map_sync(svd_task, range(40)))
            workload.append(seconds)
            out = pathlib.Path(logs) / f"run-{backend}-{len(job)}"
            seconds, n = timed(lambda c=client, o=out: main_job(c, movie, o))
            job.append(seconds)
            found.add(n)
        finally:
            caiman_dask.stop_server(dview)
            gc.collect()  # the closed cluster deletes its TLS files before `logs` goes
    return {"startup_s": stats(startup), "workload_s": stats(workload),
            "main_job_s": stats(job), "components": sorted(found),
            "checksum": float(np.sum(results))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    backends = [b for b in ("local", "slurm", "sge") if available(b)]
    from caiman_dask.demo import make_demo_movie

    with tempfile.TemporaryDirectory() as logs:
        movie = make_demo_movie(pathlib.Path(logs) / "input", dims=(64, 64), n_frames=200,
                                n_neurons=8, seed=3).path
        runs = {b: measure(b, args.repeats, logs, movie) for b in backends}
    local = runs["local"]
    for name, run in runs.items():
        run["startup_vs_local"] = run["startup_s"]["median"] / local["startup_s"]["median"]
        run["workload_vs_local"] = run["workload_s"]["median"] / local["workload_s"]["median"]
        run["main_job_vs_local"] = run["main_job_s"]["median"] / local["main_job_s"]["median"]
        print(f"{name:6s} start-up {run['startup_s']['median']:6.2f} s "
              f"(x{run['startup_vs_local']:.2f}), workload {run['workload_s']['median']:6.2f} s "
              f"(x{run['workload_vs_local']:.2f}), main job {run['main_job_s']['median']:6.2f} s "
              f"(x{run['main_job_vs_local']:.2f})")
    skipped = sorted({"slurm", "sge"} - set(backends))
    path = write("hpc_startup", {"workers": 2, "threads_per_worker": 1, "memory_limit": "1GB",
                                 "workload": "40 x svd(300x300)",
                                 "main_job": "demo movie 64x64x200, 8 neurons, no report",
                                 "backends": runs,
                                 "not_available": skipped}, args.out)
    print("wrote", path)


if __name__ == "__main__":
    main()
