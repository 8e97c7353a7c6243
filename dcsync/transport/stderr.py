"""A peer's stderr, drained continuously into a bounded tail.

A peer that writes more to stderr than a pipe (or an SSH window) holds would block, and with it the
whole protocol, if nobody read it. Every transport therefore starts a daemon thread that reads stderr
until end of stream and keeps only the last :data:`TAIL_BYTES`, which error messages quote. A peer's
stdout and stderr end together, so a channel whose output has ended waits (bounded) for its drain
thread before it reports the end: the last words ("dcsync: not found") are in the tail by then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

TAIL_BYTES = 64 * 1024
QUOTE_LINES = 20
QUOTE_CHARS = 4000


class StderrTail:
    """The last ``limit`` bytes a peer wrote on stderr; thread-safe."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._limit = limit
        self._data = bytearray()
        self._dropped = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def feed(self, data: bytes) -> None:
        with self._lock:
            self._data += data
            excess = len(self._data) - self._limit
            if excess > 0:
                del self._data[:excess]
                self._dropped = True

    def text(self) -> str:
        with self._lock:
            data = bytes(self._data)
            dropped = self._dropped
        text = data.decode("utf-8", errors="replace")
        return "…" + text if dropped else text

    def drain(self, read: Callable[[int], bytes], name: str) -> threading.Thread:
        """Start a daemon thread feeding ``read(n)`` into the tail until it returns ``b""``; several
        streams (a ProxyCommand's and the remote command's) may share one tail."""

        def run() -> None:
            while True:
                try:
                    data = read(65536)
                except Exception:  # the stream broke: nothing more will come
                    return
                if not data:
                    return
                self.feed(data)

        thread = threading.Thread(target=run, name=f"dcsync-stderr {name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the end of the drained streams; True if all ended."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)


def quote_stderr(text: str) -> str:
    """The end of a peer's stderr, indented for an error message ("" when there is none)."""
    text = text.strip()
    if not text:
        return ""
    lines = text[-QUOTE_CHARS:].splitlines()[-QUOTE_LINES:]
    return "; its stderr ends with:\n" + "\n".join("  | " + line for line in lines)
