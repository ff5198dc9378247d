"""Peak memory per stage: the client's RSS and each worker's, sampled in a thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psutil


class MemoryMonitor:
    """Sample peak memory of this process and of the cluster's workers, per stage.

    Worker memory comes from the scheduler's heartbeat metrics (no extra calls into
    the workers), so sampling can never block on a busy or dying worker.

    Parameters
    ----------
    client : distributed.Client or None
        The cluster's client; None measures this process only.
    interval : float
        Seconds between samples.
    """

    def __init__(self, client: Any = None, *, interval: float = 0.5):
        self.client, self.interval = client, interval
        self.peaks: dict[str, dict[str, int]] = {}
        self._stage: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="caiman-dask-memory",
                                        daemon=True)

    def __enter__(self) -> MemoryMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Attribute samples taken while the block runs to stage ``name``."""
        self._stage = name
        self.peaks.setdefault(name, {})
        self.sample()
        try:
            yield
        finally:
            self.sample()
            self._stage = None

    def sample(self) -> None:
        """Take one sample now."""
        if self._stage is None:
            return
        peaks = self.peaks[self._stage]
        for name, rss in self._readings().items():
            peaks[name] = max(peaks.get(name, 0), rss)

    def _readings(self) -> dict[str, int]:
        out = {"client": psutil.Process().memory_info().rss}
        if self.client is None:
            return out
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
        except Exception:  # a lost scheduler must not kill the run's bookkeeping
            return out
        for info in workers.values():
            memory = info.get("metrics", {}).get("memory")
            if memory is not None:
                out[f"worker {info.get('name', info.get('id'))}"] = int(memory)
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
