"""Functions that run inside a worker for a view: batches of items, thread limits."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cloudpickle

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
    pickled_fn : bytes, optional
        ``fn`` pickled once for the whole map; what the batch is pickled with.
    """

    fn: Callable[..., Any]
    offset: int
    star: bool = False
    n_threads: int = 0
    pickled_fn: bytes | None = field(default=None, repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:
        # The function travels as bytes pickled once per map (``with_pickled_function``):
        # a function defined in a script is pickled by value, which the scheduler would
        # otherwise redo for every task and every worker undo for every task (0.2 ms per
        # task, measured).
        payload = self.pickled_fn if self.pickled_fn is not None else cloudpickle.dumps(self.fn)
        return _rebuild_batch, (payload, self.offset, self.star, self.n_threads)


def with_pickled_function(batches: list[Batch]) -> list[Batch]:
    """The batches of one map call, sharing their function pickled once, now (so a later
    change to the function's globals reaches the next map, as with a Pool's next call)."""
    if not batches:
        return batches
    payload = cloudpickle.dumps(batches[0].fn)
    return [replace(b, pickled_fn=payload) for b in batches]


#: Unpickled functions a worker keeps, by their bytes; larger payloads (an ``apply_async``
#: call carrying large keyword arguments) are unpickled each time and never kept.
_CACHE_ENTRIES = 64
_CACHE_MAX_BYTES = 64 * 1024


@functools.lru_cache(maxsize=_CACHE_ENTRIES)
def _cached_function(payload: bytes) -> Callable[..., Any]:
    return cloudpickle.loads(payload)


def _rebuild_batch(payload: bytes, offset: int, star: bool, n_threads: int) -> Batch:
    small = len(payload) <= _CACHE_MAX_BYTES
    fn = _cached_function(payload) if small else cloudpickle.loads(payload)
    return Batch(fn, offset, star, n_threads, pickled_fn=payload)


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
