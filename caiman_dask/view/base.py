"""The dview protocol: ``multiprocessing.Pool``'s calls (and ipyparallel's few) over an executor.

CaImAn calls ``map_async(f, args).get(timeout)`` when the dview's type name contains
"multiprocessing", and ``map_sync`` / ``results.clear()`` / ``len()`` otherwise
(caiman-facts.md). :class:`BaseView` offers both, on top of an :class:`Executor` that
runs :class:`~caiman_dask.view.tasks.Batch` objects: a Dask client or one local thread.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from caiman_dask.view.tasks import Batch, pool_chunksize, split_batches


class Executor(Protocol):
    """What a view needs from whatever runs its batches."""

    n_workers: int
    n_threads: int
    threads_per_worker: int

    def submit(self, batches: list[tuple[Batch, list[Any]]]) -> list[Any]:
        """Start the ``(batch, items)`` pairs; return one handle each."""

    def wait(self, handles: list[Any], timeout: float | None) -> bool:
        """Wait until all handles are done or one failed; False on timeout."""

    def failed(self, handles: list[Any]) -> Any | None:
        """Return a failed handle, if any."""

    def result(self, handle: Any) -> list[Any]:
        """The batch's results; raises the batch's error (translated)."""

    def gather(self, handles: list[Any]) -> list[list[Any]]:
        """Every batch's results, in one round trip where the executor can."""

    def completed(self, handles: list[Any]) -> Iterator[Any]:
        """Yield handles as they complete."""

    def cancel(self, handles: list[Any]) -> None:
        """Cancel handles that have not finished."""

    def release(self, handle: Any) -> None:
        """Forget a finished handle whose results were taken (frees its copy of them)."""


class AsyncResult:
    """``multiprocessing.pool.AsyncResult`` over an executor's handles."""

    def __init__(self, executor: Executor, handles: list[Any], *, single: bool = False):
        self._executor = executor
        self._handles = handles
        self._single = single

    def wait(self, timeout: float | None = None) -> None:
        """Wait for all results (or the first failure), at most ``timeout`` seconds."""
        self._executor.wait(self._handles, timeout)

    def ready(self) -> bool:
        """True when every batch has finished or one has failed."""
        return self._executor.wait(self._handles, 0)

    def successful(self) -> bool:
        """True when every batch finished without error; ValueError if not ready."""
        if not self.ready():
            raise ValueError("the result is not ready yet")
        return self._executor.failed(self._handles) is None

    def get(self, timeout: float | None = None) -> Any:
        """Return the results in input order.

        Raises
        ------
        multiprocessing.TimeoutError
            If the results are not ready within ``timeout`` seconds.
        Exception
            The first task's error, with the remote traceback.
        """
        if not self._executor.wait(self._handles, timeout):
            raise multiprocessing.TimeoutError(f"results not ready within {timeout} s")
        bad = self._executor.failed(self._handles)
        if bad is not None:
            self._executor.cancel(self._handles)
            self._executor.result(bad)
        out = [r for batch in self._executor.gather(self._handles) for r in batch]
        return out[0] if self._single else out


class IMapIterator:
    """``Pool.imap``'s iterator: results in input order, ``next(timeout)``."""

    def __init__(self, executor: Executor, handles: list[Any]):
        self._executor = executor
        self._handles = list(handles)
        self._buffer: list[Any] = []

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        """Return the next result, waiting at most ``timeout`` seconds."""
        while not self._buffer:
            if not self._handles:
                raise StopIteration
            head = self._handles[0]
            if not self._executor.wait([head], timeout):
                raise multiprocessing.TimeoutError(f"next result not ready within {timeout} s")
            self._buffer = list(self._executor.result(head))
            self._executor.release(self._handles.pop(0))
        return self._buffer.pop(0)

    __next__ = next


class _Results(dict):
    """ipyparallel's ``dview.results``; nothing is kept, ``clear()`` is accepted."""


class BaseView:
    """A dview: the calls CaImAn makes on a ``multiprocessing.Pool`` or ipyparallel view.

    Differences from a Pool, by design: ``close()`` and ``terminate()`` cancel this
    view's unfinished tasks but leave the view (and the cluster) usable, because
    CaImAn's ``stop_server`` and ``CNMF.fit_file`` call ``terminate()`` on a dview the
    user may still hold. Use :func:`caiman_dask.stop_server` to shut down.
    """

    def __init__(self, executor: Executor):
        self._executor = executor
        self._pending: list[Any] = []
        self.results = _Results()

    # -- Pool API --------------------------------------------------------------------
    def map_async(self, func: Callable[..., Any], iterable: Iterable[Any],
                  chunksize: int | None = None, *, star: bool = False) -> AsyncResult:
        """Start ``func`` over ``iterable``; ``get()`` the list of results."""
        return AsyncResult(self._executor, self._start(func, iterable, chunksize, star=star))

    def map(self, func: Callable[..., Any], iterable: Iterable[Any],
            chunksize: int | None = None) -> list[Any]:
        """``[func(x) for x in iterable]`` on the cluster, in input order."""
        return self.map_async(func, iterable, chunksize).get()

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]],
                      chunksize: int | None = None) -> AsyncResult:
        """Like :meth:`map_async` with ``func(*args)``."""
        return self.map_async(func, iterable, chunksize, star=True)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Sequence[Any]],
                chunksize: int | None = None) -> list[Any]:
        """Like :meth:`map` with ``func(*args)``."""
        return self.starmap_async(func, iterable, chunksize).get()

    def imap(self, func: Callable[..., Any], iterable: Iterable[Any],
             chunksize: int = 1) -> IMapIterator:
        """Results in input order, as an iterator with ``next(timeout)``."""
        return IMapIterator(self._executor, self._start(func, iterable, chunksize))

    def imap_unordered(self, func: Callable[..., Any], iterable: Iterable[Any],
                       chunksize: int = 1) -> Iterator[Any]:
        """Results in completion order."""
        handles = self._start(func, iterable, chunksize)
        for handle in self._executor.completed(handles):
            results = self._executor.result(handle)
            self._executor.release(handle)  # workers need not keep what was taken
            yield from results

    def apply_async(self, func: Callable[..., Any], args: Sequence[Any] = (),
                    kwds: dict[str, Any] | None = None) -> AsyncResult:
        """Run ``func(*args, **kwds)`` once; ``get()`` its value."""
        call = _Call(func, dict(kwds or {}))
        return AsyncResult(self._executor, self._start(call, [tuple(args)], 1, star=True),
                           single=True)

    def apply(self, func: Callable[..., Any], args: Sequence[Any] = (),
              kwds: dict[str, Any] | None = None) -> Any:
        """``func(*args, **kwds)`` on the cluster."""
        return self.apply_async(func, args, kwds).get()

    def close(self) -> None:
        """Cancel this view's unfinished tasks; the view stays usable."""
        self.terminate()

    def terminate(self) -> None:
        """Cancel this view's unfinished tasks; the cluster is not touched."""
        self._executor.cancel(self._pending)
        self._pending = []

    def join(self, timeout: float | None = None) -> None:
        """Wait for this view's tasks (at most ``timeout`` seconds)."""
        self._executor.wait(self._pending, timeout)

    def __enter__(self) -> BaseView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    # -- ipyparallel API CaImAn uses ---------------------------------------------------
    def map_sync(self, func: Callable[..., Any], iterable: Iterable[Any]) -> list[Any]:
        """ipyparallel's ``map_sync``: a list in input order."""
        return self.map(func, iterable)

    def clear(self) -> None:
        """ipyparallel's ``clear()``: nothing is cached, so nothing to do."""

    def __len__(self) -> int:
        """Worker threads (ipyparallel: engines), which CaImAn splits work by."""
        return self._executor.n_threads

    # -- internals -------------------------------------------------------------------
    def _start(self, func: Callable[..., Any], iterable: Iterable[Any],
               chunksize: int | None, *, star: bool = False) -> list[Any]:
        items = list(iterable)
        if chunksize is None:
            chunksize = pool_chunksize(len(items), self._executor.n_threads)
        if chunksize < 1:
            raise ValueError(f"chunksize must be >= 1, got {chunksize}")
        batches = split_batches(func, items, chunksize, star=star,
                                n_threads=self._executor.threads_per_worker)
        self._pending = [h for h in self._pending if not self._executor.wait([h], 0)]
        handles = self._executor.submit(batches)
        self._pending += handles
        return handles


class _Call:
    """``func`` with keyword arguments bound, picklable for any executor."""

    def __init__(self, func: Callable[..., Any], kwds: dict[str, Any]):
        self.func, self.kwds = func, kwds
        self.__qualname__ = getattr(func, "__qualname__", repr(func))

    def __call__(self, *args: Any) -> Any:
        return self.func(*args, **self.kwds)


def deadline(timeout: float | None) -> float | None:
    """Absolute monotonic time ``timeout`` seconds from now (None: no deadline)."""
    return None if timeout is None else time.monotonic() + timeout


def remaining(limit: float | None) -> float | None:
    """Seconds left until ``limit`` (never negative); None without a deadline."""
    return None if limit is None else max(0.0, limit - time.monotonic())
