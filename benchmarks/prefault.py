"""Touch the machine's free memory once, so later allocations do not pay the VM's first touch.

Some virtual machines (Firecracker, as on the machine these benchmarks were run on) back
guest memory lazily: the first write to each never-used page of guest memory costs the host
a fault, ~3 s per GiB here, 20-50x the cost of writing a page the guest has used before.
Every new page-cache page and every fresh large array then looks slow, and a benchmark
measures how much memory the machine has not touched yet rather than the code. Running this
once after boot touches (up to) the free memory and releases it; `machine()` in common.py
records the first-touch cost seen by each benchmark run (``first_touch_s_per_gib``).

Run: ``python benchmarks/prefault.py [--keep-free-gib 3]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import psutil

PAGE = 4096


def prefault(keep_free_gib: float = 3.0) -> tuple[float, float]:
    """Touch all but ``keep_free_gib`` of the available memory; (GiB touched, seconds)."""
    gib = max(0.0, psutil.virtual_memory().available / 2**30 - keep_free_gib)
    start, blocks = time.perf_counter(), []
    for _ in range(int(gib)):
        block = np.empty(2**30, np.uint8)
        block[::PAGE] = 1
        blocks.append(block)
    del blocks
    return float(int(gib)), time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-free-gib", type=float, default=3.0)
    touched, seconds = prefault(parser.parse_args().keep_free_gib)
    print(f"touched {touched:.0f} GiB in {seconds:.1f} s")
