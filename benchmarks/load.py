"""Load: the main job N times back to back on one LocalCluster, never restarted.

After every run it records each worker's RSS, open files and descriptors and threads
(measured inside the worker), the same for this client process, and the processes
below this one, so growth over the runs (leaked memory, files, processes) shows.
Writes ``benchmarks/results/load.json``.

    python benchmarks/load.py --runs 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from typing import Any

import psutil
from common import write


def process_usage() -> dict[str, int]:
    """RSS, open files, descriptors and threads of the calling process."""
    proc = psutil.Process()
    return {"rss": proc.memory_info().rss, "open_files": len(proc.open_files()),
            "fds": proc.num_fds(), "threads": proc.num_threads()}


def descendants() -> list[int]:
    """Pids of every live process below this one."""
    return sorted(p.pid for p in psutil.Process().children(recursive=True)
                  if p.status() != psutil.STATUS_ZOMBIE)


def growth(runs: list[dict[str, Any]], key: str, *, first: int) -> dict[str, float]:
    """Relative change of ``key`` (summed over workers) from run ``first`` to the last."""
    totals = [sum(w[key] for w in r["workers"].values()) for r in runs]
    client = [r["client"][key] for r in runs]
    return {"workers": totals[-1] / totals[first] - 1 if totals[first] else 0.0,
            "client": client[-1] / client[first] - 1 if client[first] else 0.0}


def one_run(index: int, movie: str, folder: str, params: dict[str, Any], client: Any
            ) -> dict[str, Any]:
    from caiman_dask.pipeline import run

    out = os.path.join(folder, f"run-{index:02d}")
    start = time.perf_counter()
    estimates = run(movie, out, params=params, backend=client, report=False)
    seconds = time.perf_counter() - start
    shutil.rmtree(out)  # the outputs are not what is measured
    return {"run": index, "seconds": round(seconds, 2), "n_components": estimates.n_components,
            "workers": client.run(process_usage), "client": process_usage(),
            "descendants": descendants()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--out", default=None, help="JSON path (default results/load.json)")
    args = parser.parse_args(argv)

    import distributed

    from caiman_dask.demo import DEMO_PARAMS, make_demo_movie

    folder = tempfile.mkdtemp(prefix="caiman-dask-load-")
    movie = str(make_demo_movie(folder, dims=(64, 64), n_frames=args.frames, n_neurons=8,
                                seed=5).path)
    before = descendants()
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                  processes=True, memory_limit="2GB",
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        runs = []
        for index in range(args.runs):
            runs.append(one_run(index, movie, folder, DEMO_PARAMS, client))
            print(json.dumps({k: runs[-1][k] for k in ("run", "seconds", "n_components")}),
                  flush=True)
        restarted = client.run(os.getpid) != pids
    time.sleep(2)
    left = [" ".join(psutil.Process(pid).cmdline())[-120:] for pid in descendants()
            if pid not in before]  # multiprocessing's resource tracker lives to our exit
    shutil.rmtree(folder)
    first = 1 if len(runs) > 1 else 0  # run 0 warms the workers' imports and caches
    payload = {
        "runs": runs, "n_runs": len(runs), "workers_restarted": restarted,
        "same_components_every_run": len({r["n_components"] for r in runs}) == 1,
        "growth_from_run_1": {key: growth(runs, key, first=first)
                              for key in ("rss", "open_files", "fds", "threads")},
        "growth_from_run_0": {key: growth(runs, key, first=0)
                              for key in ("rss", "open_files", "fds", "threads")},
        "processes_left_after_close": left,
    }
    path = write("load", payload, args.out)
    print(json.dumps({k: payload[k] for k in ("workers_restarted", "same_components_every_run",
                                              "growth_from_run_1",
                                              "processes_left_after_close")}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
