"""Task functions for the view tests, importable by Pool and Dask worker processes."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np


def square(x: int) -> int:
    return x * x


def add(a: int, b: int, c: int = 0) -> int:
    return a + b + c


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"item {x} is bad")
    return x


def sleep_then(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def sleep_or_fail(seconds: float) -> float:
    """Sleep ``seconds``; a negative value fails at once."""
    if seconds < 0:
        raise ValueError(f"asked to sleep {seconds} s")
    time.sleep(seconds)
    return seconds


def array_sum_slowly(args: tuple[np.ndarray, float]) -> float:
    array, seconds = args
    time.sleep(seconds)
    return float(array.sum())


def allocate(n_bytes: int) -> int:
    block = np.ones(n_bytes, dtype=np.uint8)  # touches every page
    time.sleep(2)
    return int(block.sum())


def ones(n: int) -> np.ndarray:
    """A fresh array of ``n`` ones (float64)."""
    return np.ones(n)


def pid(_: object) -> int:
    time.sleep(0.05)
    return os.getpid()


@dataclasses.dataclass(frozen=True)
class Record:
    """A task's argument record holding an array (like the CNMF drivers' task records)."""

    data: np.ndarray


def record_sum(item: tuple[int, Record]) -> float:
    index, record = item
    return index + float(record.data.sum())
