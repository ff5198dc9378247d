"""A tiny progress reporter shared by every driver (no third-party dependency).

On a terminal it redraws one bar line with counts, rate and ETA; elsewhere (a log
file, a batch job's output) it writes a plain line every ``interval`` seconds and
one at the end::

    with Progress("convert", total=n) as p:
        for _ in work():
            p.advance(1)
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 30


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    whole = int(round(max(seconds, 0.0)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Report progress of ``total`` units of work.

    Parameters
    ----------
    label : str
        What is running, printed first on each line.
    total : int
        Units of work expected (>= 0).
    stream : file, optional
        Where to write; default ``sys.stderr``.
    interval : float, optional
        Seconds between plain log lines when ``stream`` is not a terminal (default 10);
        a terminal bar is redrawn at most every 0.1 s.
    enabled : bool, optional
        False makes every method a no-op.
    """

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None,
                 interval: float = 10.0, enabled: bool = True) -> None:
        self.label = label
        self.total = max(int(total), 0)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.1 if self.is_tty else float(interval)
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last = float("-inf")

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(failed=exc_type is not None)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done; redraw or log if it is time."""
        with self._lock:
            self.done += int(n)
            now = time.monotonic()
            if now - self._last >= self.interval or self.done >= self.total:
                self._last = now
                self._emit(final=False)

    def close(self, *, failed: bool = False) -> None:
        """Write the last line (``failed`` marks it as stopped early)."""
        with self._lock:
            self._emit(final=True, failed=failed)
            self.enabled = False

    def line(self) -> str:
        """The current status line (without bar): counts, percent, elapsed, rate, ETA."""
        elapsed = time.monotonic() - self._start
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = f"{self.label}: {self.done}/{self.total} ({pct:.0f}%) {format_seconds(elapsed)}"
        if 0 < self.done < self.total:
            eta = elapsed * (self.total - self.done) / self.done
            text += f", ETA {format_seconds(eta)}"
        return text

    def _bar(self) -> str:
        filled = BAR_WIDTH * min(self.done, self.total) // self.total if self.total else BAR_WIDTH
        return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]"

    def _emit(self, *, final: bool, failed: bool = False) -> None:
        if not self.enabled:
            return
        text = self.line() + (" (stopped)" if failed else "")
        if self.is_tty:
            label, _, rest = text.partition(": ")
            end = "\n" if final else ""
            self.stream.write(f"\r{label} {self._bar()} {rest}\033[K{end}")
        elif final or self.done < self.total:
            self.stream.write(text + "\n")
        self.stream.flush()
