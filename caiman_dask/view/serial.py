"""A serial view: the same protocol, tasks run one at a time in this process.

Used for in-process runs and to check that results do not depend on the cluster.
Tasks run on one background thread so that ``get(timeout)`` can honour its timeout.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterator
from typing import Any

from caiman_dask.view.base import BaseView
from caiman_dask.view.tasks import Batch, run_batch


class ThreadExecutor:
    """Runs batches one after another on a single thread."""

    n_workers = 1
    n_threads = 1
    threads_per_worker = 0

    def __init__(self) -> None:
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="caiman-dask-serial")

    def submit(self, batches: list[tuple[Batch, list[Any]]]) -> list[cf.Future]:
        """Queue the batches in order; each future holds its results in a box to release."""
        return [self._pool.submit(_boxed, batch, items) for batch, items in batches]

    def wait(self, handles: list[cf.Future], timeout: float | None) -> bool:
        """Wait for all handles or the first failure; False on timeout."""
        if not handles:
            return True
        done, pending = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_EXCEPTION)
        return not pending or self.failed(list(done)) is not None

    def failed(self, handles: list[cf.Future]) -> cf.Future | None:
        """The first finished handle that raised."""
        return next((h for h in handles if h.done() and not h.cancelled()
                     and h.exception() is not None), None)

    def result(self, handle: cf.Future) -> list[Any]:
        """The batch's results, or its error."""
        box = handle.result()
        if not box:
            raise RuntimeError("the results of this batch were released after being taken")
        return box[0]

    def gather(self, handles: list[cf.Future]) -> list[list[Any]]:
        """Every batch's results, in order."""
        return [self.result(h) for h in handles]

    def completed(self, handles: list[cf.Future]) -> Iterator[cf.Future]:
        """Handles in completion order."""
        yield from cf.as_completed(handles)

    def cancel(self, handles: list[cf.Future]) -> None:
        """Cancel queued handles (a running one finishes)."""
        for handle in handles:
            handle.cancel()

    def release(self, handle: cf.Future) -> None:
        """Drop the batch's results, which the view and its callers may still reference."""
        if handle.done() and not handle.cancelled() and handle.exception() is None:
            handle.result().clear()

    def shutdown(self) -> None:
        """Stop the thread once queued work is cancelled."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _boxed(batch: Batch, items: list[Any]) -> list[list[Any]]:
    """The batch's results in a one-element list that :meth:`ThreadExecutor.release` empties."""
    return [run_batch(batch, items)]


class SerialView(BaseView):
    """The dview protocol executed serially in this process."""

    def __init__(self) -> None:
        super().__init__(ThreadExecutor())

    def shutdown(self) -> None:
        """Release the background thread."""
        self._executor.shutdown()
