"""--pid-file: the file that names the server's main process, for scripts and init systems
that signal it (``kill -HUP "$(cat /run/daphne.pid)"``) rather than search for it.

The main process is the one to signal: the supervisor under ``--workers`` (a worker's pid
changes with every reload), or the single serving process.  It is written once the process
starts, before it listens, and removed when it exits, whatever the exit; a SIGKILL leaves it
behind, naming a process that is gone, which the next start replaces.  A file that names a
process still running stops the start: two servers writing one pid file would leave it
naming the wrong one.
"""

from __future__ import annotations

import logging
import os
import tempfile

logger = logging.getLogger("django_daphne.server")


class PidFileError(Exception):
    """The pid file cannot be written, or names a server still running."""


def running(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts: it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: str) -> int | None:
    """The pid a pid file names; None when it is missing, empty or not a pid."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read(64).strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


# the file this process wrote, for a stop that comes before the server handles signals
# (server/cli.py's stop_during_startup) to remove before it dies
_written: PidFile | None = None


def remove_written() -> None:
    """Remove the pid file this process wrote, if any (see :data:`_written`)."""
    if _written is not None:
        _written.remove()


class PidFile:
    """The main process's pid file: :meth:`write` as it starts, :meth:`remove` whatever
    its exit (server/runtime.py's Server.run)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.written = False

    def write(self) -> None:
        path = self.path
        try:
            other = read_pid(path)
        except OSError as exc:
            raise PidFileError(f"Cannot read the pid file {path} (--pid-file): "
                               f"{exc.strerror or exc}") from None
        if other is not None and other != self.pid:
            if running(other):
                raise PidFileError(
                    f"The pid file {path} (--pid-file) names process {other}, which is "
                    "running: is another server using it? Stop that server, or give this "
                    "one another --pid-file.")
            logger.info("Replacing the pid file %s: process %d, which it named, is gone",
                        path, other)
        directory = os.path.dirname(os.path.abspath(path))
        try:
            # written whole under another name, then renamed: a reader never sees it half
            # written
            descriptor, temporary = tempfile.mkstemp(prefix=".pid-", dir=directory)
            try:
                with os.fdopen(descriptor, "w", encoding="ascii") as file:
                    file.write(f"{self.pid}\n")
                os.chmod(temporary, 0o644)
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as exc:
            raise PidFileError(f"Cannot write the pid file {path} (--pid-file): "
                               f"{exc.strerror or exc}") from None
        self.written = True
        global _written
        _written = self

    def remove(self) -> None:
        """Remove the file if it still names this process (another server may have
        replaced it since, its owner being gone)."""
        if not self.written:
            return
        self.written = False
        try:
            if read_pid(self.path) == self.pid:
                os.unlink(self.path)
        except OSError as exc:
            logger.warning("Could not remove the pid file %s: %s", self.path,
                           exc.strerror or exc)
