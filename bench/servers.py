"""The servers under test: how each is started, and a handle on the running process.

Every server runs as one process (one worker) serving ``bench.app:app`` with its access log
off, pinned to one CPU where the machine has two or more.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / "bench" / ".venv-peers"
APP = "bench.app:app"


def main_python() -> str:
    """The interpreter with django-daphne installed: the project's .venv, else this one."""
    candidate = ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def peers_bin(name: str) -> str:
    return str(PEERS_VENV / "bin" / name)


@dataclass(frozen=True)
class ServerSpec:
    """One server: its command line for a port, and what it can serve."""

    name: str
    label: str
    argv: Callable[[int], list[str]]
    python: Callable[[], str]
    distribution: str
    features: frozenset[str] = field(default_factory=frozenset)

    def version(self) -> str:
        code = (
            "import importlib.metadata as m, sys; "
            f"print(m.version({self.distribution!r}))"
        )
        try:
            out = subprocess.run(
                [self.python(), "-c", code], capture_output=True, text=True, timeout=30
            )
        except OSError:
            return "not installed"
        return out.stdout.strip() if out.returncode == 0 else "not installed"

    def installed(self) -> bool:
        return Path(self.python()).exists() and self.version() != "not installed"


# What each server can serve today.  A workload names the feature it needs; when a server
# gains one (django-daphne's HTTP/2 and WebSocket), add it here and its row fills in.
HTTP1 = "http1"
H2_TLS = "h2-tls"
H2C = "h2c"
WEBSOCKET = "websocket"
DJANGO = "django"

SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            name="django-daphne",
            label="django-daphne",
            argv=lambda port: [
                main_python(), "-m", "django_daphne", "-b", "127.0.0.1", "-p", str(port),
                "-v", "0", APP,
            ],
            python=main_python,
            distribution="django-daphne",
            features=frozenset({HTTP1}),
        ),
        ServerSpec(
            name="daphne",
            label="Daphne",
            argv=lambda port: [
                peers_bin("daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0", APP,
            ],
            python=lambda: peers_bin("python"),
            distribution="daphne",
            features=frozenset({HTTP1, H2_TLS, WEBSOCKET, DJANGO}),
        ),
        ServerSpec(
            name="uvicorn",
            label="Uvicorn",
            argv=lambda port: [
                peers_bin("uvicorn"), "--host", "127.0.0.1", "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                "--log-level", "warning", APP,
            ],
            python=lambda: peers_bin("python"),
            distribution="uvicorn",
            features=frozenset({HTTP1, WEBSOCKET, DJANGO}),
        ),
        ServerSpec(
            name="hypercorn",
            label="Hypercorn",
            argv=lambda port: [
                peers_bin("hypercorn"), "-b", f"127.0.0.1:{port}", "-k", "uvloop",
                "--log-level", "warning", APP,
            ],
            python=lambda: peers_bin("python"),
            distribution="hypercorn",
            features=frozenset({HTTP1, H2_TLS, H2C, WEBSOCKET}),
        ),
        ServerSpec(
            name="granian",
            label="Granian",
            argv=lambda port: [
                peers_bin("granian"), "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1", "--no-access-log",
                "--log-level", "warning", APP,
            ],
            python=lambda: peers_bin("python"),
            distribution="granian",
            features=frozenset({HTTP1, H2_TLS, WEBSOCKET}),
        ),
    )
}


def snapshot(dest: Path) -> str:
    """Copy django_daphne/ and the benchmark app to ``dest`` and say which code that is.

    Every server runs from this copy (its directory first on the import path, ahead of the
    editable install), so commits landing in the working tree during a long run cannot mix
    two versions of django-daphne into one table.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "django_daphne", dest / "django_daphne", ignore=ignore)
    (dest / "bench").mkdir(parents=True)
    for name in ("__init__.py", "app.py"):
        shutil.copy2(ROOT / "bench" / name, dest / "bench" / name)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "django_daphne"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "unknown commit"
    if not rev:
        return "unknown commit"
    return f"git {rev}" + (" + uncommitted changes in django_daphne/" if dirty.strip() else "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerError(RuntimeError):
    """The server did not start, or stopped serving."""


class ServerProcess:
    """A started server: its own process group, its output in a log file."""

    def __init__(self, spec: ServerSpec, cpu: int | None, log_path: Path,
                 source: Path = ROOT) -> None:
        self.spec = spec
        self.port = free_port()
        self.log_path = log_path
        argv = spec.argv(self.port)
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(source) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("VIRTUAL_ENV", None)
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, cwd=source, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until ``GET /`` answers 200 (every server logs readiness differently)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"{self.spec.label} exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                status, _ = request(self.port, "GET", "/", timeout=2.0)
            except OSError:
                status = None
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise ServerError(f"{self.spec.label} not ready after {timeout}s:\n"
                                  f"{self.output()}")
            time.sleep(0.05)  # polling a port that is not listening yet

    def pids(self) -> list[int]:
        """The server process and all its descendants (Granian and Hypercorn fork)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in _listdir(f"/proc/{pid}/task"):
                try:
                    children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                except OSError:
                    continue
                todo.extend(int(child) for child in children)
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process tree so far."""
        ticks = 0
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / CLOCK_TICKS

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One HTTP/1.1 request over a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
