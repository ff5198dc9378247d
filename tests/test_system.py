"""Giving freed memory back to the operating system between tasks."""

from __future__ import annotations

import subprocess
import sys

import pytest

import caiman_dask.system as system

HEAP_CHURN = """
import numpy as np, psutil
from caiman_dask.system import release_free_memory
p = psutil.Process()
blocks, pins = [], []
for _ in range(2000):  # 200 MB of 100 kB blocks (glibc serves them from its heap)
    blocks.append(np.ones(100_000 // 8))
    pins.append(np.ones(2000))  # live 16 kB heap blocks between them: the heap cannot shrink
del blocks
before = p.memory_info().rss
release_free_memory()
print((before - p.memory_info().rss) >> 20)
"""


@pytest.mark.skipif(system._libc_trim() is None, reason="no glibc malloc_trim here")
def test_freed_heap_memory_goes_back_to_the_os() -> None:
    done = subprocess.run([sys.executable, "-c", HEAP_CHURN], capture_output=True, text=True,
                          timeout=120, check=True)
    assert int(done.stdout) > 150, done.stdout  # MiB of RSS returned (measured 183)


def test_a_task_releases_memory_even_when_it_fails(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(system, "release_free_memory", lambda: calls.append(1))

    @system.releases_memory
    def task(x: int) -> int:
        if x < 0:
            raise ValueError("bad")
        return 2 * x

    assert task(3) == 6
    with pytest.raises(ValueError, match="bad"):
        task(-1)
    assert calls == [1, 1]
