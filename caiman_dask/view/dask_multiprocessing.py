"""The Dask dview: ``multiprocessing.Pool``'s protocol on a ``distributed.Client``.

The module path contains "multiprocessing" on purpose: CaImAn chooses its code path
with ``'multiprocessing' in str(type(dview))`` and the Pool path (``map_async(...).get``)
covers more of CaImAn than the ipyparallel one (caiman-facts.md).
"""

from __future__ import annotations

import dataclasses
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

from dask.sizeof import sizeof
from dask.utils import format_bytes
from distributed import Client, Future, as_completed
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from caiman_dask import config
from caiman_dask.errors import ClusterError, WorkerLostError
from caiman_dask.view.base import BaseView, deadline, remaining
from caiman_dask.view.tasks import Batch, run_batch, shared_value, with_pickled_function


#: Future states: still to come (``lost``: computed again after its worker died), and failed.
_RUNNING = ("pending", "lost")
_FAILED = ("error", "cancelled")


class DaskExecutor:
    """Runs batches as tasks on a Dask client; repeated large arguments are sent once.

    Parameters
    ----------
    client : distributed.Client
        The client to submit to.
    threads_per_worker : int, optional
        Thread limit re-asserted before each batch (0: leave workers as they are).
    memory_limit : int, optional
        Bytes per worker, named in errors about killed workers.
    """

    def __init__(self, client: Client, *, threads_per_worker: int = 0, memory_limit: int = 0):
        self.client = client
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.scatter_min_bytes = int(config.get("view.scatter-min-bytes"))
        self._batch_of: dict[str, tuple[Batch, int, str]] = {}
        self._limit_asked = bool(memory_limit)

    @property
    def n_workers(self) -> int:
        """Workers connected now."""
        return max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    @property
    def n_threads(self) -> int:
        """Worker threads connected now."""
        return max(1, sum(self.client.nthreads().values()))

    def submit(self, batches: list[tuple[Batch, list[Any]]]) -> list[Future]:
        """Submit the batches in one message; large repeated arguments are scattered once."""
        if not batches:
            return []
        if not self._limit_asked:  # an attached cluster: ask now, its workers may die later
            self.memory_limit, self._limit_asked = _worker_memory_limit(self.client), True
        shared = _SharedArguments(self.client, self.scatter_min_bytes)
        specs = with_pickled_function([batch for batch, _ in batches])
        sent = [[shared.swap_item(x) for x in items] for _, items in batches]
        futures = self.client.map(run_batch, specs, sent, pure=False, key=_keys(specs))
        self._forget_dropped()
        for future, (batch, items) in zip(futures, batches, strict=True):
            self._batch_of[future.key] = (batch, len(items), _label(items))
        return futures

    def _forget_dropped(self) -> None:
        """Drop the records of batches whose futures nobody holds any more.

        Not a done-callback per future: each one wakes the client's event loop, which
        cost 0.4 ms per task (measured on a 1,000-task map).
        """
        live = self.client.futures
        self._batch_of = {k: v for k, v in self._batch_of.items() if k in live}

    def wait(self, handles: list[Future], timeout: float | None) -> bool:
        """Wait for all handles, returning early on the first failure.

        A result lost with its worker (status ``lost``) is not a failure: the scheduler
        computes it again, so it is waited for like a pending one.
        """
        running = [f for f in handles if f.status in _RUNNING]
        if not running or self.failed(handles) is not None:
            return True
        limit = deadline(timeout)
        try:
            for future in as_completed(running, loop=self.client.loop, timeout=remaining(limit)):
                if future.status in _FAILED:
                    return True
        except TimeoutError:
            return False
        return True

    def failed(self, handles: list[Future]) -> Future | None:
        """The first handle that errored or was cancelled."""
        return next((f for f in handles if f.status in _FAILED), None)

    def result(self, handle: Future) -> list[Any]:
        """The batch's results, or its error translated into a clear one."""
        try:
            return handle.result()
        except KilledWorker as exc:
            raise WorkerLostError(self._killed_message(handle)) from exc
        except FutureCancelledError as exc:
            raise ClusterError(
                f"task {handle.key} was cancelled: the scheduler or the client connection "
                f"was lost ({exc}); rerun once the cluster is back"
            ) from exc

    def gather(self, handles: list[Future]) -> list[list[Any]]:
        """Every batch's results in one round trip (errors translated as in result)."""
        try:
            return self.client.gather(handles)
        except Exception:
            bad = self.failed(handles)
            if bad is None:
                raise
            return [self.result(bad)]

    def completed(self, handles: list[Future]) -> Iterator[Future]:
        """Handles in completion order (on this client's loop, not the default client's)."""
        yield from as_completed(handles, loop=self.client.loop)

    def cancel(self, handles: list[Future]) -> None:
        """Cancel unfinished handles."""
        unfinished = [f for f in handles if f.status in _RUNNING]
        if unfinished:
            self.client.cancel(unfinished)

    def release(self, handle: Future) -> None:
        """Let the scheduler forget a batch whose results were taken, so the worker frees
        them now rather than when the whole map is over (a map of 47 pixel blocks of a
        20,000-frame movie held 113 MB per finished block)."""
        handle.release()

    def _killed_message(self, handle: Future) -> str:
        batch, n_items, label = self._batch_of.get(handle.key, (None, 0, ""))
        name = getattr(batch.fn, "__qualname__", "?") if batch else handle.key
        items = f"items {batch.offset}-{batch.offset + n_items - 1}" if batch else "?"
        items += f": {label}" if label else ""
        limit = format_bytes(self.memory_limit) if self.memory_limit else "its limit"
        retries = config.get("cluster.allowed-failures")
        return (
            f"{name} ({items}) killed the worker running it {retries + 1} time(s); "
            f"the most common cause is memory: each worker may use {limit}. Give workers "
            f"more memory (memory_limit / --memory-limit) or make tasks smaller "
            f"(smaller patches: rf; shorter blocks: num_frames_split)."
        )


def _label(items: list[Any]) -> str:
    """How errors name a batch: the ``label`` of its first item (or of the item's first
    element, for tuple items), e.g. ``CNMF patch 3 (rows 0:21, cols 0:21)``."""
    first = items[0] if items else None
    if type(first) in (tuple, list) and first:
        first = first[0]
    label = getattr(first, "label", "")
    return label + (f" and {len(items) - 1} more" if label and len(items) > 1 else "")


def _worker_memory_limit(client: Client) -> int:
    """The smallest worker memory limit the scheduler knows (0: unknown or none)."""
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        return min((int(w.get("memory_limit") or 0) for w in workers), default=0)
    except Exception:  # the cluster may be gone: the message must still be written
        return 0


class _SharedArguments:
    """Send each large argument once per map call, as a task result, and pass its future.

    Not ``client.scatter``: scattered data lives only on the worker that received it and
    is lost with it, failing every task that needs it. A ``shared_value`` task is rerun
    by the scheduler on another worker instead.
    """

    def __init__(self, client: Client, min_bytes: int):
        self.client, self.min_bytes = client, min_bytes
        self.futures: dict[int, Future] = {}

    def swap(self, obj: Any) -> Any:
        if isinstance(obj, (str, bytes, int, float, bool, type(None), Future)):
            return obj
        key = id(obj)
        if key not in self.futures:
            if _nbytes(obj) < self.min_bytes:
                return obj
            with warnings.catch_warnings():  # the point is to put it in the graph once
                warnings.filterwarnings("ignore", message=".*[Ll]arge graph", category=UserWarning)
                self.futures[key] = self.client.submit(
                    shared_value, obj, pure=False,
                    key=f"shared-{type(obj).__name__}-{uuid.uuid4().hex}")
        return self.futures[key]

    def swap_item(self, item: Any) -> Any:
        if type(item) in (tuple, list):
            return type(item)(self.swap(x) for x in item)
        return self.swap(item)


def _nbytes(obj: Any) -> int:
    """Dask's size estimate, counting a dataclass (a task's argument record) by its fields."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(_nbytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return int(sizeof(obj))


def _keys(batches: list[Batch]) -> list[str]:
    """Unique, readable task keys: ``<function>-<first item>-<call id>``."""
    call = uuid.uuid4().hex[:12]
    return [f"{getattr(b.fn, '__name__', 'task')}-{b.offset}-{call}" for b in batches]


class DaskPool(BaseView):
    """A CaImAn dview on a Dask client (``multiprocessing.Pool`` protocol).

    Parameters
    ----------
    client : distributed.Client
        The cluster's client. The view never closes it.
    threads_per_worker : int, optional
        Thread count re-asserted in workers before each task.
    memory_limit : int, optional
        Bytes per worker, named in errors about killed workers.
    """

    def __init__(self, client: Client, *, threads_per_worker: int = 0, memory_limit: int = 0):
        super().__init__(DaskExecutor(client, threads_per_worker=threads_per_worker,
                                      memory_limit=memory_limit))
        self.client = client

    def __repr__(self) -> str:
        return f"<DaskPool {self.client.scheduler.address} threads={len(self)}>"
