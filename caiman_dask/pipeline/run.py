"""The main job: convert -> motion correction -> CNMF -> evaluation -> results.

Each stage is skipped when ``OUTDIR/run.json`` records it done with the same key (see
:mod:`caiman_dask.pipeline.state`), so a rerun after an interruption redoes only what is
missing and a rerun with changed parameters redoes the stages they affect.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from caiman_dask import config
from caiman_dask.cluster import setup_cluster, stop_server
from caiman_dask.engines import DEFAULT_ENGINE, get_engine
from caiman_dask.errors import CaimanDaskError, StoreExistsError, disk_full, is_disk_full
from caiman_dask.pipeline import reporting, stages
from caiman_dask.pipeline.monitor import MemoryMonitor
from caiman_dask.pipeline.params import RunParams, resolve_params
from caiman_dask.pipeline.redact import RedactingFilter, scrub, secrets_of
from caiman_dask.pipeline.state import MANIFEST, RunFolder
from caiman_dask.view import SerialView

logger = logging.getLogger("caiman_dask.run")


@dataclass
class RunContext:
    """What every stage needs: the folder, parameters, cluster and bookkeeping."""

    folder: RunFolder
    params: RunParams
    client: Any
    view: Any
    storage_options: dict[str, Any] | None
    monitor: MemoryMonitor
    engine: str = DEFAULT_ENGINE
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a stage, track its memory, log it; yields its info dict."""
        info: dict[str, Any] = {"skipped": False}
        logger.info("stage %s: started", name)
        start = time.perf_counter()
        with self.monitor.stage(name):
            yield info
        info["seconds"] = round(time.perf_counter() - start, 3)
        info["peak_memory"] = self.monitor.peaks.get(name, {})
        self.timings[name] = info
        logger.info("stage %s: %s in %.1f s", name, "skipped (done before)"
                    if info["skipped"] else "done", info["seconds"])


def run(inputs: str | Sequence[str], outdir: str, *, params: Any = None,
        overrides: Sequence[str] = (), motion: bool = True, backend: Any = None,
        n_workers: int | None = None, memory_limit: Any = None,
        threads_per_worker: int | None = None, storage_options: dict[str, Any] | None = None,
        report: bool = True, regions: str | None = None, engine: str | None = None) -> Any:
    """Run the whole pipeline on a cluster; return the estimates.

    Parameters
    ----------
    inputs : str or list of str
        Movie files, globs, URLs, or an existing caiman-dask store.
    outdir : str
        Output folder or any fsspec URL (``s3://bucket/run``): every part of the run
        is written under it (created; a folder of another run is resumed).
    params : path, dict, RunParams or CaImAn CNMFParams, optional
        Parameters (CaImAn's groups); ``overrides`` (``GROUP.KEY=VALUE``) apply last.
    motion : bool
        Motion-correct (False for movies registered already).
    backend, n_workers, memory_limit, threads_per_worker
        The cluster, as for :func:`caiman_dask.setup_cluster`.
    storage_options : dict, optional
        fsspec options for the URLs of the inputs and of ``outdir`` (credentials,
        ``endpoint_url``...); default the filesystem's own (environment variables,
        config files). Never saved, and masked in the log and in error messages.
    report : bool
        Write ``OUTDIR/report.html`` and its PNGs (summary images, contours, shifts,
        traces, timings).
    regions : str or sparse matrix, optional
        Manual ROIs (a neurofinder ``regions.json``, or footprints) to score against.
    engine : {"builtin", "caiman"}, optional
        Whose maths runs each motion block and CNMF patch (default: config
        ``caiman-dask.engine``, "builtin"; "caiman" needs CaImAn on client and workers).

    Returns
    -------
    caiman_dask.results.Estimates
    """
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    secrets = secrets_of(storage_options)
    options = RunOptions(motion=motion, backend=backend, n_workers=n_workers,
                         memory_limit=memory_limit, threads_per_worker=threads_per_worker,
                         storage_options=storage_options, regions=regions, report=report,
                         engine=get_engine(config.get("engine", engine)).name)
    try:
        folder = RunFolder(outdir, storage_options=storage_options)
        _check_folder(folder)
        resolved = resolve_params(params, overrides)
        folder.lock()
    except Exception as exc:
        scrub(exc, secrets)
        raise
    try:
        with _log_to(folder, secrets):
            folder.write_json("params.json", resolved.to_dict())
            return _run(inputs, folder, resolved, options)
    except Exception as exc:
        scrub(exc, secrets)
        if is_disk_full(exc) and not isinstance(exc, CaimanDaskError):
            raise disk_full(getattr(exc, "filename", None) or folder.url, exc) from exc
        raise
    finally:
        try:
            folder.unlock()
        finally:
            folder.close()


@dataclass(frozen=True)
class RunOptions:
    """How to run: the cluster, storage, what to do (everything but the parameters)."""

    motion: bool
    backend: Any
    n_workers: int | None
    memory_limit: Any
    threads_per_worker: int | None
    storage_options: dict[str, Any] | None
    regions: Any
    report: bool
    engine: str


def _run(inputs: list[str], folder: RunFolder, params: RunParams, opts: RunOptions) -> Any:
    client, dview, _ = setup_cluster(opts.backend, opts.n_workers,
                                     memory_limit=opts.memory_limit,
                                     threads_per_worker=opts.threads_per_worker)
    view = dview if dview is not None else SerialView()
    if client is not None:
        logger.info("dashboard: %s", client.dashboard_link)
    start = time.perf_counter()
    try:
        with MemoryMonitor(client) as monitor:
            ctx = RunContext(folder, params, client, view, opts.storage_options, monitor,
                             engine=opts.engine)
            raw = stages.convert(ctx, inputs)
            ctx.params = stages.frame_rate(ctx, raw)
            folder.write_json("params.json", ctx.params.to_dict())
            store = stages.motion(ctx, raw) if opts.motion else raw
            fitted = stages.cnmf(ctx, store)
            estimates, evaluation = stages.evaluate(ctx, store, fitted)
            summary = stages.summarize(ctx, inputs, estimates, time.perf_counter() - start,
                                       opts.regions)
            if opts.report:
                reporting.report(ctx, raw=raw[0], store=store[0], upstream=evaluation,
                                 estimates=estimates, summary=summary, regions=opts.regions)
                summary["seconds"] = round(time.perf_counter() - start, 3)  # its stages
                folder.write_json("summary.json", summary)  # dict now holds the report's
    finally:
        if dview is None:
            view.shutdown()
        else:
            stop_server(dview)
    return estimates


def _check_folder(folder: RunFolder) -> None:
    """Refuse a non-empty folder that is not a run folder: never touch a user's files."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise StoreExistsError(f"{folder.url} exists and is not a folder: choose another "
                               "output")
    ours = (folder.exists(MANIFEST) or folder.exists(".lock")  # .lock: lock() decides
            or (folder.exists("params.json") and folder.exists("run.log")))  # killed early
    if folder.listdir() and not ours:  # a user's own params.json does not make it ours
        raise StoreExistsError(f"{folder.url} holds files that are not from a caiman-dask "
                               "run: choose a new or empty output folder")


@contextlib.contextmanager
def _log_to(folder: RunFolder, secrets: frozenset[str]) -> Iterator[None]:
    """Log to ``OUTDIR/run.log`` with secrets masked (at a URL: appended locally, uploaded
    at the end, also when the run fails)."""
    handler = logging.FileHandler(folder.download("run.log") or folder.local("run.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger("caiman_dask")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    except Exception as exc:
        logger.error("run failed: %s: %s", type(exc).__name__, exc)
        raise
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
        folder.upload("run.log")
