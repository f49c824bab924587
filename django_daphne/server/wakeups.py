"""What wakes the supervisor's loop (supervisor.py): the signals it handles, through a
wakeup fd (the handlers only record them), the workers' pipes, and its next deadline."""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterable, Iterator
from typing import Any


class Wakeups:
    """The supervisor's signal handlers and its wait (a context manager: the handlers'
    wakeup fd is set while it is entered)."""

    def __init__(self) -> None:
        self.signals: list[int] = []  # every signal received, in order
        self.handled = 0  # how many of them the loop has taken
        self._read = self._write = -1

    def __enter__(self) -> Wakeups:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        signal.set_wakeup_fd(self._write)
        # what the supervisor handles (signals.py's table says what each does), named only
        # here: a system without them (Windows) imports this module, and never runs it;
        # SIGCHLD only wakes the loop, to reap the worker that exited
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN,
                       signal.SIGTTOU):
            signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self._read)
        os.close(self._write)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def received(self) -> Iterator[int]:
        """The signals received since the loop last took them, oldest first (one that
        arrives while they are handled comes too)."""
        while self.handled < len(self.signals):
            signum = self.signals[self.handled]
            self.handled += 1
            yield signum

    def wait(self, timeout: float | None, pipes: Iterable[int]) -> list[int]:
        """Until a signal, a message on one of ``pipes`` or ``timeout``: the pipes readable."""
        readable, _, _ = select.select([self._read, *pipes], [], [], timeout)
        if self._read in readable:
            readable.remove(self._read)
            try:
                while os.read(self._read, 512):
                    pass
            except BlockingIOError:
                pass
        return readable
