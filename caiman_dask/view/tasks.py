"""Functions that run inside a worker for a view: batches of items, thread limits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from caiman_dask.cluster.pinning import enforce_thread_limits
from caiman_dask.view.align import realign


@dataclass(frozen=True)
class Batch:
    """A run of consecutive items of one map call, executed as one task.

    The items travel beside the batch (``run_batch(batch, items)``), not inside it, so
    that Dask replaces futures of scattered arguments nested in them.

    Attributes
    ----------
    fn : callable
        The user's function.
    offset : int
        Index of the first item in the whole map call (named in errors).
    star : bool
        Call ``fn(*item)`` instead of ``fn(item)``.
    n_threads : int
        Native thread count to re-assert before running (0: leave as is).
    """

    fn: Callable[..., Any]
    offset: int
    star: bool = False
    n_threads: int = 0


def run_batch(batch: Batch, items: Sequence[Any]) -> list[Any]:
    """Run ``batch.fn`` on every item in order; a failure names the item's index."""
    if batch.n_threads:
        enforce_thread_limits(batch.n_threads)
    results = []
    for i, item in enumerate(items):
        item = realign(item)  # the same rounding wherever the task runs (view/align.py)
        try:
            results.append(batch.fn(*item) if batch.star else batch.fn(item))
        except Exception as exc:
            name = getattr(batch.fn, "__qualname__", repr(batch.fn))
            exc.add_note(f"caiman-dask: raised by {name} on item {batch.offset + i}")
            raise
    return results


def split_batches(
    fn: Callable[..., Any], items: Sequence[Any], chunksize: int, *, star: bool, n_threads: int
) -> list[tuple[Batch, list[Any]]]:
    """Cut ``items`` into consecutive ``(batch, items)`` pairs of ``chunksize`` items."""
    return [
        (Batch(fn, i, star, n_threads), list(items[i : i + chunksize]))
        for i in range(0, len(items), chunksize)
    ]


def pool_chunksize(n_items: int, n_workers: int) -> int:
    """``multiprocessing.Pool.map``'s default chunk size: about 4 batches per worker."""
    chunksize, extra = divmod(n_items, max(1, n_workers) * 4)
    return max(1, chunksize + bool(extra))


def shared_value(value: Any) -> Any:
    """Task: return ``value``. A large argument shared by a map's tasks travels as this
    task's result, so the scheduler keeps how to make it again: if the worker holding it
    dies, the value is recomputed elsewhere instead of being lost (as a scattered one
    would be)."""
    return value
