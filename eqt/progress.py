"""Progress a person can follow, on stderr: done/total, rate, ETA and a few named values.

On a terminal the line is redrawn in place at most 5 times a second; otherwise (a log file, CI)
one plain line is written every ``interval`` seconds (``EQT_PROGRESS_INTERVAL``, default 10 s),
plus the first and the last, so a redirected run does not fill its log. stdout stays for results.

Example::

    bar = Progress(total=2000, what="MD", unit="step")
    for step in range(1, 2001):
        ...
        bar.update(step, T="301.2 K", **{"ns/day": 3.1})
    bar.close()
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"2 h 07 min"``."""
    if not seconds == seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class Progress:
    """A progress display on stderr.

    Args:
        total: the count at completion (None: unknown, no ETA).
        what: the leading label (``"training"``, ``"GFN2-xTB MD at 500 K"``).
        unit: the name of one count (``"frame"``, ``"step"``, ``"epoch"``).
        start: the count already done when this display starts (a resumed run): rate and ETA
            count only what this process does.
        enabled: False makes every call a no-op.
        stream: where to write (default ``sys.stderr``).
        interval: seconds between lines when ``stream`` is not a terminal.
    """

    def __init__(self, total: int | None, what: str, unit: str = "step", start: int = 0, enabled: bool = True,
                 stream: TextIO | None = None, interval: float | None = None):
        self.total, self.what, self.unit, self.enabled = total, what, unit, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        env = os.environ.get("EQT_PROGRESS_INTERVAL")
        self.interval = 0.2 if self.tty else float(interval if interval is not None else (env or 10.0))
        self.t0, self.start, self.last_write, self.done = time.perf_counter(), int(start), None, int(start)
        self._width, self._written, self._fields = 0, None, {}

    def line(self, done: int, time_left: float | None = None, **fields: Any) -> str:
        """The text of the display at ``done`` (no newline).

        ``time_left``: seconds until the job stops anyway (a time limit), which caps the ETA.
        """
        elapsed = time.perf_counter() - self.t0
        parts = [f"{self.what}: {self.unit} {done}" + (f"/{self.total}" if self.total else "")]
        rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{rate:.3g} {self.unit}s/s" if rate >= 1 else f"{1 / rate:.3g} s/{self.unit}")
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items()]
        parts.append(f"elapsed {format_duration(elapsed)}")
        eta = (self.total - done) / rate if self.total and rate > 0 and done < self.total else None
        if time_left is not None and (eta is None or time_left < eta):
            eta = max(time_left, 0.0)
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return ", ".join(parts)

    def update(self, done: int, force: bool = False, **fields: Any) -> None:
        """Report ``done`` counts (written when the interval has passed, or ``force``); ``fields``
        are shown as ``name value`` (``time_left=`` caps the ETA, see :meth:`line`)."""
        if not self.enabled:
            return
        self.done, self._fields = int(done), fields
        now = time.perf_counter()
        final = self.total is not None and done >= self.total
        if not (force or final or self.last_write is None or now - self.last_write >= self.interval):
            return
        self.last_write = now
        text = self.line(done, **fields)
        self._written = self.done
        if self.tty:
            pad = max(self._width - len(text), 0)
            self._width = len(text)
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, **fields: Any) -> None:
        """Write the last state if not yet shown, end a terminal line; later calls do nothing."""
        if not self.enabled:
            return
        if self._written != self.done and self.last_write is not None:
            self.update(self.done, force=True, **{**self._fields, **fields})
        if self.tty and self._width and not (self.total is not None and self.done >= self.total):
            self.stream.write("\n")
            self.stream.flush()
        self.enabled = False

    def message(self, text: str) -> None:
        """A one-off line (not redrawn over)."""
        if self.tty and self._width:
            self.stream.write("\n")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()
