"""Terminal progress of a long command (the backfill): a tqdm bar on a terminal, a plain
line every few seconds otherwise (a log file, CI)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any


class Progress:
    """tqdm with rate and ETA on a terminal; a plain log line every ``interval`` s otherwise."""

    def __init__(self, total: int, initial: int, *, unit: str = "inst", interval: float = 10.0):
        self.total = total
        self.count = initial
        self.started = time.monotonic()
        self.initial = initial
        self.interval = interval
        self._last = 0.0
        self._lock = threading.Lock()
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, unit=unit, unit_scale=True, smoothing=0.1
            )

    def update(self, n: int, **postfix: Any) -> None:
        with self._lock:
            self.count += n
            if self._bar is not None:
                self._bar.update(n)
                if postfix:
                    self._bar.set_postfix(postfix, refresh=False)
                return
            now = time.monotonic()
            if now - self._last >= self.interval or self.count >= self.total:
                self._last = now
                print(self.line(now, postfix), file=sys.stderr, flush=True)

    def line(self, now: float, postfix: dict[str, Any]) -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = (self.count - self.initial) / elapsed
        left = max(self.total - self.count, 0)
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        extra = "".join(f" {k}={v}" for k, v in postfix.items())
        return (
            f"backfill: {self.count}/{self.total} instances, {rate:.0f}/s, "
            f"elapsed {elapsed:.0f}s, ETA {eta}{extra}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
