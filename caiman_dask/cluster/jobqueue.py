"""Batch-system backends through dask-jobqueue: slurm, pbs, sge, lsf, htcondor.

Each worker job runs ``processes`` dask workers of ``threads_per_worker`` threads and
``memory_limit`` bytes each, so the job asks for ``processes x threads`` CPUs and
``processes x memory_limit`` memory. What our LocalCluster workers get from
:class:`~caiman_dask.cluster.pinning.PinnedNanny`, the job script gets in its prologue:

- the thread environment (``OMP_NUM_THREADS`` ...) exported before the worker starts;
- the malloc fix and our worker policy as ``DASK_*`` environment variables: dask's
  pre-spawn ``MALLOC_TRIM_THRESHOLD_`` removed (the variable is a key inside the value, so
  its case is kept), memory fractions, profiler, event-loop tick. No file is written on
  the compute node, so a job killed without running its traps leaves nothing behind, and
  the user's own dask YAML files still load.

Options resolve as: argument > ``caiman-dask.jobqueue.<kind>.<key>`` >
``caiman-dask.jobqueue.<key>`` > dask-jobqueue's own ``jobqueue.<kind>`` config.
TLS is on by default (:mod:`caiman_dask.cluster.security`); the dashboard binds to
``caiman-dask.cluster.dashboard-address`` (localhost). A job that ends (cancelled, walltime,
node failure) is resubmitted every few seconds, so the cluster keeps its size.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import shlex
import sys
from typing import Any

import dask.config
from dask.utils import format_bytes, parse_bytes

from caiman_dask import config
from caiman_dask.cluster.backends import (
    OPTIONAL_BACKENDS,
    ClusterSpec,
    cluster_policy,
    register_backend,
)
from caiman_dask.cluster.pinning import MALLOC_VARS_REMOVED
from caiman_dask.cluster.security import batch_security, shared_directory
from caiman_dask.cluster.settings import WorkerSettings
from caiman_dask.errors import ConfigError, ParameterError

INSTALL_HINT = 'pip install "caiman-dask[jobqueue]"'

#: backend name -> dask-jobqueue cluster class.
KINDS: dict[str, str] = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
                         "lsf": "LSFCluster", "htcondor": "HTCondorCluster"}
#: keys of ``caiman-dask.jobqueue`` (and of its per-kind sections).
KEYS: tuple[str, ...] = (
    "processes", "walltime", "queue", "account", "interface", "scheduler-host",
    "local-directory", "job-extra-directives", "job-script-prologue", "shared-temp-directory",
    "tls", "tls-ca-file", "tls-cert", "tls-key", "adapt-maximum", "lifetime", "replace-interval")
_ACCOUNT_ARG = {"slurm": "account", "pbs": "account", "sge": "project", "lsf": "project"}
#: seconds a worker keeps free before its job's walltime, and its stagger, as fractions.
LIFETIME_MARGIN, LIFETIME_STAGGER = 0.10, 0.05


def option(kind: str, key: str, value: Any = None) -> Any:
    """Resolve one option: ``value`` > ``jobqueue.<kind>.<key>`` > ``jobqueue.<key>``.

    Raises
    ------
    ConfigError
        When the per-kind section has a key we do not know.
    """
    if value is not None:
        return value
    section = dask.config.get(f"{config.NAMESPACE}.jobqueue.{kind}", None) or {}
    unknown = sorted(set(section) - set(KEYS))
    if unknown:
        raise ConfigError(f"caiman-dask.jobqueue.{kind} has unknown key(s) {unknown}; "
                          f"known: {', '.join(KEYS)}")
    if section.get(key) is not None:
        return section[key]
    return config.get(f"jobqueue.{key}")


def walltime_seconds(walltime: str | None) -> int | None:
    """Seconds of a ``[D-]HH:MM[:SS]`` walltime, or None.

    Raises
    ------
    ParameterError
        When ``walltime`` is not of that form.
    """
    if walltime in (None, ""):
        return None
    text = str(walltime)
    days, _, clock = text.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
        if not 2 <= len(parts) <= 3:
            raise ValueError
        hours, minutes, seconds = (parts + [0])[:3]
        return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds
    except ValueError:
        raise ParameterError(f"walltime={walltime!r} is not [D-]HH:MM[:SS], e.g. '02:00:00'") \
            from None


def lifetime_args(walltime: str | None, enabled: bool) -> list[str]:
    """Worker options that end each worker before its job's walltime, staggered.

    Workers close themselves gracefully ``LIFETIME_MARGIN`` of the walltime before it ends,
    spread over ``LIFETIME_STAGGER`` of it, so they do not all leave at once; their jobs
    end and are resubmitted while the others keep working. (``--lifetime-restart`` would
    restart the worker inside the same job, which the walltime still ends, so it is not used.)
    """
    seconds = walltime_seconds(walltime)
    if not enabled or seconds is None or seconds < 600:
        return []
    stagger = int(seconds * LIFETIME_STAGGER)
    lifetime = int(seconds * (1 - LIFETIME_MARGIN)) - stagger
    return ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]


def worker_dask_env(settings: WorkerSettings) -> dict[str, str]:
    """``DASK_*`` variables for the workers: malloc fix, our worker policy, event-loop tick.

    Values are Python literals, as dask reads them (``ast.literal_eval``).
    """
    env = {_dask_variable("distributed.nanny.pre-spawn-environ"):
           repr(dict.fromkeys(MALLOC_VARS_REMOVED))}
    for key, value in cluster_policy(settings).items():
        if key.startswith(("distributed.worker.", "distributed.admin.")):
            env[_dask_variable(key)] = repr(value)
    return env


def _dask_variable(key: str) -> str:
    """The environment variable dask reads a dotted config key from."""
    return "DASK_" + key.upper().replace(".", "__").replace("-", "_")


def job_prologue(settings: WorkerSettings, user_lines: list[str] | None) -> list[str]:
    """Job script lines before the worker command: thread env, malloc fix, then the user's."""
    exports = [f"export {name}={value}" for name, value in settings.thread_env().items()]
    unset = [f"unset {name}" for name in MALLOC_VARS_REMOVED]
    dask_env = [f"export {name}={shlex.quote(value)}"
                for name, value in worker_dask_env(settings).items()]
    return exports + unset + dask_env + list(user_lines or [])


def sized(settings: WorkerSettings, processes: int, cores: int | None,
          memory: str | int | None) -> WorkerSettings:
    """``settings`` with whole jobs of ``processes`` workers; ``cores``/``memory`` per job
    (if given) set each worker's threads and memory limit."""
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ParameterError(f"processes={processes!r}: give the worker processes per job (>= 1)")
    threads, limit = settings.threads_per_worker, settings.memory_limit
    if cores is not None:
        threads = int(cores) // processes
        if threads < 1:
            raise ParameterError(
                f"cores={cores} < processes={processes}: each worker needs a core")
    if memory is not None:
        limit = (parse_bytes(memory) if isinstance(memory, str) else int(memory)) // processes
    jobs = math.ceil(settings.n_workers / processes)
    return dataclasses.replace(settings, n_workers=jobs * processes, threads_per_worker=threads,
                               memory_limit=limit, pin_cpus=False)


def job_options(kind: str, settings: WorkerSettings, processes: int,
                opts: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the dask-jobqueue cluster class, before TLS and scheduler."""
    walltime = option(kind, "walltime", opts.pop("walltime", None)) \
        or dask.config.get(f"jobqueue.{kind}.walltime", None)  # dask-jobqueue's own default
    out: dict[str, Any] = {
        "cores": processes * settings.threads_per_worker,
        "memory": format_bytes(processes * settings.memory_limit).replace(" ", ""),
        "processes": processes,
        "job_script_prologue": job_prologue(
            settings, option(kind, "job-script-prologue", opts.pop("job_script_prologue", None))),
        "worker_extra_args": list(opts.pop("worker_extra_args", None) or [])
        + lifetime_args(walltime, bool(option(kind, "lifetime", opts.pop("lifetime", None)))),
    }
    if walltime is not None and kind != "htcondor":
        out["walltime"] = _walltime_for(kind, walltime)
    for key in ("queue", "account", "interface", "local-directory"):
        value = option(kind, key, opts.pop(key.replace("-", "_"), None))
        arg = _ACCOUNT_ARG.get(kind) if key == "account" else key.replace("-", "_")
        if value is None:
            continue
        if arg is None or (kind == "htcondor" and key == "queue"):
            raise ParameterError(f"backend {kind!r} has no {key}: remove it from the options "
                                 f"and from caiman-dask.jobqueue")
        out[arg] = value
    directives = option(kind, "job-extra-directives", opts.pop("job_extra_directives", None))
    if kind == "sge" and not any(str(d).startswith("-S ") for d in directives or []):
        directives = ["-S /bin/bash", *(directives or [])]  # Grid Engine's default is csh
    if directives:
        out["job_extra_directives"] = directives
    if kind == "htcondor" and dask.config.get("jobqueue.htcondor.disk", None) is None:
        out["disk"] = opts.pop("disk", "1GiB")
    return out


def _walltime_for(kind: str, walltime: str) -> str:
    """LSF takes ``[HH:]MM``; the others ``HH:MM:SS``."""
    if kind != "lsf":
        return str(walltime)
    seconds = walltime_seconds(walltime) or 0
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def jobqueue_spec(settings: WorkerSettings, *, kind: str, security: Any = None,
                  adapt: int | None = None, cores: int | None = None,
                  memory: str | int | None = None, processes: int | None = None,
                  **options: Any) -> ClusterSpec:
    """Spec of a dask-jobqueue cluster of ``kind`` (slurm, pbs, sge, lsf, htcondor).

    Parameters
    ----------
    settings : WorkerSettings
        Resolved workers: their count is rounded up to whole jobs.
    kind : str
        The batch system.
    security : Security or bool, optional
        TLS (default on; see :func:`~caiman_dask.cluster.security.batch_security`).
    adapt : int, optional
        Let the cluster grow with the work up to ``adapt`` workers (never below the start size).
    cores, memory : optional
        Per job, instead of ``threads_per_worker`` x processes and ``memory_limit`` x processes.
    processes : int, optional
        Worker processes per job (config ``jobqueue.processes``, default 1).
    **options
        walltime, queue, account, interface, scheduler_host, local_directory,
        job_extra_directives, job_script_prologue, shared_temp_directory, lifetime, and any
        other keyword of the dask-jobqueue class (``resource_spec``, ``log_directory`` ...).
    """
    n_proc = int(option(kind, "processes", processes))
    sized_settings = sized(settings, n_proc, cores, memory)
    opts = job_options(kind, sized_settings, n_proc, options)
    tls = batch_security(option(kind, "tls", security), ca_file=option(kind, "tls-ca-file"),
                         cert=option(kind, "tls-cert"), key=option(kind, "tls-key"))
    scheduler = {"dashboard_address": config.get("cluster.dashboard-address")}
    host = option(kind, "scheduler-host", options.pop("scheduler_host", None))
    if host is not None:
        scheduler["host"] = host
    shared = option(kind, "shared-temp-directory", options.pop("shared_temp_directory", None))
    opts.update(security=tls, scheduler_options=scheduler, silence_logs="error",
                shared_temp_directory=shared_directory(shared) if tls is not None else None)
    # dask-jobqueue reads its own config again for every job it submits: fix it now, so a
    # job resubmitted later (outside a dask.config.set block) is the same job.
    frozen = {"log-directory": "log_directory", "python": "python",
              "death-timeout": "death_timeout", "name": "job_name"}
    for key, arg in frozen.items():
        value = dask.config.get(f"jobqueue.{kind}.{key}", None)
        if value is not None:
            opts[arg] = value
    opts.update(options)
    adapt = option(kind, "adapt-maximum", adapt)
    if adapt is not None and adapt < sized_settings.n_workers:
        raise ParameterError(f"adapt={adapt} is below the {sized_settings.n_workers} workers "
                             f"started: give the largest number of workers to grow to")
    start = {"cls_name": KINDS[kind], "jobs": sized_settings.n_workers // n_proc,
             "adapt_range": (sized_settings.n_workers, adapt) if adapt else None,
             "replace_interval": float(option(kind, "replace-interval")), "options": opts}
    return ClusterSpec(start_jobqueue_cluster, start, sized_settings,
                       cluster_policy(sized_settings))


def start_jobqueue_cluster(*, cls_name: str, jobs: int, adapt_range: tuple[int, int] | None,
                           replace_interval: float, options: dict[str, Any]) -> Any:
    """Create the cluster, submit ``jobs`` worker jobs, and keep them replaced.

    Every ``replace_interval`` seconds the cluster resubmits the jobs of workers that left
    (cancelled, killed, out of walltime) -- dask's cluster forgets a lost worker after
    ``distributed.deploy.lost-worker-timeout``; tasks of a lost worker rerun elsewhere.
    """
    from tornado.ioloop import PeriodicCallback

    cls = getattr(importlib.import_module("dask_jobqueue"), cls_name)
    cluster = cls(**options)
    cluster.scale(jobs=jobs)
    if adapt_range is not None:
        cluster.adapt(minimum=adapt_range[0], maximum=adapt_range[1])
    if replace_interval > 0:
        def keep_jobs() -> None:
            cluster.scale(jobs=len(cluster.worker_spec))

        callback = PeriodicCallback(keep_jobs, replace_interval * 1000)
        cluster.periodic_callbacks["caiman-dask-replace-jobs"] = callback
        cluster.loop.add_callback(callback.start)
    return cluster


def _builder(kind: str) -> Any:
    def build(settings: WorkerSettings, **options: Any) -> ClusterSpec:
        return jobqueue_spec(settings, kind=kind, **options)

    build.__doc__ = f"Spec of a {KINDS[kind]} (see :func:`jobqueue_spec`)."
    return build


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


if _importable("dask_jobqueue"):
    # Import now: it adds its defaults (``jobqueue.*``) to dask's config, and a user's
    # ``dask.config.set({"jobqueue...": ...})`` block left before that import would remove
    # them all on exit.
    importlib.import_module("dask_jobqueue")
for _kind in KINDS:
    if "dask_jobqueue" in sys.modules:
        register_backend(_kind, _builder(_kind))
    else:
        OPTIONAL_BACKENDS[_kind] = INSTALL_HINT
