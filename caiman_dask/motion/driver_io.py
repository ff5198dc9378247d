"""Block I/O that overlaps registration: chunk reads in a thread, block writes after secede.

A block task of the motion driver registers its frames one by one. :class:`BlockReader`
reads the block's stored time chunks in a background thread (zarr's decoding releases the
GIL), so frame ``i`` registers while the chunks after it are read; ``correct_block``'s
``ready`` hook waits for a frame only when it is not loaded yet. One extra thread per task,
doing I/O and decompression only: the worker's native thread pools keep their pinned size.
"""

from __future__ import annotations

import threading

import numpy as np
import zarr

from caiman_dask.movie.shards import write_region


class BlockReader:
    """Read frames ``[start, stop)`` of a (T, Y, X) zarr array in a background thread.

    Use as a context manager: the thread starts on entry and is stopped (after the chunk
    it is reading) and joined on exit. ``frames`` is the block being filled; ``wait(i)``
    returns once frame ``i`` of the block is in it.

    Parameters
    ----------
    array : zarr.Array
        The movie array.
    start, stop : int
        The block's frames.
    """

    def __init__(self, array: zarr.Array, start: int, stop: int) -> None:
        self.frames = np.empty((stop - start, *array.shape[1:]), array.dtype)
        self._array, self._start, self._stop = array, start, stop
        self._step = max(1, int(array.chunks[0]))
        self._loaded = 0
        self._error: BaseException | None = None
        self._cancelled = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="caiman-dask-block-reader",
                                        daemon=True)

    def __enter__(self) -> BlockReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cancelled = True
        self._thread.join()

    def _edges(self) -> list[int]:
        first = self._start - self._start % self._step + self._step
        return [self._start, *range(first, self._stop, self._step), self._stop]

    def _run(self) -> None:
        edges = self._edges()
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            if self._cancelled:
                return
            try:
                self.frames[a - self._start : b - self._start] = self._array[a:b]
            except BaseException as exc:  # handed to the registering thread by wait()
                with self._condition:
                    self._error = exc
                    self._condition.notify_all()
                return
            with self._condition:
                self._loaded = b - self._start
                self._condition.notify_all()

    def wait(self, index: int) -> None:
        """Return once frame ``index`` of the block is loaded; raise the reader's error."""
        if index < self._loaded:
            return
        with self._condition:
            while self._loaded <= index and self._error is None:
                self._condition.wait()
            if self._loaded <= index:
                raise self._error  # type: ignore[misc]


#: One corrected block being written per worker process: a task waits here (holding its
#: compute slot, so memory stays at two blocks) while the previous block is written.
_WRITE_SLOT = threading.Semaphore(1)


def write_block(array: zarr.Array, start: int, stop: int, data: np.ndarray) -> None:
    """Write a corrected block, overlapping the write with the worker's next block.

    Inside a Dask worker the task leaves the worker's thread pool once it holds the write
    slot (``distributed.secede``), so the next block starts registering while this one is
    written; the task (and its result) still ends only after the write, so a finished task
    always means a written block. Elsewhere (serial runs) it simply writes.
    """
    with _WRITE_SLOT:
        _leave_thread_pool()
        write_region(array, start, stop, data)


def _leave_thread_pool() -> None:
    try:
        from distributed import get_worker, secede
        get_worker()
    except (ImportError, ValueError):  # not in a worker: nothing to overlap with
        return
    secede()
