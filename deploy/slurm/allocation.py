"""Run `caiman-dask run` inside ONE SLURM allocation: no job submits another job.

Started by caiman-dask-allocation.sbatch as `srun python allocation.py INPUT -o OUTDIR ...`:
every SLURM task runs this file. dask-jobqueue's SLURMRunner gives task 0 the scheduler,
task 1 this script's client code, and every other task a worker. Workers are caiman-dask's
PinnedNanny: native thread pools pinned to the task's CPUs, dask's MALLOC_TRIM_THRESHOLD_
removed, memory limit from the allocation. The arguments are those of `caiman-dask run`
(without --backend: the client connects to the allocation's scheduler).
"""

from __future__ import annotations

import os
import sys

from dask_jobqueue.slurm import SLURMRunner
from distributed import Client

from caiman_dask.cli import main
from caiman_dask.cluster import WorkerSettings, resolve_settings


def worker_settings() -> WorkerSettings:
    """Threads = the task's CPUs; memory = the task's share of the allocation."""
    threads = int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))
    per_cpu = os.environ.get("SLURM_MEM_PER_CPU")
    memory = f"{int(per_cpu) * threads}MiB" if per_cpu else None
    if memory is None and os.environ.get("SLURM_MEM_PER_NODE"):
        tasks_here = int(os.environ.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0])
        memory = f"{int(os.environ['SLURM_MEM_PER_NODE']) // tasks_here}MiB"
    return resolve_settings(1, threads_per_worker=threads, memory_limit=memory)


def run_in_allocation(argv: list[str]) -> int:
    """Start the allocation's cluster and run the pipeline from the client task."""
    settings = worker_settings()
    workers = int(os.environ["SLURM_NTASKS"]) - 2
    options = {"nthreads": settings.threads_per_worker, "memory_limit": settings.memory_limit,
               "thread_env": settings.thread_env()}
    folder = os.environ.get("CAIMAN_DASK_SCHEDULER_DIR", os.getcwd())
    with SLURMRunner(scheduler_file=os.path.join(folder, "scheduler-{job_id}.json"),
                     scheduler_options={"dashboard_address": "127.0.0.1:0"},
                     worker_class="caiman_dask.cluster.pinning.PinnedNanny",
                     worker_options=options) as runner, Client(runner) as client:
        client.wait_for_workers(workers)
        return main(["run", *argv, "--backend", client.scheduler.address])


if __name__ == "__main__":
    sys.exit(run_in_allocation(sys.argv[1:]))
