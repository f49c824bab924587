"""Running the example project's management commands as real subprocesses.

``ManageProcess`` runs ``python manage.py ...`` and collects its output line by line, so
tests wait on log lines (never on sleeps).  ``settings_module`` writes a settings module that
starts from the example project's and changes what a test needs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BANNER_RE = r"development server at http://\[?([0-9a-fA-F.:]+)\]?:(\d+)/"
LISTEN_RE = r"Listening on TCP address \[?([0-9a-fA-F.:]+)\]?:(\d+)"


class ManageProcess:
    """``python manage.py ARGS`` in ``cwd`` (the repository root by default), or another
    ``command`` line (a list, looked up on ``env``'s PATH) collected the same way."""

    def __init__(self, args, env=None, cwd=None, pty=False, pass_fds=(), command=None):
        self.cwd = Path(cwd or ROOT)
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(self.cwd), str(ROOT), full_env.get("PYTHONPATH", "")]
        )
        full_env.update(env or {})
        self.args = list(command) if command is not None else [sys.executable, "manage.py",
                                                                *args]
        self.master = None
        if pty:
            import pty as pty_module

            self.master, follower = pty_module.openpty()
            out = follower
        else:
            out = subprocess.PIPE
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=full_env, cwd=self.cwd, start_new_session=True, pass_fds=pass_fds,
        )
        if pty:
            os.close(follower)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        stream = os.fdopen(self.master, "rb") if self.master is not None else self.proc.stdout
        try:
            for raw in stream:
                with self.cond:
                    self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                    self.cond.notify_all()
        except OSError:  # reading a pty fails with EIO once the process has exited
            pass
        finally:
            stream.close()
        with self.cond:
            self.cond.notify_all()

    @property
    def output(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match:
        """Block until a line (from line number ``start`` on) matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = max(seen, len(self.lines))
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(
                        f"no line matching {pattern!r}; output so far:\n{self.output}"
                    )
                self.cond.wait(remaining)

    def line_count(self) -> int:
        with self.cond:
            return len(self.lines)

    def signal(self, signum=signal.SIGTERM, group=False):
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.reader.join(5)


def run_manage(*args, env=None, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    """Run a management command to completion; stdout and stderr together in ``.stdout``."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(cwd or ROOT), str(ROOT), full_env.get("PYTHONPATH", "")]
    )
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=cwd or ROOT, env=full_env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout,
    )


def settings_module(directory: Path, source: str, name: str = "test_settings") -> str:
    """Write ``name``.py in ``directory``: the example settings, then ``source``."""
    text = "from example_project.settings import *  # noqa\n\n" + textwrap.dedent(source)
    (directory / f"{name}.py").write_text(text)
    return name


def free_port() -> int:
    """A port nothing listens on now (for servers that must keep one port across restarts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_example(destination: Path) -> Path:
    """A copy of manage.py and example_project/ that a test may change (autoreload)."""
    shutil.copy(ROOT / "manage.py", destination / "manage.py")
    shutil.copytree(
        ROOT / "example_project", destination / "example_project",
        ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3", "staticfiles"),
    )
    return destination


def raw_get(port: int, target: str, headers: str = "", method: str = "GET",
            host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """One request sent byte for byte (no client-side path normalisation), answered with
    Connection: close; returns (status, headers with lower-case names, body)."""
    request = (f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
               f"{headers}\r\n").encode("latin-1")
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), parsed, body
